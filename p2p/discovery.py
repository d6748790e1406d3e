"""Discovery from asyncio: a libp2p host and DHT node in the trio thread, publishing and
resolving DID-signed endpoint records (``specs/discovery.md``).

This is the asyncio face of :mod:`mpcid.p2p.host`, :mod:`mpcid.p2p.dht` and
:mod:`mpcid.p2p.records`; all libp2p work happens in a :class:`~mpcid.p2p.bridge.TrioThread`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from mpcid.identity.did_key import Ed25519Key, parse_did
from mpcid.identity.errors import MpcidError

from .bridge import TrioThread
from .dht import DHTNode, StoreLimits
from .host import host_addrs, running_host
from .records import (DEFAULT_TTL, EndpointRecord, KindValidator, MpcidValidator,
                      decode_and_verify, dht_key)
from .nat import NAT, identify, local_address_towards, reach
from .relay import RelayLimits, relay_service, reservation

log = logging.getLogger("mpcid.discovery")

#: How long a withdrawal record stays valid: long enough to replace the last real record
#: everywhere, short enough to vanish soon after.
WITHDRAW_TTL = 60


@dataclass(frozen=True)
class DiscoveryConfig:
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/0",)
    """libp2p listen multiaddrs of this node."""
    bootstrap: tuple[str, ...] = ()
    """Multiaddrs (with /p2p/PeerID) of DHT nodes to join through."""
    ttl: int = DEFAULT_TTL
    """Lifetime of a published record in seconds; it is republished at half of it."""
    connect_timeout: float = 10.0
    """Seconds to reach each bootstrap node."""
    server: bool = True
    """Serve the DHT to others (False for one-off lookups, and for session parties, which
    come and go: serving would only add them to every lookup of every other party)."""
    observe: bool | None = None
    """Identify with the bootstrap nodes to learn this node's reachability
    (``specs/discovery.md`` 8.1); None: when it serves the DHT."""
    store: StoreLimits = StoreLimits()
    """What this node holds for others when it serves the DHT: a quota per sending peer,
    caps per record kind, a bound on the bytes held (``specs/discovery.md`` 7)."""
    relay: RelayLimits | None = None
    """Also be a circuit relay v2 hop with these limits (bootstrap/relay nodes)."""
    relays: tuple[str, ...] = ()
    """Relays to hold reservations on; their circuit addresses are published, so that
    peers that cannot reach this party directly (NAT) can still open channels to it.
    Without any, a party that finds itself behind a NAT reserves on the first bootstrap
    node that offers circuit relay v2 (``specs/discovery.md`` 8)."""
    kinds: Mapping[str, KindValidator] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=False)
    """Record kinds (keys ``/mpcid/<kind>/...``) this node validates, stores and serves,
    besides endpoint records; a key of any other kind is refused (``put_value`` and
    ``get_value`` included)."""


class Discovery:
    """One party's (or node's) presence in the DHT."""

    def __init__(self, key: Ed25519Key, config: DiscoveryConfig = DiscoveryConfig(), *,
                 clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.config = config
        self.clock = clock
        self.bridge = TrioThread()
        self.node: DHTNode | None = None
        self.addrs: list[str] = []
        self.record: EndpointRecord | None = None
        self.record_value: bytes | None = None
        """The signed encoding of :attr:`record`, as published."""
        self.reach: str | None = None
        """``public``, ``nat`` or None (no bootstrap node said), by identify."""
        self.observed_ip: str | None = None
        """This party's IP as a bootstrap node saw it (its public IP behind a NAT)."""
        self.relays: list[str] = []
        """The relays this node holds reservations on."""
        self._seq = 0

    async def start(self) -> list[str]:
        """Start the host and the DHT, join through the bootstrap nodes; return this node's
        multiaddrs. Raises :class:`ListenFailed` or :class:`ConnectFailed`."""
        await self.bridge.start()
        try:
            host = await self.bridge.enter_context(
                running_host(self.key, list(self.config.listen)))
            node = DHTNode(host, clock=self.clock, server=self.config.server,
                           kinds=self.config.kinds, limits=self.config.store)
            await self.bridge.enter_context(node.running())
            self.node = node
            if self.config.relay is not None:
                await self.bridge.enter_context(relay_service(host, self.config.relay))
            await self.bridge.call(functools.partial(
                node.bootstrap, list(self.config.bootstrap),
                timeout=self.config.connect_timeout))
            self.addrs = await self.bridge.call(_addrs, host)
            observe = self.config.server if self.config.observe is None \
                else self.config.observe
            offers = await self._observe(host) if observe else []
            self.relays = list(self.config.relays)
            if not self.relays and self.reach == NAT and self.config.relay is None:
                self.relays = offers[:1]
            for relay in self.relays:
                self.addrs += await self.bridge.enter_context(reservation(
                    host, relay, timeout=self.config.connect_timeout))
        except BaseException:
            await self.bridge.stop()
            raise
        return self.addrs

    async def _observe(self, host: object) -> list[str]:
        """Identify with every bootstrap node: set :attr:`reach` and :attr:`observed_ip`
        (``nat`` as soon as one node saw another address than this machine's); return
        the bootstrap addresses whose node offers circuit relay v2."""
        from libp2p.peer.id import ID

        offers = []
        for addr in self.config.bootstrap:
            peer, ip = _peer_and_ip(addr)
            if peer is None:
                continue
            try:
                seen = await self.bridge.call(functools.partial(
                    identify, host, ID.from_base58(peer)))
            except MpcidError as exc:
                log.info("identify with bootstrap node %s: %s", addr, exc.one_line())
                continue
            if seen.relay:
                offers.append(addr)
            found = reach(local_address_towards(ip) if ip else None, seen.ip)
            if found is not None and self.reach != NAT:
                self.reach, self.observed_ip = found, seen.ip
        log.info("reachability: %s (observed as %s); relays offered: %s", self.reach,
                 self.observed_ip, ", ".join(offers) or "none")
        return offers

    async def publish(self, tcp: Sequence[str], addrs: Sequence[str] | None = None,
                      ttl: int | None = None,
                      extra: Mapping[str, object] | None = None) -> EndpointRecord:
        """Sign and publish this party's current record (a higher seq every time)."""
        node = self._require_node()
        now = self.clock()
        self._seq = max(self._seq + 1, int(now * 1000))  # survives restarts without state
        record, value = EndpointRecord.create(
            self.key, self._seq, now, ttl=ttl or self.config.ttl, tcp=tcp,
            addrs=self.addrs if addrs is None else addrs, extra=extra)
        # Readers ask the bootstrap nodes first: once they hold it, it is published.
        await self.bridge.call(functools.partial(
            node.put, dht_key(self.key.did.did), value, rest_in_background=True))
        self.record, self.record_value = record, value
        return record

    async def withdraw(self) -> None:
        """Replace the record by one without endpoints that expires soon."""
        if self.record is not None:
            await self.publish(tcp=(), addrs=(), ttl=WITHDRAW_TTL)

    async def resolve(self, did: str) -> EndpointRecord | None:
        """The current valid record of ``did``, or None if the DHT has none."""
        node = self._require_node()
        key = dht_key(parse_did(did))
        value = await self.bridge.call(node.get, key)
        if value is None:
            return None
        return decode_and_verify(key, value, self.clock())

    async def await_record(self, did: str, after: int, wait: float
                           ) -> tuple[EndpointRecord | None, bool]:
        """``did``'s current record if its seq is above ``after``, else the first newer
        one the bootstrap nodes store within ``wait`` seconds, else None; and whether
        any bootstrap node serves the await protocol (``specs/discovery.md`` 4.1)."""
        value, served = await self.await_value(did, after, wait)
        if value is None:
            return None, served
        return decode_and_verify(dht_key(parse_did(did)), value, self.clock()), served

    async def await_value(self, did: str, after: int, wait: float
                          ) -> tuple[bytes | None, bool]:
        """:meth:`await_record`, the value as the DHT holds it (validated by the node's
        validator, not decoded)."""
        node = self._require_node()
        return await self.bridge.call(node.await_record, parse_did(did), after, wait)

    async def put_value(self, key: str, value: bytes) -> None:
        """Publish ``value`` under ``key`` (``/mpcid/<kind>/...``) on the closest nodes.
        It is checked here first, as every node will check it, so an invalid value
        raises its kind's error before anything is sent."""
        node = self._require_node()
        MpcidValidator(self.clock, self.config.kinds).validate(key, value)
        await self.bridge.call(node.put, key, value)

    async def get_value(self, key: str) -> bytes | None:
        """The best value under ``key`` in the DHT, validated by its kind at the current
        time, or None if no node returned one. Raises the kind's error for a value that
        does not validate (the nodes should never have returned it)."""
        node = self._require_node()
        validator = MpcidValidator(self.clock, self.config.kinds)
        validator.check_key(key)  # an unknown kind: refuse before asking the network
        value = await self.bridge.call(node.get, key)
        if value is None:
            return None
        validator.validate(key, value)
        return value

    async def stop(self) -> None:
        await self.bridge.stop()
        self.node = None

    def _require_node(self) -> DHTNode:
        if self.node is None:
            raise RuntimeError("Discovery.start() first")
        return self.node


async def _addrs(host: object) -> list[str]:
    return host_addrs(host)  # type: ignore[arg-type]


def _peer_and_ip(addr: str) -> tuple[str | None, str | None]:
    """The PeerID (``/p2p/...``) and the IP (``/ip4/``, ``/ip6/``) a multiaddr names."""
    parts = addr.split("/")
    peer = parts[parts.index("p2p") + 1] if "p2p" in parts[:-1] else None
    ip = None
    for proto in ("ip4", "ip6"):
        if proto in parts[:-1]:
            ip = parts[parts.index(proto) + 1]
    return peer, ip
