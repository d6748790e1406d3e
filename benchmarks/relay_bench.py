"""The mpcid Noise channel over direct TCP, a direct libp2p stream and a relayed one, with
mpcid's libp2p tuning and, side by side in the same run, with py-libp2p's own behaviour.

    .venv/bin/python benchmarks/relay_bench.py [--layout processes|one-process]
        [--mib 8] [--round-trips 500] [--reps 7] [--no-baseline]

Paths, each measured with both settings (``--no-baseline``: tuned only):

* ``TCP``: the channel on a plain asyncio TCP connection on loopback (no libp2p, so
  measured once);
* ``libp2p``: the channel inside a libp2p stream (yamux over libp2p's Noise over TCP) from
  a source host S1 straight to host T;
* ``libp2p relayed``: the same, from a source host S2 through a circuit relay v2 on host R
  to T, which holds a reservation on R. S2 has no connection to T but the circuit
  (checked every rep), so every byte crosses two libp2p connections and R's relay loop.

Settings (:data:`SETTINGS`): ``tuned`` is mpcid as it ships; ``baseline`` sets the knobs
of :mod:`mpcid.p2p.bridge` and :mod:`mpcid.p2p.relay` back to what py-libp2p 0.8.1 does
by itself (and what mpcid did before): 64 KiB pump reads both ways, a relay that reads
65535 bytes at a time, circuit ends reading their relay stream unbuffered, and yamux
window updates after every read.

Layouts:

* ``processes`` (the default; the deployment): R and T each run in a process of their own
  (this script with ``--serve relay|target``), one pair per setting, and this process is
  the source side (S1, S2 and the channel clients). On a 2-core machine the three busy
  processes share two cores. Reported per process: CPU ms per MiB of the relayed bulk
  transfer (from ``/proc/PID/stat``), which shows which hop bounds the throughput.
* ``one-process``: every host in one trio thread and every channel end on one asyncio
  loop (the layout of ``../shared/ARCHITECTURE.md`` section 1): one core pays for all
  ends' and R's work, so throughput is 1 / (total CPU per MiB).

Each rep starts fresh source hosts (own keys) and times their connection to T: the direct
libp2p connect (TCP, libp2p Noise, yamux) and the circuit dial (``dial_circuit``: TCP to R,
the HOP/STOP exchange, then libp2p Noise and yamux end to end through R). Connections of
earlier reps stay up, idle, until the end: py-libp2p 0.8's relay filed circuits by the
PeerIDs of their ends, and closing one could cut the next (mpcid's relay no longer does
that, but a benchmark should not depend on it).

Interleaved rep by rep (and setting by setting within a rep), each path measures one-way
throughput of a bulk transfer (the receiver acknowledges the last byte) and the round-trip
time of 16-byte messages, each on a fresh channel, after 100 warm-up round trips. Reported:
medians and ranges, the ratios tuned/baseline, relayed/TCP and relayed/libp2p, and the
connect times. Every wait is bounded by ``--timeout``.

App protocol (the one of channel_bench.py): the first byte of a channel picks the mode,
``S`` + an 8-byte length (sink: reply one byte after that many bytes) or ``E`` (echo).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from libp2p.abc import IHost
from libp2p.tools.constants import MAX_READ_LEN

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p import bridge as bridge_module
from mpcid.p2p import relay as relay_module
from mpcid.p2p.bridge import TrioThread
from mpcid.p2p.channel import ChannelProtocol, connect, listen, over_socket
from mpcid.p2p.host import connect as libp2p_connect
from mpcid.p2p.host import host_addrs, running_host
from mpcid.p2p.relay import RelayLimits, dial_circuit, relay_service, reservation

T = TypeVar("T")

import channel_bench  # noqa: E402  (same folder)
from channel_bench import channel_config, ping_pong, send_bulk, Server  # noqa: E402

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
CHANNEL = "/mpcid/bench/channel/1"

#: Module settings per variant: (module, name) -> value.
SETTINGS: dict[str, dict[tuple[Any, str], Any]] = {
    "tuned": {
        (bridge_module, "SEND_CHUNK"): bridge_module.SEND_CHUNK,
        (bridge_module, "RECEIVE_CHUNK"): bridge_module.RECEIVE_CHUNK,
        (bridge_module, "BATCH_WINDOW_UPDATES"): True,
        (relay_module, "FORWARD_CHUNK"): relay_module.FORWARD_CHUNK,
        (relay_module, "CIRCUIT_READ"): relay_module.CIRCUIT_READ,
    },
    "baseline": {
        (bridge_module, "SEND_CHUNK"): 64 * 1024,
        (bridge_module, "RECEIVE_CHUNK"): 64 * 1024,
        (bridge_module, "BATCH_WINDOW_UPDATES"): False,
        (relay_module, "FORWARD_CHUNK"): MAX_READ_LEN,
        (relay_module, "CIRCUIT_READ"): 0,
    },
}
LABEL = {"tuned": "tuned", "baseline": "py-libp2p"}


def use(variant: str) -> None:
    """Apply a variant's settings to this process (read by new streams and circuits, and
    by the pumps and relay loops on each read)."""
    for (module, name), value in SETTINGS[variant].items():
        setattr(module, name, value)


def host_key(name: str) -> Ed25519Key:
    """Fixed libp2p identities per host name (a source host gets a new name per rep)."""
    return Ed25519Key.from_seed(hashlib.sha256(f"relay-bench/{name}".encode()).digest())


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


def server_factory() -> ChannelProtocol:
    return ChannelProtocol(channel_config(1), lambda _: Server())


async def conn_addrs(host: IHost, peer_id: str) -> list[list[str]]:
    """Trio: the transport addresses of each connection ``host`` has to ``peer_id``."""
    from libp2p.peer.id import ID
    conns = host.get_network().get_connections(ID.from_base58(peer_id))
    return [[str(a) for a in c.get_transport_addresses()] for c in conns]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- R and T: in this process (one-process layout) or in their own ------------------------


@dataclass
class Site:
    """Where the source side finds one variant's R and T."""

    tcp_port: int
    t_addr: str  # T's libp2p address, ending in /p2p/<PeerID>
    circuit: str  # T's circuit address through R
    pids: dict[str, int]  # "R", "T" -> process id (this one in the one-process layout)

    @property
    def t_peer(self) -> str:
        return self.t_addr.rsplit("/p2p/", 1)[1]


async def start_r_and_t(bridge: TrioThread, variant: str, wait: Callable[..., Any]
                        ) -> tuple[Site, asyncio.Server]:
    """Start R (a relay) and T (the channel's server side: TCP listener, libp2p host with
    a reservation on R) on ``bridge`` and this asyncio loop."""
    tcp = await listen("127.0.0.1", 0, server_factory)
    r = await wait(bridge.enter_context(running_host(host_key(f"R.{variant}"), [LOOPBACK])),
                   "starting host R")
    await wait(bridge.enter_context(relay_service(r, RelayLimits())), "starting the relay")
    t_site, _ = await start_t(bridge, variant, host_addrs(r)[0], wait, tcp)
    return t_site, tcp


async def start_t(bridge: TrioThread, variant: str, relay_addr: str, wait: Callable[..., Any],
                  tcp: asyncio.Server | None = None) -> tuple[Site, asyncio.Server]:
    if tcp is None:
        tcp = await listen("127.0.0.1", 0, server_factory)
    t = await wait(bridge.enter_context(running_host(host_key(f"T.{variant}"), [LOOPBACK])),
                   "starting host T")
    (circuit,) = await wait(bridge.enter_context(reservation(t, relay_addr)),
                            "T's reservation on R")

    async def accept(sock: socket.socket, peer_id: str) -> None:
        # The channel closes itself when the client closes its end.
        await over_socket(sock, server_factory)

    await wait(bridge.set_stream_handler(t, CHANNEL, accept), "registering T's handler")
    pid = os.getpid()
    return Site(tcp.sockets[0].getsockname()[1], host_addrs(t)[0], circuit,
                {"R": pid, "T": pid}), tcp


async def serve(args: argparse.Namespace) -> None:
    """``--serve relay|target``: run R or T of one variant in this process, print where it
    is as one JSON line, and run until standard input ends."""
    use(args.variant)

    def wait(aw: Awaitable[T], what: str) -> Awaitable[T]:
        return bounded(aw, args.timeout, what)

    bridge = TrioThread()
    tcp: asyncio.Server | None = None
    await wait(bridge.start(), "starting the libp2p thread")
    try:
        if args.serve == "relay":
            r = await wait(bridge.enter_context(
                running_host(host_key(f"R.{args.variant}"), [LOOPBACK])), "starting host R")
            await wait(bridge.enter_context(relay_service(r, RelayLimits())),
                       "starting the relay")
            print(json.dumps({"addr": host_addrs(r)[0]}), flush=True)
        else:
            site, tcp = await start_t(bridge, args.variant, args.relay, wait)
            print(json.dumps({"tcp_port": site.tcp_port, "t_addr": site.t_addr,
                              "circuit": site.circuit}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    finally:
        if tcp is not None:
            tcp.close()
        await bridge.stop()


class Child:
    """A ``--serve`` process of this script."""

    def __init__(self, role: str, variant: str, args: argparse.Namespace,
                 relay: str = "") -> None:
        command = [sys.executable, __file__, "--serve", role, "--variant", variant,
                   "--timeout", str(args.timeout)]
        if relay:
            command += ["--relay", relay]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    async def ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await bounded(asyncio.to_thread(self.proc.stdout.readline), timeout,
                             "a --serve process starting")
        if not line:
            raise RuntimeError(f"a --serve process exited with {self.proc.wait()}")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the source side and the measurements -------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.variants = ["tuned"] if args.no_baseline else ["baseline", "tuned"]
        self.bridge = TrioThread()
        self.sites: dict[str, Site] = {}
        self.children: list[Child] = []
        self.servers: list[asyncio.Server] = []
        self.sources: dict[tuple[str, str], IHost] = {}  # this rep's source per path

    def wait(self, aw: Awaitable[T], what: str) -> Awaitable[T]:
        return bounded(aw, self.args.timeout, what)

    async def setup(self) -> None:
        await self.wait(self.bridge.start(), "starting the libp2p thread")
        if self.args.layout == "one-process":
            # One R and T serve both variants: the settings are read at run time.
            site, tcp = await start_r_and_t(self.bridge, "shared", self.wait)
            self.servers.append(tcp)
            self.sites = {variant: site for variant in self.variants}
            return
        for variant in self.variants:
            relay = Child("relay", variant, self.args)
            self.children.append(relay)
            relay_addr = (await relay.ready(self.args.timeout))["addr"]
            target = Child("target", variant, self.args, relay=relay_addr)
            self.children.append(target)
            info = await target.ready(self.args.timeout)
            self.sites[variant] = Site(info["tcp_port"], info["t_addr"], info["circuit"],
                                       {"R": relay.proc.pid, "T": target.proc.pid})

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        await self.bridge.stop()  # bounded by its stop_timeout
        for child in self.children:
            await asyncio.to_thread(child.stop)

    async def new_source(self, variant: str, path: str, rep: int) -> float:
        """Start a fresh source host for ``path`` and connect it to T (directly, or by a
        circuit through R), check how the connection runs and return the connect time in
        ms. The host and its connection stay up until the end."""
        use(variant)
        site = self.sites[variant]
        name = f"{'S1' if path == 'libp2p' else 'S2'}.{variant}.{rep}"
        source = await self.wait(self.bridge.enter_context(
            running_host(host_key(name), [LOOPBACK])), f"starting host {name}")
        self.sources[(variant, path)] = source
        began = time.perf_counter()
        if path == "libp2p":
            await self.wait(self.bridge.call(libp2p_connect, source, site.t_addr),
                            f"connecting {name} to T")
        else:
            await self.wait(self.bridge.call(dial_circuit, source, site.circuit),
                            f"dialing the circuit {name} -> R -> T")
        connect_ms = (time.perf_counter() - began) * 1e3
        (addrs,) = await self.bridge.call(conn_addrs, source, site.t_peer)
        relayed = all("/p2p-circuit" in a for a in addrs)
        direct = all(a.startswith("/ip4/127.0.0.1/tcp/") and "/p2p-circuit" not in a
                     for a in addrs)
        if not addrs or not (relayed if path != "libp2p" else direct):
            raise RuntimeError(f"{path}: the connection to T runs over {addrs}")
        return connect_ms

    async def open_client(self, variant: str, path: str) -> Client:
        use(variant)
        loop = asyncio.get_running_loop()
        client = Client()
        site = self.sites[variant]

        def factory() -> ChannelProtocol:
            return ChannelProtocol(channel_config(0), lambda _: client)
        if path == "TCP":
            protocol = await connect("127.0.0.1", site.tcp_port, factory,
                                     deadline=loop.time() + self.args.timeout)
        else:
            sock = await self.bridge.open_stream(self.sources[(variant, path)], site.t_peer,
                                                 CHANNEL)
            protocol = await over_socket(sock, factory)
        await protocol.ready
        return client

    async def throughput(self, variant: str, path: str) -> tuple[float, dict[str, float]]:
        """MiB/s, and CPU ms per MiB of each process (S: this one) during the transfer."""
        mib: int = self.args.mib
        sink = await self.wait(self.open_client(variant, path), f"{path}: opening a channel")
        pids = {"S": os.getpid(), **self.sites[variant].pids}
        before = {role: cpu_seconds(pid) for role, pid in pids.items()}
        mib_per_s = await self.wait(send_bulk(sink, mib), f"{path}: {mib} MiB one way")
        cpu = {role: (cpu_seconds(pid) - before[role]) * 1e3 / mib
               for role, pid in pids.items()}
        sink.transport.close()
        return mib_per_s, cpu

    async def round_trip(self, variant: str, path: str) -> float:
        echo = await self.wait(self.open_client(variant, path), f"{path}: opening a channel")
        rtt_us = await self.wait(ping_pong(echo, self.args.round_trips),
                                 f"{path}: {self.args.round_trips} round trips")
        echo.transport.close()
        return rtt_us


def spread(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


@dataclass
class Row:
    mbps: list[float]
    rtt: list[float]
    cpu: list[dict[str, float]]

    def median(self) -> tuple[float, float]:
        return statistics.median(self.mbps), statistics.median(self.rtt)


async def main(args: argparse.Namespace) -> None:
    bench = Bench(args)
    began = time.perf_counter()
    rows: dict[tuple[str, str], Row] = {}
    connects: dict[tuple[str, str], list[float]] = {}
    cases = [("tuned", "TCP")] + [(v, p) for v in bench.variants
                                  for p in ("libp2p", "libp2p relayed")]
    try:
        await bench.setup()
        setup_s = time.perf_counter() - began
        for rep in range(args.reps):
            for variant, path in cases:
                if path != "TCP":
                    connects.setdefault((variant, path), []).append(
                        await bench.new_source(variant, path, rep))
                mbps, cpu = await bench.throughput(variant, path)
                rtt = await bench.round_trip(variant, path)
                row = rows.setdefault((variant, path), Row([], [], []))
                row.mbps.append(mbps)
                row.rtt.append(rtt)
                row.cpu.append(cpu)
                await asyncio.sleep(0.05)  # let the closed channels' streams wind down
    finally:
        stopping = time.perf_counter()
        await bench.stop()
        stop_s = time.perf_counter() - stopping
    layout = ("three processes (S here; R and T each in its own, per setting)"
              if args.layout == "processes" else "one process, one trio thread")
    print(f"# relay benchmark: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {layout}, {args.mib} MiB one way, "
          f"{args.round_trips} round trips of 16 bytes, median of {args.reps} "
          f"interleaved reps")
    roles = ("S", "R", "T") if args.layout == "processes" else ("S",)
    cpu_head = "CPU ms/MiB " + (" ".join(roles) if len(roles) > 1 else "(all)")
    print(f"{'path':<28}{'MiB/s':>8}{'range':>13}{'RTT µs':>9}{'range':>12}  {cpu_head}")
    for (variant, path), row in rows.items():
        mbps, rtt = row.median()
        label = path if path == "TCP" else f"{path} ({LABEL[variant]})"
        cpu = " ".join(f"{statistics.median(c[r] for c in row.cpu):.1f}" for r in roles)
        print(f"{label:<28}{mbps:>8.1f}{spread(row.mbps, '.1f'):>13}{rtt:>9.0f}"
              f"{spread(row.rtt, '.0f'):>12}  {cpu}")

    def ratio(label: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        if a in rows and b in rows:
            (ta, ra), (tb, rb) = rows[a].median(), rows[b].median()
            print(f"ratio {label + ':':<36}throughput {ta / tb:.2f}x, "
                  f"round trip {ra / rb:.2f}x")

    ratio("relayed tuned/py-libp2p", ("tuned", "libp2p relayed"),
          ("baseline", "libp2p relayed"))
    ratio("direct libp2p tuned/py-libp2p", ("tuned", "libp2p"), ("baseline", "libp2p"))
    for variant in bench.variants:
        ratio(f"relayed/TCP ({LABEL[variant]})", (variant, "libp2p relayed"),
              ("tuned", "TCP"))
        ratio(f"relayed/libp2p ({LABEL[variant]})", (variant, "libp2p relayed"),
              (variant, "libp2p"))
    for (variant, path), dials in connects.items():
        what = "circuit dial S2 -> R -> T" if path != "libp2p" else "direct connect S1 -> T"
        print(f"{what} ({LABEL[variant]}): median {statistics.median(dials):.1f} ms "
              f"(range {spread(dials, '.1f')} ms, {len(dials)} dials)")
    print(f"setup {setup_s:.2f} s, total {time.perf_counter() - began:.1f} s, "
          f"stop {stop_s:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("processes", "one-process"),
                        default="processes")
    parser.add_argument("--mib", type=int, default=8, help="MiB per one-way transfer")
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-baseline", action="store_true",
                        help="measure only the tuned settings")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds any one step may take")
    parser.add_argument("--serve", choices=("relay", "target"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=tuple(SETTINGS), default="tuned",
                        help=argparse.SUPPRESS)
    parser.add_argument("--relay", default="", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if not 1 <= options.mib < 1000:  # R's default data limit is 1 GiB per circuit
        parser.error("--mib must be 1 to 999 (the relay cuts a circuit after 1 GiB)")
    if options.reps < 1 or options.round_trips < 1:
        parser.error("--reps and --round-trips must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(options) if options.serve else main(options))
