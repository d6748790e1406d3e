"""A DHT node under a flood of valid records (``specs/discovery.md`` 7, issue item 11).

One client signs records with fresh did:keys and pushes them, as ``PUT_VALUE`` over a real
loopback py-libp2p connection, to a real node. Before :class:`StoreLimits`, the node took
every one of them (6,225 in 60 s, 92 -> 197 MiB) and past 50,000 py-libp2p evicted the
oldest, genuine records included. Now the sender's quota, the kinds' caps and the byte
bound refuse the flood and the genuine records stay served.

Integration: real hosts and sockets on loopback in one trio loop; every wait is bounded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from libp2p.kad_dht.pb.kademlia_pb2 import Record
from libp2p.records.record import make_signed_put_record

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import UsageError
from mpcid.p2p.dht import (_SENDER, ENDPOINT_KIND, ENTRY_OVERHEAD, DHTNode, KindLimits,
                           StoreLimits, _BoundedValueStore, kind_label)
from mpcid.p2p.errors import StoreRefused
from mpcid.p2p.host import host_addrs, running_host
from mpcid.p2p.records import EndpointRecord, dht_key

pytestmark = pytest.mark.integration

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def record(key: Ed25519Key, seq: int = 1, ttl: int = 600, now: float | None = None
           ) -> bytes:
    _, value = EndpointRecord.create(key, seq, time.time() if now is None else now,
                                     ttl=ttl, tcp=["127.0.0.1:4000"],
                                     addrs=["/ip4/127.0.0.1/tcp/4001"])
    return value


def seq_of(value: bytes | None) -> int | None:
    return None if value is None else int(json.loads(value)["seq"])


async def start(stack: AsyncExitStack, *, limits: StoreLimits = StoreLimits(),
                server: bool = True) -> DHTNode:
    host = await stack.enter_async_context(running_host(Ed25519Key.generate(), LOOPBACK))
    node = DHTNode(host, server=server, limits=limits)
    await stack.enter_async_context(node.running())
    return node


async def flood(client: DHTNode, target: DHTNode, count: int) -> int:
    """Push ``count`` valid records, each signed by a fresh did:key under its own key,
    from ``client`` straight to ``target``; return how many ``target`` acknowledged."""
    peer = target.host.get_id()
    accepted = 0
    for _ in range(count):
        signer = Ed25519Key.generate()
        key = dht_key(signer.did.did).encode()
        value = record(signer)
        signed = make_signed_put_record(key, value, client.host.get_private_key())
        with trio.move_on_after(5):
            accepted += bool(await client.dht.value_store._store_at_peer(
                peer, key, value, signed))
    return accepted


def run(body: Callable[[AsyncExitStack], Awaitable[Any]], timeout: float = 120) -> Any:
    async def main() -> Any:
        with trio.fail_after(timeout):
            async with AsyncExitStack() as stack:
                return await body(stack)

    return trio.run(main)


async def joined(stack: AsyncExitStack, node: DHTNode, **kwargs: Any) -> DHTNode:
    """A node that bootstrapped through ``node``."""
    other = await start(stack, **kwargs)
    await other.bootstrap(host_addrs(node.host))
    return other


# -- the flood over a real connection ------------------------------------------------------


def test_one_client_with_many_did_keys_is_held_to_its_quota() -> None:
    limits = StoreLimits(peer_records=40)
    flood_size = 150

    async def body(stack: AsyncExitStack) -> None:
        node = await start(stack, limits=limits)
        before = Ed25519Key.generate()
        genuine = await joined(stack, node, server=False)
        await genuine.put(dht_key(before.did.did), record(before, 7))

        client = await joined(stack, node, server=False)
        accepted = await flood(client, node, flood_size)
        assert accepted == limits.peer_records
        assert node.store.refused.get("quota") == flood_size - limits.peer_records
        assert len(node.store.store) <= limits.peer_records + 1
        assert node.store.store.bytes <= limits.max_bytes

        after = Ed25519Key.generate()
        other = await joined(stack, node, server=False)
        await other.put(dht_key(after.did.did), record(after, 3))
        reader = await joined(stack, node, server=False)
        assert seq_of(await reader.get(dht_key(before.did.did))) == 7
        assert seq_of(await reader.get(dht_key(after.did.did))) == 3

    run(body)


def test_many_peer_ids_from_one_address_share_its_quota() -> None:
    """A PeerID costs nothing: three clients from the same address (loopback here), each
    within its own quota, are held together to the address's quota."""
    limits = StoreLimits(peer_records=40, address_records=60)

    async def body(stack: AsyncExitStack) -> None:
        node = await start(stack, limits=limits)
        accepted = []
        for _ in range(3):
            client = await joined(stack, node, server=False)
            accepted.append(await flood(client, node, 30))
        assert accepted == [30, 30, 0]
        assert node.store.refused.get("address") == 30
        assert "quota" not in node.store.refused

    run(body)


def test_the_byte_bound_refuses_new_records_and_keeps_the_held_ones() -> None:
    """Many client peers, each within its quota: the node fills up to its bound, then
    refuses new keys; the genuine record is not evicted and still takes its update."""
    limits = StoreLimits(max_bytes=96 * 1024, peer_records=30)

    async def body(stack: AsyncExitStack) -> None:
        node = await start(stack, limits=limits)
        party = Ed25519Key.generate()
        genuine = await joined(stack, node, server=False)
        await genuine.put(dht_key(party.did.did), record(party, 1))
        accepted = 0
        for _ in range(5):
            client = await joined(stack, node, server=False)
            accepted += await flood(client, node, 30)
        assert 0 < accepted < 150
        assert node.store.refused.get("bytes", 0) == 150 - accepted
        assert node.store.store.bytes <= limits.max_bytes - limits.max_bytes // 16
        assert node.dht.value_store.get(dht_key(party.did.did).encode()) is not None

        await genuine.put(dht_key(party.did.did), record(party, 2))
        reader = await joined(stack, node, server=False)
        assert seq_of(await reader.get(dht_key(party.did.did))) == 2
        assert node.store.store.bytes <= limits.max_bytes

    run(body)


# -- the store's rules, without a network --------------------------------------------------

class _Host:
    """All that :class:`_BoundedValueStore` asks of a host for these tests."""

    def get_id(self) -> Any:
        return SimpleNamespace(to_base58=lambda: "local")


def as_record(value: bytes, key: bytes) -> Record:
    rec = Record()
    rec.key, rec.value = key, value
    return rec


def put_from(store: _BoundedValueStore, sender: str | None, key: bytes,
             value: bytes, source: str = "192.0.2.1") -> None:
    token = _SENDER.set(None if sender is None else (sender, source))
    try:
        store.put_record(key, as_record(value, key))
    finally:
        _SENDER.reset(token)


def test_expired_records_are_dropped_first_and_caps_apply_per_kind() -> None:
    clock = [1000.0]
    limits = StoreLimits(max_bytes=64 * 1024, kinds={ENDPOINT_KIND: KindLimits(3, 4096),
                                                      "note": KindLimits(10, 100)})
    store = _BoundedValueStore(_Host(), limits, lambda: clock[0])  # type: ignore[arg-type]
    keys = [Ed25519Key.generate() for _ in range(5)]
    stale = record(keys[0], ttl=60, now=time.time() - 120)  # already expired
    put_from(store, "a", dht_key(keys[0].did.did).encode(), stale)
    for k in keys[1:3]:
        put_from(store, "a", dht_key(k.did.did).encode(), record(k))
    assert store.store.counts[ENDPOINT_KIND] == 3
    # The kind is full, but one of its records expired: it goes, the new one comes in.
    put_from(store, "b", dht_key(keys[3].did.did).encode(), record(keys[3]))
    assert dht_key(keys[0].did.did).encode() not in store.store
    assert store.store.counts[ENDPOINT_KIND] == 3
    with pytest.raises(StoreRefused, match="holds 3 endpoint records"):
        put_from(store, "b", dht_key(keys[4].did.did).encode(), record(keys[4]))
    # A record this node looked up is cached only if it fits, never raising.
    put_from(store, None, dht_key(keys[4].did.did).encode(), record(keys[4]))
    assert dht_key(keys[4].did.did).encode() not in store.store
    with pytest.raises(StoreRefused, match="exceeds this node's 100"):
        put_from(store, "b", b"/mpcid/note/x", b"{}" * 60)
    assert store.refused == {"kind": 2, "size": 1}  # the looked-up one counts too
    held = sum(len(k) + r.ByteSize() + ENTRY_OVERHEAD for k, (r, _) in store.store.items())
    assert store.store.bytes == held
    store.remove(dht_key(keys[1].did.did).encode())
    store.cleanup_expired()
    assert store.store.counts[ENDPOINT_KIND] == 2


def test_the_quota_window_slides() -> None:
    clock = [0.0]
    limits = StoreLimits(peer_records=2, peer_window=60)
    store = _BoundedValueStore(_Host(), limits, lambda: clock[0])  # type: ignore[arg-type]
    for i in range(2):
        put_from(store, "p", f"/mpcid/note/{i}".encode(), b"{}")
    with pytest.raises(StoreRefused, match="stored 2 records in 60 s"):
        put_from(store, "p", b"/mpcid/note/2", b"{}")
    put_from(store, "q", b"/mpcid/note/2", b"{}")  # another peer has its own quota
    clock[0] = 61.0
    put_from(store, "p", b"/mpcid/note/3", b"{}")


def test_the_address_quota_window_slides() -> None:
    clock = [0.0]
    limits = StoreLimits(peer_records=10, address_records=3, peer_window=60)
    store = _BoundedValueStore(_Host(), limits, lambda: clock[0])  # type: ignore[arg-type]
    for i in range(3):
        put_from(store, f"p{i}", f"/mpcid/note/{i}".encode(), b"{}")
    with pytest.raises(StoreRefused, match="peers from 192.0.2.1 stored 3 records in 60 s"):
        put_from(store, "p9", b"/mpcid/note/3", b"{}")
    put_from(store, "p9", b"/mpcid/note/3", b"{}", source="2001:db8::/64")
    clock[0] = 61.0
    put_from(store, "p0", b"/mpcid/note/4", b"{}")
    with pytest.raises(UsageError):
        StoreLimits(address_records=0)


def test_kind_labels_and_limit_checks() -> None:
    assert kind_label(dht_key(Ed25519Key.generate().did.did).encode()) == ENDPOINT_KIND
    assert kind_label(b"/mpcid/invitation/abc") == "invitation"
    assert kind_label(b"/ipns/xyz") == "/ipns"
    assert StoreLimits().of("decline").max_value_bytes == 2048
    assert StoreLimits().of("unknown") == StoreLimits().other_kinds
    with pytest.raises(UsageError):
        StoreLimits(peer_records=0)
    with pytest.raises(UsageError):
        StoreLimits(max_bytes=1000)
    with pytest.raises(UsageError):
        KindLimits(0, 10)
