"""How a party waits for the record of a peer it dials (:meth:`Paths.open` with a DHT),
against a presence that answers as a node would: awaited where the nodes serve it
(``specs/discovery.md`` 4.1), polled where they do not, never in a tight loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from mpcid.broker import paths as paths_module
from mpcid.broker.paths import Paths, PathSettings
from mpcid.broker.session import PartyEndpoint
from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.errors import ConnectFailed
from mpcid.p2p.records import EndpointRecord


class NodeLike:
    """A presence whose nodes hold ``records`` (by DID, in publication order)."""

    def __init__(self, *, serves: bool = True, wait_for_real: bool = True,
                 records: Sequence[EndpointRecord] = ()) -> None:
        self.serves = serves
        self.wait_for_real = wait_for_real
        self.records = list(records)
        self.awaits: list[int] = []
        self.resolves = 0
        self.reach = None
        self.observed_ip = None
        self.addrs: list[str] = []

    async def await_record(self, did: str, after: int, wait: float
                           ) -> tuple[EndpointRecord | None, bool]:
        self.awaits.append(after)
        if not self.serves:
            return None, False
        for record in self.records:
            if record.seq > after:
                return record, True
        if self.wait_for_real:
            await asyncio.sleep(wait)
        return None, True

    async def resolve(self, did: str) -> EndpointRecord | None:
        self.resolves += 1
        return self.records[-1] if self.records else None

    async def stop(self) -> None:
        pass


def open_channel(presence: NodeLike, seconds: float) -> tuple[str, float]:
    """What Paths.open says after ``seconds`` of trying, and how long it took."""
    key = Ed25519Key.generate()
    peer = PartyEndpoint(index=1, did=Ed25519Key.generate().did.did, host=None, port=None)

    async def scenario() -> tuple[str, float]:
        paths = Paths(key, PathSettings(bootstrap=("/ip4/127.0.0.1/tcp/1/p2p/x",)))
        paths.presence = presence  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await paths.open(peer, lambda: None, loop.time() + seconds,  # type: ignore[arg-type,return-value]
                             "the peer", lower=True)
        except ConnectFailed as exc:
            return str(exc), loop.time() - started
        return "opened", loop.time() - started

    return asyncio.run(scenario())


def withdrawn(seq: int) -> EndpointRecord:
    """A record without endpoints (a party that left): found, and nothing to dial."""
    return EndpointRecord.create(Ed25519Key.generate(), seq, time.time(), tcp=())[0]


def test_a_peer_that_never_publishes_is_awaited_not_polled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths_module, "AWAIT_WAIT", 0.3)
    node = NodeLike()
    said, took = open_channel(node, 1.0)
    assert "no path to the peer" in said and took >= 1.0
    assert 3 <= len(node.awaits) <= 5 and node.resolves == 0  # one request per wait


def test_a_node_that_answers_at_once_with_nothing_is_not_hammered() -> None:
    node = NodeLike(wait_for_real=False)  # e.g. a node with no room for another wait
    said, _ = open_channel(node, 1.0)
    assert "no path" in said
    assert 3 <= len(node.awaits) <= 8  # the polling pauses: 0.05, 0.1, 0.2, 0.4, ...


def test_without_the_protocol_the_record_is_polled_for() -> None:
    node = NodeLike(serves=False)
    said, _ = open_channel(node, 1.0)
    assert "no path" in said
    assert node.awaits == [-1] and 3 <= node.resolves <= 8


def test_after_a_record_without_a_way_in_the_next_one_is_awaited(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths_module, "AWAIT_WAIT", 0.3)
    node = NodeLike(records=[withdrawn(5), withdrawn(8)])
    open_channel(node, 1.0)
    assert node.awaits[:3] == [-1, 5, 8] and set(node.awaits[2:]) == {8}


def test_the_fake_stands_in_only_for_what_presence_offers() -> None:
    from mpcid.broker.presence import Presence

    needed = {name for name in dir(Presence) if not name.startswith("_")}
    used = {"await_record", "resolve", "reach", "observed_ip", "addrs", "stop"}
    assert used <= needed


def test_a_missing_party_is_described_by_what_the_dht_said() -> None:
    """Never found, offline (a withdrawn record: no endpoints), or found but unreachable:
    three different messages (a withdrawn record is not "found")."""
    from mpcid.p2p.records import EndpointRecord

    key, peer = Ed25519Key.generate(), Ed25519Key.generate()
    paths = Paths(key, PathSettings())
    assert paths.whereabouts(1).startswith("not found in the DHT")
    withdrawn, _ = EndpointRecord.create(peer, 2, time.time(), tcp=(), addrs=())
    paths.records[1] = withdrawn
    assert paths.whereabouts(1) == "offline (it withdrew its endpoint record)"
    live, _ = EndpointRecord.create(peer, 3, time.time(), tcp=("198.51.100.7:4100",),
                                    addrs=())
    paths.records[1] = live
    assert paths.whereabouts(1) == ("found in the DHT at 198.51.100.7:4100, but not "
                                    "reachable from here")


def test_a_withdrawn_record_means_offline_not_found() -> None:
    said, _ = open_channel(NodeLike(records=[withdrawn(5)], wait_for_real=False), 0.5)
    assert said == "no path to the peer (offline (it withdrew its endpoint record))"
