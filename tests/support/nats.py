"""NATS for the fleet tests: the real cluster (``benchmarks/nats_cluster.py``, shared with
the benchmark) and ``stream_messages``, which reads a JetStream stream back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats

from benchmarks.nats_cluster import NatsCluster, Node

__all__ = ["Message", "NatsCluster", "Node", "stream_messages"]

Message = tuple[str, str, dict[str, Any]]  # Nats-Msg-Id, subject, JSON body


def stream_messages(servers: list[str], stream: str = "streamdet-events") -> list[Message]:
    """Every message of ``stream``, in order: (its Nats-Msg-Id, subject, JSON body)."""

    async def read() -> list[Message]:
        nc = await nats.connect(servers)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                key = (msg.headers or {}).get("Nats-Msg-Id", "")
                found.append((key, msg.subject, json.loads(msg.data or b"{}")))
            return found
        finally:
            await nc.close()

    return asyncio.run(read())
