"""Reachability, the record's NAT fields, who opens a channel, and hole punching on loopback
(``specs/discovery.md`` 8). Punching through real NATs: tests/broker/test_nat.py (hence
this module's other name: test modules share one namespace)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p import nat
from mpcid.p2p.errors import ConnectFailed, RemoteProtocolError
from mpcid.p2p.records import EndpointRecord

PUBLIC, NAT = nat.PUBLIC, nat.NAT


@pytest.mark.parametrize("lower, mine, theirs, opens", [
    (True, None, None, True), (False, None, None, False),      # no records: lower opens
    (True, PUBLIC, PUBLIC, True), (False, PUBLIC, PUBLIC, False),
    (True, NAT, NAT, True), (False, NAT, NAT, False),          # both NATed: punch, lower
    (True, NAT, PUBLIC, True), (False, PUBLIC, NAT, False),    # NATed lower dials out
    (True, PUBLIC, NAT, False), (False, NAT, PUBLIC, True),    # NATed higher dials out
    (True, PUBLIC, None, True), (False, NAT, None, False),     # unknown: as without
])
def test_exactly_one_side_opens_each_pair(lower: bool, mine: str | None,
                                          theirs: str | None, opens: bool) -> None:
    assert nat.initiates(lower, mine, theirs) is opens
    assert nat.initiates(not lower, theirs, mine) is not opens


def test_reach() -> None:
    assert nat.reach("10.0.0.2", "10.0.0.2") == PUBLIC
    assert nat.reach("192.168.1.2", "203.0.113.7") == NAT
    assert nat.reach("::1", "0:0::1") == PUBLIC
    assert nat.reach(None, "203.0.113.7") is None and nat.reach("10.0.0.2", None) is None
    assert nat.local_address_towards("127.0.0.1") == "127.0.0.1"
    assert nat.local_address_towards("not an ip") is None


def test_record_fields_round_trip() -> None:
    key = Ed25519Key.generate()
    record, _ = EndpointRecord.create(
        key, 1, time.time(), tcp=["192.168.1.2:4000"],
        extra=nat.record_fields(NAT, ["203.0.113.7:4000", "[2001:db8::1]:4000"]))
    assert nat.record_reach(record) == NAT
    assert nat.record_observed(record) == [("203.0.113.7", 4000), ("2001:db8::1", 4000)]
    bare, _ = EndpointRecord.create(key, 2, time.time(), tcp=["198.51.100.1:4000"])
    assert nat.record_reach(bare) is None and nat.record_observed(bare) == []
    odd, _ = EndpointRecord.create(key, 3, time.time(),
                                   extra={"reach": "moon", "observed": ["x", 5, "1.2.3.4:9"]})
    assert nat.record_reach(odd) is None
    assert nat.record_observed(odd) == [("1.2.3.4", 9)]


def test_private_endpoints_of_another_nat_are_not_tried() -> None:
    key = Ed25519Key.generate()
    nated, _ = EndpointRecord.create(key, 1, time.time(), tcp=["192.168.2.2:4000"],
                                     extra=nat.record_fields(NAT, ["203.0.113.7:4000"]))
    public, _ = EndpointRecord.create(key, 2, time.time(), tcp=["198.51.100.1:4000"],
                                      extra=nat.record_fields(PUBLIC, []))
    assert not nat.may_reach_directly(NAT, "198.51.100.9", nated)   # another NAT
    assert nat.may_reach_directly(NAT, "203.0.113.7", nated)        # the same NAT
    assert nat.may_reach_directly(PUBLIC, "198.51.100.9", nated)
    assert nat.may_reach_directly(None, None, nated)
    assert nat.may_reach_directly(NAT, "198.51.100.9", public)


@pytest.mark.parametrize("target", [("127.0.0.1", 80), ("::1", 80), ("0.0.0.0", 80),
                                    ("224.0.0.1", 80), ("169.254.1.1", 80),
                                    ("fe80::1", 80), ("example.org", 80),
                                    ("203.0.113.7", 0)])
def test_punch_targets_are_routable_ip_literals(target: tuple[str, int]) -> None:
    with pytest.raises(RemoteProtocolError):
        nat.check_target(*target)


def test_punch_targets_may_be_private_or_public() -> None:
    assert nat.check_target("192.168.1.2", 4000) == ("192.168.1.2", 4000)
    assert nat.check_target("2001:db8::1", 4000) == ("2001:db8::1", 4000)


@pytest.mark.parametrize("message", [
    {"t": "connect"}, {"t": "connect", "addrs": []}, {"t": "connect", "addrs": "1.2.3.4:5"},
    {"t": "connect", "addrs": ["1.2.3.4:5"] * 5}, {"t": "connect", "addrs": ["1.2.3.4"]},
    {"t": "connect", "addrs": ["127.0.0.1:80"]}, {"t": "connect", "addrs": ["host:80"]},
])
def test_connect_messages_are_checked(message: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError):
        nat.read_targets(message)


async def _pair() -> tuple[nat.PunchChannel, socket.socket]:
    mine, theirs = socket.socketpair()
    return await nat.PunchChannel.over(mine), theirs


@pytest.mark.parametrize("raw, error", [
    (struct.pack(">H", 5000), "punch message of 5000 bytes"),
    (struct.pack(">H", 3) + b"{{{", "not JSON"),
    (struct.pack(">H", 12) + b'{"t":"sync"}', "expected a punch 'connect' message"),
    (b"\x00", "closed"),
])
def test_bad_messages_are_refused(raw: bytes, error: str) -> None:
    async def main() -> None:
        channel, peer = await _pair()
        peer.sendall(raw)
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises((RemoteProtocolError, ConnectFailed), match=error):
            await channel.receive("connect", asyncio.get_running_loop().time() + 2)
        channel.close()
        peer.close()

    asyncio.run(main())


def test_a_peer_that_never_answers_ends_within_the_bound() -> None:
    """The other side reads the request and says nothing: the attempt fails by its
    deadline (the caller then uses the relay circuit)."""
    async def main() -> float:
        channel, peer = await _pair()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ConnectFailed, match="no punch 'connect' message in time"):
            await nat.punch_as_initiator(channel, "192.0.2.10", start + 0.5)
        channel.close()
        peer.close()
        return loop.time() - start

    assert asyncio.run(main()) < 1.5


def test_simultaneous_open_connects_from_the_announced_port() -> None:
    """The connection leaves from the announced port (the one a port-preserving NAT maps
    to the announced public endpoint). Loopback answers an early SYN with a reset, so two
    simultaneous opens rarely meet here; through NATs that drop it silently they do
    (tests/broker/test_nat.py). Here the other side listens."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        holder = nat.bound_socket()
        port = holder.getsockname()[1]
        server = socket.create_server(("127.0.0.1", 0))
        server.setblocking(False)
        target = server.getsockname()[1]
        sock, (accepted, _) = await asyncio.gather(
            nat.simultaneous_open(port, [("127.0.0.1", target)], loop.time() + 5),
            loop.sock_accept(server))
        assert sock.getsockname()[1] == port and accepted.getpeername()[1] == port
        await loop.sock_sendall(sock, b"hello")
        assert await loop.sock_recv(accepted, 5) == b"hello"
        for s in (sock, accepted, holder, server):
            s.close()

    asyncio.run(main())


def test_simultaneous_open_without_a_peer_gives_up_by_its_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        holder, silent = nat.bound_socket(), nat.bound_socket()  # nobody connects from it
        start = loop.time()
        with pytest.raises(ConnectFailed, match="hole punching failed"):
            await nat.simultaneous_open(holder.getsockname()[1],
                                        [("127.0.0.1", silent.getsockname()[1])],
                                        start + 0.6)
        holder.close()
        silent.close()
        return loop.time() - start

    assert asyncio.run(main()) < 1.5


def test_a_whole_punch_over_a_coordination_stream() -> None:
    """Initiator and responder over a socket pair (standing in for the relayed stream),
    each announcing 127.0.0.1 with its fresh port: the punched sockets are each other's.
    Loopback is no punch target for a peer, so the responder's answer is checked by
    read_targets here only through its shape."""
    async def main() -> None:
        mine, theirs = socket.socketpair()
        a_channel = await nat.PunchChannel.over(mine)
        b_channel = await nat.PunchChannel.over(theirs)
        loop = asyncio.get_running_loop()
        until = loop.time() + 2
        with pytest.raises(RemoteProtocolError, match="not a routable address"):
            await asyncio.gather(nat.punch_as_initiator(a_channel, "127.0.0.1", until),
                                 nat.punch_as_responder(b_channel, "127.0.0.1", until))
        a_channel.close()
        b_channel.close()

    asyncio.run(main())


def test_messages_are_length_prefixed_json() -> None:
    async def main() -> None:
        channel, peer = await _pair()
        await channel.send({"t": "sync"})
        size = struct.unpack(">H", peer.recv(2))[0]
        assert json.loads(peer.recv(size)) == {"t": "sync"}
        channel.close()
        peer.close()

    asyncio.run(main())
