"""The trio thread (:mod:`mpcid.p2p.bridge`) driven from asyncio, without libp2p hosts.

Every test runs its own asyncio loop with ``asyncio.run`` under an overall timeout. The
stream hand-over is tested against :class:`FakeStream`, an in-memory stand-in for a libp2p
stream, so the half-close rules are checked apart from libp2p (``test_host.py`` runs them
over real libp2p streams).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from libp2p.stream_muxer.yamux.yamux import (DEFAULT_WINDOW_SIZE, TYPE_WINDOW_UPDATE,
                                             YAMUX_HEADER_FORMAT, YamuxStream)

from mpcid.p2p import bridge as bridge_module
from mpcid.p2p.bridge import TrioThread, batch_window_updates
from mpcid.p2p.errors import LocalProtocolError, TransportError

from channel_apps import run as bounded_run  # this folder

TIMEOUT = 10.0


run = functools.partial(bounded_run, timeout=TIMEOUT)


async def sleep_forever_then_set(cleaned_up: threading.Event) -> None:
    """A trio task that only ends by cancellation, and says so."""
    try:
        await trio.sleep_forever()
    finally:
        cleaned_up.set()


@asynccontextmanager
async def started(**kwargs: Any) -> AsyncIterator[TrioThread]:
    bridge = TrioThread(**kwargs)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


def bridge_threads(name: str = "mpcid-libp2p") -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


# -- lifecycle ----------------------------------------------------------------------------


def test_start_and_stop_twice_leave_no_thread() -> None:
    before = set(threading.enumerate())

    async def main() -> None:
        bridge = TrioThread()
        for _ in range(2):
            await bridge.start()
            await bridge.start()  # no-op while running
            assert bridge.running
            assert len(bridge_threads()) == 1
            await bridge.stop()
            await bridge.stop()  # idempotent
            assert not bridge.running
            assert bridge_threads() == []
        assert bridge.error is None

    run(main)
    assert set(threading.enumerate()) == before


def test_stop_before_start_is_a_no_op() -> None:
    run(TrioThread().stop)


def test_start_failure_is_a_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_run(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("trio is broken")

    monkeypatch.setattr(trio, "run", broken_run)  # the bridge calls trio.run

    async def main() -> None:
        bridge = TrioThread()
        with pytest.raises(TransportError, match="could not start: trio is broken"):
            await bridge.start()
        assert not bridge.running
        await bridge.stop()

    run(main)
    assert bridge_threads() == []


# -- call ---------------------------------------------------------------------------------


def test_call_runs_in_the_trio_thread_and_returns_the_value() -> None:
    async def where(x: int) -> tuple[str, int]:
        await trio.sleep(0)
        trio.lowlevel.current_trio_token()  # raises outside trio
        return threading.current_thread().name, x * 2

    async def main() -> None:
        async with started() as bridge:
            assert await bridge.call(where, 21) == ("mpcid-libp2p", 42)
            results = await asyncio.gather(*(bridge.call(where, i) for i in range(20)))
            assert [r for _, r in results] == [2 * i for i in range(20)]

    run(main)


def test_call_propagates_the_exception() -> None:
    async def fails() -> None:
        await trio.sleep(0)
        raise KeyError("missing")

    async def main() -> None:
        async with started() as bridge:
            with pytest.raises(KeyError, match="missing"):
                await bridge.call(fails)
            assert bridge.running  # one failed call does not hurt the thread

            async def ok() -> str:
                return "still fine"
            assert await bridge.call(ok) == "still fine"

    run(main)


def test_call_when_not_running_is_a_transport_error() -> None:
    async def nothing() -> None:
        pass

    async def main() -> None:
        bridge = TrioThread()
        with pytest.raises(TransportError, match="not running"):
            await bridge.call(nothing)
        await bridge.start()
        await bridge.stop()
        with pytest.raises(TransportError, match="not running"):
            await bridge.call(nothing)

    run(main)


def test_stop_cancels_calls_in_flight() -> None:
    cleaned_up = threading.Event()
    forever = functools.partial(sleep_forever_then_set, cleaned_up)

    async def main() -> None:
        bridge = TrioThread()
        await bridge.start()
        task = asyncio.ensure_future(bridge.call(forever))
        await asyncio.sleep(0.05)
        assert not task.done()
        await bridge.stop()
        with pytest.raises(TransportError, match="stopped before the call finished"):
            await task
        assert cleaned_up.is_set()
        assert bridge_threads() == []

    run(main)


def test_cancelling_the_asyncio_side_cancels_the_trio_task() -> None:
    cleaned_up = threading.Event()
    forever = functools.partial(sleep_forever_then_set, cleaned_up)

    async def main() -> None:
        async with started() as bridge:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(bridge.call(forever), 0.05)
            for _ in range(200):
                if cleaned_up.is_set():
                    break
                await asyncio.sleep(0.005)
            assert cleaned_up.is_set()

    run(main)


# -- enter_context ------------------------------------------------------------------------


def test_contexts_are_exited_in_reverse_order_on_stop() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def service(name: str) -> AsyncIterator[str]:
        events.append(f"enter {name}")
        async with trio.open_nursery() as nursery:  # a service with background tasks
            nursery.start_soon(trio.sleep_forever)
            try:
                yield name.upper()
            finally:
                events.append(f"exit {name}")
                nursery.cancel_scope.cancel()

    @asynccontextmanager
    async def broken() -> AsyncIterator[None]:
        raise ValueError("cannot start")
        yield  # pragma: no cover

    async def main() -> None:
        bridge = TrioThread()
        await bridge.start()
        assert await bridge.enter_context(service("a")) == "A"
        with pytest.raises(ValueError, match="cannot start"):
            await bridge.enter_context(broken())
        assert await bridge.enter_context(service("b")) == "B"
        assert events == ["enter a", "enter b"]
        await bridge.stop()
        assert events == ["enter a", "enter b", "exit b", "exit a"]
        assert bridge.error is None

    run(main)


def test_a_hanging_context_exit_is_cut_at_stop_timeout() -> None:
    @asynccontextmanager
    async def stubborn() -> AsyncIterator[None]:
        try:
            yield
        finally:
            with trio.CancelScope() as scope:  # not shielded: the deadline ends it
                scope.deadline = trio.current_time() + 60
                await trio.sleep_forever()

    async def main() -> None:
        bridge = TrioThread(stop_timeout=0.3)
        await bridge.start()
        await bridge.enter_context(stubborn())
        loop = asyncio.get_running_loop()
        began = loop.time()
        await bridge.stop()
        assert loop.time() - began < 2.0
        assert bridge_threads() == []

    run(main)


# -- stream hand-over ---------------------------------------------------------------------


class FakeStream:
    """An in-memory libp2p stream: ``feed``/``end`` play the remote peer's writes and FIN,
    ``written`` and the flags record what the pump did to it."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes | BaseException](100)
        self.written = bytearray()
        self.write_closed = False
        self.closed = False
        self.was_reset = False
        self.done = threading.Event()

    def feed(self, data: bytes) -> None:
        self._send.send_nowait(data)

    def end(self) -> None:
        self._send.send_nowait(EOFError("remote FIN"))

    def fail(self) -> None:
        self._send.send_nowait(ConnectionResetError("stream reset by peer"))

    async def read(self, n: int | None = None) -> bytes:
        item = await self._receive.receive()
        if isinstance(item, BaseException):
            raise item
        return item

    async def write(self, data: bytes) -> None:
        assert not self.write_closed, "write after close_write"
        self.written += data
        await trio.sleep(0)

    async def close_write(self) -> None:
        self.write_closed = True

    async def close(self) -> None:
        self.closed = True
        self.done.set()

    async def reset(self) -> None:
        self.was_reset = True
        self.done.set()


async def adopt(bridge: TrioThread) -> tuple[FakeStream, socket.socket]:
    async def make() -> tuple[FakeStream, socket.socket]:
        stream = FakeStream()
        return stream, bridge.adopt_stream(stream, label="fake")
    return await bridge.call(make)


async def in_trio(bridge: TrioThread, fn: Callable[[], None]) -> None:
    async def wrapper() -> None:
        fn()
    await bridge.call(wrapper)


async def wait_set(event: threading.Event) -> None:
    for _ in range(400):
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the pump did not finish")


def test_adopt_stream_outside_the_trio_thread_is_refused() -> None:
    async def main() -> None:
        async with started() as bridge:
            with pytest.raises(LocalProtocolError, match="libp2p thread"):
                bridge.adopt_stream(FakeStream())

    run(main)


@pytest.mark.integration
def test_pump_carries_bytes_both_ways_with_half_close() -> None:
    async def main() -> None:
        async with started() as bridge:
            stream, sock = await adopt(bridge)
            reader, writer = await asyncio.open_connection(sock=sock)
            # remote -> asyncio, then the remote's FIN becomes end of file
            await in_trio(bridge, lambda: stream.feed(b"hello "))
            await in_trio(bridge, lambda: stream.feed(b"asyncio"))
            await in_trio(bridge, stream.end)
            assert await reader.read() == b"hello asyncio"
            # the asyncio side can still write after the remote's FIN (half-close) ...
            writer.write(b"x" * 300_000)
            await writer.drain()
            assert not stream.write_closed
            # ... and its end of file becomes close_write, then the stream is closed
            writer.write_eof()
            await wait_set(stream.done)
            assert bytes(stream.written) == b"x" * 300_000
            assert stream.write_closed and stream.closed and not stream.was_reset
            writer.close()
            await writer.wait_closed()

    run(main)


@pytest.mark.integration
def test_a_stream_reset_closes_the_socket_and_resets() -> None:
    async def main() -> None:
        async with started() as bridge:
            stream, sock = await adopt(bridge)
            reader, writer = await asyncio.open_connection(sock=sock)
            await in_trio(bridge, lambda: stream.feed(b"partial"))
            await in_trio(bridge, stream.fail)
            assert await reader.read() == b"partial"
            await wait_set(stream.done)
            assert stream.was_reset and not stream.closed
            writer.close()

    run(main)


@pytest.mark.integration
def test_stop_ends_the_pumps() -> None:
    async def main() -> None:
        bridge = TrioThread()
        await bridge.start()
        stream, sock = await adopt(bridge)
        reader, writer = await asyncio.open_connection(sock=sock)
        await bridge.stop()
        assert await reader.read() == b""  # the socket sees end of file
        assert stream.was_reset and not stream.closed
        writer.close()

    run(main)


# -- yamux window updates -----------------------------------------------------------------


class FakeYamuxConn:
    """What a YamuxStream's window bookkeeping uses of its connection; records frames."""

    def __init__(self) -> None:
        self.stream_buffers: dict[int, bytearray] = {1: bytearray()}
        self.frames: list[tuple[int, int, int]] = []  # (type, flags, length)

    def rtt(self) -> float:
        return 0.0

    async def _write_frame(self, frame: bytes) -> None:
        _, kind, flags, _, length = struct.unpack(YAMUX_HEADER_FORMAT, frame[:12])
        self.frames.append((kind, flags, length))


def read_from(stream: YamuxStream, n: int) -> None:
    """Trio: account for ``n`` bytes received and read, as yamux does, then run the
    stream's after-read hook."""
    stream.recv_window -= n
    trio.run(functools.partial(stream._auto_tune_and_send_window_update, bytes_read=n))


def test_window_updates_are_batched_on_the_streams_given() -> None:
    conn = FakeYamuxConn()
    stream = YamuxStream(1, conn, is_initiator=True)  # type: ignore[arg-type]
    holder = type("NetStreamLike", (), {"muxed_stream": stream})()
    assert batch_window_updates(holder)  # a libp2p stream's yamux stream is found
    for _ in range(10):
        read_from(stream, 100)
    assert conn.frames == []  # small reads: no update
    read_from(stream, DEFAULT_WINDOW_SIZE // 2)
    ((kind, flags, increment),) = conn.frames
    assert (kind, flags) == (TYPE_WINDOW_UPDATE, 0)
    assert increment >= DEFAULT_WINDOW_SIZE // 2 + 1000  # all that was read, at once

    # py-libp2p's own rule, which this replaces (if it changes, revisit the replacement):
    plain_conn = FakeYamuxConn()
    plain = YamuxStream(1, plain_conn, is_initiator=True)  # type: ignore[arg-type]
    read_from(plain, 100)
    assert [f[0] for f in plain_conn.frames] == [TYPE_WINDOW_UPDATE]


def test_window_update_batching_leaves_other_streams_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not batch_window_updates(FakeStream())
    assert not batch_window_updates(object())
    monkeypatch.setattr(bridge_module, "BATCH_WINDOW_UPDATES", False)
    stream = YamuxStream(1, FakeYamuxConn(), is_initiator=True)  # type: ignore[arg-type]
    assert not batch_window_updates(stream)
    assert "_auto_tune_and_send_window_update" not in vars(stream)
