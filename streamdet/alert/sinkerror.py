"""The one error a sink raises: the delivery failed and the dispatcher retries it later.

Its own module so that sinks in modules of their own (``nats_sink``) and the registry in
``sinks`` (which re-exports it) both import it without importing each other.
"""

from __future__ import annotations

from streamdet.errors import StreamdetError


class SinkError(StreamdetError):
    """A delivery failed; it will be retried."""
