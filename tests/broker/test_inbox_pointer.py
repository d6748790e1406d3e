"""Inbox pointers (specs/session.md 8.5): the sans-IO rules, and the inbox end to end."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from processes import MPCID, SALARY, env, mpcid

from mpcid.broker.errors import InvalidInboxPointer
from mpcid.broker.inbox_pointer import (MAX_SESSIONS, InboxKind, InboxPointer, decode_pointer,
                                        inbox_key)
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidProof
from mpcid.p2p.errors import InvalidRecord
from mpcid.p2p.signed import canonical_json

NOW = 1_800_000_000.0
INVITER, INVITEE = Ed25519Key.generate(), Ed25519Key.generate()
SESSIONS = ["a" * 32, "b" * 32]


def pointer(**change: object) -> tuple[str, bytes]:
    _, value = InboxPointer.create(INVITER, INVITEE.did.did, SESSIONS, int(NOW) + 3600, NOW)
    if not change:
        return inbox_key(INVITEE.did.did, INVITER.did.did), value
    obj = json.loads(value)
    obj.update(change)
    return inbox_key(INVITEE.did.did, INVITER.did.did), canonical_json(obj)


def test_a_pointer_round_trips_and_the_newest_wins() -> None:
    key, value = pointer()
    read = decode_pointer(key, value, NOW)
    assert read.sessions == tuple(SESSIONS) and read.inviter == INVITER.did.did
    _, newer = InboxPointer.create(INVITER, INVITEE.did.did, SESSIONS[:1], int(NOW) + 60,
                                   NOW + 5)
    assert InboxKind().select(key, [value, newer, b"junk"], NOW + 5) == 1


@pytest.mark.parametrize("change, error", [
    ({"sessions": ["c" * 32] * 2}, InvalidInboxPointer),
    ({"sessions": [f"{i:032x}" for i in range(MAX_SESSIONS + 1)]}, InvalidInboxPointer),
    ({"sessions": ["not a session"]}, InvalidInboxPointer),
    ({"invitee": Ed25519Key.generate().did.did}, InvalidInboxPointer),  # another key's
    ({"expires": int(NOW) + 40 * 86400}, InvalidInboxPointer),
    ({"sessions": ["c" * 32]}, InvalidProof),  # changed after signing
    ({"extra": 1}, InvalidInboxPointer),
])
def test_what_nodes_and_readers_refuse(change: dict[str, object], error: type) -> None:
    key, value = pointer(**change)
    with pytest.raises(error):
        decode_pointer(key, value, NOW)


def test_an_expired_pointer_is_not_valid() -> None:
    key, value = pointer()
    with pytest.raises(InvalidInboxPointer, match="not valid now"):
        decode_pointer(key, value, NOW + 7200)


def test_a_pointer_only_counts_under_its_own_key() -> None:
    _, value = pointer()
    other = inbox_key(INVITEE.did.did, Ed25519Key.generate().did.did)
    with pytest.raises(InvalidInboxPointer, match="key of other parties"):
        decode_pointer(other, value, NOW)
    with pytest.raises(InvalidRecord):
        decode_pointer("/mpcid/decline/" + "a" * 32 + "/" + INVITEE.did.did, value, NOW)


@pytest.mark.integration
def test_invitations_arrive_from_contacts_without_a_token(tmp_path: Path, node: str) -> None:
    dids = {}
    for name in ("alice", "bob", "mallory"):
        dids[name] = mpcid("create-did", "--home", str(tmp_path / name), "--name",
                           name).stdout.split()[-1]
    assert mpcid("contacts", "add", "alice", dids["alice"], "--home",
                 str(tmp_path / "bob")).returncode == 0
    tokens = {}
    for inviter in ("alice", "mallory"):
        made = mpcid("invite", "--home", str(tmp_path / inviter), "--as", inviter, "--did",
                     dids["bob"], "--program", SALARY, "--bootstrap", node)
        assert made.returncode == 0, made.stderr
        tokens[inviter] = made.stdout.strip().splitlines()[-1]
    from mpcid.broker.invitation import Invitation

    sessions = {k: Invitation.from_token(t, time.time()).session_id for k, t in tokens.items()}
    listed = mpcid("invitations", "--bootstrap", node, "--home", str(tmp_path / "bob"),
                   timeout=90)
    assert listed.returncode == 0, listed.stderr
    assert "1 new invitation(s) in your inbox" in listed.stderr
    assert sessions["alice"] in listed.stdout and sessions["mallory"] not in listed.stdout
    again = mpcid("invitations", "--bootstrap", node, "--home", str(tmp_path / "bob"),
                  timeout=90)
    assert "no new invitations in your inbox" in again.stderr
    # ... and Bob joins it by its session id, no token ever handed over.
    procs = [subprocess.Popen([MPCID, "join", ref, "--home", str(tmp_path / name),
                               "--program", SALARY, "--", "--salaries", amount],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env(), stdin=subprocess.DEVNULL)
             for name, ref, amount in (("alice", tokens["alice"], "10"),
                                       ("bob", sessions["alice"], "20"))]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "total 30" in out, err
