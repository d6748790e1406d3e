"""The discovery DHT: py-libp2p's Kademlia (``/ipfs/kad/1.0.0``) holding DID-signed records.

Trio code, run in the libp2p thread of :mod:`mpcid.p2p.bridge`. A :class:`DHTNode` is a
server-mode KadDHT on a host from :mod:`mpcid.p2p.host`, with one namespace validator,
``mpcid``, that accepts only records signed by the DID in their key and picks the highest
sequence number (:mod:`mpcid.p2p.records`), plus whatever record kinds
(``/mpcid/<kind>/...``) its owner registers. Every node validates every record it stores
or returns, so a malicious node can withhold records but cannot forge, alter or roll them
back. ``strict_validation`` makes the DHT refuse keys of namespaces nobody registered.

Three py-libp2p 0.8.1 behaviours are adjusted here, each in one documented place:

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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.kad_dht import kad_dht as _kad
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.records.record import make_signed_put_record
from libp2p.records.validator import Validator

from mpcid.identity.errors import MpcidError

from .errors import ConnectFailed
from .host import connect
from .records import KEY_PREFIX, KindValidator, MpcidValidator

log = logging.getLogger("mpcid.dht")
NAMESPACE = KEY_PREFIX.strip("/")

# py-libp2p logs every normal end of a DHT stream as a warning; keep real errors visible.
logging.getLogger("libp2p.kad_dht").setLevel(logging.ERROR)


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


class DHTNode:
    """A DHT server on ``host``. Use as ``async with node.running(): ...`` in trio."""

    def __init__(self, host: IHost, *, clock: Callable[[], float] = time.time,
                 server: bool = True,
                 kinds: Mapping[str, KindValidator] | None = None) -> None:
        """``server=False`` makes a client that looks up and publishes but stores and
        answers nothing for others (e.g. a one-off ``mpcid resolve``). ``kinds``: the
        record kinds this node accepts besides endpoint records, by kind name."""
        _accept_mpcid_lookups()
        self.host = host
        self.dht = KadDHT(host, DHTMode.SERVER if server else DHTMode.CLIENT)
        self.dht.register_validator(NAMESPACE, _Validator(clock, kinds))
        self.published: set[str] = set()
        #: The bootstrap peers reached: every put stores there first (see :meth:`put`).
        self.bootstrap_peers: list[str] = []

    def running(self) -> Any:
        """Trio async context manager that runs the DHT service (refreshes, handlers)."""
        from libp2p.tools.anyio_service import background_trio_service

        return background_trio_service(self.dht)

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
        if reached:
            await self.dht.refresh_routing_table()
        self.bootstrap_peers = reached
        return reached

    async def add_peer(self, peer: str, *, timeout: float = 5.0) -> bool:
        """Add a connected peer to the routing table once identify has told us its
        listen addresses (py-libp2p refuses peers without known addresses)."""
        peer_id = ID.from_base58(peer)
        with trio.move_on_after(timeout):
            while not self._known_addrs(peer_id):
                await trio.sleep(0.01)
        return bool(await self.dht.add_peer(peer_id))

    async def put(self, key: str, value: bytes, *, first_timeout: float = 5.0) -> None:
        """Store ``value`` under ``key`` on the bootstrap peers, then locally and on the
        closest peers. Raises if the record is invalid or older than one already stored
        (the validator decides).

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
        async with trio.open_nursery() as nursery:
            for peer in self.bootstrap_peers:
                nursery.start_soon(self._store_at, peer, key, value, first_timeout)
        try:
            await self.dht.put_value(key, value)
        except MpcidError:
            raise
        except Exception as exc:
            raise ConnectFailed(f"publishing {key} failed: {exc}") from exc
        self.published.add(key)

    async def _store_at(self, peer: str, key: str, value: bytes, timeout: float) -> None:
        # The record is passed explicitly: without it, py-libp2p sends what its local store
        # holds under the key, which is the value being replaced.
        record = make_signed_put_record(key.encode(), value, self.host.get_private_key())
        with trio.move_on_after(timeout):
            try:
                stored = await self.dht.value_store._store_at_peer(
                    ID.from_base58(peer), key.encode(), value, record)
            except Exception as exc:  # a peer that fails is one copy fewer, not an error
                log.debug("storing %s at bootstrap peer %s failed: %r", key, peer, exc)
                return
            if not stored:
                log.debug("bootstrap peer %s did not store %s", peer, key)

    async def get(self, key: str) -> bytes | None:
        """The best valid record for ``key`` in the network, or None."""
        if key not in self.published:
            self.dht.value_store.remove(key.encode())
        try:
            value = await self.dht.get_value(key)
        except Exception as exc:
            log.debug("lookup of %s failed: %s", key, exc)
            return None
        return bytes(value) if value is not None else None

    def routing_table_size(self) -> int:
        return int(self.dht.get_routing_table_size())

    def _known_addrs(self, peer_id: ID) -> bool:
        try:
            return bool(self.host.get_peerstore().addrs(peer_id))
        except Exception:  # PeerStoreError for a peer it has never heard of
            return False
