"""Circuit relay v2 (:mod:`mpcid.p2p.relay`): three loopback hosts in one trio thread,
R the relay, T the target (reserved on R) and S the source, which reaches T only through R.

The last test runs the whole mpcid relay fallback: our Noise channel inside a libp2p stream
inside the circuit, with a record of every byte R forwarded.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.stream_muxer.yamux.yamux import (TYPE_DATA, TYPE_WINDOW_UPDATE,
                                             YAMUX_HEADER_FORMAT, Yamux)

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import UsageError
from mpcid.p2p.bridge import TrioThread
from mpcid.p2p.channel import ChannelProtocol, over_socket
from mpcid.p2p.errors import ConnectFailed
from mpcid.p2p.host import connect, host_addrs, libp2p_key_pair, running_host
from mpcid.p2p.noise import ChannelConfig
from mpcid.p2p.relay import (HOP_PROTOCOL_ID, RelayLimits, circuit_addr, dial_circuit,
                             libp2p_limits, relay_service, reservation, reservation_source,
                             reserve)
from mpcid.p2p.relay import _BufferedReads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from channel_apps import Acceptor, Sender  # noqa: E402  (this folder)
from channel_apps import run as bounded_run  # noqa: E402

pytestmark = pytest.mark.integration

MakeConfig = Callable[..., ChannelConfig]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
ECHO = "/mpcid/test/echo/1.0.0"
CHANNEL = "/mpcid/channel/1"
TIMEOUT = 20.0


run = functools.partial(bounded_run, timeout=TIMEOUT)


@asynccontextmanager
async def relay_trio(limits: RelayLimits | None = None, *keys: Ed25519Key
                     ) -> AsyncIterator[tuple[TrioThread, IHost, IHost, IHost]]:
    """A bridge with R (a relay with ``limits``), T (reserved on R) and S, all on
    loopback; everything stopped on exit."""
    r_key, t_key, s_key = (keys or (Ed25519Key.generate(), Ed25519Key.generate(),
                                    Ed25519Key.generate()))
    bridge = TrioThread()
    await bridge.start()
    try:
        r = await bridge.enter_context(running_host(r_key, [LOOPBACK]))
        await bridge.enter_context(relay_service(r, limits))
        t = await bridge.enter_context(running_host(t_key, [LOOPBACK]))
        s = await bridge.enter_context(running_host(s_key, [LOOPBACK]))
        yield bridge, r, t, s
    finally:
        await bridge.stop()


async def reserve_target(bridge: TrioThread, r: IHost, t: IHost) -> str:
    """T reserves on R; returns T's one circuit address."""
    (addr,) = await bridge.enter_context(reservation(t, host_addrs(r)[0]))
    return addr


def peer(host: IHost) -> str:
    return host.get_id().to_base58()


async def transport_addrs(bridge: TrioThread, host: IHost, other: IHost) -> list[list[str]]:
    """The transport addresses of each connection ``host`` has to ``other``."""
    async def read() -> list[list[str]]:
        conns = host.get_network().get_connections(other.get_id())
        return [[str(a) for a in c.get_transport_addresses()] for c in conns]
    return await bridge.call(read)


async def echo(stream: INetStream) -> None:
    data = await stream.read(65536)
    await stream.write(b"via relay: " + data)
    await stream.close()


# -- configuration ------------------------------------------------------------------------


def test_limits_default_to_a_public_node_and_map_to_libp2p() -> None:
    limits = RelayLimits()
    assert (limits.max_reservations, limits.max_circuits, limits.duration, limits.data,
            limits.max_reservations_per_ip) == (128, 64, 3600, 1 << 30, 8)
    theirs = libp2p_limits(RelayLimits(duration=60, data=1000, max_reservations=2,
                                       max_circuits=3, reservation_ttl=120))
    assert (theirs.duration, theirs.data, theirs.max_reservations, theirs.max_circuit_conns,
            theirs.reservation_ttl) == (60, 1000, 2, 3, 120)
    with pytest.raises(UsageError, match="max_reservations must be at least 1"):
        RelayLimits(max_reservations=0)
    with pytest.raises(UsageError, match="data must be 0"):
        RelayLimits(data=-1)
    with pytest.raises(UsageError, match="max_reservations_per_ip must be at least 1"):
        RelayLimits(max_reservations_per_ip=0)


def test_reservations_are_counted_per_ipv4_address_and_ipv6_64() -> None:
    assert reservation_source(("127.0.0.1", 4001)) == "127.0.0.1"
    assert reservation_source(("2001:db8:1:2:3::9", 1)) == "2001:db8:1:2::/64"
    assert reservation_source(("2001:db8:1:2:ffff::1", 1)) == "2001:db8:1:2::/64"
    assert reservation_source(("::ffff:192.0.2.7", 1)) == "192.0.2.7"
    assert reservation_source(None) == "unknown"


# -- reaching a peer through the relay ----------------------------------------------------


def test_source_reaches_target_only_through_the_relay() -> None:
    async def main() -> None:
        async with relay_trio() as (bridge, r, t, s):
            addr = await reserve_target(bridge, r, t)
            assert addr == circuit_addr(host_addrs(r)[0], peer(t))
            assert addr.endswith(f"/p2p/{peer(r)}/p2p-circuit/p2p/{peer(t)}")

            async def serve() -> None:
                t.set_stream_handler(TProtocol(ECHO), echo)
            await bridge.call(serve)

            began = time.perf_counter()
            assert await bridge.call(dial_circuit, s, addr) == peer(t)
            dial_ms = (time.perf_counter() - began) * 1e3

            # S's one connection to T, and T's to S, run over the circuit, not TCP.
            (s_side,) = await transport_addrs(bridge, s, t)
            (t_side,) = await transport_addrs(bridge, t, s)
            for addrs in (s_side, t_side):
                assert addrs and all("/p2p-circuit" in a for a in addrs), addrs
                assert not any(a.startswith("/ip4/") for a in addrs), addrs
            assert await transport_addrs(bridge, s, r)  # S does hold a TCP link to R

            # A custom protocol stream rides the relayed connection (no new dial).
            async def exchange() -> bytes:
                stream = await s.new_stream(t.get_id(), [TProtocol(ECHO)])
                await stream.write(b"hello T")
                reply = await stream.read(65536)
                await stream.close()
                return reply
            assert await bridge.call(exchange) == b"via relay: hello T"
            assert len(await transport_addrs(bridge, s, t)) == 1
            # Dialing again reuses the connection.
            assert await bridge.call(dial_circuit, s, addr) == peer(t)
            assert len(await transport_addrs(bridge, s, t)) == 1
            print(f"circuit dial {dial_ms:.1f} ms")

    run(main)


def test_a_peer_without_a_reservation_cannot_be_reached() -> None:
    async def main() -> None:
        async with relay_trio() as (bridge, r, t, s):
            await bridge.call(connect, t, host_addrs(r)[0])  # connected, not reserved
            with pytest.raises(ConnectFailed,
                               match="holds no reservation on that relay") as caught:
                await bridge.call(dial_circuit, s, circuit_addr(host_addrs(r)[0], peer(t)))
            assert caught.value.hint.startswith("the peer is offline")
            assert await transport_addrs(bridge, s, t) == []

    run(main)


def test_bad_addresses_are_usage_errors_and_non_relays_are_named() -> None:
    async def main() -> None:
        async with relay_trio() as (bridge, r, t, s):
            with pytest.raises(UsageError, match="not a relay circuit address"):
                await bridge.call(dial_circuit, s, host_addrs(t)[0])
            # T is a libp2p host but no relay.
            with pytest.raises(ConnectFailed, match="is not a circuit relay"):
                await bridge.call(reserve, s, host_addrs(t)[0])

    run(main)


def test_the_relays_reservation_limit_is_applied() -> None:
    async def main() -> None:
        async with relay_trio(RelayLimits(max_reservations=1)) as (bridge, r, t, s):
            await reserve_target(bridge, r, t)
            with pytest.raises(ConnectFailed, match="refused the reservation: the relay is "
                                                    "full") as caught:
                await bridge.call(reserve, s, host_addrs(r)[0])
            assert "RESOURCE_LIMIT_EXCEEDED" in str(caught.value)
            assert caught.value.hint == "try another relay, or later"
            # T's reservation is unaffected: renewing it is no new slot.
            assert await bridge.call(reserve, t, host_addrs(r)[0]) == [
                circuit_addr(host_addrs(r)[0], peer(t))]

    run(main)


def test_a_client_cannot_reserve_for_other_peers() -> None:
    """py-libp2p's relay would reserve for the PeerID a RESERVE names; ours reserves for
    the connection's authenticated peer, so made-up PeerIDs cannot fill its slots."""
    async def main() -> None:
        async with relay_trio(RelayLimits(max_reservations=2)) as (bridge, r, t, s):
            await bridge.call(connect, s, host_addrs(r)[0])

            async def reserve_for(someone: ID) -> int:
                stream = await s.new_stream(r.get_id(), [HOP_PROTOCOL_ID])
                await write_delimited_msg(stream, HopMessage(
                    type=HopMessage.RESERVE, peer=CircuitPeerId(id=someone.to_bytes())))
                response = await read_delimited_msg(stream, HopMessage)
                await stream.close()
                return int(response.status)

            for _ in range(2):
                made_up = ID.from_pubkey(libp2p_key_pair(Ed25519Key.generate()).public_key)
                assert await bridge.call(reserve_for, made_up) == StatusCode.OK
            # Both counted as S's one reservation: T still finds a free slot.
            assert await bridge.call(reserve, t, host_addrs(r)[0])

    run(main)


def test_one_client_making_up_peer_ids_cannot_take_all_the_slots() -> None:
    """A PeerID costs nothing: one client reserving with one fresh key after another
    gets ``max_reservations_per_ip`` slots from its address; a party connecting from
    another address (IPv6 loopback here) still finds one, and slots of clients that have
    gone are released when a new one needs them."""
    limits = RelayLimits(max_reservations=6, max_reservations_per_ip=2)
    flood = 8

    async def main() -> None:
        bridge = TrioThread()
        await bridge.start()
        try:
            r = await bridge.enter_context(running_host(
                Ed25519Key.generate(), [LOOPBACK, "/ip6/::1/tcp/0"]))
            await bridge.enter_context(relay_service(r, limits))
            v4 = next(a for a in host_addrs(r) if a.startswith("/ip4/"))
            v6 = next(a for a in host_addrs(r) if a.startswith("/ip6/"))
            granted, refused, clients = 0, 0, []
            for _ in range(flood):  # each fresh key stays connected, holding its slot
                client = await bridge.enter_context(
                    running_host(Ed25519Key.generate(), [LOOPBACK]))
                clients.append(client)
                try:
                    await bridge.call(reserve, client, v4)
                    granted += 1
                except ConnectFailed as exc:
                    assert "RESOURCE_LIMIT_EXCEEDED" in str(exc)
                    refused += 1
            assert (granted, refused) == (limits.max_reservations_per_ip,
                                          flood - limits.max_reservations_per_ip)
            party = await bridge.enter_context(running_host(
                Ed25519Key.generate(), ["/ip6/::1/tcp/0"]))
            assert await bridge.call(reserve, party, v6)
            # A reserved client renews without taking a second slot.
            assert await bridge.call(reserve, clients[0], v4)

            async def leave(host: IHost) -> None:
                for conn in list(host.get_network().get_connections(r.get_id())):
                    await conn.close()
            await bridge.call(leave, clients[0])
            await asyncio.sleep(0.2)
            assert await bridge.call(reserve, clients[-1], v4)  # the gone one's slot
        finally:
            await bridge.stop()

    run(main)


def test_the_relays_data_limit_cuts_the_circuit() -> None:
    async def main() -> None:
        async with relay_trio(RelayLimits(data=256 * 1024)) as (bridge, r, t, s):
            addr = await reserve_target(bridge, r, t)
            received = bytearray()

            async def sink(stream: INetStream) -> None:
                try:
                    while data := await stream.read(65536):
                        received.extend(data)
                except Exception:
                    pass  # the relay resets the circuit

            async def serve() -> None:
                t.set_stream_handler(TProtocol(ECHO), sink)
            await bridge.call(serve)
            await bridge.call(dial_circuit, s, addr)

            async def send_too_much() -> str:
                stream = await s.new_stream(t.get_id(), [TProtocol(ECHO)])
                try:
                    for _ in range(64):  # 4 MiB, well over the limit
                        await stream.write(b"x" * 65536)
                except Exception as exc:
                    return type(exc).__name__
                return "sent everything"

            outcome = await bridge.call(send_too_much)
            for _ in range(100):  # the relay's reset reaches S's connection
                if not await transport_addrs(bridge, s, t):
                    break
                await asyncio.sleep(0.02)
            assert await transport_addrs(bridge, s, t) == [], outcome
            assert len(received) < 256 * 1024

    run(main)


def test_the_reservation_is_renewed_after_the_relay_connection_drops() -> None:
    async def main() -> None:
        async with relay_trio() as (bridge, r, t, s):
            (addr,) = await bridge.enter_context(
                reservation(t, host_addrs(r)[0], check_interval=0.05))

            async def drop() -> None:
                for conn in list(t.get_network().get_connections(r.get_id())):
                    await conn.close()
            await bridge.call(drop)
            for _ in range(200):  # the refresher reconnects and reserves again
                if await transport_addrs(bridge, t, r):
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # let the new RESERVE complete
            assert await bridge.call(dial_circuit, s, addr) == peer(t)

    run(main)


# -- the whole stack: our Noise channel through the circuit -------------------------------


class Forwarded:
    """Records every byte R's relay loop writes onward, in either direction."""

    def __init__(self) -> None:
        self.data = bytearray()


class RecordingStream:
    def __init__(self, inner: INetStream, record: Forwarded) -> None:
        self._inner = inner
        self._record = record

    async def write(self, data: bytes) -> None:
        self._record.data += data
        await self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_our_noise_channel_crosses_the_relay_as_ciphertext_only(
        alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key, make_config: MakeConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    marker = b"PLAINTEXT-MARKER:"
    message = (marker * 4096) + os.urandom((1 << 20) - len(marker) * 4096)
    assert len(message) == 1 << 20
    forwarded = Forwarded()
    relay_data = CircuitV2Protocol._relay_data

    async def recording(self: CircuitV2Protocol, src: INetStream, dst: INetStream,
                        *args: Any) -> None:
        await relay_data(self, src, RecordingStream(dst, forwarded),  # type: ignore[arg-type]
                         *args)
    monkeypatch.setattr(CircuitV2Protocol, "_relay_data", recording)

    async def main() -> None:
        # R is carol's node; alice (S) reaches bob (T) through it.
        async with relay_trio(None, carol, bob, alice) as (bridge, r, t, s):
            addr = await reserve_target(bridge, r, t)
            accept = Acceptor(make_config(bob, [alice], initiator=False), alice.did.did,
                              len(message))

            await bridge.set_stream_handler(t, CHANNEL, accept)
            began = time.perf_counter()
            target = await bridge.call(dial_circuit, s, addr)
            dial_ms = (time.perf_counter() - began) * 1e3
            sock = await bridge.open_stream(s, target, CHANNEL)
            sender = Sender()
            channel = await over_socket(sock, lambda: ChannelProtocol(
                make_config(alice, [bob], initiator=True), lambda _: sender, label="alice "))
            assert await channel.ready == bob.did.did
            responder = await accept.accepted
            assert accept.peers == [peer(s)]
            assert await responder.ready == alice.did.did
            assert channel.handshake_hash is not None
            assert channel.handshake_hash == responder.handshake_hash

            assert channel.app_transport is not None
            began = time.perf_counter()
            channel.app_transport.write(message)
            assert await sender.reply == hashlib.sha256(message).digest()
            transfer_ms = (time.perf_counter() - began) * 1e3
            assert bytes(accept.receivers[0].data) == message
            channel.app_transport.close()
            assert await accept.receivers[0].lost is None

            # The relay carried all of it, and none of it in the clear.
            (s_side,) = await transport_addrs(bridge, s, t)
            assert all("/p2p-circuit" in a for a in s_side)
            assert len(forwarded.data) > len(message)
            assert marker not in forwarded.data
            assert message[-4096:-4064] not in forwarded.data  # a random slice, too
            print(f"circuit dial {dial_ms:.1f} ms, 1 MiB over the relay {transfer_ms:.0f} ms")

    run(main)


def test_one_circuit_ending_leaves_another_circuit_to_the_same_target_open() -> None:
    """py-libp2p 0.8.1 files circuits by target PeerID, so the end of one circuit to T
    closed whichever circuit to T was filed last (mpcid's relay files each by itself).
    In a session with several parties behind NAT, one party leaving would cut another's
    channel."""
    async def main() -> None:
        async with relay_trio() as (bridge, r, t, s1):
            s2 = await bridge.enter_context(running_host(Ed25519Key.generate(), [LOOPBACK]))
            addr = await reserve_target(bridge, r, t)

            async def serve() -> None:
                async def repeat(stream: INetStream) -> None:
                    while data := await stream.read(65536):
                        await stream.write(data)
                t.set_stream_handler(TProtocol(ECHO), repeat)
            await bridge.call(serve)
            await bridge.call(dial_circuit, s1, addr)
            await bridge.call(dial_circuit, s2, addr)  # filed last under T's PeerID

            async def open_on(host: IHost) -> INetStream:
                return await host.new_stream(t.get_id(), [TProtocol(ECHO)])

            async def ping(stream: INetStream, data: bytes) -> bytes:
                await stream.write(data)
                return await stream.read(65536)

            first = await bridge.call(open_on, s1)
            second = await bridge.call(open_on, s2)
            assert await bridge.call(ping, first, b"one") == b"one"
            assert await bridge.call(ping, second, b"two") == b"two"

            async def hang_up_s1() -> None:  # S1's circuit ends
                for conn in list(s1.get_network().get_connections(t.get_id())):
                    await conn.close()
            await bridge.call(hang_up_s1)
            await asyncio.sleep(0.5)
            assert await bridge.call(ping, second, b"still here") == b"still here"

    run(main)


# -- cost per message over the relay ------------------------------------------------------


class FrameCount:
    """Counts the yamux frames every connection in this process sends (all hosts share
    it): DATA frames, and WINDOW_UPDATE frames that only grant window (no SYN, ACK, FIN,
    RST)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data = 0
        self.window_updates = 0
        write_frame = Yamux._write_frame

        async def counting(conn: Yamux, frame: bytes) -> None:
            _, kind, flags, _, _ = struct.unpack(YAMUX_HEADER_FORMAT, frame[:12])
            if kind == TYPE_DATA:
                self.data += 1
            elif kind == TYPE_WINDOW_UPDATE and flags == 0:
                self.window_updates += 1
            await write_frame(conn, frame)
        monkeypatch.setattr(Yamux, "_write_frame", counting)

    def reset(self) -> None:
        self.data = self.window_updates = 0


async def relayed_socket(bridge: TrioThread, r: IHost, t: IHost, s: IHost
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream from S to T's asyncio echo (mpcid's bridge on both ends, as a channel
    would be), through R."""
    addr = await reserve_target(bridge, r, t)

    async def repeat(sock: Any, peer_id: str) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        writer.close()

    await bridge.set_stream_handler(t, ECHO, repeat)
    target = await bridge.call(dial_circuit, s, addr)
    (s_side,) = await transport_addrs(bridge, s, t)
    assert all("/p2p-circuit" in a for a in s_side)
    sock = await bridge.open_stream(s, target, ECHO)
    return await asyncio.open_connection(sock=sock)


def test_small_messages_cross_the_relay_without_window_updates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16-byte message each way is one yamux DATA frame on the end-to-end connection
    and one on each of the two relay connections: 6 frames per round trip. py-libp2p by
    itself also sent a window update for (nearly) every read, and the circuit's ends read
    each libp2p Noise message in two reads: ~25 frames per round trip, most of them window
    updates, which made a relayed round trip take 4 ms on loopback."""
    frames = FrameCount(monkeypatch)

    async def main() -> None:
        async with relay_trio() as (bridge, r, t, s):
            reader, writer = await relayed_socket(bridge, r, t, s)
            for _ in range(10):  # warm up: the connections' first exchanges
                writer.write(b"0123456789abcdef")
                assert await reader.readexactly(16) == b"0123456789abcdef"
            frames.reset()
            rounds = 100
            for i in range(rounds):
                message = i.to_bytes(16, "big")
                writer.write(message)
                assert await reader.readexactly(16) == message
            assert frames.window_updates <= 3, vars(frames)
            assert frames.data <= 6 * rounds + 10, vars(frames)
            writer.close()

    run(main)


def test_bulk_data_crosses_the_relay_in_whole_frames(monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """A pump write is one yamux frame, sized to stay one frame and one libp2p Noise
    message on both relay connections too; with 64 KiB writes each became two frames on
    the end-to-end connection and more on the relay's."""
    frames = FrameCount(monkeypatch)
    size = 4 << 20

    async def main() -> None:
        async with relay_trio() as (bridge, r, t, s):
            reader, writer = await relayed_socket(bridge, r, t, s)
            writer.write(b"warm")
            assert await reader.readexactly(4) == b"warm"
            frames.reset()
            payload = os.urandom(size)

            async def send() -> None:
                writer.write(payload)
                await writer.drain()
            sending = asyncio.ensure_future(send())
            assert await reader.readexactly(size) == payload
            await sending
            # Each way: ~size / 65477 frames on each of the three connections.
            whole = 2 * 3 * -(-size // 65477)
            assert frames.data <= whole * 1.25, (vars(frames), whole)
            writer.close()

    run(main)


class ScriptedStream:
    """Hands out the given chunks, one per read, then end of stream; counts the reads."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.reads: list[int | None] = []
        self.closed = False

    async def read(self, n: int | None = None) -> bytes:
        self.reads.append(n)
        if not self.chunks:
            raise EOFError("end of stream")
        chunk = self.chunks.pop(0)
        assert n is None or n < 0 or len(chunk) <= n
        return chunk

    async def close(self) -> None:
        self.closed = True


def test_a_circuit_end_serves_small_reads_from_one_read_of_its_stream() -> None:
    async def main() -> None:
        inner = ScriptedStream(b"\x00\x05hello\x00\x03abc", b"tail", b"x" * 100)
        stream = _BufferedReads(inner, 64)
        assert await stream.read(2) == b"\x00\x05"
        assert await stream.read(5) == b"hello"
        assert await stream.read(10) == b"\x00\x03abc"  # what is buffered, no more
        assert inner.reads == [64]
        assert await stream.read(None) == b"tail"  # nothing buffered: read through
        assert await stream.read(200) == b"x" * 100  # as large as the buffer: read through
        assert inner.reads == [64, None, 200]
        with pytest.raises(EOFError):
            await stream.read(2)
        await stream.close()  # everything but read is the stream's own
        assert inner.closed

    trio.run(main)
