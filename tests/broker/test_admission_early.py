"""The dialling party's presentation as early data in Noise message 1 (specs/channel.md
4.2, specs/session.md 7.2): two admission gates over real channels in one process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from mpcid.broker import admission as adm
from mpcid.broker import admission_channel
from mpcid.broker.admission_channel import AdmissionApp, AdmissionGate, AdmissionSettings
from mpcid.broker.progress import Progress
from mpcid.identity import credentials as vc
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.identity.policy import Policy
from mpcid.p2p.channel import ChannelProtocol
from mpcid.p2p.early_data import ReplayGuard
from mpcid.p2p.noise import ChannelConfig, session_prologue

SESSION = "e" * 32
Early = Callable[[AdmissionGate], Callable[[bytes], bytes] | None]


def _gate(me: Ed25519Key, index: int, dids: list[str]) -> AdmissionGate:
    return AdmissionGate(me, SESSION, index, dids,
                         AdmissionSettings(Policy(), (), vc.VerifyConfig()), Progress(),
                         lambda did: f"party {1 - index} ({did})")


def run_pair(early: Early = lambda gate: gate.early_presentation
             ) -> tuple[MpcidError | None, MpcidError | None, AdmissionApp, AdmissionApp]:
    """Alice (party 0) dials Bob (party 1), both with admission as `mpcid join` runs it;
    ``early`` chooses what Alice's channel sends in message 1. Returns each gate's error
    (None when admitted) and both channel applications."""
    alice, bob = Ed25519Key.generate(), Ed25519Key.generate()
    dids = [alice.did.did, bob.did.did]
    prologue = session_prologue(SESSION, b"\0" * 32, dids)
    apps: dict[str, AdmissionApp] = {}

    async def main() -> tuple[MpcidError | None, MpcidError | None]:
        loop = asyncio.get_running_loop()
        gates = _gate(alice, 0, dids), _gate(bob, 1, dids)

        def app(name: str, gate: AdmissionGate, peer: int) -> AdmissionApp:
            apps[name] = gate.app(peer, asyncio.Protocol)
            return apps[name]

        left, right = socket.socketpair()
        await loop.create_connection(lambda: ChannelProtocol(ChannelConfig(
            static_private=alice.x25519_private_key, prologue=prologue, initiator=True,
            expected_peers={bob.did.did: bob.did.x25519_public_key},
            early_data=early(gates[0])), lambda did: app("alice", gates[0], 1)), sock=left)
        await loop.create_connection(lambda: ChannelProtocol(ChannelConfig(
            static_private=bob.x25519_private_key, prologue=prologue, initiator=False,
            expected_peers={alice.did.did: alice.did.x25519_public_key},
            accept_early_data=True, replay_guard=ReplayGuard()),
            lambda did: app("bob", gates[1], 0)), sock=right)
        async def outcome(gate: AdmissionGate) -> MpcidError | None:
            # As the runtime does: a party whose admission failed closes its channels.
            try:
                await gate.done
            except MpcidError as exc:
                await gate.close(drain=0.1)
                return exc
            return None

        a, b = await asyncio.wait_for(asyncio.gather(*map(outcome, gates)), 20)
        for gate in gates:
            await gate.close(drain=0.1)
        return a, b

    a, b = asyncio.run(main())
    return a, b, apps["alice"], apps["bob"]


def test_the_dialler_presents_in_message_1_and_both_are_admitted() -> None:
    a, b, alice_app, bob_app = run_pair()
    assert a is None and b is None
    assert alice_app.transport.get_extra_info("early_data_sent") is True
    binding = bob_app.transport.get_extra_info("early_binding")
    assert binding == alice_app.transport.get_extra_info("early_binding") and len(binding) == 32
    # Bob verified Alice's presentation against the early challenge, and Alice did not
    # send a second presentation after the handshake (Bob's machine would refuse one).
    assert bob_app.early_challenge == adm.early_challenge_for(binding)
    assert alice_app.early_challenge is None


def test_an_early_presentation_made_for_another_channel_is_refused() -> None:
    def replaying(gate: AdmissionGate) -> Callable[[bytes], bytes]:
        # A presentation the dialler really made, for another channel's binding.
        return lambda binding: gate.early_presentation(bytes(32))

    a, b, _, _ = run_pair(replaying)
    assert isinstance(b, adm.AdmissionRefused) and "replayed" in str(b)
    assert isinstance(a, MpcidError)


@pytest.mark.parametrize("data", [adm.encode(adm.READY), b"\0\0\0\5{}", b"\0\0"],
                         ids=["ready", "malformed", "partial"])
def test_early_data_other_than_one_presentation_ends_the_session(data: bytes) -> None:
    a, b, _, _ = run_pair(lambda gate: lambda binding: data)
    assert isinstance(b, MpcidError)
    assert "something other than one presentation" in str(b) or "admission message" in str(b)
    assert isinstance(a, MpcidError)


def test_a_presentation_too_large_for_message_1_follows_the_handshake(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission_channel, "MAX_EARLY_DATA", 10)
    a, b, alice_app, bob_app = run_pair()
    assert a is None and b is None
    assert alice_app.transport.get_extra_info("early_data_sent") is False
    assert bob_app.early_challenge is None


def test_early_challenge_differs_from_the_handshake_challenge() -> None:
    h = bytes(range(32))
    assert adm.early_challenge_for(h) != adm.challenge_for(h)
    assert adm.early_challenge_for(h).startswith("mpcid-admission-early/1:")
