"""State of the maintenance passes that must survive a Redis restart.

The repair pass and the reconcilers run because Redis or a webhook may have lost
something; what they remember between runs therefore lives in the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import GitHubId, Model, utcnow


class MaintenanceCheckpoint(Model):
    """Where a maintenance pass got to (e.g. the newest hook delivery already examined)."""

    __tablename__ = "maintenance_checkpoint"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RedeliveryRequest(Model):
    """A failed GitHub delivery this App asked GitHub to deliver again.

    Keyed by the delivery's GUID (``X-GitHub-Delivery``), so each delivery is
    redelivered at most once, however often the reconciler sees its failed attempts.
    """

    __tablename__ = "redelivery_request"

    guid: Mapped[str] = mapped_column(String(64), primary_key=True)
    hook_delivery_id: Mapped[GitHubId]
    event: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    # GitHub's answer to the redelivery request, in words ("accepted", "422 ...").
    outcome: Mapped[str | None] = mapped_column(Text)
