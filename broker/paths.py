"""How one party reaches the others: direct TCP first, then libp2p through a relay.

Used by :mod:`mpcid.broker.mpyc_runtime` when a session names DHT bootstrap nodes. The
party then (1) runs a libp2p host and DHT node (:class:`~mpcid.p2p.discovery.Discovery`),
holding reservations on the session's relays; (2) publishes its DID-signed endpoint record:
its direct TCP endpoint and its libp2p addresses, relay circuits included; (3) accepts
channels on TCP and on the libp2p protocol :data:`CHANNEL_PROTOCOL` alike; (4) reaches a
peer by trying, in order, the endpoints the session file gives, the direct endpoints of
the peer's record (each for at most ``direct_timeout`` seconds: that attempt is our own
reachability check, since libp2p's AutoNAT proved unreliable), then the peer's libp2p
addresses, circuits through a relay included. Whatever the path, the same end-to-end
Noise channel runs over it, so a relay only ever carries ciphertext. The path each channel
took is logged.

DCUtR hole punching is not attempted: py-libp2p 0.8.1's implementation was only shown to
exchange messages on loopback, so a relay circuit is the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.channel import ChannelProtocol, connect, over_socket
from mpcid.p2p.errors import ConnectFailed

from .progress import Progress
from .session import PartyEndpoint

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
        from mpcid.p2p.discovery import Discovery, DiscoveryConfig

        from .session_records import SESSION_KINDS

        self.settings = settings
        self.progress = progress
        self.discovery = Discovery(key, DiscoveryConfig(
            listen=("/ip4/0.0.0.0/tcp/0",), bootstrap=settings.bootstrap,
            relays=settings.relays, kinds=SESSION_KINDS))
        self.host: object = None

    async def start(self, listen_port: int, advertise: str | None,
                    on_stream: Callable[[socket.socket], Awaitable[None]]) -> None:
        """Join the DHT, accept channels over libp2p, publish this party's record."""
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
        last: str = "no endpoint known yet"
        found = False
        while True:
            direct: list[tuple[str, int]] = []
            if party.host and party.port:
                direct.append((party.host, party.port))
            libp2p: list[str] = []
            try:
                record = await asyncio.wait_for(self.discovery.resolve(party.did),
                                                max(0.1, deadline - loop.time()))
            except (MpcidError, asyncio.TimeoutError) as exc:
                record = None
                last = f"lookup failed: {exc}"
            if record is not None and not found:
                found = True
                self.progress.emit("found", party=party.index, did=party.did)
            if record is not None:
                direct += [e for e in record.endpoints() if e not in direct]
                # Circuits last: a direct libp2p address works wherever direct TCP would.
                libp2p = sorted(record.addrs, key=lambda a: "/p2p-circuit" in a)
            for host, port in direct:
                try:
                    protocol = await connect(
                        host, port, factory, what=describe,
                        deadline=min(loop.time() + self.settings.direct_timeout, deadline))
                    await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
                    log.info("channel to %s: direct TCP to %s:%d", describe, host, port)
                    self.progress.emit("connected", party=party.index, did=party.did,
                                       path=f"direct TCP {host}:{port}")
                    return protocol
                except (MpcidError, asyncio.TimeoutError) as exc:
                    last = f"direct {host}:{port}: {exc or type(exc).__name__}"
                    log.debug("channel to %s: %s", describe, last)
            for addr in libp2p:
                try:
                    sock = await self._open_stream(party.did, addr)
                    protocol = await over_socket(sock, factory)
                    await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
                    how = "relay circuit" if "/p2p-circuit" in addr else "libp2p"
                    log.info("channel to %s: %s %s", describe, how, addr)
                    self.progress.emit("connected", party=party.index, did=party.did,
                                       path=how)
                    return protocol
                except (MpcidError, asyncio.TimeoutError, OSError) as exc:
                    last = f"{addr}: {exc or type(exc).__name__}"
                    log.debug("channel to %s: %s", describe, last)
            if loop.time() >= deadline:
                raise ConnectFailed(f"no path to {describe} ({last})")
            await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))

    async def _open_stream(self, did: str, addr: str) -> socket.socket:
        from mpcid.p2p.host import connect as libp2p_connect
        from mpcid.p2p.peerid import peer_id_from_did
        from mpcid.p2p.relay import dial_circuit

        peer = peer_id_from_did(did)
        bridge = self.discovery.bridge
        if "/p2p-circuit" in addr:
            await bridge.call(dial_circuit, self.host, addr)
        else:
            await bridge.call(libp2p_connect, self.host, addr)
        return await bridge.open_stream(self.host, peer, CHANNEL_PROTOCOL)  # type: ignore[arg-type]

    async def stop(self) -> None:
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
