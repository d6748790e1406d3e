"""MPyC demos with mpcid between public parties, behind port-preserving NATs, random NATs.

    sudo .venv/bin/python benchmarks/nat_bench.py --mpyc-demos PATH/TO/mpyc/demos [--runs 3]
        [--demos secretsanta,np_cnnmnist] [--parties 2] [--json FILE] [--keep]

Needs root (network namespaces, iptables NAT; see tests/broker/netns_topology.py). Three
setups, by default two parties (a = party 0, b = party 1), in the same namespace layout, so
that only the path between the parties differs:

* ``direct``: every party public, on the public bridge: they connect by direct TCP;
* ``punched``: every party behind its own port-preserving NAT (stateful, MASQUERADE):
  every pair gets a hole-punched TCP connection, coordinated over the bootstrap node;
* ``relayed``: every party behind a NAT with random port mapping (``--random-fully``):
  punching fails within its bound and every channel runs through a relay circuit on the
  bootstrap node.

With two parties MPyC's threshold is t = 0 (2t < n): a secret is held whole by each party,
multiplications need no messages and the demos send very little (hundreds of KB, not the
35 MB per party of CNN MNIST with three parties), so the two-party numbers measure
mostly how fast a session gets its channels. ``--parties 3`` (t = 1) measures the data
path as well.

Each topology is built once, with its own ``mpcid node`` (bootstrap and relay) in its
public namespace, and stays up for the whole benchmark. Every session runs as a user runs
one: fresh identities for every party (certified by one "Acme" issuer), ``mpcid invite``
by a with ``--require MembershipCredential@ACME --bootstrap NODE`` and the demo as the
program, then ``mpcid join TOKEN --program DEMO --progress json -- ARGS`` in every party's
namespace.
Sessions are interleaved: for each run, for each setup, for each demo, one session.

Per session: wall time from launching the ``mpcid join`` processes to the last exit;
start time from that launch to the ``started`` progress event of the last party (channel,
admission, MPyC connected); MPyC time from the last ``started`` to the last ``finished``
event; the bytes through the bootstrap node's TCP port (IP packets, both directions: DHT,
identify, reservations, punch coordination, and relayed traffic); the CPU seconds the
node (and relay) process used during the session; and the path each end reported in its
``connected`` event. A session whose path is not the setup's expected one
is reported on its own row, never mixed into the medians of the expected path. A session
that fails or times out is reported with its error output.

MPyC's demos are not part of its PyPI package: pass a checkout's ``demos`` folder (tag
v0.11); it is copied to a temporary folder first (see mpyc_bench.py's ``prepare_demos``
for the W_fc1.npy stand-in). np_cnnmnist needs numpy in the venv.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "broker"))
sys.path.insert(0, str(HERE))
from mpyc_bench import DEMOS, chosen_demos, prepare_demos  # noqa: E402
from netns_topology import (  # type: ignore[import-not-found]  # noqa: E402
    PRESERVE, RANDOM, RELAY, nat_topology, netns_available)

from mpcid.identity import credentials as vc  # noqa: E402
from mpcid.identity.keystore import Keystore  # noqa: E402

MPCID = str(Path(sys.executable).parent / "mpcid")
NODE_PORT = 4001
#: The parties, in MPyC index order (a = party 0); ``--parties`` sets how many.
NAMES = ["a", "b"]
#: setup -> (every party public?, NAT mode of every party's router, expected kind of path
#: on every end)
SETUPS: dict[str, tuple[bool, str, str]] = {
    "direct": (True, PRESERVE, "direct"),
    "punched": (False, PRESERVE, "punched"),
    "relayed": (False, RANDOM, "relayed"),
}
PATH_KINDS = (("direct TCP", "direct"), ("hole-punched TCP", "punched"),
              ("relay circuit", "relayed"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_BOOTSTRAP")}


def path_kind(path: str) -> str:
    for prefix, kind in PATH_KINDS:
        if path.startswith(prefix):
            return kind
    return path or "?"


def start_node(topo: Any, home: Path, log: Path, host: str = RELAY
               ) -> tuple[subprocess.Popen[str], str]:
    """`mpcid node` in the public namespace (or ``host``'s); its printed (dialable)
    multiaddr."""
    relay_ip = topo.ip(host)
    node = topo.popen(host, [MPCID, "node", "--home", str(home), "--listen",
                              f"/ip4/{relay_ip}/tcp/{NODE_PORT}"],
                      stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                      env=clean_env())
    stdout = node.stdout
    assert stdout is not None
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    addr = ready[0].strip() if ready else ""
    if not addr.startswith(f"/ip4/{relay_ip}/tcp/{NODE_PORT}/p2p/"):
        raise SystemExit(f"mpcid node did not start in {topo.ns(host)}: {addr!r}\n"
                         f"{log.read_text()[-3000:]}")
    # Keep draining its stdout so that it can never block on a full pipe.
    threading.Thread(target=stdout.read, daemon=True).start()
    return node, addr


class Sessions:
    """Fresh identities, credentials and an invitation for every session."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.count = 0
        self.org = Keystore(work / "acme").create_identity("acme")

    def invite(self, node: str, program: Path, demo_args: list[str]
               ) -> tuple[Path, list[list[str]]]:
        self.count += 1
        folder = self.work / f"session{self.count:03d}"
        folder.mkdir()
        now = dt.datetime.now(dt.timezone.utc)
        dids = []
        for name in NAMES:
            store = Keystore(folder / name)
            did = store.create_identity(name).did.did
            store.put_document("credentials", "membership", vc.sign_credential(
                vc.build_credential(issuer=self.org.did.did, subject=did,
                                    credential_type="MembershipCredential",
                                    claims={"organization": "Acme"}, valid_from=now),
                self.org, now=now))
            dids.append(did)
        invite = subprocess.run(
            [MPCID, "invite", "--home", str(folder / NAMES[0]), "--as", NAMES[0],
             *[arg for did in dids[1:] for arg in ("--did", did)], "--program", str(program),
             "--bootstrap", node, "--require", f"MembershipCredential@{self.org.did.did}",
             "--no-publish"],
            capture_output=True, text=True, env=clean_env(), timeout=60)
        if invite.returncode != 0:
            raise SystemExit(f"mpcid invite failed ({invite.returncode}):\n"
                             f"{invite.stdout[-2000:]}{invite.stderr[-2000:]}")
        token = invite.stdout.strip().splitlines()[-1]
        commands = [[MPCID, "join", token, "--home", str(folder / name), "--program",
                     str(program), "--connect-timeout", "60", "--progress", "json", "--",
                     *demo_args] for name in NAMES]
        return folder, commands


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (nan if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_session(topo: Any, node_pid: int, folder: Path, commands: list[list[str]],
                cwd: Path, timeout: float) -> dict[str, Any]:
    """Both joins in their namespaces; timings, paths and relay bytes of the session."""
    bytes_before = topo.tcp_bytes(RELAY, NODE_PORT)
    node_cpu = cpu_seconds(node_pid)
    outs = [(folder / f"{name}.out", folder / f"{name}.err") for name in NAMES]
    files = [(o.open("w"), e.open("w")) for o, e in outs]
    exits: dict[int, float] = {}
    load = os.getloadavg()[0]
    t0_unix = time.time()
    t0 = time.perf_counter()
    procs = [topo.popen(name, command, stdout=stdout, stderr=stderr, text=True,
                        env=clean_env(), cwd=cwd)
             for name, command, (stdout, stderr) in zip(NAMES, commands, files)]

    def wait(i: int, proc: subprocess.Popen[str]) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
            exits[i] = time.perf_counter()

    waiters = [threading.Thread(target=wait, args=(i, p), daemon=True)
               for i, p in enumerate(procs)]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    timed_out = [NAMES[i] for i in range(len(procs)) if i not in exits]
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    for handles in files:
        for handle in handles:
            handle.close()
    relay_bytes = topo.tcp_bytes(RELAY, NODE_PORT) - bytes_before
    result: dict[str, Any] = {"folder": str(folder), "relay_bytes": relay_bytes,
                              "node_cpu": cpu_seconds(node_pid) - node_cpu,
                              "load1": load, "error": None}
    started, finished, paths = [], [], {}
    problems = []
    for i, (proc, (out, err)) in enumerate(zip(procs, outs)):
        stderr = err.read_text(errors="replace")
        events = []
        for line in stderr.splitlines():
            if line.startswith('{"event"'):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        for event in events:
            if event["event"] == "started":
                started.append(event["t"])
            elif event["event"] == "finished":
                finished.append(event["t"])
                if event.get("outcome") != "completed":
                    problems.append(f"{NAMES[i]}: finished {event.get('outcome')}: "
                                    f"{event.get('error')}")
            elif event["event"] == "connected":
                paths[f"{i}->{event['party']}"] = event["path"]
        if NAMES[i] in timed_out:
            problems.append(f"{NAMES[i]}: no exit within {timeout:g} s (killed)")
        elif proc.returncode != 0:
            problems.append(f"{NAMES[i]}: exit {proc.returncode}")
        if proc.returncode != 0 or NAMES[i] in timed_out:
            problems.append(f"--- {NAMES[i]} stdout (tail) ---\n"
                            f"{out.read_text(errors='replace')[-1500:]}\n"
                            f"--- {NAMES[i]} stderr (tail) ---\n{stderr[-2500:]}")
    result["paths"] = paths
    kinds = sorted({path_kind(p) for p in paths.values()})
    ends = len(NAMES) * (len(NAMES) - 1)
    result["path"] = kinds[0] if len(kinds) == 1 and len(paths) == ends else \
        ("mixed: " + ", ".join(f"{k} {path_kind(v)}" for k, v in sorted(paths.items()))
         if paths else "none")
    if problems or len(started) < len(NAMES) or len(finished) < len(NAMES):
        result["error"] = "\n".join(problems) or "missing started/finished events"
        return result
    result["wall"] = max(exits.values()) - t0
    result["start"] = max(started) - t0_unix
    result["mpyc"] = max(finished) - max(started)
    return result


def machine_info() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("mpyc", "cryptography", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{package} {version(package)}")
    return [f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {', '.join(versions)}"]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, dict[str, list[dict[str, Any]]]], chosen: list[str],
           runs: int, notes: list[str], info: list[str], loads: tuple[float, float]) -> None:
    print(f"# MPyC demos, {len(NAMES)} parties, mpcid invite/join through emulated NATs; "
          f"median of {runs} interleaved runs")
    for line in info:
        print(f"# {line}")
    print(f"# load average (1 min) at start {loads[0]:.2f}, at end {loads[1]:.2f}")
    for note in notes:
        print(f"# note: {note}")
    header = (f"{'setup':<9}{'demo':<13}{'n':>3}{'wall s':>9}{'range s':>14}{'x direct':>10}"
              f"{'start s':>9}{'x direct':>10}{'MPyC s':>8}{'x direct':>10}"
              f"{'relay KB':>10}{'node CPU':>9}{'load':>6}  path")
    print(header)
    failures = []
    for demo in chosen:
        base: dict[str, float] = {}
        for setup, (_, _, expected) in SETUPS.items():
            rows = results[demo][setup]
            ok = [r for r in rows if r["error"] is None]
            failures += [(setup, demo, r) for r in rows if r["error"] is not None]
            groups: dict[str, list[dict[str, Any]]] = {}
            for r in ok:
                groups.setdefault(r["path"], []).append(r)
            order = sorted(groups, key=lambda p: (p != expected, p))
            if expected not in groups:
                print(f"{setup:<9}{demo:<13}{0:>3}  no session ended on the expected path "
                      f"({expected})")
            for path in order:
                group = groups[path]
                wall = median([r["wall"] for r in group])
                start = median([r["start"] for r in group])
                mpyc = median([r["mpyc"] for r in group])
                if setup == "direct" and path == expected:
                    base = {"wall": wall, "start": start, "mpyc": mpyc}

                def ratio(key: str, value: float) -> str:
                    return f"{value / base[key]:.2f}x" if key in base else "-"

                spread = (f"{min(r['wall'] for r in group):.2f}-"
                          f"{max(r['wall'] for r in group):.2f}")
                label = path if path == expected else f"UNEXPECTED {path}"
                print(f"{setup:<9}{demo:<13}{len(group):>3}{wall:>9.2f}{spread:>14}"
                      f"{ratio('wall', wall):>10}{start:>9.2f}{ratio('start', start):>10}"
                      f"{mpyc:>8.2f}{ratio('mpyc', mpyc):>10}"
                      f"{median([r['relay_bytes'] for r in group]) / 1e3:>10.1f}"
                      f"{median([r['node_cpu'] for r in group]):>9.2f}"
                      f"{median([r['load1'] for r in group]):>6.2f}  {label}")
            failed = len(rows) - len(ok)
            if failed:
                print(f"{setup:<9}{demo:<13}{failed:>3}  FAILED (see below)")
    examples: dict[str, dict[str, str]] = {}
    for demo in chosen:
        for setup in SETUPS:
            for r in results[demo][setup]:
                if r["error"] is None and setup not in examples:
                    examples[setup] = r["paths"]
    print("# paths reported by each end (one session per setup):")
    for setup, paths in examples.items():
        print(f"#   {setup}: " + "; ".join(f"{k}: {v}" for k, v in sorted(paths.items())))
    if "punched" in SETUPS:
        verdicts = []
        for demo in chosen:
            def med(setup: str) -> float:
                return median([r["wall"] for r in results[demo][setup]
                               if r["error"] is None and r["path"] == SETUPS[setup][2]])
            value = med("punched") / med("direct")
            verdicts.append(f"{demo} {value:.3f}x ({'met' if value <= 1.05 else 'missed'})")
        print("# target punched/direct wall <= 1.05x: " + ", ".join(verdicts))
    for setup, demo, r in failures:
        print(f"\n# FAILED {setup} {demo} (session folder {r['folder']}, kept with "
              f"--keep):\n{r['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mpyc-demos", required=True, type=Path,
                        help="the demos folder of an MPyC checkout (v0.11)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--demos", default=",".join(DEMOS),
                        help=f"comma-separated subset of {', '.join(DEMOS)}")
    parser.add_argument("--setups", default=",".join(SETUPS),
                        help=f"comma-separated subset of {', '.join(SETUPS)}")
    parser.add_argument("--parties", type=int, default=2,
                        help="parties per session (2: MPyC threshold t=0; 3: t=1)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one session may take before its parties are killed")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (session logs) and print where it is")
    args = parser.parse_args()
    chosen = chosen_demos(args.mpyc_demos, args.demos)
    setups = [s for s in args.setups.split(",") if s]
    if [s for s in setups if s not in SETUPS] or "direct" not in setups:
        raise SystemExit(f"error: setups must be among {', '.join(SETUPS)} and include direct")
    for name in [s for s in SETUPS if s not in setups]:
        del SETUPS[name]
    if not 2 <= args.parties <= 26:
        raise SystemExit("error: --parties must be 2 to 26")
    NAMES[:] = [chr(ord("a") + i) for i in range(args.parties)]
    if "np_cnnmnist" in chosen and importlib.util.find_spec("numpy") is None:
        raise SystemExit("error: np_cnnmnist needs numpy: .venv/bin/pip install numpy")
    reason = netns_available()
    if reason:
        raise SystemExit(f"error: {reason}")
    info = machine_info()
    load_start = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="mpcid-natbench-")
    work = Path(tmp)
    try:
        demos, notes = prepare_demos(args.mpyc_demos, work)
        sessions = Sessions(work)
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            d: {s: [] for s in SETUPS} for d in chosen}
        with contextlib.ExitStack() as stack:
            topos: dict[str, tuple[Any, str, int]] = {}
            for k, (setup, (public, mode, _)) in enumerate(SETUPS.items()):
                topo = stack.enter_context(nat_topology(
                    f"nb{setup[0]}", NAMES, public=NAMES if public else [],
                    nat_modes={} if public else {name: mode for name in NAMES},
                    subnet=201 + k))
                proc, node = start_node(topo, work / f"node-{setup}",
                                        work / f"node-{setup}.log")
                topo.count_tcp(RELAY, NODE_PORT)
                topos[setup] = (topo, node, proc.pid)
            began = time.perf_counter()
            node_cpu_start = {s: cpu_seconds(pid) for s, (_, _, pid) in topos.items()}
            for run in range(args.runs):
                for setup, (topo, node, pid) in topos.items():
                    for demo in chosen:
                        spec = DEMOS[demo]
                        folder, commands = sessions.invite(node, demos / spec[0], spec[1:])
                        r = run_session(topo, pid, folder, commands, demos, args.timeout)
                        results[demo][setup].append(r)
                        if r["error"] is None:
                            line = (f"wall {r['wall']:.2f} s, start {r['start']:.2f} s, "
                                    f"MPyC {r['mpyc']:.2f} s, relay "
                                    f"{r['relay_bytes'] / 1e3:.1f} KB, path {r['path']}")
                        else:
                            line = "FAILED: " + r["error"].splitlines()[0]
                        print(f"run {run + 1}/{args.runs} {setup:<8} {demo:<12} {line}",
                              file=sys.stderr, flush=True)
            # CPU the nodes used outside their own sessions (idle, while other setups ran).
            total = time.perf_counter() - began
            for setup, (_, _, pid) in topos.items():
                idle = cpu_seconds(pid) - node_cpu_start[setup] - sum(
                    r["node_cpu"] for d in chosen for r in results[d][setup])
                notes.append(f"the {setup} node used {idle:.1f} CPU s outside its own "
                             f"sessions (over the {total:.0f} s of the benchmark)")
        report(results, chosen, args.runs, notes, info, (load_start, os.getloadavg()[0]))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        if args.keep:
            print(f"# work folder kept: {work}", file=sys.stderr)
        else:
            import shutil
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
