"""The mpcid Noise channel over direct TCP, a direct libp2p stream and a relayed one.

    .venv/bin/python benchmarks/relay_bench.py [--mib 8] [--round-trips 500] [--reps 7]

Three paths, side by side in one process and one asyncio event loop (channel_bench.py's
"one process" layout), with libp2p in the trio thread of ``mpcid.p2p.bridge``:

* ``TCP``: the channel on a plain asyncio TCP connection on loopback;
* ``libp2p``: the channel inside a libp2p stream (yamux over libp2p's Noise over TCP) from
  a source host S1 straight to host T;
* ``libp2p relayed``: the same, from a source host S2 through a circuit relay v2 on host R
  to T, which holds a reservation on R (``tests/p2p/test_relay.py`` sets up the same
  hosts). S2 has no connection to T but the circuit (checked every rep), so every byte
  crosses two libp2p connections and R's relay loop.

All hosts share the trio thread, so the libp2p paths pay for both ends' libp2p work (and
R's) on the same core as the channel, as in every one-process measurement here.

Each rep starts a fresh S1 and S2 (own keys) and times their connection to T: the direct
libp2p connect (TCP, libp2p Noise, yamux) and the circuit dial (``dial_circuit``: TCP to R,
the HOP/STOP exchange, then libp2p Noise and yamux end to end through R). The connections
of earlier reps stay up, idle, until the end: py-libp2p 0.8's relay files a circuit under
the PeerIDs of its ends (``CircuitV2Protocol._active_relays``), and when a circuit ends it
closes whatever circuit is filed there by then, so closing a circuit and dialing the same
peers again got the new circuit cut mid-measurement.

Interleaved rep by rep, each path measures one-way throughput of a bulk transfer (the
receiver acknowledges the last byte) and the round-trip time of 16-byte messages, each on
a fresh channel, after 100 warm-up round trips. Reported: medians and ranges, the ratios
libp2p/TCP, relayed/TCP and relayed/libp2p, and the connect times. Every wait is bounded
by ``--timeout``; the libp2p thread stops within its own stop timeout.

App protocol (the one of channel_bench.py): the first byte of a channel picks the mode,
``S`` + an 8-byte length (sink: reply one byte after that many bytes) or ``E`` (echo).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import platform
import socket
import statistics
import time
from collections.abc import Awaitable
from typing import TypeVar

from libp2p.abc import IHost

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.bridge import TrioThread
from mpcid.p2p.channel import ChannelProtocol, connect, listen, over_socket
from mpcid.p2p.host import connect as libp2p_connect
from mpcid.p2p.host import host_addrs, running_host
from mpcid.p2p.relay import RelayLimits, dial_circuit, relay_service, reservation

T = TypeVar("T")

import channel_bench  # noqa: E402  (same folder)
from channel_bench import KEYS, Server, channel_config, ping_pong, send_bulk  # noqa: E402

# Channel identities, configuration and the sink/echo server are channel_bench.py's.
SERVER_KEY, CLIENT_KEY = KEYS[1], KEYS[0]


def host_key(name: str) -> Ed25519Key:
    """libp2p identities: T is the server party's node; R and the source hosts get fixed
    keys of their own (one source host per path and rep, see the module docstring)."""
    if name == "T":
        return SERVER_KEY
    return Ed25519Key.from_seed(hashlib.sha256(f"relay-bench/{name}".encode()).digest())


LOOPBACK = "/ip4/127.0.0.1/tcp/0"
CHANNEL = "/mpcid/bench/channel/1"
PATHS = ("TCP", "libp2p", "libp2p relayed")


class Client(channel_bench.Client):
    """channel_bench's client, which also fails a waiting read when the channel dies."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: Exception | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the channel closed")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    async def wait_for(self, n: int) -> None:
        if self.lost is not None and self.got < n:
            raise self.lost
        await super().wait_for(n)


async def bounded(aw: Awaitable[T], seconds: float, what: str) -> T:
    try:
        return await asyncio.wait_for(aw, seconds)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{what} took longer than {seconds:g} s") from None


# -- trio side (run with bridge.call) -----------------------------------------------------


async def conn_addrs(host: IHost, other: IHost) -> list[list[str]]:
    """The transport addresses of each connection ``host`` has to ``other``."""
    conns = host.get_network().get_connections(other.get_id())
    return [[str(a) for a in c.get_transport_addresses()] for c in conns]


# -- the benchmark ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bridge = TrioThread()
        self.tcp: asyncio.Server | None = None
        self.hosts: dict[str, IHost] = {}
        self.sources: dict[str, IHost] = {}  # this rep's source host per libp2p path
        self.circuit = ""

    def wait(self, aw: Awaitable[T], what: str) -> Awaitable[T]:
        return bounded(aw, self.args.timeout, what)

    async def setup(self) -> None:
        self.tcp = await listen("127.0.0.1", 0,
                                lambda: ChannelProtocol(channel_config(1), lambda _: Server()))
        await self.wait(self.bridge.start(), "starting the libp2p thread")
        for name in ("R", "T"):
            self.hosts[name] = await self.wait(
                self.bridge.enter_context(running_host(host_key(name), [LOOPBACK])),
                f"starting host {name}")
            if name == "R":
                await self.wait(self.bridge.enter_context(
                    relay_service(self.hosts["R"], RelayLimits())), "starting the relay")
        r, t = self.hosts["R"], self.hosts["T"]
        (self.circuit,) = await self.wait(
            self.bridge.enter_context(reservation(t, host_addrs(r)[0])),
            "T's reservation on R")

        async def accept(sock: socket.socket, peer_id: str) -> None:
            # The channel closes itself when the client closes its end.
            await over_socket(sock, lambda: ChannelProtocol(channel_config(1),
                                                            lambda _: Server()))

        await self.wait(self.bridge.set_stream_handler(t, CHANNEL, accept),
                        "registering T's stream handler")

    async def stop(self) -> None:
        if self.tcp is not None:
            self.tcp.close()
        await self.bridge.stop()  # bounded by its stop_timeout

    async def new_source(self, path: str, rep: int) -> float:
        """Start a fresh source host for ``path`` and connect it to T (directly, or by a
        circuit through R), check how the connection runs and return the connect time in
        ms. The host and its connection stay up until the end (see the module docstring)."""
        name = f"S1.{rep}" if path == "libp2p" else f"S2.{rep}"
        source = await self.wait(self.bridge.enter_context(
            running_host(host_key(name), [LOOPBACK])), f"starting host {name}")
        self.sources[path] = source
        t = self.hosts["T"]
        began = time.perf_counter()
        if path == "libp2p":
            await self.wait(self.bridge.call(libp2p_connect, source, host_addrs(t)[0]),
                            f"connecting {name} to T")
        else:
            await self.wait(self.bridge.call(dial_circuit, source, self.circuit),
                            f"dialing the circuit {name} -> R -> T")
        connect_ms = (time.perf_counter() - began) * 1e3
        (addrs,) = await self.bridge.call(conn_addrs, source, t)
        relayed = all("/p2p-circuit" in a for a in addrs)
        direct = all(a.startswith("/ip4/127.0.0.1/tcp/") and "/p2p-circuit" not in a
                     for a in addrs)
        if not addrs or not (relayed if path != "libp2p" else direct):
            raise RuntimeError(f"{path}: the connection to T runs over {addrs}")
        return connect_ms

    async def open_client(self, path: str) -> Client:
        loop = asyncio.get_running_loop()
        client = Client()

        def factory() -> ChannelProtocol:
            return ChannelProtocol(channel_config(0), lambda _: client)
        if path == "TCP":
            assert self.tcp is not None
            port = self.tcp.sockets[0].getsockname()[1]
            protocol = await connect("127.0.0.1", port, factory,
                                     deadline=loop.time() + self.args.timeout)
        else:
            sock = await self.bridge.open_stream(self.sources[path], self.hosts["T"].get_id().to_base58(),
                                                 CHANNEL)
            protocol = await over_socket(sock, factory)
        await protocol.ready
        return client

    async def throughput(self, path: str) -> float:
        mib: int = self.args.mib
        sink = await self.wait(self.open_client(path), f"{path}: opening a channel")
        mib_per_s = await self.wait(send_bulk(sink, mib), f"{path}: {mib} MiB one way")
        sink.transport.close()
        return mib_per_s

    async def round_trip(self, path: str) -> float:
        echo = await self.wait(self.open_client(path), f"{path}: opening a channel")
        rtt_us = await self.wait(ping_pong(echo, self.args.round_trips),
                                 f"{path}: {self.args.round_trips} round trips")
        echo.transport.close()
        return rtt_us


def spread(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


async def main(args: argparse.Namespace) -> None:
    bench = Bench(args)
    began = time.perf_counter()
    results: dict[str, list[tuple[float, float]]] = {path: [] for path in PATHS}
    connects: dict[str, list[float]] = {"libp2p": [], "libp2p relayed": []}
    try:
        await bench.setup()
        setup_s = time.perf_counter() - began
        for rep in range(args.reps):
            for path in PATHS:
                if path in connects:
                    connects[path].append(await bench.new_source(path, rep))
                mbps = await bench.throughput(path)
                rtt = await bench.round_trip(path)
                results[path].append((mbps, rtt))
                await asyncio.sleep(0.05)  # let the closed channels' streams wind down
    finally:
        stopping = time.perf_counter()
        await bench.stop()
        stop_s = time.perf_counter() - stopping
    print(f"# relay benchmark: {platform.machine()}, Python {platform.python_version()}, "
          f"one process, {args.mib} MiB one way, {args.round_trips} round trips of 16 "
          f"bytes, median of {args.reps} interleaved reps")
    print(f"{'path':<16}{'MiB/s':>8}{'MiB/s range':>14}{'RTT µs':>10}{'RTT range µs':>16}")
    medians = {}
    for path in PATHS:
        values = results[path]
        mbps = statistics.median(v[0] for v in values)
        rtt = statistics.median(v[1] for v in values)
        medians[path] = (mbps, rtt)
        print(f"{path:<16}{mbps:>8.1f}{spread([v[0] for v in values], '.1f'):>14}"
              f"{rtt:>10.0f}{spread([v[1] for v in values], '.0f'):>16}")
    for label, num, den in (("libp2p/TCP", "libp2p", "TCP"),
                            ("relayed/TCP", "libp2p relayed", "TCP"),
                            ("relayed/libp2p", "libp2p relayed", "libp2p")):
        a, b = medians[num], medians[den]
        print(f"ratio {label + ':':<16}throughput {a[0] / b[0]:.2f}x, "
              f"round trip {a[1] / b[1]:.2f}x")
    for label, path in (("circuit dial S2 -> R -> T", "libp2p relayed"),
                        ("direct libp2p connect S1 -> T", "libp2p")):
        dials = connects[path]
        print(f"{label}: median {statistics.median(dials):.1f} ms "
              f"(range {spread(dials, '.1f')} ms, {len(dials)} dials)")
    print(f"setup {setup_s:.2f} s (hosts R and T, relay, reservation), "
          f"total {time.perf_counter() - began:.1f} s, stop {stop_s:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=8, help="MiB per one-way transfer")
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds any one step may take")
    options = parser.parse_args()
    if not 1 <= options.mib < 1000:  # R's default data limit is 1 GiB per circuit
        parser.error("--mib must be 1 to 999 (the relay cuts a circuit after 1 GiB)")
    if options.reps < 1 or options.round_trips < 1:
        parser.error("--reps and --round-trips must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(options))
