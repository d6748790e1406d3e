"""The mpcid channel: a sans-IO Noise IK session bound to one MPC session.

Theory of operation
-------------------
Two parties of a session open a channel; the one with the lower MPyC index initiates (as
MPyC's own clients do), the other responds. Both know every party's DID from the session,
hence every party's X25519 static key (derived from its Ed25519 DID key, see
``specs/identity.md``). The handshake is ``Noise_IK_25519_ChaChaPoly_SHA256``:

    -> preamble                     (8 bytes, cleartext: "MPCIDch" + version)
    -> e, es, s, ss                 initiator proves its static key, encrypted to the responder
    <- preamble
    <- e, ee, se                    responder proves its static key

IK because the initiator knows whom it calls (the responder's static key is a premise,
so a wrong responder fails at once), while a responder accepts any of several lower-index
parties and learns which one from the encrypted ``s``, never from a cleartext claim; an
eavesdropper does not learn who connected. The Noise prologue is the session binding
(session id, program hash, ordered party DIDs, protocol version): a party of another
session, or with another party list or program, cannot complete the handshake.

After the handshake every frame is ``u16be length || type || ciphertext``, the ciphertext
being the Noise CipherState's ``EncryptWithAd(ad=length || type, body)``: the header is
authenticated without being copied into the plaintext, so bulk data is encrypted straight
from the application's buffer into the outgoing one. DATA carries application bytes, PING
keeps an idle channel provably alive, CLOSE is the authenticated end of stream (so a
truncated or killed connection is distinguishable from a finished one, like TLS
close_notify).

This module does no I/O and reads no clock: bytes go in and out, ``now`` is passed in,
and :meth:`NoiseChannel.get_timer` says when :meth:`NoiseChannel.handle_timer` is due.
All state transitions are in :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

from .errors import (ConnectionLost, HandshakeFailed, LocalProtocolError, PeerTimeout,
                     RemoteProtocolError)

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_SHA256"
VERSION = 1
MAGIC = b"MPCIDch"
PREAMBLE = MAGIC + bytes([VERSION])
PROLOGUE_LABEL = b"mpcid-channel/1"

MAX_NOISE_MESSAGE = 65535
TAG_LEN = 16
#: Largest application chunk per frame: the Noise message limit minus the tag.
MAX_CHUNK = MAX_NOISE_MESSAGE - TAG_LEN

FRAME_DATA = 0
FRAME_PING = 1
FRAME_CLOSE = 2
_LEN = struct.Struct(">H")
_HEADER = struct.Struct(">HB")  # ciphertext length, frame type
HEADER_LEN = _HEADER.size
_NONCE = struct.Struct("<4xQ")
MAX_NONCE = 2**64 - 1


class _TransportCipher:
    """A Noise CipherState for transport frames (Noise spec section 5.1) with ChaChaPoly:
    96-bit nonce = 32 zero bits || 64-bit little-endian counter. The key comes from
    noiseprotocol's completed handshake; the per-frame path is ours because it is the hot
    path of every MPC round, and because it can encrypt into a caller's buffer."""

    __slots__ = ("_aead", "_n")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._n = 0

    def _next_nonce(self) -> bytes:
        if self._n == MAX_NONCE:
            raise LocalProtocolError("the channel's nonce space is exhausted")
        nonce = _NONCE.pack(self._n)
        self._n += 1
        return nonce

    def encrypt(self, header: bytes, body: bytes | bytearray | memoryview) -> bytes:
        return self._aead.encrypt(self._next_nonce(), body, header)

    def encrypt_into(self, header: bytes, body: memoryview, out: memoryview) -> None:
        self._aead.encrypt_into(self._next_nonce(), body, header, out)

    def decrypt(self, header: bytes, ciphertext: memoryview) -> bytes:
        if self._n == MAX_NONCE:
            raise RemoteProtocolError("the peer exceeded the channel's nonce space")
        plaintext = self._aead.decrypt(_NONCE.pack(self._n), ciphertext, header)
        self._n += 1  # only after success: a forged frame must not shift the counter
        return plaintext

    def decrypt_into(self, header: bytes, ciphertext: memoryview, out: memoryview) -> None:
        if self._n == MAX_NONCE:
            raise RemoteProtocolError("the peer exceeded the channel's nonce space")
        self._aead.decrypt_into(_NONCE.pack(self._n), ciphertext, header, out)
        self._n += 1


def session_prologue(session_id: str, program_sha256: bytes, party_dids: Sequence[str]
                     ) -> bytes:
    """The Noise prologue that binds a channel to one session (``specs/channel.md`` 3)."""
    if len(program_sha256) != 32:
        raise ValueError("program_sha256 must be 32 bytes")
    out = bytearray(PROLOGUE_LABEL)
    sid = session_id.encode("utf-8")
    out += _LEN.pack(len(sid)) + sid + program_sha256 + _LEN.pack(len(party_dids))
    for did in party_dids:
        raw = did.encode("utf-8")
        out += _LEN.pack(len(raw)) + raw
    return bytes(out)


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeComplete:
    """The peer proved the static key of ``peer_did`` within this session."""

    peer_did: str
    handshake_hash: bytes


class DataReceived(NamedTuple):
    """Application bytes from the peer (a NamedTuple: immutable, and cheap on the hot
    path where a frozen dataclass costs a microsecond per message)."""

    data: bytes


@dataclass(frozen=True)
class PeerClosed:
    """The peer ended the channel with an authenticated CLOSE frame."""


Event = HandshakeComplete | DataReceived | PeerClosed


# --- configuration and state ---------------------------------------------------------------


@dataclass(frozen=True)
class ChannelConfig:
    """One side of one channel."""

    static_private: bytes
    """This party's X25519 private key (derived from its DID key)."""
    prologue: bytes
    """:func:`session_prologue` of the session; both sides must compute the same bytes."""
    initiator: bool
    """True for the dialling side (the lower MPyC index)."""
    expected_peers: Mapping[str, bytes]
    """DID -> X25519 public key of the parties allowed on the other end. The initiator
    names exactly one; a responder lists every party that may dial it."""
    keepalive_interval: float = 5.0
    """Send a PING after this many seconds without sending anything."""
    idle_timeout: float = 30.0
    """Give up when nothing at all arrived for this many seconds."""
    handshake_timeout: float = 15.0
    """Give up when the handshake is not complete after this many seconds."""


class State(enum.Enum):
    AWAIT_PREAMBLE = "await-preamble"
    AWAIT_HANDSHAKE = "await-handshake"
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


#: (state, input) -> next state. Inputs: "preamble", "handshake", "data", "ping", "close"
#: from the peer; "send", "local-close" from us. Anything missing is a protocol error.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAIT_PREAMBLE, "preamble"): State.AWAIT_HANDSHAKE,
    (State.AWAIT_HANDSHAKE, "handshake"): State.OPEN,
    (State.OPEN, "data"): State.OPEN,
    (State.OPEN, "ping"): State.OPEN,
    (State.OPEN, "send"): State.OPEN,
    (State.OPEN, "close"): State.CLOSED,
    (State.OPEN, "local-close"): State.CLOSED,
    (State.AWAIT_PREAMBLE, "local-close"): State.CLOSED,
    (State.AWAIT_HANDSHAKE, "local-close"): State.CLOSED,
    # After we closed, frames already in flight are discarded (the peer will see our CLOSE).
    (State.CLOSED, "data"): State.CLOSED,
    (State.CLOSED, "ping"): State.CLOSED,
    (State.CLOSED, "close"): State.CLOSED,
    (State.CLOSED, "local-close"): State.CLOSED,
}


class NoiseChannel:
    """A sans-IO channel: feed :meth:`receive_data`, send what the methods return."""

    def __init__(self, config: ChannelConfig, now: float, *,
                 ephemeral_private: bytes | None = None) -> None:
        """``ephemeral_private`` fixes the ephemeral key: for test vectors only, never in
        real use (a reused ephemeral key destroys forward secrecy)."""
        if config.initiator and len(config.expected_peers) != 1:
            raise LocalProtocolError("an initiator expects exactly one peer")
        if not config.expected_peers:
            raise LocalProtocolError("a channel needs at least one acceptable peer")
        self.config = config
        self.state = State.AWAIT_PREAMBLE
        self.peer_did: str | None = None
        self._start_called = False
        self._peer_closed = False
        self._buffer = bytearray()
        self._started = now
        self._last_received = now
        self._last_sent = now
        self._noise = NoiseConnection.from_name(PROTOCOL_NAME)
        self._noise.set_prologue(config.prologue)
        self._noise.set_keypair_from_private_bytes(Keypair.STATIC, config.static_private)
        if config.initiator:
            self._noise.set_as_initiator()
            (self.peer_did, remote), = config.expected_peers.items()
            self._noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote)
        else:
            self._noise.set_as_responder()
            self._by_key = {key: did for did, key in config.expected_peers.items()}
        if ephemeral_private is not None:
            self._noise.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private)
        self._noise.start_handshake()
        self._encrypt: _TransportCipher | None = None
        self._decrypt: _TransportCipher | None = None

    # -- outgoing --------------------------------------------------------------------------

    def start(self) -> bytes:
        """The first bytes to send: the preamble, and for the initiator its handshake."""
        if self._start_called:
            raise LocalProtocolError("start() is called once, first")
        self._start_called = True
        out = PREAMBLE
        if self.config.initiator:
            out += self._frame_handshake(bytes(self._noise.write_message(b"")))
        return out

    def send(self, data: bytes | bytearray | memoryview, now: float) -> bytes | bytearray:
        """Encrypt application data into one or more frames."""
        if self.state is not State.OPEN:
            self._step("send")  # raises: the table allows "send" only when OPEN
        if type(data) is not bytes:
            data = memoryview(data).cast("B")  # count bytes, not items
        size = len(data)
        if not size:
            return b""
        self._last_sent = now
        cipher = self._encrypt
        assert cipher is not None
        if size <= MAX_CHUNK:  # the common case: one frame
            header = _HEADER.pack(size + TAG_LEN, FRAME_DATA)
            return header + cipher.encrypt(header, data)
        # Bulk: encrypt each chunk straight into its place in one output buffer.
        frames = -(-size // MAX_CHUNK)
        out = bytearray(size + frames * (HEADER_LEN + TAG_LEN))
        source, target = memoryview(data).cast("B"), memoryview(out)
        at = 0
        for offset in range(0, size, MAX_CHUNK):
            body = source[offset:offset + MAX_CHUNK]
            header = _HEADER.pack(len(body) + TAG_LEN, FRAME_DATA)
            target[at:at + HEADER_LEN] = header
            at += HEADER_LEN
            cipher.encrypt_into(header, body, target[at:at + len(body) + TAG_LEN])
            at += len(body) + TAG_LEN
        return out

    def close(self, now: float) -> bytes:
        """End the channel; returns the CLOSE frame if the channel was open."""
        was_open = self.state is State.OPEN
        self._step("local-close")
        self._last_sent = now
        return self._seal(FRAME_CLOSE, b"") if was_open else b""

    # -- incoming --------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Process bytes from the peer; raise a :class:`ProtocolError` subclass if they
        break the protocol (the channel is then unusable)."""
        if self.state is State.FAILED:
            raise LocalProtocolError("the channel has failed")
        if self._peer_closed or (self.state is State.CLOSED and self._decrypt is None):
            # Nothing follows the peer's CLOSE; and a channel we closed during the handshake
            # has no keys: whatever is still in flight is discarded.
            return []
        self._last_received = now
        events: list[Event] = []
        try:
            if self.state is State.AWAIT_PREAMBLE or self.state is State.AWAIT_HANDSHAKE:
                data = self._receive_handshake(data, events)
            if data:
                self._receive_transport(data, events)
        except Exception:
            self.state = State.FAILED
            raise
        return events

    def _receive_handshake(self, data: bytes, events: list[Event]) -> bytes:
        """Consume the preamble and the handshake message; return the bytes after them."""
        self._buffer += data
        data = b""
        if self.state is State.AWAIT_PREAMBLE and not self._read_preamble():
            return b""
        if len(self._buffer) < 2:
            return b""
        (length,) = _LEN.unpack_from(self._buffer)
        if length < TAG_LEN:
            raise RemoteProtocolError(f"handshake message of {length} bytes is too short")
        if len(self._buffer) < 2 + length:
            return b""
        message = bytes(self._buffer[2:2 + length])
        rest = bytes(self._buffer[2 + length:])
        self._buffer.clear()
        events.append(self._read_handshake(message))
        return rest

    def _receive_transport(self, data: bytes, events: list[Event]) -> None:
        """Transport frames. Bytes are copied only to complete a frame that straddles two
        reads; everything else is opened where it lies."""
        view = memoryview(data)
        bodies: list[bytes] = []
        if self._buffer:
            pending = self._buffer
            if len(pending) < HEADER_LEN:
                take = HEADER_LEN - len(pending)
                pending += view[:take]
                view = view[take:]
                if len(pending) < HEADER_LEN:
                    return
            frame_end = HEADER_LEN + ((pending[0] << 8) | pending[1])
            take = frame_end - len(pending)
            pending += view[:take]
            view = view[take:]
            if len(pending) < frame_end:
                if (pending[0] << 8 | pending[1]) < TAG_LEN:
                    self._frames(memoryview(pending), bodies, events)  # raises "too short"
                return
            self._buffer = bytearray()
            if self._frames(memoryview(pending), bodies, events):
                return
        if len(view):
            self._frames(view, bodies, events)
        if len(bodies) == 1:
            events.append(DataReceived(bodies[0]))
        elif bodies:
            # Small bodies are joined (fewer calls into the application); large ones are
            # handed over as they are, since joining would copy every byte once more.
            if sum(map(len, bodies)) <= MAX_CHUNK:
                events.append(DataReceived(b"".join(bodies)))
            else:
                events.extend(DataReceived(body) for body in bodies)

    def _frames(self, view: memoryview, bodies: list[bytes], events: list[Event]) -> bool:
        """Open the whole frames in ``view`` (keeping a trailing partial one), collecting
        DATA bodies; return True after the peer's CLOSE. Inline equivalents of the table's
        (OPEN|CLOSED, data|ping|close) entries."""
        cipher = self._decrypt
        assert cipher is not None
        end = len(view)
        pos = 0
        try:
            while end - pos >= HEADER_LEN:
                length, kind = _HEADER.unpack_from(view, pos)
                if length < TAG_LEN:
                    raise RemoteProtocolError(f"frame of {length} bytes from {self._who()} "
                                              "is too short")
                stop = pos + HEADER_LEN + length
                if stop > end:
                    break
                header = bytes(view[pos:pos + HEADER_LEN])
                ciphertext = view[pos + HEADER_LEN:stop]
                pos = stop
                if kind == FRAME_DATA:
                    body = cipher.decrypt(header, ciphertext)
                    if self.state is State.OPEN and body:
                        bodies.append(body)
                elif kind == FRAME_PING:
                    if cipher.decrypt(header, ciphertext):
                        raise RemoteProtocolError(f"PING frame with a body from {self._who()}")
                elif kind == FRAME_CLOSE:
                    if cipher.decrypt(header, ciphertext):
                        raise RemoteProtocolError(f"CLOSE frame with a body from {self._who()}")
                    was_open = self.state is State.OPEN
                    self._step("close")
                    self._peer_closed = True
                    if bodies:
                        events.append(DataReceived(b"".join(bodies)))
                        bodies.clear()
                    if was_open:
                        events.append(PeerClosed())
                    return True  # nothing follows a CLOSE
                else:
                    raise RemoteProtocolError(f"unknown frame type {kind} from {self._who()}")
        except InvalidTag:
            raise RemoteProtocolError(f"corrupted frame from {self._who()}: it failed "
                                      "authentication") from None
        if pos < end:
            self._buffer += view[pos:]
        return False

    def connection_lost(self) -> None:
        """The underlying stream ended. Raise unless the channel ended properly."""
        if self.state is State.CLOSED:
            return
        handshaking = self.state in (State.AWAIT_PREAMBLE, State.AWAIT_HANDSHAKE)
        self.state = State.FAILED
        if handshaking:
            raise HandshakeFailed(f"{self._who()} hung up during the handshake: it is not that "
                                  "party, or it joined another session")
        raise ConnectionLost(self._who() + " closed the connection without ending the channel")

    # -- timers ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: no timer while closed)."""
        if self.state in (State.AWAIT_PREAMBLE, State.AWAIT_HANDSHAKE):
            return self._started + self.config.handshake_timeout
        if self.state is State.OPEN:
            return min(self._last_sent + self.config.keepalive_interval,
                       self._last_received + self.config.idle_timeout)
        return None

    def handle_timer(self, now: float) -> bytes:
        """Raise on timeout; return a PING frame when one is due, else b""."""
        if self.state in (State.AWAIT_PREAMBLE, State.AWAIT_HANDSHAKE):
            if now >= self._started + self.config.handshake_timeout:
                self.state = State.FAILED
                raise HandshakeFailed(f"{self._who()} did not complete the handshake within "
                                      f"{self.config.handshake_timeout:g} s")
            return b""
        if self.state is not State.OPEN:
            return b""
        if now >= self._last_received + self.config.idle_timeout:
            self.state = State.FAILED
            raise PeerTimeout(f"nothing received from {self._who()} for "
                              f"{now - self._last_received:.0f} s")
        if now >= self._last_sent + self.config.keepalive_interval:
            self._last_sent = now
            return self._seal(FRAME_PING, b"")
        return b""

    @property
    def handshake_hash(self) -> bytes:
        return bytes(self._noise.get_handshake_hash())

    # -- internals -------------------------------------------------------------------------

    def _step(self, what: str) -> None:
        try:
            self.state = TRANSITIONS[(self.state, what)]
        except KeyError:
            previous = self.state
            if what in ("send", "local-close"):
                raise LocalProtocolError(f"cannot {what} in state {previous.value}") from None
            self.state = State.FAILED
            raise RemoteProtocolError(f"{self._who()} sent {what} in state "
                                      f"{previous.value}") from None

    def _read_preamble(self) -> bool:
        if len(self._buffer) < len(PREAMBLE):
            if not PREAMBLE.startswith(bytes(self._buffer)[:len(MAGIC)][:len(self._buffer)]):
                raise RemoteProtocolError(f"{self._who()} does not speak the mpcid channel "
                                          "protocol")
            return False
        got = bytes(self._buffer[:len(PREAMBLE)])
        if got[:len(MAGIC)] != MAGIC:
            raise RemoteProtocolError(f"{self._who()} does not speak the mpcid channel protocol")
        if got[len(MAGIC)] != VERSION:
            raise RemoteProtocolError(f"{self._who()} speaks channel version {got[len(MAGIC)]}, "
                                      f"we speak {VERSION}", hint="upgrade mpcid on both sides")
        del self._buffer[:len(PREAMBLE)]
        self._step("preamble")
        return True

    def _read_handshake(self, message: bytes) -> HandshakeComplete:
        try:
            self._noise.read_message(message)
        except Exception as exc:  # noise's errors and cryptography's InvalidTag alike
            self.state = State.FAILED
            raise HandshakeFailed(self._handshake_failure()) from exc
        out = b""
        if not self.config.initiator:
            remote = bytes(self._noise.noise_protocol.handshake_state.rs.public_bytes)
            did = self._by_key.get(remote)
            if did is None:
                self.state = State.FAILED
                raise HandshakeFailed(
                    "a party not expected here tried to connect (its key belongs to none of: "
                    f"{', '.join(self.config.expected_peers)})")
            self.peer_did = did
            out = self._frame_handshake(bytes(self._noise.write_message(b"")))
        if not self._noise.handshake_finished:
            raise HandshakeFailed(self._handshake_failure())
        self._step("handshake")
        state = self._noise.noise_protocol
        self._encrypt = _TransportCipher(bytes(state.cipher_state_encrypt.k))
        self._decrypt = _TransportCipher(bytes(state.cipher_state_decrypt.k))
        self._pending_handshake_reply = out
        assert self.peer_did is not None
        return HandshakeComplete(self.peer_did, self.handshake_hash)

    def take_handshake_reply(self) -> bytes:
        """The responder's handshake answer, to send right after :class:`HandshakeComplete`."""
        out, self._pending_handshake_reply = getattr(self, "_pending_handshake_reply", b""), b""
        return out

    def _handshake_failure(self) -> str:
        if self.config.initiator:
            return (f"the peer did not prove it is {self.peer_did} in this session "
                    "(wrong key, or another session)")
        return ("a peer failed the handshake: it is not one of "
                f"{', '.join(self.config.expected_peers)} in this session "
                "(wrong key, or another session)")

    def _frame_handshake(self, message: bytes) -> bytes:
        return _LEN.pack(len(message)) + message

    def _seal(self, kind: int, body: bytes) -> bytes:
        assert self._encrypt is not None
        header = _HEADER.pack(len(body) + TAG_LEN, kind)
        return header + self._encrypt.encrypt(header, body)

    def _who(self) -> str:
        return self.peer_did or "the peer"


def establish_pair(a: NoiseChannel, b: NoiseChannel, now: float = 0.0
                   ) -> tuple[list[Event], list[Event]]:
    """Drive two in-memory channels through their handshake (tests and benchmarks)."""
    to_b = a.start()
    to_a = b.start()
    events_b = b.receive_data(to_b, now)
    to_a += b.take_handshake_reply()
    events_a = a.receive_data(to_a, now)
    return events_a, events_b
