"""The fleet's NATS connection and JetStream buckets, created on first use by any worker.

``<prefix>-members`` (KV: heartbeats, with a TTL), ``<prefix>-config`` (KV: the camera list,
when it lives there) and ``<prefix>-models`` (object store: checkpoints), each with
``fleet.replicas`` copies. Creating a bucket that exists with the same settings is a no-op, so
every worker does it at start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from streamdet.config import FleetConfig
from streamdet.errors import StreamdetError
from streamdet.log import redact

logger = logging.getLogger(__name__)

CAMERAS_KEY = "cameras"  # the camera list's entry in <prefix>-config


class FleetError(StreamdetError):
    """The fleet cannot be joined (no NATS server answers, JetStream is off)."""


@dataclass
class Buckets:
    nc: Client
    js: JetStreamContext
    members: KeyValue
    config: KeyValue
    models: ObjectStore


async def connect(
    servers: list[str], timeout_s: float, name: str, keep_trying: bool = True
) -> Client:
    """A client that reconnects for ever (to any server of the list) once connected; without
    ``keep_trying`` (a command's one request) it gives up after trying each server once or
    twice (nats-py's least: 0 would retry for ever) and does not reconnect."""

    async def disconnected() -> None:
        logger.warning("fleet: disconnected from NATS; reconnecting")

    async def reconnected() -> None:
        logger.info("fleet: reconnected to NATS")

    async def error(exc: Exception) -> None:
        logger.warning("fleet: NATS: %s", redact(str(exc)) or type(exc).__name__)

    try:
        return await nats.connect(
            servers,
            name=name,
            connect_timeout=timeout_s,
            max_reconnect_attempts=-1 if keep_trying else 1,
            reconnect_time_wait=0.5,
            allow_reconnect=keep_trying,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
    except Exception as exc:  # nats raises its own and OSError: all mean "no server answers"
        where = ", ".join(redact(s) for s in servers)
        raise FleetError(f"cannot reach NATS at {where}: {exc or type(exc).__name__}") from exc


async def open_buckets(config: FleetConfig, name: str, keep_trying: bool = True) -> Buckets:
    nc = await connect(
        config.servers, config.connect_timeout_s, f"streamdet:{name}", keep_trying=keep_trying
    )
    # Short requests: a beat that waits on a dead node must not outlast the member timeout.
    js = nc.jetstream(timeout=max(min(config.connect_timeout_s, config.member_timeout_s / 2), 0.5))
    try:
        # The TTL sweeps away heartbeats of workers gone long ago (liveness is judged on
        # revisions, see membership); long enough that a slow beat is never swept.
        members = await js.create_key_value(
            bucket=f"{config.prefix}-members",
            ttl=max(60.0, 10 * config.member_timeout_s),
            replicas=config.replicas,
        )
        settings = await js.create_key_value(
            bucket=f"{config.prefix}-config", history=5, replicas=config.replicas
        )
        models = await js.create_object_store(
            bucket=f"{config.prefix}-models", replicas=config.replicas
        )
    except Exception as exc:
        await nc.close()
        raise FleetError(f"cannot open the fleet's JetStream buckets: {exc!r}") from exc
    return Buckets(nc, js, members, settings, models)
