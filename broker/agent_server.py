"""The agent side of :mod:`mpcid.broker.agent`: ``mpcid online`` serving its host.

The agent owns its DID's endpoint record. It publishes the endpoints ``mpcid online`` was
given plus those of every session served at the moment (a session's endpoints leave the
record when the session withdraws them or its connection closes), signed with its own
key, and republishes at half the record's lifetime. Libp2p streams that peers of a
session open to this DID (channels, punch requests) are handed to the session that
named those peers; streams of nobody's session are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpcid.identity.did_key import parse_did
from mpcid.identity.errors import MpcidError, UsageError
from mpcid.p2p.await_record import MAX_WAIT
from mpcid.p2p.peerid import peer_id_from_did

from .agent import (MAX_NODES, MAX_PENDING, MAX_SESSIONS, AgentError, b64, listen_unix,
                    peer_uid, recv_message, send_message, socket_path_fits, strings, unb64)
from .presence import LocalPresence

log = logging.getLogger("mpcid.agent")


@dataclass
class _Session:
    sock: socket.socket
    peers: frozenset[str] = frozenset()
    """PeerIDs whose streams go to this session."""
    protocols: frozenset[str] = frozenset()
    tcp: list[str] = field(default_factory=list)
    addrs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AgentServer:
    """Serve ``presence`` (a started :class:`LocalPresence`) to joins of its DID."""

    def __init__(self, presence: LocalPresence, endpoints: Sequence[str] = (),
                 extra: Mapping[str, object] | None = None) -> None:
        self.presence = presence
        self.did = presence.discovery.key.did.did
        self.endpoints = list(endpoints)
        self.extra = dict(extra or {})
        self.sessions: dict[int, _Session] = {}
        self.path: Path | None = None
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._publishing = asyncio.Lock()
        self._added: set[str] = set()
        self._handled: set[str] = set()
        self.record_refresh_at = 0.0

    async def start(self, path: Path) -> None:
        """Listen at ``path``; refuse if another agent is live there."""
        if not socket_path_fits(path):
            raise UsageError(f"the agent socket path {path} is too long for a Unix socket",
                             hint="use a shorter --home")
        listener = listen_unix(path, MAX_SESSIONS)
        if listener is None:
            raise UsageError(f"another mpcid online already serves {self.did} from "
                             f"{path.parent}", hint="stop it first")
        self._listener, self.path = listener, path
        self._spawn(self._accept_loop())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for session in self.sessions.values():
            session.sock.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None

    async def publish(self) -> None:
        """Publish this DID's record: the endpoints the agent was given and those of every
        session it serves. Its libp2p addresses are published only with a session's:
        a peer that found them before that session's record would otherwise open its
        channel over libp2p through the agents, where direct TCP was about to appear.
        With nothing to publish, an earlier record is withdrawn."""
        async with self._publishing:
            sessions = list(self.sessions.values())
            tcp = list(dict.fromkeys(self.endpoints + [e for s in sessions for e in s.tcp]))
            addrs = list(dict.fromkeys(a for s in sessions for a in s.addrs))
            extra = dict(self.extra)
            for session in sessions:
                for name, value in session.extra.items():
                    old = extra.get(name)
                    extra[name] = (list(dict.fromkeys(old + value))[:16]
                                   if isinstance(old, list) and isinstance(value, list)
                                   else value)
            discovery = self.presence.discovery
            if not tcp and not addrs:
                if discovery.record is not None and (discovery.record.tcp
                                                     or discovery.record.addrs):
                    await self.presence.withdraw()
                self.record_refresh_at = self.presence.clock() + discovery.config.ttl / 2
                return
            record = await self.presence.publish(tcp[:16], addrs[:16], extra=extra)
            self.record_refresh_at = record.refresh_at

    async def _publish_quietly(self) -> None:
        try:
            await self.publish()
        except (MpcidError, OSError) as exc:
            log.info("could not publish the record: %s", exc)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(self._listener)
            sock.setblocking(False)
            if peer_uid(sock) != os.geteuid() or len(self.sessions) >= MAX_SESSIONS:
                sock.close()  # another user, or too many sessions at once
                continue
            self._spawn(self._serve(sock))

    async def _serve(self, sock: socket.socket) -> None:
        session = _Session(sock)
        key = id(session)
        pending = asyncio.Semaphore(MAX_PENDING)
        try:
            received = await recv_message(sock)
            if received is None:
                return
            await self._open_session(session, received[0])
            self.sessions[key] = session
            while (received := await recv_message(sock)) is not None:
                message, fds = received
                for fd in fds:
                    os.close(fd)
                await pending.acquire()
                task = self._spawn(self._request(session, message))
                task.add_done_callback(lambda _: pending.release())
        except (OSError, MpcidError) as exc:
            log.info("agent session ended: %s", exc)
        finally:
            sock.close()
            if self.sessions.pop(key, None) is not None and (session.tcp or session.addrs):
                with contextlib.suppress(MpcidError, OSError):
                    await self.publish()

    async def _open_session(self, session: _Session, hello: Mapping[str, Any]) -> None:
        if hello.get("op") != "session" or hello.get("v") != 1:
            await self._reply(session, None, error="expected a version 1 session request")
            raise AgentError("a client did not open a session")
        peers = strings(hello.get("peers"), 64, "peers")
        session.peers = frozenset(peer_id_from_did(parse_did(did)) for did in peers)
        await self._add_nodes(strings(hello.get("bootstrap", []), 16, "bootstrap"),
                              strings(hello.get("relays", []), 16, "relays"))
        presence = self.presence
        await send_message(session.sock, {
            "ok": True, "did": self.did, "reach": presence.reach,
            "observed": presence.observed_ip, "addrs": presence.addrs})

    async def _add_nodes(self, bootstrap: list[str], relays: list[str]) -> None:
        """Join a session's DHT nodes and relays this agent does not use yet."""
        from mpcid.p2p.relay import reservation

        discovery = self.presence.discovery
        node = discovery.node
        assert node is not None
        for addr in bootstrap:
            if addr in discovery.config.bootstrap or addr in self._added \
                    or len(self._added) >= 2 * MAX_NODES:
                continue
            self._added.add(addr)
            with contextlib.suppress(MpcidError):
                await discovery.bridge.call(functools.partial(node.bootstrap, [addr],
                                                              timeout=5.0))
        for relay in relays:
            if relay in discovery.relays or relay in self._added \
                    or len(self._added) >= 2 * MAX_NODES:
                continue
            self._added.add(relay)
            try:
                discovery.addrs += await discovery.bridge.enter_context(
                    reservation(self.presence.host, relay, timeout=5.0))
                discovery.relays.append(relay)
            except MpcidError as exc:
                log.info("reservation on %s: %s", relay, exc.one_line())

    async def _request(self, session: _Session, message: Mapping[str, Any]) -> None:
        ident = message.get("id")
        if not isinstance(ident, int):
            return
        try:
            fields, fd = await self._handle(session, message)
        except (MpcidError, ValueError) as exc:
            text = exc.one_line() if isinstance(exc, MpcidError) else "malformed request"
            await self._reply(session, ident, error=text)
            return
        try:
            await self._reply(session, ident, fd=fd, **fields)
        finally:
            if fd is not None:
                os.close(fd)

    async def _reply(self, session: _Session, ident: int | None, fd: int | None = None,
                     error: str | None = None, **fields: Any) -> None:
        message = {"id": ident, "ok": error is None, **fields}
        if error is not None:
            message["error"] = error
        async with session.lock:
            with contextlib.suppress(OSError):
                await send_message(session.sock, message, fd)

    async def _handle(self, session: _Session, message: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], int | None]:
        op, presence = message.get("op"), self.presence
        if op == "get":
            value = await presence.discovery.get_value(str(message.get("key")))
            return {"value": None if value is None else b64(value)}, None
        if op == "await":
            return await self._await(message), None
        if op == "put":
            await presence.put_value(str(message.get("key")), unb64(message.get("value")))
            return {}, None
        if op == "publish":
            session.tcp = strings(message.get("tcp"), 16, "tcp")
            session.addrs = strings(message.get("addrs") or [], 16, "addrs")
            extra = message.get("extra")
            session.extra = dict(extra) if isinstance(extra, dict) else {}
            await self.publish()
            if presence.discovery.record_value is None:
                raise AgentError("nothing to publish: no endpoint")
            return {"record": b64(presence.discovery.record_value)}, None
        if op == "withdraw":
            # Answered at once: the session's party is leaving, and need not wait for the
            # DHT store of what remains (the agent stays, and finishes it).
            session.tcp, session.addrs, session.extra = [], [], {}
            self._spawn(self._publish_quietly())
            return {}, None
        if op == "serve":
            protocols = strings(message.get("protocols"), 8, "protocols")
            session.protocols = frozenset(protocols)
            await self._handle_protocols(protocols)
            return {}, None
        if op == "open":
            return await self._open(session, message)
        raise AgentError(f"unknown request {str(op)[:40]!r}")

    async def _await(self, message: Mapping[str, Any]) -> dict[str, Any]:
        did, after, wait = message.get("did"), message.get("after"), message.get("wait")
        if not isinstance(did, str) or type(after) is not int \
                or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT:
            raise AgentError("await: did, after and wait (seconds) expected")
        value, served = await self.presence.discovery.await_value(did, after, float(wait))
        return {"value": None if value is None else b64(value), "served": served}

    async def _open(self, session: _Session, message: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], int | None]:
        did, addr, protocol = (str(message.get(k)) for k in ("did", "addr", "protocol"))
        peer = peer_id_from_did(parse_did(did))
        if peer not in session.peers:
            raise AgentError("streams are opened only to the session's parties")
        sock = await self.presence.open_stream(did, addr, protocol)
        path = await self.presence.path_of(peer)
        fd = os.dup(sock.fileno())
        sock.close()
        return {"path": path}, fd

    async def _handle_protocols(self, protocols: Sequence[str]) -> None:
        new = {p: functools.partial(self._incoming, p) for p in protocols
               if p not in self._handled}
        self._handled.update(new)
        await self.presence.serve(new)

    async def _incoming(self, protocol: str, sock: socket.socket, peer: str) -> None:
        """Hand a peer's stream to the newest session that expects it."""
        try:
            for session in reversed(list(self.sessions.values())):
                if peer in session.peers and protocol in session.protocols:
                    path = await self.presence.path_of(peer)
                    await self._push(session, protocol, peer, path, sock)
                    return
            log.info("a %s stream from %s belongs to no session here", protocol, peer)
        finally:
            sock.close()

    async def _push(self, session: _Session, protocol: str, peer: str, path: str,
                    sock: socket.socket) -> None:
        async with session.lock:
            with contextlib.suppress(OSError):
                await send_message(session.sock, {"t": "stream", "protocol": protocol,
                                                  "peer": peer, "path": path},
                                   sock.fileno())
