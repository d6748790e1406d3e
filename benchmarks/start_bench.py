"""Session start: N `mpcid join` processes, from launch to MPyC started at every party.

    .venv/bin/python benchmarks/start_bench.py [--parties 3,5,10,16] [--runs 3]
        [--timeout 120] [--modes cold,agent] [--cold-start] [--keep] [--json FILE]

Each session: an invitation requiring a MembershipCredential (issued by an org identity,
as in admission_bench.py), made untimed with ``mpcid invite --no-publish``, and N
``mpcid join TOKEN --progress json`` processes on loopback meeting through one local
``mpcid node``. Interleaved (for each run, N and mode), two modes with identities and
homes of their own, so that their DHT records never compete:

* ``cold``: each join starts from nothing (py-libp2p, its own libp2p host and DHT node);
* ``agent``: each party's ``mpcid online --no-launcher`` (started untimed before the
  runs, kept to the end) serves a local agent that the join uses. Ready at its stdout line
  ``agent ...``; without it within 60 s the mode is reported unavailable and the rest
  still runs.
* ``launcher``: each party's ``mpcid online`` as it is, which also keeps a launcher
  (ready at its ``launcher ...`` line): the joins are typed as a user types them
  (``mpcid join``) and start as forks of the launcher (``broker/launcher.py``).

Wall: from launching the first join to the last party's ``started`` event. Per party, at
its ``started`` event (cold and agent: each join runs in this file's party mode,
``start_bench.py --party REPORT.json -- MPCID ARGS``): CPU seconds of the process (user +
system, all threads), peak RSS (VmHWM), whether ``libp2p`` is imported, and its DHT
lookups (calls of ``mpcid.broker.paths.Paths._lookup``; n/a if that does not exist).
Launcher mode reads the same from /proc when the event appears (polled every 5 ms): CPU
of the `mpcid join` process plus its fork's, the fork's VmHWM (which counts the pages it
shares with the launcher); it cannot see imports or lookups. Agent and launcher modes
also give the agents' CPU per party over the run: their DHT work is no longer the join's.

Parties use Python's bytecode cache in the benchmark's temporary folder, filled by one
untimed warm-up session per mode, as an installed package would; ``--cold-start`` keeps
the environment as it is and skips the warm-up.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

# --- launcher mode: one party in this process, instrumented (keep its imports light) ---

_REPORT: list[str] = []
_LOOKUPS: list[int | None] = [None]  # None: Paths._lookup not (yet) wrapped
_SNAPSHOT: dict[str, Any] = {}


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM of a process image, in MB (ru_maxrss would carry the parent's across
    execve); NaN if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def snapshot(t: float | None) -> None:
    """The party's numbers at its ``started`` event, written to the report at once (the
    CLI may leave through os._exit, which skips atexit)."""
    if _SNAPSHOT:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _SNAPSHOT.update(cpu=usage.ru_utime + usage.ru_stime, rss_mb=peak_rss_mb(),
                     libp2p="libp2p" in sys.modules, lookups=_LOOKUPS[0],
                     modules=len(sys.modules), t=t or time.time())
    Path(_REPORT[0]).write_text(json.dumps(_SNAPSHOT))


def instrument_progress(module: ModuleType) -> None:
    """Snapshot when ``started`` passes through Progress.emit or any sink's handle."""
    emit = module.Progress.emit

    def noted_emit(self: Any, event: str, **fields: Any) -> None:
        if event == "started":
            snapshot(None)
        emit(self, event, **fields)

    module.Progress.emit = noted_emit
    for cls in vars(module).values():
        if isinstance(cls, type) and issubclass(cls, module.Progress) \
                and "handle" in vars(cls):
            wrap_handle(cls)


def wrap_handle(cls: type) -> None:
    handle = vars(cls)["handle"]

    def noted_handle(self: Any, event: dict[str, Any]) -> None:
        if event.get("event") == "started":
            snapshot(event.get("t"))
        handle(self, event)

    setattr(cls, "handle", noted_handle)


def instrument_paths(module: ModuleType) -> None:
    """Count calls of Paths._lookup (left as n/a if it does not exist)."""
    import inspect

    paths = getattr(module, "Paths", None)
    lookup = getattr(paths, "_lookup", None)
    if paths is None or not inspect.iscoroutinefunction(lookup):
        return
    _LOOKUPS[0] = 0

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        _LOOKUPS[0] = (_LOOKUPS[0] or 0) + 1
        return await lookup(self, *args, **kwargs)

    setattr(paths, "_lookup", counted)


_WATCHED: dict[str, Callable[[ModuleType], None]] = {
    "mpcid.broker.progress": instrument_progress, "mpcid.broker.paths": instrument_paths}


class AfterImport:
    """A meta path finder that instruments a watched module right after it is executed,
    so the launcher imports nothing the party would not import itself."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        hook = _WATCHED.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                run = spec.loader.exec_module

                def exec_module(module: ModuleType) -> None:
                    run(module)
                    hook(module)

                setattr(spec.loader, "exec_module", exec_module)
                return spec
        return None


def party_main(argv: list[str]) -> None:
    """``--party REPORT.json -- MPCID ARGS...``: run ``mpcid ARGS`` in this process."""
    report, separator, *args = argv
    if separator != "--":
        raise SystemExit("usage: start_bench.py --party REPORT.json -- MPCID ARGS...")
    _REPORT.append(report)
    sys.meta_path.insert(0, AfterImport())
    from mpcid.broker.cli import main as mpcid_main

    mpcid_main(args)


# --- the benchmark ---

if __name__ == "__main__" and sys.argv[1:2] == ["--party"]:
    party_main(sys.argv[2:])
    raise SystemExit(0)  # (mpcid's main exits by itself)

import argparse  # noqa: E402  (not needed by the launcher mode above)
import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

HERE = Path(__file__).resolve().parent
SALARY = HERE.parent / "examples" / "salary_sum.py"
MPCID = str(Path(sys.executable).parent / "mpcid")
MODES = ("cold", "agent", "launcher")
AGENT_WAIT = 60.0
FINISH_GRACE = 30.0  # after every party started: seconds for the sessions to end
TARGET_WALL = {3: 1.0, 10: 4.0}
TARGET_CPU = 0.4
TARGET_RSS = 80.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Party:
    home: Path
    name: str
    did: str


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)


@dataclass
class Bench:
    root: Path
    env: dict[str, str]
    timeout: float
    org_did: str = ""
    node: str = ""
    parties: dict[str, list[Party]] = field(default_factory=dict)
    agents: dict[str, list[Agent]] = field(default_factory=dict)  # by mode
    procs: list[subprocess.Popen[str]] = field(default_factory=list)  # to stop at the end
    runs: int = 0
    version: str = ""


def party_env(root: Path, cold_start: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_BOOTSTRAP")}
    if not cold_start:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def make_parties(bench: Bench, n: int) -> None:
    """An org and, per mode, n identities in homes of their own, each holding a
    MembershipCredential from the org."""
    from mpcid.identity import credentials as vc
    from mpcid.identity.keystore import Keystore

    now = dt.datetime.now(dt.timezone.utc)
    org = Keystore(bench.root / "org").create_identity("org")
    bench.org_did = org.did.did
    for mode in MODES:
        bench.parties[mode] = []
        for i in range(n):
            name = f"{mode[0]}{i}"
            home = bench.root / "homes" / name
            key = Keystore(home).create_identity(name)
            Keystore(home).put_document("credentials", "m", vc.sign_credential(
                vc.build_credential(issuer=org.did.did, subject=key.did.did,
                                    credential_type="MembershipCredential", valid_from=now),
                org, now=now))
            bench.parties[mode].append(Party(home, name, key.did.did))


def start_node(bench: Bench) -> None:
    node = subprocess.Popen([MPCID, "node", "--home", str(bench.root / "node"), "--listen",
                             "/ip4/127.0.0.1/tcp/0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=bench.env)
    bench.procs.append(node)
    assert node.stdout is not None
    bench.node = node.stdout.readline().strip()
    if not bench.node:
        raise SystemExit("error: `mpcid node` printed no address")


def start_agents(bench: Bench, parties: list[Party], mode: str) -> str | None:
    """One `mpcid online` per party (``agent``: with --no-launcher; ``launcher``: as it
    is, which keeps a launcher); None when all printed their ``agent`` (and
    ``launcher``) line, else why the mode is unavailable (its agents are then stopped)."""
    ready = "launcher " if mode == "launcher" else "agent "
    agents = bench.agents[mode] = []
    for party in parties:
        err = open(bench.root / f"online-{party.name}.err", "w")
        proc = subprocess.Popen(
            [MPCID, "online", "--home", str(party.home), "--as", party.name, "--bootstrap",
             bench.node, "--listen", "/ip4/127.0.0.1/tcp/0",
             *(["--no-launcher"] if mode == "agent" else [])], stdout=subprocess.PIPE,
            stderr=err, text=True, env=bench.env, cwd=bench.root)
        err.close()
        bench.procs.append(proc)
        agent = Agent(proc)
        threading.Thread(target=drain, args=(agent, ready), daemon=True).start()
        agents.append(agent)
    until = time.monotonic() + AGENT_WAIT
    for agent, party in zip(agents, parties):
        if agent.ready.wait(max(0.0, until - time.monotonic())):
            continue
        why = (f"`mpcid online` ({party.name}) printed no `{ready}` line within "
               f"{AGENT_WAIT:.0f} s")
        if agent.proc.poll() is not None:
            why = (f"`mpcid online` ({party.name}) exited {agent.proc.returncode}: "
                   f"{last_line(bench.root / f'online-{party.name}.err')}")
        elif agent.lines:
            why += f" (its last line: {agent.lines[-1]!r})"
        stop([a.proc for a in agents])
        del bench.agents[mode]
        return why
    return None


def drain(agent: Agent, ready: str) -> None:
    """Read the agent's stdout to its end (so it never blocks on a full pipe)."""
    assert agent.proc.stdout is not None
    for line in agent.proc.stdout:
        agent.lines.append(line.rstrip("\n"))
        if line.startswith(ready):
            agent.ready.set()


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """SIGTERM (mpcid withdraws its records and stops), SIGKILL after 15 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    until = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(max(0.1, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def last_line(path: Path) -> str:
    """The last line of a stderr file that is not a progress event; 'error:' lines win."""
    try:
        lines = [x.strip() for x in path.read_text(errors="replace").splitlines()]
    except OSError:
        return "(no output)"
    text = [x for x in lines if x and not x.startswith('{"event"')]
    errors = [x for x in text if x.startswith("error:")]
    return (errors or text or ["(no message)"])[-1][:300]


def events(path: Path) -> list[dict[str, Any]]:
    found = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith('{"event"'):
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found


def invite(bench: Bench, parties: list[Party]) -> str:
    args = ["invite", "--home", str(parties[0].home), "--as", parties[0].name, "--program",
            str(SALARY), "--bootstrap", bench.node, "--no-publish", "--require",
            f"MembershipCredential@{bench.org_did}"]
    for party in parties[1:]:
        args += ["--did", party.did]
    done = subprocess.run([MPCID, *args], capture_output=True, text=True, env=bench.env,
                          timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"mpcid invite failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip().splitlines()[-1]


def launch(bench: Bench, party: Party, token: str, folder: Path, mode: str
           ) -> subprocess.Popen[str]:
    """A party's join: in this file's launcher mode (``--party``), or, with a launcher,
    as the user types it (``mpcid join``), which starts it as a fork of the launcher."""
    err = open(folder / f"{party.name}.err", "w")
    join = ["join", token, "--home", str(party.home), "--as", party.name, "--program",
            str(SALARY), "--progress", "json", "--connect-timeout", str(bench.timeout),
            "--", "--salaries", "50000"]
    command = [MPCID, *join] if mode == "launcher" else \
        [sys.executable, __file__, "--party", str(folder / f"{party.name}.json"), "--", *join]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, text=True,
                            env=bench.env, cwd=folder)
    err.close()
    return proc


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(x) for x in (task / "children").read_text().split()]
    except (OSError, ValueError):
        pass
    return out


def launcher_of(online_pid: int) -> int | None:
    """The launcher process that `mpcid online` started."""
    for pid in children(online_pid):
        try:
            if b"mpcid.broker.launcher" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def fork_writing_to(launcher: int | None, inode: int) -> int | None:
    """The launcher's fork whose stderr is the file with ``inode`` (a party's .err)."""
    for pid in children(launcher) if launcher else []:
        try:
            if os.stat(f"/proc/{pid}/fd/2").st_ino == inode:
                return pid
        except OSError:
            continue
    return None


def watch_forks(bench: Bench, parties: list[Party], procs: list[subprocess.Popen[str]],
                folder: Path, done: threading.Event) -> None:
    """Launcher mode: a party's numbers at its ``started`` event, from /proc (its process
    is a fork of the launcher: CPU of the `mpcid join` client plus the fork's, the fork's
    peak RSS), written where the ``--party`` mode writes them. Polled every 5 ms, so
    they may include up to a few ms of work after the event."""
    launchers = [launcher_of(a.proc.pid) for a in bench.agents["launcher"][:len(parties)]]
    todo = {i: (folder / f"{p.name}.err") for i, p in enumerate(parties)}
    inodes = {i: os.stat(path).st_ino for i, path in todo.items()}
    forks: dict[int, int | None] = {}
    sizes: dict[int, int] = {}
    while todo and not done.is_set():
        for i, path in list(todo.items()):
            if forks.get(i) is None:
                forks[i] = fork_writing_to(launchers[i], inodes[i])
            size = path.stat().st_size
            if size == sizes.get(i) or not any(e["event"] == "started" for e in events(path)):
                sizes[i] = size
                continue
            fork, client = forks[i], procs[i].pid
            report = {"cpu": proc_cpu(client) + (proc_cpu(fork) if fork else 0.0),
                      "rss_mb": peak_rss_mb(fork or client), "libp2p": None, "lookups": None,
                      "forked": fork is not None, "t": time.time()}
            (folder / f"{parties[i].name}.json").write_text(json.dumps(report))
            del todo[i]
        time.sleep(0.005)


def wait_all(procs: list[subprocess.Popen[str]], parties: list[Party], folder: Path,
             start: float, timeout: float) -> str | None:
    """Until every party exits; the first failure (kills the others), or None."""
    checked = False
    while True:
        codes = [p.poll() for p in procs]
        if any(code not in (None, 0) for code in codes):
            return first_failure(procs, parties, folder)
        if all(code == 0 for code in codes):
            return None
        now = time.time()
        if not checked and now > start + timeout + 20:  # a join's own timeout first
            checked = True
            late = [(p, party) for p, party in zip(procs, parties) if p.poll() is None
                    and not any(e["event"] == "started"
                                for e in events(folder / f"{party.name}.err"))]
            if late:
                return not_started(late, folder, timeout)
        if now > start + timeout + 20 + FINISH_GRACE:
            names = [pa.name for p, pa in zip(procs, parties) if p.poll() is None]
            return (f"{', '.join(names)} still running {now - start:.0f} s after launch "
                    "(all had started)")
        time.sleep(0.05)


def first_failure(procs: list[subprocess.Popen[str]], parties: list[Party],
                  folder: Path) -> str:
    """The failure that stopped the session: the others follow within moments (their
    'party X stopped the session'), so wait up to 3 s and name the earliest to end."""
    until = time.monotonic() + 3
    while time.monotonic() < until and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    failed = []
    for proc, party in zip(procs, parties):
        if proc.poll() not in (None, 0):
            ends = [e["t"] for e in events(folder / f"{party.name}.err")
                    if e["event"] == "finished"] or [float("inf")]
            failed.append((ends[0], party.name, proc.returncode))
    _, name, code = min(failed)
    return f"{name} exit {code}: {last_line(folder / f'{name}.err')}"


def not_started(late: list[tuple[subprocess.Popen[str], Party]], folder: Path,
                timeout: float) -> str:
    name = late[0][1].name
    seen = [e["event"] for e in events(folder / f"{name}.err")]
    counts = ", ".join(f"{k} {seen.count(k)}" for k in ("found", "connected", "admitted"))
    return (f"{len(late)} parties not started after {timeout:.0f} s (e.g. {name}: "
            f"{counts}; {last_line(folder / f'{name}.err')})")


def run_session(bench: Bench, mode: str, n: int) -> dict[str, Any]:
    """One session of n parties; its wall time and each party's report, or why not."""
    parties = bench.parties[mode][:n]
    bench.runs += 1
    folder = bench.root / "runs" / f"{bench.runs:03d}-{mode}-{n}"
    folder.mkdir(parents=True)
    result: dict[str, Any] = {"mode": mode, "n": n, "ok": False}
    try:
        token = invite(bench, parties)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        result["reason"] = str(exc).splitlines()[0]
        return result
    agents = [a.proc.pid for a in bench.agents.get(mode, [])[:n]]
    everyone = [a.proc.pid for group in bench.agents.values() for a in group]
    cpu_before = sum(proc_cpu(pid) for pid in agents)
    all_before = sum(proc_cpu(pid) for pid in everyone)
    start = time.time()
    procs: list[subprocess.Popen[str]] = []
    done = threading.Event()
    watcher = None
    try:
        procs = [launch(bench, party, token, folder, mode) for party in parties]
        if mode == "launcher":
            watcher = threading.Thread(target=watch_forks,
                                       args=(bench, parties, procs, folder, done))
            watcher.start()
        reason = wait_all(procs, parties, folder, start, bench.timeout)
    finally:
        done.set()
        if watcher is not None:
            watcher.join()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    if agents:
        result["agent_cpu"] = (sum(proc_cpu(pid) for pid in agents) - cpu_before) / n
    result["agents_all_cpu"] = sum(proc_cpu(pid) for pid in everyone) - all_before
    result["duration"] = time.time() - start
    if reason is None:
        reason = collect(result, parties, folder, start, bench.timeout)
    result["ok"] = reason is None
    if reason is not None:
        result["reason"] = f"{short_dids(reason)} [{channels(parties, folder)}]"
    return result


def short_dids(text: str) -> str:
    return re.sub(r"(did:key:z\w{6})\w+", r"\1…", text)


def channels(parties: list[Party], folder: Path) -> str:
    """How far a failed session got: channels reported open (each by both ends)."""
    ends = sum(e["event"] == "connected" for party in parties
               for e in events(folder / f"{party.name}.err"))
    n = len(parties)
    return f"{ends // 2} of {n * (n - 1) // 2} channels open"


def collect(result: dict[str, Any], parties: list[Party], folder: Path, start: float,
            timeout: float) -> str | None:
    """Wall time and per-party reports of a run whose parties all exited 0."""
    starts, reports = [], []
    for party in parties:
        seen = [e["t"] for e in events(folder / f"{party.name}.err")
                if e["event"] == "started"]
        if not seen:
            return f"{party.name} exited 0 without a started event"
        starts.append(seen[0])
        try:
            reports.append(json.loads((folder / f"{party.name}.json").read_text()))
        except (OSError, ValueError):
            return f"{party.name}: no launcher report"
    result["wall"] = max(starts) - start
    result["parties"] = reports
    if result["wall"] > timeout:
        return f"started after {result['wall']:.1f} s (> {timeout:.0f} s)"
    return None


def describe(result: dict[str, Any]) -> str:
    if not result["ok"]:
        return f"FAILED: {result['reason']}"
    cpus = [p["cpu"] for p in result["parties"]]
    text = (f"wall {result['wall']:.2f} s, CPU/party {statistics.median(cpus):.2f} "
            f"(max {max(cpus):.2f}) s")
    if "agent_cpu" in result:
        text += f", agent CPU/party {result['agent_cpu']:.2f} s"
    return text


def spread(values: list[float], digits: int = 2, low: bool = True) -> str:
    """'median (min–max)', or 'median (max)' without ``low``."""
    if not values:
        return "–"
    f = f".{digits}f"
    return (f"{statistics.median(values):{f}} ("
            + (f"{min(values):{f}}–" if low else "") + f"{max(values):{f}})")


def med_max(values: list[float], digits: int = 2) -> str:
    return spread(values, digits, low=False)


def row_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["ok"]]
    parties = [p for r in ok for p in r["parties"]]
    lookups = [p["lookups"] for p in parties if p.get("lookups") is not None]
    imported = {bool(p["libp2p"]) for p in parties if p.get("libp2p") is not None}
    return {
        "ok": f"{len(ok)}/{len(rows)}", "wall": [r["wall"] for r in ok],
        "cpu": [p["cpu"] for p in parties], "rss": [p["rss_mb"] for p in parties],
        "lookups": f"{statistics.median(lookups):g}" if lookups else "n/a",
        "libp2p": ("mixed" if len(imported) > 1 else "yes" if True in imported
                   else "no" if imported else "n/a"),
        "forked": sum(bool(p.get("forked")) for p in parties),
        "agent_cpu": [r["agent_cpu"] for r in ok if "agent_cpu" in r]}


def print_table(results: dict[tuple[int, str], list[dict[str, Any]]]) -> None:
    print("| parties | mode | runs ok | wall s median (min–max) | CPU s/party at start "
          "median (max) | peak RSS MB median (max) | lookups/party median | libp2p imported "
          "| started as forks | agent CPU s/party per run |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (n, mode), rows in results.items():
        s = row_stats(rows)
        agent = med_max(s["agent_cpu"]) if s["agent_cpu"] else "–"
        forked = f"{s['forked']}/{len(s['cpu'])}" if mode == "launcher" else "–"
        print(f"| {n} | {mode} | {s['ok']} | {spread(s['wall'])} | {med_max(s['cpu'])} | "
              f"{med_max(s['rss'], 1)} | {s['lookups']} | {s['libp2p']} | {forked} | {agent} |")


def verdict(values: list[float], target: float, unit: str) -> str:
    if not values:
        return "no successful run"
    med, top = statistics.median(values), max(values)
    word = ("met" if top <= target else "met by the median, missed by the max"
            if med <= target else "missed")
    return f"{med:.2f}{unit} (max {top:.2f}) {word}"


def print_targets(results: dict[tuple[int, str], list[dict[str, Any]]],
                  ns: list[int], modes: list[str]) -> None:
    for n in ns:
        stats = {m: row_stats(results[(n, m)]) for m in modes if (n, m) in results}
        parts = []
        for mode in ("agent", "launcher"):
            if "cold" in stats and mode in stats and stats["cold"]["wall"] \
                    and stats[mode]["wall"]:
                ratio = (statistics.median(stats[mode]["wall"])
                         / statistics.median(stats["cold"]["wall"]))
                parts.append(f"{mode}/cold wall {ratio:.2f}x")
        for mode, s in stats.items():
            wall = (f"wall ≤ {TARGET_WALL[n]:.1f} s: {verdict(s['wall'], TARGET_WALL[n], ' s')}"
                    if n in TARGET_WALL else "no wall target")
            parts.append(f"{mode}: {wall}; CPU/party ≤ {TARGET_CPU} s: "
                         f"{verdict(s['cpu'], TARGET_CPU, ' s')}; RSS ≤ {TARGET_RSS:.0f} MB: "
                         f"{verdict(s['rss'], TARGET_RSS, ' MB')}")
        print(f"{n} parties: " + "; ".join(parts))


def code_version() -> str:
    """The commit (read-only git) and a digest of mpcid's source files as they are."""
    digest = hashlib.sha256()
    for path in sorted(f for d in ("broker", "p2p", "identity", "examples")
                       for f in (HERE.parent / d).rglob("*.py")):
        digest.update(str(path.relative_to(HERE.parent)).encode() + path.read_bytes())
    try:
        head = subprocess.run(["git", "--no-optional-locks", "-C", str(HERE.parent),
                               "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        head = ""
    return f"mpcid {head or '?'} (sources {digest.hexdigest()[:8]})"


def print_report(bench: Bench, args: argparse.Namespace, modes: list[str], ns: list[int],
                 results: dict[tuple[int, str], list[dict[str, Any]]],
                 notes: list[str]) -> None:
    print(f"# Session start, `mpcid join` on loopback through a local `mpcid node`, one "
          f"credential required; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{dt.date.today().isoformat()}, {bench.version}, "
          + ("cold start (no bytecode cache, no warm-up)" if args.cold_start
             else "bytecode cache (warm-up session per mode)")
          + f", {args.runs} interleaved runs, timeout {args.timeout:.0f} s")
    for note in notes:
        print(f"# note: {note}")
    print_table(results)
    print_targets(results, ns, modes)
    for (n, mode), rows in results.items():
        for i, row in enumerate(rows):
            if not row["ok"]:
                print(f"failed: {n} parties, {mode}, run {i + 1}: {row['reason']}")


def agent_note(bench: Bench, results: list[dict[str, Any]]) -> str:
    """What the agents cost while the cold sessions ran (idle) and their memory."""
    pids = [a.proc.pid for group in bench.agents.values() for a in group]
    cold = [r for r in results if r["mode"] == "cold"]
    share = sum(r["agents_all_cpu"] for r in cold) / max(1e-9, sum(r["duration"] for r in cold))
    idle = f"{100 * share:.1f}% of a core together" if cold else "(no cold sessions)"
    rss = [peak_rss_mb(pid) for pid in pids]
    text = (f"{len(pids)} agents (`mpcid online`) running throughout; while the cold "
            f"sessions ran they used {idle}; peak RSS per agent "
            f"{statistics.median(rss):.1f} MB median, {max(rss):.1f} max")
    launchers = [launcher_of(a.proc.pid) for a in bench.agents.get("launcher", [])]
    held = [peak_rss_mb(pid) for pid in launchers if pid]
    if held:
        text += (f"; {len(held)} launchers beside them, peak RSS "
                 f"{statistics.median(held):.1f} MB median, {max(held):.1f} max")
    return text


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def benchmark(bench: Bench, args: argparse.Namespace, ns: list[int],
              modes: list[str]) -> None:
    notes: list[str] = [f"load average before: {os.getloadavg()[0]:.2f}"]
    bench.version = code_version()
    make_parties(bench, max(ns))
    start_node(bench)
    log(f"node {bench.node}")
    for mode in [m for m in modes if m in ("agent", "launcher")]:
        why = start_agents(bench, bench.parties[mode][:max(ns)], mode)
        if why is not None:
            notes.append(f"{mode} mode unavailable: {why}")
            log(notes[-1])
            modes = [m for m in modes if m != mode]
    for mode in [] if args.cold_start else modes:  # fills the bytecode cache
        log(f"warm-up {mode} {min(ns)} parties: {describe(run_session(bench, mode, min(ns)))}")
    results: dict[tuple[int, str], list[dict[str, Any]]] = {
        (n, m): [] for n in ns for m in modes}
    for rep in range(args.runs):
        for n in ns:
            for mode in modes:
                result = run_session(bench, mode, n)
                results[(n, mode)].append(result)
                log(f"run {rep + 1}/{args.runs} {n:>2} parties {mode:<5} {describe(result)}")
                if args.json:  # after every run: what was measured survives a kill
                    args.json.write_text(json.dumps(
                        {f"{n}-{m}": rows for (n, m), rows in results.items()}, indent=1))
    notes[0] += f", after the timed runs: {os.getloadavg()[0]:.2f} (1-minute)"
    if code_version() != bench.version:
        notes.append(f"mpcid's code changed during the runs (now {code_version()})")
    if bench.agents:
        notes.append(agent_note(bench, [r for rows in results.values() for r in rows]))
    print_report(bench, args, modes, ns, results, notes)


def parse_args() -> tuple[argparse.Namespace, list[int], list[str]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--parties", default="3,5,10,16", help="comma-separated N")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds from launch for every party to start MPyC")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--cold-start", action="store_true",
                        help="no bytecode cache for the parties, no warm-up session")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    ns = [int(x) for x in args.parties.split(",") if x.isdigit()]
    modes = [m for m in args.modes.split(",") if m]
    if not ns or min(ns) < 2 or len(ns) != len(args.parties.split(",")) or not modes \
            or [m for m in modes if m not in MODES]:
        parser.error(f"--parties needs numbers >= 2 (e.g. 3,5,10); --modes a subset of "
                     f"{','.join(MODES)}")
    return args, ns, modes


def main() -> None:
    args, ns, modes = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    root = Path(tempfile.mkdtemp(prefix="mpcid-start-"))
    bench = Bench(root, party_env(root, args.cold_start), args.timeout)
    try:
        benchmark(bench, args, ns, modes)
    except KeyboardInterrupt:
        log("interrupted")
        raise SystemExit(130) from None
    finally:
        stop(bench.procs)
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
