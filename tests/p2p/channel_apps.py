"""Shared by the libp2p tests (bridge, host, relay): a bounded ``asyncio.run``, and the
asyncio applications run on an mpcid channel."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import socket

from mpcid.p2p.channel import ChannelProtocol, ChannelTransport, over_socket
from mpcid.p2p.noise import ChannelConfig

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]], timeout: float) -> T:
    """``asyncio.run(main())``, failing after ``timeout`` seconds instead of hanging."""
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)
    return asyncio.run(bounded())


class Receiver(asyncio.Protocol):
    """Collects ``size`` bytes, then answers their SHA-256."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = bytearray()
        self.transport: ChannelTransport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, ChannelTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.data) == self.size:
            assert self.transport is not None
            self.transport.write(hashlib.sha256(self.data).digest())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


class Sender(asyncio.Protocol):
    """Waits for the 32-byte digest the :class:`Receiver` answers."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= 32 and not self.reply.done():
            self.reply.set_result(bytes(self.buffer))


class Acceptor:
    """The accepting end of mpcid channels over libp2p streams: a stream callback that runs
    a responder channel with ``config`` whose peer must be ``peer_did``, each with a
    :class:`Receiver` of ``size`` bytes."""

    def __init__(self, config: ChannelConfig, peer_did: str, size: int) -> None:
        self.config = config
        self.peer_did = peer_did
        self.size = size
        self.receivers: list[Receiver] = []
        self.peers: list[str] = []
        self.accepted: asyncio.Future[ChannelProtocol] = (
            asyncio.get_running_loop().create_future())

    def receiver(self, peer_did: str) -> Receiver:
        assert peer_did == self.peer_did
        self.receivers.append(Receiver(self.size))
        return self.receivers[-1]

    async def __call__(self, sock: socket.socket, peer: str) -> None:
        self.peers.append(peer)
        self.accepted.set_result(await over_socket(sock, lambda: ChannelProtocol(
            self.config, self.receiver, label="responder ")))
