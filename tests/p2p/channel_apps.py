"""Shared by the libp2p tests (bridge, host, relay): a bounded ``asyncio.run``, and the
asyncio applications run on an mpcid channel."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mpcid.p2p.channel import ChannelTransport

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
