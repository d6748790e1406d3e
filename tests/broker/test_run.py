"""`mpcid run`: unmodified MPyC programs as separate processes over mpcid channels.

Integration tests: real processes on loopback. Every test bounds every wait and kills
what it started."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MPCID = str(Path(sys.executable).parent / "mpcid")
SALARY = ROOT / "examples" / "salary_sum.py"
AUCTION = ROOT / "examples" / "sealed_bid_auction.py"
ROUNDS = ROOT / "tests" / "programs" / "rounds.py"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG")}
    return env


class Parties:
    """N identities in their own keystores, and helpers to write sessions and run them."""

    def __init__(self, root: Path, n: int) -> None:
        self.root = root
        self.names = [f"p{i}" for i in range(n)]
        self.dids = []
        for name in self.names:
            out = subprocess.run([MPCID, "create-did", "--home", str(root / name), "--name",
                                  name], capture_output=True, text=True, env=clean_env(),
                                 timeout=60, check=True)
            self.dids.append(out.stdout.strip().splitlines()[-1])
        self.procs: list[subprocess.Popen[str]] = []

    def session(self, program: Path, ports: list[int], session_id: str = "s-1",
                dids: list[str] | None = None, name: str = "session.json",
                hosts: list[str] | None = None) -> Path:
        digest = hashlib.sha256(program.read_bytes()).hexdigest()
        parties = [{"did": d, "host": (hosts or ["127.0.0.1"] * len(ports))[i],
                    "port": ports[i]} for i, d in enumerate(dids or self.dids)]
        path = self.root / name
        path.write_text(json.dumps({"session": session_id, "program_sha256": digest,
                                    "parties": parties}))
        return path

    def start(self, index: int, session: Path, program: Path, *args: str,
              timeout: float = 20.0, name: str | None = None) -> subprocess.Popen[str]:
        who = name or self.names[index]
        if program == SALARY and "--salaries" not in args:
            args = (*args, "--salaries", "1000")  # each party's own input (required)
        proc = subprocess.Popen(
            [MPCID, "run", "--home", str(self.root / self.names[index]), "--session",
             str(session), "--as", who, "--connect-timeout", str(timeout),
             "--idle-timeout", "6", "--", str(program), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
            cwd=self.root)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def parties3(tmp_path: Path) -> Iterator[Parties]:
    group = Parties(tmp_path, 3)
    yield group
    group.kill_all()


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def last_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines, f"no error line in:\n{err}"
    assert "Traceback" not in err, err
    return lines[-1]


def test_three_parties_compute_salary_statistics(parties3: Parties) -> None:
    session = parties3.session(SALARY, free_ports(3))
    salaries = ["50000,60000", "70000", "40000,45000,55000"]
    procs = [parties3.start(i, session, SALARY, "--salaries", salaries[i]) for i in range(3)]
    results = [finish(p) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert "total 320000" in out and "count 6" in out and "average 53333.33" in out
        # MPyC logs to stdout; the connection report is in its log.
        assert "All 3 parties connected via mpcid channels" in out


def test_sealed_bid_auction(parties3: Parties) -> None:
    session = parties3.session(AUCTION, free_ports(3))
    bids = ["700", "1200", "950"]
    procs = [parties3.start(i, session, AUCTION, "--bid", bids[i]) for i in range(3)]
    for code, out, err in (finish(p) for p in procs):
        assert code == 0, err
        assert "winner 1" in out and "price 950" in out


def test_program_hash_mismatch_is_refused_before_running(parties3: Parties,
                                                         tmp_path: Path) -> None:
    session = parties3.session(SALARY, free_ports(3))
    changed = tmp_path / "salary_sum.py"
    changed.write_text(SALARY.read_text() + "\n# changed\n")
    code, out, err = finish(parties3.start(0, session, changed), timeout=30)
    assert code == 1
    assert "SHA-256" in last_error_line(err) and "same program" in last_error_line(err)
    assert "Start MPyC" not in out + err


def test_identity_that_is_not_a_party_is_refused(parties3: Parties, tmp_path: Path) -> None:
    Parties(tmp_path / "out", 1)  # an identity in its own keystore, not in the session
    session = parties3.session(SALARY, free_ports(3))
    proc = subprocess.Popen([MPCID, "run", "--home", str(tmp_path / "out" / "p0"),
                             "--session", str(session), "--as", "p0", "--", str(SALARY)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
    code, _, err = finish(proc, timeout=30)
    assert code == 1 and "is not a party of session s-1" in last_error_line(err)


def test_invalid_session_file_is_a_usage_error(parties3: Parties, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"session": "x", "parties": []}')
    code, _, err = finish(parties3.start(0, bad, SALARY), timeout=30)
    assert code == 2 and "program_sha256" in last_error_line(err)


def test_party_of_another_session_cannot_connect(parties3: Parties) -> None:
    ports = free_ports(3)
    session = parties3.session(SALARY, ports)
    other = parties3.session(SALARY, ports, session_id="s-2", name="other.json")
    procs = [parties3.start(0, session, SALARY, timeout=5),
             parties3.start(1, session, SALARY, timeout=5),
             parties3.start(2, other, SALARY, timeout=5)]
    results = [finish(p) for p in procs]
    for code, _, err in results:
        assert code == 1, err
    # Party 0 dials party 2 (wrong session): handshake fails, and it names the party.
    line0 = last_error_line(results[0][2])
    assert "no channel within 5 s to: party 2" in line0 and parties3.dids[2] in line0
    assert f"{parties3.dids[2]} hung up during the handshake" in results[0][1]
    line1 = last_error_line(results[1][2])
    assert "party 2" in line1 and "party 0" not in line1
    # Party 2 (listening for 0 and 1) rejected both and says so.
    assert "failed the handshake" in results[2][1]


def test_unreachable_party_is_named_after_the_connect_timeout(parties3: Parties) -> None:
    session = parties3.session(SALARY, free_ports(3))
    started = time.monotonic()
    code, _, err = finish(parties3.start(0, session, SALARY, timeout=3), timeout=30)
    assert code == 1 and time.monotonic() - started < 20
    line = last_error_line(err)
    assert "party 1" in line and "party 2" in line and "127.0.0.1" in line


def test_port_in_use_is_a_clear_error(parties3: Parties) -> None:
    blocker = socket.socket()
    blocker.bind(("0.0.0.0", 0))
    blocker.listen()
    try:
        ports = free_ports(3)
        ports[1] = blocker.getsockname()[1]
        session = parties3.session(SALARY, ports)
        code, _, err = finish(parties3.start(1, session, SALARY, timeout=5), timeout=30)
    finally:
        blocker.close()
    assert code == 1
    assert f"cannot listen on *:{ports[1]}" in last_error_line(err)


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{text!r} never appeared")


def test_peer_dying_mid_computation_stops_the_others(parties3: Parties) -> None:
    session = parties3.session(ROUNDS, free_ports(3))
    procs = [parties3.start(i, session, ROUNDS, "400", "0.05") for i in range(3)]
    wait_for_line(procs[0], "round 3 ", timeout=30)
    procs[2].send_signal(signal.SIGKILL)
    started = time.monotonic()
    for proc in procs[:2]:
        code, _, err = finish(proc, timeout=30)
        assert code == 1
        line = last_error_line(err)
        assert "lost party 2" in line and parties3.dids[2] in line
    assert time.monotonic() - started < 15


class Proxy:
    """Forwards TCP both ways between its own loopback port and ``target_port``, accepting
    every attempt (a dialling party retries until the other listens); subclasses decide
    what happens to each connection in :meth:`connected`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self.connected(client, server)

    def connected(self, client: socket.socket, server: socket.socket) -> None:
        pump(server, client)
        pump(client, server)

    def close(self) -> None:
        self.listener.close()


def pump(src: socket.socket, dst: socket.socket, corrupt_after: int | None = None) -> None:
    """Copy ``src`` to ``dst`` in a thread (flipping one bit after ``corrupt_after``
    bytes, if given), then shut both down."""

    def run() -> None:
        seen = 0
        try:
            while data := src.recv(65536):
                if corrupt_after is not None and seen <= corrupt_after < seen + len(data):
                    data = bytearray(data)
                    data[corrupt_after - seen] ^= 0x01
                    data = bytes(data)
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    threading.Thread(target=run, daemon=True).start()


class CorruptingProxy(Proxy):
    """Flips one bit in the stream to the server after ``after`` bytes."""

    def __init__(self, target_port: int, after: int) -> None:
        self.after = after
        super().__init__(target_port)

    def connected(self, client: socket.socket, server: socket.socket) -> None:
        pump(server, client)
        pump(client, server, self.after)


def test_garbled_frame_mid_computation_stops_both_ends(parties3: Parties) -> None:
    ports = free_ports(3)
    session = parties3.session(ROUNDS, ports)
    # Party 0 reaches party 1 through a proxy that flips a bit well after the handshake.
    proxy = CorruptingProxy(ports[1], after=3000)
    via_proxy = parties3.session(ROUNDS, [ports[0], proxy.port, ports[2]], name="proxy.json")
    try:
        procs = [parties3.start(0, via_proxy, ROUNDS, "400", "0.02"),
                 parties3.start(1, session, ROUNDS, "400", "0.02"),
                 parties3.start(2, session, ROUNDS, "400", "0.02")]
        results = [finish(p, timeout=60) for p in procs]
    finally:
        proxy.close()
    code1, _, err1 = results[1]
    assert code1 == 1
    line1 = last_error_line(err1)
    assert "party 0" in line1 and "corrupted frame" in line1
    for code, _, err in results:
        assert code == 1, err
        last_error_line(err)


def test_mpyc_options_from_session_and_arguments_pass_through(parties3: Parties) -> None:
    session = parties3.session(SALARY, free_ports(3))
    spec = json.loads(session.read_text())
    spec["mpyc"] = {"threshold": 0, "no_prss": True}
    session.write_text(json.dumps(spec))
    procs = [parties3.start(i, session, SALARY, "--salaries", "1000", "--log-level", "debug")
             for i in range(3)]
    for code, out, err in (finish(p) for p in procs):
        assert code == 0, err
        assert "PRSS (pseudorandom secret sharing) disabled" in out
        assert "total 3000" in out and "count 3" in out


def test_demo_runs_an_example_as_separate_processes(tmp_path: Path) -> None:
    result = subprocess.run([MPCID, "demo", "--parties", "2", "--program",
                             "sealed_bid_auction"], capture_output=True, text=True,
                            env=clean_env(), timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "result (identical at all 2 parties" in result.stdout
    assert "local DHT node" in result.stdout and "completed" in result.stdout
    refusal = result.stdout.split("7. ", 1)[1]
    assert "former   you do not meet this session's requirements" in refusal
    assert "is revoked" in refusal and "will not take part" in refusal
    assert "winner" in result.stdout and "price" in result.stdout


def test_demo_refuses_a_missing_program(tmp_path: Path) -> None:
    result = subprocess.run([MPCID, "demo", "--program", str(tmp_path / "nope.py")],
                            capture_output=True, text=True, env=clean_env(), timeout=60)
    assert result.returncode == 2
    assert "is neither an example" in last_error_line(result.stderr)


def start_node(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    node = subprocess.Popen([MPCID, "node", "--home", str(tmp_path / "node"), "--listen",
                             "/ip4/127.0.0.1/tcp/0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    assert node.stdout is not None
    return node, node.stdout.readline().strip()


def test_parties_found_through_the_dht_connect_directly(parties3: Parties,
                                                        tmp_path: Path) -> None:
    node, addr = start_node(tmp_path)
    parties3.procs.append(node)
    assert addr.startswith("/ip4/127.0.0.1/tcp/"), addr
    session = parties3.session(SALARY, [0, 0, 0])
    spec = json.loads(session.read_text())
    spec["parties"] = [{"did": p["did"]} for p in spec["parties"]]  # no host, no port
    spec["bootstrap"] = [addr]
    session.write_text(json.dumps(spec))
    procs = [parties3.start(i, session, SALARY, "--salaries", "1000") for i in range(3)]
    for i, (code, out, err) in enumerate(finish(p) for p in procs):
        assert code == 0, err
        assert "total 3000" in out
        assert "published endpoint record" in out
        if i < 2:  # the dialling parties say which path they took
            assert "direct TCP to 127.0.0.1:" in out


class DroppingProxy(Proxy):
    """The first connection is cut (RST) ``after`` seconds after it was accepted, later ones
    are forwarded untouched. ``dropped`` is set once it is cut."""

    def __init__(self, target_port: int, after: float) -> None:
        self.after = after
        self.dropped = threading.Event()
        self.first = True
        super().__init__(target_port)

    def connected(self, client: socket.socket, server: socket.socket) -> None:
        super().connected(client, server)
        if self.first:
            self.first = False
            threading.Timer(self.after, self._cut, args=(client, server)).start()

    def _cut(self, *socks: socket.socket) -> None:
        for s in socks:
            try:  # linger 0: the close is a reset, as a dropped connection looks
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.dropped.set()


def test_channel_dropped_before_everyone_connected_is_redialled(parties3: Parties) -> None:
    """Issue item 3: a channel that dies before the last party is there is dialled again
    (and accepted again), instead of leaving a dead channel in MPyC and hanging."""
    ports = free_ports(3)
    session = parties3.session(SALARY, ports)
    proxy = DroppingProxy(ports[1], after=1.5)
    via_proxy = parties3.session(SALARY, [ports[0], proxy.port, ports[2]], name="proxy.json")
    try:
        procs = [parties3.start(0, via_proxy, SALARY, "--salaries", "1000", timeout=25),
                 parties3.start(1, session, SALARY, "--salaries", "2000", timeout=25)]
        assert proxy.dropped.wait(20), "the channel from party 0 to party 1 never opened"
        time.sleep(1.0)  # both ends have seen the drop
        procs.append(parties3.start(2, session, SALARY, "--salaries", "3000", timeout=25))
        results = [finish(p, timeout=45) for p in procs]
    finally:
        proxy.close()
    for code, out, err in results:
        assert code == 0, out + err
        assert "total 6000" in out and "Traceback" not in out + err
    # The drop really happened before party 2 was there; party 0 dialled party 1 again.
    log0, log1 = results[0][1] + results[0][2], results[1][1] + results[1][2]
    assert "closed before the computation started" in log0, log0
    assert "closed before the computation started" in log1, log1
    assert log0.count("channel to party 1") == 2, log0
    assert log1.count("channel from party 0") == 2, log1


def test_wrong_index_does_not_lock_the_genuine_party_out(tmp_path: Path) -> None:
    """Issue item 4: a channel that proves party 0's DID but announces another MPyC index
    is refused without a traceback, and the genuine party 0 is still accepted."""
    import asyncio

    from mpcid.identity.did_key import DIDKey
    from mpcid.identity.keystore import Keystore
    from mpcid.p2p.channel import ChannelProtocol, connect
    from mpcid.p2p.noise import ChannelConfig, session_prologue

    group = Parties(tmp_path, 2)
    try:
        ports = free_ports(2)
        session = group.session(SALARY, ports)
        listener = group.start(1, session, SALARY, "--salaries", "2000", timeout=20)
        key = Keystore(tmp_path / "p0").load_identity("p0")
        prologue = session_prologue("s-1", hashlib.sha256(SALARY.read_bytes()).digest(),
                                    group.dids)
        config = ChannelConfig(static_private=key.x25519_private_key, prologue=prologue,
                               initiator=True, expected_peers={
                                   group.dids[1]: DIDKey.parse(group.dids[1]).x25519_public_key},
                               keepalive_interval=5, idle_timeout=10, handshake_timeout=10)

        class LyingExchanger(asyncio.Protocol):
            def __init__(self) -> None:
                self.lost = asyncio.get_running_loop().create_future()

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                transport.write((7).to_bytes(2, "little") + bytes(64))  # index 7, not 0

            def connection_lost(self, exc: Exception | None) -> None:
                if not self.lost.done():
                    self.lost.set_result(None)

        async def lie() -> None:
            app = LyingExchanger()
            loop = asyncio.get_running_loop()
            protocol = await connect("127.0.0.1", ports[1], lambda: ChannelProtocol(
                config, lambda did: app), deadline=loop.time() + 15)
            await asyncio.wait_for(protocol.ready, 10)
            await asyncio.wait_for(app.lost, 10)  # party 1 refuses the channel

        asyncio.run(lie())
        genuine = group.start(0, session, SALARY, "--salaries", "1000", timeout=20)
        results = [finish(p, timeout=45) for p in (genuine, listener)]
    finally:
        group.kill_all()
    for code, out, err in results:
        assert code == 0, out + err
        assert "total 3000" in out and "Traceback" not in out + err
    assert "announced index 7" in results[1][1] + results[1][2]


def test_connect_timeout_after_a_redial_names_only_the_missing_party(parties3: Parties
                                                                      ) -> None:
    """After a dropped channel was dialled again, the connect timeout still ends the wait,
    naming the party that never came (not the one that reconnected)."""
    ports = free_ports(3)
    session = parties3.session(SALARY, ports)
    proxy = DroppingProxy(ports[1], after=1.0)
    via_proxy = parties3.session(SALARY, [ports[0], proxy.port, ports[2]], name="proxy.json")
    started = time.monotonic()
    try:
        # Party 1 waits longer, so that party 0 still has its channel at its timeout.
        procs = [parties3.start(0, via_proxy, SALARY, timeout=6),
                 parties3.start(1, session, SALARY, timeout=9)]
        results = [finish(p, timeout=40) for p in procs]
    finally:
        proxy.close()
    assert proxy.dropped.is_set() and time.monotonic() - started < 30
    (code0, out0, err0), (code1, out1, err1) = results
    line0, line1 = last_error_line(err0), last_error_line(err1)
    assert code0 == 1 and "no channel within 6 s to: party 2" in line0, line0
    assert "party 1" not in line0, line0
    # Party 0 has gone by party 1's timeout: it may be named too, party 2 must be.
    assert code1 == 1 and "no channel within 9 s to:" in line1 and "party 2" in line1
    for out in (out0, out1):
        assert "closed before the computation started" in out, out
