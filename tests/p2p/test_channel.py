"""The asyncio adapter over real loopback TCP (and a socketpair).

Every test runs its own event loop with ``asyncio.run`` under an overall timeout, starts its
server on ``127.0.0.1`` port 0 and closes everything before it returns.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.channel import ChannelProtocol, ChannelTransport, connect, listen, over_socket
from mpcid.p2p.errors import (ConnectFailed, ConnectionLost, HandshakeFailed, ListenFailed,
                              RemoteProtocolError)
from mpcid.p2p.noise import PREAMBLE, ChannelConfig, NoiseChannel

pytestmark = pytest.mark.integration

T = TypeVar("T")
MakeConfig = Callable[..., ChannelConfig]
TIMEOUT = 20.0


def run(coro: Awaitable[T], timeout: float = TIMEOUT) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


class App(asyncio.Protocol):
    """An application protocol that records everything; echoes if ``echo``."""

    def __init__(self, peer_did: str, echo: bool = False) -> None:
        self.peer_did = peer_did
        self.echo = echo
        self.transport: ChannelTransport | None = None
        self.data = bytearray()
        self.chunks = 0
        self.made = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self._want = 0
        self._enough: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, ChannelTransport)
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        assert not self.lost.done(), "data after connection_lost"
        self.chunks += 1
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)
        else:
            self.data += data
        if self._enough is not None and len(self.data) >= self._want:
            if not self._enough.done():
                self._enough.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        assert not self.lost.done(), "connection_lost called twice"
        self.lost.set_result(exc)

    async def wait_for(self, n: int) -> bytes:
        self._want = n
        self._enough = asyncio.get_running_loop().create_future()
        if len(self.data) >= n:
            self._enough.set_result(None)
        await self._enough
        return bytes(self.data)


class Server:
    """A listening responder (``me``) accepting ``peers``; records apps and failures."""

    def __init__(self, make_config: MakeConfig, me: Ed25519Key, peers: list[Ed25519Key],
                 echo: bool = True, **timers: Any) -> None:
        self.config = make_config(me, peers, initiator=False, **timers)
        self.echo = echo
        self.apps: list[App] = []
        self.protocols: list[ChannelProtocol] = []
        self.failures: list[tuple[str | None, MpcidError]] = []
        self.failed: asyncio.Queue[tuple[str | None, MpcidError]] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0

    def _app(self, did: str) -> App:
        app = App(did, echo=self.echo)
        self.apps.append(app)
        return app

    def _on_failure(self, did: str | None, exc: MpcidError) -> None:
        self.failures.append((did, exc))
        self.failed.put_nowait((did, exc))

    def factory(self) -> ChannelProtocol:
        protocol = ChannelProtocol(self.config, self._app, on_failure=self._on_failure,
                                   label="server ")
        self.protocols.append(protocol)
        return protocol

    async def __aenter__(self) -> Server:
        self.server = await listen("127.0.0.1", 0, self.factory)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for protocol in self.protocols:
            if protocol.app_transport is not None:
                protocol.app_transport.abort()
        await self.server.wait_closed()


class Client:
    def __init__(self, make_config: MakeConfig, me: Ed25519Key, peer: Ed25519Key,
                 **timers: Any) -> None:
        self.config = make_config(me, [peer], initiator=True, **timers)
        self.app: App | None = None
        self.failures: list[tuple[str | None, MpcidError]] = []

    def _app(self, did: str) -> App:
        self.app = App(did)
        return self.app

    def factory(self) -> ChannelProtocol:
        return ChannelProtocol(self.config, self._app,
                               on_failure=lambda d, e: self.failures.append((d, e)),
                               label="client ")

    async def connect(self, port: int) -> ChannelProtocol:
        loop = asyncio.get_running_loop()
        return await connect("127.0.0.1", port, self.factory, deadline=loop.time() + 5,
                             what="the test server")

    async def open(self, port: int) -> tuple[ChannelProtocol, App]:
        """Connect and wait for the handshake: the channel and the application on it."""
        protocol = await self.connect(port)
        await protocol.ready
        assert self.app is not None and self.app.transport is not None
        return protocol, self.app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- tests ---------------------------------------------------------------------------------


def test_handshake_and_peer_dids(make_config: MakeConfig, alice: Ed25519Key,
                                 bob: Ed25519Key, carol: Ed25519Key) -> None:
    async def main() -> None:
        async with Server(make_config, bob, [alice, carol]) as server:
            client = Client(make_config, alice, bob)
            protocol = await client.connect(server.port)
            assert await protocol.ready == bob.did.did
            assert protocol.peer_did == bob.did.did
            assert client.app is not None and client.app.peer_did == bob.did.did
            await client.app.made
            transport = client.app.transport
            assert transport is not None
            assert transport.get_extra_info("peer_did") == bob.did.did
            # the server's side
            (server_protocol,) = server.protocols
            assert await server_protocol.ready == alice.did.did
            (server_app,) = server.apps
            await server_app.made
            assert server_app.peer_did == alice.did.did
            assert server_app.transport is not None
            assert server_app.transport.get_extra_info("peer_did") == alice.did.did
            hashes = (transport.get_extra_info("handshake_hash"),
                      server_app.transport.get_extra_info("handshake_hash"))
            assert hashes[0] == hashes[1] and len(hashes[0]) == 32
            # other names go to the socket
            assert transport.get_extra_info("peername")[1] == server.port
            assert transport.get_extra_info("no such thing", "dflt") == "dflt"
            # echo
            transport.write(b"ping?")
            assert await client.app.wait_for(5) == b"ping?"
            transport.close()
            assert await server_app.lost is None
            assert server.failures == [] and client.failures == []
    run(main())


def test_sixteen_mebibytes_round_trip(make_config: MakeConfig, alice: Ed25519Key,
                                      bob: Ed25519Key) -> None:
    data = os.urandom(16 << 20)

    async def main() -> None:
        async with Server(make_config, bob, [alice]) as server:
            client = Client(make_config, alice, bob)
            protocol = await client.connect(server.port)
            await protocol.ready
            assert client.app is not None and client.app.transport is not None
            client.app.transport.write(data)
            echoed = await client.app.wait_for(len(data))
            assert len(echoed) == len(data)
            assert echoed == data
            assert protocol.bytes_received > len(data)
            client.app.transport.close()
            assert await server.apps[0].lost is None
            assert server.failures == [] and client.failures == []
    run(main(), timeout=25)


def test_write_coalescing(make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key
                          ) -> None:
    writes, size = 2000, 10

    async def main() -> None:
        async with Server(make_config, bob, [alice]) as server:
            client = Client(make_config, alice, bob)
            protocol, app = await client.open(server.port)
            before = protocol.bytes_sent
            expected = bytearray()
            for i in range(writes):  # all in one loop iteration
                message = i.to_bytes(2, "big") * (size // 2)
                app.transport.write(message)
                expected += message
            assert protocol.bytes_sent == before  # nothing leaves during the iteration
            assert app.transport.get_write_buffer_size() == len(expected)
            assert await app.wait_for(len(expected)) == expected
            sent = protocol.bytes_sent - before
            per_frame = 2 + 1 + 16  # length prefix, type byte, tag
            # one frame for the 2000 writes of one iteration (one per write would add
            # 2000 * 19 bytes), delivered to the peer's application in one call
            assert sent == len(expected) + per_frame
            assert server.apps[0].chunks == 1
            assert app.chunks == 1
            app.transport.close()
            await server.apps[0].lost
    run(main())


def test_writes_of_one_iteration_leave_once_per_channel(
        make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key
) -> None:
    """Several channels written in one iteration: each sends one frame at the start of the
    next iteration, and a lone write is not held longer than that."""
    async def main() -> None:
        async with Server(make_config, bob, [alice, carol]) as server:
            clients = [Client(make_config, alice, bob), Client(make_config, carol, bob)]
            protocols = [await c.connect(server.port) for c in clients]
            for protocol in protocols:
                await protocol.ready
            before = [p.bytes_sent for p in protocols]
            for round_ in range(3):
                for client in clients:
                    assert client.app is not None and client.app.transport is not None
                    for i in range(5):
                        client.app.transport.write(bytes([round_, i]))
                await asyncio.sleep(0)  # one iteration: the flush runs at its start
                assert [p.bytes_sent - b for p, b in zip(protocols, before)] == [
                    (round_ + 1) * (10 + 19)] * 2
            for client in clients:
                assert client.app is not None
                await client.app.wait_for(30)
                assert client.app.chunks <= 3
            lone = clients[0].app
            assert lone is not None and lone.transport is not None
            lone.transport.write(b"!")
            await asyncio.sleep(0)
            assert protocols[0].bytes_sent - before[0] == 3 * 29 + 1 + 19
            for client in clients:
                assert client.app is not None and client.app.transport is not None
                client.app.transport.close()
    run(main())


def test_a_failing_channel_does_not_hold_back_the_others(
        make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key
) -> None:
    """Channels written in the same iteration are flushed together: one whose failure
    handler raises (the loop reports it) does not keep the others' writes back."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
        async with Server(make_config, bob, [alice, carol], echo=False) as server:
            clients = [Client(make_config, alice, bob), Client(make_config, carol, bob)]
            protocols = [await c.connect(server.port) for c in clients]
            for protocol in protocols:
                await protocol.ready

            def raising(did: str | None, exc: MpcidError) -> None:
                raise RuntimeError("a broken failure handler")

            protocols[0].on_failure = raising
            channel = protocols[0]._channel
            assert channel is not None and channel._encrypt is not None
            channel._encrypt.n = 2**64 - 1  # its next frame fails the channel
            for client in clients:
                assert client.app is not None and client.app.transport is not None
                client.app.transport.write(b"hello")
            for _ in range(50):
                if any(bytes(app.data) == b"hello" for app in server.apps):
                    break
                await asyncio.sleep(0.01)
            assert [bytes(app.data) for app in server.apps].count(b"hello") == 1
            assert [str(e) for e in reported] == ["a broken failure handler"]
            assert protocols[0].bytes_sent < protocols[1].bytes_sent
    run(main())


def test_bulk_write_keeps_order_behind_small_ones(make_config: MakeConfig,
                                                  alice: Ed25519Key, bob: Ed25519Key
                                                  ) -> None:
    """Small writes wait for the end of the iteration, a write of a frame's worth goes out
    at once: the stream keeps the order of the writes either way, and a written buffer
    may be changed by the application as soon as write returns."""
    async def main() -> None:
        async with Server(make_config, bob, [alice]) as server:
            client = Client(make_config, alice, bob)
            protocol, app = await client.open(server.port)
            before = protocol.bytes_sent
            head, bulk = bytearray(b"head"), os.urandom(200_000)
            mid = memoryview(bytearray(b"middle"))
            app.transport.write(head)
            head[:] = b"HEAD"  # the application reuses its buffer
            app.transport.write(bulk)
            assert protocol.bytes_sent > before + len(bulk)  # out at once, head before it
            app.transport.write(mid)
            mid[:] = b"MIDDLE"
            app.transport.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
            app.transport.write(b"")
            app.transport.write(bulk[:70_000])
            app.transport.write(b"tail")
            expected = b"head" + bulk + b"middle" + b"abc" + bulk[:70_000] + b"tail"
            assert await app.wait_for(len(expected)) == expected
            app.transport.close()
            await server.apps[0].lost
    run(main())


def test_close_sends_pending_writes_and_abort_drops_them(
        make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key) -> None:
    async def main() -> None:
        async with Server(make_config, bob, [alice], echo=False) as server:
            client = Client(make_config, alice, bob)
            protocol = await client.connect(server.port)
            await protocol.ready
            assert client.app is not None and client.app.transport is not None
            client.app.transport.write(b"last words")
            client.app.transport.close()  # in the same iteration as the write
            client.app.transport.write(b"after close")  # ignored, as by asyncio
            assert await server.apps[0].lost is None
            assert bytes(server.apps[0].data) == b"last words"

            other = Client(make_config, alice, bob)
            protocol = await other.connect(server.port)
            await protocol.ready
            assert other.app is not None and other.app.transport is not None
            other.app.transport.write(b"never sent")
            sent = protocol.bytes_sent
            other.app.transport.abort()
            await asyncio.sleep(0.05)
            assert protocol.bytes_sent == sent
            assert await other.app.lost is None
            assert isinstance(await server.apps[1].lost, ConnectionLost)
            assert bytes(server.apps[1].data) == b""
    run(main())


def test_pause_and_resume_writing_reach_the_application(
        make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key) -> None:
    """The connection's flow control is the application's, as over plain TCP."""
    async def main() -> None:
        async with Server(make_config, bob, [alice], echo=False) as server:
            client = Client(make_config, alice, bob)
            protocol, app = await client.open(server.port)
            calls: list[str] = []
            app.pause_writing = lambda: calls.append("pause")  # type: ignore[method-assign]
            app.resume_writing = lambda: calls.append("resume")  # type: ignore[method-assign]
            app.transport.set_write_buffer_limits(high=1 << 16)
            assert app.transport.get_write_buffer_limits()[1] == 1 << 16
            data = os.urandom(8 << 20)
            app.transport.write(data)  # more than the socket takes at once
            assert calls == ["pause"]
            assert app.transport.get_write_buffer_size() > 1 << 16
            await server.apps[0].wait_for(len(data))
            for _ in range(100):
                if calls == ["pause", "resume"]:
                    break
                await asyncio.sleep(0.01)
            assert calls == ["pause", "resume"]
            assert bytes(server.apps[0].data) == data
            app.transport.close()
            await server.apps[0].lost
    run(main(), timeout=25)


def test_graceful_close(make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key) -> None:
    async def main() -> None:
        async with Server(make_config, bob, [alice], echo=False) as server:
            client = Client(make_config, alice, bob)
            protocol, app = await client.open(server.port)
            app.transport.write(b"bye")  # written before the close: still delivered
            app.transport.close()
            assert app.transport.is_closing()
            app.transport.write(b"ignored")
            (server_app,) = server.apps
            assert await server_app.lost is None
            assert server_app.data == b"bye"
            assert await app.lost is None
            assert server.failures == [] and client.failures == []
            # the server side closed its socket in turn
            server_protocol = server.protocols[0]
            assert server_protocol._transport is not None
            assert server_protocol._transport.is_closing()
            # ...the other direction: the server's application closes
        async with Server(make_config, bob, [alice]) as server:
            client = Client(make_config, alice, bob)
            protocol = await client.connect(server.port)
            await protocol.ready
            (server_app,) = server.apps
            await server_app.made
            assert server_app.transport is not None
            server_app.transport.close()
            assert client.app is not None
            assert await client.app.lost is None
            assert client.failures == [] and server.failures == []
    run(main())


def test_answer_to_last_message_before_close_is_not_a_failure(
        make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key) -> None:
    """The peer's last message and its CLOSE arrive together; the (echo) application
    answers the message. The channel ended properly: the application sees
    ``connection_lost(None)`` and nothing is reported as a failure."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        left.setblocking(False)
        server = Server(make_config, bob, [alice])
        await over_socket(right, server.factory)
        # the test plays alice with the sans-IO channel
        a = NoiseChannel(make_config(alice, [bob], initiator=True), loop.time())
        a.start()
        await loop.sock_sendall(left, a.data_to_send())
        events: list[Any] = []
        while not events:
            events = a.receive_data(await loop.sock_recv(left, 65536), loop.time())
        a.send(b"last message", loop.time())
        a.close(loop.time())
        await loop.sock_sendall(left, a.data_to_send())
        (server_app,) = server.apps
        assert await server_app.lost is None
        assert server.failures == []
        left.close()
    run(main())


def test_client_abort_is_connection_lost(make_config: MakeConfig, alice: Ed25519Key,
                                         bob: Ed25519Key) -> None:
    async def main() -> None:
        async with Server(make_config, bob, [alice]) as server:
            client = Client(make_config, alice, bob)
            protocol = await client.connect(server.port)
            await protocol.ready
            assert client.app is not None and client.app.transport is not None
            client.app.transport.write(b"half a computation")
            await client.app.wait_for(18)
            client.app.transport.abort()
            did, exc = await server.failed.get()
            assert did == alice.did.did
            assert isinstance(exc, ConnectionLost)
            assert alice.did.did in str(exc)
            (server_app,) = server.apps
            assert await server_app.lost is exc
            assert server.failures == [(did, exc)]
    run(main())


def test_connection_reset_names_the_reason(make_config: MakeConfig, alice: Ed25519Key,
                                           bob: Ed25519Key) -> None:
    """The peer's connection is reset (not closed) mid-channel: the failure is the core's
    ConnectionLost with the transport's reason appended, as a new error caused by it."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with Server(make_config, bob, [alice]) as server:
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            a = NoiseChannel(make_config(alice, [bob], initiator=True), loop.time())
            a.start()
            await loop.sock_sendall(sock, a.data_to_send())
            events: list[Any] = []
            while not events:
                events = a.receive_data(await loop.sock_recv(sock, 65536), loop.time())
            (server_app,) = server.apps
            await server_app.made
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # with a zero linger time: a reset
            did, exc = await server.failed.get()
            assert did == alice.did.did
            assert type(exc) is ConnectionLost
            assert isinstance(exc.__cause__, ConnectionResetError)
            assert str(exc) == (f"{alice.did.did} closed the connection without ending the "
                                f"channel ({exc.__cause__})")
            assert await server_app.lost is exc
    run(main())


def test_abort_tells_own_application(make_config: MakeConfig, alice: Ed25519Key,
                                     bob: Ed25519Key) -> None:
    """asyncio transport contract: after ``abort()`` the protocol's ``connection_lost``
    is eventually called (MPyC waits for it)."""
    async def main() -> None:
        async with Server(make_config, bob, [alice]) as server:
            client = Client(make_config, alice, bob)
            protocol = await client.connect(server.port)
            await protocol.ready
            assert client.app is not None and client.app.transport is not None
            client.app.transport.abort()
            await server.failed.get()
            assert await asyncio.wait_for(client.app.lost, 2) is None
    run(main())


def test_non_mpcid_client(make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key
                          ) -> None:
    async def main() -> None:
        async with Server(make_config, bob, [alice]) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            did, exc = await server.failed.get()
            assert did is None
            assert isinstance(exc, RemoteProtocolError)
            assert not isinstance(exc, HandshakeFailed)
            assert "does not speak" in str(exc)
            assert server.apps == []
            # the server sent its preamble and hung up
            assert await asyncio.wait_for(reader.read(), 5) == PREAMBLE
            writer.close()
    run(main())


def test_wrong_key_fails_and_server_keeps_accepting(make_config: MakeConfig,
                                                    alice: Ed25519Key, bob: Ed25519Key,
                                                    carol: Ed25519Key) -> None:
    async def main() -> None:
        async with Server(make_config, bob, [alice]) as server:
            # carol is not a party bob accepts
            intruder = Client(make_config, carol, bob)
            protocol = await intruder.connect(server.port)
            with pytest.raises(HandshakeFailed):
                await protocol.ready
            did, exc = await server.failed.get()
            assert did is None and isinstance(exc, HandshakeFailed)
            assert alice.did.did in str(exc)
            # the intruder learns that bob did not accept it
            assert len(intruder.failures) == 1
            assert isinstance(intruder.failures[0][1], HandshakeFailed)
            assert intruder.failures[0][0] == bob.did.did
            # alice dials with bob's DID but the wrong key for it (carol's)
            confused = Client(make_config, alice, carol)
            confused.config = make_config(alice, [carol], initiator=True)
            protocol = await confused.connect(server.port)
            with pytest.raises(HandshakeFailed):
                await protocol.ready
            _, exc = await server.failed.get()
            assert isinstance(exc, HandshakeFailed)
            # a correct client still gets through
            client = Client(make_config, alice, bob)
            protocol = await client.connect(server.port)
            assert await protocol.ready == bob.did.did
            assert client.app is not None and client.app.transport is not None
            client.app.transport.write(b"still here")
            assert await client.app.wait_for(10) == b"still here"
            client.app.transport.close()
            assert await server.apps[0].lost is None
            assert len(server.failures) == 2
    run(main())


def test_handshake_timeout_on_silent_client(make_config: MakeConfig, alice: Ed25519Key,
                                            bob: Ed25519Key) -> None:
    async def main() -> None:
        async with Server(make_config, bob, [alice], handshake_timeout=0.3) as server:
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            start = loop.time()
            did, exc = await server.failed.get()
            assert isinstance(exc, HandshakeFailed)
            assert 0.25 <= loop.time() - start < 3
            assert await asyncio.wait_for(reader.read(), 5) == PREAMBLE
            writer.close()
    run(main())


def test_keepalive_keeps_idle_channel_open(make_config: MakeConfig, alice: Ed25519Key,
                                           bob: Ed25519Key) -> None:
    timers = {"keepalive_interval": 0.05, "idle_timeout": 0.3}

    async def main() -> None:
        async with Server(make_config, bob, [alice], **timers) as server:
            client = Client(make_config, alice, bob, **timers)
            protocol = await client.connect(server.port)
            await protocol.ready
            await asyncio.sleep(1.0)  # idle for more than three idle timeouts
            assert server.failures == [] and client.failures == []
            assert client.app is not None and client.app.transport is not None
            # PINGs flowed from the start: the handshake's deadline (15 s) did not hold
            # back the first keepalive. Handshake: preamble 8 + reply 2 + 48; a PING: 19.
            assert protocol.bytes_received >= 58 + 5 * 19
            client.app.transport.write(b"awake")
            assert await client.app.wait_for(5) == b"awake"
            client.app.transport.close()
            await server.apps[0].lost
    run(main())


def test_connect_to_nothing_fails_after_deadline() -> None:
    port = free_port()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        def never() -> ChannelProtocol:
            raise AssertionError("no connection should be made")

        with pytest.raises(ConnectFailed) as info:
            await connect("127.0.0.1", port, never, deadline=loop.time() + 1,
                          retry_interval=0.1, what="party 2")
        elapsed = loop.time() - start
        assert 0.9 <= elapsed < 3
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message
        assert "party 2" in message
        assert info.value.hint
    run(main())


def test_dial_retries_quickly_then_every_retry_interval() -> None:
    """Parties launched together: the one that listens a little later is found within
    milliseconds (the pause starts at FIRST_RETRY and doubles up to retry_interval)."""
    port = free_port()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        attempts: list[float] = []
        listening: list[float] = []
        original = loop.create_connection

        async def counted(*args: Any, **kwargs: Any) -> Any:
            attempts.append(loop.time())
            return await original(*args, **kwargs)

        loop.create_connection = counted  # type: ignore[method-assign]

        async def listen_later() -> asyncio.Server:
            await asyncio.sleep(0.05)
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
            listening.append(loop.time())
            return server

        task = asyncio.ensure_future(listen_later())
        plain_tcp: Any = asyncio.Protocol  # connect() only dials: any protocol will do
        await connect("127.0.0.1", port, plain_tcp, deadline=loop.time() + 5,
                      retry_interval=0.2)
        connected = loop.time()
        server = await task
        server.close()
        assert len(attempts) >= 3
        assert attempts[1] - attempts[0] < 0.1
        # a redial soon after the listener appeared, not retry_interval after the first
        assert connected - listening[0] < 0.12
    run(main())


def test_listen_on_port_in_use() -> None:
    async def main() -> None:
        def unused() -> ChannelProtocol:
            raise AssertionError("nobody connects")

        first = await listen("127.0.0.1", 0, unused)
        port = first.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ListenFailed) as info:
                await listen("127.0.0.1", port, unused)
            message = str(info.value)
            assert f"127.0.0.1:{port}" in message
            assert "in use" in message.lower()
            assert "port" in info.value.hint
        finally:
            first.close()
            await first.wait_closed()
    run(main())


def test_over_socketpair(make_config: MakeConfig, alice: Ed25519Key, bob: Ed25519Key
                         ) -> None:
    async def main() -> None:
        left, right = socket.socketpair()
        server = Server(make_config, bob, [alice])
        client = Client(make_config, alice, bob)
        client_protocol = await over_socket(left, client.factory)
        server_protocol = await over_socket(right, server.factory)
        assert await client_protocol.ready == bob.did.did
        assert await server_protocol.ready == alice.did.did
        assert client.app is not None and client.app.transport is not None
        assert client.app.transport.get_extra_info("peer_did") == bob.did.did
        data = os.urandom(300_000)
        client.app.transport.write(data)
        assert await client.app.wait_for(len(data)) == data
        client.app.transport.close()
        assert await server.apps[0].lost is None
        assert server.failures == [] and client.failures == []
    run(main())
