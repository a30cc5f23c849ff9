"""Alerting: scores to events (rules), the durable event store, and the sinks."""
