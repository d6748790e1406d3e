"""Early data in Noise message 1 (specs/channel.md 4.2): what the initiator sends, what a
responder accepts, and the replay guard."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.errors import HandshakeFailed, LocalProtocolError, RemoteProtocolError
from mpcid.p2p.early_data import MAX_EARLY_DATA, ReplayGuard, early_binding
from mpcid.p2p.noise import (PREAMBLE, ChannelConfig, DataReceived, HandshakeComplete,
                             NoiseChannel, State)

from noise_pairs import establish_pair, start_out  # this folder

MakeConfig = Callable[..., ChannelConfig]  # the make_config fixture of conftest.py


def pair(alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig,
         early: Callable[[bytes], bytes] | None, *, accept: bool = True,
         guard: ReplayGuard | None = None) -> tuple[NoiseChannel, NoiseChannel]:
    a = NoiseChannel(make_config(alice, [bob], initiator=True, early_data=early), now=0.0)
    b = NoiseChannel(make_config(bob, [alice], initiator=False, accept_early_data=accept,
                                 replay_guard=guard), now=0.0)
    return a, b


def completed(events: Sequence[object]) -> HandshakeComplete:
    (event,) = [e for e in events if isinstance(e, HandshakeComplete)]
    return event


def test_early_data_reaches_the_responder_with_the_binding_it_was_made_for(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig, prologue: bytes) -> None:
    made_for: list[bytes] = []

    def early(binding: bytes) -> bytes:
        made_for.append(binding)
        return b"presentation bound to " + binding

    a, b = pair(alice, bob, make_config, early)
    first = start_out(a)
    b.start()
    on_b = completed(b.receive_data(first, 0))
    on_a = completed(a.receive_data(b.data_to_send(), 0))
    (binding,) = made_for
    assert on_b.early_data == b"presentation bound to " + binding
    assert on_b.early_binding == on_a.early_binding == binding
    assert a.early_data_sent and on_a.early_data == b""
    # The binding is what the spec says: the prologue, Bob's static key, Alice's ephemeral
    # (the first 32 bytes of message 1, after the preamble and the length).
    ephemeral = first[len(PREAMBLE) + 2:len(PREAMBLE) + 34]
    assert binding == early_binding(prologue, bob.did.x25519_public_key, ephemeral)
    # Transport frames work as without early data.
    a.send(b"hi", 0)
    assert b.receive_data(a.data_to_send(), 0) == [DataReceived(b"hi")]


def test_each_connection_attempt_has_its_own_binding(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig) -> None:
    bindings: list[bytes] = []

    def early(binding: bytes) -> bytes:
        bindings.append(binding)
        return b"x"

    for _ in range(2):
        a, b = pair(alice, bob, make_config, early)
        establish_pair(a, b)
    assert len(set(bindings)) == 2


def test_without_early_data_message_1_is_as_before(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig) -> None:
    a, b = pair(alice, bob, make_config, lambda binding: b"")
    first = start_out(a)
    assert len(first) == len(PREAMBLE) + 2 + 96 and not a.early_data_sent
    b.start()
    on_b = completed(b.receive_data(first, 0))
    assert on_b.early_data == b"" and on_b.early_binding == b""


def test_a_responder_that_takes_no_early_data_refuses_it(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig) -> None:
    a, b = pair(alice, bob, make_config, lambda binding: b"x", accept=False)
    b.start()
    with pytest.raises(RemoteProtocolError, match="early data"):
        b.receive_data(start_out(a), 0)
    assert b.state is State.FAILED
    assert b.data_to_send() == PREAMBLE  # no handshake reply went out


def test_a_replayed_message_1_is_refused_by_the_guard(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig) -> None:
    guard = ReplayGuard()
    a, b = pair(alice, bob, make_config, lambda binding: b"x", guard=guard)
    first = start_out(a)
    b.start()
    completed(b.receive_data(first, 0))
    # The same bytes again, to another responder channel of the same session.
    _, again = pair(alice, bob, make_config, None, guard=guard)
    again.start()
    with pytest.raises(HandshakeFailed, match="replayed"):
        again.receive_data(first, 0)
    # Without the guard the replay would be taken.
    _, unguarded = pair(alice, bob, make_config, None)
    unguarded.start()
    completed(unguarded.receive_data(first, 0))


def test_the_guard_forgets_its_oldest_keys_beyond_its_limit() -> None:
    guard = ReplayGuard(limit=2)
    assert guard.first_time(b"1") and guard.first_time(b"2") and not guard.first_time(b"1")
    assert guard.first_time(b"3")
    assert guard.first_time(b"1")  # forgotten: the oldest of three
    assert not guard.first_time(b"3")


def test_early_data_over_the_limit_is_refused_before_anything_is_sent(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig) -> None:
    a, _ = pair(alice, bob, make_config, lambda binding: b"x" * (MAX_EARLY_DATA + 1))
    with pytest.raises(LocalProtocolError, match="over the limit"):
        a.start()
    assert a.data_to_send() == b""
    a, b = pair(alice, bob, make_config, lambda binding: b"x" * MAX_EARLY_DATA)
    _, events_b = establish_pair(a, b)
    assert len(completed(events_b).early_data) == MAX_EARLY_DATA


def test_a_payload_in_message_2_is_refused(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig) -> None:
    a, b = pair(alice, bob, make_config, None)
    write = b._noise.write_message
    b._noise.write_message = lambda payload=b"": write(b"unexpected")
    b.start()
    b.receive_data(start_out(a), 0)
    with pytest.raises(RemoteProtocolError, match="message 2"):
        a.receive_data(b.data_to_send(), 0)
    assert a.state is State.FAILED
