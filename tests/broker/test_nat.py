"""Parties behind emulated NATs find each other through the DHT and compute together.

Topology (tests/broker/netns_topology.py): a public namespace with the bootstrap/relay
node; NATed parties each behind its own router (MASQUERADE, stateful: nothing unsolicited
gets in, dropped silently as real NATs do), port-preserving or with random port mapping
(``--random-fully``); public parties on the public network. The sessions run as the README
tells a user: `mpcid node`, then `mpcid invite` with a credential requirement and `mpcid
join`, with no `--relay` flag (the bootstrap node is used as a relay automatically by the
parties behind NAT). Expected paths (``specs/discovery.md`` 8):

* two parties behind port-preserving NATs: a hole-punched TCP connection, coordinated over
  the relay, reported as such on both ends; the relay carries only coordination;
* a party behind NAT and a public one: the NATed one dials out directly, whichever index
  it has (no relay, no punching);
* NATs with random port mapping: the punching attempt ends within its bound and the
  channel runs through a relay circuit.

A session file naming the parties by DID with explicit relays (`mpcid run`) is covered
too. Everything created is removed by the topology's context manager, also on failure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mpcid.identity import credentials as vc
from mpcid.identity.keystore import Keystore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netns_topology import RANDOM, RELAY, nat_topology, netns_available  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MPCID = str(Path(sys.executable).parent / "mpcid")
SALARY = ROOT / "examples" / "salary_sum.py"
NODE_PORT = 4001


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_BOOTSTRAP")}


def create_dids(tmp_path: Path, names: list[str]) -> list[str]:
    dids = []
    for name in names:
        out = subprocess.run([MPCID, "create-did", "--home", str(tmp_path / name), "--name",
                              name], capture_output=True, text=True, env=clean_env(),
                             timeout=60, check=True)
        dids.append(out.stdout.split()[-1])
    return dids


def require_netns() -> None:
    reason = netns_available()
    if reason:
        pytest.fail(f"network namespaces are needed for this test: {reason}")


def start_node(topo: Any, tmp_path: Path) -> str:
    """`mpcid node` in the public namespace; its printed (dialable) multiaddr."""
    relay_ip = topo.ip(RELAY)
    node = topo.popen(RELAY, [MPCID, "node", "--home", str(tmp_path / "node"),
                              "--listen", f"/ip4/{relay_ip}/tcp/{NODE_PORT}"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                      env=clean_env())
    assert node.stdout is not None
    addr = str(node.stdout.readline().strip())
    assert addr.startswith(f"/ip4/{relay_ip}/tcp/{NODE_PORT}/p2p/"), addr
    return addr


def run_parties(topo: Any, names: list[str], commands: list[list[str]], cwd: Path
                ) -> list[tuple[int, str, str]]:
    procs = [topo.popen(name, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, env=clean_env(), cwd=cwd)
             for name, command in zip(names, commands)]
    results = [p.communicate(timeout=150) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, results)]


def connected_paths(results: list[tuple[int, str, str]]) -> dict[tuple[int, int], str]:
    """(party, peer) -> the path of their channel, from each party's JSON progress."""
    paths = {}
    for me, (code, out, err) in enumerate(results):
        assert code == 0, out[-3000:] + err[-3000:]
        assert "total" in out and f"count {len(results)}" in out, out[-2000:]
        events = [json.loads(line) for line in err.splitlines()
                  if line.startswith('{"event"')]
        assert len([e for e in events if e["event"] == "admitted"]) == len(results) - 1, \
            err[-3000:]
        for event in events:
            if event["event"] == "connected":
                paths[(me, event["party"])] = event["path"]
    return paths


def invited_joins(tmp_path: Path, names: list[str], dids: list[str], node: str
                  ) -> list[list[str]]:
    """Acme certifies every party; the first invites the others, requiring that; each
    joins. No --relay anywhere: the bootstrap node is found to be a relay."""
    now = dt.datetime.now(dt.timezone.utc)
    org = Keystore(tmp_path / "acme").create_identity("acme")
    for name, did in zip(names, dids):
        Keystore(tmp_path / name).put_document("credentials", "membership", vc.sign_credential(
            vc.build_credential(issuer=org.did.did, subject=did,
                                credential_type="MembershipCredential",
                                claims={"organization": "Acme"}, valid_from=now),
            org, now=now))
    invite = subprocess.run(
        [MPCID, "invite", "--home", str(tmp_path / names[0]), "--as", names[0],
         *[arg for did in dids[1:] for arg in ("--did", did)], "--program", str(SALARY),
         "--bootstrap", node, "--require", f"MembershipCredential@{org.did.did}",
         "--no-publish"],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=True)
    token = invite.stdout.strip().splitlines()[-1]
    return [[MPCID, "join", token, "--home", str(tmp_path / name), "--program", str(SALARY),
             "--connect-timeout", "60", "--progress", "json",
             "--transcript", str(tmp_path / f"{name}-transcript.json"), "--", "--salaries",
             str(1000 * (i + 1))] for i, name in enumerate(names)]


def both_ends(paths: dict[tuple[int, int], str], i: int, j: int) -> tuple[str, str]:
    return paths[(i, j)], paths[(j, i)]


def test_two_nated_parties_punch_a_direct_path(tmp_path: Path) -> None:
    """a and b behind port-preserving NATs, c public. a-b: hole-punched on both ends; a-c
    and b-c: direct TCP (the NATed parties dial out to c). The relay carried only the
    coordination: a few KB, not the session's traffic."""
    require_netns()
    names = ["a", "b", "c"]
    dids = create_dids(tmp_path, names)
    with nat_topology("mph", names, public=["c"]) as topo:
        node = start_node(topo, tmp_path)
        commands = invited_joins(tmp_path, names, dids, node)
        topo.count_tcp(RELAY, NODE_PORT)
        results = run_parties(topo, names, commands, tmp_path)
        relay_bytes = topo.tcp_bytes(RELAY, NODE_PORT)
    paths = connected_paths(results)
    ab, ba = both_ends(paths, 0, 1)
    assert ab.startswith("hole-punched TCP ") and ba.startswith("hole-punched TCP "), paths
    assert ab.split()[-1].rsplit(":", 1)[0] == topo.public_ip("b"), ab
    assert ba.split()[-1].rsplit(":", 1)[0] == topo.public_ip("a"), ba
    for pair in ((0, 2), (1, 2)):
        dialled, accepted = both_ends(paths, *pair)
        assert dialled.startswith(f"direct TCP {topo.ip('c')}:"), dialled
        assert accepted == "direct TCP", accepted
    shown = subprocess.run([MPCID, "transcript", "verify", str(tmp_path / "a-transcript.json")],
                           capture_output=True, text=True, env=clean_env(), timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"via hole-punched TCP {topo.public_ip('b')}:" in shown.stdout, shown.stdout
    print(f"relay port {NODE_PORT}: {relay_bytes} bytes for the whole session "
          "(DHT, reservations, punch coordination)")
    assert relay_bytes < 400_000, relay_bytes


def test_a_nated_party_dials_a_public_one_directly(tmp_path: Path) -> None:
    """a public (party 0), b behind a NAT (party 1): b opens the channel, directly to a,
    although party 0 opens channels everywhere else."""
    require_netns()
    names = ["a", "b"]
    dids = create_dids(tmp_path, names)
    with nat_topology("mpd", names, public=["a"]) as topo:
        node = start_node(topo, tmp_path)
        results = run_parties(topo, names, invited_joins(tmp_path, names, dids, node),
                              tmp_path)
    paths = connected_paths(results)
    assert paths[(1, 0)].startswith(f"direct TCP {topo.ip('a')}:"), paths
    assert paths[(0, 1)] == "direct TCP", paths
    for _, _, err in results:
        assert "hole punching" not in err and "relay circuit" not in err


def test_random_port_nats_fall_back_to_the_relay(tmp_path: Path) -> None:
    """All three behind NATs with random port mapping, which TCP simultaneous open cannot
    get through: each punching attempt ends within its bound and every channel runs
    through a relay circuit on the bootstrap node, found without --relay."""
    require_netns()
    names = ["a", "b", "c"]
    dids = create_dids(tmp_path, names)
    with nat_topology("mpr", names, nat_modes={n: RANDOM for n in names}) as topo:
        node = start_node(topo, tmp_path)
        results = run_parties(topo, names, invited_joins(tmp_path, names, dids, node),
                              tmp_path)
    paths = connected_paths(results)
    assert set(paths.values()) == {"relay circuit"}, paths
    assert len(paths) == 6


def test_session_file_with_explicit_relays(tmp_path: Path) -> None:
    """`mpcid run` with a session file naming the parties by DID and choosing the relay
    (`relays`): a and b behind random-port NATs meet through the relay, c is public and
    reached directly."""
    require_netns()
    names = ["a", "b", "c"]
    dids = create_dids(tmp_path, names)
    with nat_topology("mpn", names, public=["c"],
                      nat_modes={"a": RANDOM, "b": RANDOM}) as topo:
        node = start_node(topo, tmp_path)
        session = tmp_path / "session.json"
        session.write_text(json.dumps({
            "session": "nat-1",
            "program_sha256": hashlib.sha256(SALARY.read_bytes()).hexdigest(),
            "parties": [{"did": did} for did in dids], "bootstrap": [node],
            "relays": [node]}))
        commands = [[MPCID, "run", "--home", str(tmp_path / name), "--session",
                     str(session), "--as", name, "--connect-timeout", "60", "--",
                     str(SALARY), "--salaries", str(1000 * (i + 1))]
                    for i, name in enumerate(names)]
        results = run_parties(topo, names, commands, tmp_path)
    for code, out, err in results:
        assert code == 0, out[-3000:] + err[-3000:]
        assert "total 6000" in out and "count 3" in out
    out_a, out_b = results[0][1], results[1][1]
    lines = {(i, j): next(line for line in out.splitlines()
                          if f"channel to party {j}" in line and "hole punching" not in line)
             for i, out in ((0, out_a), (1, out_b)) for j in range(i + 1, 3)}
    assert "hole punching via" in out_a  # tried (both behind NATs), within its bound
    assert "relay circuit" in lines[(0, 1)] and "/p2p-circuit" in lines[(0, 1)], lines
    for pair in ((0, 2), (1, 2)):
        assert f"direct TCP to {topo.ip('c')}:" in lines[pair], lines[pair]
