"""A party's presence in the DHT, whichever process holds it.

:class:`~mpcid.broker.paths.Paths` needs a few things of the DHT and of libp2p: publish
and withdraw this party's endpoint record, resolve a peer's, store and fetch session
records (declines), open libp2p streams to peers (circuits included) and accept theirs.
:class:`Presence` is that interface. Two implementations:

* :class:`LocalPresence`: this process runs its own libp2p host and DHT node
  (:class:`~mpcid.p2p.discovery.Discovery`); py-libp2p is imported only here.
* :class:`~mpcid.broker.agent.AgentPresence`: a long-running ``mpcid online`` of the same
  identity holds the host; this process asks it over a local socket and receives the
  streams' file descriptors (``specs/discovery.md`` 9).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p import nat
from mpcid.p2p.peerid import peer_id_from_did

if TYPE_CHECKING:
    from mpcid.p2p.discovery import Discovery
    from mpcid.p2p.records import EndpointRecord

StreamHandler = Callable[[socket.socket, str], Awaitable[None]]
"""Takes a libp2p stream a peer opened (as a connected socket) and the peer's PeerID."""


class Presence(Protocol):
    """What a party's session needs of the DHT and of libp2p."""

    @property
    def reach(self) -> str | None:
        """``public``, ``nat`` or None, as the bootstrap nodes observed this party."""

    @property
    def observed_ip(self) -> str | None:
        """This party's IP as a bootstrap node saw it."""

    @property
    def addrs(self) -> list[str]:
        """This party's libp2p addresses (relay circuits included)."""

    clock: Callable[[], float]

    async def publish(self, tcp: Sequence[str], addrs: Sequence[str] | None = None,
                      ttl: int | None = None,
                      extra: Mapping[str, object] | None = None) -> EndpointRecord: ...

    async def withdraw(self) -> None: ...

    async def resolve(self, did: str) -> EndpointRecord | None: ...

    async def await_record(self, did: str, after: int, wait: float
                           ) -> tuple[EndpointRecord | None, bool]:
        """``did``'s record with a seq above ``after``, waiting up to ``wait`` seconds
        for one, or None; and whether the DHT nodes serve that wait (if not, poll
        :meth:`resolve`)."""
        ...

    async def put_value(self, key: str, value: bytes) -> None: ...

    async def get_value(self, key: str) -> bytes | None: ...

    async def serve(self, handlers: Mapping[str, StreamHandler]) -> None:
        """Accept libp2p streams of these protocols."""

    async def open_stream(self, did: str, addr: str, protocol: str) -> socket.socket:
        """A stream to ``did`` of ``protocol``, reached at the multiaddr ``addr``."""

    async def path_of(self, peer: str) -> str:
        """How the connection to ``peer`` (a PeerID) runs: ``relay circuit`` or
        ``libp2p``."""

    async def stop(self) -> None: ...


class LocalPresence:
    """This process's own libp2p host and DHT node."""

    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery
        self.clock = discovery.clock
        self.host: Any = None
        """The libp2p host, once started."""

    @classmethod
    def create(cls, key: Ed25519Key, bootstrap: Sequence[str], relays: Sequence[str]
               ) -> LocalPresence:
        from mpcid.p2p.discovery import Discovery, DiscoveryConfig

        from .session_records import SESSION_KINDS

        return cls(Discovery(key, DiscoveryConfig(
            listen=("/ip4/0.0.0.0/tcp/0",), bootstrap=tuple(bootstrap),
            relays=tuple(relays), kinds=SESSION_KINDS, server=False, observe=True)))

    @property
    def reach(self) -> str | None:
        return self.discovery.reach

    @property
    def observed_ip(self) -> str | None:
        return self.discovery.observed_ip

    @property
    def addrs(self) -> list[str]:
        return self.discovery.addrs

    async def start(self) -> None:
        await self.discovery.start()
        assert self.discovery.node is not None
        self.host = self.discovery.node.host

    async def publish(self, tcp: Sequence[str], addrs: Sequence[str] | None = None,
                      ttl: int | None = None,
                      extra: Mapping[str, object] | None = None) -> EndpointRecord:
        return await self.discovery.publish(tcp, addrs, ttl, extra)

    async def withdraw(self) -> None:
        await self.discovery.withdraw()

    async def resolve(self, did: str) -> EndpointRecord | None:
        return await self.discovery.resolve(did)

    async def await_record(self, did: str, after: int, wait: float
                           ) -> tuple[EndpointRecord | None, bool]:
        return await self.discovery.await_record(did, after, wait)

    async def put_value(self, key: str, value: bytes) -> None:
        await self.discovery.put_value(key, value)

    async def get_value(self, key: str) -> bytes | None:
        return await self.discovery.get_value(key)

    async def serve(self, handlers: Mapping[str, StreamHandler]) -> None:
        for protocol, handler in handlers.items():
            await self.discovery.bridge.set_stream_handler(self.host, protocol, handler)

    async def open_stream(self, did: str, addr: str, protocol: str) -> socket.socket:
        from mpcid.p2p.host import connect as libp2p_connect
        from mpcid.p2p.relay import dial_circuit

        bridge = self.discovery.bridge
        if "/p2p-circuit" in addr:
            await bridge.call(dial_circuit, self.host, addr)
        else:
            await bridge.call(libp2p_connect, self.host, addr)
        return await bridge.open_stream(self.host, peer_id_from_did(did), protocol)

    async def path_of(self, peer: str) -> str:
        try:
            relayed = await self.discovery.bridge.call(nat.relayed_only, self.host, peer)
        except Exception:  # the connection may be gone already: say what is known
            return "libp2p"
        return "relay circuit" if relayed else "libp2p"

    async def stop(self) -> None:
        await self.discovery.stop()
