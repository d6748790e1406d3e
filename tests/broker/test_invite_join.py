"""`mpcid invite` and `mpcid join` as real processes on loopback, through a local node."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from processes import MPCID, SALARY, env, mpcid

pytestmark = pytest.mark.integration


@pytest.fixture
def people(tmp_path: Path) -> dict[str, str]:
    dids = {}
    for name in ("alice", "bob", "carol", "mallory"):
        out = mpcid("create-did", "--home", str(tmp_path / name), "--name", name)
        assert out.returncode == 0, out.stderr
        dids[name] = out.stdout.split()[-1]
    return dids


def invite(tmp_path: Path, node: str, people: dict[str, str], *extra: str
           ) -> subprocess.CompletedProcess[str]:
    return mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice", "--did",
                 people["bob"], "--did", people["carol"], "--program", SALARY,
                 "--bootstrap", node, *extra)


def join(tmp_path: Path, name: str, token: str, *extra: str) -> subprocess.Popen[str]:
    # No --as: each keystore holds one identity, the invited one.
    return subprocess.Popen([MPCID, "join", token, "--home", str(tmp_path / name),
                             "--program", SALARY, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_invited_parties_join_and_compute(tmp_path: Path, node: str,
                                          people: dict[str, str]) -> None:
    made = invite(tmp_path, node, people)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("mpcid1:")
    procs = [join(tmp_path, name, token, "--", "--salaries", str(amount))
             for name, amount in (("alice", 1000), ("bob", 2000), ("carol", 3000))]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "total 6000" in out and "count 3" in out


def test_join_refusals(tmp_path: Path, node: str, people: dict[str, str]) -> None:
    token = invite(tmp_path, node, people).stdout.strip().splitlines()[-1]
    changed = tmp_path / "salary_sum.py"
    changed.write_text(Path(SALARY).read_text() + "# changed\n")
    wrong_program = mpcid("join", token, "--home", str(tmp_path / "bob"), "--as", "bob",
                          "--program", str(changed))
    assert wrong_program.returncode == 1
    assert "SHA-256" in one_error_line(wrong_program.stderr)
    outsider = mpcid("join", token, "--home", str(tmp_path / "mallory"), "--as", "mallory",
                     "--program", SALARY)
    assert outsider.returncode == 1
    assert "is not invited" in one_error_line(outsider.stderr)
    no_folder = mpcid("join", token, "--home", str(tmp_path / "bob"), "--program", SALARY,
                      "--transcript", str(tmp_path / "missing" / "t.json"))
    assert no_folder.returncode == 2 and "transcript" in one_error_line(no_folder.stderr)
    stray = mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice", "--did",
                  people["bob"], "--program", SALARY, "--bootstrap", node, "--", "--x", "1")
    assert stray.returncode == 2 and "only used with --join" in one_error_line(stray.stderr)
    unnamed = mpcid("join", token, "--home", str(tmp_path / "mallory"), "--program", SALARY)
    assert unnamed.returncode == 1
    assert "none of your identities is invited" in one_error_line(unnamed.stderr)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    broken = mpcid("join", tampered, "--home", str(tmp_path / "bob"), "--as", "bob",
                   "--program", SALARY)
    assert broken.returncode in (1, 2)
    one_error_line(broken.stderr)


def _token(obj: dict[str, Any]) -> str:
    from mpcid.broker.invitation import TOKEN_PREFIX
    from mpcid.p2p.signed import canonical_json

    packed = base64.urlsafe_b64encode(zlib.compress(canonical_json(obj)))
    return TOKEN_PREFIX + packed.decode().rstrip("=")


def test_tampered_and_expired_invitations_are_refused(tmp_path: Path, node: str,
                                                      people: dict[str, str]) -> None:
    from mpcid.broker.invitation import Invitation, decode_token
    from mpcid.identity.keystore import Keystore

    token = invite(tmp_path, node, people).stdout.strip().splitlines()[-1]
    obj = json.loads(decode_token(token))
    obj["mpyc"]["threshold"] = 0  # content changed, signature kept
    tampered = mpcid("join", _token(obj), "--home", str(tmp_path / "bob"), "--as", "bob",
                     "--program", SALARY)
    assert tampered.returncode == 1
    assert "signature" in one_error_line(tampered.stderr)
    alice = Keystore(tmp_path / "alice").load_identity("alice")
    old, _ = Invitation.create(alice, [people["bob"]], "salary_sum.py",
                               hashlib.sha256(Path(SALARY).read_bytes()).digest(),
                               ttl=3600, bootstrap=(node,), now=time.time() - 7200)
    expired = mpcid("join", old.token(), "--home", str(tmp_path / "bob"), "--as", "bob",
                    "--program", SALARY)
    assert expired.returncode == 1
    assert "expired" in one_error_line(expired.stderr)


def test_invite_needs_a_node_and_valid_input(tmp_path: Path, people: dict[str, str]) -> None:
    no_node = mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice", "--did",
                    people["bob"], "--program", SALARY)
    assert no_node.returncode == 2 and "--bootstrap" in one_error_line(no_node.stderr)
    bad_did = mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice", "--did",
                    "did:key:zNope", "--program", SALARY, "--bootstrap",
                    "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGHFcGHDZmEdfS5eu2ScLm33fodTKk3vnGqtnFjVyzAAX")
    assert bad_did.returncode == 2
    one_error_line(bad_did.stderr)
    bad_duration = mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice",
                         "--did", people["bob"], "--program", SALARY, "--expires", "soon",
                         "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/"
                         "12D3KooWGHFcGHDZmEdfS5eu2ScLm33fodTKk3vnGqtnFjVyzAAX")
    assert bad_duration.returncode == 2 and "duration" in one_error_line(bad_duration.stderr)
