"""Shared fixtures for the channel tests (``mpcid.p2p``).

Three parties of one session, ``alice``, ``bob`` and ``carol`` (fresh Ed25519 keys per
test), ``party_dids`` (their DIDs in that order), ``session_id``, ``program_sha256``, the
session's Noise prologue ``prologue`` built from those, and factories that build channel configurations and channels:

* ``make_config(me, peers, *, initiator, prologue=None, **timers)``: a
  :class:`ChannelConfig` for party ``me`` accepting the parties ``peers``;
* ``make_pair(**kwargs)``: a fresh (initiator alice, responder bob) pair of
  :class:`NoiseChannel` at ``now=0``, not yet started;
* ``open_pair``: such a pair with the handshake completed (via
  ``noise_pairs.establish_pair``);
* ``raw_pair``: (alice's channel, bob played by :class:`RawPeer` on the ``noise`` package),
  handshake completed, for frames the channel itself would never send.

Nothing here opens a socket; the asyncio tests build their own servers inside each test.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from noise.connection import Keypair, NoiseConnection

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.noise import PREAMBLE, PROTOCOL_NAME, ChannelConfig, NoiseChannel, session_prologue
from noise_pairs import establish_pair  # this folder

SESSION_ID = "session-2024-salary"
PROGRAM_SHA256 = hashlib.sha256(b"print(mpc.run(...))").digest()


@pytest.fixture
def alice() -> Ed25519Key:
    return Ed25519Key.generate()


@pytest.fixture
def bob() -> Ed25519Key:
    return Ed25519Key.generate()


@pytest.fixture
def carol() -> Ed25519Key:
    return Ed25519Key.generate()


@pytest.fixture
def party_dids(alice: Ed25519Key, bob: Ed25519Key, carol: Ed25519Key) -> list[str]:
    """The session's party list, in MPyC index order."""
    return [alice.did.did, bob.did.did, carol.did.did]


@pytest.fixture
def session_id() -> str:
    return SESSION_ID


@pytest.fixture
def program_sha256() -> bytes:
    return PROGRAM_SHA256


@pytest.fixture
def prologue(party_dids: list[str]) -> bytes:
    """``session_prologue(session_id, program_sha256, party_dids)``."""
    return session_prologue(SESSION_ID, PROGRAM_SHA256, party_dids)


MakeConfig = Callable[..., ChannelConfig]


@pytest.fixture
def make_config(prologue: bytes) -> MakeConfig:
    def make(me: Ed25519Key, peers: Iterable[Ed25519Key], *, initiator: bool,
             prologue: bytes = prologue, **timers: Any) -> ChannelConfig:
        return ChannelConfig(
            static_private=me.x25519_private_key, prologue=prologue, initiator=initiator,
            expected_peers={p.did.did: p.did.x25519_public_key for p in peers}, **timers)
    return make


@pytest.fixture
def make_pair(alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig
              ) -> Callable[..., tuple[NoiseChannel, NoiseChannel]]:
    """``make_pair(**timers)`` -> (alice initiator, bob responder), neither started."""
    def make(**timers: Any) -> tuple[NoiseChannel, NoiseChannel]:
        a = NoiseChannel(make_config(alice, [bob], initiator=True, **timers), now=0.0)
        b = NoiseChannel(make_config(bob, [alice], initiator=False, **timers), now=0.0)
        return a, b
    return make


@pytest.fixture
def open_pair(make_pair: Callable[..., tuple[NoiseChannel, NoiseChannel]]
              ) -> tuple[NoiseChannel, NoiseChannel]:
    """(alice, bob) with the handshake done at ``now=0``."""
    a, b = make_pair()
    establish_pair(a, b)
    return a, b


class RawPeer:
    """The peer end of a channel played with the ``noise`` package directly, following the
    wire format by hand, so that tests can send frames our channel would never produce
    (unknown types, frames after CLOSE, ...) without touching the channel's internals."""

    def __init__(self, key: Ed25519Key, prologue: bytes, *, initiator: bool = False,
                 remote: Ed25519Key | None = None) -> None:
        self.conn = NoiseConnection.from_name(PROTOCOL_NAME)
        self.conn.set_prologue(prologue)
        self.conn.set_keypair_from_private_bytes(Keypair.STATIC, key.x25519_private_key)
        if initiator:
            assert remote is not None
            self.conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC,
                                                    remote.did.x25519_public_key)
            self.conn.set_as_initiator()
        else:
            self.conn.set_as_responder()
        self.conn.start_handshake()

    def first_message(self) -> bytes:
        """Initiator: preamble and handshake message."""
        message = bytes(self.conn.write_message(b""))
        return PREAMBLE + len(message).to_bytes(2, "big") + message

    def accept(self, first: bytes) -> bytes:
        """Responder: read the initiator's first bytes, return preamble and reply."""
        assert first[:len(PREAMBLE)] == PREAMBLE
        length = int.from_bytes(first[len(PREAMBLE):len(PREAMBLE) + 2], "big")
        self.conn.read_message(first[len(PREAMBLE) + 2:len(PREAMBLE) + 2 + length])
        reply = bytes(self.conn.write_message(b""))
        return PREAMBLE + len(reply).to_bytes(2, "big") + reply

    def finish(self, reply: bytes) -> None:
        """Initiator: read the responder's preamble and reply."""
        assert reply[:len(PREAMBLE)] == PREAMBLE
        self.conn.read_message(reply[len(PREAMBLE) + 2:])
        assert self.conn.handshake_finished

    def frame(self, kind: int, body: bytes = b"") -> bytes:
        """A transport frame of any type: ``header || ciphertext`` with
        ``header = u16be len(ciphertext) || u8 kind`` and the ciphertext the Noise
        CipherState's ``EncryptWithAd(ad=header, body)`` (``specs/channel.md`` 4.3)."""
        header = struct.pack(">HB", len(body) + 16, kind)
        cipher = self.conn.noise_protocol.cipher_state_encrypt
        return header + bytes(cipher.encrypt_with_ad(header, body))

    def open(self, wire: bytes) -> list[tuple[int, bytes]]:
        """Decrypt a stream of whole frames from the channel: ``[(type, body), ...]``."""
        out = []
        cipher = self.conn.noise_protocol.cipher_state_decrypt
        while wire:
            assert len(wire) >= 3, "incomplete header"
            length, kind = struct.unpack_from(">HB", wire)
            assert len(wire) >= 3 + length, "incomplete frame"
            header, ciphertext = bytes(wire[:3]), bytes(wire[3:3 + length])
            out.append((kind, bytes(cipher.decrypt_with_ad(header, ciphertext))))
            wire = wire[3 + length:]
        return out


@pytest.fixture
def raw_pair(alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig, prologue: bytes
             ) -> tuple[NoiseChannel, RawPeer]:
    """(alice's channel, bob played by :class:`RawPeer`), handshake done at ``now=0``."""
    a = NoiseChannel(make_config(alice, [bob], initiator=True), now=0.0)
    raw = RawPeer(bob, prologue)
    a.start()
    events = a.receive_data(raw.accept(bytes(a.data_to_send())), 0.0)
    assert [e.peer_did for e in events] == [bob.did.did]  # type: ignore[union-attr]
    return a, raw
