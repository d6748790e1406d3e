"""A py-libp2p host that carries a party's DID key and trusts only Noise.

One Ed25519 seed per party gives its ``did:key``, its libp2p PeerID (``12D3KooW...``, the
identity multihash of the protobuf-encoded public key) and, converted to X25519, the static
key of mpcid's own Noise channel (``ARCHITECTURE.md`` section 2). This module turns an
:class:`~mpcid.identity.did_key.Ed25519Key` into a libp2p host with:

* **security: Noise only.** ``new_host()`` would otherwise also offer secio and *plaintext*;
  a probe showed that a plaintext dialer then gets an unencrypted session;
* **muxer: yamux only.** mplex was 4x slower and hung when bridged to asyncio;
* identify and ping, which libp2p's host registers by default (js-libp2p pings a peer before
  it adds it to its DHT routing table);
* a fix for py-libp2p's fixed 250 ms dial delay (see :data:`CONNECTION_CONFIG`).

The DHT and the relay are added on top of this host elsewhere.

Threads: :func:`libp2p_key_pair`, :func:`peer_id_from_public_key`, :func:`make_host` and
:func:`host_addrs` are plain functions. :func:`running_host` and :func:`connect` are trio
code: run them in the libp2p thread of :mod:`mpcid.p2p.bridge`, e.g.
``host = await bridge.enter_context(running_host(key, ["/ip4/0.0.0.0/tcp/4001"]))``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import UsageError

from .errors import ConnectFailed, ListenFailed
from .multistream import negotiate_lazily

__all__ = ["CONNECTION_CONFIG", "NOISE_PROTOCOL_ID", "QUIET_LOGGERS", "YAMUX_PROTOCOL_ID",
           "connect", "host_addrs", "libp2p_key_pair", "make_host", "parse_multiaddrs",
           "peer_id_from_public_key", "running_host"]

#: py-libp2p's connection settings with one change, ``max_connections_per_peer=1``.
#:
#: Why: ``Swarm.dial_peer`` starts the dial of each address and then waits
#: ``_HAPPY_EYEBALLS_DELAY`` (250 ms, a module constant) *or until that dial fails*; a
#: dial that succeeds does not end the wait. Only reaching ``max_connections_per_peer``
#: connections cancels it, and the default is 3, so every successful dial took 250 ms even
#: on loopback. With a limit of 1 the first connection ends the dial at once, which is
#: what go-libp2p's dial delay means (a head start for the preferred address, not a toll).
#: This is a per-host setting through a public constructor argument; the alternative,
#: assigning ``libp2p.network.swarm._HAPPY_EYEBALLS_DELAY = 0``, would change every host in
#: the process through a private name that an upgrade could rename without notice (the
#: assignment would then silently do nothing). One connection per peer is also what we
#: want anyway: simultaneous dials that create a second one are trimmed by libp2p after
#: its grace period, the connection with fewer streams first.
CONNECTION_CONFIG = ConnectionConfig(max_connections_per_peer=1)

#: libp2p loggers that :func:`make_host` turns down to CRITICAL, unless the application has
#: set their level itself, and why: py-libp2p logs at ERROR, and so prints to stderr even
#: without any logging configuration, things that mpcid raises as exceptions anyway, or
#: that are harmless races when a host stops.
#: Not silenced: ``libp2p.network.swarm``, whose "failed to upgrade security" also reports
#: inbound peers that offer no Noise, worth an operator's eye.
QUIET_LOGGERS: dict[str, str] = {
    "libp2p.transport.tcp.tcp":
        "dial and listen failures; connect() and running_host() raise them as "
        "ConnectFailed and ListenFailed",
    "libp2p.host.basic_host":
        "'Failed to open stream' for identify streams that a stopping host cuts; other "
        "stream failures reach the caller (TrioThread.open_stream raises ConnectFailed)",
    "libp2p.protocol_muxer.multiselect_client":
        "the same cut identify streams, one layer down",
}

#: How long :func:`connect` waits for a dial, security and muxer handshake by default.
CONNECT_TIMEOUT = 10.0
#: How long :func:`running_host` gives the host to close its connections on exit.
CLOSE_TIMEOUT = 2.0


def libp2p_key_pair(key: Ed25519Key) -> KeyPair:
    """The libp2p identity key pair of a party: the same Ed25519 seed as its DID."""
    return ed25519_key_pair(key.seed)


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p PeerID (``12D3KooW...``) of a 32-byte Ed25519 public key, e.g. the one a
    ``did:key`` names: a party's PeerID is known from its DID without asking it."""
    if len(public_key) != 32:
        raise UsageError("an Ed25519 public key is 32 bytes")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()


def parse_multiaddrs(addrs: Sequence[str]) -> list[multiaddr.Multiaddr]:
    """Parse multiaddr strings; raise :class:`UsageError` naming the first bad one."""
    parsed = []
    for addr in addrs:
        try:
            parsed.append(multiaddr.Multiaddr(addr))
        except Exception as exc:  # multiaddr raises several unrelated types
            raise UsageError(f"{addr!r} is not a multiaddr ({exc})",
                             hint="a listen address looks like /ip4/0.0.0.0/tcp/4001"
                             ) from None
    return parsed


def make_host(key: Ed25519Key, listen: Sequence[str]) -> IHost:
    """A libp2p host with ``key``'s identity, Noise-only security and yamux-only
    multiplexing, not yet listening (see :func:`running_host`). ``listen`` decides which
    transports the host gets (TCP for ``/tcp/`` addresses)."""
    _quiet_libp2p_logging()
    key_pair = libp2p_key_pair(key)
    # libp2p's Noise signs a separate X25519 static key with the identity key (the
    # libp2p-noise spec). A fresh one per host keeps it apart from our channel's key,
    # which is derived from the DID: one key, one protocol.
    noise = NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)
    # One security protocol and one multiplexer to propose: each is proposed with the
    # header, in one round trip instead of two (mpcid.p2p.multistream).
    return negotiate_lazily(new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=parse_multiaddrs(listen),
        connection_config=CONNECTION_CONFIG,
    ))


@asynccontextmanager
async def running_host(key: Ed25519Key, listen: Sequence[str]) -> AsyncIterator[IHost]:
    """Trio: build a host (:func:`make_host`), listen on ``listen`` and yield it; stop it on
    exit. Raises :class:`ListenFailed` if any address cannot be listened on (py-libp2p
    itself only logs that and carries on)."""
    addrs = parse_multiaddrs(listen)
    host = make_host(key, listen)
    async with host.run(listen_addrs=addrs):
        listening = host.get_network().listeners
        missing = [str(a) for a in addrs if str(a) not in listening]
        if not missing:
            try:
                yield host
            finally:
                # Leaving host.run() only cancels libp2p's tasks, which leaves the TCP
                # sockets of open connections to the garbage collector (ResourceWarning);
                # closing the swarm first closes them, bounded in time and even when we
                # are being cancelled.
                with trio.move_on_after(CLOSE_TIMEOUT) as scope:
                    scope.shield = True
                    await _close_quietly(host)
    # Raised out here, because libp2p's nurseries would wrap it in an ExceptionGroup.
    if missing:
        raise ListenFailed(f"libp2p cannot listen on {', '.join(missing)}")


def host_addrs(host: IHost) -> list[str]:
    """The addresses ``host`` listens on, each ending in ``/p2p/<PeerID>``, ready to be given
    to :func:`connect` on another host."""
    suffix = f"/p2p/{host.get_id().to_base58()}"
    addrs = []
    for addr in host.get_transport_addrs():
        text = str(addr)
        addrs.append(text if text.endswith(suffix) else text + suffix)
    return addrs


async def connect(host: IHost, addr: str, *, timeout: float = CONNECT_TIMEOUT) -> str:
    """Trio: connect ``host`` to the peer at ``addr`` (a multiaddr ending in
    ``/p2p/<PeerID>``) and return that PeerID. The Noise handshake proves the peer holds the
    key of that PeerID. Raises :class:`ConnectFailed` (with libp2p's reason) or
    :class:`UsageError` for a malformed address."""
    (maddr,) = parse_multiaddrs([addr])
    try:
        info = info_from_p2p_addr(maddr)
    except Exception as exc:
        raise UsageError(f"{addr!r} names no peer ({exc})",
                         hint="a peer address ends in /p2p/<PeerID>") from None
    try:
        with trio.fail_after(timeout):
            await host.connect(info)
    except trio.TooSlowError:
        raise ConnectFailed(f"libp2p could not connect to {addr} within {timeout:g} s"
                            ) from None
    except Exception as exc:  # SwarmException and friends, and errors inside groups
        raise ConnectFailed(f"libp2p could not connect to {addr}: {_reason(exc)}") from exc
    return info.peer_id.to_base58()


async def _close_quietly(host: IHost) -> None:
    """Close the host's connections, all at once: the swarm would close them one after
    the other, and yamux sleeps 0.1 s in each close."""
    network = host.get_network()

    async def close(closer: Callable[[], Awaitable[None]]) -> None:
        try:
            await closer()
        except Exception as exc:  # a connection that is already broken may refuse
            logging.getLogger("mpcid.host").debug("closing libp2p: %r", exc)

    async with trio.open_nursery() as nursery:
        for conn in network.get_connections():
            nursery.start_soon(close, conn.close)
    await close(network.close)


def _quiet_libp2p_logging() -> None:
    """See :data:`QUIET_LOGGERS`; leaves alone any logger the application has configured."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)


def _reason(exc: BaseException) -> str:
    """The most telling message in a chain of libp2p exceptions (they nest deeply)."""
    messages = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if str(current):
            messages.append(str(current))
        group = getattr(current, "exceptions", None)  # an ExceptionGroup from a nursery
        if group:
            current = group[0]
        else:
            current = current.__cause__ or current.__context__
    return "; ".join(dict.fromkeys(messages)) or type(exc).__name__
