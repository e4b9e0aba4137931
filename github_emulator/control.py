"""``/_emulator/...``: control endpoints for processes that cannot reach the Python
object, such as the git hook, gunicorn-hosted benchmarks or a separately started demo.
They are not GitHub's and are never counted or rate limited."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from . import defaults
from .dispatch import Context, Route, Surface, json_response
from .errors import ApiError, NotFoundError


def _body(ctx: Context) -> dict[str, Any]:
    return ctx.request.get_json(silent=True) or {}


def post_receive(ctx: Context) -> Any:
    body = _body(ctx)
    try:
        record = ctx.emulator.repository_at(body["git_dir"])
    except KeyError as error:
        raise NotFoundError("Unknown repository") from error
    updates = [(u["before"], u["after"], u["ref"]) for u in body.get("updates", [])]
    sent = ctx.emulator.deliver_push(record, updates, pusher=body.get("pusher"))
    return [r.summary_json() for r in sent]


def get_knobs(ctx: Context) -> Any:
    return ctx.emulator.knobs.as_json()


def patch_knobs(ctx: Context) -> Any:
    try:
        ctx.emulator.knobs.update(_body(ctx))
    except ValueError as error:
        raise ApiError(str(error), status=422) from error
    return ctx.emulator.knobs.as_json()


def reset_knobs(ctx: Context) -> Any:
    ctx.emulator.reset_knobs()
    return ctx.emulator.knobs.as_json()


def add_fault(ctx: Context) -> Any:
    body = _body(ctx)
    try:
        ctx.emulator.knobs.add_fault(body["pattern"], body["kind"],
                                     count=int(body.get("count", 1)), method=body.get("method"))
    except (KeyError, ValueError) as error:
        raise ApiError(f"bad fault: {error}", status=422) from error
    return json_response(ctx.emulator.knobs.as_json(), 201)


def clear_faults(ctx: Context) -> Any:
    ctx.emulator.knobs.clear_faults()
    return Response(status=204)


def set_rate_limit(ctx: Context) -> Any:
    body = _body(ctx)
    limiter = ctx.emulator.rate_limiter
    if "secondary" in body:
        secondary = body["secondary"]
        limiter.arm_secondary(count=int(secondary.get("count", 1)),
                              status=int(secondary.get("status", 429)),
                              retry_after=int(secondary.get(
                                  "retry_after", defaults.SECONDARY_LIMIT_RETRY_AFTER_SECONDS)))
    if "limit" in body or "window" in body:
        limiter.configure(limit=body.get("limit"), window=body.get("window"))
    return {"limit": limiter.limit, "window": limiter.window}


def get_counts(ctx: Context) -> Any:
    return ctx.emulator.request_counts().as_json()


def reset_counts(ctx: Context) -> Any:
    ctx.emulator.reset_counts()
    return Response(status=204)


def list_all_deliveries(ctx: Context) -> Any:
    return [r.full_json() for r in ctx.emulator.deliveries]


def age_delivery(ctx: Context, delivery_id: int) -> Any:
    """Move one delivery ``{"seconds": N}`` into the past (GitHub's three-day limit)."""
    try:
        seconds = float(_body(ctx)["seconds"])
    except (KeyError, TypeError, ValueError) as error:
        raise ApiError(f"bad age: {error}", status=422) from error
    try:
        record = ctx.emulator.age_delivery(delivery_id, seconds=seconds)
    except KeyError as error:
        raise NotFoundError("Unknown delivery") from error
    return record.summary_json()


def get_app_credentials(ctx: Context) -> Any:
    app = ctx.emulator.app
    return {"app_id": app.id, "slug": app.slug, "client_id": app.client_id,
            "client_secret": app.client_secret, "webhook_secret": app.webhook_secret,
            "private_key_pem": app.private_key_pem, "webhook_url": app.webhook_url}


def patch_app(ctx: Context) -> Any:
    body = _body(ctx)
    if "webhook_url" in body:
        ctx.emulator.webhook_url = body["webhook_url"]
    if "signed_in_user" in body:
        ctx.emulator.signed_in_user = body["signed_in_user"]
    return get_app_credentials(ctx)


def create_repository(ctx: Context) -> Any:
    body = _body(ctx)
    try:
        record = ctx.emulator.create_repository(
            body["owner"], body["name"], private=bool(body.get("private", False)),
            default_branch=body.get("default_branch", "main"))
    except (KeyError, ValueError) as error:
        raise ApiError(f"cannot create repository: {error}", status=422) from error
    return json_response({"id": record.id, "full_name": record.full_name,
                          "clone_url": ctx.emulator.clone_url(record)}, 201)


def create_installation(ctx: Context) -> Any:
    body = _body(ctx)
    installation_id = ctx.emulator.install(body["account"], body.get("repositories"),
                                           members=tuple(body.get("members", ())))
    return json_response({"id": installation_id}, 201)


P = defaults.INTERNAL_PREFIX
ROUTES = [Route(method, f"{P}{path}", handler, Surface.INTERNAL) for method, path, handler in (
    ("POST", "/post-receive", post_receive),
    ("GET", "/knobs", get_knobs),
    ("PATCH", "/knobs", patch_knobs),
    ("POST", "/knobs/reset", reset_knobs),
    ("POST", "/faults", add_fault),
    ("DELETE", "/faults", clear_faults),
    ("POST", "/rate-limit", set_rate_limit),
    ("GET", "/counts", get_counts),
    ("DELETE", "/counts", reset_counts),
    ("GET", "/deliveries", list_all_deliveries),
    ("POST", "/deliveries/<int:delivery_id>/age", age_delivery),
    ("GET", "/app", get_app_credentials),
    ("PATCH", "/app", patch_app),
    ("POST", "/repositories", create_repository),
    ("POST", "/installations", create_installation),
)]
