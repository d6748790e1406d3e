"""The discovery DHT on loopback: 20 py-libp2p hosts with mpcid's record validator.

Integration: real hosts and sockets in one trio loop; every wait is bounded."""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.dht import DHTNode
from mpcid.p2p.host import host_addrs, running_host
from mpcid.p2p.records import EndpointRecord, dht_key

pytestmark = pytest.mark.integration

N = 20


def record(key: Ed25519Key, seq: int, now: float | None = None, port: int = 4000,
           ttl: int = 600) -> bytes:
    _, value = EndpointRecord.create(key, seq, now if now is not None else time.time(),
                                     ttl=ttl, tcp=[f"127.0.0.1:{port}"])
    return value


def seq_of(value: bytes | None) -> int | None:
    return None if value is None else int(json.loads(value)["seq"])


async def network(stack: AsyncExitStack, n: int) -> list[DHTNode]:
    nodes = []
    for i in range(n):
        host = await stack.enter_async_context(
            running_host(Ed25519Key.from_seed(bytes([i + 1]) * 32), ["/ip4/127.0.0.1/tcp/0"]))
        node = DHTNode(host)
        await stack.enter_async_context(node.running())
        nodes.append(node)
    boot = host_addrs(nodes[0].host)
    for node in nodes[1:]:
        await node.bootstrap(boot)
        await nodes[0].add_peer(node.host.get_id().to_base58())
    for node in nodes[1:]:  # a second round lets everyone learn about the late joiners
        await node.dht.refresh_routing_table()
    return nodes


def run(body: Any, n: int = N) -> Any:
    async def main() -> Any:
        # The deadline encloses the exit stack: cancel scopes must nest with the services.
        with trio.fail_after(120):
            async with AsyncExitStack() as stack:
                nodes = await network(stack, n)
                return await body(nodes)

    return trio.run(main)


def test_a_record_put_by_one_is_found_by_the_others() -> None:
    party = Ed25519Key.generate()
    key = dht_key(party.did.did)

    async def body(nodes: list[DHTNode]) -> None:
        await nodes[5].put(key, record(party, 1))
        holders = [i for i, n in enumerate(nodes) if n.dht.value_store.get(key.encode())]
        # Spread to the closest peers, not only to the publisher's direct neighbours.
        assert len(holders) >= 3, holders
        for reader in (nodes[17], nodes[0], nodes[11]):
            assert seq_of(await reader.get(key)) == 1
        assert await nodes[3].get(dht_key(Ed25519Key.generate().did.did)) is None

    run(body)


def test_newer_record_wins_and_replays_and_forgeries_are_refused() -> None:
    party, other = Ed25519Key.generate(), Ed25519Key.generate()
    key = dht_key(party.did.did)

    async def body(nodes: list[DHTNode]) -> None:
        await nodes[2].put(key, record(party, 1))
        await nodes[9].put(key, record(party, 2, port=4001))
        assert seq_of(await nodes[14].get(key)) == 2
        # Replay of the older record by a node that never saw the newer one locally.
        with pytest.raises(Exception):
            await nodes[9].put(key, record(party, 1))
        assert seq_of(await nodes[19].get(key)) == 2
        # Forged: another DID's valid record under this DID's key; and a tampered one.
        forged = record(other, 5)
        tampered = json.loads(record(party, 9))
        tampered["tcp"] = ["203.0.113.7:4000"]
        expired = record(party, 7, now=time.time() - 7200, ttl=600)
        for bad in (forged, json.dumps(tampered).encode(), expired):
            with pytest.raises(Exception):
                await nodes[4].put(key, bad)
        assert seq_of(await nodes[7].get(key)) == 2

    run(body)


def test_malicious_node_pushing_records_directly_is_refused() -> None:
    """A node that skips its own validation and sends PUT_VALUE straight to peers."""
    party, other = Ed25519Key.generate(), Ed25519Key.generate()
    key = dht_key(party.did.did)

    async def body(nodes: list[DHTNode]) -> None:
        await nodes[1].put(key, record(party, 3))
        mallory = nodes[13]
        mallory.dht.value_store.remove(key.encode())  # it sends what it holds otherwise
        tampered = json.loads(record(party, 8))
        tampered["tcp"] = ["198.51.100.1:1"]
        pushes = {"forged": record(other, 9), "tampered": json.dumps(tampered).encode(),
                  "replayed": record(party, 1),
                  "expired": record(party, 10, now=time.time() - 7200, ttl=600)}
        victims = [n for n in nodes if n is not mallory][:6]
        for name, value in pushes.items():
            for victim in victims:
                accepted = await mallory.dht.value_store._store_at_peer(
                    victim.host.get_id(), key.encode(), value)
                assert not accepted, name
        for victim in victims:
            stored = victim.dht.value_store.get(key.encode())
            assert stored is None or seq_of(stored.value) == 3
        assert seq_of(await nodes[18].get(key)) == 3

    run(body)


def test_a_put_reaches_the_bootstrap_node_even_when_the_lookup_hangs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a withdrawal at the end of a session was lost when the network lookup
    for the closest peers outlasted the party's deadline (peers that had just gone); the
    bootstrap node, where readers start, kept the old record."""
    party = Ed25519Key.generate()
    key = dht_key(party.did.did)

    async def body(nodes: list[DHTNode]) -> None:
        publisher = nodes[3]
        await publisher.put(key, record(party, 1))
        assert seq_of(nodes[0].dht.value_store.get(key.encode()).value) == 1

        async def hang(*args: object) -> list[object]:
            await trio.sleep_forever()
            return []

        monkeypatch.setattr(publisher.dht.peer_routing, "find_closest_peers_network", hang)
        with trio.move_on_after(3):
            await publisher.put(key, record(party, 2))
        assert seq_of(nodes[0].dht.value_store.get(key.encode()).value) == 2

    run(body, n=4)


def test_a_key_missing_at_the_bootstrap_node_is_looked_up_network_wide_after_a_pause(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A party polls for a peer that may not have published yet: the first misses ask
    only the bootstrap node (one round trip each); once the key has been missing there
    for FIRST_FULL_LOOKUP seconds, the lookup asks the network, which holds it."""
    import mpcid.p2p.dht as dht_module

    monkeypatch.setattr(dht_module, "FIRST_FULL_LOOKUP", 0.5)
    party = Ed25519Key.generate()
    key = dht_key(party.did.did)

    async def body(nodes: list[DHTNode]) -> None:
        await nodes[5].put(key, record(party, 4))
        nodes[0].dht.value_store.remove(key.encode())  # only the others hold it now
        reader = nodes[16]
        assert reader.bootstrap_peers == [nodes[0].host.get_id().to_base58()]
        asked: list[str] = []
        real_get_value = reader.dht.get_value

        async def counted(k: str) -> Any:
            asked.append(k)
            return await real_get_value(k)

        monkeypatch.setattr(reader.dht, "get_value", counted)
        assert await reader.get(key) is None
        assert await reader.get(key) is None
        assert asked == []
        await trio.sleep(0.6)
        assert seq_of(await reader.get(key)) == 4
        assert asked == [key]

    run(body)
