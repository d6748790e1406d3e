"""Property tests of the sans-IO channel (Hypothesis).

* Whatever bytes arrive, ``receive_data`` either returns events or raises an
  :class:`MpcidError` (never an ``IndexError``, ``struct.error``, ``ValueError``, ...).
* Whatever the chunking of the byte stream, what one side sends arrives byte-exact.

Keys are made once per module (the properties do not depend on them); channels are fresh
for every example.
"""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.noise import (MAX_CHUNK, PREAMBLE, ChannelConfig, DataReceived, Event,
                             NoiseChannel, PeerClosed, State, session_prologue)
from noise_pairs import close_out, establish_pair, send_out, start_out  # this folder

ALICE, BOB = Ed25519Key.generate(), Ed25519Key.generate()
PROLOGUE = session_prologue("props", hashlib.sha256(b"p").digest(), [ALICE.did.did, BOB.did.did])

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def config(me: Ed25519Key, peer: Ed25519Key, initiator: bool) -> ChannelConfig:
    return ChannelConfig(static_private=me.x25519_private_key, prologue=PROLOGUE,
                         initiator=initiator,
                         expected_peers={peer.did.did: peer.did.x25519_public_key})


def new_pair() -> tuple[NoiseChannel, NoiseChannel]:
    return (NoiseChannel(config(ALICE, BOB, True), 0.0),
            NoiseChannel(config(BOB, ALICE, False), 0.0))


def open_pair() -> tuple[NoiseChannel, NoiseChannel]:
    a, b = new_pair()
    establish_pair(a, b)
    return a, b


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (taken modulo its length, in order)."""
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def feed_all(channel: NoiseChannel, pieces: list[bytes]) -> list[Event]:
    """Feed every piece; only mpcid errors may come out (and after one, only errors)."""
    events: list[Event] = []
    failed = False
    for piece in pieces:
        try:
            events += channel.receive_data(piece, 1.0)
        except MpcidError:
            failed = True
            assert channel.state is State.FAILED
        else:
            assert not failed, "a failed channel accepted more bytes"
    return events


def _flip(data: bytes, index: int, bit: int) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    out[index % len(out)] ^= 1 << bit
    return bytes(out)


garbage = st.binary(max_size=400)
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)
# bytes that get past the preamble, and past the length prefix, to reach deeper code
after_preamble = st.one_of(
    garbage,
    garbage.map(lambda b: PREAMBLE + b),
    st.tuples(st.integers(0, 200), garbage).map(
        lambda t: PREAMBLE + t[0].to_bytes(2, "big") + t[1]),
    st.integers(0, 255).map(lambda v: PREAMBLE[:-1] + bytes([v])),
)


@SETTINGS
@given(data=after_preamble, cut=cuts, initiator=st.booleans())
def test_fresh_channel_raises_only_mpcid_errors(data: bytes, cut: list[int],
                                                initiator: bool) -> None:
    a, b = new_pair()
    channel = a if initiator else b
    start_out(channel)
    events = feed_all(channel, split(data, cut))
    assert not any(isinstance(e, (DataReceived, PeerClosed)) for e in events)


@SETTINGS
@given(data=after_preamble, cut=cuts)
def test_fresh_responder_fed_in_one_go(data: bytes, cut: list[int]) -> None:
    _, b = new_pair()
    start_out(b)
    try:
        b.receive_data(data, 0.0)
    except MpcidError:
        assert b.state is State.FAILED


@st.composite
def tampered_streams(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """Real frames from the peer, then tampered with (or replaced by garbage)."""
    messages = draw(st.lists(st.binary(max_size=300), max_size=4))
    return messages, draw(st.sampled_from(["garbage", "flip", "truncate", "insert", "prefix",
                                           "length"]))


@SETTINGS
@given(stream=tampered_streams(), extra=garbage, where=st.integers(0, 10_000),
       bit=st.integers(0, 7), cut=cuts)
def test_open_channel_raises_only_mpcid_errors(stream: tuple[list[bytes], str], extra: bytes,
                                               where: int, bit: int, cut: list[int]) -> None:
    a, b = open_pair()
    messages, how = stream
    wire = b"".join(send_out(a, m, 1.0) for m in messages)
    if how == "garbage":
        wire = extra
    elif how == "flip":
        wire = _flip(wire + close_out(a, 1.0), where, bit)
    elif how == "truncate":
        wire = wire[:where % (len(wire) + 1)]
    elif how == "insert":
        at = where % (len(wire) + 1)
        wire = wire[:at] + extra + wire[at:]
    elif how == "prefix":
        wire = extra + wire
    else:  # a length prefix that lies
        wire = (where % 65536).to_bytes(2, "big") + wire[2:] + extra
    events = feed_all(b, split(wire, cut))
    # whatever got through intact is a prefix of what was sent
    got = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert b"".join(messages).startswith(got)


@SETTINGS
@given(extra=garbage, cut=cuts)
def test_open_channel_garbage_in_one_go(extra: bytes, cut: list[int]) -> None:
    _, b = open_pair()
    for piece in [extra] + split(extra, cut):
        try:
            b.receive_data(piece, 1.0)
        except MpcidError:
            assert b.state is State.FAILED


messages_strategy = st.lists(
    st.one_of(st.binary(min_size=1, max_size=500),
              st.integers(MAX_CHUNK - 2, MAX_CHUNK + 2).map(lambda n: b"\xab" * n)),
    max_size=6)


@SETTINGS
@given(to_b=messages_strategy, to_a=messages_strategy, cut_b=cuts, cut_a=cuts,
       close=st.booleans())
def test_data_arrives_byte_exact_whatever_the_chunking(to_b: list[bytes], to_a: list[bytes],
                                                       cut_b: list[int], cut_a: list[int],
                                                       close: bool) -> None:
    a, b = open_pair()
    wire_b = b"".join(send_out(a, m, 1.0) for m in to_b)
    wire_a = b"".join(send_out(b, m, 1.0) for m in to_a)
    events_a = [e for piece in split(wire_a, cut_a) for e in a.receive_data(piece, 2.0)]
    if close:  # (after a has read b's data: a closed channel discards what arrives)
        wire_b += close_out(a, 2.0)
    events_b = [e for piece in split(wire_b, cut_b) for e in b.receive_data(piece, 2.0)]
    assert b"".join(e.data for e in events_b if isinstance(e, DataReceived)) == b"".join(to_b)
    assert b"".join(e.data for e in events_a if isinstance(e, DataReceived)) == b"".join(to_a)
    assert all(e.data for e in events_a + events_b if isinstance(e, DataReceived))
    if close:
        assert isinstance(events_b[-1], PeerClosed)
        assert sum(isinstance(e, PeerClosed) for e in events_b) == 1
        assert b.state is State.CLOSED
    else:
        assert not any(isinstance(e, PeerClosed) for e in events_b)
        assert b.state is State.OPEN


@SETTINGS
@given(messages=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=20),
       cut=cuts)
def test_handshake_and_data_in_any_chunking(messages: list[bytes], cut: list[int]) -> None:
    """The responder's handshake reply and the first data frames in one stream."""
    a, b = new_pair()
    first = start_out(a)
    reply = start_out(b)
    b.receive_data(first, 0.0)
    reply += b.data_to_send()
    reply += b"".join(send_out(b, m, 0.0) for m in messages)
    events = [e for piece in split(reply, cut) for e in a.receive_data(piece, 0.0)]
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"".join(messages)
    assert a.state is State.OPEN
