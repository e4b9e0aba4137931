"""Realism knobs: latency, truncation limits, webhooks (encoding, timeout, repositories
whose webhooks are lost) and injected faults.

Tests and benchmarks turn these at runtime, from Python (``server.knobs``) or over
HTTP (``/_emulator/knobs``, ``/_emulator/faults``) when the emulator runs in another
process. Rate limits live in :mod:`github_emulator.ratelimit`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from . import defaults


class FaultKind(StrEnum):
    """What an injected fault does to a matching request."""

    SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    TIMEOUT = "timeout"  # hold the request for ``fault_hang_seconds``, then reset
    RESET = "reset"  # close the connection with a TCP reset, no answer at all


class WebhookContentType(StrEnum):
    """The two encodings a GitHub webhook can be configured with."""

    JSON = "json"
    FORM = "form"


@dataclass
class Fault:
    """Fail the next ``remaining`` requests whose path matches ``pattern``."""

    pattern: str
    kind: FaultKind
    remaining: int = 1
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and re.search(self.pattern, path) is not None)


@dataclass
class Knobs:
    """Settings every request consults. Assign attributes directly; the faults list
    is guarded by a lock because many request threads consume it."""

    latency: float = 0.0
    """Seconds every API request waits before it is answered."""
    tree_max_entries: int = defaults.TREE_MAX_ENTRIES
    tree_max_bytes: int = defaults.TREE_MAX_BYTES
    webhook_content_type: WebhookContentType = WebhookContentType.JSON
    token_ttl: int = defaults.TOKEN_TTL_SECONDS
    """Lifetime in seconds of newly issued installation and user tokens."""
    fault_hang_seconds: float = defaults.FAULT_HANG_SECONDS
    webhook_timeout: float = defaults.WEBHOOK_TIMEOUT_SECONDS
    """Seconds a receiver has to answer a delivery before it is logged "timed out"."""
    drop_webhooks_for: set[str] = field(default_factory=set)
    """``owner/name`` of repositories whose webhooks GitHub "loses": push and
    repository events are neither sent nor logged. Lower case; see ``drops``."""
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    SETTABLE = ("latency", "tree_max_entries", "tree_max_bytes", "webhook_content_type",
                "token_ttl", "fault_hang_seconds", "webhook_timeout", "drop_webhooks_for")

    def add_fault(self, pattern: str, kind: FaultKind | str, *, count: int = 1,
                  method: str | None = None) -> Fault:
        """Fail the next ``count`` requests whose path matches the regex ``pattern``."""
        fault = Fault(pattern, FaultKind(kind), count, method.upper() if method else None)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> FaultKind | None:
        """Consume one use of the first fault matching this request, if any."""
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault.kind
            return None

    def drops(self, *full_names: str) -> bool:
        """Whether webhooks of a repository known by any of ``full_names`` (a renamed
        or transferred one has two) are to be lost; names compare case-insensitively."""
        lost = {name.lower() for name in self.drop_webhooks_for}
        return any(name.lower() in lost for name in full_names)

    def update(self, values: dict[str, Any]) -> None:
        """Apply a JSON object of settings (the ``PATCH /_emulator/knobs`` body)."""
        unknown = set(values) - set(self.SETTABLE)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        for name, value in values.items():
            if name == "webhook_content_type":
                value = WebhookContentType(value)
            elif name == "drop_webhooks_for":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError("drop_webhooks_for takes a list of owner/name")
                value = {v.lower() for v in value}
            elif name in ("latency", "fault_hang_seconds", "webhook_timeout"):
                value = float(value)
            else:
                value = int(value)
            setattr(self, name, value)

    def reset(self) -> None:
        """Back to GitHub's behaviour: no latency, default limits, no faults."""
        fresh = Knobs()
        for spec in fields(self):
            if spec.name not in ("faults", "_lock"):
                setattr(self, spec.name, getattr(fresh, spec.name))
        self.clear_faults()

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            faults = [asdict(f) for f in self.faults if f.remaining > 0]
        body: dict[str, Any] = {name: getattr(self, name) for name in self.SETTABLE}
        body["drop_webhooks_for"] = sorted(n.lower() for n in self.drop_webhooks_for)
        body["faults"] = faults
        return body
