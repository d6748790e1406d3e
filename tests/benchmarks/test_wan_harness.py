"""Tests of the WAN emulation the benchmarks run in (benchmarks/wan_topology.py and its
delay line, benchmarks/delayline.py) itself.

Hosts a and b are public, c sits behind a port-preserving NAT. The round trips the delay
line gives are measured with the topology's own probes (ICMP echo, TCP connect) and,
for one-way delays, with a UDP datagram sent and received by this process (both ends
read one clock), against what was asked. The build and teardown tests check that nothing
is left behind: no namespace, no interface, no process (the delay line included), also
when the body raises, when the owner gets SIGTERM, and when it is killed outright (then
the delay line must stop by itself). Without its delay line the network is dead, never
a network without delay. The delay line's queue keeps each flow in order, also when its
delay changes.

These need root, iproute2 and iptables; where network namespaces cannot be used they
fail with the reason, as the NAT tests do (CI runs them as root). The tests of the scenario tables need nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from delayline import DelayLineError, _Line  # noqa: E402
from wan_topology import (SCENARIOS, TopologyError, WanTopology,  # noqa: E402
                          netns_available, one_way_table, place, wan_topology)

#: Allowed deviation of a measured median round trip from the requested one.
RELATIVE, ABSOLUTE_MS = 0.10, 1.0
#: A packet may leave this much before it is due (delayline.RELEASE_SLACK, both ways).
EARLY_MS = 0.05


def list_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def root_links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                          check=True).stdout


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def assert_clean(base: str, pids: list[int]) -> None:
    assert [ns for ns in list_namespaces() if ns.startswith(base)] == []
    assert base not in root_links()
    assert [pid for pid in pids if not gone(pid)] == []


@pytest.fixture
def netns() -> None:
    reason = netns_available()
    if reason is not None:
        pytest.fail(f"network namespaces unavailable: {reason}", pytrace=False)


@pytest.fixture(scope="module")
def wan() -> Iterator[WanTopology]:
    reason = netns_available()
    if reason is not None:
        pytest.fail(f"network namespaces unavailable: {reason}", pytrace=False)
    with wan_topology("twan", ["a", "b", "c"], rtt_ms=20, nat={"c": "preserve"}) as topo:
        yield topo


def one_way_ms(topo: WanTopology, src: str, dst: str, count: int = 5,
               timeout: float = 3.0) -> float:
    """Median time a UDP datagram takes from src to dst (public), in ms."""
    with topo.open_socket(dst, socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            topo.open_socket(src, socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind((topo.ip(dst), 0))
        rx.settimeout(timeout)
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            tx.sendto(b"x", rx.getsockname())
            rx.recv(16)
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def near(measured: float, wanted: float) -> bool:
    return abs(measured - wanted) <= max(RELATIVE * wanted, ABSOLUTE_MS)


# -- delays ----------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("rtt", [2.0, 20.0, 90.0])
def test_round_trips_are_what_was_asked(wan: WanTopology, rtt: float) -> None:
    wan.set_delays(rtt_ms=rtt)
    found = wan.measure(count=8)
    assert set(found.pairs) == {("a", "b"), ("b", "a"), ("c", "a"), ("c", "b")}
    for pair, m in found.pairs.items():
        assert m.requested_ms == rtt and m.lost == 0, (pair, m)
        assert near(m.ping_ms, rtt) and near(m.tcp_ms, rtt), found.table()
        assert m.ping_min_ms >= rtt - EARLY_MS, found.table()   # never early
    assert found.delayline["dropped"] == 0


@pytest.mark.integration
def test_each_direction_of_each_pair_gets_its_own_delay(wan: WanTopology) -> None:
    matrix = {("a", "b"): 4.0, ("b", "a"): 16.0, ("c", "a"): 8.0, ("a", "c"): 30.0,
              ("b", "c"): 1.0, ("c", "b"): 12.0}
    wan.set_delays(one_way_ms=matrix)
    assert wan.one_way == matrix
    for src, dst in [("a", "b"), ("b", "a"), ("c", "a"), ("c", "b")]:
        assert near(one_way_ms(wan, src, dst), matrix[(src, dst)]), (src, dst)
    found = wan.measure(count=5)
    for (src, dst), m in found.pairs.items():
        assert m.requested_ms == matrix[(src, dst)] + matrix[(dst, src)]
        assert near(m.ping_ms, m.requested_ms) and near(m.tcp_ms, m.requested_ms), \
            found.table()


@pytest.mark.integration
def test_a_natted_host_reaches_out_but_cannot_be_reached(wan: WanTopology) -> None:
    wan.set_delays(rtt_ms=2)
    with wan.open_socket("a") as server, wan.open_socket("c") as hidden:
        server.bind((wan.ip("a"), 0))
        server.listen(1)
        server.settimeout(3)
        hidden.bind((wan.ip("c"), 0))
        hidden.listen(1)
        with wan.open_socket("c") as client:
            client.settimeout(3)
            client.connect(server.getsockname())
            conn, peer = server.accept()
            conn.close()
        assert peer[0] == wan.public_ip("c") != wan.ip("c")
        port = hidden.getsockname()[1]
        for address, timeout in [(wan.public_ip("c"), 1.0), (wan.ip("c"), 3.0)]:
            with wan.open_socket("a") as probe, pytest.raises(OSError):
                probe.settimeout(timeout)   # dropped by the router / no route to it
                probe.connect((address, port))


@pytest.mark.integration
def test_without_its_delay_line_the_network_is_dead(netns: None) -> None:
    with wan_topology("tdead", ["a", "b"], rtt_ms=2) as topo:
        assert topo.delayline is not None
        assert topo.measure(count=1).pairs[("a", "b")].lost == 0
        topo.delayline.stop()
        with pytest.raises(socket.timeout):
            one_way_ms(topo, "a", "b", count=1, timeout=0.5)
        with pytest.raises(DelayLineError, match="exited"):
            topo.measure(count=1, timeout=0.5)


@pytest.mark.integration
def test_bandwidth_limit(netns: None) -> None:
    with wan_topology("tbw", ["a", "b"], rtt_ms=2, bandwidth_mbit=40) as topo:
        rate = topo.throughput("a", "b", seconds=2.0)["mbit_s"]
    assert 30 < rate <= 42, rate


# -- build and teardown --------------------------------------------------------------------


@pytest.mark.integration
def test_nothing_is_left_behind(netns: None) -> None:
    with wan_topology("tgone", ["a", "b"], scenario="two-far",
                      nat={"b": "random"}) as topo:
        assert topo.delayline is not None
        base, line = topo.base, topo.delayline.pid
        namespaces = [ns for ns in list_namespaces() if ns.startswith(base)]
        assert sorted(namespaces) == sorted(topo.namespaces)
        assert base not in root_links()   # nothing in the caller's namespace
        sleeper = topo.popen("b", ["sleep", "60"])
        assert topo.delayline.ready["offload"].startswith("csum,tso")
    assert_clean(base, [line, sleeper.pid])


@pytest.mark.integration
def test_teardown_when_the_body_raises(netns: None) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with wan_topology("traise", ["a", "b"], rtt_ms=10) as topo:
            assert topo.delayline is not None
            base, line = topo.base, topo.delayline.pid
            raise RuntimeError("boom")
    assert_clean(base, [line])


#: Builds a topology, prints its base and the delay line's pid, and waits.
OWNER = f"""
import json, sys, time
sys.path.insert(0, {str(BENCHMARKS)!r})
from wan_topology import wan_topology
with wan_topology("towner", ["a", "b"], rtt_ms=10) as topo:
    print(json.dumps([topo.base, topo.delayline.pid]), flush=True)
    time.sleep(60)
"""


@pytest.mark.integration
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_owner_killed(netns: None, how: signal.Signals) -> None:
    """SIGTERM: the owner tears everything down. SIGKILL: nothing can, but the delay line
    notices its parent is gone and exits."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE,
                             text=True)
    assert owner.stdout is not None
    base, line = json.loads(owner.stdout.readline())
    try:
        owner.send_signal(how)
        assert owner.wait(timeout=20) == (143 if how == signal.SIGTERM else -9)
        deadline = time.monotonic() + 5
        while not gone(line) and time.monotonic() < deadline:
            time.sleep(0.05)
        if how == signal.SIGTERM:
            assert_clean(base, [line])
        assert gone(line)
    finally:
        owner.kill()
        for ns in list_namespaces():   # what a killed owner could not delete
            if ns.startswith(base):
                subprocess.run(["ip", "netns", "delete", ns], check=False)


@pytest.mark.integration
def test_bad_requests_build_nothing(netns: None) -> None:
    before = list_namespaces()
    with pytest.raises(ValueError):
        with wan_topology("tbad", ["a", "a"], rtt_ms=10):
            pass
    with pytest.raises(ValueError):
        with wan_topology("tbad", ["a", "b"], rtt_ms=10, scenario="multi"):
            pass
    with pytest.raises(ValueError):
        with wan_topology("tbad", ["a", "b"], one_way_ms={("a", "c"): 1.0}):
            pass
    assert list_namespaces() == before
    with wan_topology("tbad", ["a", "b"], rtt_ms=10) as topo:
        with pytest.raises(TopologyError):
            topo.measure([("a", "a")])
        with pytest.raises(TopologyError):
            topo.ns("nobody")


# -- no namespaces needed ------------------------------------------------------------------


def test_a_flow_is_never_reordered() -> None:
    """Packets of one (source, destination) pair leave in arrival order, also when its
    delay shrinks while some are held; another pair with less delay overtakes them."""
    line = _Line(offset=0, limit=1 << 20)
    line.configure({"delays": [["10.0.0.1", "10.0.0.2", 0.03],
                               ["10.0.0.3", "10.0.0.2", 0.0]]})

    def packet(src: str, n: int) -> bytes:   # 20-byte IPv4 header, then a number
        return (bytes(12) + socket.inet_aton(src) + socket.inet_aton("10.0.0.2")
                + n.to_bytes(2, "big"))

    now = time.monotonic()
    line.hold(packet("10.0.0.1", 1), now)
    line.hold(packet("10.0.0.1", 2), now)
    line.configure({"delays": [["10.0.0.1", "10.0.0.2", 0.0]]})
    line.hold(packet("10.0.0.1", 3), now)    # due at once, but must wait for 1 and 2
    line.hold(packet("10.0.0.3", 4), now)
    read, write = os.pipe()
    try:
        while line.heap:
            line.release_due(write)
            time.sleep(0.002)
        out = os.read(read, 1024)
    finally:
        os.close(read)
        os.close(write)
    order = [int.from_bytes(out[i + 20:i + 22], "big") for i in range(0, len(out), 22)]
    assert order == [4, 1, 2, 3]
    assert line.counters.packets == 4 and line.counters.dropped == 0


# -- scenarios -------------------------------------------------------------------------------


def test_scenarios_are_the_issues() -> None:
    assert set(SCENARIOS) == {"one-region", "two-near", "two-far", "multi"}
    inter = {name: [s.rtt(a, b) for a in s.regions for b in s.regions if a != b]
             for name, s in SCENARIOS.items()}
    assert inter["one-region"] == [] and SCENARIOS["one-region"].intra_ms == 2.0
    assert all(15 <= rtt <= 25 for rtt in inter["two-near"])
    assert all(80 <= rtt <= 100 for rtt in inter["two-far"])
    assert len(SCENARIOS["multi"].regions) >= 3
    assert all(30 <= rtt <= 250 for rtt in inter["multi"])
    assert all(s.source for s in SCENARIOS.values())


def test_hosts_are_spread_round_robin_and_placed_where_asked() -> None:
    multi = SCENARIOS["multi"]
    hosts = ["p0", "p1", "p2", "p3", "p4", "node"]
    placed = place(hosts, multi, {"node": 1})
    assert placed == {"p0": multi.regions[0], "p1": multi.regions[1],
                      "p2": multi.regions[2], "p3": multi.regions[3],
                      "p4": multi.regions[0], "node": multi.regions[1]}
    assert place(["a", "b"], multi, {"a": multi.regions[2]})["a"] == multi.regions[2]
    with pytest.raises(ValueError):
        place(["a"], multi, {"a": "mars"})
    table, regions = one_way_table(hosts, scenario="multi", regions={"node": 1})
    assert regions == placed
    assert table[("p0", "p1")] == multi.rtt(multi.regions[0], multi.regions[1]) / 2
    assert table[("p1", "node")] == multi.intra_ms / 2


def test_one_way_tables() -> None:
    table, regions = one_way_table(["a", "b", "c"], rtt_ms=30)
    assert regions == {} and set(table.values()) == {15.0} and len(table) == 6
    table, _ = one_way_table(["a", "b"], one_way_ms={("a", "b"): 3.0})
    assert table == {("a", "b"): 3.0, ("b", "a"): 3.0}   # one direction given: both
    table, _ = one_way_table(["a", "b"], one_way_ms=lambda s, d: 1.0 if s == "a" else 2.0)
    assert table == {("a", "b"): 1.0, ("b", "a"): 2.0}
    for bad in [{}, {"rtt_ms": 1, "scenario": "multi"}, {"rtt_ms": -1},
                {"rtt_ms": 1, "regions": {"a": 0}}, {"scenario": "nowhere"}]:
        with pytest.raises(ValueError):
            one_way_table(["a", "b"], **bad)   # type: ignore[arg-type]
