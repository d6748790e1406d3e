"""How one party reaches the others: direct TCP first, then libp2p through a relay.

This is the one place where a party dials. Every channel a party opens goes through
:meth:`Paths.open`, whether the session names its parties' endpoints (a session file) or
only their DIDs (found through the DHT), or both.

With DHT bootstrap nodes, the party (1) runs a libp2p host and DHT node
(:class:`~mpcid.p2p.discovery.Discovery`), holding reservations on the session's relays;
(2) publishes its DID-signed endpoint record: its direct TCP endpoint and its libp2p
addresses, relay circuits included; (3) accepts channels on TCP and on the libp2p protocol
:data:`CHANNEL_PROTOCOL` alike; (4) reaches a peer by trying, in order, the endpoint the
session file gives, the direct endpoints of the peer's record (each for at most
``direct_timeout`` seconds: that attempt is our own reachability check, since libp2p's
AutoNAT proved unreliable), then the peer's libp2p addresses, circuits through a relay
included. Without bootstrap nodes only the session file's endpoint is dialled, retried
until the deadline (parties start in any order). Whatever the path, the same end-to-end
Noise channel runs over it, so a relay only ever carries ciphertext. The path each channel
took is logged and reported as a ``connected`` progress event.

DCUtR hole punching is not attempted: py-libp2p 0.8.1's implementation was only shown to
exchange messages on loopback, so a relay circuit is the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.channel import ChannelProtocol, connect, over_socket
from mpcid.p2p.errors import ConnectFailed

from .progress import Progress
from .session import PartyEndpoint

if TYPE_CHECKING:
    from mpcid.p2p.discovery import Discovery
    from mpcid.p2p.records import EndpointRecord

log = logging.getLogger("mpcid.run")

CHANNEL_PROTOCOL = "/mpcid/channel/1.0.0"

ProtocolFactory = Callable[[], ChannelProtocol]


@dataclass(frozen=True)
class PathSettings:
    bootstrap: tuple[str, ...] = ()
    """DHT nodes; without any, only the session file's direct endpoints are used."""
    relays: tuple[str, ...] = ()
    """Relays to hold reservations on, so that peers behind NAT can reach this party."""
    direct_timeout: float = 3.0
    """Seconds one direct TCP attempt may take before the next path is tried."""


class Paths:
    """This party's discovery presence and its ways to open channels."""

    def __init__(self, key: Ed25519Key, settings: PathSettings,
                 progress: Progress = Progress()) -> None:
        self.settings = settings
        self.progress = progress
        self.discovery: Discovery | None = None
        self.host: object = None
        if settings.bootstrap:  # libp2p is imported only when a DHT is used
            from mpcid.p2p.discovery import Discovery, DiscoveryConfig

            from .session_records import SESSION_KINDS

            self.discovery = Discovery(key, DiscoveryConfig(
                listen=("/ip4/0.0.0.0/tcp/0",), bootstrap=settings.bootstrap,
                relays=settings.relays, kinds=SESSION_KINDS))

    async def start(self, listen_port: int, advertise: str | None,
                    on_stream: Callable[[socket.socket], Awaitable[None]]) -> None:
        """Join the DHT, accept channels over libp2p, publish this party's record (nothing
        to do without DHT nodes)."""
        if self.discovery is None:
            return
        await self.discovery.start()
        node = self.discovery.node
        assert node is not None
        self.host = node.host

        async def deliver(sock: socket.socket, peer: str) -> None:
            await on_stream(sock)

        await self.discovery.bridge.set_stream_handler(node.host, CHANNEL_PROTOCOL, deliver)
        host = advertise or self._local_address()
        addrs = []
        for addr in self.discovery.addrs:  # a wildcard listen address names no host
            if "/ip4/0.0.0.0/" not in addr:
                addrs.append(addr)
            elif host:
                addrs.append(addr.replace("/ip4/0.0.0.0/", f"/ip4/{host}/", 1))
        tcp = [f"{host}:{listen_port}"] if host and listen_port else []
        record = await self.discovery.publish(tcp, addrs)
        log.info("published endpoint record seq %d: %s", record.seq,
                 ", ".join(list(record.tcp) + list(record.addrs)))

    async def open(self, party: PartyEndpoint, factory: ProtocolFactory, deadline: float,
                   describe: str) -> ChannelProtocol:
        """A channel to ``party`` over the first path that works before ``deadline``."""
        loop = asyncio.get_running_loop()
        last = "no endpoint known yet"
        found = False
        while True:
            direct = [(party.host, party.port)] if party.host and party.port else []
            libp2p: list[str] = []
            record, failure = await self._lookup(party, deadline)
            last = failure or last
            if record is not None:
                if not found:
                    found = True
                    self.progress.emit("found", party=party.index, did=party.did)
                direct += [e for e in record.endpoints() if e not in direct]
                # Circuits last: a direct libp2p address works wherever direct TCP would.
                libp2p = sorted(record.addrs, key=lambda a: "/p2p-circuit" in a)
            for host, port in direct:
                outcome = await self._direct(party, host, port, factory, deadline, describe)
                if not isinstance(outcome, str):
                    return outcome
                last = outcome
            for addr in libp2p:
                outcome = await self._relayed(party, addr, factory, deadline, describe)
                if not isinstance(outcome, str):
                    return outcome
                last = outcome
            if loop.time() >= deadline:
                raise ConnectFailed(f"no path to {describe} ({last})")
            # With a DHT every round looks the record up again: no need to hurry.
            pause = 0.5 if self.discovery is not None else 0.2
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))

    async def _lookup(self, party: PartyEndpoint, deadline: float
                      ) -> tuple[EndpointRecord | None, str | None]:
        """The party's endpoint record (None without a DHT or if it has none yet), or why
        the lookup failed."""
        if self.discovery is None:
            return None, None
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(self.discovery.resolve(party.did),
                                          max(0.1, deadline - loop.time())), None
        except (MpcidError, asyncio.TimeoutError) as exc:
            return None, f"lookup failed: {exc}"

    async def _direct(self, party: PartyEndpoint, host: str, port: int,
                      factory: ProtocolFactory, deadline: float, describe: str
                      ) -> ChannelProtocol | str:
        """Direct TCP: until ``deadline`` when the session file is all we know, else for
        at most ``direct_timeout`` (other paths are waiting)."""
        loop = asyncio.get_running_loop()
        until = deadline if self.discovery is None else \
            min(loop.time() + self.settings.direct_timeout, deadline)
        try:
            protocol = await connect(host, port, factory, what=describe, deadline=until)
            await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
        except (MpcidError, asyncio.TimeoutError) as exc:
            failure = f"direct {host}:{port}: {exc or type(exc).__name__}"
            log.debug("channel to %s: %s", describe, failure)
            return failure
        log.info("channel to %s: direct TCP to %s:%d", describe, host, port)
        self.progress.emit("connected", party=party.index, did=party.did,
                           path=f"direct TCP {host}:{port}")
        return protocol

    async def _relayed(self, party: PartyEndpoint, addr: str, factory: ProtocolFactory,
                       deadline: float, describe: str) -> ChannelProtocol | str:
        """A libp2p stream (through a relay circuit if ``addr`` is one)."""
        loop = asyncio.get_running_loop()
        try:
            sock = await self._open_stream(party.did, addr)
            protocol = await over_socket(sock, factory)
            await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
        except (MpcidError, asyncio.TimeoutError, OSError) as exc:
            failure = f"{addr}: {exc or type(exc).__name__}"
            log.debug("channel to %s: %s", describe, failure)
            return failure
        how = "relay circuit" if "/p2p-circuit" in addr else "libp2p"
        log.info("channel to %s: %s %s", describe, how, addr)
        self.progress.emit("connected", party=party.index, did=party.did, path=how)
        return protocol

    async def _open_stream(self, did: str, addr: str) -> socket.socket:
        from mpcid.p2p.host import connect as libp2p_connect
        from mpcid.p2p.peerid import peer_id_from_did
        from mpcid.p2p.relay import dial_circuit

        assert self.discovery is not None  # only records from the DHT name libp2p addresses
        peer = peer_id_from_did(did)
        bridge = self.discovery.bridge
        if "/p2p-circuit" in addr:
            await bridge.call(dial_circuit, self.host, addr)
        else:
            await bridge.call(libp2p_connect, self.host, addr)
        return await bridge.open_stream(self.host, peer, CHANNEL_PROTOCOL)  # type: ignore[arg-type]

    async def stop(self) -> None:
        """Withdraw this party's record and leave the DHT."""
        if self.discovery is None:
            return
        try:
            await asyncio.wait_for(self.discovery.withdraw(), 5)
        except (MpcidError, asyncio.TimeoutError):
            pass
        await self.discovery.stop()

    def _local_address(self) -> str | None:
        """The address this machine uses towards the first bootstrap node: what peers on
        that network can try to reach directly."""
        import re

        for addr in self.settings.bootstrap:
            match = re.match(r"/ip4/([0-9.]+)/", addr)
            if match:
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    probe.connect((match.group(1), 9))
                    return str(probe.getsockname()[0])
                except OSError:
                    continue
                finally:
                    probe.close()
        return None
