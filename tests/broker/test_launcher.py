"""The launcher: `mpcid join` and `mpcid run` start as forks of a process that has
imported what they need (`mpcid online` keeps it; specs/discovery.md 10).

Real processes: the launcher started as `mpcid online` starts it, commands typed as a
user types them. A command through the launcher must behave exactly as the same command
in its own process: streams, folder, environment, options, exit status, signals."""

from __future__ import annotations

import array
import hashlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from processes import MPCID, SALARY, env, mpcid, stop

from mpcid.broker.launcher import launcher_for, launcher_socket
from mpcid.broker.launcher_server import signature, spawn

pytestmark = pytest.mark.integration

PROGRAM = """\
import os, random, sys
from mpyc.runtime import mpc
import numpy as np
if '--ask' in sys.argv:
    print('name?', flush=True)
    print('hello', sys.stdin.readline().strip(), flush=True)
if '--wait' in sys.argv:
    print('pid', os.getpid(), flush=True)
    import time; time.sleep(float(sys.argv[sys.argv.index('--wait') + 1]))
if '--exit' in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index('--exit') + 1]))
if '--die' in sys.argv:
    os.kill(os.getpid(), 9)

async def main():
    await mpc.start()
    x = await mpc.output(mpc.input(mpc.SecInt()(int(sys.argv[1])), 0))
    print('value', x)
    print('ppid', os.getppid())
    print('cwd', os.getcwd())
    print('var', os.environ.get('LAUNCH_TEST'))
    print('nonumpy', sys.modules['mpyc.numpy'].np is None)
    print('draw', np.random.random(), random.random())
    await mpc.shutdown()
mpc.run(main())
"""


class OneParty:
    """A keystore with one identity, a program and a one-party session of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        made = mpcid("create-did", "--home", str(self.home), "--name", "a")
        assert made.returncode == 0, made.stderr
        did = made.stdout.split()[-1]
        self.program = root / "prog.py"
        self.program.write_text(PROGRAM)
        digest = hashlib.sha256(PROGRAM.encode()).hexdigest()
        self.session = root / "session.json"
        self.session.write_text(json.dumps({
            "session": "launch", "program_sha256": digest,
            "parties": [{"did": did, "host": "127.0.0.1", "port": 1}]}))
        self.work = root / "work"
        self.work.mkdir()

    def argv(self, *args: str) -> list[str]:
        return [MPCID, "run", "--home", str(self.home), "--session", str(self.session),
                "--as", "a", "--", str(self.program), *args]

    def env(self, launcher: bool = True, **extra: str) -> dict[str, str]:
        out = env()
        out.update(extra)
        if not launcher:
            out["MPCID_NO_LAUNCHER"] = "1"
        return out

    def run(self, *args: str, launcher: bool = True, timeout: float = 60, **extra: str
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              env=self.env(launcher, **extra), cwd=self.work,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(),
                                cwd=self.work, stdin=subprocess.DEVNULL)


def start_launcher(home: Path) -> subprocess.Popen[bytes]:
    proc = spawn(launcher_socket(home))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", line
    return proc  # type: ignore[no-any-return]


def end_launcher(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def party(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneParty]:
    one = OneParty(tmp_path_factory.mktemp("launcher"))
    proc = start_launcher(one.home)
    one.launcher_pid = proc.pid  # type: ignore[attr-defined]
    try:
        yield one
    finally:
        end_launcher(proc)


def lines(out: str, key: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(key + " ")]


def test_a_command_runs_as_a_fork_with_the_clients_folder_environment_and_streams(
        party: OneParty) -> None:
    through = party.run("7", LAUNCH_TEST="through")
    alone = party.run("7", launcher=False, LAUNCH_TEST="alone")
    assert through.returncode == alone.returncode == 0, through.stderr + alone.stderr
    assert lines(through.stdout, "ppid") == [str(party.launcher_pid)]  # type: ignore[attr-defined]
    assert lines(alone.stdout, "ppid") != [str(party.launcher_pid)]  # type: ignore[attr-defined]
    for key, through_value, alone_value in (("value", "7", "7"), ("var", "through", "alone"),
                                            ("cwd", str(party.work), str(party.work)),
                                            ("nonumpy", "False", "False")):
        assert lines(through.stdout, key) == [through_value]
        assert lines(alone.stdout, key) == [alone_value]
    # MPyC's own log lines, configured by MPyC in the fork as in a process of its own.
    for out in (through.stdout, alone.stdout):
        assert "Start MPyC runtime" in out and "Stop MPyC" in out


def test_every_fork_draws_its_own_randomness(party: OneParty) -> None:
    draws = [lines(party.run("1").stdout, "draw") for _ in range(3)]
    assert all(len(d) == 1 for d in draws)
    # numpy's global generator (seeded when the launcher imported numpy) and Python's
    # random: a fork that inherited the launcher's state would repeat the same draws.
    assert len({d[0].split()[0] for d in draws}) == 3
    assert len({d[0].split()[1] for d in draws}) == 3


def test_mpyc_reads_each_commands_own_options(party: OneParty) -> None:
    """MPyC's package reads the command line when imported: the launcher imported it
    with its own, and a session reads its party's again."""
    no_numpy = party.run("1", "--no-numpy")
    assert lines(no_numpy.stdout, "nonumpy") == ["True"], no_numpy.stderr
    assert lines(party.run("1").stdout, "nonumpy") == ["False"]
    quiet = party.run("1", "--no-log")
    assert quiet.returncode == 0 and "Start MPyC runtime" not in quiet.stdout
    assert lines(quiet.stdout, "value") == ["1"]


def test_exit_status_and_errors_are_the_commands_own(party: OneParty) -> None:
    for args in (("1", "--exit", "3"), ("1",)):
        through, alone = party.run(*args), party.run(*args, launcher=False)
        assert through.returncode == alone.returncode
        assert through.stderr == alone.stderr
    assert through.returncode == 0
    assert alone.returncode == 0
    # A command error: the same line, the same exit code.
    missing = [subprocess.run([MPCID, "run", "--home", str(party.home), "--session",
                               str(party.root / "nope.json"), "--", str(party.program)],
                              capture_output=True, text=True, cwd=party.work, timeout=60,
                              env=party.env(launcher)) for launcher in (True, False)]
    assert missing[0].returncode == missing[1].returncode == 2
    assert missing[0].stderr == missing[1].stderr
    assert missing[0].stderr.startswith("error: cannot read session file")
    # Ended by a signal: the client ends by the same signal.
    assert party.run("1", "--die").returncode == -signal.SIGKILL


def wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if status == "Z":
            time.sleep(0.05)  # the launcher reaps it
            continue
        time.sleep(0.05)
    return False


def signals_as(ignored: tuple[int, ...]) -> Callable[[], None]:
    """For preexec_fn: the command comes in with these signals ignored and the others of
    SIGINT, SIGTERM, SIGHUP at their defaults (whatever this test process inherited)."""
    def set_up() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
    return set_up


def interrupted(party: OneParty, sig: int, launcher: bool, wait: str = "60",
                ignored: tuple[int, ...] = ()) -> tuple[int, str, int, int]:
    """Start a command that waits, signal it: its exit code, last stderr line, pid of
    the process that ran the program, and the client's pid."""
    proc = subprocess.Popen(party.argv("1", "--wait", wait), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=party.env(launcher),
                            cwd=party.work, stdin=subprocess.DEVNULL,
                            preexec_fn=signals_as(ignored))
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("pid "), first
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, (err.strip().splitlines() or [""])[-1], int(first.split()[1]), \
        proc.pid


def test_ctrl_c_and_sigterm_reach_the_command(party: OneParty) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        code, line, fork, client = interrupted(party, sig, True)
        alone = interrupted(party, sig, False)
        assert fork != client and alone[2] == alone[3]
        assert (code, line) == alone[:2]
        assert code == (130 if sig == signal.SIGINT else -sig)
        assert wait_gone(fork)


def test_signals_the_command_came_in_ignoring_stay_ignored(party: OneParty) -> None:
    """`nohup mpcid join ...` survives the hangup, through the launcher as on its own;
    so does a script's background job its Ctrl-C."""
    for sig in (signal.SIGHUP, signal.SIGINT):
        through = interrupted(party, sig, True, wait="1.5", ignored=(sig,))
        alone = interrupted(party, sig, False, wait="1.5", ignored=(sig,))
        assert through[0] == alone[0] == 0, (through, alone)
        assert through[2] != through[3]  # (it did run as a fork)


def test_a_client_that_is_killed_takes_its_command_along(party: OneParty) -> None:
    proc = party.start("1", "--wait", "60")
    assert proc.stdout is not None
    fork = int(proc.stdout.readline().split()[1])
    proc.kill()
    proc.communicate(timeout=10)
    assert wait_gone(fork), "the fork outlived its client"


def test_a_prompt_reads_the_clients_terminal(party: OneParty) -> None:
    """The fork has no controlling terminal, so reading the user's never stops it."""
    main, sub = pty.openpty()
    proc = subprocess.Popen(party.argv("5", "--ask"), stdin=sub, stdout=sub, stderr=sub,
                            env=party.env(), cwd=party.work, start_new_session=True)
    os.close(sub)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"name?" not in seen and time.monotonic() < deadline:
            seen += os.read(main, 4096)
        os.write(main, b"bob\n")
        while time.monotonic() < deadline:  # to the end (EIO once the command left)
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=30) == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"hello bob" in seen and b"value 5" in seen
    ppid = [line for line in seen.decode().splitlines() if line.startswith("ppid ")]
    assert ppid == [f"ppid {party.launcher_pid}"]  # type: ignore[attr-defined]


def raw_request(path: Path, payload: bytes, fds: list[int]) -> dict[str, object]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(10)
    try:
        sock.connect(str(path))
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] \
            if fds else []
        sock.sendmsg([payload], ancillary)
        answer = json.loads(sock.recv(4096))
        assert isinstance(answer, dict)
        return answer
    finally:
        sock.close()


def test_the_launcher_refuses_what_it_cannot_run_as_it_would_run(party: OneParty) -> None:
    path = launcher_socket(party.home)
    request = {"v": 1, "argv": ["mpcid", "run"], "cwd": "/", "env": {}, "path0": "",
               "stdio": [["utf-8", "strict", False, False]] * 3, "ignored": [],
               "interpreter": {"executable": "/usr/bin/other-python"}}
    answers = [raw_request(path, json.dumps(request).encode(), [0, 1, 2]),
               raw_request(path, json.dumps(request).encode(), []),
               raw_request(path, b"\xff not json", [0, 1, 2])]
    assert answers == [{"refused": "another Python or another copy of mpcid"},
                       {"refused": "malformed request"}, {"refused": "malformed request"}]
    # Another interpreter setting (here a warnings option): the command runs in its own
    # process instead, as it would without a launcher.
    other = subprocess.run([sys.executable, "-W", "ignore", "-m", "mpcid.broker",
                            *party.argv("2")[1:]], capture_output=True, text=True,
                           env=party.env(), cwd=party.work, timeout=60)
    assert other.returncode == 0, other.stderr
    assert lines(other.stdout, "value") == ["2"]
    assert lines(other.stdout, "ppid") == [str(os.getpid())]


def test_the_launcher_stops_with_its_parent_and_lets_commands_finish(tmp_path: Path) -> None:
    one = OneParty(tmp_path)
    parent = subprocess.Popen([sys.executable, "-c", f"""
import sys
sys.path[:0] = {sys.path!r}
from mpcid.broker.launcher_server import spawn
from mpcid.broker.launcher import launcher_socket
from pathlib import Path
proc = spawn(launcher_socket(Path({str(one.home)!r})))
print(proc.pid, proc.stdout.readline().decode().strip(), flush=True)
sys.stdin.read()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env())
    assert parent.stdout is not None and parent.stdin is not None
    pid, ready = parent.stdout.readline().split()
    assert ready == "ready"
    command = one.start("4", "--wait", "2")
    assert command.stdout is not None
    assert command.stdout.readline().startswith("pid ")
    parent.stdin.close()  # the launcher's parent (mpcid online) ends
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while launcher_socket(one.home).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not launcher_socket(one.home).exists()
    # No new command goes to it; the running one finishes.
    assert lines(one.run("3").stdout, "ppid") != [pid]
    out, err = command.communicate(timeout=30)
    assert command.returncode == 0, err
    assert lines(out, "value") == ["4"] and lines(out, "ppid") == [pid]
    assert wait_gone(int(pid)), "the launcher stayed after its last command"


def test_which_command_lines_go_to_a_launcher(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    sock = launcher_socket(home)
    sock.write_text("")  # exists: that is all the client checks before it tries
    environ = {"MPCID_HOME": str(home)}
    assert launcher_for(["join", "TOKEN"], environ) == sock
    assert launcher_for(["run", "--session", "s.json", "--", "p.py"], environ) == sock
    assert launcher_for(["--home", str(home), "join", "T"], {}) == sock
    assert launcher_for(["join", "T", f"--home={home}"], {}) == sock
    assert launcher_for(["join", "T", "--home", str(tmp_path)], environ) is None
    assert launcher_for(["run", "--", "p.py", "--home", str(tmp_path)], environ) == sock
    for argv in (["create-did"], ["online"], ["join", "--help"], ["--version"], ["-h"], [],
                 ["--bogus", "join"]):
        assert launcher_for(argv, environ) is None, argv
    assert launcher_for(["join", "T"], {**environ, "MPCID_NO_LAUNCHER": "1"}) is None
    sock.unlink()
    assert launcher_for(["join", "T"], environ) is None


def test_a_changed_module_file_makes_the_launcher_stale(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("x = 1\n")
    before = signature([str(module)])
    assert signature([str(module)]) == before
    module.write_text("x = 22\n")
    assert signature([str(module)]) != before


def test_online_keeps_a_launcher_that_joins_start_from(tmp_path: Path, node: str) -> None:
    """As a user runs it: `mpcid online` per party, then `mpcid join`; the joins are
    forks of their home's launcher, and the launcher leaves with `mpcid online`."""
    names = ("alice", "bob", "carol")
    dids = {}
    for name in names:
        made = mpcid("create-did", "--home", str(tmp_path / name), "--name", name)
        dids[name] = made.stdout.split()[-1]
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    onlines = {}
    try:
        for name in names:
            proc = subprocess.Popen([MPCID, "online", "--home", str(tmp_path / name),
                                     "--bootstrap", node, "--listen", "/ip4/127.0.0.1/tcp/0"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env())
            onlines[name] = proc
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("launcher "):
                    assert Path(line.split(" ", 1)[1].strip()) == \
                        launcher_socket(tmp_path / name)
                    break
            else:
                raise AssertionError(stop(proc)[1])
        made = mpcid("invite", "--home", str(tmp_path / "alice"), "--did", dids["bob"],
                     "--did", dids["carol"], "--program", str(program), "--bootstrap", node,
                     "--no-publish")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().splitlines()[-1]
        joins = [subprocess.Popen([MPCID, "join", token, "--home", str(tmp_path / name),
                                   "--program", str(program), "--", "9"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env()) for name in names]
        launchers = {launcher_pid(tmp_path / name) for name in names}
        assert len(launchers) == 3
        for proc in joins:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert lines(out, "value") == ["9"]
            assert int(lines(out, "ppid")[0]) in launchers
            assert "using the local agent" in out + err
    finally:
        for proc in onlines.values():
            stop(proc)
    for name in names:
        assert not launcher_socket(tmp_path / name).exists()
    for pid in launchers:
        assert wait_gone(pid)


def launcher_pid(home: Path) -> int:
    wanted = str(launcher_socket(home)).encode()
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mpcid.broker.launcher" in cmdline and wanted in cmdline:
            return int(entry.name)
    raise AssertionError(f"no launcher for {home}")


def test_salary_example_through_the_launcher(party: OneParty, tmp_path: Path) -> None:
    """An example program (not written for this test) gives the same result."""
    digest = hashlib.sha256(Path(SALARY).read_bytes()).hexdigest()
    session = json.loads(party.session.read_text())
    session.update(program_sha256=digest, session="salary")
    path = tmp_path / "salary.json"
    path.write_text(json.dumps(session))
    outs = [subprocess.run([MPCID, "run", "--home", str(party.home), "--session", str(path),
                            "--as", "a", "--", SALARY, "--salaries", "1234"],
                           capture_output=True, text=True, cwd=party.work, timeout=60,
                           env=party.env(launcher)) for launcher in (True, False)]
    assert [o.returncode for o in outs] == [0, 0], outs[0].stderr + outs[1].stderr
    results = [[line for line in o.stdout.splitlines() if "MPyC" not in line] for o in outs]
    assert results[0] == results[1] and any("1234" in line for line in results[0])
