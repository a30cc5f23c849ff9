"""The ``nats`` sink: events into a NATS JetStream stream, deduplicated by the server.

Each delivery is published to ``subject`` (``{camera}`` filled in) with the header
``Nats-Msg-Id`` = its idempotency key (event id + revision): JetStream drops a message whose
id it saw within the stream's duplicate window, so a delivery sent again — after a timeout
whose ack was lost, or by a worker restarted after ``kill -9`` before it could mark it
delivered — is stored once. It goes through the outbox and the dispatcher like every sink, so
a NATS outage is retried with backoff and loses nothing. The stream is created (or its
settings kept) at the first delivery.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

from streamdet.alert.sinkerror import SinkError
from streamdet.alert.store import Delivery
from streamdet.config import NatsSinkConfig
from streamdet.log import redact

logger = logging.getLogger(__name__)


class NatsSink:
    """Publishes each delivery as JSON to a JetStream stream, acked by the stream."""

    def __init__(self, config: NatsSinkConfig) -> None:
        self.name, self.config = config.name, config
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @classmethod
    def build(cls, config: NatsSinkConfig, base_dir: Path) -> NatsSink:
        """The sink ``config`` describes (``base_dir`` is unused: nothing is written)."""
        return cls(config)

    async def deliver(self, delivery: Delivery) -> None:
        camera = str(delivery.payload.get("camera", "unknown"))
        subject = self.config.subject.format(camera=camera)
        body = json.dumps({"idempotency_key": delivery.key, **delivery.payload}).encode()
        try:
            js = await self._connected()
            await js.publish(
                subject,
                body,
                timeout=self.config.timeout_s,
                headers={"Nats-Msg-Id": delivery.key},
            )
        except (NatsError, OSError, TimeoutError) as exc:
            where = ", ".join(redact(s) for s in self.config.servers)
            raise SinkError(f"nats {where}: {redact(str(exc)) or type(exc).__name__}") from exc

    async def _connected(self) -> JetStreamContext:
        if self._js is None:
            nc = await nats.connect(
                self.config.servers,
                name=f"streamdet:sink:{self.name}",
                connect_timeout=self.config.timeout_s,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=self._error,
            )
            js = nc.jetstream(timeout=self.config.timeout_s)
            try:
                await self._ensure_stream(js)
            except BaseException:
                await nc.close()
                raise
            self._nc, self._js = nc, js
        return self._js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        config = StreamConfig(
            name=self.config.stream,
            subjects=[self.config.subject.split("{", 1)[0].rstrip(".") + ".>"]
            if "{" in self.config.subject
            else [self.config.subject],
            num_replicas=self.config.replicas,
            duplicate_window=self.config.duplicate_window_s,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:  # it exists with other settings: use it as it is
            logger.info("sink %s: stream %s exists; kept as it is", self.name, config.name)

    async def _error(self, exc: Exception) -> None:
        logger.warning("sink %s: NATS: %s", self.name, redact(str(exc)) or type(exc).__name__)

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await nc.close()
            except (NatsError, OSError) as exc:
                logger.warning("sink %s: closing the NATS connection: %r", self.name, exc)
