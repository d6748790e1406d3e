"""Shared by the broker tests that run `mpcid` as real processes: the console script, a
clean environment, and a local DHT node that is always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MPCID = str(Path(sys.executable).parent / "mpcid")
ROOT = Path(__file__).resolve().parents[2]
SALARY = str(ROOT / "examples" / "salary_sum.py")


def env() -> dict[str, str]:
    """The test's environment without anything that would reach the user's keystore or
    change what mpcid does."""
    return {k: v for k, v in os.environ.items()
            if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_BOOTSTRAP")}


def mpcid(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MPCID, *args], capture_output=True, text=True, env=env(),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    """Signal ``proc``, wait for it (kill it after 15 s), close its pipes; its exit code
    and what is left of its stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr is not None and not proc.stderr.closed else ""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode, err


@contextmanager
def running_node(home: Path) -> Iterator[str]:
    """A `mpcid node` on loopback; yields its multiaddr, stops it afterwards."""
    proc = subprocess.Popen([MPCID, "node", "--home", str(home), "--listen",
                             "/ip4/127.0.0.1/tcp/0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env())
    assert proc.stdout is not None
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("/ip4/127.0.0.1/tcp/"), f"node did not start: {address!r}"
        yield address
    finally:
        stop(proc)
