"""The organisation REST API under /api/v1 (JSON, `Authorization: Bearer <api key>`).

One module per resource (organisation and keys, people, a candidate's data, bookings, webhooks), on
the machinery of `routing`. Importing this package declares every endpoint, in the order
the OpenAPI document lists them.
"""

from __future__ import annotations

# In this order: the order of the routes and of the OpenAPI document.
# isort: off
from scheduler.web.api import organisation  # noqa: F401
from scheduler.web.api import people  # noqa: F401
from scheduler.web.api import calendars  # noqa: F401
from scheduler.web.api import privacy  # noqa: F401
from scheduler.web.api import retention  # noqa: F401
from scheduler.web.api import bookings  # noqa: F401
from scheduler.web.api import assessment  # noqa: F401
from scheduler.web.api import webhooks  # noqa: F401
from scheduler.web.api import results  # noqa: F401

# isort: on
from scheduler.web.api.routing import (
    ENDPOINTS,
    PREFIX,
    Call,
    Endpoint,
    day_range,
    decode_json,
    json_body,
    json_depth,
    parse,
    setup,
)

__all__ = [
    "ENDPOINTS",
    "PREFIX",
    "Call",
    "Endpoint",
    "day_range",
    "decode_json",
    "json_body",
    "json_depth",
    "parse",
    "setup",
]
