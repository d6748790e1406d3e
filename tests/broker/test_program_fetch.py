"""The program travels with the session: `mpcid join TOKEN` without --program fetches it
from the inviter, shows it and runs it only with consent; fetched programs are kept."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from processes import MPCID, SALARY, env, mpcid

pytestmark = pytest.mark.integration


@pytest.fixture
def people(tmp_path: Path) -> dict[str, str]:
    dids = {}
    for name in ("alice", "bob", "carol"):
        out = mpcid("create-did", "--home", str(tmp_path / name), "--name", name)
        assert out.returncode == 0, out.stderr
        dids[name] = out.stdout.split()[-1]
    return dids


def invite(tmp_path: Path, node: str, people: dict[str, str], program: str = SALARY) -> str:
    made = mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice", "--did",
                 people["bob"], "--did", people["carol"], "--program", program,
                 "--bootstrap", node)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def join(tmp_path: Path, name: str, token: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([MPCID, "join", token, "--home", str(tmp_path / name), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), stdin=subprocess.DEVNULL)


@contextmanager
def killed_at_the_end(*procs: subprocess.Popen[str]) -> Iterator[None]:
    """Whatever the test's outcome, no process outlives it."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def test_invitee_without_the_program_fetches_it(tmp_path: Path, node: str,
                                                people: dict[str, str]) -> None:
    # Alice knows Bob by name: she invites him as "bob" and her messages name him.
    for name in ("bob", "carol"):
        added = mpcid("contacts", "add", name, people[name], "--home", str(tmp_path / "alice"))
        assert added.returncode == 0, added.stderr
    made = mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice", "--did", "bob",
                 "--did", "carol", "--program", SALARY, "--bootstrap", node)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    # Alice invited with --program: her keystore kept it, so she joins without it too.
    procs = {"alice": join(tmp_path, "alice", token, "--", "--salaries", "1000"),
             "bob": join(tmp_path, "bob", token, "--accept-program", "--",
                         "--salaries", "2000"),
             "carol": join(tmp_path, "carol", token, "--program", SALARY, "--",
                           "--salaries", "3000")}
    results = {name: finish(proc) for name, proc in procs.items()}
    for name, (code, out, err) in results.items():
        assert code == 0, f"{name}: {err}"
        assert "total 6000" in out, f"{name}: {out}"
        assert "Install package" not in out + err  # MPyC's advice is not session output
    assert "running the kept program" in results["alice"][2]
    bob_err = results["bob"][2]
    assert "fetching it from the inviter" in bob_err and "running it (--accept-program)" in bob_err
    assert "(the invitation's)" in bob_err
    assert f"sent the program to party 1 (bob, {people['bob']})" in results["alice"][2]
    kept = mpcid("programs", "--home", str(tmp_path / "bob"))
    assert kept.returncode == 0 and "salary_sum.py" in kept.stdout, kept
    kept_path = Path(kept.stdout.split()[-1])
    assert kept_path.read_bytes() == Path(SALARY).read_bytes()
    shown = mpcid("programs", "show", "salary_sum.py", "--home", str(tmp_path / "bob"))
    assert shown.returncode == 0 and "async def main() -> None:" in shown.stdout, shown

    # A second session of the same program: Bob runs the kept copy, no fetch, no consent
    # asked (he consented when he kept it), even without a terminal.
    token2 = invite(tmp_path, node, people)
    procs = {"alice": join(tmp_path, "alice", token2, "--", "--salaries", "5"),
             "bob": join(tmp_path, "bob", token2, "--", "--salaries", "6"),
             "carol": join(tmp_path, "carol", token2, "--program", SALARY, "--",
                           "--salaries", "7")}
    results = {name: finish(proc) for name, proc in procs.items()}
    for name, (code, out, err) in results.items():
        assert code == 0, f"{name}: {err}"
        assert "total 18" in out
    assert "running the kept program" in results["bob"][2]
    assert "fetching" not in results["bob"][2]


def test_without_a_terminal_a_fetch_needs_consent_beforehand(tmp_path: Path,
                                                            people: dict[str, str]) -> None:
    # No node runs: the refusal comes before anything is fetched or published.
    token = invite(tmp_path, "/ip4/127.0.0.1/tcp/9/p2p/"
                   "12D3KooWGRUVh7aaLwHNYHpGsKHNjYE1V6tXvnyD2qP5jc1GVE9T", people)
    code, out, err = finish(join(tmp_path, "bob", token), timeout=60)
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "salary_sum.py" in lines[0] and "without a terminal" in lines[0]
    assert "--accept-program" in lines[0] and "--program FILE" in lines[0]
    assert mpcid("programs", "--home", str(tmp_path / "bob")).stdout.startswith(
        "no programs kept")
    # The inviter fetches from nobody: without its kept copy it must give the file.
    for kept in (tmp_path / "alice" / "programs").iterdir():
        for path in kept.iterdir():
            path.unlink()
    code, out, err = finish(join(tmp_path, "alice", token), timeout=60)
    assert code == 2 and "you invited this session, but its program salary_sum.py is not " \
        "kept here (give your copy with --program FILE)" in err


class Terminal:
    """A process whose stdin and stderr are a pseudo-terminal (stdout a pipe)."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stderr=slave,
                                     stdout=subprocess.PIPE, text=True, env=env())
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while text not in self.seen:
            left = end - time.monotonic()
            assert left > 0, f"{text!r} not seen in {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the process ended and closed the terminal
                    chunk = b""
                assert chunk, f"{text!r} not seen before the end: {self.seen[-2000:]!r}"
                self.seen += chunk.decode(errors="replace")
        return self.seen

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        try:
            while select.select([self.master], [], [], 0.2)[0]:
                chunk = os.read(self.master, 65536)
                if not chunk:
                    break
                self.seen += chunk.decode(errors="replace")
        except OSError:
            pass
        os.close(self.master)
        return self.proc.returncode, out


def test_a_person_reviews_the_program_and_accepts_it(tmp_path: Path, node: str,
                                                     people: dict[str, str]) -> None:
    token = invite(tmp_path, node, people)
    alice = join(tmp_path, "alice", token, "--", "--salaries", "10")
    carol = join(tmp_path, "carol", token, "--program", SALARY, "--", "--salaries", "30")
    bob = Terminal([MPCID, "join", token, "--home", str(tmp_path / "bob"), "--progress",
                    "log", "--", "--salaries", "20"])
    with killed_at_the_end(alice, carol, bob.proc):
        bob.expect("Run salary_sum.py? [y]es, [n]o, [s]how the source")
        assert "will run on this machine with your rights" in bob.seen
        bob.send("s")
        bob.expect("async def main() -> None:")
        assert " 1  \"\"\"Cross-organisation salary statistics" in bob.seen
        bob.seen = bob.seen[bob.seen.index("async def main"):]
        bob.expect("[s]how the source")
        bob.send("y")
        code, out = bob.finish()
        assert code == 0, bob.seen
        assert "total 60" in out
        for proc in (alice, carol):
            rc, out, err = finish(proc)
            assert rc == 0 and "total 60" in out, err


def test_a_person_who_refuses_the_program_stops_the_session(tmp_path: Path, node: str,
                                                            people: dict[str, str]) -> None:
    token = invite(tmp_path, node, people)
    alice = join(tmp_path, "alice", token, "--", "--salaries", "10")
    carol = join(tmp_path, "carol", token, "--program", SALARY, "--", "--salaries", "30")
    bob = Terminal([MPCID, "join", token, "--home", str(tmp_path / "bob")])
    with killed_at_the_end(alice, carol, bob.proc):
        bob.expect("[s]how the source")
        bob.send("n")
        code, out = bob.finish()
        assert code == 1 and out == ""
        assert "you did not accept the program salary_sum.py" in bob.seen
        # The others learn it from Bob's decline in the DHT, long before their timeout.
        for proc in (alice, carol):
            rc, out, err = finish(proc, timeout=60)
            assert rc == 1
            assert "will not take part: it did not accept the program salary_sum.py" in err
    assert mpcid("programs", "--home", str(tmp_path / "bob")).stdout.startswith(
        "no programs kept")
    again = mpcid("join", token, "--home", str(tmp_path / "bob"), "--accept-program")
    assert again.returncode == 1 and "you declined invitation" in again.stderr


def test_a_program_that_is_not_the_invited_one_is_refused(tmp_path: Path, node: str,
                                                          people: dict[str, str]) -> None:
    """A hostile inviter (real channel, real DHT record) sends other bytes than the
    invitation's hash: Bob refuses them, keeps nothing, runs nothing and declines."""
    import asyncio

    from mpcid.broker.inbox import InvitationStore
    from mpcid.broker.invitation import Invitation
    from mpcid.broker.paths import Paths, PathSettings
    from mpcid.broker.program_fetch import ProgramServer
    from mpcid.identity.did_key import DIDKey
    from mpcid.identity.keystore import Keystore
    from mpcid.p2p.channel import ChannelProtocol, listen
    from mpcid.p2p.noise import ChannelConfig, session_prologue

    token = invite(tmp_path, node, people)
    invitation = Invitation.from_token(token, time.time())
    alice = Keystore(tmp_path / "alice").load_identity("alice")
    evil = b"import os\nos.system('echo pwned')\n"

    async def scenario() -> tuple[int, str]:
        config = ChannelConfig(
            static_private=alice.x25519_private_key,
            prologue=session_prologue(invitation.session_id, invitation.program_sha256,
                                      list(invitation.parties)),
            initiator=False, accept_early_data=True,
            expected_peers={people["bob"]: DIDKey.parse(people["bob"]).x25519_public_key})
        server = await listen("127.0.0.1", 0, lambda: ChannelProtocol(
            config, lambda did: ProgramServer(evil).app(1)))
        paths = Paths(alice, PathSettings(bootstrap=(node,)))

        async def no_streams(sock: object, path: str) -> None:
            pass

        try:
            await paths.start(server.sockets[0].getsockname()[1], "127.0.0.1", no_streams,
                              peers=(people["bob"],))
            proc = await asyncio.create_subprocess_exec(
                MPCID, "join", token, "--home", str(tmp_path / "bob"), "--accept-program",
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env())
            out, err = await asyncio.wait_for(proc.communicate(), 90)
            assert out == b""
            return proc.returncode or 0, err.decode()
        finally:
            server.close()
            await paths.stop()

    code, err = asyncio.run(scenario())
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the program the inviter (party 0, ") and "SHA-256" in last
    assert invitation.program_sha256.hex() in last and "do not run it" in last
    assert "pwned" not in err
    assert mpcid("programs", "--home", str(tmp_path / "bob")).stdout.startswith(
        "no programs kept")
    stored = InvitationStore(Keystore(tmp_path / "bob")).get(invitation.session_id)
    assert stored is not None and stored.state == "declined"


def test_review_first_with_programs_fetch(tmp_path: Path, node: str,
                                          people: dict[str, str]) -> None:
    """Without a terminal: fetch for review (nothing runs, nothing is kept), then join
    with the reviewed file."""
    token = invite(tmp_path, node, people)
    alice = join(tmp_path, "alice", token, "--", "--salaries", "1")
    with killed_at_the_end(alice):
        fetched = mpcid("programs", "fetch", token, "--home", str(tmp_path / "bob"),
                        timeout=90)
        assert fetched.returncode == 0, fetched.stderr
        path = Path(fetched.stdout.strip().splitlines()[-1])
        assert path.read_bytes() == Path(SALARY).read_bytes()
        assert "not run and not kept" in fetched.stderr
        assert mpcid("programs", "--home", str(tmp_path / "bob")).stdout.startswith(
            "no programs kept")
        bob = join(tmp_path, "bob", token, "--program", str(path), "--", "--salaries", "2")
        carol = join(tmp_path, "carol", token, "--program", SALARY, "--", "--salaries", "3")
        with killed_at_the_end(bob, carol):
            for proc in (alice, bob, carol):
                code, out, err = finish(proc)
                assert code == 0 and "total 6" in out, err
    assert "salary_sum.py" in mpcid("programs", "--home", str(tmp_path / "bob")).stdout


def test_a_session_needs_the_partys_own_input(tmp_path: Path, node: str,
                                              people: dict[str, str]) -> None:
    """The example computes on nobody's made-up figures: without --salaries the join
    stops at once with the program's message and one line saying what to do."""
    token = invite(tmp_path, node, people)
    code, out, err = finish(join(tmp_path, "carol", token, "--program", SALARY), timeout=60)
    assert code == 1 and "total" not in out
    assert "give this party's salaries, e.g. --salaries" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the program stopped before the session started (exit "
                           "code 2)") and "join again with its arguments after --" in last
