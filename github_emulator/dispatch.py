"""The WSGI application: routing plus the realism pipeline around every API call.

For an API request the order is GitHub's: latency, injected fault, authentication
(401), secondary then primary rate limit (429/403), the handler, ``ETag`` and
``304 Not Modified`` (which spends no budget), then rate-limit headers and the
request counter. Web pages (OAuth, manifest) and the archive host skip rate limits;
git's smart HTTP skips the API's authentication and rate limits (its handlers check
Basic credentials as git sends them) and is counted apart; ``/_emulator`` control
calls skip everything and are never counted.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import defaults
from .auth import Caller, CallerKind, identify
from .errors import ApiError, DroppedConnectionError, NotFoundError
from .knobs import FaultKind

if TYPE_CHECKING:
    from .emulator import Emulator


class Surface(StrEnum):
    """Which part of GitHub a route imitates, deciding the pipeline it runs through."""

    API = "api"  # api.github.com: auth, rate limits, ETags, counters
    WEB = "web"  # github.com pages and codeload: counted, never rate limited
    GIT = "git"  # smart HTTP: counted apart, handlers authenticate as git does
    INTERNAL = "internal"  # /_emulator control endpoints


Handler = Callable[..., Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # werkzeug rule syntax, e.g. /repos/<owner>/<repo>
    handler: Handler
    surface: Surface = Surface.API

    @property
    def label(self) -> str:
        """Counter key in GitHub's docs notation: ``GET /repos/{owner}/{repo}``."""
        path = self.path
        for converter in ("path:", "int:"):
            path = path.replace(f"<{converter}", "<")
        return f"{self.method} {path.replace('<', '{').replace('>', '}')}"


@dataclass
class Context:
    """What a handler gets besides its path parameters."""

    request: Request
    emulator: Emulator
    caller: Caller
    base: str  # origin the client used, for absolute links in bodies

    def query_int(self, name: str, default: int) -> int:
        try:
            return int(self.request.args.get(name, default))
        except ValueError:
            return default

    def paginate(self, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        """One page of ``items`` by ``per_page``/``page`` and the ``Link`` header."""
        per_page = max(1, min(self.query_int("per_page", defaults.PER_PAGE_DEFAULT),
                              defaults.PER_PAGE_MAX))
        page = max(1, self.query_int("page", 1))
        last = max(1, -(-len(items) // per_page))
        links = []

        def link(number: int, rel: str) -> str:
            args = {**self.request.args.to_dict(), "per_page": per_page, "page": number}
            return f'<{self.base}{self.request.path}?{urlencode(args)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        return items[(page - 1) * per_page: page * per_page], headers


def json_response(body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), status=status,
                        content_type="application/json; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(error: ApiError) -> Response:
    return json_response({"message": error.message, "documentation_url": defaults.DOCS_URL,
                          "status": str(error.status)}, error.status, error.headers)


def _etag(body: bytes) -> str:
    return f'W/"{hashlib.sha256(body).hexdigest()[:40]}"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    wanted = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in wanted or etag.removeprefix("W/") in wanted


class EmulatorApp:
    """WSGI callable serving every route of the emulator."""

    def __init__(self, emulator: Emulator, routes: Iterable[Route]) -> None:
        self.emulator = emulator
        self.routes = list(routes)
        self.url_map = Map([Rule(r.path, endpoint=index, methods=[r.method])
                            for index, r in enumerate(self.routes)],
                           strict_slashes=False, merge_slashes=False)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            index, params = adapter.match()
        except (NotFound, MethodNotAllowed):
            return self._finish(request, None, error_response(NotFoundError()), None)
        route = self.routes[index]
        if route.surface is Surface.INTERNAL:
            return self._run(route, request, params, Caller(CallerKind.ANONYMOUS))
        return self._serve(route, request, params)

    def _serve(self, route: Route, request: Request, params: Mapping[str, Any]) -> Response:
        knobs = self.emulator.knobs
        limiter = self.emulator.rate_limiter
        if knobs.latency > 0:
            time.sleep(knobs.latency)
        fault = knobs.take_fault(request.method, request.path)
        if fault is FaultKind.TIMEOUT:
            time.sleep(knobs.fault_hang_seconds)
        if fault in (FaultKind.RESET, FaultKind.TIMEOUT):
            # The server's request handler turns this into a TCP reset.
            raise DroppedConnectionError(f"{fault} fault injected by the emulator")
        if fault is not None:
            status = 502 if fault is FaultKind.BAD_GATEWAY else 500
            message = "Server Error" if status == 500 else "Bad Gateway"
            return self._finish(request, route, error_response(ApiError(message,
                                                                        status=status)), None)
        address = request.remote_addr or ""
        if route.surface is Surface.GIT:
            anonymous = Caller(CallerKind.ANONYMOUS, address=address)
            return self._finish(request, route, self._run(route, request, params, anonymous),
                                None)
        try:
            caller = identify(self.emulator.state, request.headers.get("Authorization"),
                              address)
        except ApiError as error:
            return self._finish(request, route, error_response(error), None)
        if route.surface is Surface.API:
            secondary = limiter.take_secondary()
            if secondary is not None:
                limited = ApiError(
                    "You have exceeded a secondary rate limit. Please wait a few minutes "
                    "before you try again.", status=secondary.status,
                    headers={"Retry-After": str(secondary.retry_after)})
                return self._finish(request, route, error_response(limited), caller)
            if limiter.exhausted(caller.rate_key, authenticated=caller.authenticated):
                exhausted = ApiError(f"API rate limit exceeded for {caller.rate_key}.",
                                     status=403)
                return self._finish(request, route, error_response(exhausted), caller)
        response = self._run(route, request, params, caller)
        if (route.surface is Surface.API and request.method == "GET"
                and response.status_code == 200 and not response.is_streamed):
            etag = _etag(response.get_data())
            response.headers["ETag"] = etag
            if _etag_matches(request.headers.get("If-None-Match"), etag):
                response = Response(status=304, headers={"ETag": etag})
        return self._finish(request, route, response, caller)

    def _run(self, route: Route, request: Request, params: Mapping[str, Any],
             caller: Caller) -> Response:
        context = Context(request, self.emulator, caller, request.host_url.rstrip("/"))
        try:
            result = route.handler(context, **params)
        except ApiError as error:
            return error_response(error)
        return result if isinstance(result, Response) else json_response(result)

    def _finish(self, request: Request, route: Route | None, response: Response,
                caller: Caller | None) -> Response:
        """Spend rate budget, add GitHub's headers and count the request."""
        surface = route.surface if route else Surface.API
        response.headers["X-GitHub-Request-Id"] = uuid.uuid4().hex[:20].upper()
        if surface is Surface.API:
            response.headers["X-GitHub-Media-Type"] = defaults.MEDIA_TYPE_HEADER
            response.headers["X-GitHub-Api-Version-Selected"] = defaults.API_VERSION
            if caller is not None:
                limiter = self.emulator.rate_limiter
                if response.status_code != 304 and response.status_code != 429 and not (
                        response.status_code == 403 and "rate limit" in
                        response.get_data(as_text=True)):
                    limiter.spend(caller.rate_key, authenticated=caller.authenticated)
                for name, value in limiter.headers(
                        caller.rate_key, authenticated=caller.authenticated).items():
                    response.headers[name] = value
        label = route.label if route else f"{request.method} (unmatched)"
        if surface is Surface.GIT:
            self._count_git(request, label, response)
            return response
        size = 0 if response.is_streamed else len(response.get_data())
        self.emulator.counter.record(label, status=response.status_code, size=size)
        return response

    def _count_git(self, request: Request, label: str, response: Response) -> None:
        """Tally a smart HTTP request under its service, and its bytes as they go out
        (a pack streams, so its size is known only chunk by chunk)."""
        counter = self.emulator.counter
        service = request.args.get("service") or request.path.rsplit("/", 1)[-1]
        counter.record_git(label, service=service)
        if response.is_streamed:
            response.response = counter.counting_git_bytes(response.response)
        else:
            counter.add_git_bytes(len(response.get_data()))
