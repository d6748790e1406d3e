"""`mpcid node`, `mpcid online`, `mpcid resolve` as real processes on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from processes import MPCID, env

pytestmark = pytest.mark.integration



def read_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line starting with {prefix!r}")


def resolve(did: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MPCID, "resolve", did, "--bootstrap", bootstrap],
                          capture_output=True, text=True, env=env(), timeout=60)


def test_online_publishes_resolve_finds_and_ctrl_c_withdraws(node: str, tmp_path: Path
                                                             ) -> None:
    home = str(tmp_path / "alice")
    did = subprocess.run([MPCID, "create-did", "--home", home, "--name", "alice"],
                         capture_output=True, text=True, env=env(), timeout=60,
                         check=True).stdout.split()[-1]
    online = subprocess.Popen([MPCID, "online", "--home", home, "--as", "alice",
                               "--bootstrap", node, "--listen", "/ip4/127.0.0.1/tcp/0",
                               "--endpoint", "127.0.0.1:7001", "--relay", node],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env())
    try:
        assert read_line(online, "did ") == f"did {did}"
        peer = read_line(online, "peer ").split()[1]
        assert peer.startswith("12D3KooW")
        addrs = []
        assert online.stdout is not None
        while not (line := online.stdout.readline()).startswith("agent "):
            assert line.startswith("addr "), line
            addrs.append(line.split()[1])
        assert any(addr.endswith(f"/p2p/{peer}") for addr in addrs)
        # The node is also a relay: the party holds a reservation on it.
        assert f"{node}/p2p-circuit/p2p/{peer}" in addrs
        found = resolve(did, node)
        assert found.returncode == 0, found.stderr
        record = json.loads(found.stdout)
        assert record["did"] == did and record["tcp"] == ["127.0.0.1:7001"]
        # Its libp2p addresses are published only while it serves a session
        # (tests/broker/test_agent.py), which then dials or accepts over them.
        assert record["addrs"] == []
        assert found.stderr == ""  # libp2p's own log noise stays hidden
        online.send_signal(signal.SIGINT)
        _, err = online.communicate(timeout=30)
        assert online.returncode == 0 and "withdrawn" in err
        gone = resolve(did, node)
        assert gone.returncode == 1 and "not found" in gone.stderr
    finally:
        if online.poll() is None:
            online.kill()
            online.communicate()


def test_resolve_unknown_did_and_bad_input(node: str) -> None:
    unknown = resolve("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", node)
    assert unknown.returncode == 1 and "not found" in unknown.stderr
    bad = resolve("did:key:zNotAKey", node)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    nobody = subprocess.run([MPCID, "resolve",
                             "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"],
                            capture_output=True, text=True, env=env(), timeout=60)
    assert nobody.returncode == 2 and "--bootstrap" in nobody.stderr
    unreachable = resolve("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
                          "/ip4/127.0.0.1/tcp/9/p2p/"
                          "12D3KooWGHFcGHDZmEdfS5eu2ScLm33fodTKk3vnGqtnFjVyzAAX")
    assert unreachable.returncode == 1
    assert unreachable.stderr.count("\n") == 1 and "bootstrap" in unreachable.stderr


def test_a_listen_all_address_is_refused_as_bootstrap() -> None:
    wildcard = subprocess.run([MPCID, "resolve",
                               "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
                               "--bootstrap", "/ip4/0.0.0.0/tcp/4001/p2p/"
                               "12D3KooWGHFcGHDZmEdfS5eu2ScLm33fodTKk3vnGqtnFjVyzAAX"],
                              capture_output=True, text=True, env=env(), timeout=60)
    assert wildcard.returncode == 2 and wildcard.stderr.count("\n") == 1
    assert "is where a node listens" in wildcard.stderr and "in place of 0.0.0.0" in \
        wildcard.stderr


def test_a_node_on_every_interface_prints_addresses_to_dial(tmp_path: Path) -> None:
    from mpcid.p2p import nat

    proc = subprocess.Popen([MPCID, "node", "--home", str(tmp_path), "--listen",
                             "/ip4/0.0.0.0/tcp/0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("/ip4/") and "/ip4/0.0.0.0/" not in first
        ip = first.split("/")[2]
        assert ip in nat.interface_addresses()
        expected = nat.dialable(nat.interface_addresses())
        assert ip == expected[0][0]  # public first, then private, loopback last
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()  # what readline left buffered
        proc.stdout.close()
        proc.stderr.close()
    lines = [first, *out.split()]
    assert not any("/0.0.0.0/" in line for line in lines)
    assert lines[-1].startswith("/ip4/127.0.0.1/") or expected[-1][1] != "loopback"
    assert "share the first address" in err or "no public address" in err


def test_addresses_are_ordered_for_sharing() -> None:
    from mpcid.p2p import nat

    assert nat.dialable(["127.0.0.1", "10.1.2.3", "0.0.0.0", "169.254.1.1", "8.8.4.4",
                         "224.0.0.1", "not an ip", "192.168.1.5"]) == [
        ("8.8.4.4", "public"), ("10.1.2.3", "private"), ("192.168.1.5", "private"),
        ("127.0.0.1", "loopback")]
