"""Channel alone on loopback: mpcid Noise channel against raw asyncio TCP, side by side.

    .venv/bin/python benchmarks/channel_bench.py [--mib 64] [--round-trips 5000] [--reps 5]

Measures, interleaved rep by rep in one process: one-way throughput of a bulk transfer
(the receiver acknowledges the last byte) and the round-trip time of 16-byte messages.
Reports medians and the ratios mpcid / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import platform
import statistics
import time
from collections.abc import Callable

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.channel import ChannelProtocol, connect, listen
from mpcid.p2p.noise import ChannelConfig, session_prologue


class Sink(asyncio.Protocol):
    """Counts bulk bytes and answers 1 byte when ``expect`` have arrived; echoes when in
    echo mode."""

    def __init__(self) -> None:
        self.expect = 0
        self.got = 0
        self.echo = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.echo:
            self.transport.write(data)  # type: ignore[attr-defined]
            return
        self.got += len(data)
        if self.expect and self.got >= self.expect:
            self.got = 0
            self.transport.write(b"!")  # type: ignore[attr-defined]


class Source(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.need = 0
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.waiter is not None and self.got >= self.need and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait_for(self, n: int) -> None:
        self.need = n
        while self.got < n:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        self.got -= n


async def measure(client: Source, server: Sink, mib: int, round_trips: int
                  ) -> tuple[float, float]:
    chunk = b"\0" * (1 << 20)
    server.echo, server.expect = False, mib << 20
    start = time.perf_counter()
    for _ in range(mib):
        client.transport.write(chunk)  # type: ignore[attr-defined]
        await asyncio.sleep(0)
    await client.wait_for(1)
    throughput = mib / (time.perf_counter() - start)
    server.echo = True
    message = b"0123456789abcdef"
    start = time.perf_counter()
    for _ in range(round_trips):
        client.transport.write(message)  # type: ignore[attr-defined]
        await client.wait_for(16)
    rtt_us = (time.perf_counter() - start) / round_trips * 1e6
    return throughput, rtt_us


async def raw_pair() -> tuple[Source, Sink, Callable[[], None]]:
    loop = asyncio.get_running_loop()
    sink = Sink()
    server = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, source = await loop.create_connection(Source, "127.0.0.1", port)
    await asyncio.sleep(0.05)
    return source, sink, lambda: (source.transport.close(), server.close())


async def channel_pair() -> tuple[Source, Sink, Callable[[], None]]:
    loop = asyncio.get_running_loop()
    keys = [Ed25519Key.generate() for _ in range(2)]
    dids = [k.did.did for k in keys]
    prologue = session_prologue("bench", hashlib.sha256(b"bench").digest(), dids)
    sink, source = Sink(), Source()

    def config(i: int) -> ChannelConfig:
        other = keys[1 - i]
        return ChannelConfig(keys[i].x25519_private_key, prologue, i == 0,
                             {other.did.did: other.did.x25519_public_key})

    server = await listen("127.0.0.1", 0, lambda: ChannelProtocol(config(1), lambda _: sink))
    port = server.sockets[0].getsockname()[1]
    protocol = await connect("127.0.0.1", port,
                             lambda: ChannelProtocol(config(0), lambda _: source),
                             deadline=loop.time() + 5)
    await protocol.ready
    await asyncio.sleep(0.05)
    return source, sink, lambda: (source.transport.close(), server.close())


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[tuple[float, float]]] = {"raw TCP": [], "mpcid channel": []}
    for _ in range(args.reps):
        for name, make in (("raw TCP", raw_pair), ("mpcid channel", channel_pair)):
            source, sink, close = await make()
            results[name].append(await measure(source, sink, args.mib, args.round_trips))
            close()
            await asyncio.sleep(0.05)
    print(f"# channel benchmark: {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {args.mib} MiB one way, "
          f"{args.round_trips} round trips of 16 bytes, median of {args.reps} interleaved reps")
    print(f"{'path':<16}{'MiB/s':>10}{'RTT µs':>10}")
    medians = {}
    for name, values in results.items():
        mbps = statistics.median(v[0] for v in values)
        rtt = statistics.median(v[1] for v in values)
        medians[name] = (mbps, rtt)
        print(f"{name:<16}{mbps:>10.0f}{rtt:>10.1f}")
    raw, ch = medians["raw TCP"], medians["mpcid channel"]
    print(f"ratio mpcid/raw: throughput {ch[0] / raw[0]:.2f}x (target >= 0.5), "
          f"round trip {ch[1] / raw[1]:.2f}x (target <= 1.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
