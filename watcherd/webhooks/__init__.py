"""Webhooks out: the events (built once, written to the outbox with the state change)
and the thread that delivers them, signed, retried, dead-lettered."""
