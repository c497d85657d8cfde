"""Signed webhooks to the organisations' systems (Standard Webhooks), from a durable queue.

events.py (the bodies), store.py (`enqueue` in the change's transaction, reading,
replaying), sources.py (what each change tells), secrets.py (made, sealed, signing),
targets.py (the SSRF guard), delivery.py (the worker), wiring.py (its life in the app).
Other features call `enqueue(session, organisation_id, event_type, data, now=...,
booking_id=...)` in their own transaction (e.g. the results events).
"""

from __future__ import annotations

from scheduler.webhooks.events import EVENT_TYPES
from scheduler.webhooks.store import enqueue

__all__ = ["EVENT_TYPES", "enqueue"]
