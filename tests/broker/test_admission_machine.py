"""The admission state machine and framing (sans-IO), and a replayed presentation refused
over real Noise channels in one process."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpcid.broker import admission as adm
from mpcid.broker.admission_channel import AdmissionGate, AdmissionSettings
from mpcid.broker.progress import Progress
from mpcid.identity import credentials as vc
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.identity.policy import Policy
from mpcid.p2p.channel import ChannelProtocol
from mpcid.p2p.errors import RemoteProtocolError
from mpcid.p2p.noise import ChannelConfig, session_prologue


def test_decoder_splits_messages_and_hands_over_the_rest() -> None:
    stream = (adm.encode(adm.presentation({"a": 1})) + adm.encode(adm.verdict(True))
              + adm.encode(adm.READY) + b"\x01\x00mpyc bytes")
    decoder = adm.Decoder()
    got = []
    for i in range(len(stream)):  # byte by byte: every split point
        got += decoder.feed(stream[i:i + 1])
    assert [m["t"] for m in got] == ["presentation", "verdict", "ready"]
    assert decoder.finished and bytes(decoder.rest) == b"\x01\x00mpyc bytes"


@pytest.mark.parametrize("body, what", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"t": "hello"}', "unknown admission message"),
    (b'{"t": "presentation", "v": 2, "vp": {}}', "version 2"),
    (b'{"t": "verdict", "admitted": "yes"}', "'admitted'"),
])
def test_decoder_refuses_bad_messages(body: bytes, what: str) -> None:
    with pytest.raises(RemoteProtocolError, match=what):
        adm.Decoder().feed(len(body).to_bytes(4, "big") + body)


def test_decoder_refuses_oversized_length() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        adm.Decoder().feed((adm.MAX_MESSAGE + 1).to_bytes(4, "big"))


@given(st.binary(max_size=300))
def test_decoder_never_raises_anything_else(data: bytes) -> None:
    try:
        adm.Decoder().feed(data)
    except RemoteProtocolError:
        pass


def _sends(actions: list[Any]) -> list[tuple[int, str]]:
    return [(a.peer, a.message["t"]) for a in actions if isinstance(a, adm.Send)]


def test_three_parties_ready_only_after_mutual_admission() -> None:
    machine = adm.Admission(0, (1, 2))
    assert isinstance(machine.receive(1, adm.presentation({}))[0], adm.Verify)
    assert _sends(machine.verified(1, None)) == [(1, "verdict")]
    assert machine.receive(1, adm.verdict(True)) == []
    machine.receive(2, adm.presentation({}))
    assert _sends(machine.receive(2, adm.verdict(True))) == []
    # The last admission completes the picture: ready to everyone.
    assert _sends(machine.verified(2, None)) == [(2, "verdict"), (1, "ready"), (2, "ready")]
    assert not machine.complete
    machine.receive(1, adm.READY)
    machine.receive(2, adm.READY)
    assert machine.complete and machine.error is None


def test_a_timeout_says_when_the_peers_wait_for_someone_else() -> None:
    """Party 0 admitted 1 and 2 both ways, but they never said ready (they wait for
    each other, say): the timeout must not read as if 1 and 2 were the problem."""
    async def main() -> None:
        dids = [Ed25519Key.generate().did.did for _ in range(3)]
        gate = AdmissionGate(Ed25519Key.generate(), "s", 0, dids,
                             AdmissionSettings(Policy(), (), vc.VerifyConfig()), Progress(),
                             lambda did: f"party ({did})")
        assert not gate.waiting_on_others()  # nothing happened yet
        for peer in (1, 2):
            gate.machine.state[peer].mine = adm.Mine.ADMITTED
            gate.machine.state[peer].theirs = adm.Theirs.ADMITTED_ME
        assert gate.waiting_on_others()
        gate.machine.state[2].theirs = adm.Theirs.PENDING  # 2 has not decided about me
        assert not gate.waiting_on_others()

    asyncio.run(main())


def test_refusal_tells_the_refused_and_aborts_the_others() -> None:
    machine = adm.Admission(0, (1, 2), {2: "party 2 (did:key:z...)"})
    machine.receive(2, adm.presentation({}))
    actions = machine.verified(2, "no credential was presented")
    assert _sends(actions) == [(2, "verdict"), (1, "abort")]
    assert "refused party 2 (did:key:z...): no credential" in str(machine.error)
    assert isinstance(machine.error, adm.AdmissionRefused)


def test_a_channel_opening_after_a_refusal_gets_only_the_reason() -> None:
    """Regression: a party whose channel opened after the refusal got a presentation and
    then a closed channel, and reported a lost party instead of the refusal."""
    machine = adm.Admission(1, (0, 2), {2: "party 2 (did:key:z...)"})
    assert machine.late_channel(0) == []
    machine.receive(2, adm.presentation({}))
    machine.verified(2, "no credential was presented")
    assert _sends(machine.late_channel(0)) == [(0, "abort")]
    [late] = machine.late_channel(0)
    assert isinstance(late, adm.Send)
    assert late.message["reason"] == ("party 1 refused party 2 (did:key:z...): no "
                                      "credential was presented")
    refused = adm.Admission(2, (0, 1), {1: "party 1"})
    refused.receive(1, adm.verdict(False, "expired"))
    assert refused.late_channel(0)[0].message["reason"] == "party 1 refused party 2: expired"


def test_refused_by_a_peer_and_aborted_by_a_peer() -> None:
    machine = adm.Admission(1, (0, 2))
    assert _sends(machine.receive(0, adm.verdict(False, "expired"))) == [(2, "abort")]
    assert isinstance(machine.error, adm.AdmissionRefused) and "refused me: expired" in str(
        machine.error)
    assert machine.state[0].theirs is adm.Theirs.REFUSED_ME  # a state of the table
    other = adm.Admission(1, (0, 2))
    assert _sends(other.receive(2, adm.abort("party 2 refused party 0: revoked"))) == [
        (0, "abort")]
    assert isinstance(other.error, adm.SessionAborted) and "revoked" in str(other.error)


@pytest.mark.parametrize("steps", [
    [adm.READY],  # ready before any admission
    [adm.presentation({}), adm.presentation({})],  # a second presentation
    [adm.verdict(True), adm.verdict(True)],  # a second verdict
])
def test_out_of_order_messages_are_protocol_errors(steps: list[dict[str, Any]]) -> None:
    machine = adm.Admission(0, (1,))
    for message in steps:
        machine.receive(1, message)
    assert isinstance(machine.error, RemoteProtocolError)
    assert "broke the admission protocol" in str(machine.error)


# --- a replayed presentation over real channels ---------------------------------------


class Replayer(asyncio.Protocol):
    """The peer's side: sends a presentation it made for another session."""

    def __init__(self, vp: dict[str, Any]) -> None:
        self.vp = vp
        self.received = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(adm.encode(adm.presentation(self.vp)))

    def data_received(self, data: bytes) -> None:
        self.received += data


def test_presentation_replayed_from_another_session_is_refused() -> None:
    alice, bob = Ed25519Key.generate(), Ed25519Key.generate()
    dids = [alice.did.did, bob.did.did]
    session = "a" * 32
    now = dt.datetime.now(dt.timezone.utc)
    # A presentation bob really made, but for another session and channel.
    old = vc.create_presentation(bob, [], challenge="mpcid-admission/1:" + "A" * 43,
                                 domain=adm.domain_for("b" * 32), now=now)

    def config(me: Ed25519Key, initiator: bool, peer: Ed25519Key) -> ChannelConfig:
        return ChannelConfig(static_private=me.x25519_private_key,
                             prologue=session_prologue(session, b"\0" * 32, dids),
                             initiator=initiator,
                             expected_peers={peer.did.did: peer.did.x25519_public_key})

    async def main() -> MpcidError:
        loop = asyncio.get_running_loop()
        gate = AdmissionGate(alice, session, 0, dids,
                             AdmissionSettings(Policy(), (), vc.VerifyConfig()), Progress(),
                             lambda did: f"party 1 ({did})")
        left, right = socket.socketpair()
        await loop.create_connection(lambda: ChannelProtocol(
            config(alice, True, bob), lambda did: gate.app(1, asyncio.Protocol)), sock=left)
        await loop.create_connection(lambda: ChannelProtocol(
            config(bob, False, alice), lambda did: Replayer(old)), sock=right)
        try:
            await asyncio.wait_for(gate.done, 20)
        except MpcidError as exc:
            await gate.close()
            return exc
        raise AssertionError("the replayed presentation was accepted")

    error = asyncio.run(main())
    assert isinstance(error, adm.AdmissionRefused)
    assert "replayed" in str(error) and bob.did.did in str(error)


def test_every_transition_of_the_table_is_reachable_by_its_input() -> None:
    """Each entry of TRANSITIONS, driven from its own start state, lands where it says."""
    messages = {"presentation": adm.presentation({}), "admitted": adm.verdict(True),
                "refused": adm.verdict(False, "no"), "ready": adm.READY}
    for (what, mine, theirs), after in adm.TRANSITIONS.items():
        machine = adm.Admission(0, (1, 2))
        machine.state[1].mine, machine.state[1].theirs = mine, theirs
        if what in messages:
            machine.receive(1, messages[what])
        else:
            machine.verified(1, None if what == "admit" else "no")
        assert (machine.state[1].mine, machine.state[1].theirs) == after, what
