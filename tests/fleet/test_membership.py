"""Heartbeat membership against a real nats-server: live while the revision moves, a stale
entry is not counted at first sight, a member that stops beating goes after the timeout,
one that leaves goes at once, and an outage of the reader's own moves nobody."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from streamdet.fleet.membership import Member, Membership
from tests.support.nats import NatsCluster

TIMEOUT = 1.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", nodes=1) as started:
        yield started


def test_liveness_follows_the_heartbeats(server: NatsCluster) -> None:
    async def scenario() -> None:
        nc = await nats.connect(server.urls)
        try:
            js = nc.jetstream()
            kv = await js.create_key_value(bucket="t-members", ttl=60)
            me = Membership(js, kv, "t-members", "me", TIMEOUT)
            other = Membership(js, kv, "t-members", "other", TIMEOUT)
            now = time.time()
            await me.beat(Member("me", 1.0, {"cam": now}, sent=now))
            await other.beat(Member("other", 2.0, sent=now))
            # a worker dead for a minute, whose entry the TTL has not swept yet
            await kv.put("ghost", Member("ghost", 1.0, sent=now - 60).encode())
            await kv.put("junk", b"not a heartbeat")
            live = await me.live()
            assert sorted(live) == ["me", "other"]
            assert live["me"].running == {"cam": pytest.approx(now)}
            assert live["other"].capacity == 2.0

            await asyncio.sleep(TIMEOUT * 0.4)  # other stops beating; I go on
            await me.beat(Member("me", 1.0, sent=time.time()))
            assert sorted(await me.live()) == ["me", "other"]
            await asyncio.sleep(TIMEOUT * 0.4)
            await me.beat(Member("me", 1.0, sent=time.time()))
            await me.live()
            await asyncio.sleep(TIMEOUT * 0.4)
            assert sorted(await me.live()) == ["me"]  # other's revision stood still too long

            await other.beat(Member("other", 2.0, sent=time.time()))  # back
            assert sorted(await me.live()) == ["me", "other"]
            await other.leave()
            assert sorted(await me.live()) == ["me"]

            # my own outage (no reading for longer than half the timeout): nobody moves
            await other.beat(Member("other", 2.0, sent=time.time()))
            await me.live()
            await asyncio.sleep(TIMEOUT * 1.2)
            assert sorted(await me.live()) == ["me", "other"]
        finally:
            await nc.close()

    asyncio.run(scenario())
