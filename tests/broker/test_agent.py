"""The local agent: `mpcid online` lends its libp2p host to `mpcid join` of its identity.

End to end as a user runs it (one `mpcid online` per party, then `mpcid join`), and the
agent protocol's bounds against a client of the same user that misbehaves."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import MPCID, SALARY, env, mpcid

from mpcid.broker.agent import (MAX_MESSAGE, AgentError, AgentPresence, agent_socket,
                                recv_message, send_message)

pytestmark = pytest.mark.integration

NAMES = ("alice", "bob", "carol")


@pytest.fixture
def dids(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name in NAMES:
        made = mpcid("create-did", "--home", str(tmp_path / name), "--name", name)
        assert made.returncode == 0, made.stderr
        out[name] = made.stdout.split()[-1]
    return out


def start_online(tmp_path: Path, name: str, node: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([MPCID, "online", "--home", str(tmp_path / name), "--as", name,
                             "--bootstrap", node, "--listen", "/ip4/127.0.0.1/tcp/0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("agent "):
            return proc, line.split(" ", 1)[1].strip()
    proc.wait(timeout=10)
    raise AssertionError(f"mpcid online printed no agent line: {proc.stderr.read()}")  # type: ignore[union-attr]


@pytest.fixture
def agents(tmp_path: Path, node: str, dids: dict[str, str]
           ) -> Iterator[dict[str, tuple[subprocess.Popen[str], str]]]:
    running: dict[str, tuple[subprocess.Popen[str], str]] = {}
    try:
        for name in NAMES:
            running[name] = start_online(tmp_path, name, node)
        yield running
    finally:
        for proc, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def invite_token(tmp_path: Path, node: str, dids: dict[str, str]) -> str:
    made = mpcid("invite", "--home", str(tmp_path / "alice"), "--as", "alice", "--did",
                 dids["bob"], "--did", dids["carol"], "--program", SALARY, "--bootstrap",
                 node, "--no-publish")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def test_join_uses_the_agent_and_the_sessions_endpoints_leave_with_it(
        tmp_path: Path, node: str, dids: dict[str, str],
        agents: dict[str, tuple[subprocess.Popen[str], str]]) -> None:
    token = invite_token(tmp_path, node, dids)
    for name, (_, path) in agents.items():
        assert Path(path) == agent_socket(tmp_path / name, dids[name])
        assert os.stat(path).st_mode & 0o077 == 0  # only its user may connect
    procs = [subprocess.Popen([MPCID, "join", token, "--home", str(tmp_path / name),
                               "--program", SALARY, "--", "--salaries", str(amount)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env())
             for name, amount in zip(NAMES, (1000, 2000, 3000))]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "total 6000" in out
        assert "using the local agent" in out + err
    # The session's endpoints left the record, and the agent has none of its own (no
    # --endpoint): the record is withdrawn.
    found = subprocess.run([MPCID, "resolve", dids["bob"], "--bootstrap", node],
                           capture_output=True, text=True, env=env(), timeout=60)
    assert found.returncode == 1 and "no current endpoint record" in found.stderr
    # The joins never imported py-libp2p: see test_join_with_an_agent_imports_no_libp2p.


def test_a_second_online_of_the_same_identity_is_refused_and_a_stale_socket_replaced(
        tmp_path: Path, node: str, dids: dict[str, str]) -> None:
    first, path = start_online(tmp_path, "alice", node)
    try:
        second = mpcid("online", "--home", str(tmp_path / "alice"), "--as", "alice",
                       "--bootstrap", node, "--listen", "/ip4/127.0.0.1/tcp/0", timeout=60)
        assert second.returncode == 2
        assert "another mpcid online already serves" in second.stderr
        assert Path(path).exists()  # the first one's socket is untouched
    finally:
        first.kill()  # no clean stop: the socket file stays behind
        first.communicate()
    assert Path(path).exists()
    again, path2 = start_online(tmp_path, "alice", node)
    assert path2 == path
    again.send_signal(signal.SIGINT)
    again.communicate(timeout=30)
    assert not Path(path).exists()  # a clean stop removes it


def test_join_without_a_live_agent_runs_its_own_host(tmp_path: Path, node: str,
                                                     dids: dict[str, str]) -> None:
    token = invite_token(tmp_path, node, dids)
    stale = agent_socket(tmp_path / "bob", dids["bob"])
    stale.write_text("")  # a file where the socket would be: not an agent
    procs = [subprocess.Popen([MPCID, "join", token, "--home", str(tmp_path / name),
                               "--program", SALARY, "--", "--salaries", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env()) for name in NAMES]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "total 3" in out


def test_join_with_an_agent_imports_no_libp2p(
        tmp_path: Path, node: str, dids: dict[str, str],
        agents: dict[str, tuple[subprocess.Popen[str], str]]) -> None:
    """Bob's presence through his agent, in this test's process: publish, resolve, and
    the agent's refusals, without py-libp2p here."""
    script = f"""
import asyncio, sys
from pathlib import Path
from mpcid.broker.agent import AgentPresence
from mpcid.p2p.errors import ConnectFailed

async def main():
    agent = await AgentPresence.connect(Path({agents['bob'][1]!r}), {dids['bob']!r},
                                        [{dids['alice']!r}], [{node!r}], [])
    assert agent is not None and agent.reach == "public", agent
    record = await agent.publish(["127.0.0.1:9999"], [], extra={{"reach": "public"}})
    assert record.did == {dids['bob']!r} and record.tcp == ("127.0.0.1:9999",)
    found = await agent.resolve({dids['bob']!r})
    assert found is not None and "127.0.0.1:9999" in found.tcp, found
    # awaited through the agent at the node: at once when held, nothing newer after
    awaited, served = await agent.await_record({dids['bob']!r}, -1, 5.0)
    assert served and awaited == found, (awaited, found)
    assert await agent.await_record({dids['bob']!r}, found.seq, 0.3) == (None, True)
    try:
        await agent.await_record({dids['bob']!r}, -1, 60.0)
        raise SystemExit("an await longer than a node holds one was taken")
    except ConnectFailed as exc:
        assert "await" in str(exc)
    # carol's agent publishes nothing outside a session (it has no --endpoint)
    assert await agent.resolve({dids['carol']!r}) is None
    try:  # carol is not a party of this session: no stream to her
        await agent.open_stream({dids['carol']!r}, "/ip4/127.0.0.1/tcp/1", "/x/1")
        raise SystemExit("opened a stream to a non-party")
    except ConnectFailed as exc:
        assert "only to the session's parties" in str(exc)
    other = await AgentPresence.connect(Path({agents['bob'][1]!r}), {dids['alice']!r},
                                        [], [{node!r}], [])
    assert other is None  # bob's agent does not serve alice
    await agent.stop()
    assert "libp2p" not in sys.modules
    print("ok")

asyncio.run(main())
"""
    done = subprocess.run([str(Path(MPCID).with_name("python")), "-c", script],
                          capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_messages_are_bounded_and_must_be_objects() -> None:
    async def scenario() -> None:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        left.setblocking(False)
        right.setblocking(False)
        with pytest.raises(AgentError, match="larger than"):
            await send_message(left, {"x": "y" * MAX_MESSAGE})
        left.send(b"z" * (MAX_MESSAGE + 10))
        with pytest.raises(AgentError, match="larger than"):
            await recv_message(right)
        left.send(b"[1, 2]")
        with pytest.raises(AgentError, match="not a JSON object"):
            await recv_message(right)
        reader, writer = socket.socketpair()
        await send_message(left, {"t": "stream"}, reader.fileno())
        message, fds = await recv_message(right) or ({}, [])
        assert message == {"t": "stream"} and len(fds) == 1
        with socket.socket(fileno=fds[0]) as passed:
            writer.send(b"hi")
            assert passed.recv(2) == b"hi"  # the same socket, passed to this end
        left.close()
        assert await recv_message(right) is None
        for s in (right, reader, writer):
            s.close()

    asyncio.run(scenario())


def test_a_client_that_does_not_open_a_session_is_dropped(
        tmp_path: Path, node: str, dids: dict[str, str],
        agents: dict[str, tuple[subprocess.Popen[str], str]]) -> None:
    async def scenario() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, agents["alice"][1])
        await send_message(sock, {"id": 1, "op": "get", "key": "/etc/passwd"})
        reply = await asyncio.wait_for(recv_message(sock), 10)
        assert reply is not None and reply[0]["ok"] is False
        assert await asyncio.wait_for(recv_message(sock), 10) is None  # and closed
        sock.close()
        assert await AgentPresence.connect(Path(agents["alice"][1]), dids["alice"], [],
                                           [], []) is not None  # still serving

    asyncio.run(scenario())
