"""Six people on six machines (network namespaces, most behind NATs) follow the README:
two organisations issue credentials, a node operator runs `mpcid node`, an inviter invites
two members of either organisation, they find the invitation in their inbox and join by
session id, fetching the program; then one member's credential is revoked and the next
session stops at once, telling each person what they can do.

The README's walkthrough is this test in words. Per person, the commands typed and what
had to be handed over (counted in the closing note of the issue):

* node operator: `mpcid node` (1); hands its printed first address to the inviter;
* each organisation: `create-did`, `status-list create`, one `credential issue --token`
  per member (and `credential revoke`); hands each member its credential line, and its
  DID to the inviter;
* inviter: `create-did`, `credential import`, `contacts add` per person, `invite`;
* each invitee: `create-did`, `credential import`, `contacts add` the inviter,
  `mpcid invitations`, `mpcid join SESSION_ID --accept-program -- INPUT`.

Status lists are served at https URLs in a real deployment; here (no public addresses)
every party gets the organisations' published files with `--status-file`, as the README
says for offline use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from netns_topology import RELAY, nat_topology, netns_available

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MPCID = str(Path(sys.executable).parent / "mpcid")
SALARY = ROOT / "examples" / "salary_sum.py"
PEOPLE = ["acme", "globex", "alice", "bob", "carol"]
ACME_URL = "https://acme.example/status/1"
GLOBEX_URL = "https://globex.example/status/1"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_BOOTSTRAP")}


class Person:
    def __init__(self, topo: Any, name: str, root: Path) -> None:
        self.topo, self.name, self.home = topo, name, root / name
        self.commands = 0

    def mpcid(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """One command as the person types it (their keystore is MPCID_HOME)."""
        self.commands += 1
        result = self.topo.run(self.name, [MPCID, *args], check=False, timeout=150,
                               env={**clean_env(), "MPCID_HOME": str(self.home)})
        if ok:
            assert result.returncode == 0, f"{self.name}: mpcid {' '.join(args)}\n" \
                f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        self.commands += 1
        return self.topo.popen(self.name, [MPCID, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**clean_env(), "MPCID_HOME": str(self.home)})


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_six_people_two_sessions(tmp_path: Path) -> None:
    reason = netns_available()
    if reason:
        pytest.fail(f"network namespaces are needed for this test: {reason}")
    with nat_topology("fs", PEOPLE, public=["acme", "carol"]) as topo:
        people = {name: Person(topo, name, tmp_path) for name in PEOPLE}
        acme, globex, alice, bob, carol = (people[n] for n in PEOPLE)
        copies = ["--status-file", f"{ACME_URL}={tmp_path / 'acme-list.json'}",
                  "--status-file", f"{GLOBEX_URL}={tmp_path / 'globex-list.json'}"]

        # The node operator: `mpcid node`, as the README says; it prints addresses to dial.
        operator = Person(topo, RELAY, tmp_path)
        node = operator.start("node")
        assert node.stdout is not None
        bootstrap = node.stdout.readline().strip()
        assert bootstrap.startswith(f"/ip4/{topo.ip(RELAY)}/tcp/4001/p2p/"), bootstrap

        # Everyone makes an identity; the organisations host status lists.
        dids = {n: last_line(p.mpcid("create-did", "--name", n).stdout)
                for n, p in people.items()}
        for org, url in ((acme, ACME_URL), (globex, GLOBEX_URL)):
            made = org.mpcid("status-list", "create", "--issuer", org.name, "--url", url,
                             "--publish", str(tmp_path / f"{org.name}-list.json"))
            assert f"verifiers fetch this list from {url}" in made.stderr

        # Each organisation issues its members' credentials as one line each.
        lines = {}
        for org, url, members in ((acme, ACME_URL, ("alice", "bob")),
                                  (globex, GLOBEX_URL, ("carol",))):
            for member in members:
                lines[member] = last_line(org.mpcid(
                    "credential", "issue", "--issuer", org.name, "--subject", dids[member],
                    "--type", "MembershipCredential", "--claim",
                    f"organization={org.name.title()}", "--status-list", url,
                    "--token").stdout)
        for member in ("alice", "bob", "carol"):
            imported = people[member].mpcid("credential", "import", lines[member], *copies)
            assert "imported MembershipCredential from did:key:" in imported.stderr

        # Alice knows everyone by name, and invites "members of Acme or Globex".
        for name in ("acme", "globex", "bob", "carol"):
            alice.mpcid("contacts", "add", name, dids[name])
        for member in ("bob", "carol"):
            people[member].mpcid("contacts", "add", "alice", dids["alice"])
        session1, inviter1 = invite(alice, bootstrap, copies, "1000")

        # Bob and Carol find it in their inbox (no token handed over) and join by its id;
        # neither has the program: it comes from Alice, checked against her signed hash.
        for member in ("bob", "carol"):
            inbox = people[member].mpcid("invitations", "--bootstrap", bootstrap)
            assert "1 new invitation(s) in your inbox" in inbox.stderr
            assert session1 in inbox.stdout
        joins = {m: people[m].start("join", session1, "--accept-program", *copies, "--",
                                    "--salaries", amount)
                 for m, amount in (("bob", "2000"), ("carol", "3000"))}
        results = {name: proc.communicate(timeout=150)
                   for name, proc in (("alice", inviter1), *joins.items())}
        for name, (out, err) in results.items():
            assert "total 6000" in out and "count 3" in out, "\n\n".join(
                f"{who}: {e[-2500:]}" for who, (_, e) in results.items())
            assert "Install package" not in out
        assert "fetching it from the inviter" in results["bob"][1]
        assert "party 1 (bob, " in results["alice"][1]  # names, not only DIDs

        # Acme revokes Bob's credential; the next session stops at once, and each person
        # is told what they can do.
        [entry] = [c for c in json.loads(
            acme.mpcid("credential", "issued", "--json").stdout) if c["subject"] == dids["bob"]]
        acme.mpcid("credential", "revoke", entry["id"])
        listed = bob.mpcid("credential", "list", "--status", *copies).stdout
        assert "revoked (ask its issuer)" in listed
        session2, inviter2 = invite(alice, bootstrap, copies, "1000")
        bob.mpcid("invitations", "--bootstrap", bootstrap)
        carol.mpcid("invitations", "--bootstrap", bootstrap)
        refused = bob.mpcid("join", session2, *copies, "--", "--salaries", "2000", ok=False)
        assert refused.returncode == 1
        told = last_line(refused.stderr)
        assert "you do not meet this session's requirements" in told and "revoked" in told
        assert f"ask the issuer ({dids['acme']}" in told
        carol_join = carol.start("join", session2, *copies, "--", "--salaries", "3000")
        for name, proc in (("alice", inviter2), ("carol", carol_join)):
            out, err = proc.communicate(timeout=150)
            assert proc.returncode == 1 and "total" not in out
            line = last_line(err)
            assert "will not take part" in line and "revoked" in line, f"{name}: {line}"
            # Alice knows him as a contact; Carol does not, and sees his DID.
            assert (f"party 1 (bob, {dids['bob']})" if name == "alice" else dids["bob"]) \
                in line, line
        node.terminate()
        node.communicate(timeout=30)
    counts = {name: p.commands for name, p in people.items()}
    assert counts["bob"] <= 9 and counts["carol"] <= 9, counts


def invite(alice: Person, bootstrap: str, copies: list[str], amount: str
           ) -> tuple[str, subprocess.Popen[str]]:
    """Alice invites Bob and Carol (members of Acme or Globex) and joins at once."""
    proc = alice.start("invite", "--did", "bob", "--did", "carol", "--program", str(SALARY),
                       "--require", "MembershipCredential@acme,globex", "--bootstrap",
                       bootstrap, "--join", *copies, "--", "--salaries", amount)
    assert proc.stdout is not None
    token = proc.stdout.readline().strip()
    if not token.startswith("mpcid1:"):
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"invite failed: {token}{out}{err}")
    from mpcid.broker.invitation import Invitation

    return Invitation.from_token(token, time.time()).session_id, proc
