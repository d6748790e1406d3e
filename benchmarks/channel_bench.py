"""Channel alone on loopback: mpcid Noise channel against raw asyncio TCP, side by side.

    .venv/bin/python benchmarks/channel_bench.py [--mib 64] [--round-trips 5000] [--reps 7]
                                                 [--messages 20000] [--per-round 1,4]

Two layouts, both reported: the two ends in two processes, as two parties would be (this
process is the client, a child process running this script with --serve accepts raw TCP
and mpcid channels), and both ends in one process and one event loop (the layout of the
measurements in ARCHITECTURE.md, where a single core does both sides' work). Interleaved
rep by rep, it measures one-way throughput of a bulk transfer (the receiver acknowledges
the last byte), the round-trip time of 16-byte messages, and the CPU time per small
message, and reports medians and the ratios mpcid / raw for each layout.

CPU per message: rounds of ``k`` (``--per-round``) 16-byte messages, each its own
``write`` in one event-loop iteration, as MPyC writes them, echoed back by the peer; the
CPU time of both ends (this process, plus the server's from /proc in the two-process
layout) divided by the number of messages, so each message counts once sent and received
by each end. That is the cost an MPC party pays per message beyond its own computation.

App protocol on either path: the first byte of a connection picks the mode, ``S`` + an
8-byte length (sink: reply one byte after that many bytes) or ``E`` (echo).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.channel import ChannelProtocol, connect, listen
from mpcid.p2p.noise import ChannelConfig, session_prologue

SERVER_SEED = bytes(range(32))
CLIENT_SEED = bytes(range(32, 64))
KEYS = [Ed25519Key.from_seed(CLIENT_SEED), Ed25519Key.from_seed(SERVER_SEED)]
PROLOGUE = session_prologue("bench", hashlib.sha256(b"bench").digest(),
                            [k.did.did for k in KEYS])


def channel_config(me: int) -> ChannelConfig:
    other = KEYS[1 - me]
    return ChannelConfig(KEYS[me].x25519_private_key, PROLOGUE, me == 0,
                         {other.did.did: other.did.x25519_public_key})


class Server(asyncio.Protocol):
    def __init__(self) -> None:
        self.mode = b""
        self.header = bytearray()
        self.expect = 0
        self.got = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.mode == b"E":
            self.transport.write(data)
            return
        if not self.mode:
            self.header += data
            if self.header[:1] == b"E":
                self.mode = b"E"
                if len(self.header) > 1:
                    self.transport.write(bytes(self.header[1:]))
                return
            if len(self.header) < 9:
                return
            self.mode = b"S"
            self.expect = int.from_bytes(self.header[1:9], "big")
            data = bytes(self.header[9:])
        self.got += len(data)
        if self.got >= self.expect:
            self.transport.write(b"!")


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.need = 0
        self.got = 0

    def connection_made(self, transport: Any) -> None:
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


async def start_servers() -> tuple[asyncio.Server, asyncio.Server]:
    loop = asyncio.get_running_loop()
    raw = await loop.create_server(Server, "127.0.0.1", 0)
    channel = await listen("127.0.0.1", 0,
                           lambda: ChannelProtocol(channel_config(1), lambda _: Server()))
    return raw, channel


async def serve() -> None:
    raw, channel = await start_servers()
    print(raw.sockets[0].getsockname()[1], channel.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF


async def open_client(kind: str, port: int) -> Client:
    loop = asyncio.get_running_loop()
    client = Client()
    if kind == "raw TCP":
        await loop.create_connection(lambda: client, "127.0.0.1", port)
    else:
        protocol = await connect("127.0.0.1", port,
                                 lambda: ChannelProtocol(channel_config(0), lambda _: client),
                                 deadline=loop.time() + 10)
        await protocol.ready
    return client


MESSAGE = b"0123456789abcdef"


async def send_bulk(sink: Client, mib: int) -> float:
    """MiB/s of ``mib`` MiB one way on a fresh sink connection, until its one-byte ack."""
    start = time.perf_counter()
    sink.transport.write(b"S" + (mib << 20).to_bytes(8, "big"))
    chunk = b"\0" * (1 << 20)
    for _ in range(mib):
        sink.transport.write(chunk)
        await asyncio.sleep(0)
    await sink.wait_for(1)
    return mib / (time.perf_counter() - start)


async def ping_pong(echo: Client, round_trips: int) -> float:
    """Mean round-trip time in µs of 16-byte messages on a fresh echo connection."""
    echo.transport.write(b"E")
    for _ in range(100):  # warm up
        echo.transport.write(MESSAGE)
        await echo.wait_for(16)
    start = time.perf_counter()
    for _ in range(round_trips):
        echo.transport.write(MESSAGE)
        await echo.wait_for(16)
    return (time.perf_counter() - start) / round_trips * 1e6


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of this process, or of process ``pid`` (from /proc)."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def small_messages(echo: Client, per_round: int, messages: int,
                         server_pid: int | None) -> float:
    """CPU µs per 16-byte message (both ends) on a fresh echo connection: rounds of
    ``per_round`` separate writes in one iteration, each round echoed back."""
    echo.transport.write(b"E")
    rounds = max(1, messages // per_round)
    for _ in range(50):  # warm up
        for _ in range(per_round):
            echo.transport.write(MESSAGE)
        await echo.wait_for(16 * per_round)
    start = process_cpu(None) + (process_cpu(server_pid) if server_pid else 0.0)
    for _ in range(rounds):
        for _ in range(per_round):
            echo.transport.write(MESSAGE)
        await echo.wait_for(16 * per_round)
    end = process_cpu(None) + (process_cpu(server_pid) if server_pid else 0.0)
    return (end - start) / (rounds * per_round) * 1e6


async def measure(kind: str, port: int, args: argparse.Namespace, server_pid: int | None
                  ) -> tuple[float, float, list[float]]:
    sink = await open_client(kind, port)
    throughput = await send_bulk(sink, args.mib)
    sink.transport.close()
    echo = await open_client(kind, port)
    rtt_us = await ping_pong(echo, args.round_trips)
    echo.transport.close()
    cpu = []
    for per_round in args.per_round:
        echo = await open_client(kind, port)
        cpu.append(await small_messages(echo, per_round, args.messages, server_pid))
        echo.transport.close()
    await asyncio.sleep(0.05)
    return throughput, rtt_us, cpu


async def main(args: argparse.Namespace) -> None:
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    local_raw, local_channel = await start_servers()
    try:
        assert server.stdout is not None
        raw_port, channel_port = map(int, server.stdout.readline().split())
        layouts = {
            "two processes": {"raw TCP": raw_port, "mpcid channel": channel_port},
            "one process": {"raw TCP": local_raw.sockets[0].getsockname()[1],
                            "mpcid channel": local_channel.sockets[0].getsockname()[1]},
        }
        pids = {"two processes": server.pid, "one process": None}
        results: dict[tuple[str, str], list[tuple[float, float, list[float]]]] = {
            (layout, kind): [] for layout, ports in layouts.items() for kind in ports}
        for _ in range(args.reps):
            for layout, ports in layouts.items():
                for kind, port in ports.items():
                    results[(layout, kind)].append(
                        await measure(kind, port, args, pids[layout]))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
        local_raw.close()
        local_channel.close()
    per_round = args.per_round
    print(f"# channel benchmark: {platform.machine()}, Python {platform.python_version()}, "
          f"{args.mib} MiB one way, {args.round_trips} round trips of 16 bytes, "
          f"{args.messages} messages of 16 bytes per CPU measurement, "
          f"median of {args.reps} interleaved reps")
    cpu_head = "".join(f"{f'CPU µs/msg k={k}':>18}" for k in per_round)
    print(f"{'layout':<15}{'path':<16}{'MiB/s':>10}{'RTT µs':>10}{'RTT range µs':>16}"
          f"{cpu_head}")
    for layout in layouts:
        medians = {}
        for kind in layouts[layout]:
            values = results[(layout, kind)]
            mbps = statistics.median(v[0] for v in values)
            rtt = statistics.median(v[1] for v in values)
            cpus = [statistics.median(v[2][i] for v in values) for i in range(len(per_round))]
            medians[kind] = (mbps, rtt, cpus)
            spread = f"{min(v[1] for v in values):.1f}-{max(v[1] for v in values):.1f}"
            print(f"{layout:<15}{kind:<16}{mbps:>10.0f}{rtt:>10.1f}{spread:>16}"
                  + "".join(f"{c:>18.1f}" for c in cpus))
        raw, ch = medians["raw TCP"], medians["mpcid channel"]
        cpu_ratios = ", ".join(f"k={k} {c / r:.2f}x" for k, c, r in zip(per_round, ch[2], raw[2]))
        print(f"{layout:<15}ratio mpcid/raw: throughput {ch[0] / raw[0]:.2f}x (target >= 0.5), "
              f"round trip {ch[1] / raw[1]:.2f}x (target <= 1.5), CPU per message "
              f"{cpu_ratios}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--messages", type=int, default=20000,
                        help="messages per CPU-per-message measurement")
    parser.add_argument("--per-round", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 4], help="messages written per round (comma-separated)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    asyncio.run(serve() if options.serve else main(options))
