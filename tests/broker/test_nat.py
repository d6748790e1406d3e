"""Parties behind emulated NATs find each other through the DHT and compute together.

Topology (tests/broker/netns_topology.py): a public namespace with the bootstrap/relay
node; parties a and b each behind its own NAT router (MASQUERADE, no port forwarding), so
neither can open a connection to the other; party c either publicly reachable or behind a
NAT too. With c public, a session file names only DIDs and the bootstrap node (`mpcid
run`); with all three behind NAT, the whole broker runs: `mpcid invite` with a credential
requirement and `mpcid join`, whose admission then runs inside relayed channels. Expected paths: a -> b
through a relay circuit (no direct path exists); a -> c and b -> c direct TCP when c is
reachable, else two circuits to c at once through the same relay. Everything created is
removed by the topology's context manager, also on failure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpcid.identity import credentials as vc
from mpcid.identity.keystore import Keystore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netns_topology import RELAY, nat_topology, netns_available  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MPCID = str(Path(sys.executable).parent / "mpcid")
SALARY = ROOT / "examples" / "salary_sum.py"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_BOOTSTRAP")}


@pytest.mark.parametrize("public", [["c"], []], ids=["c-public", "all-behind-nat"])
def test_nat_parties_use_the_relay_and_reachable_ones_connect_directly(
        tmp_path: Path, public: list[str]) -> None:
    reason = netns_available()
    if reason:
        pytest.fail(f"network namespaces are needed for this test: {reason}")
    names = ["a", "b", "c"]
    dids = []
    for name in names:
        out = subprocess.run([MPCID, "create-did", "--home", str(tmp_path / name), "--name",
                              name], capture_output=True, text=True, env=clean_env(),
                             timeout=60, check=True)
        dids.append(out.stdout.split()[-1])
    with nat_topology("mpn", names, public=public) as topo:
        relay_ip = topo.ip(RELAY)
        node = topo.popen(RELAY, [MPCID, "node", "--home", str(tmp_path / "node"),
                                  "--listen", f"/ip4/{relay_ip}/tcp/4001"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=clean_env())
        assert node.stdout is not None
        relay_addr = node.stdout.readline().strip()
        assert relay_addr.startswith(f"/ip4/{relay_ip}/tcp/4001/p2p/"), relay_addr
        if public:  # a session file naming the parties by DID: `mpcid run`
            commands = session_file_runs(tmp_path, names, dids, relay_addr)
        else:  # the whole broker: invitation, credentials, admission inside relayed channels
            commands = invited_joins(tmp_path, names, dids, relay_addr)
        procs = [topo.popen(name, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(), cwd=tmp_path)
                 for name, command in zip(names, commands)]
        results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        assert "total 6000" in out and "count 3" in out
        if not public:
            events = [json.loads(line) for line in err.splitlines()
                      if line.startswith('{"event"')]
            assert len([e for e in events if e["event"] == "admitted"]) == 2, err[-3000:]
    out_a, out_b = results[0][0], results[1][0]
    lines = {(i, j): next(line for line in out.splitlines() if f"channel to party {j}" in line)
             for i, out in ((0, out_a), (1, out_b)) for j in range(i + 1, 3)}
    # a and b are behind NAT: no direct path exists between them.
    assert "relay circuit" in lines[(0, 1)] and "/p2p-circuit" in lines[(0, 1)], lines
    for pair in ((0, 2), (1, 2)):
        if public:  # c is reachable: the direct path is chosen
            assert f"direct TCP to {topo.ip('c')}:" in lines[pair], lines[pair]
        else:  # c receives two circuits at once through the same relay
            assert "relay circuit" in lines[pair], lines[pair]


def session_file_runs(tmp_path: Path, names: list[str], dids: list[str], relay: str
                      ) -> list[list[str]]:
    session = tmp_path / "session.json"
    session.write_text(json.dumps({
        "session": "nat-1", "program_sha256": hashlib.sha256(SALARY.read_bytes()).hexdigest(),
        "parties": [{"did": did} for did in dids], "bootstrap": [relay], "relays": [relay]}))
    return [[MPCID, "run", "--home", str(tmp_path / name), "--session", str(session), "--as",
             name, "--connect-timeout", "60", "--", str(SALARY), "--salaries",
             str(1000 * (i + 1))] for i, name in enumerate(names)]


def invited_joins(tmp_path: Path, names: list[str], dids: list[str], relay: str
                  ) -> list[list[str]]:
    """Acme certifies the three parties; a invites b and c, requiring that; each joins."""
    now = dt.datetime.now(dt.timezone.utc)
    org = Keystore(tmp_path / "acme").create_identity("acme")
    for name, did in zip(names, dids):
        Keystore(tmp_path / name).put_document("credentials", "membership", vc.sign_credential(
            vc.build_credential(issuer=org.did.did, subject=did,
                                credential_type="MembershipCredential", valid_from=now),
            org, now=now))
    invite = subprocess.run(
        [MPCID, "invite", "--home", str(tmp_path / names[0]), "--as", names[0], "--did",
         dids[1], "--did", dids[2], "--program", str(SALARY), "--bootstrap", relay, "--relay",
         relay, "--require", f"MembershipCredential@{org.did.did}", "--no-publish"],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=True)
    token = invite.stdout.strip().splitlines()[-1]
    return [[MPCID, "join", token, "--home", str(tmp_path / name), "--program", str(SALARY),
             "--connect-timeout", "60", "--progress", "json", "--", "--salaries",
             str(1000 * (i + 1))] for i, name in enumerate(names)]
