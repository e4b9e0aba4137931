"""Webhooks that never arrive. GitHub drops every webhook of one repository (only the
branch-drift reconciler can notice its pushes); then the web process is down during
ten pushes to others (GitHub logs those deliveries as failed, and the failed-delivery
reconciler asks for each again, once). The reconcilers run every 20 s here
(``RECONCILE_INTERVAL_SECONDS``, ``REDELIVER_INTERVAL_SECONDS``)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import Project, WebhookDelivery, db

from .conftest import GRACE_SECONDS, assert_no_failed_syncs
from .harness import wait_until
from .scenarios import RECONCILE_SECONDS, TARGET_SECONDS

pytestmark = [pytest.mark.slow]


def test_webhooks_dropped_for_one_repository_then_the_web_process_down(run_scenario) -> None:
    run = run_scenario("webhooks-lost")
    stack = run.stack
    notes = run.outcome.notes

    dropped = notes["dropped"]
    pushes_stored = stack.query(lambda: db.session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.event == "push",
            WebhookDelivery.repository_github_id == dropped.record.id,
        )
    ))
    assert pushes_stored == 0, "a push of the dropped repository reached the app"
    pid = stack.project_of(dropped)
    trigger = stack.query(lambda: str(getattr(db.session.get_one(Project, pid).current_sync,
                                              "trigger", None)))
    assert trigger == "reconcile", "the dropped repository was not brought up by the reconciler"

    failed = set(notes["failed"])
    assert len(failed) == 10, "every push while gunicorn was down failed to deliver"

    def stored() -> set[str]:
        return set(stack.query(lambda: db.session.scalars(
            select(WebhookDelivery.delivery_id).where(WebhookDelivery.delivery_id.in_(failed))
        ).all()))

    wait_until(lambda: stored() == failed, "the failed deliveries to be redelivered",
               RECONCILE_SECONDS + TARGET_SECONDS + GRACE_SECONDS)
    redelivered = [d for d in stack.github.deliveries if d.redelivery and d.guid in failed]
    assert sorted(d.guid for d in redelivered) == sorted(failed), (
        "each failed delivery is redelivered exactly once"
    )
    assert_no_failed_syncs(stack)
    stack.assert_alive()
