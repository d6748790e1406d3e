"""Credential-gated admission end to end: `mpcid invite` to the result, and every refusal.

Each party is a real `mpcid join` process; they meet through a local `mpcid node` and
exchange presentations inside their Noise channels. Keystores are made in-process (fast);
the organisation's status list has an https URL and every party is handed a copy of it
with ``--status-file URL=FILE`` (a status URL a peer presents is never read from disk).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpcid.identity import credentials as vc
from mpcid.identity.keystore import Keystore
from mpcid.identity.statuslist import Bitstring

from processes import MPCID, SALARY, env, mpcid  # this folder

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.timezone.utc)
STATUS_URL = "https://acme.example/status/1"


@dataclass
class World:
    root: Path
    node: str
    dids: dict[str, str]
    acme: str
    status_url: str
    status_file: Path

    def home(self, name: str) -> str:
        return str(self.root / name)

    def invite(self, *others: str, require: bool = True, extra: tuple[str, ...] = ()) -> str:
        args = ["invite", "--home", self.home("alice"), "--as", "alice", "--program", SALARY,
                "--bootstrap", self.node, *extra]
        for name in others:
            args += ["--did", self.dids[name]]
        if require:
            args += ["--require", f"MembershipCredential@{self.acme};organization=Acme"]
        made = mpcid(*args)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip().splitlines()[-1]

    def join(self, name: str, token: str, salary: int, *extra: str, progress: str = "json",
             cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [MPCID, "join", token, "--home", self.home(name), "--as", name, "--program",
             SALARY, "--connect-timeout", "40", "--progress", progress, "--status-file",
             f"{self.status_url}={self.status_file}", *extra, "--",
             "--salaries", str(salary)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=cwd)


def _credential(issuer: Keystore, name: str, subject: str, *, start: dt.datetime = NOW,
                end: dt.datetime | None = None, status: tuple[str, int] | None = None,
                organization: str = "Acme") -> dict[str, object]:
    key = issuer.load_identity(name)
    return vc.sign_credential(vc.build_credential(
        issuer=key.did.did, subject=subject, credential_type="MembershipCredential",
        claims={"organization": organization}, valid_from=start,
        valid_until=end or NOW + dt.timedelta(days=30), status=status), key, now=start)


@pytest.fixture
def world(tmp_path: Path, node: str) -> World:
    """Acme (issuer) and evil (another issuer); alice, bob and carol hold valid Acme
    membership; each of dave..ivan stands for one way to fail admission."""
    stores = {n: Keystore(tmp_path / n) for n in
              ("acme", "evil", "alice", "bob", "carol", "dave", "erin", "frank", "grace",
               "ivan")}
    dids = {n: ks.create_identity(n).did.did for n, ks in stores.items()}
    status_file = tmp_path / "status.json"
    url = STATUS_URL
    bits = Bitstring.empty()
    bits.set(4)  # frank's credential is revoked
    acme = stores["acme"]
    status = vc.sign_credential(vc.status_list_credential(
        issuer=dids["acme"], url=url, bits=bits, purpose="revocation", valid_from=NOW),
        acme.load_identity("acme"), now=NOW)
    status_file.write_text(json.dumps(status))
    held = {
        "alice": _credential(acme, "acme", dids["alice"], status=(url, 0)),
        "bob": _credential(acme, "acme", dids["bob"], status=(url, 1)),
        "carol": _credential(acme, "acme", dids["carol"], status=(url, 2)),
        # dave holds nothing
        "erin": _credential(acme, "acme", dids["erin"], start=NOW - dt.timedelta(days=9),
                            end=NOW - dt.timedelta(days=2), status=(url, 3)),
        "frank": _credential(acme, "acme", dids["frank"], status=(url, 4)),
        "grace": _credential(stores["evil"], "evil", dids["grace"]),
    }
    held["ivan"] = held["bob"]  # someone else's credential
    for name, document in held.items():
        stores[name].put_document("credentials", name, document)  # type: ignore[arg-type]
    return World(tmp_path, node, dids, dids["acme"], url, status_file)


def _events(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith('{"event"')]


def _error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_three_parties_with_credentials_compute(world: World) -> None:
    """From `mpcid invite` to the result: three `mpcid join` processes find each other,
    admit each other and compute; each writes a signed transcript and nothing else, and
    withdraws its endpoint record."""
    token = world.invite("bob", "carol")
    work = {name: world.root / f"cwd-{name}" for name in ("alice", "bob", "carol")}
    for folder in work.values():
        folder.mkdir()
    procs = [world.join("alice", token, 1000, "--transcript", "t.json", cwd=work["alice"]),
             world.join("bob", token, 2000, "--transcript", "t.json", cwd=work["bob"],
                        progress="log"),
             world.join("carol", token, 3000, "--transcript", "t.json", cwd=work["carol"],
                        progress="live")]
    outputs = [p.communicate(timeout=120) for p in procs]
    for name, proc, (out, err) in zip(("alice", "bob", "carol"), procs, outputs):
        assert proc.returncode == 0, err
        assert "total 6000" in out and "count 3" in out
        assert [p.name for p in work[name].iterdir()] == ["t.json"]
        checked = mpcid("transcript", "verify", "--json", str(work[name] / "t.json"))
        assert checked.returncode == 0, checked.stderr
        transcript = json.loads(checked.stdout)
        assert transcript["outcome"] == "completed" and transcript["signer"] == world.dids[name]
        assert all(p["admitted"] and p["credentials"][0]["issuer"] == world.acme
                   for p in transcript["parties"])
        # The node may still be storing a withdrawal sent just before the party exited.
        for _ in range(5):
            gone = mpcid("resolve", world.dids[name], "--bootstrap", world.node)
            if gone.returncode == 1:
                break
            time.sleep(1)
        assert gone.returncode == 1 and "no current endpoint record" in gone.stderr, (
            f"{name}: {gone.stdout}")
    events = _events(outputs[0][1])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "session" and kinds[-1] == "finished"
    assert events[-1]["outcome"] == "completed"
    # Alice found the others' records in the DHT (gone now, above) and dialled them.
    assert {e["party"] for e in events if e["event"] == "found"} == {1, 2}
    # Alice admitted both others, was admitted by both, and only then started.
    assert len([e for e in events if e["event"] == "admitted"]) == 2
    assert len([e for e in events if e["event"] == "admitted_me"]) == 2
    started = kinds.index("started")
    assert all(kinds.index(k) < started for k in ("admitted", "admitted_me"))
    assert all(e["credentials"] for e in events if e["event"] == "admitted")
    assert f"mpcid: admitted party 0 ({world.dids['alice']})" in outputs[1][1]
    assert "every party admitted every other: MPyC starts" in outputs[1][1]
    assert "I admitted" in outputs[2][1] and "admitted me" in outputs[2][1]  # the table


def test_party_without_credential_is_refused_by_all_before_mpyc(world: World) -> None:
    token = world.invite("bob", "dave")
    # Dave goes ahead although he knows he lacks the credential (--even-if-unmet): the
    # others' verification is what is tested here.
    procs = [world.join(name, token, salary, *(("--even-if-unmet",) if name == "dave"
                                               else ()))
             for name, salary in (("alice", 1000), ("bob", 2000), ("dave", 3000))]
    (a_out, a_err), (b_out, b_err), (d_out, d_err) = [p.communicate(timeout=120)
                                                      for p in procs]
    assert [p.returncode for p in procs] == [1, 1, 1]
    dave = world.dids["dave"]
    for out, err in ((a_out, a_err), (b_out, b_err)):
        line = _error(err)
        assert dave in line and "no credential" in line and "MembershipCredential" in line
        assert "started" not in [e["event"] for e in _events(err)]
        assert "total" not in out
    assert "refused" in _error(d_err) and "no credential" in _error(d_err)
    assert "warning: you hold no MembershipCredential" in d_err
    assert "started" not in [e["event"] for e in _events(d_err)]
    # MPyC never ran: it logs "Start MPyC runtime" only inside start(), never reached
    # past admission; no party printed a result.
    assert "All 3 parties connected" not in a_out + b_out + d_out


@pytest.mark.parametrize("who, reason", [
    ("erin", "expired"),
    ("frank", "revoked"),
    ("grace", "was issued by"),
    ("ivan", "not to the presenter"),
])
def test_bad_credential_is_refused_with_the_reason(world: World, who: str, reason: str
                                                   ) -> None:
    token = world.invite(who)
    procs = [world.join("alice", token, 1000, "--transcript", str(world.root / "a.t")),
             world.join(who, token, 2000, "--even-if-unmet")]
    (_, a_err), (_, w_err) = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [1, 1]
    line = _error(a_err)
    assert "refused party 1" in line and world.dids[who] in line and reason in line
    assert "refused me" in _error(w_err) and reason in _error(w_err)
    assert "can fix that (with its issuer)" in line  # the others can only go without it
    if reason == "revoked":
        assert "only the issuer can say why" in _error(w_err)
    checked = mpcid("transcript", "verify", "--json", str(world.root / "a.t"))
    transcript = json.loads(checked.stdout)
    assert transcript["outcome"] == "refused" and transcript["started_ms"] is None
    assert [p["admitted"] for p in transcript["parties"]] == [False, False]


def test_a_party_that_cannot_meet_the_requirements_declines_at_once(world: World) -> None:
    """Frank's credential is revoked: his own join sees it, does not start, and declines;
    Alice stops at once, told why and whose to fix it is."""
    token = world.invite("frank")
    alice = world.join("alice", token, 1000)
    started = time.monotonic()
    frank = world.join("frank", token, 2000)
    (_, f_err), (_, a_err) = [p.communicate(timeout=120) for p in (frank, alice)]
    assert [frank.returncode, alice.returncode] == [1, 1]
    assert time.monotonic() - started < 30  # not the 40 s connect timeout
    told = _error(f_err)
    assert "you do not meet this session's requirements" in told and "revoked" in told
    assert "only the issuer can say why" not in told  # the join's own hint, below
    assert f"ask the issuer ({world.acme})" in told and "you did not join" in told
    line = _error(a_err)
    assert "will not take part" in line and world.dids["frank"] in line and "revoked" in line
    assert "started" not in [e["event"] for e in _events(a_err)]


def test_no_show_is_named_after_the_timeout(world: World) -> None:
    token = world.invite("bob", require=False)
    proc = world.join("alice", token, 1000, "--connect-timeout", "4")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    line = _error(err)
    assert "no channel within 4 s" in line and world.dids["bob"] in line
    assert "not found in the DHT" in line  # never started: no record at all


def test_invite_join_and_join_by_session_id(world: World) -> None:
    """The inviter invites and joins in one command; the invitee needs only the session
    id and the DHT node, since the invitation was published there."""
    inviter = subprocess.Popen(
        [MPCID, "invite", "--home", world.home("alice"), "--as", "alice", "--program",
         SALARY, "--bootstrap", world.node, "--did", world.dids["bob"], "--require",
         f"MembershipCredential@{world.acme}", "--join", "--progress", "json",
         "--status-file", f"{world.status_url}={world.status_file}", "--",
         "--salaries", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env())
    assert inviter.stdout is not None
    token = inviter.stdout.readline().strip()
    assert token.startswith("mpcid1:")
    listed = mpcid("invitations", "list", "--json", "--home", world.home("alice"))
    session = json.loads(listed.stdout)[0]["session"]
    bob = subprocess.run(
        [MPCID, "join", session, "--home", world.home("bob"), "--as", "bob", "--program",
         SALARY, "--bootstrap", world.node, "--progress", "json", "--status-file",
         f"{world.status_url}={world.status_file}", "--", "--salaries", "20"],
        capture_output=True, text=True, env=env(), timeout=120)
    out, err = inviter.communicate(timeout=120)
    assert inviter.returncode == 0 and bob.returncode == 0, err + bob.stderr
    assert "total 30" in out and "total 30" in bob.stdout


def test_declining_invitee_is_named_by_the_others(world: World) -> None:
    token = world.invite("bob", "carol")
    session = json.loads(mpcid("invitations", "list", "--json", "--home",
                               world.home("alice")).stdout)[0]["session"]
    procs = [world.join("alice", token, 1), world.join("bob", token, 2)]
    imported = mpcid("invitations", "import", token, "--home", world.home("carol"))
    assert imported.returncode == 0, imported.stderr
    declined = mpcid("invitations", "decline", session, "--reason", "not this quarter",
                     "--as", "carol", "--home", world.home("carol"))
    assert declined.returncode == 0, declined.stderr
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1
        line = _error(err)
        assert world.dids["carol"] in line and "not this quarter" in line, line
    again = mpcid("join", token, "--home", world.home("carol"), "--as", "carol", "--program",
                  SALARY)
    assert again.returncode == 1 and "you declined" in _error(again.stderr)


def test_late_party_learns_why_the_session_stopped(world: World) -> None:
    """Bob refuses Dave before Alice has started: Bob publishes why, so Alice, arriving
    when nobody is left to tell her, reports the refusal instead of a timeout."""
    token = world.invite("bob", "dave")
    early = [world.join("bob", token, 2), world.join("dave", token, 3, "--even-if-unmet")]
    for proc in early:
        proc.communicate(timeout=120)
        assert proc.returncode == 1
    alice = world.join("alice", token, 1)
    _, err = alice.communicate(timeout=120)
    assert alice.returncode == 1
    line = _error(err)
    assert "will not take part" in line and world.dids["dave"] in line
    assert "no credential" in line and "no channel within" not in line


# --- what a peer's credential may make this party fetch (specs/session.md 7.4) -----------


@pytest.fixture
def listener() -> Iterator[tuple[int, socket.socket]]:
    """A loopback port that listens but never answers: a connection to it would sit in
    its backlog, where the test looks for it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock.getsockname()[1], sock


def _connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def _hand_to_dave(world: World, issuer: str, status_url: str) -> None:
    """Dave holds an Acme-shaped membership credential from ``issuer`` whose status list
    is at ``status_url`` (a URL he chose)."""
    held = _credential(Keystore(world.root / issuer), issuer, world.dids["dave"],
                       status=(status_url, 0))
    Keystore(world.root / "dave").put_document("credentials", "m", held)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", ["secret file", "missing file", "open port"])
def test_peer_chosen_status_url_is_not_fetched(world: World, where: str,
                                               listener: tuple[int, socket.socket]) -> None:
    """A credential from the required issuer names a status list on Alice's own disk or
    an address inside her network: Alice reads and connects to nothing, and Dave learns
    only that the status could not be checked (not "not JSON", "No such file" or
    "Cannot connect", which would map Alice's files and ports)."""
    port, sock = listener
    secret = world.root / "secret.txt"
    secret.write_text("root:x:0:0\n")
    url = {"secret file": secret.as_uri(),
           "missing file": (world.root / "missing.json").as_uri(),
           "open port": f"https://127.0.0.1:{port}/status"}[where]
    _hand_to_dave(world, "acme", url)
    token = world.invite("dave")
    procs = [world.join("alice", token, 1000), world.join("dave", token, 2000)]
    (_, a_err), (_, d_err) = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [1, 1]
    generic = "its credential's status could not be checked"
    assert generic in _error(a_err) and world.dids["dave"] in _error(a_err)
    told = _error(d_err)
    assert "refused me" in told and generic in told
    for leak in ("JSON", "No such file", "Cannot connect", "secret", str(port), "public",
                 "local file"):
        assert leak not in told, told
    # Alice's own display says what happened.
    refused = [e for e in _events(a_err) if e["event"] == "refused"]
    assert refused and url in str(refused[0]["reason"])
    assert not _connected(sock)


def test_unrequested_issuer_is_refused_before_any_fetch(
        world: World, listener: tuple[int, socket.socket]) -> None:
    """A credential from an issuer the session did not ask for is refused on the policy
    alone: its status list (a port on Alice's machine) is never contacted."""
    port, sock = listener
    _hand_to_dave(world, "evil", f"http://127.0.0.1:{port}/status")
    token = world.invite("dave")
    procs = [world.join("alice", token, 1000),
             world.join("dave", token, 2000, "--even-if-unmet")]
    (_, a_err), (_, d_err) = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [1, 1]
    assert "was issued by" in _error(a_err) and world.dids["evil"] in _error(a_err)
    assert "refused me" in _error(d_err) and "was issued by" in _error(d_err)
    assert not _connected(sock)


def test_an_inviter_who_fails_its_own_requirements_is_told_before_inviting(
        world: World) -> None:
    """Dave holds no membership: his invitation would be refused by everyone, so it is
    not made (unless he insists); nothing is published."""
    base = ["invite", "--home", world.home("dave"), "--as", "dave", "--did",
            world.dids["bob"], "--program", SALARY, "--bootstrap", world.node, "--require",
            f"MembershipCredential@{world.acme},{world.dids['evil']};organization=Acme"]
    refused = mpcid(*base)
    assert refused.returncode == 2 and refused.stdout == ""
    line = _error(refused.stderr)
    assert "you do not meet this invitation's requirements yourself" in line
    assert "you hold no MembershipCredential" in line and "--even-if-unmet" in line
    insisted = mpcid(*base, "--even-if-unmet", "--no-publish")
    assert insisted.returncode == 0 and insisted.stdout.strip().startswith("mpcid1:")
