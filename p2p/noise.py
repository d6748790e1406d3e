"""The mpcid channel: a sans-IO Noise IK session bound to one MPC session.

Theory of operation
-------------------
Two parties of a session open a channel; the one with the lower MPyC index initiates (as
MPyC's own clients do), the other responds. Both know every party's DID from the session,
hence every party's X25519 static key (derived from its Ed25519 DID key, see
``specs/identity.md``). The handshake is ``Noise_IK_25519_ChaChaPoly_SHA256``:

    -> preamble                     (8 bytes, cleartext: "MPCIDch" + version)
    -> e, es, s, ss [early data]    initiator proves its static key, encrypted to the responder
    <- preamble
    <- e, ee, se                    responder proves its static key

IK because the initiator knows whom it calls (the responder's static key is a premise,
so a wrong responder fails at once), while a responder accepts any of several lower-index
parties and learns which one from the encrypted ``s``, never from a cleartext claim; an
eavesdropper does not learn who connected. The Noise prologue is the session binding
(session id, program hash, ordered party DIDs, protocol version): a party of another
session, or with another party list or program, cannot complete the handshake.

Message 1 may carry the initiator's *early data* (``ChannelConfig.early_data``): bytes the
application makes for the channel's :func:`early_binding` before the handshake, so that
they reach the responder half a round trip sooner than the first transport frame could
(mpcid sends the dialler's admission presentation there, ``specs/channel.md`` 4.2). A
responder takes early data only if its application expects it, refuses a message 1 whose
ephemeral key it has seen before (``ChannelConfig.replay_guard``: a replayed message 1
would make it act on the same early data again), and hands it over with
:class:`HandshakeComplete`.

After the handshake every frame is ``u16be length || type || ciphertext``, the ciphertext
being the Noise CipherState's ``EncryptWithAd(ad=length || type, body)``: the header is
authenticated without being copied into the plaintext, so bulk data is encrypted straight
from the application's buffer into the outgoing one. DATA carries application bytes, PING
keeps an idle channel provably alive, CLOSE is the authenticated end of stream (so a
truncated or killed connection is distinguishable from a finished one, like TLS
close_notify).

States
------
Every change of :attr:`NoiseChannel.state`, failures included, is an entry of
:data:`TRANSITIONS` and happens in one method (``_step``); ``specs/diagrams/noise.md``
draws the table. The ways through are::

    await-preamble --preamble--> await-handshake --handshake--> open
    open --close--> closed                              the peer ended the channel
    open --local-close--> closing --close--> closed     we did (crossing CLOSEs alike)

``closing`` is "we sent CLOSE": the peer's frames still in flight are authenticated and
discarded until its CLOSE arrives (or the stream ends, which is then no failure).
``closed`` is "finished": nothing more is read, and a ``send`` is dropped rather than
refused, because an application answering the peer's last message cannot know that the
peer's CLOSE arrived in the same read. A close before the handshake completed goes
straight to ``closed``: there are no keys to read the peer's frames with. ``failed`` is
final; the peer's bad bytes ("peer-error"), a timeout and a stream that ends too early
("connection-lost") lead there, and the method that saw it raises the error.

Output
------
Bytes leave by one path, as in aioquic: every method that produces some (``start``,
``send``, ``close``, ``receive_data`` for the responder's handshake reply,
``handle_timer`` for a PING) queues them, and :meth:`NoiseChannel.data_to_send` hands
over everything queued, in order. The caller writes that after each call. A lone frame
or bulk buffer is handed over as it is, without a copy.

This module does no I/O and reads no clock: bytes go in and out, ``now`` is passed in,
and :meth:`NoiseChannel.get_timer` says when :meth:`NoiseChannel.handle_timer` is due.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

from .early_data import MAX_EARLY_DATA, ReplayGuard, early_binding
from .errors import (ConnectionLost, HandshakeFailed, LocalProtocolError, PeerTimeout,
                     RemoteProtocolError)

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_SHA256"
VERSION = 2
MAGIC = b"MPCIDch"
PREAMBLE = MAGIC + bytes([VERSION])
PROLOGUE_LABEL = b"mpcid-channel/2"

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
    96-bit nonce = 32 zero bits || 64-bit little-endian counter ``n``. The key comes from
    noiseprotocol's completed handshake; the per-frame path is ours because it is the hot
    path of every MPC round, and because it can encrypt into a caller's buffer.

    Decryption is :meth:`NoiseChannel._frames`, the receiving loop, which uses ``aead``
    and ``n`` itself: the counter moves only after a frame authenticated (a forged frame
    must not shift it), and a peer whose counter would reach 2^64 - 1 fails the channel."""

    __slots__ = ("aead", "n")

    def __init__(self, key: bytes) -> None:
        self.aead = ChaCha20Poly1305(key)
        self.n = 0

    def _next_nonce(self) -> bytes:
        n = self.n
        if n == MAX_NONCE:
            raise LocalProtocolError("the channel's nonce space is exhausted")
        self.n = n + 1
        return _NONCE.pack(n)

    def encrypt(self, header: bytes, body: bytes | bytearray | memoryview) -> bytes:
        n = self.n  # _next_nonce, inlined: this is the sending hot path
        if n == MAX_NONCE:
            raise LocalProtocolError("the channel's nonce space is exhausted")
        self.n = n + 1
        return self.aead.encrypt(_NONCE.pack(n), body, header)

    def encrypt_into(self, header: bytes, body: memoryview, out: memoryview) -> None:
        self.aead.encrypt_into(self._next_nonce(), body, header, out)


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
    early_data: bytes = b""
    """Responder: the initiator's early data from message 1 (``b""`` if none)."""
    early_binding: bytes = b""
    """The :func:`early_binding` early data was made for (both sides; ``b""`` where the
    initiator sent none)."""


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
    early_data: Callable[[bytes], bytes] | None = None
    """Initiator: called once, before message 1, with the channel's :func:`early_binding`;
    what it returns (at most :data:`MAX_EARLY_DATA` bytes; ``b""`` for none) travels in
    message 1's payload."""
    accept_early_data: bool = False
    """Responder: whether the application takes early data; if not, a message 1 that
    carries some is refused."""
    replay_guard: ReplayGuard | None = None
    """Responder: shared by a session's channels, refuses a replayed message 1."""


class State(enum.Enum):
    """Where a channel is; :data:`TRANSITIONS` says how it moves (module docstring)."""

    AWAIT_PREAMBLE = "await-preamble"
    AWAIT_HANDSHAKE = "await-handshake"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


#: Inputs from the peer's bytes. A missing transition for one of these is the peer's
#: protocol error (:class:`RemoteProtocolError`, after which receive_data takes
#: "peer-error"); for any other input it is the caller's (:class:`LocalProtocolError`,
#: and the state stays as it was).
PEER_INPUTS = frozenset({"preamble", "handshake", "data", "ping", "close"})

_HANDSHAKING = (State.AWAIT_PREAMBLE, State.AWAIT_HANDSHAKE)

#: (state, input) -> next state: every state change of a channel. Inputs: the peer's
#: "preamble", "handshake" and transport frames "data", "ping", "close" (PEER_INPUTS);
#: "peer-error" (its bytes broke the protocol: wrong magic or version, a failed
#: handshake, a corrupted, malformed or unknown frame); the application's "send" and
#: "local-close"; the clock's "keepalive" (a PING is due) and "timeout"; the stream's
#: "connection-lost". The comments name what a transition emits or raises.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAIT_PREAMBLE, "preamble"): State.AWAIT_HANDSHAKE,
    (State.AWAIT_HANDSHAKE, "handshake"): State.OPEN,  # HandshakeComplete; responder replies
    # Closed before the handshake completed: no keys, so no CLOSE frame, and the peer's
    # bytes in flight cannot be read; they are discarded.
    (State.AWAIT_PREAMBLE, "local-close"): State.CLOSED,
    (State.AWAIT_HANDSHAKE, "local-close"): State.CLOSED,
    (State.AWAIT_PREAMBLE, "peer-error"): State.FAILED,  # RemoteProtocolError, HandshakeFailed
    (State.AWAIT_HANDSHAKE, "peer-error"): State.FAILED,
    (State.AWAIT_PREAMBLE, "timeout"): State.FAILED,  # HandshakeFailed ("within N s")
    (State.AWAIT_HANDSHAKE, "timeout"): State.FAILED,
    (State.AWAIT_PREAMBLE, "connection-lost"): State.FAILED,  # HandshakeFailed ("hung up")
    (State.AWAIT_HANDSHAKE, "connection-lost"): State.FAILED,
    (State.OPEN, "data"): State.OPEN,  # DataReceived
    (State.OPEN, "ping"): State.OPEN,
    (State.OPEN, "send"): State.OPEN,  # DATA frames
    (State.OPEN, "keepalive"): State.OPEN,  # a PING frame
    (State.OPEN, "close"): State.CLOSED,  # PeerClosed; nothing after the CLOSE is read
    (State.OPEN, "local-close"): State.CLOSING,  # our CLOSE frame
    (State.OPEN, "peer-error"): State.FAILED,  # RemoteProtocolError
    (State.OPEN, "timeout"): State.FAILED,  # PeerTimeout
    (State.OPEN, "connection-lost"): State.FAILED,  # ConnectionLost: the stream ended, no CLOSE
    # We sent CLOSE: frames already in flight are authenticated, then discarded (the peer
    # will see our CLOSE). No timer runs.
    (State.CLOSING, "data"): State.CLOSING,
    (State.CLOSING, "ping"): State.CLOSING,
    (State.CLOSING, "close"): State.CLOSED,  # crossing CLOSEs: no event
    (State.CLOSING, "local-close"): State.CLOSING,
    (State.CLOSING, "peer-error"): State.FAILED,
    (State.CLOSING, "connection-lost"): State.CLOSED,  # we ended the channel: no failure
    # Finished: nothing is read, sent or timed any more. A send is dropped, not refused:
    # the application may be answering the peer's last message, which arrived in the same
    # read as its CLOSE.
    (State.CLOSED, "send"): State.CLOSED,
    (State.CLOSED, "local-close"): State.CLOSED,
    (State.CLOSED, "connection-lost"): State.CLOSED,
    # Failed is final. The stream ending afterwards still raises ConnectionLost.
    (State.FAILED, "connection-lost"): State.FAILED,
}


class NoiseChannel:
    """A sans-IO channel: feed :meth:`receive_data`, write what :meth:`data_to_send`
    returns after every call."""

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
        self._buffer = bytearray()
        # Queued output, drained by data_to_send(). A list, so that a bulk buffer is
        # handed over as it is rather than copied into a growing one.
        self._out: list[bytes | bytearray] = []
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
        self._early_binding = b""
        #: Initiator: whether message 1 carried early data.
        self.early_data_sent = False
        self._encrypt: _TransportCipher | None = None
        self._decrypt: _TransportCipher | None = None

    # -- outgoing --------------------------------------------------------------------------

    def data_to_send(self) -> bytes | bytearray:
        """Everything queued since the last call, in order; ``b""`` if nothing is."""
        out = self._out
        if len(out) == 1:
            return out.pop()  # the common case: one frame, or one bulk buffer, uncopied
        if not out:
            return b""
        data = b"".join(out)  # e.g. preamble and handshake reply: small
        out.clear()
        return data

    def start(self) -> None:
        """Queue the first bytes: the preamble, and for the initiator its handshake."""
        if self._start_called:
            raise LocalProtocolError("start() is called once, first")
        self._start_called = True
        out = PREAMBLE
        if self.config.initiator:
            out += self._frame_handshake(bytes(self._noise.write_message(self._early())))
        self._out.append(out)

    def _early(self) -> bytes:
        """The initiator's early data for message 1 (``b""`` without any)."""
        make = self.config.early_data
        if make is None:
            return b""
        state = self._noise.noise_protocol.handshake_state
        if not hasattr(state.e, "public_bytes"):  # not chosen yet (noise's Empty)
            # Chosen now rather than inside write_message, since the binding needs it.
            state.e = self._noise.noise_protocol.dh_fn.generate_keypair()
        binding = early_binding(self.config.prologue, bytes(state.rs.public_bytes),
                                bytes(state.e.public_bytes))
        data = make(binding)
        if len(data) > MAX_EARLY_DATA:
            raise LocalProtocolError(f"early data of {len(data)} bytes is over the limit of "
                                     f"{MAX_EARLY_DATA}")
        if data:
            self._early_binding = binding
            self.early_data_sent = True
        return bytes(data)

    def send(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Encrypt application data into one or more DATA frames and queue them."""
        if self.state is not State.OPEN:
            # The table decides: an error, except after the peer's CLOSE (CLOSED), where
            # the data is dropped.
            self._step("send")
            return
        if type(data) is not bytes:
            data = memoryview(data).cast("B")  # count bytes, not items
        size = len(data)
        if not size:
            return
        self._last_sent = now
        cipher = self._encrypt
        assert cipher is not None
        if size <= MAX_CHUNK:  # the common case: one frame
            header = _HEADER.pack(size + TAG_LEN, FRAME_DATA)
            self._out.append(header + cipher.encrypt(header, data))
            return
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
        self._out.append(out)

    def close(self, now: float) -> None:
        """End the channel; queue the CLOSE frame if the channel was open."""
        was_open = self.state is State.OPEN
        self._step("local-close")
        self._last_sent = now
        if was_open:
            self._out.append(self._seal(FRAME_CLOSE, b""))

    # -- incoming --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray, now: float) -> list[Event]:
        """Process bytes from the peer; raise a :class:`ProtocolError` subclass if they
        break the protocol (the channel is then unusable). Nothing of ``data`` is kept
        after the call, so a caller may reuse its buffer."""
        state = self.state
        events: list[Event] = []
        if state is State.OPEN or state is State.CLOSING:
            self._last_received = now
            try:
                if self._buffer:
                    self._receive_transport(data, events)
                else:  # the common case: the read starts with a frame
                    self._frames(memoryview(data), events)
            except Exception:
                self._step("peer-error")
                raise
            return events
        if state is State.FAILED:
            raise LocalProtocolError("the channel has failed")
        if state is State.CLOSED:
            return events  # finished: whatever is still in flight is discarded unread
        self._last_received = now
        try:
            data = self._receive_handshake(data, events)
            if data:
                self._receive_transport(data, events)
        except Exception:
            self._step("peer-error")
            raise
        return events

    def _receive_handshake(self, data: bytes | bytearray, events: list[Event]) -> bytes:
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

    def _receive_transport(self, data: bytes | bytearray, events: list[Event]) -> None:
        """Transport frames after a partial one kept from the last read: that frame is
        completed (the only bytes ever copied), then the rest is opened where it lies."""
        view = memoryview(data)
        pending = self._buffer
        if pending:
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
                    self._frames(memoryview(pending), events)  # raises "too short"
                return
            self._buffer = bytearray()
            if self._frames(memoryview(pending), events):
                return
        if len(view):
            self._frames(view, events)

    def _frames(self, view: memoryview, events: list[Event]) -> bool:
        """Open the whole frames in ``view``, keep a trailing partial one, and add their
        DATA to ``events``; return True after the peer's CLOSE. This loop is the
        receiving hot path: the (open|closing, data|ping) entries of the table leave the
        state as it is, so they are not looked up per frame; the CipherState's decryption
        is inlined; header and ciphertext are opened where they lie, as views."""
        cipher = self._decrypt
        assert cipher is not None
        aead = cipher.aead
        deliver = self.state is State.OPEN  # closing: authenticated, then discarded
        bodies: list[bytes] = []
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
                if kind > FRAME_CLOSE:
                    raise RemoteProtocolError(f"unknown frame type {kind} from {self._who()}")
                n = cipher.n
                if n == MAX_NONCE:
                    raise RemoteProtocolError("the peer exceeded the channel's nonce space")
                body = aead.decrypt(_NONCE.pack(n), view[pos + HEADER_LEN:stop],
                                    view[pos:pos + HEADER_LEN])
                cipher.n = n + 1  # only after success: a forged frame must not shift it
                pos = stop
                if kind == FRAME_DATA:
                    if body and deliver:
                        bodies.append(body)
                elif body:
                    name = "PING" if kind == FRAME_PING else "CLOSE"
                    raise RemoteProtocolError(f"{name} frame with a body from {self._who()}")
                elif kind == FRAME_CLOSE:
                    self._step("close")
                    if bodies:
                        events.append(DataReceived(b"".join(bodies)))
                    if deliver:
                        events.append(PeerClosed())
                    return True  # nothing follows a CLOSE
        except InvalidTag:
            raise RemoteProtocolError(f"corrupted frame from {self._who()}: it failed "
                                      "authentication") from None
        if pos < end:
            self._buffer += view[pos:]
        if bodies:
            if len(bodies) == 1:
                events.append(DataReceived(bodies[0]))
            elif sum(map(len, bodies)) <= MAX_CHUNK:
                # Small bodies are joined (one call into the application); large ones are
                # handed over as they are, since joining would copy every byte once more.
                events.append(DataReceived(b"".join(bodies)))
            else:
                events.extend(DataReceived(body) for body in bodies)
        return False

    def connection_lost(self) -> None:
        """The underlying stream ended. Raise unless the channel ended properly."""
        before = self.state
        self._step("connection-lost")
        if self.state is not State.FAILED:
            return
        if before in _HANDSHAKING:
            raise HandshakeFailed(f"{self._who()} hung up during the handshake: it is not that "
                                  "party, or it joined another session")
        raise ConnectionLost(self._who() + " closed the connection without ending the channel")

    # -- timers ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: no timer, once closing).

        During the handshake the deadline is fixed, and while open it only moves later as
        traffic flows; it moves earlier only when the handshake completes. An adapter may
        rely on that to keep one pending timer (``channel.py`` does)."""
        state = self.state
        if state is State.OPEN:
            return min(self._last_sent + self.config.keepalive_interval,
                       self._last_received + self.config.idle_timeout)
        if state in _HANDSHAKING:
            return self._started + self.config.handshake_timeout
        return None

    def handle_timer(self, now: float) -> None:
        """Raise on timeout; queue a PING frame when one is due."""
        state = self.state
        if state in _HANDSHAKING:
            if now >= self._started + self.config.handshake_timeout:
                self._step("timeout")
                raise HandshakeFailed(f"{self._who()} did not complete the handshake within "
                                      f"{self.config.handshake_timeout:g} s")
        elif state is State.OPEN:
            if now >= self._last_received + self.config.idle_timeout:
                self._step("timeout")
                raise PeerTimeout(f"nothing received from {self._who()} for "
                                  f"{now - self._last_received:.0f} s")
            if now >= self._last_sent + self.config.keepalive_interval:
                self._step("keepalive")
                self._last_sent = now
                self._out.append(self._seal(FRAME_PING, b""))

    @property
    def handshake_hash(self) -> bytes:
        return bytes(self._noise.get_handshake_hash())

    # -- internals -------------------------------------------------------------------------

    def _step(self, what: str) -> None:
        """Take the transition ``(state, what)``: the one place where the state changes."""
        try:
            self.state = TRANSITIONS[(self.state, what)]
        except KeyError:
            if what in PEER_INPUTS:  # receive_data then fails the channel ("peer-error")
                raise RemoteProtocolError(f"{self._who()} sent {what} in state "
                                          f"{self.state.value}") from None
            raise LocalProtocolError(f"cannot {what} in state {self.state.value}") from None

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
        """Read the peer's handshake message (the responder also writes its reply); a
        failure raises, and receive_data fails the channel."""
        try:
            payload = bytes(self._noise.read_message(message))
        except Exception as exc:  # noise's errors and cryptography's InvalidTag alike
            raise HandshakeFailed(self._handshake_failure()) from exc
        reply = b""
        early = b""
        if self.config.initiator:
            if payload:
                raise RemoteProtocolError(f"{self._who()} sent a payload in handshake "
                                          "message 2, which must be empty")
        else:
            state = self._noise.noise_protocol.handshake_state
            remote = bytes(state.rs.public_bytes)
            did = self._by_key.get(remote)
            if did is None:
                raise HandshakeFailed(
                    "a party not expected here tried to connect (its key belongs to none of: "
                    f"{', '.join(self.config.expected_peers)})")
            self.peer_did = did
            ephemeral = bytes(state.re.public_bytes)
            guard = self.config.replay_guard
            if guard is not None and not guard.first_time(ephemeral):
                raise HandshakeFailed(f"{did} sent a handshake message seen before (replayed)")
            if payload:
                if not self.config.accept_early_data:
                    raise RemoteProtocolError(f"{did} sent early data in handshake message 1, "
                                              "which this channel does not take")
                early = payload
                self._early_binding = early_binding(self.config.prologue,
                                                    bytes(state.s.public_bytes), ephemeral)
            reply = self._frame_handshake(bytes(self._noise.write_message(b"")))
        if not self._noise.handshake_finished:
            raise HandshakeFailed(self._handshake_failure())
        self._step("handshake")
        state = self._noise.noise_protocol
        self._encrypt = _TransportCipher(bytes(state.cipher_state_encrypt.k))
        self._decrypt = _TransportCipher(bytes(state.cipher_state_decrypt.k))
        if reply:  # queued only once the handshake is complete: a failure sends nothing
            self._out.append(reply)
        assert self.peer_did is not None
        return HandshakeComplete(self.peer_did, self.handshake_hash, early,
                                 self._early_binding)

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
