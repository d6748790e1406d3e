"""asyncio applications run on an mpcid channel in the libp2p tests (host and relay)."""

from __future__ import annotations

import asyncio
import hashlib

from mpcid.p2p.channel import ChannelTransport


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
