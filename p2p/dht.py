"""The discovery DHT: py-libp2p's Kademlia (``/ipfs/kad/1.0.0``) holding DID-signed records.

Trio code, run in the libp2p thread of :mod:`mpcid.p2p.bridge`. A :class:`DHTNode` is a
server-mode KadDHT on a host from :mod:`mpcid.p2p.host`, with one namespace validator,
``mpcid``, that accepts only records signed by the DID in their key and picks the highest
sequence number (:mod:`mpcid.p2p.records`), plus whatever record kinds
(``/mpcid/<kind>/...``) its owner registers. Every node validates every record it stores
or returns, so a malicious node can withhold records but cannot forge, alter or roll them
back. ``strict_validation`` makes the DHT refuse keys of namespaces nobody registered.

Five py-libp2p 0.8.1 behaviours are adjusted here, each in one documented place:

* A node answers ``FIND_NODE`` only for keys that parse as a multihash or are at most 50
  bytes (``kad_dht.py``, "FIND_NODE key is not a valid PeerId"), but a value lookup sends
  ``FIND_NODE`` with the record key, and ``/mpcid/did:key:z6Mk...`` is 63 bytes: records
  would then reach only the publisher's direct neighbours. go- and js-libp2p accept any
  key there (distances are computed on SHA-256 of the key, as py-libp2p does too), so
  :func:`_accept_mpcid_lookups` widens that check for keys of our namespace only.
* ``get_value`` answers from the local store when it holds the key, never asking the
  network; :meth:`DHTNode.get` drops a local copy it did not publish itself first, so a
  lookup sees the newest record.
* ``put_value`` first looks up the closest peers and only then stores; with peers that
  have just gone that lookup can take longer than the publisher waits, and the update is
  lost. :meth:`DHTNode.put` stores on the bootstrap peers first, directly.
* Its value store holds whatever valid record anyone sends, up to 50,000 entries, then
  evicts the oldest: one client signing records with fresh did:keys can grow a node's
  memory and push genuine records out. :class:`_BoundedValueStore` replaces it and applies
  :class:`StoreLimits` (``specs/discovery.md`` 7): a quota per sending peer, caps per
  record kind, and a bound on the bytes held, refusing new records rather than evicting
  held ones. The sender is known only in the ``PUT_VALUE`` handler, so
  :class:`_KadDHT` names it (:data:`_SENDER`) for the store while that handler runs.
* Every request it sends opens a stream and negotiates ``/ipfs/kad/1.0.0`` in lock step
  before writing the request: three round trips per store or lookup. Its value store and
  peer routing send through :class:`~mpcid.p2p.multistream.OptimisticHost`, which sends
  the negotiation with the request: one round trip.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht import kad_dht as _kad
from libp2p.kad_dht.common import DEFAULT_TTL as LIBP2P_TTL
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Record
from libp2p.kad_dht.value_store import ValueStore
from libp2p.peer.id import ID
from libp2p.records.record import make_signed_put_record
from libp2p.records.validator import Validator

from mpcid.identity.errors import MpcidError, UsageError

from .await_record import AWAIT_PROTOCOL, RecordWaiters, await_at_nodes
from .errors import ConnectFailed, StoreRefused
from .host import connect
from .multistream import OptimisticHost
from .relay import reservation_source
from .records import (KEY_PREFIX, MAX_KIND_VALUE_BYTES, MAX_RECORD_BYTES, KindValidator,
                      MpcidValidator, kind_of)

log = logging.getLogger("mpcid.dht")
NAMESPACE = KEY_PREFIX.strip("/")

# py-libp2p logs every normal end of a DHT stream as a warning; keep real errors visible.
logging.getLogger("libp2p.kad_dht").setLevel(logging.ERROR)

# -- limits on what a node holds for others (specs/discovery.md 7) -------------------------

#: The label of endpoint records (keys ``/mpcid/<did>``) in :attr:`StoreLimits.kinds`;
#: other records go by their kind (``/mpcid/<kind>/...``), and keys of py-libp2p's own
#: namespaces by ``/<namespace>`` (``/pk``, ``/ipns``).
ENDPOINT_KIND = "endpoint"

#: Bytes counted for each held record on top of its key and encoded record: the Python
#: objects around them (dict slot, tuple, protobuf message and its copies of key and
#: value, expiry). The resident size grew by about 750 per entry on CPython 3.11 with
#: protobuf's upb backend (20,000 endpoint records); rounded up so the bound holds.
ENTRY_OVERHEAD = 1024


@dataclass(frozen=True)
class KindLimits:
    """Caps on the records of one kind that a node holds for others."""

    max_records: int
    """Records of this kind held at once; a new key beyond it is refused."""
    max_value_bytes: int
    """Largest value of this kind accepted."""

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.max_value_bytes < 1:
            raise UsageError("a record kind's limits must be at least 1")


def _default_kinds() -> Mapping[str, KindLimits]:
    return MappingProxyType({
        ENDPOINT_KIND: KindLimits(max_records=20_000, max_value_bytes=MAX_RECORD_BYTES),
        "invitation": KindLimits(max_records=2_000, max_value_bytes=16 * 1024),
        "decline": KindLimits(max_records=10_000, max_value_bytes=2048),
        "inbox": KindLimits(max_records=20_000, max_value_bytes=2048),
    })


@dataclass(frozen=True)
class StoreLimits:
    """What a DHT node holds for others (``specs/discovery.md`` 7). The defaults suit a
    public bootstrap node: about 20,000 endpoint records of typical size in 32 MiB.

    Records this node publishes itself are counted but never refused; records it looked
    up are cached only while they fit."""

    max_bytes: int = 32 << 20
    """Bytes held in all: each record's key and encoded record plus
    :data:`ENTRY_OVERHEAD`. New keys may fill 15/16 of it; the last sixteenth takes only
    newer versions of held records, so a full node still follows their updates. Expired
    records are dropped first; held, unexpired ones are never evicted for new ones."""
    peer_records: int = 200
    """Records one peer (the PeerID of the connection) may store in ``peer_window``
    seconds, new keys and replacements alike. A party publishes one endpoint record per
    half TTL, plus an invitation or a decline per session."""
    peer_window: float = 600.0
    """The window of ``peer_records`` and ``address_records``, in seconds."""
    address_records: int = 1000
    """Records all peers connecting from one IPv4 address or IPv6 /64 network may store in
    ``peer_window`` seconds: a fresh PeerID costs nothing, an address does."""
    kinds: Mapping[str, KindLimits] = field(default_factory=_default_kinds, hash=False)
    """Caps per kind, by :data:`ENDPOINT_KIND` or kind name."""
    other_kinds: KindLimits = KindLimits(max_records=2_000,
                                         max_value_bytes=MAX_KIND_VALUE_BYTES)
    """Caps of each kind not in ``kinds`` (py-libp2p's ``/pk`` and ``/ipns`` included)."""

    def __post_init__(self) -> None:
        if self.max_bytes < 64 * 1024:
            raise UsageError("the DHT store bound must be at least 64 KiB")
        if self.peer_records < 1 or self.peer_window <= 0 or self.address_records < 1:
            raise UsageError("the per-peer and per-address record quotas and their window "
                             "must be positive")

    def of(self, label: str) -> KindLimits:
        return self.kinds.get(label, self.other_kinds)


def kind_label(key: bytes) -> str:
    """The label under which :class:`StoreLimits` caps the record stored under ``key``."""
    text = key.decode("utf-8", "replace")
    if text.startswith(KEY_PREFIX):
        try:
            parsed = kind_of(text)
        except MpcidError:
            return "/" + NAMESPACE
        return ENDPOINT_KIND if parsed is None else parsed[0]
    return "/" + text.lstrip("/").split("/", 1)[0]


def _cost(key: bytes, record: Record) -> int:
    return len(key) + record.ByteSize() + ENTRY_OVERHEAD


def _expiry(value: bytes, now: float) -> float:
    """When a held record stops being served: its own ``expires`` (every mpcid kind has
    one), at most py-libp2p's 24 hours."""
    latest = now + LIBP2P_TTL
    try:
        expires = json.loads(value).get("expires")
    except (ValueError, AttributeError):
        return latest
    if isinstance(expires, int) and not isinstance(expires, bool):
        return float(min(expires, latest))
    return latest


class _Held(dict[bytes, tuple[Record, float]]):
    """py-libp2p's ``ValueStore.store`` that keeps the byte and per-kind counts of
    :class:`StoreLimits` in step with every write, whichever path makes it (py-libp2p
    deletes expired entries directly)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.counts: dict[str, int] = {}

    def __setitem__(self, key: bytes, entry: tuple[Record, float]) -> None:
        if key in self:
            self.__delitem__(key)
        super().__setitem__(key, entry)
        self.bytes += _cost(key, entry[0])
        label = kind_label(key)
        self.counts[label] = self.counts.get(label, 0) + 1

    def __delitem__(self, key: bytes) -> None:
        record, _ = self[key]
        super().__delitem__(key)
        self.bytes -= _cost(key, record)
        label = kind_label(key)
        self.counts[label] -= 1

    def pop(self, key: bytes, *default: Any) -> Any:
        if key not in self:
            return super().pop(key, *default)
        entry = self[key]
        self.__delitem__(key)
        return entry


class _PeerQuota:
    """Records stored per sending peer within a sliding window."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._times: dict[str, deque[float]] = {}

    def used(self, peer: str, now: float) -> int:
        times = self._times.get(peer)
        if times is None:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times)

    def charge(self, peer: str, now: float) -> None:
        if len(self._times) > 4096:  # forget peers whose window has passed
            for gone in [p for p in self._times if not self.used(p, now)]:
                del self._times[gone]
        self._times.setdefault(peer, deque()).append(now)


#: The PeerID and the source address (:func:`relay.reservation_source`) that sent the DHT
#: request being handled (set by :class:`_KadDHT`); None outside the handler, i.e. for
#: this node's own puts and the records it looked up.
_SENDER: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "mpcid_dht_sender", default=None)


class _KadDHT(KadDHT):
    """KadDHT whose stream handler tells the value store who is sending."""

    async def handle_stream(self, stream: INetStream) -> None:
        # Each stream is handled in its own trio task, so this binds that task only.
        _SENDER.set((stream.muxed_conn.peer_id.to_base58(),
                     reservation_source(stream.get_remote_address())))
        await super().handle_stream(stream)

    async def add_peer(self, peer_id: ID, *, skip_server_mode_check: bool = False) -> bool:
        """py-libp2p adds every peer that opens a KAD stream, clients included, and any
        peer identify has not described yet; then it hands them out as closer peers, and
        lookups dial parties that serve nothing. As the Kademlia spec says, only a peer
        that identify says serves the DHT enters the table."""
        try:
            protocols = self.host.get_peerstore().get_protocols(peer_id)
        except Exception:  # unknown to the peerstore: nothing says it serves
            return False
        if str(KAD_PROTOCOL) not in (protocols or ()):
            return False
        return bool(await super().add_peer(peer_id, skip_server_mode_check=True))

    async def add_bootstrap_peer(self, peer_id: ID) -> bool:
        """A bootstrap node this node dialled: a server by configuration, in the table
        even if identify has not listed its protocols yet."""
        return bool(await super().add_peer(peer_id, skip_server_mode_check=True))


class _BoundedValueStore(ValueStore):
    """py-libp2p's value store under :class:`StoreLimits`. The ``PUT_VALUE`` handler has
    validated the record (and chosen it over a held one) before it calls
    :meth:`put_record`; a refusal raised there makes it reset the stream unacknowledged,
    so the sender sees the store fail. py-libp2p's own eviction of the oldest entry is
    disabled: the bound refuses new records instead."""

    def __init__(self, host: IHost, limits: StoreLimits,
                 clock: Callable[[], float]) -> None:
        # Requests to other nodes go out with their protocol negotiation (one round trip
        # instead of three: :mod:`mpcid.p2p.multistream`); every node serves KAD.
        super().__init__(OptimisticHost(host, {str(KAD_PROTOCOL)}),  # type: ignore[arg-type]
                         host.get_id())
        self.limits = limits
        self.store: _Held = _Held()
        self._clock = clock
        self._quota = _PeerQuota(limits.peer_records, limits.peer_window)
        self._address_quota = _PeerQuota(limits.address_records, limits.peer_window)
        self._last_sweep = float("-inf")
        #: Records refused since start, by reason (for operators and tests).
        self.refused: dict[str, int] = {}
        #: Called with the key of every record stored (the await protocol's waiters).
        self.on_stored: Callable[[bytes], None] | None = None

    def _evict_if_full(self) -> None:
        pass

    def put_record(self, key: bytes, record: Record) -> None:
        sender = _SENDER.get()
        try:
            self._admit(key, record, sender)
        except StoreRefused as exc:
            if sender is None:  # a looked-up record: caching it is optional
                return
            log.info("refused %s from %s: %s", key.decode("utf-8", "replace"), sender,
                     exc.args[0])
            raise
        now = self._clock()
        self.store[key] = (record, _expiry(record.value, time.time()))
        if sender is not None:
            self._quota.charge(sender[0], now)
            self._address_quota.charge(sender[1], now)
        if self.on_stored is not None:
            self.on_stored(key)

    def _admit(self, key: bytes, record: Record, sender: tuple[str, str] | None) -> None:
        label = kind_label(key)
        caps = self.limits.of(label)
        if len(record.value) > caps.max_value_bytes:
            self._refuse("size", f"a {label} record of {len(record.value)} bytes exceeds "
                                 f"this node's {caps.max_value_bytes}")
        now = self._clock()
        if sender is not None:
            peer, source = sender
            if self._quota.used(peer, now) >= self.limits.peer_records:
                self._refuse("quota", f"peer {peer} stored {self.limits.peer_records} "
                                      f"records in {self.limits.peer_window:g} s")
            if self._address_quota.used(source, now) >= self.limits.address_records:
                self._refuse("address", f"peers from {source} stored "
                                        f"{self.limits.address_records} records in "
                                        f"{self.limits.peer_window:g} s")
        reason = self._no_room(key, record, label, caps)
        if reason is not None and now - self._last_sweep >= 1.0:
            self._last_sweep = now  # at most once a second: O(records held)
            self.cleanup_expired()
            reason = self._no_room(key, record, label, caps)
        if reason is not None:
            self._refuse(*reason)

    def _no_room(self, key: bytes, record: Record, label: str, caps: KindLimits
                 ) -> tuple[str, str] | None:
        held = dict.get(self.store, key)
        if held is not None:
            growth = _cost(key, record) - _cost(key, held[0])
            if self.store.bytes + growth > self.limits.max_bytes:
                return "bytes", f"this node holds {self.store.bytes} bytes of records"
            return None
        if self.store.counts.get(label, 0) >= caps.max_records:
            return "kind", f"this node holds {caps.max_records} {label} records"
        room = self.limits.max_bytes - self.limits.max_bytes // 16
        if self.store.bytes + _cost(key, record) > room:
            return "bytes", f"this node holds {self.store.bytes} bytes of records"
        return None

    def _refuse(self, reason: str, message: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        raise StoreRefused(message)



class _Validator(Validator):
    """py-libp2p's Validator interface around :class:`MpcidValidator`."""

    def __init__(self, clock: Callable[[], float],
                 kinds: Mapping[str, KindValidator] | None = None) -> None:
        self._inner = MpcidValidator(clock, kinds)

    def validate(self, key: str, value: bytes) -> None:
        self._inner.validate(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        return self._inner.select(key, values)


class _MultihashForMpcidKeys:
    """Stands in for the ``multihash`` module inside ``libp2p.kad_dht.kad_dht`` only: keys
    of our namespace count as valid lookup targets, everything else is judged by the real
    module. See the module docstring for why."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def decode(self, data: bytes) -> Any:
        if isinstance(data, bytes) and data.startswith(KEY_PREFIX.encode()):
            return data
        return self._real.decode(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _accept_mpcid_lookups() -> None:
    current = getattr(_kad, "multihash")
    if not isinstance(current, _MultihashForMpcidKeys):
        setattr(_kad, "multihash", _MultihashForMpcidKeys(current))


INBOUND_STREAMS = 128
"""KAD requests a node handles at once; more are reset (each is short: a record store or
lookup, bounded by :class:`StoreLimits`)."""
FULL_LOOKUP_INTERVAL = 3.0
"""Seconds between network-wide lookups of a key the bootstrap nodes do not hold."""
FIRST_FULL_LOOKUP = 1.0
"""Seconds a key must have been missing at the bootstrap nodes before the first
network-wide lookup."""


class DHTNode:
    """A DHT server on ``host``. Use as ``async with node.running(): ...`` in trio."""

    def __init__(self, host: IHost, *, clock: Callable[[], float] = time.time,
                 server: bool = True,
                 kinds: Mapping[str, KindValidator] | None = None,
                 limits: StoreLimits = StoreLimits()) -> None:
        """``server=False`` makes a client that looks up and publishes but stores and
        answers nothing for others (e.g. a one-off ``mpcid resolve``). ``kinds``: the
        record kinds this node accepts besides endpoint records, by kind name.
        ``limits``: what it holds for others."""
        _accept_mpcid_lookups()
        self.host = host
        self.server = server
        self.dht = _KadDHT(host, DHTMode.SERVER if server else DHTMode.CLIENT)
        # py-libp2p resets every KAD stream beyond 12 handled at once, silently to the
        # sender (a store then "fails" at random): too few for a bootstrap node that
        # serves a session's parties, which all publish and look up at the same moment.
        self.dht._inbound_limiter.total_tokens = INBOUND_STREAMS
        # FIND_NODE goes only to DHT servers: negotiated with the request, as in the store.
        self.dht.peer_routing.host = OptimisticHost(  # type: ignore[assignment]
            host, {str(KAD_PROTOCOL)})
        #: The value store under ``limits`` (its ``store`` counts bytes and records per
        #: kind, its ``refused`` the refusals by reason).
        self.store = _BoundedValueStore(host, limits, clock)
        self.dht.value_store = self.store
        self.dht.register_validator(NAMESPACE, _Validator(clock, kinds))
        self.published: set[str] = set()
        #: Requests for records not stored yet (``/mpcid/await-record/1.0.0``), served
        #: by a DHT server.
        self.waiters = RecordWaiters(self._held_value)
        if server:
            self.store.on_stored = self.waiters.notify
        self._background: trio.Nursery | None = None
        self._full_lookups: dict[str, float] = {}
        #: The bootstrap peers reached: every put stores there first (see :meth:`put`).
        self.bootstrap_peers: list[str] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Any]:
        """Trio async context manager that runs the DHT service (refreshes, handlers),
        and the puts that go on in the background (:meth:`put`)."""
        from libp2p.tools.anyio_service import background_trio_service

        if self.server:
            self.host.set_stream_handler(TProtocol(AWAIT_PROTOCOL), self.waiters.handle)
        async with background_trio_service(self.dht) as manager:
            async with trio.open_nursery() as nursery:
                self._background = nursery
                try:
                    yield manager
                finally:
                    self._background = None
                    nursery.cancel_scope.cancel()

    async def bootstrap(self, addrs: Sequence[str], *, timeout: float = 10.0) -> list[str]:
        """Connect to bootstrap peers and add them to the routing table; return the PeerIDs
        reached. Raises :class:`ConnectFailed` only when none could be reached."""
        reached, failures = [], []
        for addr in addrs:
            try:
                peer = await connect(self.host, addr, timeout=timeout)
            except MpcidError as exc:
                failures.append(exc.one_line())
                continue
            await self.add_peer(peer, timeout=timeout)
            reached.append(peer)
        if addrs and not reached:
            raise ConnectFailed("no bootstrap node answered: " + "; ".join(failures),
                                hint="check the --bootstrap addresses (or MPCID_BOOTSTRAP)")
        self.bootstrap_peers = reached
        if reached and self.server:
            await self.dht.refresh_routing_table()
        elif reached and self._background is not None:
            # A client asks the bootstrap nodes first (get, put): its routing table
            # matters only for network-wide lookups, so its start need not wait for it.
            self._background.start_soon(self._refresh_quietly)
        return reached

    async def _refresh_quietly(self) -> None:
        try:
            await self.dht.refresh_routing_table()
        except Exception as exc:  # the table fills up with later lookups anyway
            log.debug("routing table refresh failed: %r", exc)

    async def add_peer(self, peer: str, *, timeout: float = 5.0) -> bool:
        """Add a connected peer to the routing table once identify has told us its
        listen addresses (py-libp2p refuses peers without known addresses)."""
        peer_id = ID.from_base58(peer)
        with trio.move_on_after(timeout):
            while not self._known_addrs(peer_id):
                await trio.sleep(0.01)
        return await self.dht.add_bootstrap_peer(peer_id)

    async def put(self, key: str, value: bytes, *, first_timeout: float = 5.0,
                  rest_in_background: bool = False) -> None:
        """Store ``value`` under ``key`` on the bootstrap peers, then locally and on the
        closest peers. Raises if the record is invalid or older than one already stored
        (the validator decides). With ``rest_in_background``, return as soon as a
        bootstrap peer stored it (readers ask those first, :meth:`get`) and store it on
        the closest peers meanwhile: in a session whose parties serve the DHT, that is
        every party, which takes seconds when many start at once.

        The bootstrap peers come first, directly, because the network lookup for the
        closest peers can outlast a caller's deadline when peers in the routing table
        have just gone, typically the other parties at the end of a session, when a
        party withdraws its record or publishes why it stopped. The bootstrap nodes are
        where every reader starts its lookup, so they must not miss that update."""
        assert self.dht.validator is not None
        try:
            self.dht.validator.validate(key, value)
        except MpcidError:
            raise
        except Exception as exc:
            raise ConnectFailed(f"publishing {key} failed: {exc}") from exc
        stored: list[str] = []
        # A node may answer a store with something else than its echo now and then, when
        # many parties publish at once: try again (0.2, 0.4, 0.8, 1.6 s later).
        for attempt in range(5 if rest_in_background else 1):
            if attempt:
                await trio.sleep(0.1 * 2 ** attempt)
            async with trio.open_nursery() as nursery:
                for peer in self.bootstrap_peers:
                    nursery.start_soon(self._store_at, peer, key, value, first_timeout,
                                       stored)
            if stored or not self.bootstrap_peers:
                break
        self.published.add(key)
        if rest_in_background and self.bootstrap_peers and not stored:
            raise ConnectFailed(f"publishing {key} failed: no bootstrap node stored it",
                                hint="check that the bootstrap nodes run and are reachable")
        if rest_in_background and stored and self._background is not None:
            self._background.start_soon(self._put_quietly, key, value)
            return
        try:
            await self.dht.put_value(key, value)
        except MpcidError:
            raise
        except Exception as exc:
            raise ConnectFailed(f"publishing {key} failed: {exc}") from exc

    async def _put_quietly(self, key: str, value: bytes) -> None:
        try:
            await self.dht.put_value(key, value)
        except Exception as exc:  # the bootstrap peers hold it already
            log.debug("storing %s on the closest peers failed: %r", key, exc)

    async def _store_at(self, peer: str, key: str, value: bytes, timeout: float,
                        stored: list[str]) -> None:
        # The record is passed explicitly: without it, py-libp2p sends what its local store
        # holds under the key, which is the value being replaced.
        record = make_signed_put_record(key.encode(), value, self.host.get_private_key())
        with trio.move_on_after(timeout):
            try:
                done = await self.dht.value_store._store_at_peer(
                    ID.from_base58(peer), key.encode(), value, record)
            except Exception as exc:  # a peer that fails is one copy fewer, not an error
                log.debug("storing %s at bootstrap peer %s failed: %r", key, peer, exc)
                return
            if done:
                stored.append(peer)
            else:
                log.debug("bootstrap peer %s did not store %s", peer, key)

    async def get(self, key: str) -> bytes | None:
        """The best valid record for ``key`` in the network, or None.

        The bootstrap nodes are asked first, directly: every publisher stores there
        before anywhere else (:meth:`put`), so one request each usually finds the
        current record. Only when none of them has a valid one does the iterative
        lookup run, which asks every close DHT server (in a session whose parties
        serve, all of them: that cost grows with the square of the parties). A key that
        the bootstrap nodes said they do not hold gets that lookup only once it has been
        missing for :data:`FIRST_FULL_LOOKUP` seconds (a party looked up before it has
        published is found at the bootstrap nodes a moment later, and the next attempt
        should not wait for a lookup across the network), then at most every
        :data:`FULL_LOOKUP_INTERVAL` seconds (parties poll for records not yet
        published)."""
        if key not in self.published:
            self.dht.value_store.remove(key.encode())
        found, answered = await self._get_from_bootstrap(key)
        if found is not None:
            return found
        now = time.monotonic()
        if len(self._full_lookups) > 4096:
            self._full_lookups.clear()
        if answered:
            last = self._full_lookups.setdefault(
                key, now - FULL_LOOKUP_INTERVAL + FIRST_FULL_LOOKUP)
            if now - last < FULL_LOOKUP_INTERVAL:
                return None
        self._full_lookups[key] = now
        try:
            value = await self.dht.get_value(key)
        except Exception as exc:
            log.debug("lookup of %s failed: %s", key, exc)
            return None
        return bytes(value) if value is not None else None

    async def _get_from_bootstrap(self, key: str, timeout: float = 2.0
                                  ) -> tuple[bytes | None, bool]:
        """The best valid value of ``key`` that the bootstrap peers hold (or None), and
        whether any of them answered."""
        values: list[bytes] = []
        answered: list[str] = []
        validator = self.dht.validator
        assert validator is not None

        async def ask(peer: str) -> None:
            with trio.move_on_after(timeout):
                try:
                    value = await self.dht.value_store._get_from_peer(
                        ID.from_base58(peer), key.encode())
                except Exception as exc:  # one node less to ask
                    log.debug("asking %s for %s: %r", peer, key, exc)
                    return
                answered.append(peer)
                if isinstance(value, bytes):
                    try:
                        validator.validate(key, value)
                    except Exception:
                        return
                    values.append(value)

        async with trio.open_nursery() as nursery:
            for peer in self.bootstrap_peers:
                nursery.start_soon(ask, peer)
        if not values:
            return None, bool(answered)
        return values[validator.select(key, values)], True

    def _held_value(self, key: bytes) -> bytes | None:
        """The valid value this node holds under ``key`` (expired ones are not)."""
        record = self.store.get(key)
        if record is None:
            return None
        validator = self.dht.validator
        assert validator is not None
        try:
            validator.validate(key.decode(), record.value)
        except Exception:
            return None
        return bytes(record.value)

    async def await_record(self, did: str, after: int, wait: float
                           ) -> tuple[bytes | None, bool]:
        """``did``'s record with a seq above ``after`` from the bootstrap nodes, waiting
        up to ``wait`` seconds for one to be stored there (``specs/discovery.md`` 4.1):
        the first valid one, or None; and whether any bootstrap node serves the
        protocol (if none does, the caller polls with :meth:`get` instead)."""
        validator = self.dht.validator
        assert validator is not None
        return await await_at_nodes(self.host, self.bootstrap_peers, did, after, wait,
                                    validator.validate)

    def routing_table_size(self) -> int:
        return int(self.dht.get_routing_table_size())

    def _known_addrs(self, peer_id: ID) -> bool:
        try:
            return bool(self.host.get_peerstore().addrs(peer_id))
        except Exception:  # PeerStoreError for a peer it has never heard of
            return False
