"""Run one MPC party in this process and report its resource use (used by mpyc_bench.py).

    python party_launcher.py REPORT.json plain|ssl PROGRAM.py [ARGS...]
    python party_launcher.py REPORT.json mpcid [mpcid CLI ARGS...]

The report holds ``sent`` (bytes this process handed to its sockets: the party's traffic,
TLS or Noise framing included, TCP/IP headers not), ``maxrss_kib`` (peak resident memory)
CPU seconds (user + system) and the exit code. Sent bytes are counted by wrapping ``socket.socket``'s send methods,
which every asyncio transport (plain, SSL, mpcid) ends in.
"""

from __future__ import annotations

import json
import resource
import runpy
import socket
import sys
from typing import Any


SENT = [0]


def count_socket_sends() -> None:
    def wrap(name: str) -> None:
        original = getattr(socket.socket, name)

        def counted(self: socket.socket, data: Any, *args: Any) -> Any:
            result = original(self, data, *args)
            if name == "sendmsg":
                SENT[0] += result
            elif name == "sendall":
                SENT[0] += memoryview(data).nbytes
            else:
                SENT[0] += result
            return result

        setattr(socket.socket, name, counted)

    for name in ("send", "sendall", "sendmsg"):
        wrap(name)


def peak_rss_kib() -> int:
    """VmHWM of this process image. (ru_maxrss would not do: Linux carries it across
    execve, so it reports the benchmark parent's size for small parties.)"""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    report, mode, *args = sys.argv[1:]
    count_socket_sends()
    code: object = 0
    try:
        if mode == "mpcid":
            from mpcid.broker.cli import main as mpcid_main

            mpcid_main(args)
        else:
            sys.argv = args
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdout.flush()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(report, "w") as fh:
            json.dump({"sent": SENT[0], "cpu": usage.ru_utime + usage.ru_stime,
                       "maxrss_kib": peak_rss_kib(), "minflt": usage.ru_minflt,
                       "exit": code if isinstance(code, int) else 1}, fh)
    sys.exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    main()
