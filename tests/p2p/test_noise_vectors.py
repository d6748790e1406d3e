"""Published Noise_IK_25519_ChaChaPoly_SHA256 test vectors against the channel.

Vectors: ``tests/vectors/noise-ik-25519-chachapoly-sha256.json``, transcribed from

* https://github.com/mcginty/snow commit 8ac60f51cfe3e010c84f0a454cc575ad9204fa12,
  ``tests/vectors/snow.txt`` and ``tests/vectors/cacophony.txt`` (the cacophony vectors);
* https://github.com/rweather/noise-c commit cfe25410979a87391bb9ac8d4d4bef64e9f268c6,
  ``tests/vector/noise-c-basic.txt``.

Every vector names its source in its ``source`` member (checked below).

The vectors' handshake payloads are not empty, while the channel always sends empty
handshake payloads, so the channel cannot reproduce their ciphertexts byte for byte. What is
checked:

1. the ``noise`` package the channel is built on, configured exactly as the channel
   configures it (protocol name, prologue, static and fixed ephemeral keys), reproduces every
   handshake and transport ciphertext and the handshake hash of each vector; and the
   transport ciphertexts are also reproduced by ``cryptography``'s ChaCha20Poly1305 with the
   transport keys the ``noise`` package derives (``cipher_state_encrypt.k``) and the Noise
   nonce (4 zero bytes || u64le counter), which validates that way of checking frames;
2. the channel, given each vector's prologue, static and ephemeral keys on both sides,
   completes a handshake whose messages and handshake hash are exactly those the ``noise``
   package computes for the same keys with empty payloads (and the vector's own first
   ciphertext where its payload is empty), and whose transport frames are exactly
   ``header || ChaChaPoly(k, n, ad=header, data)`` with ``header = u16be len(ciphertext) ||
   u8 type``, ``k`` the transport key the ``noise`` package derives for that handshake and
   ``n`` counting from 0 in each direction. The vectors' own transport messages use empty
   associated data, so the channel's frames cannot be compared to them byte for byte.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

from mpcid.p2p.errors import HandshakeFailed, RemoteProtocolError
from mpcid.p2p.noise import (FRAME_CLOSE, FRAME_DATA, FRAME_PING, PREAMBLE, PROTOCOL_NAME,
                             ChannelConfig, DataReceived, HandshakeComplete, NoiseChannel,
                             PeerClosed, State)
from noise_pairs import close_out, establish_pair, send_out, start_out, timer_out  # this folder

VECTOR_FILE = Path(__file__).parent.parent / "vectors" / "noise-ik-25519-chachapoly-sha256.json"
DATA = json.loads(VECTOR_FILE.read_text())
VECTORS: list[dict[str, Any]] = DATA["vectors"]

INIT_DID = "did:key:initiator"
RESP_DID = "did:key:peer"

# The noise package warns whenever an ephemeral key is fixed; that is what vectors do.
pytestmark = pytest.mark.filterwarnings("ignore:One of ephemeral keypairs is already set")


def _id(vector: dict[str, Any]) -> str:
    return f"{vector['source']['repo']}:{vector['source']['path']}"


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def public(private: bytes) -> bytes:
    return nacl.bindings.crypto_scalarmult_base(private)


def nonce(n: int) -> bytes:
    """The Noise ChaChaPoly nonce: 32 zero bits || 64-bit little-endian counter."""
    return bytes(4) + n.to_bytes(8, "little")


def transport_keys(conn: NoiseConnection) -> tuple[bytes, bytes]:
    """(sending key, receiving key) the ``noise`` package derived (``Split()``)."""
    state = conn.noise_protocol
    return bytes(state.cipher_state_encrypt.k), bytes(state.cipher_state_decrypt.k)


def expected_frame(key: bytes, n: int, kind: int, body: bytes) -> bytes:
    """A transport frame built independently of the channel: ``header ||
    ChaChaPoly(key, n, ad=header, body)``, ``header = u16be len(ciphertext) || u8 kind``."""
    header = (len(body) + 16).to_bytes(2, "big") + bytes([kind])
    return header + ChaCha20Poly1305(key).encrypt(nonce(n), body, header)


def raw_pair(v: dict[str, Any]) -> tuple[NoiseConnection, NoiseConnection]:
    """Initiator and responder of the ``noise`` package, set up as the channel sets it up."""
    init = NoiseConnection.from_name(PROTOCOL_NAME)
    init.set_prologue(h(v["init_prologue"]))
    init.set_keypair_from_private_bytes(Keypair.STATIC, h(v["init_static"]))
    init.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, h(v["init_remote_static"]))
    init.set_keypair_from_private_bytes(Keypair.EPHEMERAL, h(v["init_ephemeral"]))
    init.set_as_initiator()
    resp = NoiseConnection.from_name(PROTOCOL_NAME)
    resp.set_prologue(h(v["resp_prologue"]))
    resp.set_keypair_from_private_bytes(Keypair.STATIC, h(v["resp_static"]))
    resp.set_keypair_from_private_bytes(Keypair.EPHEMERAL, h(v["resp_ephemeral"]))
    resp.set_as_responder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init.start_handshake()
        resp.start_handshake()
    return init, resp


def channel_pair(v: dict[str, Any]) -> tuple[NoiseChannel, NoiseChannel]:
    init = NoiseChannel(ChannelConfig(
        static_private=h(v["init_static"]), prologue=h(v["init_prologue"]), initiator=True,
        expected_peers={RESP_DID: public(h(v["resp_static"]))}),
        now=0, ephemeral_private=h(v["init_ephemeral"]))
    resp = NoiseChannel(ChannelConfig(
        static_private=h(v["resp_static"]), prologue=h(v["resp_prologue"]), initiator=False,
        expected_peers={INIT_DID: public(h(v["init_static"]))}),
        now=0, ephemeral_private=h(v["resp_ephemeral"]))
    return init, resp


def test_vector_file_is_what_it_claims() -> None:
    assert len(VECTORS) >= 3
    sources = {(v["source"]["repo"], v["source"]["path"]) for v in VECTORS}
    assert ("mcginty/snow", "tests/vectors/snow.txt") in sources
    assert ("rweather/noise-c", "tests/vector/noise-c-basic.txt") in sources
    for v in VECTORS:
        assert v["protocol_name"] == PROTOCOL_NAME.decode()
        assert len(v["source"]["commit"]) == 40
        assert len(v["messages"]) >= 3, "two handshake messages and transport messages"


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_remote_static_is_the_responder_public_key(v: dict[str, Any]) -> None:
    assert public(h(v["resp_static"])) == h(v["init_remote_static"])


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_noise_package_reproduces_vector(v: dict[str, Any]) -> None:
    init, resp = raw_pair(v)
    sent = {id(init): 0, id(resp): 0}
    for i, message in enumerate(v["messages"]):
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        payload, ciphertext = h(message["payload"]), h(message["ciphertext"])
        if i < 2:
            assert bytes(sender.write_message(payload)) == ciphertext, f"handshake message {i}"
            assert bytes(receiver.read_message(ciphertext)) == payload
        else:
            # The keys and nonces that test_channel_handshake_with_vector_keys uses to check
            # the channel's frames reproduce the published ciphertexts (empty AD).
            key, _ = transport_keys(sender)
            assert transport_keys(receiver)[1] == key
            n = sent[id(sender)]
            assert ChaCha20Poly1305(key).encrypt(nonce(n), payload, b"") == ciphertext, \
                f"transport message {i} with the noise package's key"
            sent[id(sender)] = n + 1
            assert bytes(sender.encrypt(payload)) == ciphertext, f"transport message {i}"
            assert bytes(receiver.decrypt(ciphertext)) == payload
        if i == 1:
            assert init.handshake_finished and resp.handshake_finished
            assert init.get_handshake_hash() == resp.get_handshake_hash()
            if "handshake_hash" in v:
                assert init.get_handshake_hash() == h(v["handshake_hash"])


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_channel_handshake_with_vector_keys(v: dict[str, Any]) -> None:
    # What the noise package computes for the vector's keys with the channel's (empty)
    # handshake payloads.
    raw_init, raw_resp = raw_pair(v)
    msg1 = bytes(raw_init.write_message(b""))
    raw_resp.read_message(msg1)
    msg2 = bytes(raw_resp.write_message(b""))
    raw_init.read_message(msg2)
    expected_hash = raw_init.get_handshake_hash()
    assert expected_hash == raw_resp.get_handshake_hash()
    # IK message lengths: e (32) + encrypted s (32 + 16) + empty payload tag (16); e + tag.
    assert (len(msg1), len(msg2)) == (96, 48)
    if not v["messages"][0]["payload"]:
        assert msg1 == h(v["messages"][0]["ciphertext"])
    if not v["messages"][1]["payload"]:
        assert msg2 == h(v["messages"][1]["ciphertext"])
    # The first 32 bytes of each handshake message are the ephemeral public keys, the same
    # as in the vector, whatever the payload.
    assert msg1[:32] == h(v["messages"][0]["ciphertext"])[:32] == public(h(v["init_ephemeral"]))
    assert msg2[:32] == h(v["messages"][1]["ciphertext"])[:32] == public(h(v["resp_ephemeral"]))

    init, resp = channel_pair(v)
    first = start_out(init)
    assert first == PREAMBLE + len(msg1).to_bytes(2, "big") + msg1
    assert start_out(resp) == PREAMBLE

    events_resp = resp.receive_data(first, 0)
    reply = bytes(resp.data_to_send())  # queued by receive_data
    assert reply == len(msg2).to_bytes(2, "big") + msg2
    events_init = init.receive_data(PREAMBLE + reply, 0)

    assert events_resp == [HandshakeComplete(INIT_DID, expected_hash)]
    assert events_init == [HandshakeComplete(RESP_DID, expected_hash)]
    assert init.handshake_hash == resp.handshake_hash == expected_hash
    assert init.state is resp.state is State.OPEN

    # Transport frames are header || ChaChaPoly(k, n, ad=header, data), k the transport keys
    # the noise package derives for this handshake, n counting from 0 in each direction.
    init_send, init_receive = transport_keys(raw_init)
    resp_send, resp_receive = transport_keys(raw_resp)
    assert (init_send, init_receive) == (resp_receive, resp_send)
    assert init_send != init_receive
    keys = {id(init): init_send, id(resp): resp_send}
    sent = {id(init): 0, id(resp): 0}
    for i, message in enumerate(v["messages"][2:]):
        payload = h(message["payload"])
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        key, n = keys[id(sender)], sent[id(sender)]
        frame = send_out(sender, payload, 0)
        assert frame == expected_frame(key, n, FRAME_DATA, payload), f"transport message {i}"
        sent[id(sender)] = n + 1
        assert receiver.receive_data(frame, 0) == [DataReceived(payload)]
    # The receiver opens frames built independently with the same keys, of every type.
    key, n = keys[id(resp)], sent[id(resp)]
    assert init.receive_data(expected_frame(key, n, FRAME_DATA, b"from outside"), 0) == \
        [DataReceived(b"from outside")]
    assert init.receive_data(expected_frame(key, n + 1, FRAME_PING, b""), 0) == []
    # PING and CLOSE have empty bodies and the same layout.
    key, n = keys[id(init)], sent[id(init)]
    ping = timer_out(init, init.config.keepalive_interval)
    assert ping == expected_frame(key, n, FRAME_PING, b"")
    assert resp.receive_data(ping, 5) == []
    close = close_out(init, 6)
    assert close == expected_frame(key, n + 1, FRAME_CLOSE, b"")
    assert resp.receive_data(close, 6) == [PeerClosed()]

    # The header is the associated data: the same frame sealed the vectors' way (empty AD)
    # is refused. A fresh pair with the same keys derives the same transport keys.
    again_init, again_resp = channel_pair(v)
    establish_pair(again_init, again_resp)
    body = b"sealed without the header"
    header = expected_frame(resp_send, 0, FRAME_DATA, body)[:3]
    empty_ad = header + ChaCha20Poly1305(resp_send).encrypt(nonce(0), body, b"")
    assert send_out(again_resp, body, 0) == header + ChaCha20Poly1305(resp_send).encrypt(
        nonce(0), body, header)
    with pytest.raises(RemoteProtocolError, match="corrupted"):
        again_init.receive_data(empty_ad, 0)


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_establish_pair_with_vector_keys(v: dict[str, Any]) -> None:
    init, resp = channel_pair(v)
    events_init, events_resp = establish_pair(init, resp)
    assert [e.peer_did for e in events_init if isinstance(e, HandshakeComplete)] == [RESP_DID]
    assert [e.peer_did for e in events_resp if isinstance(e, HandshakeComplete)] == [INIT_DID]
    # Deterministic keys give a deterministic transcript: a second run agrees.
    again, _ = channel_pair(v)
    _, other = channel_pair(v)
    establish_pair(again, other)
    assert again.handshake_hash == init.handshake_hash == resp.handshake_hash


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_channel_rejects_vector_prologue_mismatch(v: dict[str, Any]) -> None:
    """The vector's own keys with a one-byte different prologue cannot complete."""
    bad = dict(v, resp_prologue=v["resp_prologue"] + "00")
    init, resp = channel_pair(bad)
    with pytest.raises(HandshakeFailed):
        resp.receive_data(start_out(init), 0)
