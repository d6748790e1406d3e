"""The one place where trio meets asyncio: libp2p runs on a trio loop in a background thread.

Theory of operation
-------------------
mpcid is asyncio (MPyC is); py-libp2p is trio. Instead of mixing event loops, a
:class:`TrioThread` runs ``trio.run`` in one daemon thread, and everything of libp2p lives
there: hosts, connections, streams and their handlers. asyncio code reaches it through four
doors only:

* :meth:`TrioThread.call` runs a trio coroutine function as a task in the thread's nursery
  and hands its result, or its exception, back to the awaiting asyncio task;
* :meth:`TrioThread.enter_context` enters an async context manager there (a running host,
  a DHT service) and keeps it entered until :meth:`TrioThread.stop`, which exits all of them
  in reverse order, as an ``AsyncExitStack`` would;
* a libp2p stream crosses as a socket: :meth:`TrioThread.adopt_stream` joins the stream to
  one end of a ``socket.socketpair()`` with two pump tasks, one per direction, and returns
  the other end to asyncio, which can run any protocol on it
  (:func:`mpcid.p2p.channel.over_socket`, ``asyncio.open_connection(sock=...)``);
  :meth:`TrioThread.open_stream` and :meth:`TrioThread.set_stream_handler` do this for
  outgoing and incoming streams. The kernel's socket buffer is all the two threads share,
  so no lock is needed and back-pressure is free: a full socket stops the pump reading,
  which stops yamux's window updates, which stops the sender.

A pump moves bytes in sizes that suit py-libp2p's framing (:data:`SEND_CHUNK`,
:data:`RECEIVE_CHUNK`), and the yamux streams it adopts grant their sender window in
batches (:func:`batch_window_updates`): py-libp2p's own per-read grants doubled the frames
of every small message, and more over a relay (``benchmarks/README.md`` section 4).

A pump mirrors TCP: end of stream from libp2p becomes ``shutdown(SHUT_WR)`` on the socket;
end of file on the socket closes the libp2p stream for writing (yamux ``FIN``), and the
stream is fully closed once both directions have ended. A libp2p reset, or an asyncio side
that closed its socket while data still arrives, resets the stream and closes the socket.
(A socketpair cannot signal a reset, so asyncio sees a reset as end of file; mpcid's channel
tells an authenticated close from a cut stream by itself.)

Threading rules
---------------
1. libp2p objects are used only in the trio thread: in functions given to ``call``, in
   context managers given to ``enter_context``, and in stream handlers. asyncio code may
   hold them (a host returned by ``enter_context``) and pass them back into the trio
   thread, and may read immutable facts such as ``host.get_id()``, but must not call
   anything that awaits or changes state.
2. The trio thread never blocks on asyncio: results go back with
   ``loop.call_soon_threadsafe``, which also starts asyncio callbacks as tasks that the
   bridge references until they end; trio never awaits them. asyncio never blocks on trio
   either: it awaits futures that the trio thread completes.
3. :meth:`TrioThread.adopt_stream` is called in the trio thread. The socket it returns
   belongs to asyncio, which must close it; the other end belongs to the pump.
4. :meth:`TrioThread.stop` cancels every call in flight (its caller gets
   :class:`TransportError`) and every pump (their sockets see end of file, their streams
   are reset), then exits the entered contexts in reverse order, and joins the thread,
   all within ``stop_timeout``; it may be called any number of times.

Errors: everything this module raises is an :class:`~mpcid.identity.errors.MpcidError`.
``call`` is generic and passes the exception of the function it ran through unchanged, so
the functions given to it map library exceptions themselves (as :mod:`mpcid.p2p.host` does).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import threading
import types
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Protocol, TypeVar

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from mpcid.identity.errors import UsageError

from .errors import ConnectFailed, LocalProtocolError, TransportError

__all__ = ["ByteStream", "StreamCallback", "TrioThread", "batch_window_updates"]

log = logging.getLogger("mpcid.bridge")

T = TypeVar("T")

#: Most bytes a pump reads from its socket and writes to the libp2p stream at once
#: (asyncio -> libp2p). py-libp2p 0.8.1 splits writes into yamux DATA frames of at most
#: 65524 bytes (``MAX_MESSAGE_SIZE`` 65536 with the 12-byte header), and each write of its
#: Noise transport into messages of at most 65519 plaintext bytes (65535 minus the tag), so
#: a 64 KiB write became two yamux frames and three Noise messages (65519, 17 and 24
#: bytes), every one with its own locks, awaits and ``send``. This size makes one write one
#: yamux frame and one Noise message on every connection it crosses, also through a relay,
#: where the whole inner Noise message (2-byte length, 65489 plaintext bytes, 16-byte tag)
#: is the payload of one yamux frame of the circuit's stream (65507 + 12 = 65519): 65477 =
#: 65519 - 12 (outer yamux header) - 2 - 16 (inner Noise) - 12 (inner yamux header).
SEND_CHUNK = 65477
#: Most bytes a pump reads from the libp2p stream at once and sends to its socket (libp2p
#: -> asyncio). Not bound by any framing: yamux hands over what it has buffered, and
#: each read costs a trip through yamux's read path and a ``send``, so larger reads cost
#: less.
RECEIVE_CHUNK = 256 * 1024
#: Whether :func:`batch_window_updates` changes the streams given to it (the relay
#: benchmark turns it off to measure py-libp2p's own behaviour side by side).
BATCH_WINDOW_UPDATES = True


class ByteStream(Protocol):
    """What a pump needs of a libp2p stream (``libp2p.abc.INetStream`` has it).

    ``read`` returns ``b""`` or raises ``EOFError`` (libp2p's ``StreamEOF``) at end of
    stream. A ``close_write()`` method, if present, half-closes; ``close`` closes fully."""

    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


#: An asyncio coroutine function that takes over an incoming stream: called with the
#: asyncio end of the socketpair and the remote PeerID, it owns (and must close) the socket.
StreamCallback = Callable[[socket.socket, str], Awaitable[None]]

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], *,
            result: Any = None, error: BaseException | None = None) -> None:
    """Complete an asyncio future from any thread (first completion wins)."""
    def apply() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    try:
        loop.call_soon_threadsafe(apply)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


class _Enter:
    """A request to the trio main task: enter ``cm`` and report its value."""

    def __init__(self, cm: AbstractAsyncContextManager[Any],
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.cm = cm
        self.loop = loop
        self.future = future


class TrioThread:
    """A trio event loop in a background thread, driven from asyncio.

    Usage::

        bridge = TrioThread()
        await bridge.start()
        host = await bridge.enter_context(running_host(key, ["/ip4/0.0.0.0/tcp/4001"]))
        sock = await bridge.open_stream(host, peer_id, "/mpcid/channel/1.0.0")
        protocol = await over_socket(sock, channel_factory)
        ...
        await bridge.stop()

    ``start`` and ``stop`` may be repeated; each start runs a fresh thread.
    """

    def __init__(self, *, name: str = "mpcid-libp2p", start_timeout: float = 10.0,
                 stop_timeout: float = 5.0) -> None:
        self.name = name
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        #: Why the last trio run ended with an error, if it did.
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._finished = True  # no thread running (guarded by _lock)
        self._pending: set[_Waiter] = set()  # futures the trio side must complete
        self._exit_waiters: list[_Waiter] = []
        # Set in the trio thread while it runs; read elsewhere only to schedule into it.
        self._token: trio.lowlevel.TrioToken | None = None
        self._work: trio.Nursery | None = None
        self._work_scope: trio.CancelScope | None = None
        self._services_scope: trio.CancelScope | None = None
        self._requests: trio.MemorySendChannel[_Enter | None] | None = None
        # Tasks running stream callbacks. asyncio keeps only weak references to tasks, so a
        # callback waiting on its own socket would otherwise be garbage-collected mid-way
        # ("Task was destroyed but it is pending!"); touched on the asyncio side only.
        self._deliveries: set[asyncio.Task[None]] = set()

    # -- lifecycle (asyncio) ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and the end of the trio run."""
        with self._lock:
            return not self._finished and self._token is not None

    async def start(self) -> None:
        """Start the trio thread and wait until it accepts work. A no-op if running.
        Raises :class:`TransportError` if the thread cannot start."""
        if self._thread is not None and self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self.error = None
        self._token = None
        thread = threading.Thread(target=self._thread_main, args=(loop, ready),
                                  name=self.name, daemon=True)
        with self._lock:
            self._finished = False
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread"
            with self._lock:
                self._finished = True
            raise TransportError(f"cannot start the libp2p thread: {exc}",
                                 hint="the system is out of threads or memory") from None
        self._thread = thread
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.start_timeout)
        except asyncio.TimeoutError:
            await self.stop()
            raise TransportError(f"the libp2p thread did not start within "
                                 f"{self.start_timeout:g} s",
                                 hint="the machine may be overloaded; try again") from None
        except TransportError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Cancel all work, exit the entered contexts (newest first) and join the thread,
        within ``stop_timeout`` (then the daemon thread is left behind with a warning).
        Safe to call at any time, any number of times."""
        thread = self._thread
        if thread is None:
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._finished:
                exited.set_result(None)
            else:
                self._exit_waiters.append((loop, exited))
        self._run_soon(self._request_stop)
        try:
            # The trio side has its own deadline of stop_timeout for the contexts; the
            # margin lets it report after that.
            await asyncio.wait_for(asyncio.shield(exited), self.stop_timeout + 2.0)
        except asyncio.TimeoutError:
            log.warning("the libp2p thread did not stop within %.1f s; leaving it behind",
                        self.stop_timeout)
            self._thread = None
            return
        # The thread has left trio.run and only has its last lines to run.
        for _ in range(1000):
            if not thread.is_alive():
                break
            await asyncio.sleep(0.001)
        self._thread = None

    # -- cross-thread calls (asyncio) ------------------------------------------------------

    async def call(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await afn(*args)`` in the trio thread and return its result, or raise its
        exception here. Cancelling the awaiting asyncio task cancels the trio task.
        Raises :class:`TransportError` if the thread is not running or stops meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        scope = trio.CancelScope()
        self._register(loop, future)

        def spawn() -> None:
            try:
                self._require_work().start_soon(self._run_call, afn, args, scope, loop,
                                                future)
            except (RuntimeError, TransportError) as exc:  # the nursery is closing
                _settle(loop, future, error=_stopped(exc))

        self._schedule(spawn, loop, future)
        try:
            return await future
        except asyncio.CancelledError:
            self._run_soon(scope.cancel)
            raise

    async def enter_context(self, cm: AbstractAsyncContextManager[T]) -> T:
        """Enter ``cm`` in the trio thread and return what it yields; it stays entered
        until :meth:`stop`, which exits the contexts in reverse order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._register(loop, future)
        request = _Enter(cm, loop, future)

        def send() -> None:
            try:
                if self._requests is None:
                    raise RuntimeError("not running")
                self._requests.send_nowait(request)
            except (RuntimeError, trio.ClosedResourceError, trio.BrokenResourceError
                    ) as exc:
                _settle(loop, future, error=_stopped(exc))

        self._schedule(send, loop, future)
        return await future

    # -- streams ---------------------------------------------------------------------------

    def adopt_stream(self, stream: ByteStream, *, label: str = "") -> socket.socket:
        """Trio thread only: hand ``stream`` over to asyncio as a connected socket.

        Bytes are pumped both ways until both directions have ended (see the module
        docstring). The returned socket is non-blocking and the caller's to close. On
        :class:`TransportError` the stream was not adopted and is still the caller's."""
        self._check_in_trio_thread()
        work = self._require_work()
        try:
            theirs, ours = socket.socketpair()
        except OSError as exc:
            raise TransportError(f"cannot create a socket pair for a libp2p stream: {exc}",
                                 hint="the process may be out of file descriptors") from None
        theirs.setblocking(False)
        batch_window_updates(stream)
        try:
            pump_end = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
            work.start_soon(_pump, stream, pump_end, label or "stream", name="pump")
        except RuntimeError as exc:  # the nursery is closing: we are stopping
            theirs.close()
            ours.close()
            raise _stopped(exc) from None
        return theirs

    async def open_stream(self, host: IHost, peer_id: str, protocol: str) -> socket.socket:
        """Open a libp2p stream from ``host`` to ``peer_id`` (dialing if needed) speaking
        ``protocol``, and return it as a socket for asyncio. Raises :class:`ConnectFailed`."""
        try:
            peer = ID.from_base58(peer_id)
        except Exception as exc:
            raise UsageError(f"{peer_id!r} is not a libp2p PeerID ({exc})") from None

        async def open_and_adopt() -> socket.socket:
            try:
                stream = await host.new_stream(peer, [TProtocol(protocol)])
            except Exception as exc:
                raise ConnectFailed(f"cannot open a {protocol} stream to {peer_id}: "
                                    f"{str(exc) or type(exc).__name__}") from exc
            try:
                return self.adopt_stream(stream, label=f"{protocol} to {peer_id[-8:]}")
            except TransportError:
                await _quietly(stream.reset)
                raise

        return await self.call(open_and_adopt)

    async def set_stream_handler(self, host: IHost, protocol: str,
                                 callback: StreamCallback) -> None:
        """Hand every incoming ``protocol`` stream of ``host`` to ``callback(sock, peer_id)``,
        run as a task on the calling asyncio loop. The callback owns the socket; if it
        raises, the error is logged and the socket closed."""
        loop = asyncio.get_running_loop()

        async def handler(stream: INetStream) -> None:
            peer = str(stream.muxed_conn.peer_id)
            try:
                sock = self.adopt_stream(stream, label=f"{protocol} from {peer[-8:]}")
            except TransportError as exc:
                log.debug("dropping an incoming %s stream: %s", protocol, exc)
                await _quietly(stream.reset)
                return
            try:
                loop.call_soon_threadsafe(self._deliver, callback, sock, peer)
            except RuntimeError:  # the asyncio loop is closed
                sock.close()

        async def register() -> None:
            host.set_stream_handler(TProtocol(protocol), handler)

        await self.call(register)

    def _deliver(self, callback: StreamCallback, sock: socket.socket, peer: str) -> None:
        """On the asyncio loop: run ``callback`` for an incoming stream as a task that is
        referenced until it ends."""
        task = asyncio.ensure_future(_deliver(callback, sock, peer))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    # -- the trio side ---------------------------------------------------------------------

    def _thread_main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]
                     ) -> None:
        error: BaseException | None = None
        try:
            trio.run(self._main, loop, ready)
        except BaseException as exc:  # report everything: this thread has no caller
            error = exc
            log.error("the libp2p thread stopped with an error", exc_info=exc)
        finally:
            with self._lock:
                self._finished = True
                pending, self._pending = self._pending, set()
                waiters, self._exit_waiters = self._exit_waiters, []
            self.error = error
            self._token = self._work = self._requests = None
            self._work_scope = self._services_scope = None
            reason = f": {error}" if error is not None else ""
            _settle(loop, ready, error=TransportError(
                f"the libp2p thread could not start{reason}",
                hint="see the log for libp2p's error"))
            for wloop, future in pending:
                _settle(wloop, future, error=TransportError(
                    f"the libp2p thread stopped before the call finished{reason}"))
            for wloop, future in waiters:
                _settle(wloop, future)

    async def _main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]
                    ) -> None:
        send, receive = trio.open_memory_channel[_Enter | None](math.inf)
        async with trio.open_nursery() as root:
            work_ready, work_done = trio.Event(), trio.Event()
            root.start_soon(self._run_work, work_ready, work_done)
            await work_ready.wait()
            self._requests = send
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as self._services_scope:
                async with AsyncExitStack() as services:
                    _settle(loop, ready)
                    try:
                        async for request in receive:
                            if request is None:
                                break
                            await self._enter(services, request)
                    finally:
                        # Calls and pumps end before the services they use.
                        with trio.CancelScope(shield=True) as wait:
                            wait.deadline = trio.current_time() + self.stop_timeout
                            if self._work_scope is not None:
                                self._work_scope.cancel()
                            await work_done.wait()

    async def _run_work(self, ready: trio.Event, done: trio.Event) -> None:
        """Own the nursery of calls and pumps (``self._work``) until stop cancels it."""
        try:
            with trio.CancelScope() as self._work_scope:
                async with trio.open_nursery() as self._work:
                    ready.set()
                    await trio.sleep_forever()
        finally:
            done.set()

    async def _enter(self, services: AsyncExitStack, request: _Enter) -> None:
        try:
            value = await services.enter_async_context(request.cm)
        except Exception as exc:
            _settle(request.loop, request.future, error=exc)
        else:
            _settle(request.loop, request.future, result=value)

    async def _run_call(self, afn: Callable[..., Awaitable[T]], args: tuple[Any, ...],
                        scope: trio.CancelScope, loop: asyncio.AbstractEventLoop,
                        future: asyncio.Future[T]) -> None:
        try:
            with scope:
                try:
                    result = await afn(*args)
                except Exception as exc:
                    _settle(loop, future, error=exc)
                else:
                    _settle(loop, future, result=result)
                return
            # Only reached when ``scope`` caught its own cancellation: the asyncio side
            # gave up; its future is already cancelled, so this is a formality.
            _settle(loop, future, error=TransportError("the call was cancelled"))
        except BaseException as exc:  # trio.Cancelled by stop(), or worse
            _settle(loop, future, error=_stopped(exc))
            raise

    def _request_stop(self) -> None:
        """Trio thread: begin an orderly stop (see ``_main``)."""
        if self._work_scope is not None:
            self._work_scope.cancel()
        if self._services_scope is not None:
            # Contexts get stop_timeout to exit; also ends an enter_context that hangs.
            self._services_scope.deadline = trio.current_time() + self.stop_timeout
        if self._requests is not None:
            try:
                self._requests.send_nowait(None)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

    # -- helpers ---------------------------------------------------------------------------

    def _register(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        """Remember ``future`` so that the thread fails it if it ends first."""
        waiter: _Waiter = (loop, future)
        with self._lock:
            if self._finished:
                raise TransportError("the libp2p thread is not running",
                                     hint="start it first (TrioThread.start)")
            self._pending.add(waiter)

        def forget(_: asyncio.Future[Any]) -> None:
            with self._lock:
                self._pending.discard(waiter)
        future.add_done_callback(forget)

    def _schedule(self, fn: Callable[[], None], loop: asyncio.AbstractEventLoop,
                  future: asyncio.Future[Any]) -> None:
        if not self._run_soon(fn):
            _settle(loop, future, error=TransportError("the libp2p thread is not running",
                                                       hint="start it first"))

    def _run_soon(self, fn: Callable[[], None]) -> bool:
        token = self._token
        if token is None:
            return False
        try:
            token.run_sync_soon(fn)
        except trio.RunFinishedError:
            return False
        return True

    def _require_work(self) -> trio.Nursery:
        if self._work is None:
            raise TransportError("the libp2p thread is not running", hint="start it first")
        return self._work

    def _check_in_trio_thread(self) -> None:
        try:
            here = trio.lowlevel.current_trio_token()
        except RuntimeError:
            here = None
        if here is None or here is not self._token:
            raise LocalProtocolError("adopt_stream must be called in the libp2p thread "
                                     "(inside a function given to TrioThread.call)")


def batch_window_updates(stream: object) -> bool:
    """Make a yamux stream (``stream``, or its ``muxed_stream``) grant its sender more
    window only in batches of half its receive window, as go-yamux does; return whether
    it was changed (not if ``stream`` is no py-libp2p yamux stream, or if
    :data:`BATCH_WINDOW_UPDATES` is off). Trio thread only.

    Why: py-libp2p 0.8.1 sends a WINDOW_UPDATE frame after (nearly) every read of a yamux
    stream (``YamuxStream._auto_tune_and_send_window_update``: the "release on read" and
    "partial slack" cases), so every small message read costs a second frame back, which
    the sender must decrypt and handle. Over a relay it multiplies: the update of the
    inner stream is itself a message through the relay, whose reads cost updates on both
    relay connections; an MPC round trip of two 16-byte messages took ~25 Noise messages
    instead of 6. The replacement keeps py-libp2p's own window bookkeeping (the grow-to
    target and its auto-tuning) and only drops the per-read grants; it is also the
    protocol's behaviour everywhere else, so any sender handles it. The only process-wide
    alternative, ``PY_YAMUX_RELEASE_ON_READ=0``, still updates on every other read.

    Narrow on purpose: it replaces one method on the given stream object, not on the
    class, so the streams of the DHT and of other libp2p users are left alone. If an
    upgrade of py-libp2p renames the method, nothing is changed (and
    ``tests/p2p/test_bridge.py`` fails to say so)."""
    muxed = getattr(stream, "muxed_stream", stream)
    if (not BATCH_WINDOW_UPDATES or not isinstance(muxed, YamuxStream)
            or not hasattr(YamuxStream, "_auto_tune_and_send_window_update")):
        return False
    muxed._auto_tune_and_send_window_update = types.MethodType(  # type: ignore[method-assign]
        _grant_in_batches, muxed)
    return True


async def _grant_in_batches(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """What py-libp2p's ``_auto_tune_and_send_window_update`` does in its "grow to" case
    (the go-yamux rule), without its per-read grants: once at least half of the target
    window has been read and not yet granted, grant all of it (plus what auto-tuning adds).
    Runs after each read, which is when the read bytes have left the buffer."""
    del bytes_read  # counted below, as the bytes neither buffered nor granted
    increment = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        ungranted = self.target_recv_window - (self.recv_window + buffered)
        if ungranted > 0 and ungranted >= self.target_recv_window // 2:
            self.recv_window += ungranted
            increment = ungranted + self._apply_autotune_epoch(buffered)
    if increment > 0:
        await self.send_window_update(increment)


def _stopped(cause: BaseException) -> TransportError:
    error = TransportError("the libp2p thread stopped before the call finished",
                           hint="the program is shutting down, or libp2p failed (see the log)")
    error.__cause__ = cause if isinstance(cause, Exception) else None
    return error


async def _quietly(afn: Callable[[], Awaitable[None]]) -> None:
    """Best-effort cleanup of a libp2p stream; a broken stream may refuse it."""
    with trio.move_on_after(1.0) as scope:
        scope.shield = True
        try:
            await afn()
        except Exception as exc:
            log.debug("ignoring an error while closing a libp2p stream: %r", exc)


async def _pump(stream: ByteStream, sock: trio.SocketStream, label: str) -> None:
    """Copy bytes both ways between a libp2p stream and the trio end of a socketpair."""

    async def to_socket() -> None:  # libp2p -> asyncio
        while True:
            try:
                data = await stream.read(RECEIVE_CHUNK)
            except EOFError:
                break
            if not data:
                break
            await sock.send_all(data)
        try:
            await sock.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # asyncio closed its end already; nothing left to tell it

    async def to_stream() -> None:  # asyncio -> libp2p
        while True:
            data = await sock.receive_some(SEND_CHUNK)
            if not data:
                break
            await stream.write(data)
        close_write = getattr(stream, "close_write", None)
        await (close_write() if callable(close_write) else stream.close())

    clean = False
    try:
        async with trio.open_nursery() as nursery:
            async def guarded(direction: Callable[[], Awaitable[None]]) -> None:
                try:
                    await direction()
                except Exception as exc:  # reset, closed, broken pipe: the stream is over
                    log.debug("%s: %s ended by %r", label, direction.__name__, exc)
                    nursery.cancel_scope.cancel()
            nursery.start_soon(guarded, to_socket)
            nursery.start_soon(guarded, to_stream)
        clean = not nursery.cancel_scope.cancel_called
    finally:
        # Also when stop() cancels us: then, as after an error, the stream is reset.
        with trio.CancelScope(shield=True):
            await sock.aclose()
        await _quietly(stream.close if clean else stream.reset)


async def _deliver(callback: StreamCallback, sock: socket.socket, peer: str) -> None:
    """asyncio side of an incoming stream: run the user's callback, clean up if it fails."""
    try:
        await callback(sock, peer)
    except Exception:
        log.exception("the handler of an incoming libp2p stream from %s failed", peer)
        sock.close()
