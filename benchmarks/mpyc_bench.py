"""MPyC demos with N parties on loopback: plain MPyC TCP vs MPyC --ssl vs mpcid channels.

Transports: ``plain``, ``ssl``, ``mpcid`` (``mpcid run``, each party in a process of its
own) and ``mpcid-launcher`` (``mpcid run`` typed with a launcher serving the party's home,
as ``mpcid online`` keeps one: the party is a fork of it).

    .venv/bin/python benchmarks/mpyc_bench.py --mpyc-demos PATH/TO/mpyc/demos [--runs 3]
                                              [--same-randomness]

Runs every (demo, transport) combination ``--runs`` times, interleaved (run 1 of every
combination, then run 2, ...), each party a separate process, and reports medians: wall time
of the slowest party, MPyC's own elapsed time (from start() to shutdown) with its range,
CPU seconds per party (all of it, and from the party's first MPyC message on: the
computation without start-up), bytes each party sent, and peak memory per party; ratios
are against plain TCP.

Every party runs with Python's bytecode cache (in the benchmark's temporary folder, filled
by one untimed run of each transport first), as an installed package would: MPyC's own
modules are byte-compiled in site-packages, while an editable mpcid under
``PYTHONDONTWRITEBYTECODE`` would otherwise recompile its modules in every party process
(~0.3 CPU-s each). ``--cold-start`` keeps the environment as it is instead.

``--same-randomness`` makes the runs comparable one by one: run ``r`` of every transport
draws the same randomness (MPyC's ``secrets`` calls are fed from a generator seeded with
``r`` and the party index), so it computes the same thing and sends the same messages.
Secret Santa otherwise redraws a random number of times (its work varies by ±30% between
runs). The table then also gives the median of the per-run ratios ("paired"). For
benchmarking only: such parties are not secure.

MPyC's demos are not part of its PyPI package: pass a checkout's ``demos`` folder (tag
v0.11). It is copied to a temporary folder first. If ``data/cnn/W_fc1.npy`` is missing or
empty (git hosts that drop files of 4 MiB and more), a stand-in of the same shape and
scale is generated there, and the output says so: the computation and traffic are the same,
only the classification results differ.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import platform
import resource
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "party_launcher.py"
DEMOS = {"secretsanta": ["secretsanta.py", "8"], "np_cnnmnist": ["np_cnnmnist.py", "1", "17"]}
MODES = ("plain", "ssl", "mpcid", "mpcid-launcher")
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
    # Imported here, not at the top: every party process of every transport starts
    # from this script (--party), and a plain MPyC party must not pay for mpcid's imports.
    from mpcid.identity.keystore import Keystore

    out = []
    for i in range(n):
        home = work / f"home{i}"
        key = Keystore(home).create_identity(f"p{i}")
        out.append((home, key.did.did))
    return out


def count_messages() -> tuple[list[float], list[int]]:
    """Count the MPyC messages this process sends, and note its CPU and minor page
    faults at the first (``first``: [cpu, minflt] once sent)."""
    import resource

    from mpyc.asyncoro import MessageExchanger

    first: list[float] = []
    count = [0]
    send = MessageExchanger.send

    def noted_send(self: MessageExchanger, pc: int, payload: bytes) -> None:
        if not first:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            first.extend((usage.ru_utime + usage.ru_stime, usage.ru_minflt))
        count[0] += 1
        send(self, pc, payload)

    MessageExchanger.send = noted_send
    return first, count


def party_main(argv: list[str]) -> None:
    """``--party SEED REPORT MODE ARGS...``: one party through party_launcher.py, its
    randomness drawn from SEED if given, noting its CPU time at its first MPyC message."""
    seed, report, *rest = argv
    if seed:
        import random
        import secrets

        rng = random.Random(seed)

        def token_bytes(nbytes: int | None = None) -> bytes:
            return rng.randbytes(32 if nbytes is None else nbytes)

        def randbelow(exclusive_upper_bound: int) -> int:
            return rng.randrange(exclusive_upper_bound)

        def randbits(k: int) -> int:
            return rng.getrandbits(k)

        secrets.token_bytes, secrets.randbelow, secrets.randbits = (
            token_bytes, randbelow, randbits)
    first, count = count_messages()

    def note() -> None:
        Path(report + ".first").write_text(json.dumps(
            {"cpu": first[0] if first else None, "minflt": first[1] if first else None,
             "messages": count[0]}))

    atexit.register(note)
    sys.path.insert(0, str(HERE))
    import party_launcher

    sys.argv = [str(LAUNCHER), report, *rest]
    party_launcher.main()


# --- mpcid-launcher: the parties are forks of a launcher, instrumented as party_main is ---

_FORK: dict[str, object] = {}


def launcher_main(argv: list[str]) -> None:
    """``--launcher SOCKET``: mpcid's launcher (what `mpcid online` keeps), with the
    instrumentation of :func:`party_main` installed before it serves, so that every fork
    counts its sends, its CPU at its first MPyC message and its messages, draws from the
    seed in its ``BENCH_SEED``, and writes its report to its ``BENCH_REPORT`` at exit.
    A fork's CPU (getrusage) is its own since the fork; its `mpcid` client's is added
    by run_once."""
    import atexit
    import logging
    import random
    import resource
    import secrets

    import party_launcher  # (this script's folder is sys.path[0], as for the client's)

    from mpcid.broker.launcher_server import serve

    party_launcher.count_socket_sends()
    originals = (secrets.token_bytes, secrets.randbelow, secrets.randbits)

    def rng() -> random.Random | None:
        # Decided once per fork (its environment is the client's by the first call).
        try:
            return _FORK["rng"]  # type: ignore[return-value]
        except KeyError:
            seed = os.environ.get("BENCH_SEED")
            _FORK["rng"] = random.Random(seed) if seed else None
            return _FORK["rng"]  # type: ignore[return-value]

    def token_bytes(nbytes: int | None = None) -> bytes:
        r = rng()
        return r.randbytes(32 if nbytes is None else nbytes) if r else originals[0](nbytes)

    def randbelow(exclusive_upper_bound: int) -> int:
        r = rng()
        return r.randrange(exclusive_upper_bound) if r else originals[1](exclusive_upper_bound)

    def randbits(k: int) -> int:
        r = rng()
        return r.getrandbits(k) if r else originals[2](k)

    secrets.token_bytes, secrets.randbelow, secrets.randbits = token_bytes, randbelow, randbits
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    first, count = count_messages()
    root.handlers[:] = handlers  # MPyC's package configured logging: each fork does
    root.setLevel(level)

    def in_fork() -> None:
        _FORK.clear()
        first.clear()
        count[0] = 0
        party_launcher.SENT[0] = 0

    def report() -> None:
        path = os.environ.get("BENCH_REPORT")
        if not path:
            return  # the launcher itself
        usage = resource.getrusage(resource.RUSAGE_SELF)
        Path(path).write_text(json.dumps({
            "sent": party_launcher.SENT[0], "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_kib": party_launcher.peak_rss_kib(), "minflt": usage.ru_minflt,
            "exit": 0}))
        Path(path + ".first").write_text(json.dumps(
            {"cpu": first[0] if first else None, "minflt": first[1] if first else None,
             "messages": count[0]}))

    os.register_at_fork(after_in_child=in_fork)
    atexit.register(report)
    sys.exit(serve(Path(argv[0]), os.getppid()))


def start_launchers(identities: list[tuple[Path, str]], env: dict[str, str]
                    ) -> list[subprocess.Popen[str]]:
    """One instrumented launcher per party's home, started untimed; each ready at its
    ``ready`` line."""
    procs = []
    for home, _ in identities:
        proc = subprocess.Popen([sys.executable, __file__, "--launcher",
                                 str(home / "launcher.sock")], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=env,
                                start_new_session=True)
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        seen = ""
        for line in proc.stdout:  # (MPyC may log on importing, before ``ready``)
            seen = line.strip()
            if seen == "ready":
                break
        if seen != "ready":
            raise SystemExit(f"error: a launcher did not start ({seen!r})")
    return procs


def stop_launchers(launchers: list[subprocess.Popen[str]]) -> None:
    for proc in launchers:
        if proc.poll() is None:
            proc.terminate()


def run_once(mode: str, demo: list[str], demos: Path, work: Path,
             identities: list[tuple[Path, str]], seed: str = "",
             env: dict[str, str] | None = None) -> dict[str, float]:
    n = len(identities)
    ports = free_ports(n)
    program = demos / demo[0]
    procs = []
    reports = [work / f"report{i}.json" for i in range(n)]
    if mode.startswith("mpcid"):
        session = work / "session.json"
        session.write_text(json.dumps({
            "session": f"bench-{time.time_ns()}",
            "program_sha256": hashlib.sha256(program.read_bytes()).hexdigest(),
            "parties": [{"did": did, "host": "127.0.0.1", "port": ports[i]}
                        for i, (_, did) in enumerate(identities)]}))
    clients_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for i in range(n):
        if mode == "mpcid-launcher":
            # As the user types it: the `mpcid` client hands the command to the launcher.
            home, _ = identities[i]
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "mpcid"), "run", "--home", str(home),
                 "--session", str(session), "--as", f"p{i}", "--", str(program), *demo[1:]],
                cwd=demos, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**(env or os.environ), "BENCH_REPORT": str(reports[i]),
                     "BENCH_SEED": f"{seed}-{i}" if seed else ""}))
            continue
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
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--party", f"{seed}-{i}" if seed else "",
             str(reports[i]), *args],
            cwd=demos, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    outputs = [p.communicate(timeout=1800)[0] for p in procs]
    wall = time.perf_counter() - started
    clients_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for i, p in enumerate(procs):
        if p.returncode != 0:
            raise SystemExit(f"{mode} party {i} failed (exit {p.returncode}):\n"
                             f"{outputs[i][-3000:]}")
    measured = [json.loads(r.read_text()) for r in reports]
    if mode == "mpcid-launcher":  # the forks' reports lack their clients' CPU: add a share
        clients = (clients_after.ru_utime + clients_after.ru_stime
                   - clients_before.ru_utime - clients_before.ru_stime) / n
        for m in measured:
            m["cpu"] += clients
            m["forked"] = True
    notes = [json.loads(Path(str(r) + ".first").read_text()) for r in reports]
    if mode == "mpcid-launcher":  # the client's share is before the first message, too
        for note in notes:
            if note["cpu"] is not None:
                note["cpu"] += clients
    elapsed = []
    for out in outputs:
        match = _ELAPSED.search(out)
        if match:
            h, m, s = match.groups()
            elapsed.append(int(h) * 3600 + int(m) * 60 + float(s))
    return {"wall": wall, "elapsed": max(elapsed) if elapsed else float("nan"),
            "bytes": statistics.mean(m["sent"] for m in measured),
            "cpu": statistics.mean(m["cpu"] for m in measured),
            "compute_cpu": since_first(measured, notes, "cpu"),
            "messages": statistics.mean(n["messages"] for n in notes),
            # Minor page faults from the first MPyC message to the report (a fork's
            # copy-on-write of its launcher's pages among them).
            "compute_minflt": since_first(measured, notes, "minflt"),
            "rss_mib": max(m["maxrss_kib"] for m in measured) / 1024}


def since_first(measured: list[dict[str, Any]], notes: list[dict[str, Any]], key: str
                ) -> float:
    """The parties' mean ``key`` (CPU, minor faults) from their first MPyC message to
    their reports; NaN if no party sent one."""
    spans = [m[key] - n[key] for m, n in zip(measured, notes) if n[key] is not None]
    return statistics.mean(spans) if spans else float("nan")


def party_env(work: Path, cold_start: bool) -> dict[str, str]:
    env = dict(os.environ)
    if not cold_start:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def paired(rows: list[dict[str, float]], base: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] / b[key] for r, b in zip(rows, base))


def chosen_demos(folder: Path, demos: str) -> list[str]:
    """The demos named in ``demos`` (comma-separated), checked against :data:`DEMOS`, or
    exit with an error; ``folder`` must be MPyC's demos folder."""
    if not (folder / "secretsanta.py").is_file():
        raise SystemExit(f"error: {folder} is not MPyC's demos folder (no secretsanta.py)")
    chosen = [d for d in demos.split(",") if d]
    unknown = [d for d in chosen if d not in DEMOS]
    if unknown:
        raise SystemExit(f"error: unknown demo {unknown[0]!r}; choose from {', '.join(DEMOS)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mpyc-demos", required=True, type=Path,
                        help="the demos folder of an MPyC checkout (v0.11)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--demos", default=",".join(DEMOS),
                        help=f"comma-separated subset of {', '.join(DEMOS)}")
    parser.add_argument("--same-randomness", action="store_true",
                        help="run r of every transport draws the same randomness (insecure)")
    parser.add_argument("--cold-start", action="store_true",
                        help="no bytecode cache for the parties, no warm-up run")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--transports", default=",".join(MODES),
                        help=f"comma-separated subset of {', '.join(MODES)} (plain is "
                             "always run: ratios are against it)")
    args = parser.parse_args()
    modes = ["plain", *[m for m in args.transports.split(",") if m and m != "plain"]]
    if [m for m in modes if m not in MODES]:
        parser.error(f"--transports: choose from {', '.join(MODES)}")
    chosen = chosen_demos(args.mpyc_demos, args.demos)
    with tempfile.TemporaryDirectory(prefix="mpcid-bench-") as tmp:
        work = Path(tmp)
        demos, notes = prepare_demos(args.mpyc_demos, work)
        identities = make_identities(work, args.parties)
        env = party_env(work, args.cold_start)
        launchers = start_launchers(identities, env) if "mpcid-launcher" in modes else []
        atexit.register(stop_launchers, launchers)
        if not args.cold_start:
            (demos / "nothing.py").write_text("from mpyc.runtime import mpc\n"
                                              "mpc.run(mpc.start())\nmpc.run(mpc.shutdown())\n")
            for mode in modes:  # fills the bytecode cache; not timed
                run_once(mode, ["nothing.py"], demos, work, identities, env=env)
        results: dict[str, dict[str, list[dict[str, float]]]] = {
            d: {m: [] for m in modes} for d in chosen}
        for run in range(args.runs):
            seed = f"run{run}" if args.same_randomness else ""
            for demo in chosen:
                for mode in modes:
                    result = run_once(mode, DEMOS[demo], demos, work, identities, seed, env)
                    results[demo][mode].append(result)
                    print(f"run {run + 1}/{args.runs} {demo:<12} {mode:<6} "
                          f"wall {result['wall']:.2f} s, MPyC {result['elapsed']:.2f} s, "
                          f"CPU {result['cpu']:.2f} s (computation "
                          f"{result['compute_cpu']:.2f} s, "
                          f"{result['compute_minflt']:.0f} minor faults)",
                          file=sys.stderr, flush=True)
    print(f"# MPyC demos, {args.parties} parties on loopback, {platform.machine()}, "
          f"Python {platform.python_version()}, median of {args.runs} interleaved runs"
          + (", same randomness per run" if args.same_randomness else "")
          + (", cold start" if args.cold_start else ", bytecode cache"))
    for note in notes:
        print(f"# note: {note}")
    header = (f"{'demo':<13}{'transport':<15}{'wall s':>8}{'x plain':>9}{'MPyC s':>8}"
              f"{'x plain':>9}{'range s':>14}{'CPU s':>8}{'x plain':>9}{'comp CPU':>9}"
              f"{'x plain':>9}{'MB/party':>10}{'peak MiB':>10}")
    print(header)
    for demo in chosen:
        base_rows = results[demo]["plain"]
        base = {key: statistics.median(r[key] for r in base_rows)
                for key in ("wall", "elapsed", "cpu", "compute_cpu")}
        for mode in modes:
            rows = results[demo][mode]
            med = {key: statistics.median(r[key] for r in rows)
                   for key in ("wall", "elapsed", "cpu", "compute_cpu", "bytes", "rss_mib")}
            spread = f"{min(r['elapsed'] for r in rows):.2f}-{max(r['elapsed'] for r in rows):.2f}"
            print(f"{demo:<13}{mode:<15}{med['wall']:>8.2f}{med['wall'] / base['wall']:>8.2f}x"
                  f"{med['elapsed']:>8.2f}{med['elapsed'] / base['elapsed']:>8.2f}x"
                  f"{spread:>14}{med['cpu']:>8.2f}{med['cpu'] / base['cpu']:>8.2f}x"
                  f"{med['compute_cpu']:>9.2f}"
                  f"{med['compute_cpu'] / base['compute_cpu']:>8.2f}x"
                  f"{med['bytes'] / 1e6:>10.2f}{med['rss_mib']:>10.1f}")
        if args.same_randomness:
            # Same computation in every transport: the difference in computation CPU is
            # what the transport costs, per MPyC message a party sends (and receives).
            for mode in modes[1:]:
                rows = results[demo][mode]
                extra = statistics.median((r["compute_cpu"] - b["compute_cpu"]) / r["messages"]
                                          for r, b in zip(rows, base_rows)) * 1e6
                print(f"{'':<13}{mode:<15}paired ratios to plain (median of per-run ratios): "
                      f"wall {paired(rows, base_rows, 'wall'):.2f}x, MPyC "
                      f"{paired(rows, base_rows, 'elapsed'):.2f}x, CPU "
                      f"{paired(rows, base_rows, 'cpu'):.2f}x, computation CPU "
                      f"{paired(rows, base_rows, 'compute_cpu'):.2f}x; CPU per message "
                      f"{extra:+.1f} µs over plain "
                      f"({statistics.median(r['messages'] for r in rows):.0f} messages/party); "
                      "minor page faults in the computation "
                      f"{statistics.median(r['compute_minflt'] for r in rows):.0f} (plain "
                      f"{statistics.median(r['compute_minflt'] for r in base_rows):.0f})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--party"]:
        party_main(sys.argv[2:])
    elif sys.argv[1:2] == ["--launcher"]:
        launcher_main(sys.argv[2:])
    else:
        main()
