"""The sans-IO channel in memory: handshake, framing, close, failures, timers, transitions.

No sockets and no clock: two :class:`NoiseChannel` objects exchange bytes through explicit
``receive_data`` calls, and time is the ``now`` argument.
"""

from __future__ import annotations

import ast
import hashlib
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p import noise as noise_module
from mpcid.p2p.errors import (ConnectionLost, HandshakeFailed, LocalProtocolError,
                              PeerTimeout, ProtocolError, RemoteProtocolError)
from mpcid.p2p.noise import (FRAME_CLOSE, FRAME_DATA, FRAME_PING, HEADER_LEN, MAGIC,
                             MAX_CHUNK, MAX_NOISE_MESSAGE, PEER_INPUTS, PREAMBLE, TAG_LEN,
                             TRANSITIONS, VERSION, ChannelConfig, DataReceived, Event,
                             HandshakeComplete, NoiseChannel, PeerClosed, State,
                             session_prologue)
from noise_pairs import (close_out, establish_pair, send_out, start_out,  # this folder
                         timer_out)

Pair = tuple[NoiseChannel, NoiseChannel]
MakeConfig = Callable[..., ChannelConfig]
RawPair = tuple[NoiseChannel, Any]  # (alice's channel, conftest.RawPeer playing bob)
MakePair = Callable[..., Pair]

REMOTE_INPUTS = ("preamble", "handshake", "data", "ping", "close")
LOCAL_INPUTS = ("send", "local-close")
#: The peer's bytes breaking the protocol, the clock, the stream.
OTHER_INPUTS = ("peer-error", "keepalive", "timeout", "connection-lost")
INPUTS = REMOTE_INPUTS + LOCAL_INPUTS + OTHER_INPUTS


def split_frames(wire: bytes) -> list[tuple[int, bytes]]:
    """``[(type, ciphertext), ...]`` of a stream of transport frames
    ``u16be len(ciphertext) || u8 type || ciphertext`` (all complete)."""
    out = []
    offset = 0
    while offset < len(wire):
        assert len(wire) - offset >= HEADER_LEN, "incomplete header"
        length, kind = struct.unpack_from(">HB", wire, offset)
        assert TAG_LEN <= length <= MAX_NOISE_MESSAGE
        ciphertext = wire[offset + HEADER_LEN:offset + HEADER_LEN + length]
        assert len(ciphertext) == length, "incomplete frame"
        out.append((kind, bytes(ciphertext)))
        offset += HEADER_LEN + length
    return out


def frame_header(length: int, kind: int) -> bytes:
    """``u16be length || u8 type``, built by hand (``specs/channel.md`` 4.3)."""
    return struct.pack(">HB", length, kind)


def received(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived))


def feed(channel: NoiseChannel, wire: bytes, chunk: int, now: float = 0.0) -> list[Event]:
    events: list[Event] = []
    for i in range(0, len(wire), chunk):
        events += channel.receive_data(wire[i:i + chunk], now)
    return events


def handshake_bytes(a: NoiseChannel, b: NoiseChannel) -> tuple[bytes, bytes]:
    """(initiator's first bytes, responder's preamble + handshake reply), handshake done."""
    to_b = start_out(a)
    to_a = start_out(b)
    b.receive_data(to_b, 0)
    return to_b, to_a + b.data_to_send()


# --- handshake -----------------------------------------------------------------------------


def test_handshake_completes_with_peer_dids(make_pair: MakePair, alice: Ed25519Key,
                                            bob: Ed25519Key) -> None:
    a, b = make_pair()
    assert a.state is b.state is State.AWAIT_PREAMBLE
    events_a, events_b = establish_pair(a, b)
    assert len(events_a) == len(events_b) == 1
    (done_a,), (done_b,) = events_a, events_b
    assert isinstance(done_a, HandshakeComplete) and isinstance(done_b, HandshakeComplete)
    assert done_a.peer_did == bob.did.did
    assert done_b.peer_did == alice.did.did
    assert done_a.handshake_hash == done_b.handshake_hash
    assert len(done_a.handshake_hash) == 32
    assert a.handshake_hash == b.handshake_hash == done_a.handshake_hash
    assert (a.peer_did, b.peer_did) == (bob.did.did, alice.did.did)
    assert a.state is b.state is State.OPEN


def test_handshake_hashes_differ_between_channels(make_pair: MakePair) -> None:
    a, b = make_pair()
    establish_pair(a, b)
    c, d = make_pair()
    establish_pair(c, d)
    assert a.handshake_hash != c.handshake_hash  # fresh ephemeral keys every time


def test_responder_learns_which_of_several_peers_connected(
        alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key, make_config: MakeConfig
) -> None:
    # carol (index 2) is the responder for both alice and bob.
    for caller in (alice, bob):
        a = NoiseChannel(make_config(caller, [carol], initiator=True), 0)
        c = NoiseChannel(make_config(carol, [alice, bob], initiator=False), 0)
        events_a, events_c = establish_pair(a, c)
        assert events_c == [HandshakeComplete(caller.did.did, a.handshake_hash)]
        assert events_a == [HandshakeComplete(carol.did.did, c.handshake_hash)]


def test_handshake_fed_one_byte_at_a_time(make_pair: MakePair, bob: Ed25519Key) -> None:
    a, b = make_pair()
    first = start_out(a)
    reply = start_out(b)
    events_b = feed(b, first, 1)
    assert [type(e) for e in events_b] == [HandshakeComplete]
    reply += b.data_to_send()
    events_a = feed(a, reply, 1)
    assert events_a == [HandshakeComplete(bob.did.did, b.handshake_hash)]


def test_config_checks(alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key,
                       make_config: MakeConfig) -> None:
    with pytest.raises(LocalProtocolError, match="exactly one"):
        NoiseChannel(make_config(alice, [bob, carol], initiator=True), 0)
    with pytest.raises(LocalProtocolError, match="at least one"):
        NoiseChannel(make_config(bob, [], initiator=False), 0)


# --- data ----------------------------------------------------------------------------------


def test_data_both_ways(open_pair: Pair) -> None:
    a, b = open_pair
    assert b.receive_data(send_out(a, b"hello bob", 1), 1) == [DataReceived(b"hello bob")]
    assert a.receive_data(send_out(b, b"hello alice", 1), 1) == [DataReceived(b"hello alice")]
    # several sends in one chunk are delivered as one event, in order
    a.send(b"one ", 2)
    a.send(bytearray(b"two "), 2)
    a.send(memoryview(b"three"), 2)
    assert b.receive_data(a.data_to_send(), 2) == [DataReceived(b"one two three")]


def test_empty_send_delivers_nothing(open_pair: Pair) -> None:
    """asyncio never calls ``data_received(b"")``; neither may the channel's events."""
    a, b = open_pair
    assert b.receive_data(send_out(a, b"", 3), 3) == []
    assert b.receive_data(send_out(a, b"", 3) + send_out(a, b"x", 3), 3) == [DataReceived(b"x")]


@pytest.mark.parametrize("direction", ["a->b", "b->a"])
def test_one_mebibyte_message(open_pair: Pair, direction: str) -> None:
    a, b = open_pair
    sender, receiver = (a, b) if direction == "a->b" else (b, a)
    data = os.urandom(1 << 20)
    wire = send_out(sender, data, 1)
    frames = split_frames(wire)  # asserts every length field is in [16, 65535]
    n = -(-len(data) // MAX_CHUNK)
    assert len(frames) == n > 1
    assert all(kind == FRAME_DATA for kind, _ in frames)
    assert all(len(ct) == MAX_NOISE_MESSAGE for _, ct in frames[:-1])  # the whole Noise limit
    assert len(frames[-1][1]) == len(data) - (n - 1) * MAX_CHUNK + TAG_LEN
    assert len(wire) == len(data) + n * (HEADER_LEN + TAG_LEN)
    assert received(receiver.receive_data(wire, 1)) == data
    # and in uneven chunks, including some that cut length prefixes in half
    wire = send_out(sender, data, 2)
    assert received(feed(receiver, wire, 65537)) == data


def test_one_mebibyte_fed_one_byte_at_a_time(open_pair: Pair) -> None:
    a, b = open_pair
    data = os.urandom(1 << 20)
    wire = send_out(a, data, 1)
    out = bytearray()
    for i in range(len(wire)):
        for event in b.receive_data(wire[i:i + 1], 1):
            assert isinstance(event, DataReceived)
            out += event.data
    assert out == data
    # the stream stays in sync afterwards
    assert b.receive_data(send_out(a, b"after", 2), 2) == [DataReceived(b"after")]


# --- the output path -----------------------------------------------------------------------


def test_nothing_queued_is_empty_bytes(make_pair: MakePair) -> None:
    a, _ = make_pair()
    assert a.data_to_send() == b""
    a.start()
    assert a.data_to_send()[:len(PREAMBLE)] == PREAMBLE
    assert a.data_to_send() == b""  # drained


def test_one_queued_buffer_is_handed_over_uncopied(open_pair: Pair) -> None:
    """The hot path: a lone frame, or bulk buffer, leaves as the object the core built."""
    a, b = open_pair
    data = os.urandom(3 * MAX_CHUNK)
    a.send(data, 1)
    (queued,) = a._out
    out = a.data_to_send()
    assert out is queued and a.data_to_send() == b""
    assert received(b.receive_data(bytes(out), 1)) == data


def test_queued_output_leaves_in_order(open_pair: Pair) -> None:
    """Whatever is queued between two drains leaves in one piece, in the order made."""
    a, b = open_pair
    a.send(b"one", 1)
    a.handle_timer(10.0)  # a PING is due
    a.send(b"two", 10)
    a.close(11)
    wire = bytes(a.data_to_send())
    assert [kind for kind, _ in split_frames(wire)] == [FRAME_DATA, FRAME_PING, FRAME_DATA,
                                                        FRAME_CLOSE]
    assert b.receive_data(wire, 11) == [DataReceived(b"onetwo"), PeerClosed()]


# --- close and connection loss -------------------------------------------------------------


def test_close_gives_peer_closed(open_pair: Pair) -> None:
    a, b = open_pair
    wire = send_out(a, b"last words", 1) + close_out(a, 1)
    assert a.state is State.CLOSING  # b's frames in flight are still read (and discarded)
    assert b.receive_data(wire, 1) == [DataReceived(b"last words"), PeerClosed()]
    assert b.state is State.CLOSED
    assert close_out(b, 2) == b""  # nothing more to say: the channel is closed
    a.connection_lost()  # the stream may end once we have sent CLOSE
    b.connection_lost()
    assert a.state is b.state is State.CLOSED


def test_answer_after_peer_close_is_dropped(open_pair: Pair) -> None:
    """The application answers the peer's last message, which arrived in the same read as
    the peer's CLOSE: (closed, send) drops the answer, it is no error."""
    a, b = open_pair
    wire = send_out(a, b"question", 1) + close_out(a, 1)
    assert b.receive_data(wire, 1) == [DataReceived(b"question"), PeerClosed()]
    b.send(b"answer", 1)
    assert b.data_to_send() == b""
    assert b.state is State.CLOSED


def test_close_frame_is_authenticated(open_pair: Pair) -> None:
    a, b = open_pair
    (frame,) = split_frames(close_out(a, 1))
    assert frame[0] == FRAME_CLOSE and len(frame[1]) == TAG_LEN  # empty body
    forged = frame_header(TAG_LEN, FRAME_CLOSE) + bytes(TAG_LEN)
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        b.receive_data(forged, 1)
    assert b.state is State.FAILED


def test_frames_after_close_are_not_delivered(raw_pair: RawPair) -> None:
    a, raw = raw_pair
    wire = (raw.frame(FRAME_DATA, b"before") + raw.frame(FRAME_CLOSE)
            + raw.frame(FRAME_DATA, b"late"))
    assert a.receive_data(wire, 1) == [DataReceived(b"before"), PeerClosed()]
    assert a.state is State.CLOSED
    assert close_out(a, 2) == b""
    a.connection_lost()


def test_in_flight_data_after_local_close_is_discarded(open_pair: Pair) -> None:
    a, b = open_pair
    closing = close_out(a, 1)
    in_flight = send_out(b, b"x" * 100_000, 1) + timer_out(b, 10)  # data and a PING
    assert a.receive_data(in_flight, 2) == []
    assert b.receive_data(closing, 2) == [PeerClosed()]
    a.connection_lost()
    b.connection_lost()


def test_connection_lost_before_close_raises(open_pair: Pair, bob: Ed25519Key) -> None:
    a, b = open_pair
    b.receive_data(send_out(a, b"some", 1), 1)
    with pytest.raises(ConnectionLost) as info:
        a.connection_lost()
    assert bob.did.did in str(info.value)
    assert a.state is State.FAILED
    with pytest.raises(LocalProtocolError):
        a.receive_data(send_out(b, b"more", 2), 2)


def test_connection_lost_during_handshake(make_pair: MakePair, bob: Ed25519Key) -> None:
    """A peer that hangs up before proving its key failed the handshake."""
    a, b = make_pair()
    start_out(a)
    with pytest.raises(HandshakeFailed, match="during the handshake") as info:
        a.connection_lost()
    assert bob.did.did in str(info.value)
    assert a.state is State.FAILED
    start_out(b)
    b.receive_data(PREAMBLE, 0)
    with pytest.raises(HandshakeFailed):
        b.connection_lost()
    assert b.state is State.FAILED


def test_truncated_frame_then_connection_lost(open_pair: Pair) -> None:
    a, b = open_pair
    wire = send_out(a, b"a message that will be cut short", 1) + close_out(a, 1)
    cut = wire[:-5]  # the CLOSE frame never fully arrives
    assert b.receive_data(cut, 1) == [DataReceived(b"a message that will be cut short")]
    assert b.state is State.OPEN
    with pytest.raises(ConnectionLost, match="without ending the channel"):
        b.connection_lost()


def test_local_close_during_handshake(make_pair: MakePair) -> None:
    a, b = make_pair()
    start_out(a)
    assert close_out(a, 1) == b""  # no keys yet, so no CLOSE frame
    assert a.state is State.CLOSED
    assert a.get_timer() is None
    a.connection_lost()  # a closed channel may lose its connection


def test_peer_reply_after_local_close_during_handshake_is_discarded(make_pair: MakePair
                                                                    ) -> None:
    """We closed while the peer's handshake reply and its first data were in flight: a
    close before the handshake completed leads to closed, where nothing is read (there
    are no keys to read it with), so the bytes are discarded."""
    a, b = make_pair()
    first = start_out(a)
    reply = start_out(b)
    b.receive_data(first, 0)
    reply += b.data_to_send() + send_out(b, b"x" * 30_000, 0)
    assert close_out(a, 0) == b""
    assert a.state is State.CLOSED
    assert a.receive_data(reply, 1) == []
    assert a.state is State.CLOSED


# --- handshake failures --------------------------------------------------------------------


def test_wrong_static_key(alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key,
                          make_config: MakeConfig) -> None:
    """alice believes carol is at the other end, but bob answers."""
    def copy_of_wrong() -> NoiseChannel:
        channel = NoiseChannel(make_config(alice, [carol], initiator=True), 0)
        start_out(channel)
        return channel

    wrong = NoiseChannel(make_config(alice, [carol], initiator=True), 0)
    b = NoiseChannel(make_config(bob, [alice], initiator=False), 0)
    first = start_out(wrong)
    start_out(b)
    # bob cannot decrypt what alice encrypted to carol's key
    with pytest.raises(HandshakeFailed):
        b.receive_data(first, 0)
    assert b.state is State.FAILED and b.data_to_send() == b""  # no handshake reply
    # bob gives up and hangs up: alice learns that the party she expected did not answer
    with pytest.raises(HandshakeFailed) as info:
        copy_of_wrong().connection_lost()
    assert carol.did.did in str(info.value)
    # Whatever reply bob could give (here: his genuine reply to alice in another channel,
    # replayed) does not prove carol's key to alice.
    genuine = NoiseChannel(make_config(alice, [bob], initiator=True), 0)
    b2 = NoiseChannel(make_config(bob, [alice], initiator=False), 0)
    _, replay = handshake_bytes(genuine, b2)
    with pytest.raises(HandshakeFailed) as info:
        wrong.receive_data(replay, 0)
    assert carol.did.did in str(info.value)
    assert "did not prove" in str(info.value)
    assert wrong.state is State.FAILED


def test_unexpected_initiator(alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key,
                              make_config: MakeConfig) -> None:
    dave = Ed25519Key.generate()
    c = NoiseChannel(make_config(carol, [bob], initiator=True), 0)
    b = NoiseChannel(make_config(bob, [alice, dave], initiator=False), 0)
    start_out(b)
    with pytest.raises(HandshakeFailed) as info:
        b.receive_data(start_out(c), 0)
    message = str(info.value)
    assert alice.did.did in message and dave.did.did in message
    assert carol.did.did not in message
    assert b.state is State.FAILED
    assert b.peer_did is None
    assert b.data_to_send() == b""  # no handshake reply


def _prologue_variants(sid: str, program: bytes, dids: list[str]) -> dict[str, bytes]:
    return {
        "other session id": session_prologue(sid + "-2", program, dids),
        "other party order": session_prologue(sid, program, [dids[1], dids[0], dids[2]]),
        "other program": session_prologue(sid, hashlib.sha256(b"other").digest(), dids),
        "fewer parties": session_prologue(sid, program, dids[:2]),
    }


@pytest.mark.parametrize("variant", ["other session id", "other party order", "other program",
                                     "fewer parties"])
@pytest.mark.parametrize("who", ["initiator", "responder"])
def test_different_prologue_fails(variant: str, who: str, alice: Ed25519Key, bob: Ed25519Key,
                                  party_dids: list[str], prologue: bytes, session_id: str,
                                  program_sha256: bytes, make_config: MakeConfig) -> None:
    assert prologue == session_prologue(session_id, program_sha256, party_dids)
    other = _prologue_variants(session_id, program_sha256, party_dids)[variant]
    assert other != prologue
    a = NoiseChannel(make_config(alice, [bob], initiator=True,
                                 prologue=other if who == "initiator" else prologue), 0)
    b = NoiseChannel(make_config(bob, [alice], initiator=False,
                                 prologue=other if who == "responder" else prologue), 0)
    start_out(b)
    with pytest.raises(HandshakeFailed) as info:
        b.receive_data(start_out(a), 0)
    assert "session" in str(info.value)
    assert alice.did.did in str(info.value)  # the responder names whom it expected
    with pytest.raises(LocalProtocolError):
        b.receive_data(b"", 0)


def test_session_prologue_is_injective_in_its_fields(party_dids: list[str], prologue: bytes,
                                                     session_id: str, program_sha256: bytes
                                                     ) -> None:
    variants = list(_prologue_variants(session_id, program_sha256, party_dids).values())
    assert len(set(variants + [prologue])) == len(variants) + 1
    # length prefixes keep field boundaries apart
    assert session_prologue("ab", program_sha256, ["c"]) != \
        session_prologue("a", program_sha256, ["bc"])
    with pytest.raises(ValueError):
        session_prologue(session_id, b"short", party_dids)


# --- preamble ------------------------------------------------------------------------------


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"MPCIDxx\x01",
                                  b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"G",
                                  b"MPCIDc\x00"])
@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_wrong_preamble_magic(make_pair: MakePair, junk: bytes, side: str) -> None:
    a, b = make_pair()
    start_out(a)
    start_out(b)
    channel = a if side == "initiator" else b
    with pytest.raises(RemoteProtocolError, match="does not speak") as info:
        channel.receive_data(junk, 0)
    assert not isinstance(info.value, HandshakeFailed)
    assert channel.state is State.FAILED


def test_partial_preamble_waits(make_pair: MakePair) -> None:
    _, b = make_pair()
    start_out(b)
    for byte in PREAMBLE[:-1]:
        assert b.receive_data(bytes([byte]), 0) == []
    assert b.state is State.AWAIT_PREAMBLE
    assert b.receive_data(PREAMBLE[-1:], 0) == []
    assert b.state is State.AWAIT_HANDSHAKE


@pytest.mark.parametrize("version", [0, 1, 3, 255])
def test_wrong_version_byte(make_pair: MakePair, version: int) -> None:
    a, b = make_pair()
    first = start_out(a)
    start_out(b)
    with pytest.raises(RemoteProtocolError) as info:
        b.receive_data(MAGIC + bytes([version]) + first[len(PREAMBLE):], 0)
    assert f"version {version}" in str(info.value)
    assert str(VERSION) in str(info.value)
    assert "upgrade" in info.value.hint
    assert b.state is State.FAILED


# --- frames --------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["first", "middle", "tag"])
def test_garbled_frame(open_pair: Pair, position: str, bob: Ed25519Key) -> None:
    a, b = open_pair
    wire = bytearray(send_out(b, b"x" * 100, 1))
    index = {"first": HEADER_LEN, "middle": HEADER_LEN + 50, "tag": len(wire) - 1}[position]
    wire[index] ^= 0x01
    with pytest.raises(RemoteProtocolError, match="corrupted") as info:
        a.receive_data(bytes(wire), 1)
    assert bob.did.did in str(info.value)
    assert a.state is State.FAILED


def test_reordered_frames_are_rejected(open_pair: Pair) -> None:
    a, b = open_pair
    first, second = send_out(a, b"first", 1), send_out(a, b"second", 1)
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        b.receive_data(second + first, 1)


def test_replayed_frame_is_rejected(open_pair: Pair) -> None:
    a, b = open_pair
    frame = send_out(a, b"pay 10", 1)
    assert b.receive_data(frame, 1) == [DataReceived(b"pay 10")]
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        b.receive_data(frame, 1)


@pytest.mark.parametrize("length", [0, 1, TAG_LEN - 1])
@pytest.mark.parametrize("kind", [FRAME_DATA, FRAME_PING, FRAME_CLOSE, 7])
def test_frame_below_minimum_when_open(open_pair: Pair, length: int, kind: int) -> None:
    """The length is checked first, whatever the type, and the header alone suffices."""
    _, b = open_pair
    with pytest.raises(RemoteProtocolError, match=f"frame of {length} bytes from .* is too short"):
        b.receive_data(frame_header(length, kind), 1)
    assert b.state is State.FAILED


def test_frame_of_tag_length_is_not_too_short(open_pair: Pair) -> None:
    """A length of exactly 16 is a well-formed (empty) frame; zeros in place of the tag
    fail authentication."""
    _, b = open_pair
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        b.receive_data(frame_header(TAG_LEN, FRAME_DATA) + bytes(TAG_LEN), 1)
    assert b.state is State.FAILED


def test_empty_data_frame_delivers_nothing(raw_pair: RawPair) -> None:
    """An empty DATA frame (length 16, the channel never sends one) is accepted, yields no
    event, and consumes a nonce like any frame."""
    a, raw = raw_pair
    empty = raw.frame(FRAME_DATA)
    assert empty[:HEADER_LEN] == frame_header(TAG_LEN, FRAME_DATA)
    assert len(empty) == HEADER_LEN + TAG_LEN
    assert a.receive_data(empty, 1) == []
    assert a.state is State.OPEN
    wire = raw.frame(FRAME_DATA, b"x") + raw.frame(FRAME_DATA) + raw.frame(FRAME_DATA, b"y")
    assert a.receive_data(wire, 1) == [DataReceived(b"xy")]


@pytest.mark.parametrize(("sent", "relabelled"), [
    (FRAME_DATA, FRAME_PING), (FRAME_DATA, FRAME_CLOSE), (FRAME_PING, FRAME_DATA),
    (FRAME_PING, FRAME_CLOSE), (FRAME_CLOSE, FRAME_DATA), (FRAME_CLOSE, FRAME_PING)])
def test_frame_type_is_authenticated(open_pair: Pair, sent: int, relabelled: int) -> None:
    """The header is the associated data: a genuine frame given another type fails
    authentication (a DATA frame cannot be turned into a PING or a CLOSE, nor back)."""
    a, b = open_pair
    wire = {FRAME_DATA: lambda: send_out(a, b"x" * 100, 1), FRAME_PING: lambda: timer_out(a, 10.0),
            FRAME_CLOSE: lambda: close_out(a, 1)}[sent]()
    frame = bytearray(wire)
    assert frame[2] == sent
    frame[2] = relabelled
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        b.receive_data(bytes(frame), 1)
    assert b.state is State.FAILED


def test_frame_length_is_authenticated(open_pair: Pair) -> None:
    """A frame whose length field claims one byte more (and gets it) fails authentication."""
    a, b = open_pair
    wire = bytearray(send_out(a, b"x" * 100, 1))
    assert bytes(wire[:HEADER_LEN]) == frame_header(100 + TAG_LEN, FRAME_DATA)
    wire[:2] = struct.pack(">H", 100 + TAG_LEN + 1)
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        b.receive_data(bytes(wire) + b"\x00", 1)
    assert b.state is State.FAILED


@pytest.mark.parametrize("kind", [3, 7, 255])
@pytest.mark.parametrize("tag", ["valid", "garbage"])
def test_unknown_frame_type(raw_pair: RawPair, kind: int, tag: str) -> None:
    """A frame of an unknown type is refused once it is complete, whether or not it carries
    a valid tag for its header (the type comes from the header, not from the plaintext)."""
    a, raw = raw_pair
    if tag == "valid":
        frame = raw.frame(kind, b"?")
    else:
        frame = frame_header(1 + TAG_LEN, kind) + os.urandom(1 + TAG_LEN)
    assert frame[:HEADER_LEN] == frame_header(1 + TAG_LEN, kind)
    assert a.receive_data(frame[:-1], 1) == []  # incomplete: waits for the rest
    assert a.state is State.OPEN
    with pytest.raises(RemoteProtocolError, match=f"unknown frame type {kind}"):
        a.receive_data(frame[-1:], 1)
    assert a.state is State.FAILED


def test_unknown_frame_type_after_data(raw_pair: RawPair) -> None:
    """Valid frames before an unknown one do not make it acceptable."""
    a, raw = raw_pair
    wire = raw.frame(FRAME_DATA, b"ok") + raw.frame(FRAME_PING) + raw.frame(3)
    with pytest.raises(RemoteProtocolError, match="unknown frame type 3"):
        a.receive_data(wire, 1)
    assert a.state is State.FAILED


def test_short_handshake_message(make_pair: MakePair) -> None:
    a, b = make_pair()
    first = start_out(a)
    start_out(b)
    frame = first[len(PREAMBLE):]
    truncated = struct.pack(">H", 40) + frame[2:42]
    with pytest.raises(HandshakeFailed):
        b.receive_data(PREAMBLE + truncated, 0)


# --- local misuse --------------------------------------------------------------------------


def test_send_before_handshake(make_pair: MakePair) -> None:
    a, b = make_pair()
    with pytest.raises(LocalProtocolError):
        send_out(a, b"too early", 0)
    first = start_out(a)
    with pytest.raises(LocalProtocolError):
        send_out(a, b"too early", 0)
    start_out(b)
    b.receive_data(first[:len(PREAMBLE)], 0)
    assert b.state is State.AWAIT_HANDSHAKE
    with pytest.raises(LocalProtocolError, match="await-handshake"):
        send_out(b, b"too early", 0)
    # the misuse did not break the channels
    b.receive_data(first[len(PREAMBLE):], 0)
    a.receive_data(PREAMBLE + b.data_to_send(), 0)
    assert b.receive_data(send_out(a, b"now", 1), 1) == [DataReceived(b"now")]


def test_send_after_close(open_pair: Pair) -> None:
    """Sending after our own close is the caller's bug (unlike after the peer's CLOSE)."""
    a, _ = open_pair
    close_out(a, 1)
    with pytest.raises(LocalProtocolError, match="cannot send in state closing"):
        send_out(a, b"x", 2)
    assert a.state is State.CLOSING


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_start_twice(make_pair: MakePair, side: str) -> None:
    a, b = make_pair()
    channel = a if side == "initiator" else b
    start_out(channel)
    with pytest.raises(LocalProtocolError, match="once"):
        start_out(channel)


def test_start_after_handshake(open_pair: Pair) -> None:
    a, b = open_pair
    for channel in (a, b):
        with pytest.raises(LocalProtocolError):
            start_out(channel)


# --- timers --------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_handshake_timeout(make_pair: MakePair, side: str, bob: Ed25519Key) -> None:
    a, b = make_pair(handshake_timeout=10.0)
    start_out(a)
    start_out(b)
    channel = a if side == "initiator" else b
    assert channel.get_timer() == 10.0
    assert timer_out(channel, 9.99) == b""
    assert channel.state is State.AWAIT_PREAMBLE
    with pytest.raises(HandshakeFailed, match="within 10 s") as info:
        timer_out(channel, 10.0)
    if side == "initiator":
        assert bob.did.did in str(info.value)
    assert channel.state is State.FAILED
    with pytest.raises(LocalProtocolError):
        channel.receive_data(b"late", 11)


def test_handshake_timeout_after_preamble(make_pair: MakePair) -> None:
    a, b = make_pair(handshake_timeout=10.0)
    first = start_out(a)
    start_out(b)
    b.receive_data(first[:len(PREAMBLE) + 5], 3)  # preamble and part of the handshake
    assert b.state is State.AWAIT_HANDSHAKE
    assert b.get_timer() == 10.0  # counted from the start, not from the last bytes
    with pytest.raises(HandshakeFailed):
        timer_out(b, 10.5)


def test_keepalive_ping(make_pair: MakePair) -> None:
    a, b = make_pair(keepalive_interval=5.0, idle_timeout=30.0)
    establish_pair(a, b)
    assert a.get_timer() == 5.0
    assert timer_out(a, 4.9) == b""
    ping = timer_out(a, 5.0)
    (frame,) = split_frames(ping)
    assert frame[0] == FRAME_PING and len(frame[1]) == TAG_LEN  # empty body
    assert b.receive_data(ping, 5.0) == []  # accepted, no event
    assert b.state is State.OPEN
    assert a.get_timer() == 10.0
    assert timer_out(a, 6.0) == b""  # not due again yet
    # sending data also counts as activity: no PING needed
    wire = send_out(a, b"x", 9.0)
    assert a.get_timer() == 14.0
    assert b.receive_data(wire, 9.0) == [DataReceived(b"x")]
    # the stream is still in sync after the PING
    assert b.receive_data(send_out(a, b"after ping", 9.5), 9.5) == [DataReceived(b"after ping")]


def test_frame_types_on_the_wire(raw_pair: RawPair) -> None:
    """DATA is type 0, PING 1, CLOSE 2, as the noise package sees them."""
    a, raw = raw_pair
    assert (FRAME_DATA, FRAME_PING, FRAME_CLOSE) == (0, 1, 2)
    data = send_out(a, b"abc", 1)
    assert data[:HEADER_LEN] == b"\x00\x13\x00"  # length 3 + 16, type 0
    assert raw.open(data) == [(FRAME_DATA, b"abc")]
    ping = timer_out(a, 10.0)
    assert ping[:HEADER_LEN] == b"\x00\x10\x01"
    assert raw.open(ping) == [(FRAME_PING, b"")]
    close = close_out(a, 11.0)
    assert close[:HEADER_LEN] == b"\x00\x10\x02"
    assert raw.open(close) == [(FRAME_CLOSE, b"")]
    assert a.receive_data(raw.frame(FRAME_PING), 12.0) == []
    assert a.receive_data(raw.frame(FRAME_DATA, b"in flight"), 12.0) == []


def test_max_chunk_fills_one_frame(raw_pair: RawPair) -> None:
    """MAX_CHUNK = 65535 - 16: the largest body whose ciphertext length fits the u16."""
    a, raw = raw_pair
    assert MAX_CHUNK == MAX_NOISE_MESSAGE - TAG_LEN == 65519
    data = os.urandom(MAX_CHUNK + 1)
    one = send_out(a, data[:MAX_CHUNK], 1)
    assert one[:HEADER_LEN] == frame_header(MAX_NOISE_MESSAGE, FRAME_DATA)
    assert len(one) == HEADER_LEN + MAX_NOISE_MESSAGE
    assert raw.open(one) == [(FRAME_DATA, data[:MAX_CHUNK])]
    two = send_out(a, data, 2)
    assert raw.open(two) == [(FRAME_DATA, data[:MAX_CHUNK]), (FRAME_DATA, data[-1:])]
    # and the peer's frames of that size are accepted
    assert a.receive_data(raw.frame(FRAME_DATA, data[:MAX_CHUNK]), 3) == \
        [DataReceived(data[:MAX_CHUNK])]


def test_many_frames_in_one_read_are_one_delivery(open_pair: Pair) -> None:
    """A read holding many small frames (and a split one) reaches the application as one
    DataReceived per read; the stream is the same however the reads cut it."""
    a, b = open_pair
    messages = [os.urandom(1 + i % 40) for i in range(300)]
    wire = b"".join(send_out(a, m, 1) for m in messages)
    assert b.receive_data(wire, 1) == [DataReceived(b"".join(messages))]
    wire = b"".join(send_out(a, m, 2) for m in messages)
    cut = len(wire) // 2 + 7  # inside a frame
    first, second = b.receive_data(wire[:cut], 2), b.receive_data(wire[cut:], 2)
    assert len(first) == 1 and len(second) <= 2
    assert received(first + second) == b"".join(messages)


def test_nonce_space_exhausted_when_sending(open_pair: Pair) -> None:
    """The counter may not wrap (specs/channel.md 4.5): the last nonce is never used."""
    a, _ = open_pair
    assert a._encrypt is not None
    a._encrypt.n = noise_module.MAX_NONCE - 1
    a.send(b"last", 1)  # nonce 2^64 - 2: fine
    assert a.data_to_send()
    with pytest.raises(LocalProtocolError, match="nonce space"):
        a.send(b"one too many", 1)
    with pytest.raises(LocalProtocolError, match="nonce space"):
        a.send(os.urandom(2 * MAX_CHUNK), 1)  # the bulk path too
    with pytest.raises(LocalProtocolError, match="nonce space"):
        a.close(1)


def test_nonce_space_exhausted_when_receiving(raw_pair: RawPair) -> None:
    a, raw = raw_pair
    assert a._decrypt is not None
    a._decrypt.n = noise_module.MAX_NONCE
    with pytest.raises(RemoteProtocolError, match="nonce space"):
        a.receive_data(raw.frame(FRAME_DATA, b"x"), 1)
    assert a.state is State.FAILED


def test_forged_frame_does_not_move_the_counter(open_pair: Pair) -> None:
    """Only an authenticated frame consumes a nonce: after a forgery (which fails the
    channel) the counter is where it was."""
    a, b = open_pair
    assert b._decrypt is not None
    b.receive_data(send_out(a, b"one", 1), 1)
    before = b._decrypt.n
    forged = bytearray(send_out(a, b"two", 1))
    forged[-1] ^= 1
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        b.receive_data(bytes(forged), 1)
    assert b._decrypt.n == before


def test_idle_timeout(make_pair: MakePair, alice: Ed25519Key) -> None:
    a, b = make_pair(keepalive_interval=5.0, idle_timeout=30.0)
    establish_pair(a, b)
    pings = 0
    with pytest.raises(PeerTimeout) as info:
        while True:
            due = b.get_timer()
            assert due is not None
            if timer_out(b, due):  # b keeps pinging, but alice never answers
                pings += 1
    assert due == 30.0
    assert pings == 5  # at 5, 10, 15, 20, 25
    assert alice.did.did in str(info.value)
    assert b.state is State.FAILED
    with pytest.raises(LocalProtocolError):
        b.receive_data(send_out(a, b"too late", 31), 31)


def test_keepalives_keep_both_sides_alive(make_pair: MakePair) -> None:
    a, b = make_pair(keepalive_interval=5.0, idle_timeout=12.0)
    establish_pair(a, b)
    now = 0.0
    while now < 200:
        now = min(a.get_timer(), b.get_timer())  # type: ignore[type-var]
        for me, peer in ((a, b), (b, a)):
            out = timer_out(me, now)
            if out:
                assert peer.receive_data(out, now) == []
    assert a.state is b.state is State.OPEN


def test_received_data_resets_idle_timer(make_pair: MakePair) -> None:
    a, b = make_pair(keepalive_interval=100.0, idle_timeout=30.0)
    establish_pair(a, b)
    b.receive_data(send_out(a, b"x", 20.0), 20.0)
    assert b.get_timer() == 50.0
    assert timer_out(b, 49.0) == b""
    with pytest.raises(PeerTimeout):
        timer_out(b, 50.0)


def test_no_timer_when_closed(open_pair: Pair) -> None:
    a, b = open_pair
    b.receive_data(close_out(a, 1), 1)
    assert a.get_timer() is None and b.get_timer() is None
    assert timer_out(a, 1000.0) == b"" and timer_out(b, 1000.0) == b""


# --- failure is final ----------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["corrupted", "preamble", "timeout", "lost"])
def test_after_failure_everything_is_refused(open_pair: Pair, make_pair: MakePair,
                                             failure: str) -> None:
    a, b = open_pair
    if failure == "corrupted":
        with pytest.raises(RemoteProtocolError):
            b.receive_data(frame_header(20, FRAME_DATA) + bytes(20), 1)
    elif failure == "preamble":
        _, b = make_pair()
        with pytest.raises(RemoteProtocolError):
            b.receive_data(b"HELLO!!!", 1)
    elif failure == "timeout":
        with pytest.raises(PeerTimeout):
            timer_out(b, 1000.0)
    else:
        with pytest.raises(ConnectionLost):
            b.connection_lost()
    assert b.state is State.FAILED
    with pytest.raises(LocalProtocolError, match="failed"):
        b.receive_data(send_out(a, b"x", 2) if a.state is State.OPEN else b"x", 2)
    with pytest.raises(LocalProtocolError):
        b.receive_data(b"", 2)
    with pytest.raises(LocalProtocolError):
        send_out(b, b"x", 2)
    with pytest.raises(LocalProtocolError):
        close_out(b, 2)


# --- the transition table ------------------------------------------------------------------

MISSING = [(state, what) for state in State for what in INPUTS
           if (state, what) not in TRANSITIONS]
READING = (State.AWAIT_PREAMBLE, State.AWAIT_HANDSHAKE, State.OPEN, State.CLOSING)


def test_transition_table_inputs() -> None:
    assert {what for _, what in TRANSITIONS} == set(INPUTS)
    assert PEER_INPUTS == set(REMOTE_INPUTS)
    assert len(MISSING) == len(State) * len(INPUTS) - len(TRANSITIONS)


def test_transition_table_shape() -> None:
    """Every state is reachable; failed and closed are never left; every state that reads
    the peer's bytes fails on bad ones; only a live channel times out."""
    reached, todo = {State.AWAIT_PREAMBLE}, [State.AWAIT_PREAMBLE]
    while todo:
        state = todo.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                todo.append(target)
    assert reached == set(State)
    for (source, _), target in TRANSITIONS.items():
        if source in (State.FAILED, State.CLOSED):
            assert target is source
    assert [s for s in State if (s, "peer-error") in TRANSITIONS] == list(READING)
    assert all(TRANSITIONS[(s, "peer-error")] is State.FAILED for s in READING)
    assert {s for (s, what) in TRANSITIONS if what == "timeout"} == \
        {State.AWAIT_PREAMBLE, State.AWAIT_HANDSHAKE, State.OPEN}
    assert {s: TRANSITIONS[(s, "connection-lost")] for s in State} == {
        State.AWAIT_PREAMBLE: State.FAILED, State.AWAIT_HANDSHAKE: State.FAILED,
        State.OPEN: State.FAILED, State.CLOSING: State.CLOSED, State.CLOSED: State.CLOSED,
        State.FAILED: State.FAILED}


class _StateAssignments(ast.NodeVisitor):
    """Where a module assigns an attribute named ``state``, as "Class.method" names."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.found: list[str] = []

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def _check(self, node: ast.AST, targets: list[ast.expr]) -> None:
        if any(isinstance(t, ast.Attribute) and t.attr == "state"
               for target in targets for t in ast.walk(target)):
            self.found.append(".".join(self.scope) or "<module>")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._check(node, node.targets)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check(node, [node.target])

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check(node, [node.target])

    def visit_For(self, node: ast.For) -> None:
        self._check(node, [node.target])

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            self.found.append(".".join(self.scope) + f" ({node.func.id})")
        self.generic_visit(node)


def test_only_step_changes_the_state() -> None:
    """The table is the whole truth: in noise.py only ``_step`` assigns the state (and
    ``__init__`` its first value), so no transition can bypass TRANSITIONS."""
    source = Path(noise_module.__file__).read_text(encoding="utf-8")
    visitor = _StateAssignments()
    visitor.visit(ast.parse(source))
    assert visitor.found == ["NoiseChannel.__init__", "NoiseChannel._step"]


@pytest.mark.parametrize(("state", "what"), list(TRANSITIONS),
                         ids=[f"{s.value}-{w}" for s, w in TRANSITIONS])
def test_allowed_transitions(open_pair: Pair, state: State, what: str) -> None:
    a, _ = open_pair
    a.state = state
    a._step(what)
    assert a.state is TRANSITIONS[(state, what)]


@pytest.mark.parametrize(("state", "what"), MISSING, ids=[f"{s.value}-{w}" for s, w in MISSING])
def test_missing_transitions_raise(open_pair: Pair, state: State, what: str) -> None:
    """A missing transition raises and changes nothing: the peer's input is its protocol
    error (and receive_data then takes "peer-error"), any other is the caller's."""
    a, _ = open_pair
    a.state = state
    error = RemoteProtocolError if what in REMOTE_INPUTS else LocalProtocolError
    with pytest.raises(error) as info:
        a._step(what)
    assert type(info.value) is error
    assert a.state is state


def test_missing_remote_transition_names_the_state(open_pair: Pair) -> None:
    """The error says in which state the peer's input arrived (not "failed", the state the
    channel is in afterwards)."""
    a, _ = open_pair
    for state, what in MISSING:
        if what not in REMOTE_INPUTS:
            continue
        a.state = state
        with pytest.raises(RemoteProtocolError) as info:
            a._step(what)
        assert f"sent {what} in state {state.value}" in str(info.value)


def test_bad_bytes_fail_a_closing_channel(open_pair: Pair) -> None:
    """(closing, peer-error): frames in flight after our close are still authenticated."""
    a, b = open_pair
    close_out(a, 1)
    wire = bytearray(send_out(b, b"x" * 100, 1))
    wire[-1] ^= 1
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        a.receive_data(bytes(wire), 2)
    assert a.state is State.FAILED


# The missing transitions that bytes from the peer can reach, through the public API.


def test_peer_frame_before_handshake(open_pair: Pair, make_pair: MakePair) -> None:
    """(await-handshake, data / ping / close): a transport frame where the handshake is due."""
    a, _ = open_pair
    for frame in (send_out(a, b"x" * 100, 1), timer_out(a, 10.0), close_out(a, 11)):
        _, fresh = make_pair()
        start_out(fresh)
        with pytest.raises(RemoteProtocolError):
            fresh.receive_data(PREAMBLE + frame, 1)
        assert fresh.state is State.FAILED


def test_handshake_again_when_open(make_pair: MakePair) -> None:
    """(open, preamble) and (open, handshake): a second handshake is not a frame."""
    a, b = make_pair()
    first = start_out(a)
    start_out(b)
    b.receive_data(first, 0)
    a.receive_data(PREAMBLE + b.data_to_send(), 0)
    # The replayed handshake message (u16be 96 || 96 bytes) reads as the header of a frame
    # of 96 bytes (its type the first byte of the ephemeral key) of which 95 follow ...
    replay = first[len(PREAMBLE):]
    assert b.receive_data(replay, 1) == []
    assert b.state is State.OPEN
    # ... and whatever completes it, it is refused: unknown type or failed authentication.
    with pytest.raises(RemoteProtocolError, match="unknown frame type|corrupted"):
        b.receive_data(send_out(a, b"x", 1), 1)
    assert b.state is State.FAILED
    c, d = make_pair()
    establish_pair(c, d)
    # a second preamble reads as the header of a 0x4d50-byte frame of type 0x43 ("C")
    with pytest.raises(RemoteProtocolError, match="unknown frame type 67"):
        d.receive_data(PREAMBLE + bytes(0x4D50), 1)
    assert d.state is State.FAILED


def test_peer_close_twice(raw_pair: RawPair) -> None:
    """After the peer's CLOSE nothing is read (closed): a second CLOSE, and whatever
    follows, is discarded, and the CLOSE reported once."""
    a, raw = raw_pair
    wire = raw.frame(FRAME_CLOSE) + raw.frame(FRAME_CLOSE) + raw.frame(FRAME_DATA, b"late")
    assert a.receive_data(wire, 1) == [PeerClosed()]
    assert a.state is State.CLOSED


def test_crossing_closes(open_pair: Pair) -> None:
    """Both sides close at the same time: each gets the other's CLOSE while closing."""
    a, b = open_pair
    to_b, to_a = close_out(a, 1), close_out(b, 1)
    assert a.state is b.state is State.CLOSING
    assert a.receive_data(to_a, 1) == [] and b.receive_data(to_b, 1) == []
    assert a.state is b.state is State.CLOSED
    a.connection_lost()
    b.connection_lost()


def test_errors_are_mpcid_errors() -> None:
    for cls in (ConnectionLost, HandshakeFailed, LocalProtocolError, PeerTimeout,
                RemoteProtocolError):
        assert issubclass(cls, MpcidError)
    assert issubclass(HandshakeFailed, RemoteProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)


@pytest.mark.parametrize("kind", [FRAME_PING, FRAME_CLOSE])
def test_ping_and_close_with_a_body_are_refused(raw_pair: Any, kind: int) -> None:
    """specs/channel.md 4.3: PING and CLOSE carry no body."""
    channel, peer = raw_pair
    with pytest.raises(RemoteProtocolError, match="with a body"):
        channel.receive_data(peer.frame(kind, b"x"), 1.0)


def test_send_counts_bytes_of_wide_buffers(open_pair: Any) -> None:
    import array

    a, b = open_pair
    data = array.array("I", range(50_000))  # 200,000 bytes in 50,000 items
    events = b.receive_data(send_out(a, memoryview(data), 1.0), 1.0)
    assert b"".join(e.data for e in events) == data.tobytes()
