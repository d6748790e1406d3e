"""Awaiting a peer's record at a DHT node (``/mpcid/await-record/1.0.0``,
:mod:`mpcid.p2p.await_record`): answered when the record is stored, not polled for.

Integration: real py-libp2p hosts on loopback in one trio loop; every wait is bounded."""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p import await_record as aw
from mpcid.p2p.dht import DHTNode
from mpcid.p2p.host import host_addrs, running_host
from mpcid.p2p.records import EndpointRecord, dht_key

pytestmark = pytest.mark.integration


def record(key: Ed25519Key, seq: int) -> bytes:
    return EndpointRecord.create(key, seq, time.time(), tcp=["127.0.0.1:4000"])[1]


def seq_of(value: bytes | None) -> int | None:
    return None if value is None else int(json.loads(value)["seq"])


def run(body: Any, *, server: bool = True) -> Any:
    """``body(node, alice, bob)``: a DHT node (a server unless ``server`` is False) and
    two clients bootstrapped on it."""

    async def main() -> Any:
        with trio.fail_after(60):
            async with AsyncExitStack() as stack:
                nodes = []
                for i, serves in enumerate((server, False, False)):
                    host = await stack.enter_async_context(running_host(
                        Ed25519Key.from_seed(bytes([i + 7]) * 32), ["/ip4/127.0.0.1/tcp/0"]))
                    node = DHTNode(host, server=serves)
                    await stack.enter_async_context(node.running())
                    nodes.append(node)
                boot = [a + f"/p2p/{nodes[0].host.get_id().to_base58()}"
                        for a in host_addrs(nodes[0].host)][:1]
                for client in nodes[1:]:
                    await client.bootstrap(boot)
                return await body(*nodes)

    return trio.run(main)


def test_a_record_published_while_awaited_is_delivered_at_once() -> None:
    party = Ed25519Key.generate()
    did = party.did.did

    async def body(node: DHTNode, alice: DHTNode, bob: DHTNode) -> None:
        got: list[Any] = []

        async def wait_for_it() -> None:
            started = trio.current_time()
            got.append(await alice.await_record(did, -1, 8.0))
            got.append(trio.current_time() - started)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            await trio.sleep(0.5)
            await bob.put(dht_key(did), record(party, 5))
        (value, served), took = got
        assert served and seq_of(value) == 5
        assert 0.4 < took < 4.0  # woken by the store, not by the end of the 8 s wait
        # Held already and newer than what the asker has: answered at once.
        assert seq_of((await alice.await_record(did, 4, 8.0))[0]) == 5
        # Nothing newer than seq 5 comes: the wait runs out, with nothing.
        started = trio.current_time()
        assert await alice.await_record(did, 5, 0.5) == (None, True)
        assert trio.current_time() - started >= 0.5
        # A newer one is stored meanwhile: that one.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: bob.put(dht_key(did), record(party, 9)))
            value, served = await alice.await_record(did, 5, 8.0)
        assert served and seq_of(value) == 9
        assert node.waiters._total == 0 and not node.waiters._events

    run(body)


def test_a_node_without_the_protocol_says_so_and_the_caller_polls_instead() -> None:
    did = Ed25519Key.generate().did.did

    async def body(node: DHTNode, alice: DHTNode, bob: DHTNode) -> None:
        assert await alice.await_record(did, -1, 0.5) == (None, False)

    run(body, server=False)  # only DHT servers serve it


@pytest.mark.parametrize("request_bytes", [
    b"\x00\x00",                                   # an empty request
    b"\x10\x00" + b"x" * 4096,                     # longer than MAX_REQUEST
    aw.encode_request("did:web:example.com", -1, 1.0),
    b"\x00\x05hello",
    len(b'{"v":2}').to_bytes(2, "big") + b'{"v":2}',
])
def test_a_malformed_request_ends_its_stream_and_nothing_else(request_bytes: bytes) -> None:
    party = Ed25519Key.generate()

    async def body(node: DHTNode, alice: DHTNode, bob: DHTNode) -> None:
        peer = node.host.get_id()
        stream = await alice.host.new_stream(peer, [TProtocol(aw.AWAIT_PROTOCOL)])
        await stream.write(request_bytes)
        with trio.fail_after(aw.REQUEST_TIMEOUT + 2):
            with pytest.raises(Exception):
                data = await stream.read(4)
                assert data  # a reset or end of stream, never an answer
                raise AssertionError(f"answered {data!r}")
        # The node still serves others.
        await bob.put(dht_key(party.did.did), record(party, 3))
        assert seq_of((await alice.await_record(party.did.did, -1, 1.0))[0]) == 3
        assert node.waiters._total == 0

    run(body)


def test_a_peer_cannot_hold_more_than_its_share_of_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aw, "PER_PEER", 2)
    dids = [Ed25519Key.generate().did.did for _ in range(3)]

    async def body(node: DHTNode, alice: DHTNode, bob: DHTNode) -> None:
        peer = node.host.get_id().to_base58()
        answered: list[tuple[str, float]] = []

        async def ask(did: str) -> None:
            started = trio.current_time()
            await aw.await_record(alice.host, peer, did, -1, 3.0)
            answered.append((did, trio.current_time() - started))

        async with trio.open_nursery() as nursery:
            for did in dids[:2]:
                nursery.start_soon(ask, did)
            await trio.sleep(0.5)  # both held now
            assert node.waiters._per_peer == {alice.host.get_id().to_base58(): 2}
            nursery.start_soon(ask, dids[2])
        took = dict(answered)
        assert took[dids[2]] < 1.0  # over its share: answered at once, with nothing
        assert took[dids[0]] >= 2.9 and took[dids[1]] >= 2.9

    run(body)


def test_requests_are_checked_before_anything_is_held() -> None:
    assert aw.parse_request(aw.encode_request(Ed25519Key.generate().did.did, 7, 99.0)[2:])[1:] \
        == (7, aw.MAX_WAIT)
    for bad in ({"v": 1, "did": "x", "after": -1, "wait_ms": 1},
                {"v": 1, "did": Ed25519Key.generate().did.did, "after": -2, "wait_ms": 1},
                {"v": 1, "did": Ed25519Key.generate().did.did, "after": 1.5, "wait_ms": 1},
                {"v": 1, "did": Ed25519Key.generate().did.did, "after": 1, "wait_ms": 1,
                 "more": 1}):
        with pytest.raises(ValueError):
            aw.parse_request(json.dumps(bad).encode())
    assert ID  # the protocol's PeerIDs are libp2p's
