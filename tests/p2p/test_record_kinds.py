"""Record kinds in the /mpcid/ namespace (specs/discovery.md 2.7): keys, dispatch by kind,
unknown kinds refused, endpoint records unchanged; then through DHTNode and Discovery.

The kind used here is a toy, ``note``: the value must be ``b"note:" + rest`` followed by
any digits, and the most digits win. p2p knows no real kind (those live in the broker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidProof
from mpcid.p2p.errors import InvalidRecord
from mpcid.p2p.records import (MAX_KIND_VALUE_BYTES, EndpointRecord, KindValidator,
                               MpcidValidator, dht_key, kind_key, kind_of)

DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


class Note:
    """The toy kind; remembers the ``now`` it was given."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def validate(self, key: str, value: bytes, now: float) -> None:
        self.seen.append(now)
        rest = key.split("/", 3)[3]
        prefix = b"note:" + rest.encode()
        if not value.startswith(prefix) or not value[len(prefix):].isdigit():
            raise InvalidRecord(f"not a note for {rest}")

    def select(self, key: str, values: Sequence[bytes], now: float) -> int:
        valid = []
        for i, value in enumerate(values):
            try:
                self.validate(key, value, now)
            except InvalidRecord:
                continue
            valid.append((len(value), i))
        if not valid:
            raise InvalidRecord("no valid note")
        return max(valid, key=lambda pair: (pair[0], -pair[1]))[1]


def kinds(note: KindValidator | None = None) -> dict[str, KindValidator]:
    return {"note": note or Note()}


def endpoint(key: Ed25519Key, seq: int = 1) -> bytes:
    return EndpointRecord.create(key, seq, time.time(), ttl=600, tcp=["127.0.0.1:1"])[1]


# --- keys ----------------------------------------------------------------------------------


def test_kind_keys() -> None:
    assert kind_key("note", "abc/def") == "/mpcid/note/abc/def"
    assert kind_of("/mpcid/note/abc/def") == ("note", "abc/def")
    assert kind_of("/mpcid/x-1/y") == ("x-1", "y")
    assert kind_of(f"/mpcid/{DID}") is None  # an endpoint record's key


@pytest.mark.parametrize("key", ["/other/note/x", "/mpcid/note", "/mpcid/note/",
                                 "/mpcid/Note/x", "/mpcid/1note/x", "/mpcid//x",
                                 "/mpcid/no:te/x", "/mpcid/" + "a" * 33 + "/x", "note/x"])
def test_bad_kind_keys(key: str) -> None:
    with pytest.raises(InvalidRecord):
        kind_of(key)


@pytest.mark.parametrize("kind", ["", "Note", "did:key", "a/b", "-x", "a" * 33])
def test_bad_kind_names(kind: str) -> None:
    with pytest.raises(InvalidRecord):
        kind_key(kind, "x")
    with pytest.raises(InvalidRecord):
        MpcidValidator(time.time, {kind: Note()})


# --- dispatch ------------------------------------------------------------------------------


def test_kind_gets_its_keys_and_the_clock() -> None:
    note = Note()
    validator = MpcidValidator(lambda: 1234.0, kinds(note))
    validator.validate("/mpcid/note/a", b"note:a7")
    assert note.seen == [1234.0]
    with pytest.raises(InvalidRecord, match="not a note"):
        validator.validate("/mpcid/note/a", b"note:b7")
    assert validator.select("/mpcid/note/a", [b"note:a1", b"junk", b"note:a123", b"note:a12"]
                            ) == 2


def test_unknown_kind_is_refused() -> None:
    validator = MpcidValidator(time.time, kinds())
    for call in (lambda: validator.validate("/mpcid/other/a", b"x"),
                 lambda: validator.select("/mpcid/other/a", [b"x"]),
                 lambda: validator.check_key("/mpcid/other/a")):
        with pytest.raises(InvalidRecord, match="unknown"):
            call()
    with pytest.raises(InvalidRecord, match="unknown"):  # no kinds at all: the old behaviour
        MpcidValidator(time.time).validate("/mpcid/note/a", b"note:a1")
    validator.check_key("/mpcid/note/a")
    validator.check_key(f"/mpcid/{DID}")
    with pytest.raises(InvalidRecord):
        validator.check_key("/mpcid/did:key:zNope")


def test_endpoint_records_keep_their_rules() -> None:
    party, other = Ed25519Key.generate(), Ed25519Key.generate()
    validator = MpcidValidator(time.time, kinds())
    key = dht_key(party.did.did)
    validator.validate(key, endpoint(party))
    assert validator.select(key, [endpoint(party, 1), endpoint(party, 2)]) == 1
    with pytest.raises(InvalidRecord):
        validator.validate(key, endpoint(other))
    with pytest.raises(InvalidRecord):  # an endpoint record is not a note, nor the reverse
        validator.validate("/mpcid/note/a", endpoint(party))
    with pytest.raises((InvalidRecord, InvalidProof)):
        validator.validate(key, b"note:a1")


def test_oversized_values_never_reach_the_kind() -> None:
    note = Note()
    validator = MpcidValidator(time.time, kinds(note))
    big = b"note:a" + b"1" * MAX_KIND_VALUE_BYTES
    with pytest.raises(InvalidRecord, match="exceeds"):
        validator.validate("/mpcid/note/a", big)
    assert note.seen == []
    assert validator.select("/mpcid/note/a", [big, b"note:a1"]) == 1
    with pytest.raises(InvalidRecord):
        validator.select("/mpcid/note/a", [big])


@given(st.text(max_size=80), st.binary(max_size=200))
def test_arbitrary_keys_and_values_raise_only_record_errors(key: str, value: bytes) -> None:
    validator = MpcidValidator(time.time, kinds())
    try:
        validator.validate(key, value)
    except (InvalidRecord, InvalidProof):
        pass


# --- through the DHT -----------------------------------------------------------------------


@pytest.mark.integration
def test_dht_nodes_store_registered_kinds_only() -> None:
    from mpcid.p2p.dht import DHTNode
    from mpcid.p2p.host import host_addrs, running_host

    async def main() -> None:
        with trio.fail_after(60):
            async with AsyncExitStack() as stack:
                nodes = []
                for i, known in enumerate((True, True, True, False)):
                    host = await stack.enter_async_context(running_host(
                        Ed25519Key.from_seed(bytes([i + 40]) * 32), ["/ip4/127.0.0.1/tcp/0"]))
                    node = DHTNode(host, kinds=kinds() if known else None)
                    await stack.enter_async_context(node.running())
                    nodes.append(node)
                for node in nodes[1:]:
                    await node.bootstrap(host_addrs(nodes[0].host))
                    await nodes[0].add_peer(node.host.get_id().to_base58())
                await nodes[1].put("/mpcid/note/a", b"note:a12")
                assert await nodes[2].get("/mpcid/note/a") == b"note:a12"
                with pytest.raises(Exception):  # an older (shorter) note loses
                    await nodes[1].put("/mpcid/note/a", b"note:a1")
                with pytest.raises(Exception):
                    await nodes[1].put("/mpcid/note/a", b"note:b12")
                with pytest.raises(Exception):
                    await nodes[1].put("/mpcid/other/a", b"x")
                # A node without the kind refuses to store it when pushed.
                assert not nodes[3].dht.value_store.get(b"/mpcid/note/a")

    trio.run(main)


@pytest.mark.integration
def test_discovery_put_value_and_get_value() -> None:
    from mpcid.p2p.discovery import Discovery, DiscoveryConfig

    async def main() -> None:
        local = ("/ip4/127.0.0.1/tcp/0",)
        server = Discovery(Ed25519Key.generate(), DiscoveryConfig(listen=local, kinds=kinds()))
        addrs = await server.start()
        clients = [Discovery(Ed25519Key.generate(), DiscoveryConfig(
            listen=local, bootstrap=(addrs[0],), server=False, kinds=kinds()))
            for _ in range(2)]
        try:
            for client in clients:
                await client.start()
            writer, reader = clients
            await writer.put_value("/mpcid/note/z", b"note:z99")
            assert await reader.get_value("/mpcid/note/z") == b"note:z99"
            assert await reader.get_value("/mpcid/note/y") is None
            with pytest.raises(InvalidRecord, match="not a note"):
                await writer.put_value("/mpcid/note/z", b"note:y99")
            with pytest.raises(InvalidRecord, match="unknown"):
                await writer.put_value("/mpcid/other/z", b"x")
            with pytest.raises(InvalidRecord, match="unknown"):
                await reader.get_value("/mpcid/other/z")
        finally:
            for discovery in (*clients, server):
                await discovery.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
