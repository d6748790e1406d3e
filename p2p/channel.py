"""asyncio adapter for :class:`mpcid.p2p.noise.NoiseChannel`.

:class:`ChannelProtocol` pumps bytes between any asyncio transport (a TCP connection, one
end of a socketpair bridged to a libp2p stream, a Unix socket) and the sans-IO channel, and
runs its timers. Once the handshake has proved the peer, it hands an application protocol
(MPyC's ``MessageExchanger``, unchanged) a :class:`ChannelTransport`: an ordinary asyncio
transport whose ``write`` encrypts.

Writes are coalesced: the first write of an event-loop iteration goes out at once (no
added latency for a lone message), and everything else written during that iteration is
sealed into as few Noise frames as possible at the start of the next one. MPyC writes every
message separately, so this turns thousands of tiny writes into a few frames per round.

The adapter knows nothing of the channel's states: it calls the core, writes what
:meth:`NoiseChannel.data_to_send` returns after every call, and stops when the core
raises or reports the end of the channel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from mpcid.identity.errors import MpcidError

from .errors import (ConnectFailed, ConnectionLost, HandshakeFailed, ListenFailed, ProtocolError,
                     TransportError)
from .noise import ChannelConfig, DataReceived, HandshakeComplete, NoiseChannel, PeerClosed

log = logging.getLogger("mpcid.channel")

#: Builds the application protocol for a proven peer DID.
AppFactory = Callable[[str], asyncio.BaseProtocol]
#: Called once when a channel fails: (peer DID or None if unknown, the error).
FailureHandler = Callable[[str | None, MpcidError], None]
_E = TypeVar("_E", bound=MpcidError)


class ChannelTransport(asyncio.Transport):
    """What the application sees: writes are encrypted and coalesced per loop iteration."""

    def __init__(self, owner: ChannelProtocol) -> None:
        super().__init__()
        self._owner = owner
        self._pending: list[bytes] = []
        self._scheduled = False
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if not self._scheduled:
            # First write of this loop iteration: send now, batch whatever follows.
            self._scheduled = True
            self._owner.loop.call_soon(self._flush)
            self._owner.send(data)
            return
        self._pending.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        self._scheduled = False
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._owner.send(data)

    def close(self) -> None:
        if not self._closing:
            self._flush()
            self._closing = True
            self._owner.close()

    def abort(self) -> None:
        self._closing = True
        self._pending.clear()
        self._owner.abort()

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self._pending)) + self._owner.write_buffer_size()

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
        self.app: asyncio.BaseProtocol | None = None
        self.app_transport: ChannelTransport | None = None
        self._transport: asyncio.Transport | None = None
        self._channel: NoiseChannel | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
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
        channel = self._channel
        if channel is None or self._done:
            return
        self.bytes_received += len(data)
        try:
            events = channel.receive_data(data, self.loop.time())
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
        channel = self._channel
        if channel is None or self._done:
            return
        try:
            # After the peer's CLOSE the core drops the data (an answer to the peer's last
            # message may race its CLOSE): then there is nothing to write.
            channel.send(data, self.loop.time())
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
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()
        if self.app is not None:  # asyncio's contract: connection_lost(None) follows abort()
            self.loop.call_soon(self.app.connection_lost, None)

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport else 0

    def transport_info(self, name: str, default: Any) -> Any:
        return self._transport.get_extra_info(name, default) if self._transport else default

    # -- internals -------------------------------------------------------------------------

    def _opened(self, event: HandshakeComplete) -> None:
        self.peer_did = event.peer_did
        self.handshake_hash = event.handshake_hash
        log.debug("%schannel to %s established", self.label, event.peer_did)
        try:
            self.app = self.app_factory(event.peer_did)
        except MpcidError as exc:
            self._fail(exc)
            return
        self.app_transport = ChannelTransport(self)
        if not self.ready.done():
            self.ready.set_result(event.peer_did)
        self.app.connection_made(self.app_transport)

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
    in any order, so a refused connection is retried, as MPyC itself does."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
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
        await asyncio.sleep(min(retry_interval, max(0.0, deadline - loop.time())))


async def over_socket(sock: socket.socket, protocol_factory: Callable[[], ChannelProtocol]
                      ) -> ChannelProtocol:
    """Run a channel over an already connected socket (e.g. one end of a socketpair that
    is bridged to a libp2p stream): the same channel, whatever carries its bytes."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.connect_accepted_socket(protocol_factory, sock)
    return protocol
