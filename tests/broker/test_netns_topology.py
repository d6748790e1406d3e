"""Tests of the NAT topology fixture (netns_topology.py beside this file) itself.

Parties a and b sit behind their own masquerading routers, c has a public address, and the
relay is the public namespace. Each namespace runs a tiny TCP server that answers every
connection with "<its name> <the peer address it saw>", so the tests see both whether a
connection goes through and, for NATed clients, which address the far side sees.

A second topology proves, with plain sockets, the kernel mechanism TCP hole punching will
use: two hosts behind port-preserving NATs connect to each other's router address at about
the same time (simultaneous open) and talk; behind NATs that map ports at random the same
fails. The relay's byte counter is checked against a known transfer.

These need root, iproute2 and iptables; where they are missing the tests fail (not skip)
with the reason.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netns_topology import (PRESERVE, RANDOM, RELAY, Topology,  # noqa: E402
                            TopologyError, list_namespaces, nat_topology, netns_available,
                            require_netns)

pytestmark = pytest.mark.integration

PYTHON = sys.executable
PORT = 7000
#: Seconds a client waits for a connection: success is milliseconds, failures are refused
#: or unreachable at once, so this only bounds a broken setup.
CONNECT_TIMEOUT = 2.0
#: Failures must come back faster than this (no silent drops waiting for a timeout).
FAST = 1.5
#: Seconds a client waits where the routers are expected to drop its SYN silently.
DROP_TIMEOUT = 1.0
ENETUNREACH, ECONNREFUSED = 101, 111
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

#: One side of a TCP simultaneous open: bind the local port (SO_REUSEADDR, SO_REUSEPORT),
#: wait for the agreed wall-clock start, connect to the peer's router address and the same
#: port (a new socket after each error, until the deadline), then swap a line. Prints JSON.
#: (With the stateful routers a connect can only time out, so one attempt is the rule.)
PUNCH = """
import json, socket, sys, time
name, peer, port, start, limit = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                  float(sys.argv[4]), float(sys.argv[5]))
time.sleep(max(0.0, start - time.time()))
t0 = time.monotonic()
deadline = t0 + limit
report = {"name": name, "ok": False, "errors": {}}   # error name -> count
while time.monotonic() < deadline:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        s.connect((peer, port))
    except OSError as e:
        report["errors"][type(e).__name__] = report["errors"].get(type(e).__name__, 0) + 1
        s.close()
        time.sleep(0.05)
        continue
    report["connected"] = time.monotonic() - t0
    report["peer"] = list(s.getpeername())
    s.settimeout(3.0)
    s.sendall(f"hello from {name}\\n".encode())
    data = b""
    while not data.endswith(b"\\n"):
        chunk = s.recv(256)
        if not chunk:
            break
        data += chunk
    report.update(ok=True, heard=data.decode().strip())
    s.close()
    break
report["elapsed"] = time.monotonic() - t0
print(json.dumps(report), flush=True)
sys.exit(0 if report["ok"] else 1)
"""

#: Accepts one connection on host:port, reads to EOF, answers the byte count, exits.
SINK = """
import socket, sys
host, port, life = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(1)
s.settimeout(life)
print("ready", flush=True)
conn, _ = s.accept()
conn.settimeout(life)
total = 0
while chunk := conn.recv(65536):
    total += len(chunk)
conn.sendall(f"{total}\\n".encode())
conn.close()
"""

#: Sends n bytes to host:port, half-closes, prints the answer.
SEND = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with socket.create_connection((host, port), timeout=10) as s:
    s.settimeout(10)
    s.sendall(b"x" * n)
    s.shutdown(socket.SHUT_WR)
    print(s.makefile().readline().strip())
"""


def start_ready(topo: Topology, name: str, argv: list[str]) -> subprocess.Popen[str]:
    """Start argv in the party and wait for it to print "ready"."""
    proc = topo.popen(name, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    assert line.strip() == "ready", (f"server in {name} did not start: {line!r}, exit "
                                     f"{proc.poll()}")
    return proc


def start_server(topo: Topology, name: str) -> subprocess.Popen[str]:
    return start_ready(topo, name, [PYTHON, "-c", SERVER, str(PORT), name,
                                    str(SERVER_LIFETIME)])


def connect(topo: Topology, src: str, host: str, timeout: float = CONNECT_TIMEOUT
            ) -> tuple[bool, str, float]:
    """Connect from party src to host:PORT: (succeeded, client output, seconds taken)."""
    start = time.monotonic()
    result = topo.run(src, [PYTHON, "-c", CLIENT, host, str(PORT), str(timeout)],
                      check=False, timeout=timeout + 10)
    elapsed = time.monotonic() - start
    return result.returncode == 0, (result.stdout + result.stderr).strip(), elapsed


def assert_blocked(topo: Topology, src: str, host: str, errno: int | None = None) -> None:
    """The connection fails at once (refused, unreachable), with errno if given."""
    ok, out, elapsed = connect(topo, src, host)
    assert not ok, f"{src} reached {host}:{PORT}: {out}"
    assert out.startswith("fail"), out
    if errno is not None:
        assert out.endswith(f" {errno}"), out
    assert elapsed < FAST, f"{src} -> {host} took {elapsed:.2f} s to fail: {out}"


def assert_dropped(topo: Topology, src: str, host: str) -> None:
    """The connection neither succeeds nor is refused: the SYN vanishes, it times out."""
    ok, out, elapsed = connect(topo, src, host, timeout=DROP_TIMEOUT)
    assert not ok, f"{src} reached {host}:{PORT}: {out}"
    assert out == "fail TimeoutError None", out
    assert elapsed >= DROP_TIMEOUT, f"{src} -> {host} failed after {elapsed:.2f} s: {out}"


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
    assert topo.stateful and topo.nat_mode("a") == topo.nat_mode("b") == PRESERVE
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
        assert_blocked(topo, src, topo.ip("a"), ENETUNREACH)  # no route to 192.168.1.0/24
        assert_dropped(topo, src, topo.public_ip("a"))  # unsolicited: dropped, no RST


def test_nated_parties_do_not_reach_each_other_directly(topo: Topology) -> None:
    # The private networks: the host's own router has no route there and says so at once.
    assert_blocked(topo, "a", topo.ip("b"), ENETUNREACH)
    assert_blocked(topo, "b", topo.ip("a"), ENETUNREACH)
    # The other's router drops an unsolicited SYN silently.
    assert_dropped(topo, "a", topo.public_ip("b"))
    assert_dropped(topo, "b", topo.public_ip("a"))


def test_open_routers_refuse_at_once() -> None:
    """With stateful=False a router's own stack answers an unsolicited SYN with RST."""
    require_netns()
    with nat_topology("topen", ["a"], stateful=False) as t:
        assert t.nat_mode("a") == PRESERVE and not t.stateful
        assert_blocked(t, RELAY, t.public_ip("a"), ECONNREFUSED)


def test_nat_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="not NATed"):
        with nat_topology("tbad", ["a", "c"], public=["c"], nat_modes={"c": RANDOM}):
            pass
    with pytest.raises(ValueError, match="NAT modes"):
        with nat_topology("tbad", ["a"], nat_modes={"a": "cone"}):
            pass


def test_relay_byte_counter(topo: Topology) -> None:
    port, n = 4001, 100 * 1024
    topo.count_tcp(RELAY, port)
    with pytest.raises(TopologyError):
        topo.count_tcp(RELAY, port)
    with pytest.raises(TopologyError):
        topo.tcp_bytes(RELAY, port + 1)
    assert topo.tcp_bytes(RELAY, port) == 0
    sink = start_ready(topo, RELAY, [PYTHON, "-c", SINK, topo.ip(RELAY), str(port), "20"])
    sent = topo.run("a", [PYTHON, "-c", SEND, topo.ip(RELAY), str(port), str(n)])
    assert sent.stdout.strip() == str(n), sent
    assert sink.wait(timeout=10) == 0
    counted = topo.tcp_bytes(RELAY, port)
    assert n <= counted < 2 * n, counted
    # Other ports of the relay are not counted.
    ok, out, _ = connect(topo, "a", topo.ip(RELAY))
    assert ok, out
    assert topo.tcp_bytes(RELAY, port) == counted


# -- TCP simultaneous open through two NATs ---------------------------------------------

#: Seconds each side keeps trying.
PUNCH_LIMIT = 5.0
#: The second side starts this much later than the first ("about the same time").
PUNCH_SKEW = 0.25


@pytest.fixture(scope="module")
def punch() -> Iterator[Topology]:
    """a and b behind port-preserving NATs, c and d behind NATs that map at random."""
    require_netns()
    with nat_topology("tpunch", ["a", "b", "c", "d"],
                      nat_modes={"c": RANDOM, "d": RANDOM}) as t:
        yield t


def simultaneous_open(topo: Topology, x: str, y: str, port: int
                      ) -> tuple[dict[str, object], dict[str, object]]:
    """x and y both connect to the other's router address and port at about the same time
    (y PUNCH_SKEW s after x): the JSON reports of both."""
    start = time.time() + 0.5   # time for both interpreters to start
    procs = [topo.popen(me, [PYTHON, "-c", PUNCH, me, topo.public_ip(other), str(port),
                             str(start + delay), str(PUNCH_LIMIT)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other, delay in ((x, y, 0.0), (y, x, PUNCH_SKEW))]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=PUNCH_LIMIT + 15)
        assert out.strip(), err
        reports.append(json.loads(out))
        assert (proc.returncode == 0) == reports[-1]["ok"], (out, err)
    return reports[0], reports[1]


def test_simultaneous_open_through_port_preserving_nats(punch: Topology) -> None:
    port = 5101
    assert punch.nat_mode("a") == punch.nat_mode("b") == PRESERVE
    ra, rb = simultaneous_open(punch, "a", "b", port)
    assert ra["ok"] and rb["ok"], (ra, rb)
    assert ra["heard"] == "hello from b" and rb["heard"] == "hello from a", (ra, rb)
    # Each sees the other's router, on the same port: a direct path, no relay involved.
    assert ra["peer"] == [punch.public_ip("b"), port], ra
    assert rb["peer"] == [punch.public_ip("a"), port], rb


def test_simultaneous_open_fails_through_random_port_nats(punch: Topology) -> None:
    assert punch.nat_mode("c") == punch.nat_mode("d") == RANDOM
    rc, rd = simultaneous_open(punch, "c", "d", 5102)
    for report in (rc, rd):
        assert not report["ok"], report
        # Every SYN was dropped silently: the attempt timed out, nothing was refused.
        assert set(report["errors"]) == {"TimeoutError"}, report
        assert PUNCH_LIMIT - 0.1 <= report["elapsed"] < PUNCH_LIMIT + 1.0, report


def test_unsolicited_connect_to_a_router_is_dropped(punch: Topology) -> None:
    for party in ("a", "c"):
        assert_dropped(punch, RELAY, punch.public_ip(party))


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
            # Four processes: the sleeper, the shell and its sleeper, the daemon. Starting
            # them took over 5 s once on a loaded CI machine; the loop ends at the fourth.
            deadline = time.monotonic() + 20
            found = _cmdlines_with(marker)
            while len(found) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
                found = _cmdlines_with(marker)
            assert len(found) >= 4, found
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
