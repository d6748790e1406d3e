"""`mpcid invitations` as real processes on loopback, through a local `mpcid node`:
invitations published in the DHT and fetched by session id, declines published and seen
by another party, import from token and file, listing, and the error lines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import SALARY, env, running_node
from processes import mpcid as run_mpcid

pytestmark = pytest.mark.integration

PYTHON = sys.executable
#: A bootstrap address where nothing listens (port 9, discard).
NOWHERE = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWGHFcGHDZmEdfS5eu2ScLm33fodTKk3vnGqtnFjVyzAAX"
TIMEOUT = 90


def mpcid(*args: str) -> subprocess.CompletedProcess[str]:
    return run_mpcid(*args, timeout=TIMEOUT)


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a snippet that uses mpcid's helpers directly (what `mpcid invite` will do)."""
    return subprocess.run([PYTHON, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, env=env(), timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    return lines[0]


FETCH_DECLINE = """
    import asyncio, json, sys
    from mpcid.broker.session_records import fetch_decline, session_dht
    from mpcid.identity.did_key import Ed25519Key

    async def main():
        async with session_dht(Ed25519Key.generate(), (sys.argv[1],)) as dht:
            found = await fetch_decline(dht, sys.argv[2], sys.argv[3])
            print(json.dumps(None if found is None else found.to_json()))

    asyncio.run(asyncio.wait_for(main(), 60))
"""

SHADOW = """
    import asyncio, hashlib, sys, time
    from pathlib import Path
    from mpcid.broker.invitation import Invitation
    from mpcid.broker.session_records import publish_invitation, session_dht
    from mpcid.identity.keystore import Keystore
    from mpcid.identity.policy import Policy

    # Mallory signs an invitation of her own under a session id she copied.
    key = Keystore(Path(sys.argv[1])).load_identity("mallory")
    issued = int(time.time()) + 100
    fake = Invitation(sys.argv[3], bytes(16), (key.did.did, *sys.argv[4:]), "salary_sum.py",
                      hashlib.sha256(b"other").digest(), 1, False, Policy(), issued,
                      issued + 3600, (sys.argv[2],))

    async def main():
        async with session_dht(key, (sys.argv[2],)) as dht:
            await publish_invitation(dht, fake.sign(key))

    asyncio.run(asyncio.wait_for(main(), 60))
"""

RECEIVE = """
    import json, sys, time
    from pathlib import Path
    from mpcid.broker.inbox import receive_invitation
    from mpcid.identity.keystore import Keystore

    stored = receive_invitation(Keystore(Path(sys.argv[1])), sys.argv[2], time.time(),
                                tuple(sys.argv[3:]))
    print(json.dumps({"session": stored.session_id, "source": stored.source}))
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_node(tmp_path_factory.mktemp("node")) as address:
        yield address


@pytest.fixture
def people(tmp_path: Path) -> dict[str, str]:
    dids = {}
    for name in ("alice", "bob", "carol", "mallory"):
        made = ok(mpcid("create-did", "--home", str(tmp_path / name), "--name", name))
        dids[name] = made.stdout.split()[-1]
    return dids


def home(tmp_path: Path, name: str) -> str:
    return str(tmp_path / name)


def invite(tmp_path: Path, people: dict[str, str], bootstrap: str, *extra: str) -> str:
    made = ok(mpcid("invite", "--home", home(tmp_path, "alice"), "--as", "alice", "--did",
                    people["bob"], "--did", people["carol"], "--program", SALARY,
                    "--bootstrap", bootstrap, *extra))
    return made.stdout.strip().splitlines()[-1]


def listed(tmp_path: Path, name: str, *flags: str) -> list[dict[str, Any]]:
    out = ok(mpcid("invitations", "--home", home(tmp_path, name), *flags, "--json")).stdout
    result: list[dict[str, Any]] = json.loads(out)
    return result


def test_published_invitation_is_fetched_declined_and_the_decline_seen(
        tmp_path: Path, node: str, people: dict[str, str]) -> None:
    invite(tmp_path, people, node)  # publishes it in the DHT
    [created] = listed(tmp_path, "alice")
    session = created["session"]
    assert created["source"] == "created" and len(session) == 32

    fetched = ok(mpcid("invitations", "fetch", session, "--home", home(tmp_path, "bob"),
                       "--bootstrap", node))
    assert f"session {session}" in fetched.stdout
    assert "party 1 as 'bob'" in fetched.stdout and "salary_sum.py" in fetched.stdout
    text = ok(mpcid("invitations", "--home", home(tmp_path, "bob"))).stdout
    assert session in text and "received" in text and people["alice"] in text
    [entry] = listed(tmp_path, "bob")
    assert entry["session"] == session and entry["source"] == "dht"
    assert entry["state"] == "received" and entry["expired"] is False
    assert entry["my_indexes"] == {people["bob"]: 1}
    assert entry["inviter"] == people["alice"] and entry["program"] == "salary_sum.py"

    bob = home(tmp_path, "bob")
    declined = ok(mpcid("invitations", "decline", session, "--reason", "away that week",
                        "--home", bob))
    assert f"declined session {session} as party 1" in declined.stdout
    assert listed(tmp_path, "bob") == []  # no longer open
    [entry] = listed(tmp_path, "bob", "--all")
    assert entry["state"] == "declined" and entry["reason"] == "away that week"
    everything = ok(mpcid("invitations", "list", "--all", "--home", home(tmp_path, "bob")))
    assert "declined" in everything.stdout and "away that week" in everything.stdout

    # Carol, another keystore, sees Bob's decline in the DHT; Mallory never declined.
    seen = json.loads(ok(python(FETCH_DECLINE, node, session, people["bob"])).stdout)
    assert seen["did"] == people["bob"] and seen["session"] == session
    assert seen["reason"] == "away that week"
    assert json.loads(ok(python(FETCH_DECLINE, node, session, people["carol"])).stdout) is None

    # receive_invitation: by session id from the DHT, then from the store without a node.
    carol = home(tmp_path, "carol")
    got = json.loads(ok(python(RECEIVE, carol, session, node)).stdout)
    assert got == {"session": session, "source": "dht"}
    again = json.loads(ok(python(RECEIVE, carol, session)).stdout)
    assert again == {"session": session, "source": "dht"}
    assert listed(tmp_path, "carol")[0]["my_indexes"] == {people["carol"]: 2}

    # Nobody else can sign an invitation under a copied session id: the id is derived
    # from the inviter, so readers (the DHT nodes included) refuse it.
    shadow = python(SHADOW, home(tmp_path, "mallory"), node, session, people["bob"],
                    people["carol"])
    assert shadow.returncode != 0 and "not derived from its inviter" in shadow.stderr
    newcomer = ok(mpcid("invitations", "fetch", session, "--home",
                        home(tmp_path, "fresh"), "--bootstrap", node))
    assert people["alice"] in newcomer.stdout and people["mallory"] not in newcomer.stdout


def test_import_from_token_and_file(tmp_path: Path, people: dict[str, str]) -> None:
    out = tmp_path / "invitation.json"
    token = invite(tmp_path, people, NOWHERE, "--out", str(out), "--name", "Q3 Gehälter")
    carol = home(tmp_path, "carol")
    imported = ok(mpcid("invitations", "import", token, "--home", carol))
    assert "party 2 as 'carol'" in imported.stdout and "'Q3 Gehälter'" in imported.stdout
    [entry] = listed(tmp_path, "carol")
    assert entry["source"] == "token" and entry["token"] == token
    assert entry["name"] == "Q3 Gehälter"
    bob = home(tmp_path, "bob")
    ok(mpcid("invitations", "import", str(out), "--home", bob))  # indented JSON
    [entry] = listed(tmp_path, "bob")
    assert entry["source"] == "file" and entry["session"] == listed(tmp_path, "carol")[0][
        "session"]
    # Mallory can keep it, but it is not addressed to her and she cannot decline it.
    mallory = home(tmp_path, "mallory")
    ok(mpcid("invitations", "import", token, "--home", mallory))
    assert listed(tmp_path, "mallory") == []
    error_line(mpcid("invitations", "decline", entry["session"], "--home", mallory), 1,
               "none of your identities is invited")
    # The one who created it sees it too, as party 0.
    ok(mpcid("invitations", "import", token, "--home", home(tmp_path, "alice")))
    assert listed(tmp_path, "alice")[0]["my_indexes"] == {people["alice"]: 0}


def test_decline_without_a_reachable_dht_is_kept_but_reported(
        tmp_path: Path, people: dict[str, str]) -> None:
    token = invite(tmp_path, people, NOWHERE)
    bob = home(tmp_path, "bob")
    ok(mpcid("invitations", "import", token, "--home", bob))
    [entry] = listed(tmp_path, "bob")
    failed = mpcid("invitations", "decline", entry["session"], "--as", "bob", "--home", bob)
    error_line(failed, 1, "declined session", "were not told")
    [entry] = listed(tmp_path, "bob", "--all")
    assert entry["state"] == "declined"


def test_error_lines(tmp_path: Path, node: str, people: dict[str, str]) -> None:
    bob = home(tmp_path, "bob")
    unknown = "0123456789abcdef" * 2
    error_line(mpcid("invitations", "decline", unknown, "--home", bob), 1,
               "not in this keystore", "import", "fetch")
    error_line(mpcid("invitations", "fetch", unknown, "--home", bob, "--bootstrap", node), 1,
               "no current invitation")
    error_line(mpcid("invitations", "fetch", unknown, "--home", bob), 2, "--bootstrap")
    error_line(mpcid("invitations", "fetch", "not-a-session", "--home", bob, "--bootstrap",
                     node), 2, "session id")
    error_line(mpcid("invitations", "import", "mpcid1:garbage!", "--home", bob), 2)
    error_line(mpcid("invitations", "import", "hello", "--home", bob), 2, "not an invitation")
    error_line(mpcid("invitations", "import", unknown, "--home", bob), 2, "fetch")
    token = invite(tmp_path, people, NOWHERE)
    ok(mpcid("invitations", "import", token, "--home", bob))
    session = listed(tmp_path, "bob")[0]["session"]
    error_line(mpcid("invitations", "decline", session, "--reason", "x" * 501, "--home", bob),
               2, "reason")
    error_line(mpcid("invitations", "decline", session, "--as", "nobody", "--home", bob), 1)
    empty = ok(mpcid("invitations", "--home", home(tmp_path, "mallory")))
    assert empty.stdout == "" and "no open invitations" in empty.stderr
