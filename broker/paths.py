"""How one party reaches the others: direct TCP first, then libp2p through a relay.

This is the one place where a party dials. Every channel a party opens goes through
:meth:`Paths.open`, whether the session names its parties' endpoints (a session file) or
only their DIDs (found through the DHT), or both.

With DHT bootstrap nodes, the party (1) runs a libp2p host and DHT node
(:class:`~mpcid.p2p.discovery.Discovery`), holding reservations on the session's relays,
or uses those of its local agent (``mpcid online`` of the same identity,
:mod:`mpcid.broker.agent`) when one runs: both are a :class:`~.presence.Presence`;
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

Behind NATs (``specs/discovery.md`` 8): identify with the bootstrap nodes tells a party
whether it is ``public`` or behind a ``nat`` (and its public IP), which its record says.
A party behind a NAT reserves a slot on a bootstrap node that is a relay, without flags.
Who opens the channel of a pair is decided from both records (:func:`nat.initiates`): the
lower index, unless it is public and the other is behind a NAT, which then dials out to it.
When both are behind NATs, the opener first tries to punch a direct TCP connection
through both, coordinated over the relay (:mod:`mpcid.p2p.nat`), and uses a relay circuit
only when that fails. The path of every channel is reported on both ends.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p import nat
from mpcid.p2p.channel import ChannelProtocol, connect, over_socket
from mpcid.p2p.errors import ConnectFailed
from mpcid.p2p.peerid import peer_id_from_did

from .presence import LocalPresence, Presence
from .progress import Progress
from .session import PartyEndpoint

if TYPE_CHECKING:
    from mpcid.p2p.records import EndpointRecord

log = logging.getLogger("mpcid.run")

CHANNEL_PROTOCOL = "/mpcid/channel/1.0.0"
MAX_PUNCHES = 3
"""Punch requests a party answers per peer and session."""

AWAIT_WAIT = 10.0
"""Seconds a DHT node is asked to hold a request for a peer's record (its maximum)."""

ProtocolFactory = Callable[[], ChannelProtocol]
StreamCallback = Callable[[socket.socket, str], Awaitable[None]]
"""Takes a connected socket that a peer opened and the path it came by."""


@dataclass(frozen=True)
class PathSettings:
    bootstrap: tuple[str, ...] = ()
    """DHT nodes; without any, only the session file's direct endpoints are used."""
    relays: tuple[str, ...] = ()
    """Relays to hold reservations on, so that peers behind NAT can reach this party."""
    direct_timeout: float = 3.0
    """Seconds one direct TCP attempt may take before the next path is tried."""
    punch_timeout: float = nat.PUNCH_TIMEOUT
    """Seconds a hole punching attempt may take before the relay circuit is used."""
    agent: Path | None = None
    """The socket of a local agent (``mpcid online`` of this identity) to use instead of
    a libp2p host of this process, when it is there (:mod:`mpcid.broker.agent`)."""


class Paths:
    """This party's discovery presence and its ways to open channels."""

    def __init__(self, key: Ed25519Key, settings: PathSettings,
                 progress: Progress = Progress()) -> None:
        self.key = key
        self.settings = settings
        self.progress = progress
        self.presence: Presence | None = None
        """This party's presence in the DHT, once started (None without DHT nodes)."""
        self.publishing: asyncio.Task[None] | None = None
        """This party's endpoint record on its way into the DHT (started by :meth:`start`;
        channels are opened meanwhile, since they need the peers' records, not this
        one). Its exception, if any, is the session's to report."""
        self._peers: set[str] = set()
        self._punches: dict[str, int] = {}
        self._looking = 0
        """Channels this party is trying to open (each looking its peer up meanwhile)."""
        self._await = True
        """The DHT nodes serve ``/mpcid/await-record/1.0.0`` (until one answer says not)."""
        self.used: dict[int, str] = {}
        """Per party this one opened a channel to: the path it took."""
        self.records: dict[int, EndpointRecord] = {}
        """Per party looked up: its newest endpoint record seen (for saying why a party
        is missing: never found, offline, or found but not reachable)."""

    @property
    def reach(self) -> str | None:
        """``public``, ``nat`` or None, as the bootstrap nodes observed this party."""
        return self.presence.reach if self.presence is not None else None

    async def start(self, listen_port: int, advertise: str | None, on_stream: StreamCallback,
                    peers: tuple[str, ...] = ()) -> None:
        """Join the DHT, accept channels over libp2p and punch requests from ``peers``
        (DIDs), start publishing this party's record (:attr:`publishing`); nothing to do
        without DHT nodes."""
        if not self.settings.bootstrap:
            return
        self._peers = {peer_id_from_did(did) for did in peers}
        presence = self.presence = await self._presence(peers)

        async def deliver(sock: socket.socket, peer: str) -> None:
            await on_stream(sock, await self._path_of(peer))

        async def punch(sock: socket.socket, peer: str) -> None:
            punched = await self._answer_punch(sock, peer)
            if punched is not None:
                await on_stream(*punched)

        await presence.serve({CHANNEL_PROTOCOL: deliver, nat.PUNCH_PROTOCOL: punch})
        host = advertise or self._local_address()
        addrs = []
        for addr in presence.addrs:  # a wildcard listen address names no host
            if "/ip4/0.0.0.0/" not in addr:
                addrs.append(addr)
            elif host:
                addrs.append(addr.replace("/ip4/0.0.0.0/", f"/ip4/{host}/", 1))
        tcp = [f"{host}:{listen_port}"] if host and listen_port else []
        observed = ([f"{presence.observed_ip}:{listen_port}"]
                    if presence.reach == nat.NAT and presence.observed_ip and listen_port
                    else [])
        self.publishing = asyncio.ensure_future(self._publish(
            presence, tcp, addrs, nat.record_fields(presence.reach, observed)))

    async def join(self, peers: tuple[str, ...] = ()) -> None:
        """Join the DHT to reach ``peers`` only: nothing is served or published (a party
        fetching its session's program before the session, :mod:`.program_fetch`)."""
        if self.settings.bootstrap:
            self.presence = await self._presence(peers)

    @staticmethod
    async def _publish(presence: Presence, tcp: list[str], addrs: list[str],
                       extra: dict[str, object]) -> None:
        record = await presence.publish(tcp, addrs, extra=extra)
        log.info("published endpoint record seq %d (%s): %s", record.seq,
                 presence.reach or "reachability unknown",
                 ", ".join(list(record.tcp) + list(record.addrs)))

    async def _presence(self, peers: tuple[str, ...]) -> Presence:
        """The local agent's presence if it serves this identity, else this process's
        own libp2p host (py-libp2p is imported only then)."""
        settings = self.settings
        if settings.agent is not None:
            from .agent import AgentPresence

            agent = await AgentPresence.connect(settings.agent, self.key.did.did, peers,
                                                settings.bootstrap, settings.relays)
            if agent is not None:
                log.info("using the local agent at %s", settings.agent)
                return agent
        local = LocalPresence.create(self.key, settings.bootstrap, settings.relays)
        await local.start()
        return local

    async def open(self, party: PartyEndpoint, factory: ProtocolFactory, deadline: float,
                   describe: str, lower: bool = True, always: bool = False
                   ) -> ChannelProtocol | None:
        """A channel to ``party`` over the first path that works before ``deadline``, or
        None if ``party`` opens the channel of this pair (:func:`nat.initiates`; ``lower``:
        this party has the lower index; ``always``: this party opens it whatever the
        records say, and without asking for a punch, as for fetching the program under a
        throwaway host identity, whose punch requests a party refuses)."""
        if not lower and self.reach != nat.NAT and not always:
            # Only a party behind a NAT opens the channel to a lower one (and only to a
            # public one): this party never does (nor does any party without a DHT), so
            # it need not look the record up.
            return None
        self._looking += 1
        try:
            return await self._open(party, factory, deadline, describe, lower, always)
        finally:
            self._looking -= 1

    async def _open(self, party: PartyEndpoint, factory: ProtocolFactory, deadline: float,
                    describe: str, lower: bool, always: bool = False
                    ) -> ChannelProtocol | None:
        loop = asyncio.get_running_loop()
        last = "no endpoint known yet"
        found = False
        pause = 0.05
        seen = -1  # the seq of the newest record of the peer tried so far
        while True:
            direct = [(party.host, party.port)] if party.host and party.port and lower else []
            libp2p: list[str] = []
            record, failure, waited = await self._lookup(party, deadline, seen)
            last = failure or last
            if record is not None:
                seen = max(seen, record.seq)
                self.records[party.index] = record
                if not record.tcp and not record.addrs:
                    # A withdrawn record: the party went offline. Wait for a new one.
                    last = "offline (it withdrew its endpoint record)"
                    record = None
            if record is not None:
                if not found:
                    found = True
                    self.progress.emit("found", party=party.index, did=party.did)
                if not always and not nat.initiates(lower, self.reach,
                                                    nat.record_reach(record)):
                    return None
                if self._same_network(record):
                    direct += [e for e in record.endpoints() if e not in direct]
                # Circuits last: a direct libp2p address works wherever direct TCP would.
                libp2p = sorted(record.addrs, key=lambda a: "/p2p-circuit" in a)
            for host, port in direct:
                outcome = await self._direct(party, host, port, factory, deadline, describe)
                if not isinstance(outcome, str):
                    return outcome
                last = outcome
            circuits = [a for a in libp2p if "/p2p-circuit" in a]
            if record is not None and circuits and not always and self._can_punch(record):
                outcome = await self._punched(party, circuits[0], factory, deadline,
                                              describe)
                if not isinstance(outcome, str):
                    return outcome
                last = outcome
                libp2p = circuits  # the circuit is open: a direct libp2p dial would fail
            for addr in libp2p:
                outcome = await self._relayed(party, addr, factory, deadline, describe)
                if not isinstance(outcome, str):
                    return outcome
                last = outcome
            if loop.time() >= deadline:
                raise ConnectFailed(f"no path to {describe} ({last})")
            if waited:  # the DHT nodes held the request until a newer record came or
                continue  # its wait ran out: ask again at once
            # Without that, every round looks the record up again: soon at first (the
            # peer may be publishing right now), then every half second, or less often
            # while this party waits for many records (the DHT nodes answer every party's).
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(2 * pause, 0.5 * max(1.0, self._looking / 4)
                        if self.presence is not None else 0.2)

    async def _lookup(self, party: PartyEndpoint, deadline: float, seen: int
                      ) -> tuple[EndpointRecord | None, str | None, bool]:
        """The party's endpoint record (None without a DHT or if it has none yet), or why
        the lookup failed; and whether the DHT nodes waited for it. Where they serve it
        (``specs/discovery.md`` 4.1), a record newer than ``seen`` is awaited: the node
        answers the moment the peer publishes. Else it is looked up once."""
        if self.presence is None:
            return None, None, False
        loop = asyncio.get_running_loop()
        remaining = max(0.1, deadline - loop.time())
        try:
            if self._await:
                wait = min(AWAIT_WAIT, remaining)
                started = loop.time()
                record, served = await asyncio.wait_for(
                    self.presence.await_record(party.did, seen, wait), wait + 5)
                if served:
                    # Nothing after the whole wait: ask again at once. Nothing sooner (a
                    # node with no room for another wait answers at once): pause first.
                    waited = record is None and loop.time() - started >= 0.9 * wait
                    return record, None, waited
                self._await = False  # no bootstrap node serves it: poll instead
            return await asyncio.wait_for(self.presence.resolve(party.did), remaining), \
                None, False
        except (MpcidError, asyncio.TimeoutError) as exc:
            return None, f"lookup failed: {exc}", False

    async def _direct(self, party: PartyEndpoint, host: str, port: int,
                      factory: ProtocolFactory, deadline: float, describe: str
                      ) -> ChannelProtocol | str:
        """Direct TCP: until ``deadline`` when the session file is all we know, else for
        at most ``direct_timeout`` (other paths are waiting)."""
        loop = asyncio.get_running_loop()
        until = deadline if self.presence is None else \
            min(loop.time() + self.settings.direct_timeout, deadline)
        try:
            protocol = await connect(host, port, factory, what=describe, deadline=until)
            await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
        except (MpcidError, asyncio.TimeoutError) as exc:
            failure = f"direct {host}:{port}: {exc or type(exc).__name__}"
            log.debug("channel to %s: %s", describe, failure)
            return failure
        log.info("channel to %s: direct TCP to %s:%d", describe, host, port)
        return self._connected(party, protocol, f"direct TCP {host}:{port}")

    async def _relayed(self, party: PartyEndpoint, addr: str, factory: ProtocolFactory,
                       deadline: float, describe: str) -> ChannelProtocol | str:
        """A libp2p stream (through a relay circuit if ``addr`` is one)."""
        loop = asyncio.get_running_loop()
        try:
            sock = await self._open_stream(party.did, addr)
            # A libp2p address may be served by a circuit opened before (to coordinate a
            # punch): the connection says which it is. Asked before the channel exists,
            # since MPyC may start (and this task end) as soon as it is ready.
            how = await self._path_of(peer_id_from_did(party.did))
            protocol = await over_socket(sock, factory)
            await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
        except (MpcidError, asyncio.TimeoutError, OSError) as exc:
            failure = f"{addr}: {exc or type(exc).__name__}"
            log.debug("channel to %s: %s", describe, failure)
            return failure
        log.info("channel to %s: %s %s", describe, how, addr)
        return self._connected(party, protocol, how)

    def _same_network(self, record: EndpointRecord) -> bool:
        presence = self.presence
        return presence is None or nat.may_reach_directly(
            presence.reach, presence.observed_ip, record)

    def _can_punch(self, record: EndpointRecord) -> bool:
        """Both parties behind NATs, this one knowing its public IP: worth a punch."""
        return (self.presence is not None and self.presence.reach == nat.NAT
                and self.presence.observed_ip is not None
                and nat.record_reach(record) == nat.NAT)

    async def _punched(self, party: PartyEndpoint, circuit: str, factory: ProtocolFactory,
                       deadline: float, describe: str) -> ChannelProtocol | str:
        """Hole punching, coordinated through ``circuit``; the channel over the punched
        connection, or why there is none."""
        assert self.presence is not None and self.presence.observed_ip is not None
        observed_ip = self.presence.observed_ip
        loop = asyncio.get_running_loop()
        until = min(loop.time() + self.settings.punch_timeout, deadline)
        channel = None
        try:
            stream = await asyncio.wait_for(
                self._open_stream(party.did, circuit, nat.PUNCH_PROTOCOL),
                max(0.1, until - loop.time()))
            channel = await nat.PunchChannel.over(stream)
            sock = await asyncio.wait_for(
                nat.punch_as_initiator(channel, observed_ip, until),
                max(0.1, until - loop.time()) + 0.5)
            where = "{}:{}".format(*sock.getpeername()[:2])
            protocol = await over_socket(sock, factory)
            await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
        except (MpcidError, asyncio.TimeoutError, OSError) as exc:
            failure = f"hole punching via {circuit}: {exc or type(exc).__name__}"
            log.info("channel to %s: %s", describe, failure)
            return failure
        finally:
            if channel is not None:
                channel.close()
        log.info("channel to %s: hole-punched TCP to %s", describe, where)
        return self._connected(party, protocol, f"hole-punched TCP {where}")

    def _connected(self, party: PartyEndpoint, protocol: ChannelProtocol, path: str
                   ) -> ChannelProtocol:
        """Record and report the path of a channel this party opened."""
        self.used[party.index] = path
        self.progress.emit("connected", party=party.index, did=party.did, path=path)
        return protocol

    async def _answer_punch(self, sock: socket.socket, peer: str
                            ) -> tuple[socket.socket, str] | None:
        """A peer's punch request (a party of this session, a few times at most): the
        punched connection and its path, or None."""
        presence = self.presence
        if (peer not in self._peers or self._punches.get(peer, 0) >= MAX_PUNCHES
                or presence is None or presence.observed_ip is None):
            sock.close()
            return None
        self._punches[peer] = self._punches.get(peer, 0) + 1
        loop = asyncio.get_running_loop()
        until = loop.time() + self.settings.punch_timeout
        channel = await nat.PunchChannel.over(sock)
        try:
            punched = await asyncio.wait_for(
                nat.punch_as_responder(channel, presence.observed_ip, until),
                self.settings.punch_timeout + 0.5)
        except (MpcidError, asyncio.TimeoutError, OSError) as exc:
            log.info("hole punching with %s: %s", peer, exc or type(exc).__name__)
            return None
        finally:
            channel.close()
        where = "{}:{}".format(*punched.getpeername()[:2])
        log.info("hole-punched TCP from %s (%s)", where, peer)
        return punched, f"hole-punched TCP {where}"

    async def _path_of(self, peer: str) -> str:
        """How a libp2p stream from ``peer`` came: ``relay circuit`` or ``libp2p``."""
        assert self.presence is not None
        return await self.presence.path_of(peer)

    async def _open_stream(self, did: str, addr: str, protocol: str = CHANNEL_PROTOCOL
                           ) -> socket.socket:
        assert self.presence is not None  # only records from the DHT name libp2p addresses
        return await self.presence.open_stream(did, addr, protocol)

    def whereabouts(self, index: int) -> str:
        """What the DHT said of a party this one looked up, for a message."""
        record = self.records.get(index)
        if record is None:
            return "not found in the DHT (not started yet, or it cannot reach the DHT nodes)"
        if not record.tcp and not record.addrs:
            return "offline (it withdrew its endpoint record)"
        where = ", ".join([*record.tcp, *record.addrs][:3])
        return f"found in the DHT at {where}, but not reachable from here"

    async def stop(self) -> None:
        """Withdraw this party's record and leave the DHT."""
        if self.presence is None:
            return
        if self.publishing is not None:  # the withdrawal must follow what it replaces
            await asyncio.wait({self.publishing}, timeout=5)
        try:
            await asyncio.wait_for(self.presence.withdraw(), 5)
        except (MpcidError, asyncio.TimeoutError):
            pass
        if self.publishing is not None:
            self.publishing.cancel()
        await self.presence.stop()

    def _local_address(self) -> str | None:
        """The address this machine uses towards the first bootstrap node: what peers on
        that network can try to reach directly."""
        import re

        for addr in self.settings.bootstrap:
            match = re.match(r"/ip4/([0-9.]+)/", addr)
            found = nat.local_address_towards(match.group(1)) if match else None
            if found:
                return found
        return None
