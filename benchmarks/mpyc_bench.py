"""MPyC demos with N parties on loopback: plain MPyC TCP vs MPyC --ssl vs mpcid channels.

    .venv/bin/python benchmarks/mpyc_bench.py --mpyc-demos PATH/TO/mpyc/demos [--runs 3]

Runs every (demo, transport) combination ``--runs`` times, interleaved (run 1 of every
combination, then run 2, ...), each party a separate process, and reports medians: wall time
of the slowest party, MPyC's own elapsed time (from start() to shutdown) with its range,
CPU seconds per party, bytes each party sent, and peak memory per party; ratios are against plain TCP.

MPyC's demos are not part of its PyPI package: pass a checkout's ``demos`` folder (tag
v0.11). It is copied to a temporary folder first. If ``data/cnn/W_fc1.npy`` is missing or
empty (git hosts that drop files of 4 MiB and more), a stand-in of the same shape and
scale is generated there, and the output says so: the computation and traffic are the same,
only the classification results differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpcid.identity.keystore import Keystore

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "party_launcher.py"
DEMOS = {"secretsanta": ["secretsanta.py", "8"], "np_cnnmnist": ["np_cnnmnist.py", "1", "17"]}
MODES = ("plain", "ssl", "mpcid")
_ELAPSED = re.compile(r"elapsed time: (\d+):(\d+):(\d+(?:\.\d+)?)")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def prepare_demos(source: Path, work: Path) -> tuple[Path, list[str]]:
    notes = []
    demos = work / "demos"
    shutil.copytree(source, demos)
    fc1 = demos / "data" / "cnn" / "W_fc1.npy"
    if not fc1.exists() or fc1.stat().st_size == 0:
        import numpy as np

        rng = np.random.default_rng(0)
        np.save(fc1, (rng.standard_normal((3136, 1024)) * 0.03).astype(np.float32))
        notes.append("data/cnn/W_fc1.npy was missing: using a same-shape (3136x1024 float32) "
                     "random stand-in; timings and traffic are representative, the predicted "
                     "labels are not")
    return demos, notes


def make_identities(work: Path, n: int) -> list[tuple[Path, str]]:
    out = []
    for i in range(n):
        home = work / f"home{i}"
        key = Keystore(home).create_identity(f"p{i}")
        out.append((home, key.did.did))
    return out


def run_once(mode: str, demo: list[str], demos: Path, work: Path,
             identities: list[tuple[Path, str]]) -> dict[str, float]:
    n = len(identities)
    ports = free_ports(n)
    program = demos / demo[0]
    procs = []
    reports = [work / f"report{i}.json" for i in range(n)]
    if mode == "mpcid":
        session = work / "session.json"
        session.write_text(json.dumps({
            "session": f"bench-{time.time_ns()}",
            "program_sha256": hashlib.sha256(program.read_bytes()).hexdigest(),
            "parties": [{"did": did, "host": "127.0.0.1", "port": ports[i]}
                        for i, (_, did) in enumerate(identities)]}))
    started = time.perf_counter()
    for i in range(n):
        if mode == "mpcid":
            home, _ = identities[i]
            args = ["mpcid", "run", "--home", str(home), "--session", str(session), "--as",
                    f"p{i}", "--", str(program), *demo[1:]]
        else:
            args = [mode, str(program), *demo[1:], "-I", str(i)]
            args += [x for p in ports for x in ("-P", f"127.0.0.1:{p}")]
            if mode == "ssl":
                args[0] = "ssl"
                args.append("--ssl")
        procs.append(subprocess.Popen([sys.executable, str(LAUNCHER), str(reports[i]), *args],
                                      cwd=demos, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=1800)[0] for p in procs]
    wall = time.perf_counter() - started
    for i, p in enumerate(procs):
        if p.returncode != 0:
            raise SystemExit(f"{mode} party {i} failed (exit {p.returncode}):\n"
                             f"{outputs[i][-3000:]}")
    measured = [json.loads(r.read_text()) for r in reports]
    elapsed = []
    for out in outputs:
        match = _ELAPSED.search(out)
        if match:
            h, m, s = match.groups()
            elapsed.append(int(h) * 3600 + int(m) * 60 + float(s))
    return {"wall": wall, "elapsed": max(elapsed) if elapsed else float("nan"),
            "bytes": statistics.mean(m["sent"] for m in measured),
            "cpu": statistics.mean(m["cpu"] for m in measured),
            "rss_mib": max(m["maxrss_kib"] for m in measured) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mpyc-demos", required=True, type=Path,
                        help="the demos folder of an MPyC checkout (v0.11)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--demos", default=",".join(DEMOS),
                        help=f"comma-separated subset of {', '.join(DEMOS)}")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if not (args.mpyc_demos / "secretsanta.py").is_file():
        raise SystemExit(f"error: {args.mpyc_demos} is not MPyC's demos folder "
                         "(no secretsanta.py)")
    chosen = [d for d in args.demos.split(",") if d]
    unknown = [d for d in chosen if d not in DEMOS]
    if unknown:
        raise SystemExit(f"error: unknown demo {unknown[0]!r}; choose from {', '.join(DEMOS)}")
    with tempfile.TemporaryDirectory(prefix="mpcid-bench-") as tmp:
        work = Path(tmp)
        demos, notes = prepare_demos(args.mpyc_demos, work)
        identities = make_identities(work, args.parties)
        results: dict[str, dict[str, list[dict[str, float]]]] = {
            d: {m: [] for m in MODES} for d in chosen}
        for run in range(args.runs):
            for demo in chosen:
                for mode in MODES:
                    result = run_once(mode, DEMOS[demo], demos, work, identities)
                    results[demo][mode].append(result)
                    print(f"run {run + 1}/{args.runs} {demo:<12} {mode:<6} "
                          f"wall {result['wall']:.2f} s, MPyC {result['elapsed']:.2f} s",
                          file=sys.stderr, flush=True)
    print(f"# MPyC demos, {args.parties} parties on loopback, {platform.machine()}, "
          f"Python {platform.python_version()}, median of {args.runs} interleaved runs")
    for note in notes:
        print(f"# note: {note}")
    header = (f"{'demo':<13}{'transport':<11}{'wall s':>8}{'MPyC s':>8}{'x plain':>9}"
              f"{'range s':>14}{'CPU s':>8}{'x plain':>9}{'MB/party':>10}{'peak MiB':>10}")
    print(header)
    for demo in chosen:
        base = statistics.median(r["elapsed"] for r in results[demo]["plain"])
        base_cpu = statistics.median(r["cpu"] for r in results[demo]["plain"])
        base_wall = statistics.median(r["wall"] for r in results[demo]["plain"])
        for mode in MODES:
            rows = results[demo][mode]
            elapsed = statistics.median(r["elapsed"] for r in rows)
            wall = statistics.median(r["wall"] for r in rows)
            cpu = statistics.median(r["cpu"] for r in rows)
            spread = f"{min(r['elapsed'] for r in rows):.2f}-{max(r['elapsed'] for r in rows):.2f}"
            print(f"{demo:<13}{mode:<11}{wall:>8.2f}{elapsed:>8.2f}{elapsed / base:>8.2f}x"
                  f"{spread:>14}{cpu:>8.2f}{cpu / base_cpu:>8.2f}x"
                  f"{statistics.median(r['bytes'] for r in rows) / 1e6:>10.2f}"
                  f"{statistics.median(r['rss_mib'] for r in rows):>10.1f}")
        print(f"{'':<13}{'':<11}(wall time ratio mpcid/plain "
              f"{statistics.median(r['wall'] for r in results[demo]['mpcid']) / base_wall:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
