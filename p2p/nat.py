"""Behind NATs: what others observe of this party, and TCP hole punching (``specs/discovery.md`` 8).

Reachability. A party asks each bootstrap node it joined through for libp2p *identify*
(``/ipfs/id/1.0.0``, the standard protocol every libp2p node answers), which reports the
address the node saw the connection come from (``observedAddr``) and the protocols the node
speaks. If the observed IP is the address this machine itself uses towards that node, no
NAT is in between and the party is ``public``; otherwise it is behind a ``nat``, and its
public IP (as the node saw it) is an address it cannot vouch for. Both facts go into the
party's endpoint record (extra fields ``reach`` and ``observed``, :func:`record_fields`).
A node that speaks circuit relay v2 (``/libp2p/circuit/relay/0.2.0/hop``) is used as a
relay by a party behind a NAT without any flag (:mod:`mpcid.p2p.discovery`).

Hole punching. Two parties behind NATs coordinate over a relayed libp2p connection on
:data:`PUNCH_PROTOCOL`, modelled on libp2p's DCUtR: the initiator sends ``connect`` with
the public endpoint it predicts for a fresh local port (its observed IP and that port,
which a port-preserving NAT keeps), the responder answers with its own, the initiator
measures the round trip and sends ``sync``; the responder connects at once, the initiator
half a round trip later, both from their announced ports to the other's endpoint. The
SYNs cross and open one TCP connection (simultaneous open) through both NATs, which have
each just seen an outgoing packet to the other. mpcid's end-to-end Noise channel then runs
over it exactly as over any other TCP connection. libp2p's own DCUtR would punch a
connection for libp2p, which the data plane does not use (``ARCHITECTURE.md`` 1), so the
messages are ours (JSON, length-prefixed) and so is the protocol id.

Everything a peer sends here is bounded: messages of at most :data:`MAX_MESSAGE` bytes,
at most :data:`MAX_TARGETS` endpoints, IP literals only (no name is resolved), never a
loopback, unspecified, multicast or link-local address, and the whole exchange ends
within its deadline.

The identify client is trio code (run it in the libp2p thread); the punching is asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mpcid.identity.errors import MpcidError

from .errors import ConnectFailed, InvalidRecord, RemoteProtocolError
from .records import EndpointRecord, parse_endpoint

log = logging.getLogger("mpcid.nat")

PUNCH_PROTOCOL = "/mpcid/punch/1.0.0"
IDENTIFY_PROTOCOL = "/ipfs/id/1.0.0"
HOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/hop"
PUBLIC, NAT = "public", "nat"
MAX_MESSAGE = 1024
MAX_TARGETS = 4
MAX_IDENTIFY = 64 * 1024
PUNCH_TIMEOUT = 5.0
"""Seconds a punching attempt may take, coordination included, before the relay is used."""
RETRY_INTERVAL = 0.2
"""Seconds between connection attempts from the same port while a punch is under way (a
peer host that is not behind a NAT refuses a SYN that arrives before its own)."""


@dataclass(frozen=True)
class Observed:
    """What one node told this party about itself through identify."""

    ip: str | None
    """The IP address the node saw this party's connection come from."""
    relay: bool
    """Whether the node offers circuit relay v2 (a hop)."""


# --- identify (trio) --------------------------------------------------------------------------


async def identify(host: Any, peer_id: Any, timeout: float = 5.0) -> Observed:
    """Ask ``peer_id`` (already connected) for identify; raise :class:`ConnectFailed`."""
    import trio
    from libp2p.custom_types import TProtocol
    from libp2p.identity.identify.identify import parse_identify_response
    from libp2p.network.stream.exceptions import StreamEOF
    from multiaddr import Multiaddr

    from .multistream import OptimisticHost

    try:
        with trio.fail_after(timeout):
            # Every libp2p host serves identify: its negotiation travels with the
            # request (one round trip instead of three, mpcid.p2p.multistream).
            stream = await OptimisticHost(host, {IDENTIFY_PROTOCOL}, known=False).new_stream(
                peer_id, [TProtocol(IDENTIFY_PROTOCOL)])
            try:
                data = b""
                while len(data) <= MAX_IDENTIFY:
                    try:
                        chunk = await stream.read(MAX_IDENTIFY)
                    except StreamEOF:
                        break
                    if not chunk:
                        break
                    data += chunk
            finally:
                with contextlib.suppress(Exception):
                    await stream.close()
    except trio.TooSlowError:
        raise ConnectFailed(f"identify with {peer_id} took over {timeout:g} s") from None
    except MpcidError:
        raise
    except Exception as exc:
        raise ConnectFailed(f"identify with {peer_id} failed: "
                            f"{exc or type(exc).__name__}") from None
    if len(data) > MAX_IDENTIFY:
        raise RemoteProtocolError(f"identify answer of {peer_id} is too long")
    try:
        answer = parse_identify_response(data)
        observed = Multiaddr(answer.observed_addr) if answer.observed_addr else None
    except Exception:
        raise RemoteProtocolError(f"identify answer of {peer_id} is malformed") from None
    ip = None
    if observed is not None:
        for proto in ("ip4", "ip6"):
            with contextlib.suppress(Exception):
                ip = str(ipaddress.ip_address(observed.value_for_protocol(proto)))
                break
    return Observed(ip=ip, relay=HOP_PROTOCOL in answer.protocols)


async def relayed_only(host: Any, peer: str) -> bool:
    """Whether every libp2p connection of ``host`` to ``peer`` (a PeerID) is relayed."""
    from libp2p.connection_types import ConnectionType
    from libp2p.peer.id import ID

    def relayed(conn: Any) -> bool:
        # py-libp2p marks a circuit as RELAYED only on its innermost raw connection (the
        # swarm and muxed connections above may say DIRECT): walk down to it.
        layer, depth = conn, 0
        while layer is not None and depth < 8:
            with contextlib.suppress(Exception):
                if layer.get_connection_type() == ConnectionType.RELAYED:
                    return True
            layer = next((getattr(layer, a) for a in ("muxed_conn", "secured_conn", "conn",
                                                      "_wrapped") if hasattr(layer, a)), None)
            depth += 1
        return False

    conns = host.get_network().get_connections(ID.from_base58(peer))
    return bool(conns) and all(relayed(c) for c in conns)


def interface_addresses() -> list[str]:
    """This machine's IPv4 addresses, one per interface that has one (Linux ioctl; else
    the addresses its host name and default route give), loopback included."""
    found: list[str] = []
    try:
        import fcntl

        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _, name in socket.if_nameindex():
                request = struct.pack("256s", name.encode()[:15])
                try:
                    reply = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
                except OSError:
                    continue  # no IPv4 address on it
                found.append(socket.inet_ntoa(reply[20:24]))
        finally:
            probe.close()
    except (ImportError, OSError, AttributeError):
        pass
    if not found:
        with contextlib.suppress(OSError):
            found += socket.gethostbyname_ex(socket.gethostname())[2]
        towards = local_address_towards("192.0.2.1")  # TEST-NET-1: the default route
        if towards:
            found.append(towards)
        found.append("127.0.0.1")
    return list(dict.fromkeys(found))


def dialable(addresses: list[str]) -> list[tuple[str, str]]:
    """``addresses`` ordered for sharing, each with its kind: ``public`` first, then
    ``private`` (reachable from the same network), then ``loopback`` (this machine)."""
    kinds = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_multicast or ip.is_link_local:
            continue
        kind = "loopback" if ip.is_loopback else "public" if ip.is_global else "private"
        kinds.append((address, kind))
    order = {"public": 0, "private": 1, "loopback": 2}
    return sorted(kinds, key=lambda item: order[item[1]])


def local_address_towards(ip: str) -> str | None:
    """The address this machine uses to reach ``ip`` (no packet is sent), or None."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    except ValueError:
        return None
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect((ip, 9))
        return str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()


def reach(local: str | None, observed: str | None) -> str | None:
    """``public`` when a node saw this party at the address it has itself, ``nat`` when
    it saw another one, None when nothing was observed."""
    if observed is None or local is None:
        return None
    return PUBLIC if ipaddress.ip_address(local) == ipaddress.ip_address(observed) else NAT


# --- the record's fields --------------------------------------------------------------------


def record_fields(reach_: str | None, observed: list[str]) -> dict[str, Any]:
    """The extra fields of an endpoint record: ``reach`` and the ``observed`` endpoints
    (``ip:port``) that others saw and this party cannot vouch for."""
    fields: dict[str, Any] = {}
    if reach_ is not None:
        fields["reach"] = reach_
    if observed:
        fields["observed"] = observed[:MAX_TARGETS]
    return fields


def record_reach(record: EndpointRecord) -> str | None:
    """``public``, ``nat`` or None (not said, or not understood)."""
    value = record.extra.get("reach")
    return value if value in (PUBLIC, NAT) else None


def record_observed(record: EndpointRecord) -> list[tuple[str, int]]:
    """The record's ``observed`` endpoints that parse (others are ignored)."""
    value = record.extra.get("observed")
    found = []
    for item in value[:MAX_TARGETS] if isinstance(value, list) else []:
        with contextlib.suppress(InvalidRecord):
            found.append(parse_endpoint(item))
    return found


def initiates(lower: bool, mine: str | None, theirs: str | None) -> bool:
    """Whether this party opens the channel of a pair (``specs/channel.md`` 6): the lower
    index does, unless it is public and the other is behind a NAT, which then dials out
    to it (no relay, no punching)."""
    reversed_ = theirs == NAT and mine == PUBLIC if lower else mine == NAT and theirs == PUBLIC
    return lower != reversed_


def may_reach_directly(mine: str | None, my_ip: str | None, record: EndpointRecord) -> bool:
    """Whether the ``tcp`` endpoints of ``record`` may be reachable from this party: not
    when both are behind NATs with different public IPs, since a NATed party's endpoints
    are addresses of its own network (trying them would only cost the direct timeout
    before punching). Behind the same NAT (same public IP) they may be."""
    if mine != NAT or record_reach(record) != NAT:
        return True
    return my_ip is not None and my_ip in {host for host, _ in record_observed(record)}


# --- punching (asyncio) -----------------------------------------------------------------------


def check_target(host: str, port: int) -> tuple[str, int]:
    """A peer-given endpoint to connect to: an IP literal that is not loopback,
    unspecified, multicast or link-local (raises :class:`RemoteProtocolError`)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise RemoteProtocolError(f"punch target {host!r} is not an IP address") from None
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local:
        raise RemoteProtocolError("punch target is not a routable address")
    if not 0 < port < 65536:
        raise RemoteProtocolError("punch target port out of range")
    return str(ip), port


def bound_socket(port: int = 0, family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking TCP socket bound to ``port`` with SO_REUSEADDR and SO_REUSEPORT, so
    that several attempts (and a listener) may share the port."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def simultaneous_open(port: int, targets: list[tuple[str, int]], until: float
                            ) -> socket.socket:
    """Connect from local ``port`` to the first of ``targets`` that answers before the
    loop time ``until``, retrying refused attempts; raise :class:`ConnectFailed`."""
    loop = asyncio.get_running_loop()

    async def one(target: tuple[str, int]) -> socket.socket:
        last = "no answer"
        while loop.time() < until:
            sock = bound_socket(port)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, target),
                                       max(0.01, until - loop.time()))
                return sock
            except asyncio.TimeoutError:
                sock.close()
                break
            except OSError as exc:  # refused: the peer's SYN was not out yet
                sock.close()
                last = exc.strerror or type(exc).__name__
                await asyncio.sleep(min(RETRY_INTERVAL, max(0.0, until - loop.time())))
            except BaseException:
                sock.close()
                raise
        raise ConnectFailed(f"{target[0]}:{target[1]}: {last}")

    tasks = [asyncio.ensure_future(one(t)) for t in targets[:MAX_TARGETS]]
    failures: list[str] = []
    winner: socket.socket | None = None
    try:
        for next_done in asyncio.as_completed(tasks):
            try:
                winner = await next_done
                return winner
            except ConnectFailed as exc:
                failures.append(str(exc))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:  # a second connection that also made it is not used
            if not task.cancelled() and task.exception() is None \
                    and task.result() is not winner:
                task.result().close()
    raise ConnectFailed("hole punching failed: " + ("; ".join(failures) or "no target"))


class PunchChannel:
    """The coordination messages over a (relayed) stream, bridged to a socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def over(cls, sock: socket.socket) -> PunchChannel:
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def send(self, message: Mapping[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        self.writer.write(struct.pack(">H", len(data)) + data)
        await self.writer.drain()

    async def receive(self, expected: str, until: float) -> dict[str, Any]:
        """The next message, which must be of type ``expected``, by loop time ``until``."""
        loop = asyncio.get_running_loop()
        try:
            (size,) = struct.unpack(">H", await asyncio.wait_for(
                self.reader.readexactly(2), max(0.0, until - loop.time())))
            if size > MAX_MESSAGE:
                raise RemoteProtocolError(f"punch message of {size} bytes")
            message = json.loads(await asyncio.wait_for(
                self.reader.readexactly(size), max(0.0, until - loop.time())))
        except asyncio.TimeoutError:
            raise ConnectFailed(f"no punch {expected!r} message in time") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise ConnectFailed("the peer closed the punch coordination") from None
        except (ValueError, UnicodeDecodeError):
            raise RemoteProtocolError("a punch message is not JSON") from None
        if not isinstance(message, dict) or message.get("t") != expected:
            raise RemoteProtocolError(f"expected a punch {expected!r} message")
        return message

    def close(self) -> None:
        self.writer.close()


def read_targets(message: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The endpoints of a ``connect`` message, checked (:func:`check_target`)."""
    raw = message.get("addrs")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_TARGETS:
        raise RemoteProtocolError(f"a punch connect names 1 to {MAX_TARGETS} endpoints")
    targets = []
    for item in raw:
        try:
            host, port = parse_endpoint(item)
        except InvalidRecord:
            raise RemoteProtocolError("a punch endpoint is not host:port") from None
        targets.append(check_target(host, port))
    return targets


async def punch_as_initiator(channel: PunchChannel, public_ip: str, until: float
                             ) -> socket.socket:
    """This side's half of a punch (it sent the request): returns the connected socket."""
    loop = asyncio.get_running_loop()
    probe = bound_socket()  # reserves a fresh port for the attempt
    try:
        port = probe.getsockname()[1]
        sent = loop.time()
        await channel.send({"t": "connect", "addrs": [_endpoint(public_ip, port)]})
        targets = read_targets(await channel.receive("connect", until))
        rtt = loop.time() - sent
        await channel.send({"t": "sync"})
        await asyncio.sleep(min(rtt / 2, max(0.0, until - loop.time())))
        return await simultaneous_open(port, targets, until)
    finally:
        probe.close()


async def punch_as_responder(channel: PunchChannel, public_ip: str, until: float
                             ) -> socket.socket:
    """The other side's half: answer ``connect``, connect on ``sync``."""
    probe = bound_socket()
    try:
        port = probe.getsockname()[1]
        targets = read_targets(await channel.receive("connect", until))
        await channel.send({"t": "connect", "addrs": [_endpoint(public_ip, port)]})
        await channel.receive("sync", until)
        return await simultaneous_open(port, targets, until)
    finally:
        probe.close()


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
