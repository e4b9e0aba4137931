"""The webhook outbox: every verified delivery, stored before it is acknowledged."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import GitHubId, Model, str_enum, utcnow
from models.enums import DeliveryStatus


class WebhookDelivery(Model):
    """One delivery, keyed by GitHub's ``X-GitHub-Delivery`` GUID.

    The unique GUID is what makes a redelivery or a retried request harmless: the
    second insert fails and the receiver answers "duplicate" without queueing again.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        # The sweeper's query: pending deliveries, oldest first.
        Index("ix_webhook_delivery_status_received_at", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Event names are an open set (GitHub keeps adding events), so a plain string.
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    hook_id: Mapped[GitHubId | None]
    installation_github_id: Mapped[GitHubId | None] = mapped_column(index=True)
    repository_github_id: Mapped[GitHubId | None]
    # The body exactly as signed (UTF-8, decoded strictly), so the signature can be
    # checked again and processing rerun from it; for a form-encoded delivery that is
    # the form, whose field ``payload`` holds the JSON document. The retention pass
    # clears it (NULL) some days after the delivery reached a final status.
    payload: Mapped[str | None] = mapped_column(Text)
    form_encoded: Mapped[bool] = mapped_column(default=False, server_default=false())
    status: Mapped[DeliveryStatus] = mapped_column(
        str_enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    # Why a delivery was ignored, failed or rejected, in words.
    status_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.delivery_id} {self.event}.{self.action} {self.status}>"
