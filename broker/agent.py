"""The local agent: ``mpcid online`` lends its libp2p host and DHT node to ``mpcid join``.

Starting a libp2p host costs a party most of its start-up time (importing py-libp2p
alone takes ~0.85 CPU-seconds and ~90 MB), and a fresh DHT node must dial and identify
the bootstrap nodes before it can publish or look anything up. ``mpcid online`` keeps an
identity's host running anyway; it serves it on a Unix socket in the keystore's home
(:func:`agent_socket`), and ``mpcid join`` of the same identity uses it when it is there
(:class:`AgentPresence`), so that the join imports no libp2p and its DHT requests travel
over connections that are already open. Without an agent, the join runs its own host
(:class:`~mpcid.broker.presence.LocalPresence`), as before.

Protocol (``specs/discovery.md`` 9): a ``SOCK_SEQPACKET`` connection per session, one JSON
object per datagram (at most :data:`MAX_MESSAGE` bytes); the file descriptor of a libp2p
stream travels as ``SCM_RIGHTS`` with the message that announces it. Only processes of
the agent's own user may connect (``SO_PEERCRED``); the agent signs records only with its
own key, so a join is served only by an agent of its own DID.
"""

from __future__ import annotations

import array
import asyncio
import base64
import hashlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mpcid.identity.did_key import parse_did
from mpcid.identity.errors import MpcidError
from mpcid.p2p.errors import ConnectFailed
from mpcid.p2p.peerid import peer_id_from_did
from mpcid.p2p.records import EndpointRecord, decode_and_verify, dht_key

from .presence import StreamHandler

log = logging.getLogger("mpcid.agent")

MAX_MESSAGE = 65536
"""Bytes of one message's JSON, either way."""
MAX_SESSIONS = 16
"""Sessions (connections) an agent serves at once."""
MAX_PENDING = 64
"""Requests of one session the agent works on at once."""
MAX_NODES = 16
"""Bootstrap nodes and relays sessions may add to an agent, each, over its lifetime."""
HELLO_TIMEOUT = 5.0
"""Seconds a join waits for the agent's answer to its session request."""


class AgentError(MpcidError):
    """The local agent refused or failed a request."""

    exit_code = 1


def agent_socket(home: Path, did: str) -> Path:
    """Where the agent of ``did`` in the keystore at ``home`` listens."""
    digest = hashlib.sha256(did.encode()).hexdigest()[:16]
    return home / f"agent-{digest}.sock"


def listen_unix(path: Path, backlog: int) -> socket.socket | None:
    """Listen on a ``SOCK_SEQPACKET`` Unix socket at ``path`` that only this user may
    reach (mode 0600); a socket file nothing answers on is replaced. None if something
    answers there already."""
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(str(path))
            return None
        except OSError:
            path.unlink(missing_ok=True)  # left by a process that did not stop cleanly
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(backlog)
    listener.setblocking(False)
    return listener


def socket_path_fits(path: Path) -> bool:
    """A Unix socket path must fit ``sun_path`` (108 bytes with its NUL)."""
    return len(os.fsencode(path)) < 108


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise AgentError("the local agent sent a malformed message")
    return base64.b64decode(text, validate=True)


async def _wait(sock: socket.socket, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()
    add, remove = ((loop.add_writer, loop.remove_writer) if writable
                   else (loop.add_reader, loop.remove_reader))
    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


async def send_message(sock: socket.socket, message: Mapping[str, Any],
                       fd: int | None = None) -> None:
    """Send one message (and a file descriptor with it)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise AgentError(f"a message to or from the local agent is larger than "
                         f"{MAX_MESSAGE} bytes")
    ancillary = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
                 if fd is not None else [])
    while True:
        try:
            sock.sendmsg([data], ancillary)
            return
        except BlockingIOError:
            await _wait(sock, writable=True)


def received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors in a ``recvmsg`` answer's ancillary data (``SCM_RIGHTS``)."""
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % struct.calcsize("i")
            fds += array.array("i", payload[:usable]).tolist()
    return fds


async def recv_message(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and the file descriptors that came with it; None at the end.
    Raises :class:`AgentError` for a message that is too long or not a JSON object."""
    space = socket.CMSG_SPACE(struct.calcsize("i") * 4)
    while True:
        try:
            data, ancillary, flags, _ = sock.recvmsg(MAX_MESSAGE + 1, space)
            break
        except BlockingIOError:
            await _wait(sock, writable=False)
    fds = received_fds(ancillary)
    if not data and not fds:
        return None
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) > MAX_MESSAGE:
            raise AgentError(f"a message of the local agent protocol is larger than "
                             f"{MAX_MESSAGE} bytes")
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            message = None
        if not isinstance(message, dict):
            raise AgentError("a message of the local agent protocol is not a JSON object")
    except AgentError:
        for fd in fds:
            os.close(fd)
        raise
    return message, fds


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def strings(value: object, most: int, what: str) -> list[str]:
    """A list of at most ``most`` strings of at most 512 characters, or AgentError."""
    if (not isinstance(value, list) or len(value) > most
            or not all(isinstance(v, str) and len(v) <= 512 for v in value)):
        raise AgentError(f"'{what}' must be a list of at most {most} strings")
    return list(value)


class AgentPresence:
    """A session's presence held by the local agent (implements
    :class:`~mpcid.broker.presence.Presence`)."""

    def __init__(self, sock: socket.socket, did: str, hello: Mapping[str, Any]) -> None:
        self.sock = sock
        self.did = did
        self.clock: Callable[[], float] = time.time
        self.reach: str | None = _optional_str(hello.get("reach"))
        self.observed_ip: str | None = _optional_str(hello.get("observed"))
        self.addrs: list[str] = strings(hello.get("addrs", []), 64, "addrs")
        self._next = 0
        self._replies: dict[int, asyncio.Future[tuple[dict[str, Any], int | None]]] = {}
        self._handlers: dict[str, StreamHandler] = {}
        self._paths: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, path: Path, did: str, peers: Sequence[str],
                      bootstrap: Sequence[str], relays: Sequence[str]
                      ) -> AgentPresence | None:
        """The agent at ``path`` for this session, or None when there is none that
        serves ``did`` (the reason is logged: the caller then runs its own host)."""
        try:
            if not socket_path_fits(path) or os.stat(path).st_uid != os.geteuid():
                return None
        except OSError:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, str(path)),
                                   HELLO_TIMEOUT)
            await send_message(sock, {"op": "session", "v": 1, "peers": list(peers),
                                      "bootstrap": list(bootstrap), "relays": list(relays)})
            received = await asyncio.wait_for(recv_message(sock), HELLO_TIMEOUT)
            hello = received[0] if received is not None else {}
            if hello.get("did") != did:
                raise AgentError(str(hello.get("error") or f"it serves {hello.get('did')}"))
            return cls(sock, did, hello)
        except (OSError, asyncio.TimeoutError, MpcidError) as exc:
            reason = (exc.one_line() if isinstance(exc, MpcidError) else
                      getattr(exc, "strerror", None) or type(exc).__name__)
            log.info("not using the local agent at %s: %s", path, reason)
            sock.close()
            return None

    async def _read(self) -> None:
        try:
            while True:
                received = await recv_message(self.sock)
                if received is None:
                    break
                self._dispatch(*received)
        except (OSError, MpcidError) as exc:
            log.info("the local agent's connection failed: %s", exc)
        finally:
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectFailed("the local agent stopped"))

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        fd = fds[0] if fds else None
        for extra in fds[1:]:
            os.close(extra)
        if message.get("t") == "stream":
            self._accept(message, fd)
            return
        future = self._replies.pop(message.get("id"), None)  # type: ignore[arg-type]
        if future is None or future.done():
            if fd is not None:
                os.close(fd)
            return
        future.set_result((message, fd))

    def _accept(self, message: Mapping[str, Any], fd: int | None) -> None:
        handler = self._handlers.get(str(message.get("protocol")))
        peer = message.get("peer")
        if fd is None:
            return
        if handler is None or not isinstance(peer, str):
            os.close(fd)
            return
        self._paths[peer] = str(message.get("path") or "libp2p")
        task = asyncio.ensure_future(handler(socket.socket(fileno=fd), peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, op: str, **fields: Any) -> tuple[dict[str, Any], int | None]:
        if self._reader.done():
            raise ConnectFailed("the local agent stopped")
        self._next += 1
        future: asyncio.Future[tuple[dict[str, Any], int | None]] = \
            asyncio.get_running_loop().create_future()
        self._replies[self._next] = future
        await send_message(self.sock, {"id": self._next, "op": op, **fields})
        reply, fd = await future
        if not reply.get("ok"):
            if fd is not None:
                os.close(fd)
            raise ConnectFailed(str(reply.get("error") or f"the local agent refused {op}")[:500])
        return reply, fd

    async def publish(self, tcp: Sequence[str], addrs: Sequence[str] | None = None,
                      ttl: int | None = None,
                      extra: Mapping[str, object] | None = None) -> EndpointRecord:
        reply, _ = await self._call("publish", tcp=list(tcp), addrs=(
            list(addrs) if addrs is not None else None), extra=dict(extra or {}))
        return decode_and_verify(dht_key(self.did), unb64(reply.get("record")), self.clock())

    async def withdraw(self) -> None:
        await self._call("withdraw")

    async def resolve(self, did: str) -> EndpointRecord | None:
        key = dht_key(parse_did(did))
        reply, _ = await self._call("get", key=key)
        value = reply.get("value")
        return None if value is None else decode_and_verify(key, unb64(value), self.clock())

    async def await_record(self, did: str, after: int, wait: float
                           ) -> tuple[EndpointRecord | None, bool]:
        reply, _ = await self._call("await", did=did, after=after, wait=wait)
        value = reply.get("value")
        record = None if value is None else decode_and_verify(
            dht_key(parse_did(did)), unb64(value), self.clock())
        return record, reply.get("served") is True

    async def put_value(self, key: str, value: bytes) -> None:
        await self._call("put", key=key, value=b64(value))

    async def get_value(self, key: str) -> bytes | None:
        reply, _ = await self._call("get", key=key)
        value = reply.get("value")
        return None if value is None else unb64(value)

    async def serve(self, handlers: Mapping[str, StreamHandler]) -> None:
        self._handlers.update(handlers)
        await self._call("serve", protocols=list(handlers))

    async def open_stream(self, did: str, addr: str, protocol: str) -> socket.socket:
        reply, fd = await self._call("open", did=did, addr=addr, protocol=protocol)
        if fd is None:
            raise ConnectFailed("the local agent opened no stream")
        self._paths[peer_id_from_did(did)] = str(reply.get("path") or "libp2p")
        return socket.socket(fileno=fd)

    async def path_of(self, peer: str) -> str:
        return self._paths.get(peer, "libp2p")

    async def stop(self) -> None:
        """End the session at the agent: it takes this session's endpoints out of the
        record and stops handing over streams."""
        self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
        self.sock.close()


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= 512 else None
