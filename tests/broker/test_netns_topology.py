"""Tests of the NAT topology fixture (netns_topology.py beside this file) itself.

Parties a and b sit behind their own masquerading routers, c has a public address, and the
relay is the public namespace. Each namespace runs a tiny TCP server that answers every
connection with "<its name> <the peer address it saw>", so the tests see both whether a
connection goes through and, for NATed clients, which address the far side sees.

These need root, iproute2 and iptables; where they are missing the tests fail (not skip)
with the reason.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netns_topology import (RELAY, Topology, TopologyError, list_namespaces,  # noqa: E402
                            nat_topology, netns_available)

pytestmark = pytest.mark.integration

PYTHON = sys.executable
PORT = 7000
#: Seconds a client waits for a connection: success is milliseconds, failures are refused
#: or unreachable at once, so this only bounds a broken setup.
CONNECT_TIMEOUT = 2.0
#: Failures must come back faster than this (no silent drops waiting for a timeout).
FAST = 1.5
#: The servers stop by themselves after this many seconds at the latest.
SERVER_LIFETIME = 60

SERVER = """
import socket, sys, time
port, name, life = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
s.settimeout(0.2)
print("ready", flush=True)
deadline = time.monotonic() + life
while time.monotonic() < deadline:
    try:
        conn, peer = s.accept()
    except socket.timeout:
        continue
    with conn:
        conn.sendall(f"{name} {peer[0]}\\n".encode())
"""

CLIENT = """
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        print("ok", s.recv(256).decode().strip())
except OSError as e:
    print("fail", type(e).__name__, e.errno)
    sys.exit(1)
"""


def start_server(topo: Topology, name: str) -> subprocess.Popen[str]:
    proc = topo.popen(name, [PYTHON, "-c", SERVER, str(PORT), name, str(SERVER_LIFETIME)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    assert line.strip() == "ready", (f"server in {name} did not start: {line!r}, exit "
                                     f"{proc.poll()}")
    return proc


def connect(topo: Topology, src: str, host: str) -> tuple[bool, str, float]:
    """Connect from party src to host:PORT: (succeeded, client output, seconds taken)."""
    start = time.monotonic()
    result = topo.run(src, [PYTHON, "-c", CLIENT, host, str(PORT), str(CONNECT_TIMEOUT)],
                      check=False, timeout=CONNECT_TIMEOUT + 10)
    elapsed = time.monotonic() - start
    return result.returncode == 0, (result.stdout + result.stderr).strip(), elapsed


def assert_blocked(topo: Topology, src: str, host: str) -> None:
    ok, out, elapsed = connect(topo, src, host)
    assert not ok, f"{src} reached {host}:{PORT}: {out}"
    assert out.startswith("fail"), out
    assert elapsed < FAST, f"{src} -> {host} took {elapsed:.2f} s to fail: {out}"


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    reason = netns_available()
    if reason is not None:
        pytest.fail(f"network namespaces unavailable: {reason}", pytrace=False)
    with nat_topology("tnat", ["a", "b", "c"], public=["c"]) as t:
        for name in (RELAY, "a", "b", "c"):
            start_server(t, name)
        yield t


def test_netns_available() -> None:
    assert netns_available() is None


def test_names_and_addresses(topo: Topology) -> None:
    x = topo.subnet
    assert topo.ip(RELAY) == f"10.{x}.0.1" and topo.ns(RELAY) == topo.public_ns
    assert topo.ip("a") == "192.168.1.2" and topo.public_ip("a") == f"10.{x}.0.2"
    assert topo.ip("b") == "192.168.2.2" and topo.public_ip("b") == f"10.{x}.0.3"
    assert topo.ip("c") == topo.public_ip("c") == f"10.{x}.0.4"
    assert topo.exec_args("a") == ["ip", "netns", "exec", topo.ns("a")]
    assert len(set(topo.namespaces)) == 6
    assert all(ns.startswith(topo.base) and len(ns) <= 15 for ns in topo.namespaces)
    assert set(topo.namespaces) <= set(list_namespaces())
    assert topo.is_public("c") and not topo.is_public("a")
    with pytest.raises(TopologyError):
        topo.router_ns("c")
    with pytest.raises(TopologyError):
        topo.ns("nobody")
    # lo is up everywhere: each party reaches its own server on 127.0.0.1.
    for name in (RELAY, "a", "b", "c"):
        ok, out, _ = connect(topo, name, "127.0.0.1")
        assert ok and out == f"ok {name} 127.0.0.1", out


def test_nated_party_connects_out_through_masquerade(topo: Topology) -> None:
    ok, out, _ = connect(topo, "a", topo.ip(RELAY))
    # The relay sees a's router, never a's private address.
    assert ok and out == f"ok {RELAY} {topo.public_ip('a')}", out
    ok, out, _ = connect(topo, "a", topo.ip("c"))
    assert ok and out == f"ok c {topo.public_ip('a')}", out
    ok, out, _ = connect(topo, "b", topo.ip(RELAY))
    assert ok and out == f"ok {RELAY} {topo.public_ip('b')}", out


def test_public_parties_reach_each_other(topo: Topology) -> None:
    ok, out, _ = connect(topo, "c", topo.ip(RELAY))
    assert ok and out == f"ok {RELAY} {topo.ip('c')}", out
    ok, out, _ = connect(topo, RELAY, topo.ip("c"))
    assert ok and out == f"ok c {topo.ip(RELAY)}", out


def test_nobody_outside_reaches_a_nated_party(topo: Topology) -> None:
    for src in (RELAY, "c"):
        assert_blocked(topo, src, topo.ip("a"))          # no route to 192.168.1.0/24
        assert_blocked(topo, src, topo.public_ip("a"))   # the router forwards no port


def test_nated_parties_do_not_reach_each_other_directly(topo: Topology) -> None:
    assert_blocked(topo, "a", topo.ip("b"))
    assert_blocked(topo, "a", topo.public_ip("b"))
    assert_blocked(topo, "b", topo.ip("a"))
    assert_blocked(topo, "b", topo.public_ip("a"))


def _cmdlines_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True,
                          text=True, timeout=10).stdout


class _Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["normal", "exception", "keyboardinterrupt"])
def test_exit_leaves_nothing_behind(ending: str) -> None:
    reason = netns_available()
    if reason is not None:
        pytest.fail(f"network namespaces unavailable: {reason}", pytrace=False)
    sleeper = [PYTHON, "-c", "import sys, time; time.sleep(60)"]
    procs: list[subprocess.Popen[bytes]] = []
    raised: dict[str, type[BaseException]] = {"exception": _Boom,
                                              "keyboardinterrupt": KeyboardInterrupt}
    try:
        with nat_topology("tgone", ["a", "b"], public=["b"]) as t:
            base = t.base
            marker = f"{base}-marker"
            procs.append(t.popen("a", [*sleeper, marker]))
            procs.append(t.popen(RELAY, ["sh", "-c", f'{" ".join(sleeper[:2])} '
                                         f'"{sleeper[2]}" {marker} & wait']))
            # A daemon that leaves the session it was started in: only the sweep of the
            # namespace's processes can find it.
            t.run("b", ["sh", "-c", f'setsid {PYTHON} -c "{sleeper[2]}" {marker} '
                                    f'</dev/null >/dev/null 2>&1 &'])
            deadline = time.monotonic() + 5
            while len(_cmdlines_with(marker)) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(_cmdlines_with(marker)) >= 4, _cmdlines_with(marker)
            assert any(ns.startswith(base) for ns in list_namespaces())
            if ending in raised:
                raise raised[ending]()
    except (_Boom, KeyboardInterrupt) as exc:
        assert ending in raised and isinstance(exc, raised[ending])
    else:
        assert ending == "normal"
    assert all(p.poll() is not None for p in procs)
    deadline = time.monotonic() + 3
    while _cmdlines_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)   # the orphaned daemon is reaped by init, asynchronously
    assert _cmdlines_with(marker) == []
    assert [ns for ns in list_namespaces() if ns.startswith(base)] == []
    assert base not in _links()
    with pytest.raises(TopologyError):
        t.popen("a", ["true"])
