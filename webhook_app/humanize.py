"""Numbers and times as a person reads them: ``1.2 MiB``, ``3 min ago``, ``2.4 s``.

Pure functions, used as template filters by the pages; the exact value stays one
hover away (``title`` and ``<time datetime>``), so nothing is lost by rounding.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sync_jobs.progress import human_bytes

__all__ = ["human_bytes", "human_duration", "iso_utc", "time_ago", "utc_text"]

_STEPS = (
    (60, 1, "s"),
    (60 * 60, 60, "min"),
    (24 * 60 * 60, 60 * 60, "h"),
    (30 * 24 * 60 * 60, 24 * 60 * 60, "d"),
)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def time_ago(moment: datetime, *, now: datetime | None = None) -> str:
    """``just now``, ``42 s ago``, ``3 min ago``, ``5 h ago``, ``12 d ago``, then the date."""
    now = _aware(now or datetime.now(UTC))
    seconds = (now - _aware(moment)).total_seconds()
    if seconds < 0:
        return "in the future" if seconds < -60 else "just now"
    if seconds < 5:
        return "just now"
    for limit, unit_seconds, unit in _STEPS:
        if seconds < limit:
            return f"{int(seconds // unit_seconds)} {unit} ago"
    return _aware(moment).strftime("%Y-%m-%d")


def utc_text(moment: datetime) -> str:
    """The exact time, for a ``title``: ``2026-12-01 13:55:32 UTC``."""
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_duration(seconds: float | None) -> str:
    """``0.42 s``, ``12 s``, ``3 min 5 s``, ``2 h 4 min``."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def iso_utc(moment: datetime) -> str:
    """ISO 8601 with its offset (stored times are UTC, some databases drop the zone), so
    a browser reading ``<time datetime>`` does not take it for local time."""
    return _aware(moment).astimezone(UTC).isoformat()
