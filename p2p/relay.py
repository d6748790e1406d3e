"""Circuit relay v2: the fallback path when two parties have no direct connection.

A node with a public address runs :func:`relay_service`; a party behind a NAT keeps a
:func:`reservation` on such a relay and publishes the circuit addresses it yields
(``<relay addr>/p2p-circuit/p2p/<own PeerID>``); another party reaches it with
:func:`dial_circuit`. The relayed connection is then an ordinary libp2p connection:
libp2p's Noise runs end to end over the circuit (the relay cannot pose as the target,
whose PeerID the handshake checks), ``host.new_stream`` and
:meth:`~mpcid.p2p.bridge.TrioThread.open_stream` reuse it, and mpcid's own Noise channel
runs inside its streams (``ARCHITECTURE.md`` section 1), so the relay only forwards
ciphertext.

Trio code: run it in the libp2p thread of :mod:`mpcid.p2p.bridge`, e.g.
``await bridge.enter_context(reservation(host, relay_addr))`` or
``await bridge.call(dial_circuit, host, circuit_addr)``. Everything raised is an
:class:`~mpcid.identity.errors.MpcidError`; py-libp2p's exceptions are mapped here.

py-libp2p 0.8.1 behaviours handled here, each in one place:

* ``host.connect`` drops ``/p2p-circuit`` addresses, so :func:`dial_circuit` goes through
  ``CircuitV2Transport.dial``, which also upgrades the circuit (Noise, yamux) and adds the
  connection to the swarm.
* ``CircuitV2Transport.reserve`` reports a refusal only as ``False`` (the relay's status
  code is logged, not returned), and its refresher lives in a nursery the caller must own.
  :func:`reserve` speaks the two-message RESERVE exchange itself (with py-libp2p's
  message types and framing) to tell the user *why* a relay said no, and
  :func:`reservation` owns its refresher.
* A relay accepts a circuit only while the reserved peer is connected to it; the
  refresher reconnects and reserves again when that connection drops.
* py-libp2p's relay reserves for the peer named *inside* a RESERVE message when there is
  one, so one client could fill a relay with reservations for made-up PeerIDs. The relay
  of :func:`relay_service` ignores that field: a reservation is always for the peer the
  connection authenticated (which is what the spec says: RESERVE carries no peer).
* py-libp2p's relay caps reservations only in total, one per PeerID, and a PeerID costs
  nothing: one client making up keys could take every slot (``max_reservations``, 128).
  Ours also caps the reservations held from one source address
  (:attr:`RelayLimits.max_reservations_per_ip`), and when a cap is reached it first
  releases the reservations of peers that have disconnected (a reservation is valid only
  while its peer stays connected), which py-libp2p would count until they expire.
* Throughput and round trips (``benchmarks/README.md`` section 4). py-libp2p's relay loop
  reads 65535 bytes at a time, which its yamux and Noise split into several frames; ours
  reads :data:`FORWARD_CHUNK`, one frame. The circuit's ends read the relay stream for
  libp2p's Noise in small pieces, each costing a window update through the relay; they
  read it through a buffer (:class:`_BufferedReads`). And every stream on the path (the
  relay's, the circuit's ends) grants window in batches
  (:func:`mpcid.p2p.bridge.batch_window_updates`). :func:`dial_circuit` does what
  ``CircuitV2Transport.dial`` does, with the buffer in between.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import time
import weakref
from typing import Any
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from libp2p.abc import IHost, INetStream
from libp2p.connection_types import ConnectionType
from libp2p.io.abc import ReadWriteCloser
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.exceptions import RelayConnectionError
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import STOP_PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode, to_proto_status
from libp2p.relay.circuit_v2.resources import RelayLimits as Libp2pRelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service

from mpcid.identity.errors import MpcidError, UsageError

from .bridge import batch_window_updates
from .errors import ConnectFailed
from .host import CONNECT_TIMEOUT, connect, parse_multiaddrs

__all__ = ["HOP_PROTOCOL_ID", "STOP_PROTOCOL_ID", "RelayLimits", "circuit_addr",
           "dial_circuit", "libp2p_limits", "relay_service", "reservation",
           "reservation_source", "reserve"]

log = logging.getLogger("mpcid.relay")

#: py-libp2p relay loggers turned down to CRITICAL (unless configured by the application),
#: and why: both log at ERROR or WARNING what mpcid raises as :class:`ConnectFailed`
#: anyway, and the relay logs "Error reading from hop stream" each time a client closes
#: its RESERVE stream, which is the normal end of that exchange.
QUIET_LOGGERS = ("libp2p.relay.circuit_v2.transport", "libp2p.relay.circuit_v2.protocol")

#: How often :func:`reservation` checks that the connection to the relay is still up.
CHECK_INTERVAL = 5.0

#: Most bytes the relay of :func:`relay_service` moves per read, in each direction of a
#: circuit. py-libp2p reads 65535 (``MAX_READ_LEN``), which its yamux sends as two DATA
#: frames (65524 + 11 bytes) and its Noise as three messages (65519 + 17 + 23); 65507 plus
#: the 12-byte yamux header is 65519, one frame and one Noise message. Each read also
#: costs a yamux window update to the sender, so reads should not be smaller either.
FORWARD_CHUNK = 65507

#: Bytes a circuit's end reads from its relay stream at once (see :class:`_BufferedReads`).
CIRCUIT_READ = 256 * 1024


@dataclass(frozen=True)
class RelayLimits:
    """What a relay (:func:`relay_service`) grants; the defaults suit a public node."""

    duration: int = 3600
    """Seconds a circuit may stay open; the relay resets it then (0: no limit)."""
    data: int = 1 << 30
    """Bytes a circuit may carry, both directions together (0: no limit). 1 GiB carries a
    CNN MNIST session many times over."""
    max_reservations: int = 128
    """Peers that may hold a reservation at once. A reservation counts until it expires,
    even after its peer went away."""
    max_circuits: int = 64
    """Circuits open at once to one reserved peer (py-libp2p counts per reservation)."""
    reservation_ttl: int = 3600
    """Seconds a reservation lasts; clients renew it before then."""
    max_reservations_per_ip: int = 8
    """Reservations held at once by peers connecting from one IPv4 address or one IPv6
    /64 network (a client can pick any address in its /64). A PeerID costs nothing, so
    without this one client could take every slot; more than one because parties behind
    one NAT share its address."""

    def __post_init__(self) -> None:
        for name in ("duration", "data"):
            if getattr(self, name) < 0:
                raise UsageError(f"relay limit {name} must be 0 (no limit) or positive")
        for name in ("max_reservations", "max_circuits", "reservation_ttl",
                     "max_reservations_per_ip"):
            if getattr(self, name) < 1:
                raise UsageError(f"relay limit {name} must be at least 1")


def libp2p_limits(limits: RelayLimits) -> Libp2pRelayLimits:
    """py-libp2p's ``RelayLimits`` for ours."""
    return Libp2pRelayLimits(duration=limits.duration, data=limits.data,
                             max_circuit_conns=limits.max_circuits,
                             max_reservations=limits.max_reservations,
                             reservation_ttl=limits.reservation_ttl)


def circuit_addr(relay_addr: str, peer_id: str) -> str:
    """The address at which ``peer_id`` is reached through the relay at ``relay_addr``."""
    return f"{relay_addr}/p2p-circuit/p2p/{peer_id}"


# -- the relay -----------------------------------------------------------------------------


#: The circuit (its two streams) whose data the current relay task moves.
_CIRCUIT: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "mpcid_relay_circuit", default=None)


class _Circuits(dict):  # type: ignore[type-arg]
    """py-libp2p 0.8.1 files open circuits in ``_active_relays`` by PeerID, so a second
    circuit to the same target replaces the first one's entry, and when the first circuit
    ends its cleanup closes the streams it finds there: the second circuit's. In a session
    with several parties behind NAT, one party leaving would cut another's channel.

    Inside a relay task (:meth:`_HopProtocol._relay_data` sets :data:`_CIRCUIT`) this table
    answers with that task's own circuit and forgets an entry only if it is that circuit;
    everywhere else it is the plain dict py-libp2p expects."""

    def __contains__(self, key: object) -> bool:
        return _CIRCUIT.get() is not None or super().__contains__(key)

    def __getitem__(self, key: Any) -> Any:
        circuit = _CIRCUIT.get()
        return circuit if circuit is not None else super().__getitem__(key)

    def __delitem__(self, key: Any) -> None:
        circuit = _CIRCUIT.get()
        if circuit is None:
            super().__delitem__(key)
            return
        entry = super().get(key)
        if entry is not None and any(s is not None and s in circuit for s in entry):
            super().__delitem__(key)


def reservation_source(address: tuple[str, int] | None) -> str:
    """The source a reservation is counted against: the IPv4 address, or the /64 network
    of an IPv6 address, of the reserving connection (``"unknown"`` if it has none)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address[0])
    except ValueError:
        return str(address[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _HopProtocol(CircuitV2Protocol):
    """py-libp2p's relay, with three fixes: it reserves only for the peer its connection
    authenticated, caps the reservations of one source address, and the end of one
    circuit closes only that circuit."""

    def __init__(self, host: IHost, limits: RelayLimits) -> None:
        super().__init__(host, limits=libp2p_limits(limits), allow_hop=True)
        self._active_relays = _Circuits()
        self._per_source = limits.max_reservations_per_ip
        #: The source (:func:`reservation_source`) of each reserved peer.
        self.sources: dict[ID, str] = {}

    async def _handle_reserve(self, stream: INetStream, msg: HopMessage) -> None:
        msg.ClearField("peer")  # py-libp2p would reserve for whoever this names
        peer = stream.muxed_conn.peer_id
        if not self.resource_manager.has_reservation(peer):  # a renewal takes no slot
            source = reservation_source(stream.get_remote_address())
            if not self._room_for(peer, source):
                log.info("refused a reservation for %s from %s: relay or source full",
                         peer, source)
                await write_delimited_msg(stream, HopMessage(
                    type=HopMessage.STATUS,
                    status=to_proto_status(StatusCode.RESOURCE_LIMIT_EXCEEDED)))
                return
            self.sources[peer] = source
        await super()._handle_reserve(stream, msg)

    def _room_for(self, peer: ID, source: str) -> bool:
        """Whether ``peer`` (from ``source``) may take a new slot; at a cap, first
        release the reservations of peers that are gone."""
        for release_gone in (False, True):
            if release_gone:
                self._release_disconnected()
            held = self._held()
            from_source = sum(1 for p in held
                              if p != peer and self.sources.get(p) == source)
            if len(held) < self.limits.max_reservations and from_source < self._per_source:
                return True
        return False

    def _held(self) -> list[ID]:
        reservations = self.resource_manager._reservations
        for gone in [p for p, r in reservations.items() if r.is_expired()]:
            del reservations[gone]
        for gone in [p for p in self.sources if p not in reservations]:
            del self.sources[gone]
        return list(reservations)

    def _release_disconnected(self) -> None:
        reservations = self.resource_manager._reservations
        network = self.host.get_network()
        for peer in list(reservations):
            if not network.get_connections(peer):
                del reservations[peer]
                self.sources.pop(peer, None)

    async def _relay_data(self, src_stream: INetStream, dst_stream: INetStream,
                          *args: Any, **kwargs: Any) -> None:
        # Trio gives each task its own copy of the context: this binds only this task.
        _CIRCUIT.set((src_stream, dst_stream))
        batch_window_updates(src_stream)  # the stream this task reads
        await super()._relay_data(src_stream, dst_stream, *args, **kwargs)

    async def _read_stream_with_retry(self, stream: INetStream, *args: Any, **kwargs: Any
                                      ) -> bytes | None:
        """The read of py-libp2p's relay loop, in :data:`FORWARD_CHUNK` pieces. A read
        that fails (end of stream, reset) is left to py-libp2p's own handling."""
        try:
            data = await stream.read(FORWARD_CHUNK)
        except Exception:
            return await super()._read_stream_with_retry(stream, *args, **kwargs)
        return data or None


@asynccontextmanager
async def relay_service(host: IHost, limits: RelayLimits | None = None
                        ) -> AsyncIterator[None]:
    """Trio: make ``host`` a circuit relay v2 hop (and let it accept relayed connections
    itself) until exit."""
    _quiet_libp2p_logging()
    protocol = _HopProtocol(host, limits or RelayLimits())
    async with background_trio_service(protocol):
        yield


# -- reservations --------------------------------------------------------------------------


async def reserve(host: IHost, relay_addr: str, *, timeout: float = CONNECT_TIMEOUT
                  ) -> list[str]:
    """Trio: connect to the relay at ``relay_addr`` (ending in ``/p2p/<PeerID>``), reserve
    a slot there and return the circuit addresses at which ``host`` can now be reached.

    One-shot: the reservation lasts the relay's TTL and only while the connection to the
    relay stays up, and ``host`` must accept relayed connections. :func:`reservation`
    does all of that; use this one to check a relay. Raises :class:`ConnectFailed` saying
    why the relay could not be reached or refused, :class:`UsageError` for a bad address."""
    addrs, _ = await _reserve(host, relay_addr, timeout)
    return addrs


@asynccontextmanager
async def reservation(host: IHost, relay_addr: str, *, timeout: float = CONNECT_TIMEOUT,
                      check_interval: float = CHECK_INTERVAL) -> AsyncIterator[list[str]]:
    """Trio: hold a reservation on the relay at ``relay_addr`` while the context is
    entered, and yield the circuit addresses of ``host`` (:func:`circuit_addr`).

    ``host`` accepts relayed connections meanwhile. A task renews the reservation before it
    expires, and reconnects and reserves again when the connection to the relay drops
    (checked every ``check_interval`` seconds); failures there are logged and retried, as
    the relay may come back. The first reservation must succeed: it raises as
    :func:`reserve` does."""
    _accept_relayed(host)
    try:
        addrs, expires = await _reserve(host, relay_addr, timeout)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_reserved, host, relay_addr, expires, timeout,
                               check_interval)
            try:
                yield addrs
            finally:
                nursery.cancel_scope.cancel()
    finally:
        _stop_accepting_relayed(host)


async def _reserve(host: IHost, relay_addr: str, timeout: float) -> tuple[list[str], int]:
    """:func:`reserve`, also returning when the reservation expires (Unix time)."""
    _quiet_libp2p_logging()
    relay = await connect(host, relay_addr, timeout=timeout)
    base = relay_addr if relay_addr.endswith(f"/p2p/{relay}") else f"{relay_addr}/p2p/{relay}"
    try:
        with trio.fail_after(timeout):
            stream = await host.new_stream(ID.from_base58(relay), [HOP_PROTOCOL_ID])
    except trio.TooSlowError:
        raise ConnectFailed(f"{relay_addr} did not accept a relay stream within "
                            f"{timeout:g} s") from None
    except Exception as exc:
        raise ConnectFailed(f"{relay_addr} is not a circuit relay: it refused "
                            f"{HOP_PROTOCOL_ID} ({_reason(exc)})",
                            hint="give the address of a node started as a relay") from exc
    try:
        with trio.fail_after(timeout):
            # The spec's RESERVE carries no fields: the relay reserves for the
            # authenticated peer of this connection.
            await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
            response = await read_delimited_msg(stream, HopMessage)
    except trio.TooSlowError:
        raise ConnectFailed(f"the relay {relay_addr} did not answer the reservation "
                            f"within {timeout:g} s") from None
    except Exception as exc:
        raise ConnectFailed(f"the relay {relay_addr} cut the reservation short: "
                            f"{_reason(exc)}") from exc
    finally:
        with trio.move_on_after(1.0) as scope:
            scope.shield = True
            try:
                await stream.close()
            except Exception:  # the relay may already have reset it
                pass
    status = response.status if response.HasField("status") else StatusCode.OK
    if status != StatusCode.OK:
        raise ConnectFailed(f"the relay {relay_addr} refused the reservation: "
                            f"{_explain(status)}", hint=_RESERVE_HINTS.get(status))
    expires = response.reservation.expire if response.HasField("reservation") else 0
    if expires <= time.time():
        raise ConnectFailed(f"the relay {relay_addr} granted a reservation that has "
                            "already expired",
                            hint="the relay's clock may be wrong; try another relay")
    return [circuit_addr(base, host.get_id().to_base58())], expires


async def _keep_reserved(host: IHost, relay_addr: str, expires: int, timeout: float,
                         check_interval: float) -> None:
    """Renew the reservation at three quarters of its life (at most a minute before it
    expires), or at once when the connection to the relay is gone."""
    relay = ID.from_base58(relay_addr.rsplit("/p2p/", 1)[-1])
    margin = min(60.0, (expires - time.time()) / 4)
    while True:
        renew_at = expires - margin
        await trio.sleep(max(0.0, min(check_interval, renew_at - time.time())))
        if host.get_network().get_connections(relay) and time.time() < renew_at:
            continue
        try:
            _, expires = await _reserve(host, relay_addr, timeout)
        except MpcidError as exc:
            log.warning("could not renew the reservation on %s (retrying in %g s): %s",
                        relay_addr, check_interval, exc.one_line())
            await trio.sleep(check_interval)
        else:
            log.debug("renewed the reservation on %s until %d", relay_addr, expires)


#: Hosts accepting relayed connections, and how many reservations need that. The STOP
#: handler is per host, so the first reservation installs it and the last removes it.
_relayed_users: weakref.WeakKeyDictionary[IHost, int] = weakref.WeakKeyDictionary()


class _BufferedReads:
    """A circuit's relay stream, read :data:`CIRCUIT_READ` bytes at a time.

    libp2p's Noise runs end to end over the relay stream and reads it as py-libp2p reads a
    TCP socket: a 2-byte length, then the message. On a yamux stream every read sends the
    relay a window update (py-libp2p 0.8.1 credits each read at once), which the relay
    decrypts and handles, so each Noise message cost the relay connection two or more
    extra frames; for the 16-byte messages of an MPC round, most frames on the relay's
    connections were window updates. Served from one buffered read, the Noise reads of a
    whole batch cost one update. Everything but ``read`` is the stream's own."""

    def __init__(self, stream: ReadWriteCloser, size: int) -> None:
        self._stream = stream
        self._size = size
        self._buffer = b""
        self._offset = 0

    async def read(self, n: int | None = None) -> bytes:
        buffered = len(self._buffer) - self._offset
        if buffered > 0:
            take = buffered if n is None or n < 0 else min(n, buffered)
            data = self._buffer[self._offset:self._offset + take]
            self._offset += take
            return data
        if n is None or n < 0 or n >= self._size:
            return await self._stream.read(n)
        data = await self._stream.read(self._size)
        if len(data) <= n:
            return data
        self._buffer, self._offset = data, n
        return data[:n]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _StopProtocol(CircuitV2Protocol):
    """py-libp2p's STOP side (accepting relayed connections), whose connections read
    their relay stream through :class:`_BufferedReads`."""

    async def handle_incoming_connection(self, stream: INetStream, remote_peer_id: bytes
                                         ) -> None:
        await super().handle_incoming_connection(_circuit_end(stream), remote_peer_id)


def _circuit_end(stream: Any) -> Any:
    """How a circuit's end reads its relay stream (a libp2p stream, or the raw connection
    py-libp2p made of one): in :data:`CIRCUIT_READ` pieces (as is, if that is 0), with
    window updates in batches (:func:`~mpcid.p2p.bridge.batch_window_updates`)."""
    # A raw connection names its libp2p stream ``stream``; a libp2p stream has none.
    batch_window_updates(getattr(stream, "stream", stream))
    return _BufferedReads(stream, CIRCUIT_READ) if CIRCUIT_READ > 0 else stream


def _accept_relayed(host: IHost) -> None:
    count = _relayed_users.get(host, 0)
    if count == 0:
        # What CircuitV2Protocol.run() installs for the STOP role, without its service:
        # a service would live in the nursery of one reservation and end with it.
        stop = _StopProtocol(host, allow_hop=False)
        host.set_stream_handler(STOP_PROTOCOL_ID, stop._handle_stop_stream)
    _relayed_users[host] = count + 1


def _stop_accepting_relayed(host: IHost) -> None:
    count = _relayed_users.get(host, 0) - 1
    if count > 0:
        _relayed_users[host] = count
        return
    _relayed_users.pop(host, None)
    try:
        host.remove_stream_handler(STOP_PROTOCOL_ID)
    except Exception:  # the host is already gone
        pass


# -- dialing -------------------------------------------------------------------------------


async def dial_circuit(host: IHost, circuit: str, *, timeout: float = CONNECT_TIMEOUT
                       ) -> str:
    """Trio: connect ``host`` through a relay to the peer at ``circuit``
    (``<relay addr>/p2p-circuit/p2p/<PeerID>``) and return that PeerID.

    Afterwards ``host.new_stream(peer, ...)`` and ``TrioThread.open_stream`` use the
    relayed connection. Returns at once if ``host`` is already connected to the peer.
    The peer proves its PeerID in libp2p's Noise handshake, so the relay cannot stand in
    for it. Raises :class:`ConnectFailed` saying why, :class:`UsageError` for an address
    that is not a circuit address."""
    _quiet_libp2p_logging()
    (maddr,) = parse_multiaddrs([circuit])
    transport = CircuitV2Transport(host, CircuitV2Protocol(host),
                                   RelayConfig(roles=RelayRole.STOP))  # STOP: no reserving
    try:
        relay_maddr, peer = transport.parse_circuit_ma(maddr)
        relay = relay_maddr.get_peer_id()
        if not relay:
            raise ValueError("no relay PeerID")
    except ValueError as exc:
        raise UsageError(f"{circuit!r} is not a relay circuit address ({exc})",
                         hint="it looks like /ip4/.../tcp/.../p2p/<relay>/p2p-circuit/"
                              "p2p/<PeerID>") from None
    if host.get_network().get_connections(peer):
        return peer.to_base58()
    try:
        with trio.fail_after(timeout):
            # CircuitV2Transport.dial(maddr), with the circuit read through
            # _BufferedReads before libp2p's Noise and yamux are set up on it.
            circuit_conn = await transport.dial_peer_info(
                PeerInfo(peer, [maddr]), relay_info=PeerInfo(ID.from_base58(str(relay)),
                                                             [relay_maddr]))
            raw = RawConnection(stream=_circuit_end(circuit_conn), initiator=True,
                                connection_type=ConnectionType.RELAYED,
                                addresses=circuit_conn.get_transport_addresses())
            await host.upgrade_outbound_connection(raw, peer)
    except trio.TooSlowError:
        raise ConnectFailed(f"could not reach {peer} through the relay {relay} within "
                            f"{timeout:g} s") from None
    except Exception as exc:
        raise ConnectFailed(f"could not reach {peer} through the relay {relay}: "
                            f"{_dial_failure(exc)}", hint=_dial_hint(exc)) from exc
    return peer.to_base58()


# -- errors --------------------------------------------------------------------------------

_STATUS_TEXT: dict[int, str] = {
    StatusCode.RESERVATION_REFUSED: "the relay does not take reservations from us",
    StatusCode.RESOURCE_LIMIT_EXCEEDED: "the relay is full (it holds as many reservations, "
                                        "or circuits, as its limits allow)",
    StatusCode.PERMISSION_DENIED: "permission denied (a relay refuses requests that "
                                  "arrive over a relayed connection)",
    StatusCode.CONNECTION_FAILED: "the relay could not connect to the peer",
    StatusCode.NO_RESERVATION: "the peer holds no reservation on that relay",
    StatusCode.MALFORMED_MESSAGE: "the relay could not parse our request",
    StatusCode.UNEXPECTED_MESSAGE: "the relay did not expect our request",
}

_RESERVE_HINTS: dict[int, str] = {
    StatusCode.RESOURCE_LIMIT_EXCEEDED: "try another relay, or later",
    StatusCode.RESERVATION_REFUSED: "try another relay",
    StatusCode.PERMISSION_DENIED: "connect to the relay directly, not through another relay",
}

_DIAL_HINTS: dict[int, str] = {
    StatusCode.NO_RESERVATION: "the peer is offline or reserved on another relay; look up "
                               "its current addresses",
    StatusCode.RESOURCE_LIMIT_EXCEEDED: "the peer has too many relayed connections; try "
                                        "again later or another relay",
    StatusCode.CONNECTION_FAILED: "the peer lost its connection to the relay; try again",
}


def _explain(status: int) -> str:
    try:
        name = StatusCode(status).name
    except ValueError:
        name = str(status)
    return f"{_STATUS_TEXT.get(status, 'it answered with an unknown status')} ({name})"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, contexts and first group members, outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in found):
        found.append(current)
        group = getattr(current, "exceptions", None)
        current = group[0] if group else current.__cause__ or current.__context__
    return found


def _status(exc: BaseException) -> int | None:
    for inner in _chain(exc):
        if isinstance(inner, RelayConnectionError) and inner.status_code is not None:
            return int(inner.status_code)
    return None


def _reason(exc: BaseException) -> str:
    return "; ".join(dict.fromkeys(str(e) for e in _chain(exc) if str(e))) or type(
        exc).__name__


def _dial_failure(exc: BaseException) -> str:
    status = _status(exc)
    return _explain(status) if status is not None else _reason(exc)


def _dial_hint(exc: BaseException) -> str | None:
    status = _status(exc)
    return _DIAL_HINTS.get(status) if status is not None else None


def _quiet_libp2p_logging() -> None:
    """See :data:`QUIET_LOGGERS`; leaves alone any logger the application has configured."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)

