"""The HTTP layer: handlers, request and response models, pages, middlewares.

It translates between HTTP and the domain modules of `scheduler` (bookings, slots, people,
…); the domain never imports it (tests/test_layout.py). docs/architecture-web.md has the
floor plan.
"""
