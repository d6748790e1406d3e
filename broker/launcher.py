"""The launcher: session commands start as forks of a process that has imported them.

A party's ``mpcid join`` spends most of its CPU before MPyC starts on importing: the
command line, credentials and JSON-LD, the channel's cryptography, numpy and MPyC
(~0.3 CPU-seconds per party, on every join, for the same modules). ``mpcid online`` keeps
a *launcher* beside its agent: a process that has imported all of that once, listens on
``HOME/launcher.sock``, and forks for each ``mpcid join`` or ``mpcid run`` started with
that home. The fork becomes the command: it gets the command's arguments, working folder,
environment and standard streams, runs it as the ``mpcid`` process would, and its exit
status (or the signal that ended it) becomes the status of the ``mpcid`` process the user
started, which waits for it and forwards Ctrl-C, SIGTERM and SIGHUP to it. Nothing is
imported twice and nothing is shared between the forks but read-only module code: each
fork sets up its own MPyC runtime, keys, event loop and connections.

The ``mpcid`` entry point (:func:`main`) imports nothing beyond the standard library
before it knows whether a launcher serves the command. It runs the command in its own
process, as before, when there is no launcher, when ``MPCID_NO_LAUNCHER`` is set, for
every other command, and whenever the launcher does not take the command: it answers
no, is busy, runs another Python or another copy of mpcid, or its modules changed on disk
since it imported them (it then stops taking commands). Either way the command behaves
the same; the launcher only saves the imports.

Protocol (``specs/discovery.md`` 10): one ``SOCK_SEQPACKET`` connection per command.
The client sends one JSON request (at most :data:`MAX_REQUEST` bytes) with its three
standard streams as ``SCM_RIGHTS``; the launcher answers ``{"pid": N}`` once the fork
runs, or ``{"refused": reason}``, then ``{"exit": code}`` or ``{"signal": number}`` when
the fork ends. Only processes of the launcher's own user may connect (``SO_PEERCRED``).
A client that goes away (killed, or its terminal closed) has its fork sent SIGTERM.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

SOCKET_NAME = "launcher.sock"
MAX_REQUEST = 256 * 1024
"""Bytes of a request (arguments and environment)."""
MAX_CHILDREN = 64
"""Commands a launcher runs at once; more run in their own processes."""
HELLO_TIMEOUT = 30.0
"""Seconds the client waits for the launcher to fork its command (then it runs the
command itself; the launcher forks only for a client still connected, and stops a fork
whose client has gone)."""
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ROUTED = frozenset({"join", "run"})
"""Commands that start through a launcher: the ones that run a session."""
VERSION = 1
_STREAMS = ("stdin", "stdout", "stderr")


def launcher_socket(home: Path) -> Path:
    """Where the launcher of the keystore at ``home`` listens."""
    return home / SOCKET_NAME


# --- the client: the mpcid entry point ----------------------------------------------------


def main() -> None:
    """The ``mpcid`` command: a session command through the local launcher when one
    serves its home, any command in this process otherwise."""
    argv = sys.argv[1:]
    path = launcher_for(argv, os.environ)
    if path is not None:
        status = through_launcher(path, sys.argv)
        if status is not None:
            exit_like(status)
    from .cli import main as cli_main

    cli_main()


def launcher_for(argv: list[str], environ: Any) -> Path | None:
    """The launcher socket that may run this command line, or None (run it here).

    Read before click is imported, so only what decides that: the command (the first
    argument that is not a group option) and the home (``--home``, else ``MPCID_HOME``,
    else ``~/.mpcid``), among the arguments before a ``--``."""
    if environ.get("MPCID_NO_LAUNCHER") or not hasattr(os, "fork") \
            or not hasattr(socket, "SCM_RIGHTS") or not hasattr(os, "pidfd_open"):
        return None
    args = argv[:argv.index("--")] if "--" in argv else argv
    home = environ.get("MPCID_HOME") or None
    command = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--home" and i + 1 < len(args):
            home, i = args[i + 1], i + 2
            continue
        if arg.startswith("--home="):
            home = arg.split("=", 1)[1]
        elif arg in ("-h", "--help", "--version"):
            return None
        elif command is None:
            if arg.startswith("-"):
                return None
            command = arg
        i += 1
    if command not in ROUTED:
        return None
    base = Path(os.path.expanduser(home or "~/.mpcid"))
    path = launcher_socket(Path(os.path.abspath(base)))
    if len(os.fsencode(path)) >= 108:
        return None
    return path if path.exists() else None


def interpreter() -> dict[str, Any]:
    """What a launcher must share with a client to run its command as it would run."""
    import mpcid.broker as package

    return {"executable": os.path.realpath(sys.executable), "prefix": sys.prefix,
            "path": sys.path[1:],
            "flags": [getattr(sys.flags, name) for name in sys.flags.__match_args__],
            "warnoptions": sys.warnoptions, "xoptions": sorted(map(str, sys._xoptions)),
            "package": os.path.dirname(os.path.abspath(package.__file__ or ""))}


def _stdio() -> list[list[Any]]:
    out = []
    for name in _STREAMS:
        stream = getattr(sys, name)
        out.append([getattr(stream, "encoding", None) or "utf-8",
                    getattr(stream, "errors", None) or "strict",
                    bool(getattr(stream, "line_buffering", False)),
                    bool(getattr(stream, "write_through", False))])
    return out


def through_launcher(path: Path, argv: list[str]) -> int | None:
    """Run ``argv`` as a fork of the launcher at ``path``: its exit code, the negated
    signal that ended it, or None when the launcher did not take it (run it here)."""
    # Signals this process came in ignoring (nohup's SIGHUP, a script's background job's
    # SIGINT) stay ignored: the fork ignores them too, and they are not forwarded.
    ignored = [int(s) for s in _FORWARDED if signal.getsignal(s) == signal.SIG_IGN]
    try:
        request = json.dumps({
            "v": VERSION, "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
            "path0": sys.path[0] if sys.path else "", "stdio": _stdio(),
            "ignored": ignored, "interpreter": interpreter()}).encode()
    except (OSError, ValueError):
        return None
    if len(request) > MAX_REQUEST:
        return None
    # A signal before the fork runs is kept, then forwarded to it (or, if the command runs
    # here after all, delivered here once the default handling is back).
    target: list[int] = []
    pending: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        if not target:
            pending.append(signum)
            return
        try:
            os.kill(target[0], signum)
        except ProcessLookupError:
            pass

    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED
                if signum not in ignored}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.settimeout(HELLO_TIMEOUT)
        sock.connect(str(path))
        sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", [0, 1, 2]))])
        answer = _receive(sock)
    except OSError:
        answer = None
    pid = answer.get("pid") if answer else None
    if not isinstance(pid, int) or pid <= 0:
        if answer and os.environ.get("MPCID_DEBUG"):
            print(f"mpcid: the launcher did not take the command: {answer.get('refused')}",
                  file=sys.stderr)
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for kept in pending:
            signal.raise_signal(kept)
        return None
    target.append(pid)
    for kept in pending:
        forward(kept, None)
    return _wait(sock, pid)


def _wait(sock: socket.socket, pid: int) -> int:
    sock.settimeout(None)
    try:
        answer = _receive(sock)
    except OSError:
        answer = None
    finally:
        sock.close()
    if answer is not None and isinstance(answer.get("exit"), int):
        return int(answer["exit"])
    if answer is not None and isinstance(answer.get("signal"), int):
        return -int(answer["signal"])
    print("error: the local launcher stopped while it ran this command (it may still run "
          f"as process {pid}; run the command again)", file=sys.stderr)
    return 1


def _receive(sock: socket.socket) -> dict[str, Any] | None:
    data = sock.recv(4096)
    if not data:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def exit_like(status: int) -> None:
    """Leave as the command's process left: with its exit code, or by its signal."""
    sys.stdout.flush()
    sys.stderr.flush()
    if status < 0:
        try:
            signal.signal(-status, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP keep theirs anyway
            pass
        os.kill(os.getpid(), -status)
        status = 128 - status
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover - the launcher process itself
    from .launcher_server import serve_main

    serve_main(sys.argv[1:])
