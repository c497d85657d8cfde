"""Outgoing mail: calendar invitations, MIME building, rendering, and a durable outbox.

The scheduler imports this package, never the reverse: a mail is written into the outbox in
the same transaction as the booking change that causes it, and a worker delivers it later.
"""
