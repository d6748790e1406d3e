"""MPyC demos across emulated regions: plain TCP, TLS, WireGuard and mpcid, side by side.

    sudo .venv/bin/python benchmarks/wan_bench.py --mpyc-demos PATH/TO/mpyc/demos \\
        --parties 3,5,10 --rtt-ms 2,20,90 --demo secretsanta --size low \\
        --transports plain,mpcid --runs 3 --json OUT.json
    (--scenario one-region,two-near,two-far,multi instead of --rtt-ms)

Every party runs in its own network namespace, and every packet between two hosts (TCP
handshakes, DHT, relay circuits, MPyC's data) passes one user-space delay line that holds
it for the one-way delay of that pair (``wan_topology.py``, ``delayline.py``): ``--rtt-ms``
gives every pair the same round trip; ``--scenario`` spreads the parties over regions
whose round trips come from a published table. The bootstrap/relay node that mpcid uses
lives in a namespace of its own, in the first region.

Transports (``--transports``, interleaved: for each run, every transport in turn):

* ``plain``: MPyC as its README runs it, ``-P host:port`` per party, TCP in the clear;
* ``ssl``: the same with ``--ssl`` (MPyC's demo certificates in the demos' ``.config``);
* ``wireguard``: a ``wireguard-go`` tunnel per party (keys and peers configured before
  the runs, as a manual setup is; the tunnels stay up), plain MPyC over the tunnel
  addresses; the party's CPU includes its ``wireguard-go`` process's share of the run;
* ``mpcid``: ``mpcid join TOKEN`` in every party, public addresses (direct TCP), each
  join starting its own libp2p host (a cold start);
* ``mpcid-agent``: the same with every party's ``mpcid online`` running beforehand (its
  own identities), which the joins use (README: "Start ``mpcid online`` once");
* ``mpcid-relay``: every party behind its own NAT with random port mapping
  (``--random-fully``): every channel goes through a relay circuit on the node;
* ``mpcid-punched``: every party behind a port-preserving NAT: hole-punched TCP.

Each mpcid session is what a user types: one invitation by party 0 (``mpcid invite
--did ... --require MembershipCredential@ORG --bootstrap NODE``), then ``mpcid join
TOKEN --program DEMO -- ARGS`` in every namespace; each party holds a credential of one
organisation. Identities are made once and reused (as a user's are).

Per run: ``wall_s`` from launching the parties to the last exit; ``start_s`` from that
launch until MPyC is connected at every party (MPyC's "All N parties connected" log line,
mpcid's ``started`` progress event); ``bytes_per_party`` the bytes the party's namespace
sent on its links (IP packets: TCP/IP headers, TLS, WireGuard and Noise overhead, DHT and
relay traffic included); ``cpu_s_per_party`` user+system CPU of the party's process
(plus its wireguard-go's). Results are appended to ``--json`` after every run, so an
interrupted run keeps what it measured. ``benchmarks/wan_plots.py`` draws them.

Needs root, iproute2, iptables, and for ``wireguard`` the Debian packages
``wireguard-go`` and ``wireguard-tools``. Every namespace and process is removed at the
end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import nat_bench  # noqa: E402
from mpyc_bench import prepare_demos  # noqa: E402
from wan_topology import SCENARIOS, TopologyError, wan_topology  # noqa: E402

from mpcid.identity import credentials as vc  # noqa: E402
from mpcid.identity.keystore import Keystore  # noqa: E402

MPCID = str(Path(sys.executable).parent / "mpcid")
TRANSPORTS = ("plain", "ssl", "wireguard", "mpcid", "mpcid-agent", "mpcid-relay",
              "mpcid-punched")
#: Which namespace layout a transport needs: public hosts, or parties behind NATs.
LAYOUT = {"plain": "public", "ssl": "public", "wireguard": "public", "mpcid": "public",
          "mpcid-agent": "public", "mpcid-relay": "random", "mpcid-punched": "preserve"}
EXPECTED_PATH = {"mpcid": "direct TCP", "mpcid-agent": "direct TCP",
                 "mpcid-relay": "relay circuit",
                 "mpcid-punched": "hole-punched TCP"}
DEMOS = {"secretsanta": "secretsanta.py", "np_cnnmnist": "np_cnnmnist.py"}
#: Input sizes: Secret Santa's N (each of its 7 derangements has N elements); CNN MNIST's
#: batch of test images (SecInt(37)) at a fixed offset, so that every run computes alike.
SIZES = {"secretsanta": {"low": ["4"], "medium": ["8"], "high": ["16"]},
         "np_cnnmnist": {"low": ["1", "17"], "medium": ["2", "17"], "high": ["4", "17"]}}
MPYC_PORT = 11365
WG_PORT = 51820
NODE_PORT = 4001
NODE = "node"  # the host of the `mpcid node` (bootstrap and relay)
KEYS = ("demo", "size", "parties", "rtt_ms", "measured_rtt_ms", "transport", "run", "ok",
        "wall_s", "start_s", "bytes_per_party", "cpu_s_per_party")
_CONNECTED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) All \d+ parties connected")


class BenchError(Exception):
    """A one-line reason the benchmark cannot run as asked."""


def party(i: int) -> str:
    return f"p{i}"


def clean_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_BOOTSTRAP",
                        "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")  # as an installed package has
    return env


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sent_bytes(ns: str) -> int:
    """Bytes sent on the namespace's links (not loopback, not a WireGuard interface,
    whose packets leave again, encrypted, on a link)."""
    out = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    total = 0
    for link in json.loads(out):
        if link.get("ifname") == "lo" or link.get("ifname", "").startswith("wg"):
            continue
        total += int(link.get("stats64", link.get("stats", {})).get("tx", {}).get("bytes", 0))
    return total


# --- one network per (delay setting, layout) ------------------------------------------


@dataclass
class Net:
    """A built topology with what the transports need in it."""

    topo: Any
    layout: str
    node_addr: str = ""
    wg_ready: bool = False
    wg_procs: dict[str, int] = field(default_factory=dict)
    """wireguard-go's pid per party."""


def start_node(net: Net, work: Path) -> None:
    """`mpcid node` in its own namespace, as nat_bench.py starts it."""
    _, net.node_addr = nat_bench.start_node(net.topo, work / f"node-{net.layout}",
                                            work / f"node-{net.layout}.log", NODE)


def start_agents(net: Net, idents: Identities, n: int, work: Path,
                 env: dict[str, str]) -> None:
    """Every party's ``mpcid online`` (local agent), until each says it is ready."""
    ready: list[threading.Event] = []
    for i in range(n):
        name = party(i)
        proc = net.topo.popen(name, [MPCID, "online", "--home", str(idents.homes[i]),
                                     "--as", name, "--bootstrap", net.node_addr, "--listen",
                                     f"/ip4/{net.topo.ip(name)}/tcp/0"],
                              stdout=subprocess.PIPE, text=True, env=env,
                              stderr=(work / f"online-{name}.err").open("w"))
        event = threading.Event()

        def drain(out: Any = proc.stdout, event: threading.Event = event) -> None:
            for line in out:  # read to the end: never a full pipe
                if line.startswith("agent "):
                    event.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.append(event)
    until = time.monotonic() + 60
    for i, event in enumerate(ready):
        if not event.wait(max(0.0, until - time.monotonic())):
            raise BenchError(f"mpcid online of {party(i)} was not ready within 60 s (see "
                             f"{work / f'online-{party(i)}.err'})")


def start_wireguard(net: Net, n: int, work: Path) -> None:
    """One wireguard-go interface per party, 10.77.0.(i+1)/24, every other party a peer
    at its namespace address: what a manual WireGuard setup configures once."""
    for tool in ("wireguard-go", "wg"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is missing: apt-get install wireguard-go "
                             "wireguard-tools (or leave out the wireguard transport)")
    keys = []
    tag = os.urandom(2).hex()
    for i in range(n):
        private = subprocess.run(["wg", "genkey"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True,
                                text=True, check=True).stdout.strip()
        key_file = work / f"wg{i}.key"
        key_file.write_text(private + "\n")
        key_file.chmod(0o600)
        keys.append((key_file, public))
    for i in range(n):
        # One interface name per party and benchmark: wireguard-go's control socket is
        # /var/run/wireguard/NAME.sock, shared by every namespace.
        name, dev = party(i), f"wg{tag}p{i}"
        env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
        proc = net.topo.popen(name, ["wireguard-go", "-f", dev], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
        net.wg_procs[name] = proc.pid
        deadline = time.monotonic() + 10
        while net.topo.run(name, ["ip", "link", "show", dev], check=False).returncode:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise BenchError(f"wireguard-go did not create {dev} in {net.topo.ns(name)}")
            time.sleep(0.05)
        peers = []
        for j in range(n):
            if j != i:
                peers += ["peer", keys[j][1], "allowed-ips", f"10.77.0.{j + 1}/32",
                          "endpoint", f"{net.topo.ip(party(j))}:{WG_PORT}"]
        net.topo.run(name, ["wg", "set", dev, "private-key", str(keys[i][0]),
                            "listen-port", str(WG_PORT), *peers])
        net.topo.run(name, ["ip", "addr", "add", f"10.77.0.{i + 1}/24", "dev", dev])
        net.topo.run(name, ["ip", "link", "set", dev, "up"])
    net.wg_ready = True


# --- identities, credentials, invitations -------------------------------------------------


class Identities:
    """One organisation, and a party identity with its membership credential each."""

    def __init__(self, work: Path, n: int) -> None:
        work.mkdir(parents=True)
        self.work = work
        self.org = Keystore(work / "org").create_identity("org")
        now = dt.datetime.now(dt.timezone.utc)
        self.homes: list[Path] = []
        self.dids: list[str] = []
        for i in range(n):
            home = work / f"home{i}"
            store = Keystore(home)
            did = store.create_identity(party(i)).did.did
            store.put_document("credentials", "membership", vc.sign_credential(
                vc.build_credential(issuer=self.org.did.did, subject=did,
                                    credential_type="MembershipCredential",
                                    claims={"organization": "Org"}, valid_from=now),
                self.org, now=now))
            self.homes.append(home)
            self.dids.append(did)

    def invite(self, n: int, node: str, program: Path, env: dict[str, str]) -> str:
        invite = subprocess.run(
            [MPCID, "invite", "--home", str(self.homes[0]), "--as", party(0),
             *[arg for did in self.dids[1:n] for arg in ("--did", did)],
             "--program", str(program), "--bootstrap", node,
             "--require", f"MembershipCredential@{self.org.did.did}", "--no-publish"],
            capture_output=True, text=True, env=env, timeout=60)
        if invite.returncode != 0:
            raise BenchError("mpcid invite failed: " + (invite.stderr.strip().splitlines()
                                                         or ["?"])[-1])
        return invite.stdout.strip().splitlines()[-1]


def add_ssl_certificates(demos: Path, n: int) -> list[str]:
    """MPyC's demos ship certificates for parties 0-4; more are signed with its (public)
    CA key, as its own generate-certificates.py does."""
    config = demos / ".config"
    made = []
    for i in range(n):
        crt, key = config / f"party_{i}.crt", config / f"party_{i}.key"
        if crt.exists() and key.exists():
            continue
        csr = config / f"party_{i}.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(key), "-subj", f"/CN=MPyC party {i}", "-out", str(csr)],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA",
                        str(config / "mpyc_ca.crt"), "-CAkey", str(config / "mpyc_ca.key"),
                        "-CAcreateserial", "-days", "30", "-sha256", "-out", str(crt)],
                       check=True, capture_output=True, timeout=60)
        made.append(str(i))
    return [f"--ssl certificates for parties {', '.join(made)} signed with the demos' CA "
            "key"] if made else []


# --- one session ----------------------------------------------------------------------


def commands(net: Net, transport: str, n: int, program: Path, args: list[str],
             idents: dict[str, Identities], env: dict[str, str], run: int,
             folder: Path) -> list[list[str]]:
    """Every party's command line, run through mpyc_bench.py's party launcher so that
    run r of every transport draws the same randomness (``--same-randomness`` there:
    Secret Santa's number of rounds is random, so otherwise the transports would not do
    the same work; such parties are for benchmarking only)."""
    if transport.startswith("mpcid"):
        ids = idents["agent" if transport == "mpcid-agent" else "cold"]
        token = ids.invite(n, net.node_addr, program, env)
        argvs = [["mpcid", "join", token, "--home", str(ids.homes[i]), "--program",
                  str(program), "--progress", "json", "--", *args] for i in range(n)]
    else:
        if transport == "wireguard":
            hosts = [f"10.77.0.{i + 1}" for i in range(n)]
        else:
            hosts = [net.topo.ip(party(i)) for i in range(n)]
        peers = [x for host in hosts for x in ("-P", f"{host}:{MPYC_PORT}")]
        extra = ["--ssl"] if transport == "ssl" else []
        argvs = [["plain", str(program), *args, "-I", str(i), *peers, *extra]
                 for i in range(n)]
    return [[sys.executable, str(HERE / "mpyc_bench.py"), "--party", f"{run}-{i}",
             str(folder / f"{party(i)}.report"), *argv] for i, argv in enumerate(argvs)]


def events(stderr: str) -> list[dict[str, Any]]:
    """mpcid's ``--progress json`` events (one JSON object per line on stderr)."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "event" in event:
                    found.append(event)
    return found


def started_at(transport: str, stdout: str, stderr: str) -> float | None:
    """When MPyC was connected at this party (Unix time), from its own output."""
    if transport.startswith("mpcid"):
        return next((float(e["t"]) for e in events(stderr) if e["event"] == "started"), None)
    for line in stdout.splitlines():
        match = _CONNECTED.match(line)
        if match:
            stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()  # MPyC logs local time
    return None


def paths_of(stderr: str) -> set[str]:
    return {str(e.get("path")) for e in events(stderr) if e["event"] == "connected"}


def run_session(net: Net, transport: str, n: int, program: Path, args: list[str],
                idents: dict[str, Identities], env: dict[str, str], folder: Path,
                timeout: float, run: int) -> dict[str, Any]:
    """Launch every party in its namespace, wait for the last exit (or the timeout)."""
    argvs = commands(net, transport, n, program, args, idents, env, run, folder)
    names = [party(i) for i in range(n)]
    sent = {name: sent_bytes(net.topo.ns(name)) for name in names}
    wg_cpu = {name: cpu_of(pid) for name, pid in net.wg_procs.items()}
    files = [((folder / f"{nm}.out").open("w"), (folder / f"{nm}.err").open("w"))
             for nm in names]
    usage: dict[int, float] = {}
    codes: dict[int, int] = {}
    launched = time.time()
    t0 = time.perf_counter()
    procs = [net.topo.popen(nm, argv, stdout=out, stderr=err, env=env, cwd=program.parent)
             for nm, argv, (out, err) in zip(names, argvs, files)]
    exits: dict[int, float] = {}

    def reap(i: int, proc: subprocess.Popen[Any]) -> None:
        # wait4: the party's own CPU (ip netns exec replaces itself with the command).
        _, status, rusage = os.wait4(proc.pid, 0)
        exits[i] = time.perf_counter()
        codes[i] = os.waitstatus_to_exitcode(status)
        proc.returncode = codes[i]
        usage[i] = rusage.ru_utime + rusage.ru_stime

    reapers = [threading.Thread(target=reap, args=(i, p), daemon=True)
               for i, p in enumerate(procs)]
    for reaper in reapers:
        reaper.start()
    deadline = t0 + timeout
    for reaper in reapers:
        reaper.join(max(0.0, deadline - time.perf_counter()))
    late = [names[i] for i in range(n) if i not in exits]
    for i, proc in enumerate(procs):
        if i not in exits:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
    for reaper in reapers:
        reaper.join(10)
    for out, err in files:
        out.close()
        err.close()
    return outcome(net, transport, names, folder, launched, t0, exits, codes, usage, sent,
                   wg_cpu, late)


def outcome(net: Net, transport: str, names: list[str], folder: Path, launched: float,
            t0: float, exits: dict[int, float], codes: dict[int, int],
            usage: dict[int, float], sent: dict[str, int], wg_cpu: dict[str, float],
            late: list[str]) -> dict[str, Any]:
    problems: list[str] = [f"{nm}: no exit within the timeout (killed)" for nm in late]
    starts: list[float] = []
    paths: set[str] = set()
    for i, nm in enumerate(names):
        stdout = (folder / f"{nm}.out").read_text(errors="replace")
        stderr = (folder / f"{nm}.err").read_text(errors="replace")
        if codes.get(i, 0) != 0:
            last = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["?"])[-1]
            problems.append(f"{nm}: exit {codes[i]}: {last[:300]}")
        start = started_at(transport, stdout, stderr)
        if start is not None:
            starts.append(start)
        paths |= paths_of(stderr)
    expected = EXPECTED_PATH.get(transport)
    if expected and paths and not all(p.startswith(expected) for p in paths):
        problems.append(f"paths {sorted(paths)}, expected {expected}")
    if not problems and len(starts) < len(names):
        problems.append("a party did not report MPyC connected")
    wg = {nm: cpu_of(pid) - wg_cpu.get(nm, 0.0) for nm, pid in net.wg_procs.items()}
    cpu = [usage.get(i, float("nan")) + (wg.get(nm, 0.0) if transport == "wireguard" else 0)
           for i, nm in enumerate(names)]
    return {"ok": not problems, "error": "; ".join(problems) or None,
            "wall_s": round(max(exits.values()) - t0, 3) if not late and exits else None,
            "start_s": round(max(starts) - launched, 3) if len(starts) == len(names) else None,
            "bytes_per_party": round(statistics.mean(
                sent_bytes(net.topo.ns(nm)) - sent[nm] for nm in names)),
            "cpu_s_per_party": round(statistics.mean(cpu), 3),
            "paths": sorted(paths)}


# --- the benchmark ----------------------------------------------------------------------


@dataclass
class Plan:
    demos: Path
    parties: list[int]
    settings: list[tuple[str, Any]]
    """("rtt", ms) or ("scenario", name), one network each."""
    demos_chosen: list[str]
    sizes: list[str]
    transports: list[str]
    runs: int
    out: Path | None
    timeout: float
    keep: bool = False


def parse_args(argv: list[str] | None = None) -> Plan:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpyc-demos", required=True, type=Path,
                    help="the demos folder of an MPyC checkout (tag v0.11)")
    ap.add_argument("--parties", default="3", help="comma-separated, 2 to 10 (default 3)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--rtt-ms", help="comma-separated round trips, every pair alike")
    group.add_argument("--scenario", help=f"comma-separated: {', '.join(SCENARIOS)}")
    ap.add_argument("--demo", default="secretsanta", help=f"comma-separated: {', '.join(DEMOS)}")
    ap.add_argument("--size", default="low", help="comma-separated: low, medium, high")
    ap.add_argument("--transports", default="plain,mpcid",
                    help=f"comma-separated: {', '.join(TRANSPORTS)}")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the runs here (a JSON list)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per session")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work folder (every party's output, per run)")
    args = ap.parse_args(argv)

    def items(text: str, allowed: Any, what: str) -> list[str]:
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in chosen if x not in allowed]
        if bad or not chosen:
            ap.error(f"unknown {what} {', '.join(bad) or '(none)'}: choose from "
                     f"{', '.join(allowed)}")
        return chosen

    def numbers(text: str, what: str, low: float, high: float) -> list[float]:
        try:
            values = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            ap.error(f"--{what} takes comma-separated numbers, not {text!r}")
        if not values or any(not low <= v <= high for v in values):
            ap.error(f"--{what} values must be between {low:g} and {high:g}")
        return values

    parties = [int(p) for p in numbers(args.parties, "parties", 2, 10)]
    if args.scenario:
        settings: list[tuple[str, Any]] = [("scenario", s) for s in
                                           items(args.scenario, SCENARIOS, "scenario")]
    else:
        settings = [("rtt", v) for v in numbers(args.rtt_ms or "20", "rtt-ms", 0, 1000)]
    demos = args.mpyc_demos
    if not (demos / "secretsanta.py").is_file():
        ap.error(f"{demos} is not MPyC's demos folder (no secretsanta.py in it)")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces): run it with sudo")
    return Plan(demos, parties, settings, items(args.demo, DEMOS, "demo"),
                items(args.size, ("low", "medium", "high"), "size"),
                items(args.transports, TRANSPORTS, "transport"), args.runs, args.json,
                args.timeout, args.keep)


def build(stack: contextlib.ExitStack, setting: tuple[str, Any], layout: str, n: int,
          work: Path, need_node: bool) -> Net:
    hosts = [party(i) for i in range(n)] + [NODE]
    nat = {} if layout == "public" else {party(i): layout for i in range(n)}
    delay: dict[str, Any] = {"rtt_ms": setting[1]} if setting[0] == "rtt" else \
        {"scenario": setting[1], "regions": {NODE: 0}}  # the node in the first region
    topo = stack.enter_context(wan_topology(prefix="wan", hosts=hosts, nat=nat, **delay))
    net = Net(topo, layout)
    if need_node:
        start_node(net, work)
    return net


def measured_rtt(net: Net, n: int) -> tuple[float, float]:
    """(requested, measured) median round trip in ms over the pairs of the first n
    parties (to the node, for parties behind NATs), measured with pings."""
    names = [party(i) for i in range(n)]
    if net.layout == "public":
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    else:
        pairs = [(a, NODE) for a in names]
    found = net.topo.measure(pairs, count=5).pairs
    return (statistics.median(found[p].requested_ms for p in pairs),
            statistics.median(found[p].ping_ms for p in pairs))


def benchmark(plan: Plan, work: Path, rows: list[dict[str, Any]]) -> list[str]:
    demos, notes = prepare_demos(plan.demos, work)
    env = clean_env(work)
    top = max(plan.parties)
    if "ssl" in plan.transports:
        notes += add_ssl_certificates(demos, top)
    idents = {"cold": Identities(work / "ids", top)}
    if "mpcid-agent" in plan.transports:
        idents["agent"] = Identities(work / "ids-agent", top)
    for setting in plan.settings:
        with contextlib.ExitStack() as stack:
            nets = {layout: build(stack, setting, layout, top, work,
                                  any(t.startswith("mpcid") and LAYOUT[t] == layout
                                      for t in plan.transports))
                    for layout in dict.fromkeys(LAYOUT[t] for t in plan.transports)}
            if "wireguard" in plan.transports:
                start_wireguard(nets["public"], top, work)
            if "mpcid-agent" in plan.transports:
                start_agents(nets["public"], idents["agent"], top, work, env)
            rtts = {n: measured_rtt(nets["public"] if "public" in nets else
                                    next(iter(nets.values())), n) for n in plan.parties}
            programs = {demo: demos / DEMOS[demo] for demo in plan.demos_chosen}
            for transport in plan.transports:
                # Untimed, the smallest session: fills the bytecode cache and starts each
                # network's node, tunnels and agents working.
                folder = Path(tempfile.mkdtemp(prefix="warm-", dir=work))
                run_session(nets[LAYOUT[transport]], transport, min(plan.parties),
                            demos / DEMOS["secretsanta"], SIZES["secretsanta"]["low"],
                            idents, env, folder, plan.timeout, 0)
            for run in range(1, plan.runs + 1):
                for n in plan.parties:
                    for demo in plan.demos_chosen:
                        for size in plan.sizes:
                            for transport in plan.transports:
                                row = one_row(plan, nets, setting, rtts[n], transport, n,
                                              demo, size, run, programs[demo], idents, env, work)
                                rows.append(row)
                                if plan.out is not None:
                                    write_json(plan.out, rows)
    return notes


def one_row(plan: Plan, nets: dict[str, Net], setting: tuple[str, Any],
            rtt: tuple[float, float], transport: str, n: int, demo: str, size: str,
            run: int, program: Path, idents: dict[str, Identities], env: dict[str, str],
            work: Path) -> dict[str, Any]:
    label = setting[1] if setting[0] == "scenario" else f"{setting[1]:g}ms"
    folder = work / "runs" / f"{label}-{demo}-{size}-{n}p-{transport}-r{run}"
    folder.mkdir(parents=True)
    result = run_session(nets[LAYOUT[transport]], transport, n, program,
                         SIZES[demo][size], idents, env, folder, plan.timeout, run)
    row = {"demo": demo, "size": size, "parties": n, "rtt_ms": round(rtt[0], 1),
           "measured_rtt_ms": round(rtt[1], 2), "transport": transport, "run": run,
           **{k: result[k] for k in ("ok", "wall_s", "start_s", "bytes_per_party",
                                     "cpu_s_per_party")}}
    if setting[0] == "scenario":
        row["scenario"] = setting[1]
    if result["error"]:
        row["error"] = result["error"]
    if result["paths"]:
        row["paths"] = result["paths"]
    state = f"wall {row['wall_s']} s, start {row['start_s']} s" if row["ok"] else \
        f"FAILED: {row.get('error', '')[:300]}"
    print(f"{label} {demo} {size} {n} parties {transport} run {run}: {state}", flush=True)
    return row


def write_json(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    plan = parse_args()
    # kill (SIGTERM) cleans up as Ctrl-C does; so does Ctrl-C in a shell that started
    # this in the background (which ignores SIGINT for its children).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="mpcid-wan-"))
    notes: list[str] = []
    code = 0
    try:
        notes = benchmark(plan, work, rows)
    except KeyboardInterrupt:
        print("wan_bench: interrupted; namespaces and processes removed", file=sys.stderr)
        code = 130
    except (BenchError, TopologyError) as exc:
        print(f"wan_bench: {exc}", file=sys.stderr)
        code = 2
    finally:
        if plan.out is not None:
            write_json(plan.out, rows)
        if not plan.keep:
            shutil.rmtree(work, ignore_errors=True)
    for note in notes:
        print(f"# note: {note}")
    failed = sum(not r["ok"] for r in rows)
    print(f"# {len(rows)} runs, {failed} failed"
          + (f"; work folder kept: {work}" if plan.keep else "")
          + (f"; JSON in {plan.out}" if plan.out else ""))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
