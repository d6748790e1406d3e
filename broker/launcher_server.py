"""The launcher process: imports what a session command needs once, then forks for each
(module docstring of :mod:`mpcid.broker.launcher`; ``specs/discovery.md`` 10).

    python -m mpcid.broker.launcher SOCKET [--parent PID]

It prints ``ready`` on its standard output when it listens (or ``shared`` when another
launcher already serves SOCKET, and exits), and then stops when its parent (``mpcid
online``) does, or on SIGTERM: it takes no more commands, removes its socket, and exits
when the commands it runs have ended (they are never killed for it).

The launcher is single-threaded and runs no event loop, so that a fork starts from a
clean interpreter: it imports modules, listens and forks, nothing else. What a fork
changes before it runs the command: standard streams (the client's, opened as the
client had them), working folder, environment, ``sys.argv`` and ``sys.path``, signal
dispositions, and the random state that imports may have drawn (numpy's global
generator; Python's own ``random`` is reseeded at every fork by Python itself).
"""

from __future__ import annotations

import array
import gc
import importlib
import importlib.util
import io
import json
import logging
import os
import selectors
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .agent import listen_unix, peer_uid, received_fds
from .launcher import MAX_CHILDREN, MAX_REQUEST, VERSION, interpreter

#: What a session command imports before MPyC starts (the CLI and its session commands,
#: credentials, admission, the channel); pyld and MPyC come through their own loaders.
PRELOAD = ("mpcid.broker.cli", "mpcid.broker.cli.sessions", "mpcid.broker.cli.run",
           "mpcid.broker.cli.programs", "mpcid.broker.join", "mpcid.broker.mpyc_runtime",
           "mpcid.broker.admission", "mpcid.broker.admission_channel", "mpcid.broker.agent",
           "mpcid.broker.verifier", "mpcid.broker.credential_choice",
           "mpcid.broker.transcript", "mpcid.broker.progress", "mpcid.identity.keystore",
           "mpcid.identity.credentials", "mpcid.identity.policy", "mpcid.identity.contacts",
           "mpcid.identity.statuslist")


class _Stop(Exception):
    """SIGTERM, or the parent ended: take no more commands."""


def serve_main(argv: list[str]) -> None:
    parent = None
    if len(argv) == 3 and argv[1] == "--parent" and argv[2].isdigit():
        parent = int(argv[2])
    elif len(argv) != 1:
        print("usage: python -m mpcid.broker.launcher SOCKET [--parent PID]", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(Path(argv[0]), parent))


def preload() -> list[str]:
    """Import what a session command needs; the files whose change makes the launcher
    stale (every module file of mpcid and MPyC now loaded, and MPyC's runtime)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for name in PRELOAD:
        importlib.import_module(name)
    from mpcid.broker.mpyc_runtime import preload_mpyc
    from mpcid.identity.jsonld import load_pyld

    load_pyld()
    preload_mpyc()
    # Whatever an import configured (a handler from logging.basicConfig): undone, so that
    # MPyC configures logging in the fork as it would in a fresh process.
    root.handlers[:] = handlers
    root.setLevel(level)
    files = {getattr(module, "__file__", None) for name, module in list(sys.modules.items())
             if name.split(".")[0] in ("mpcid", "mpyc")}
    runtime = importlib.util.find_spec("mpyc.runtime")
    files.add(runtime.origin if runtime else None)
    return sorted(f for f in files if f)


def signature(files: list[str]) -> list[tuple[str, int, int]]:
    out = []
    for name in files:
        try:
            st = os.stat(name)
            out.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((name, 0, -1))
    return out


def serve(path: Path, parent: int | None) -> int:
    try:
        os.setsid()  # no controlling terminal: a fork may read the client's terminal
    except OSError:
        pass
    files = preload()
    baseline = signature(files)
    listener = listen_unix(path, 16)
    if listener is None:
        print("shared", flush=True)
        return 0
    gc.collect()
    gc.freeze()  # the forks' collector leaves the imported objects (and their pages) alone
    launcher = Launcher(listener, path, files, baseline)
    if parent is not None:
        try:
            launcher.watch_parent(os.pidfd_open(parent))
        except OSError:
            listener.close()
            path.unlink(missing_ok=True)
            return 0
    print("ready", flush=True)
    _quiet_stdio()
    return launcher.run()


def _quiet_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


@dataclass
class Command:
    """One client's connection, and the fork running its command once it runs."""

    conn: socket.socket
    pid: int | None = None
    pidfd: int | None = None
    hung_up: bool = False


class Launcher:
    def __init__(self, listener: socket.socket, path: Path, files: list[str],
                 baseline: list[tuple[str, int, int]]) -> None:
        self.listener = listener
        self.path = path
        self.files = files
        self.baseline = baseline
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.commands: dict[int, Command] = {}  # by connection fd
        self.parent_fd: int | None = None
        self.stopping = False
        self.identity = json.loads(json.dumps(interpreter()))

    def watch_parent(self, pidfd: int) -> None:
        self.parent_fd = pidfd
        self.selector.register(pidfd, selectors.EVENT_READ, "parent")

    def run(self) -> int:
        def stop(signum: int, frame: Any) -> None:
            raise _Stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the user's Ctrl-C is not for us
        while not self.stopping or self.commands:
            try:
                events = self.selector.select()
            except _Stop:
                self.stop_listening()
                continue
            for key, _ in events:
                try:
                    self.handle(key)
                except _Stop:
                    self.stop_listening()
        return 0

    def handle(self, key: selectors.SelectorKey) -> None:
        if key.data == "accept":
            self.accept()
        elif key.data == "parent":
            self.stop_listening()
        elif key.data[0] == "conn":
            self.readable(self.commands[key.data[1]])
        else:  # ("exit", fd)
            self.reap(self.commands[key.data[1]])

    def stop_listening(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.selector.unregister(self.listener)
        self.listener.close()
        if self.parent_fd is not None:
            self.selector.unregister(self.parent_fd)
            os.close(self.parent_fd)
            self.parent_fd = None
        self.path.unlink(missing_ok=True)
        for command in list(self.commands.values()):
            if command.pid is None:
                self.drop(command)

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if peer_uid(conn) != os.geteuid():
            conn.close()
            return
        conn.setblocking(False)
        command = Command(conn)
        self.commands[conn.fileno()] = command
        self.selector.register(conn, selectors.EVENT_READ, ("conn", conn.fileno()))

    def readable(self, command: Command) -> None:
        if command.pid is not None:
            # The only thing a client sends after its request is its end.
            try:
                data = command.conn.recv(1)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data and not command.hung_up:
                command.hung_up = True
                self.selector.unregister(command.conn)
                _kill(command.pid, signal.SIGTERM)
            return
        fds: list[int] = []
        try:
            data, ancdata, _, _ = command.conn.recvmsg(
                MAX_REQUEST + 1, socket.CMSG_SPACE(3 * array.array("i").itemsize))
            fds = received_fds(ancdata)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            request, refusal = self.check(data, fds)
            if request is None:
                self.answer(command, {"refused": refusal})
                self.drop(command)
                return
            self.start(command, request, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def check(self, data: bytes, fds: list[int]) -> tuple[dict[str, Any] | None, str]:
        if self.stopping:
            return None, "stopping"
        if len(fds) != 3 or not data or len(data) > MAX_REQUEST:
            return None, "malformed request"
        try:
            request = json.loads(data)
        except ValueError:
            return None, "malformed request"
        if not isinstance(request, dict) or request.get("v") != VERSION \
                or not _well_formed(request):
            return None, "malformed request"
        if request["interpreter"] != self.identity:
            return None, "another Python or another copy of mpcid"
        if sum(1 for c in self.commands.values() if c.pid is not None) >= MAX_CHILDREN:
            return None, "busy"
        if signature(self.files) != self.baseline:
            self.stop_listening()
            return None, "mpcid or MPyC changed on disk since the launcher started"
        return request, ""

    def start(self, command: Command, request: dict[str, Any], fds: list[int]) -> None:
        try:
            gone = command.conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            gone = False
        except OSError:
            gone = True
        if gone:  # the client gave up waiting and runs the command itself
            self.drop(command)
            return
        pid = os.fork()
        if pid == 0:
            self.close_all()
            _run_child(request, fds)
        command.pid = pid
        try:
            command.pidfd = os.pidfd_open(pid)
        except OSError:  # pragma: no cover - Linux < 5.3 would not have got here
            command.pidfd = None
        if command.pidfd is not None:
            self.selector.register(command.pidfd, selectors.EVENT_READ,
                                   ("exit", command.conn.fileno()))
        self.answer(command, {"pid": pid})

    def close_all(self) -> None:
        """In a fork: close everything of the launcher's (objects closed, so that
        nothing closes their numbers again once the command reuses them)."""
        self.selector.close()
        self.listener.close()
        for fd in (self.parent_fd, *(c.pidfd for c in self.commands.values())):
            if fd is not None:
                os.close(fd)
        for command in self.commands.values():
            command.conn.close()

    def reap(self, command: Command) -> None:
        assert command.pid is not None
        try:
            _, status = os.waitpid(command.pid, 0)
        except ChildProcessError:
            status = 1 << 8
        if os.WIFSIGNALED(status):
            self.answer(command, {"signal": os.WTERMSIG(status)})
        else:
            self.answer(command, {"exit": os.waitstatus_to_exitcode(status)})
        self.drop(command)

    def answer(self, command: Command, message: dict[str, Any]) -> None:
        try:
            command.conn.send(json.dumps(message).encode())
        except OSError:
            pass

    def drop(self, command: Command) -> None:
        fd = command.conn.fileno()
        if command.pidfd is not None:
            self.selector.unregister(command.pidfd)
            os.close(command.pidfd)
            command.pidfd = None
        if not command.hung_up:
            self.selector.unregister(command.conn)
        command.conn.close()
        self.commands.pop(fd, None)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _well_formed(request: dict[str, Any]) -> bool:
    argv, env, stdio = request.get("argv"), request.get("env"), request.get("stdio")
    return (isinstance(argv, list) and len(argv) >= 2 and all(isinstance(a, str) for a in argv)
            and isinstance(request.get("cwd"), str) and isinstance(request.get("path0"), str)
            and isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
            and isinstance(stdio, list) and len(stdio) == 3
            and all(isinstance(s, list) and len(s) == 4 and isinstance(s[0], str)
                    and isinstance(s[1], str) for s in stdio)
            and isinstance(request.get("ignored"), list)
            and all(isinstance(n, int) for n in request["ignored"])
            and isinstance(request.get("interpreter"), dict))


# --- in the fork ----------------------------------------------------------------------------


def _run_child(request: dict[str, Any], fds: list[int]) -> None:
    """Become the client's command; never returns."""
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            # As Python sets them up: ignored if the client came in ignoring them.
            signal.signal(signum, signal.SIG_IGN if signum in request["ignored"] else
                          signal.default_int_handler if signum == signal.SIGINT else
                          signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        try:
            os.chdir(request["cwd"])
        except OSError:
            os.write(2, b"error: the working folder is gone (run the command from an "
                        b"existing folder)\n")
            os._exit(2)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        sys.path[:] = [request["path0"], *request["interpreter"]["path"]]
        _reopen_stdio(request["stdio"])
        _reseed()
        code = _run_command(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - the fork must never return into the launcher
        # As an uncaught exception ends a process: its traceback, exit status 1.
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        _leave(code)


def _reopen_stdio(stdio: list[list[Any]]) -> None:
    """sys.stdin/stdout/stderr on the client's streams, buffered as the client's were."""
    for fd, (name, (encoding, errors, line, through)) in enumerate(
            zip(("stdin", "stdout", "stderr"), stdio)):
        try:
            raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        except OSError:
            continue
        buffer: Any
        if fd == 0:
            buffer = io.BufferedReader(raw)
        elif through:
            buffer = raw
        else:
            buffer = io.BufferedWriter(raw)
        setattr(sys, name, io.TextIOWrapper(buffer, encoding=encoding, errors=errors,
                                            line_buffering=bool(line),
                                            write_through=bool(through)))
        setattr(sys, f"__{name}__", getattr(sys, name))


def _reseed() -> None:
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    import tempfile

    tempfile.tempdir = None  # found again from the client's TMPDIR


def _run_command(args: list[str]) -> int:
    from mpcid.broker.cli import main

    try:
        main(args)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _leave(code: int) -> None:
    """End the fork as the interpreter ends a process: wait for its threads, run its
    exit functions, flush its streams; but never return into the launcher's loop."""
    try:
        shutdown = getattr(__import__("threading"), "_shutdown", None)
        if shutdown is not None:
            shutdown()
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


# --- in mpcid online ------------------------------------------------------------------------


def spawn(path: Path) -> Any:
    """Start a launcher for ``path`` beside this process (``mpcid online``): it stops when
    this process ends. Its standard output says ``ready`` (or ``shared``) once it
    listens; nothing else is ever written there."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
         "-m", "mpcid.broker.launcher", str(path), "--parent", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)
