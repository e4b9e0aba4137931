"""Constants of the job side, each defined once with what it is for."""

from __future__ import annotations

JOB_TIMEOUT_SECONDS = 30 * 60
"""Longest a sync job may run before RQ kills it; a first sync of a huge repository fits."""

DELIVERY_JOB_TIMEOUT_SECONDS = 60
"""Processing one webhook delivery only reads the payload and writes a few rows."""

RESULT_TTL_SECONDS = 24 * 60 * 60
"""How long RQ keeps a finished job; the ProjectSync row is the durable record."""

FAILURE_TTL_SECONDS = 7 * 24 * 60 * 60
"""How long RQ keeps a failed job for inspection."""
