"""asyncio adapter for :class:`mpcid.p2p.noise.NoiseChannel`.

:class:`ChannelProtocol` pumps bytes between any asyncio transport (a TCP connection, one
end of a socketpair bridged to a libp2p stream, a Unix socket) and the sans-IO channel, and
runs its timers. Once the handshake has proved the peer, it hands an application protocol
(MPyC's ``MessageExchanger``, unchanged) a :class:`ChannelTransport`: an ordinary asyncio
transport whose ``write`` encrypts.

Writes are coalesced per event-loop iteration. ``write`` only queues the bytes; the first
write of an iteration schedules one callback (``call_soon``, shared by every channel on the
loop) that runs at the start of the next iteration, before that iteration's I/O callbacks,
and seals what each channel's application wrote into one Noise frame and one ``send``. MPyC
writes every message separately, and a round's messages to one peer are written within one
iteration, after which the party waits for its peers: so each round costs one frame (one
encryption, one system call) per peer instead of one per message, and leaves as soon as the
writing iteration is over. A write of a full frame's worth or more goes out at once, behind
what is pending. On the receiving side, every whole frame of a read is opened where it
lies, and the DATA of one read reaches the application in one call.

The adapter knows nothing of the channel's states: it calls the core, writes what
:meth:`NoiseChannel.data_to_send` returns after every call, and stops when the core
raises or reports the end of the channel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from mpcid.identity.errors import MpcidError

from .errors import (ConnectFailed, ConnectionLost, HandshakeFailed, ListenFailed, ProtocolError,
                     TransportError)
from .noise import (MAX_CHUNK, ChannelConfig, DataReceived, HandshakeComplete, NoiseChannel,
                    PeerClosed)

log = logging.getLogger("mpcid.channel")

#: Builds the application protocol for a proven peer DID.
AppFactory = Callable[[str], asyncio.BaseProtocol]
#: Called once when a channel fails: (peer DID or None if unknown, the error).
FailureHandler = Callable[[str | None, MpcidError], None]
_E = TypeVar("_E", bound=MpcidError)


class _Flusher:
    """The writes of every channel on one event loop, sealed and sent once per iteration.

    The first write of an iteration schedules :meth:`_run` with ``call_soon``; it runs at
    the start of the next iteration, before that iteration's I/O callbacks, and hands every
    channel written to meanwhile its pending bytes: one frame, one ``send`` per channel and
    iteration, and one scheduled callback per iteration however many channels were written.
    """

    __slots__ = ("_dirty", "_scheduled", "__weakref__")

    def __init__(self) -> None:
        self._dirty: list[ChannelTransport] = []
        self._scheduled = False

    def add(self, transport: ChannelTransport) -> None:
        self._dirty.append(transport)
        if not self._scheduled:
            self._scheduled = True
            transport._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        dirty = self._dirty
        self._dirty = []
        try:
            for transport in dirty:
                transport._flush()
        finally:
            for transport in dirty:
                if transport._queued:  # not flushed: a failure handler raised before it
                    self.add(transport)


#: One flusher per event loop (weakly keyed: a closed and dropped loop takes its own along).
_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary())


def _flusher_of(loop: asyncio.AbstractEventLoop) -> _Flusher:
    try:
        flusher = _flushers.get(loop)
        if flusher is None:
            flusher = _flushers[loop] = _Flusher()
    except TypeError:  # a loop without weak references: a flusher of the channel's own
        flusher = _Flusher()
    return flusher


class ChannelTransport(asyncio.Transport):
    """What the application sees: an asyncio transport whose writes are coalesced per
    event-loop iteration and sealed into Noise frames (module docstring)."""

    def __init__(self, owner: ChannelProtocol) -> None:
        super().__init__()
        self._owner = owner
        self._loop = owner.loop
        self._flusher = _flusher_of(owner.loop)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._queued = False
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            # Copied: the application may reuse its buffer as soon as write returns.
            data = memoryview(data).tobytes()
        if self._closing or not data:
            return
        size = self._pending_size + len(data)
        if size < MAX_CHUNK:  # the common case: a small write, sent with the iteration's
            self._pending.append(data)
            self._pending_size = size
            if not self._queued:
                self._queued = True
                self._flusher.add(self)
            return
        # A full frame's worth: out now, behind what is pending (a bulk write is sent as
        # it is, without joining it to anything).
        if self._pending:
            self._flush()
        self._owner.send(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        """Seal and send what is pending (the flusher's call, or an early one)."""
        self._queued = False
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self._pending_size = 0
            self._owner.send(data)

    def close(self) -> None:
        if not self._closing:
            self._flush()
            self._closing = True
            self._owner.close()

    def abort(self) -> None:
        self._closing = True
        self._pending.clear()
        self._pending_size = 0
        self._owner.abort()

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._pending_size + self._owner.write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._owner.write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None
                                ) -> None:
        self._owner.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the channel to another application protocol: later data and the end of
        the channel go to it (used to switch from admission to MPyC)."""
        self._owner.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._owner.app is not None
        return self._owner.app

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peer_did":
            return self._owner.peer_did
        if name == "handshake_hash":
            return self._owner.handshake_hash
        if name in ("early_data", "early_binding", "early_data_sent"):
            # The initiator's early data (responder), what it was made for (both), and
            # whether this side sent some (initiator): specs/channel.md 4.2.
            return self._owner.early.get(name, default)
        return self._owner.transport_info(name, default)


class ChannelProtocol(asyncio.Protocol):
    """One channel over one asyncio transport."""

    def __init__(self, config: ChannelConfig, app_factory: AppFactory, *,
                 on_failure: FailureHandler | None = None, label: str = "") -> None:
        self.loop = asyncio.get_running_loop()
        self.config = config
        self.app_factory = app_factory
        self.on_failure = on_failure
        self.label = label
        self.ready: asyncio.Future[str] = self.loop.create_future()
        self.peer_did: str | None = None
        self.handshake_hash: bytes | None = None
        self.early: dict[str, Any] = {}
        self.app: asyncio.BaseProtocol | None = None
        self.app_transport: ChannelTransport | None = None
        self._transport: asyncio.Transport | None = None
        self._channel: NoiseChannel | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
        #: The channel once open, until it stops: data_received's fast path.
        self._open: NoiseChannel | None = None
        self._paused = False
        self._clock = self.loop.time
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._channel = NoiseChannel(self.config, self.loop.time())
        self._channel.start()
        self._write(self._channel.data_to_send())
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        channel = self._open
        if channel is not None:
            # Open: no handshake output to write, and the pending timer stays valid (see
            # _arm_timer), so this is the whole receiving path of a message.
            self.bytes_received += len(data)
            try:
                events = channel.receive_data(data, self._clock())
            except (ProtocolError, TransportError) as exc:
                self._fail(exc)
                return
            for event in events:
                if self._open is None:  # the application closed or aborted the channel
                    return
                if type(event) is DataReceived:
                    self.app.data_received(event.data)  # type: ignore[union-attr]
                else:  # PeerClosed
                    self._finish(None)
            return
        channel = self._channel
        if channel is None or self._done:
            return
        self.bytes_received += len(data)
        try:
            events = channel.receive_data(data, self._clock())
        except (ProtocolError, TransportError) as exc:
            self._fail(exc)
            return
        out = channel.data_to_send()  # the responder's handshake reply, before any data
        if out:
            self._write(out)
        for event in events:
            if type(event) is DataReceived:
                self.app.data_received(event.data)  # type: ignore[union-attr]
            elif isinstance(event, HandshakeComplete):
                # The handshake deadline is over; the keepalive one may be earlier.
                self._cancel_timer()
                self._opened(event)
            elif isinstance(event, PeerClosed):
                self._finish(None)
        self._arm_timer()

    def pause_writing(self) -> None:
        """The connection's buffer is full: the application is told, as by any
        asyncio transport (MPyC ignores it, as it does over TCP)."""
        self._paused = True
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        if self.app is not None:
            self.app.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done or self._channel is None:
            self._finish(None)
            return
        try:
            self._channel.connection_lost()
        except (ConnectionLost, HandshakeFailed) as lost:
            self._fail(lost if exc is None else _with_reason(lost, exc))
            return
        self._finish(None)

    # -- used by ChannelTransport ----------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        channel = self._open
        if channel is None:  # not open, or stopped: nothing to send on
            return
        try:
            # After the peer's CLOSE the core drops the data (an answer to the peer's last
            # message may race its CLOSE): then there is nothing to write.
            channel.send(data, self._clock())
        except ProtocolError as exc:
            self._fail(exc)
            return
        frames = channel.data_to_send()
        if frames:
            self.bytes_sent += len(frames)
            self._transport.write(frames)  # type: ignore[union-attr]

    def close(self) -> None:
        """Authenticated close: CLOSE frame, then the underlying transport."""
        if self._channel is not None and not self._done:
            try:
                self._channel.close(self.loop.time())
            except ProtocolError:
                pass
            else:
                self._write(self._channel.data_to_send())
        self._finish(None)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._open = None
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()
        if self.app is not None:  # asyncio's contract: connection_lost(None) follows abort()
            self.loop.call_soon(self.app.connection_lost, None)

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport else 0

    def write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits() if self._transport else (0, 0)

    def set_write_buffer_limits(self, high: int | None, low: int | None) -> None:
        if self._transport is not None:
            self._transport.set_write_buffer_limits(high, low)

    def transport_info(self, name: str, default: Any) -> Any:
        return self._transport.get_extra_info(name, default) if self._transport else default

    # -- internals -------------------------------------------------------------------------

    def _opened(self, event: HandshakeComplete) -> None:
        self.peer_did = event.peer_did
        self.handshake_hash = event.handshake_hash
        assert self._channel is not None
        self.early = {"early_data": event.early_data, "early_binding": event.early_binding,
                      "early_data_sent": self._channel.early_data_sent}
        log.debug("%schannel to %s established", self.label, event.peer_did)
        try:
            self.app = self.app_factory(event.peer_did)
        except MpcidError as exc:
            self._fail(exc)
            return
        self.app_transport = ChannelTransport(self)
        self._open = self._channel
        if not self.ready.done():
            self.ready.set_result(event.peer_did)
        self.app.connection_made(self.app_transport)
        if self._paused and not self._done:
            self.app.pause_writing()

    def _write(self, data: bytes | bytearray) -> None:
        if data and self._transport is not None and not self._transport.is_closing():
            self.bytes_sent += len(data)
            self._transport.write(data)

    def _arm_timer(self) -> None:
        # The core's deadline is fixed during the handshake and only moves later while the
        # channel is open (NoiseChannel.get_timer); data_received drops the pending timer
        # when the handshake completes. So a pending timer is never late, and one that
        # fires early is harmless (it re-arms): this keeps timer churn off the per-message
        # path.
        if self._channel is None or self._done or self._timer is not None:
            return
        deadline = self._channel.get_timer()
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._channel is None or self._done:
            return
        try:
            self._channel.handle_timer(self.loop.time())
        except (ProtocolError, TransportError) as exc:
            self._fail(exc)
            return
        self._write(self._channel.data_to_send())
        self._arm_timer()

    def _fail(self, exc: MpcidError) -> None:
        """The channel broke: drop the connection, report once, tell the application."""
        if not self._stop(exc, abort=True):
            return
        who = self.peer_did or (self._channel.peer_did if self._channel else None)
        if self.on_failure is not None:
            self.on_failure(who, exc)
        if self.app is not None:
            self.app.connection_lost(exc)

    def _finish(self, exc: Exception | None) -> None:
        """The channel ended (CLOSE, or closed by us): close the connection."""
        if not self._stop(ConnectionLost("the connection closed during the handshake"),
                          abort=False):
            return
        if self.app is not None:
            self.app.connection_lost(exc)

    def _stop(self, handshake_error: MpcidError, *, abort: bool) -> bool:
        """Stop once: timers off, transport aborted or closed, a pending handshake failed.
        False if already stopped."""
        if self._done:
            return False
        self._done = True
        self._open = None
        self._cancel_timer()
        if self._transport is not None:
            if abort:
                self._transport.abort()
            else:
                self._transport.close()
        if not self.ready.done():
            self.ready.set_exception(handshake_error)
            self.ready.exception()  # mark retrieved: failures are reported elsewhere
        return True


def _with_reason(lost: _E, exc: Exception) -> _E:
    """``lost`` with the transport's reason appended: a new error of the same class (the
    caught one is left as it is), caused by ``exc``."""
    error = type(lost)(f"{lost.message} ({exc})", hint=lost.hint)
    error.__cause__ = exc
    return error


#: Seconds before the first redial of a refused connection (the pause then doubles).
FIRST_RETRY = 0.01


async def listen(host: str, port: int, protocol_factory: Callable[[], ChannelProtocol]
                 ) -> asyncio.Server:
    """Accept channels on ``host:port``; raise :class:`ListenFailed` with the reason."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(protocol_factory, host or None, port,
                                        reuse_address=True)
    except OSError as exc:
        raise ListenFailed(f"cannot listen on {host or '*'}:{port}: {exc.strerror or exc}"
                           ) from None


async def connect(host: str, port: int, protocol_factory: Callable[[], ChannelProtocol], *,
                  deadline: float, retry_interval: float = 0.2, what: str = ""
                  ) -> ChannelProtocol:
    """Dial until the peer answers or ``deadline`` (loop time) passes; MPC parties start
    in any order, so a refused connection is retried, as MPyC itself does. The first
    retry comes after :data:`FIRST_RETRY` and the pause doubles up to ``retry_interval``:
    parties launched together find each other within milliseconds of the later one
    listening, and a party that is not up yet is dialled every ``retry_interval``."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    pause = min(FIRST_RETRY, retry_interval)
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            reason = f": {last.strerror or last}" if last is not None else ""
            raise ConnectFailed(f"could not connect to {what or 'the peer'} at {host}:{port}"
                                f"{reason}")
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(protocol_factory, host, port), timeout=remaining)
            return protocol
        except (OSError, asyncio.TimeoutError) as exc:
            last = exc if isinstance(exc, OSError) else None
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(2 * pause, retry_interval)


async def over_socket(sock: socket.socket, protocol_factory: Callable[[], ChannelProtocol]
                      ) -> ChannelProtocol:
    """Run a channel over an already connected socket (e.g. one end of a socketpair that
    is bridged to a libp2p stream): the same channel, whatever carries its bytes."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.connect_accepted_socket(protocol_factory, sock)
    return protocol
