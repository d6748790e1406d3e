"""Admission: every pair of parties proves its credentials before MPyC starts.

Theory of operation
-------------------
Admission runs inside each party's Noise channels (``specs/channel.md``), after the
handshake has proven which DID is at the other end and before a single MPyC byte is
sent. On every channel both sides send, in this order (``specs/session.md`` 6):

``presentation``  a W3C verifiable presentation by the sender, holding the credentials
                  the session's policy asks for, signed for the challenge
                  :func:`challenge_for` (derived from the channel's Noise handshake hash,
                  so it cannot be replayed on another channel or in another session) and
                  the domain :func:`domain_for` (the session id).
``verdict``       whether the sender admits the receiver, and if not, why.
``ready``         the sender has admitted every party and every party has admitted it.

A party starts MPyC when it has sent ``ready`` and received ``ready`` from every peer:
then every pair has admitted each other. A refusal is final for the whole session: the
refusing party sends its verdict to the refused party and ``abort`` (with the reason) to
everyone else, the refused party and every party told so pass ``abort`` on to everyone else (once),
and a channel that opens after that gets only ``abort``, so that every party ends with a message naming the
refused party and why, whichever message reaches it first.

Messages are framed as ``u32 big-endian length || JSON`` (at most
:data:`MAX_MESSAGE` bytes). ``ready`` is the last admission message on a channel: the
bytes after it belong to MPyC, and :class:`Decoder` hands them over untouched.

:class:`Admission` is the one state machine of a party's admission, with its transitions
in one table (:data:`TRANSITIONS`); it is sans-IO. Verifying a presentation (which may
fetch a status list) is done by the caller, who reports the result with
:meth:`Admission.verified`.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mpcid.identity.compact import b64url
from mpcid.identity.errors import MpcidError
from mpcid.p2p.errors import RemoteProtocolError

from .errors import AdmissionRefused, SessionAborted, SessionError

VERSION = 1
MAX_MESSAGE = 256 * 1024
MAX_REASON = 500
_LENGTH = struct.Struct(">I")


def challenge_for(handshake_hash: bytes) -> str:
    """The presentation challenge on a channel: bound to its Noise handshake, which is
    itself bound to the session id, program hash and party list (the prologue)."""
    return "mpcid-admission/1:" + b64url(handshake_hash)


def early_challenge_for(binding: bytes) -> str:
    """The challenge of a presentation sent as early data in Noise message 1, before the
    handshake hash exists: bound to the channel's early binding (``specs/channel.md``
    4.2: session prologue, the responder's static and the initiator's ephemeral key)."""
    return "mpcid-admission-early/1:" + b64url(binding)


def domain_for(session_id: str) -> str:
    return f"mpcid:session:{session_id}"


# --- framing ---------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_MESSAGE:
        raise SessionError(f"admission message of {len(body)} bytes exceeds {MAX_MESSAGE}",
                           hint="present fewer or smaller credentials")
    return _LENGTH.pack(len(body)) + body


def presentation(vp: dict[str, Any]) -> dict[str, Any]:
    return {"t": "presentation", "v": VERSION, "vp": vp}


def verdict(admitted: bool, reason: str = "") -> dict[str, Any]:
    return {"t": "verdict", "admitted": admitted, "reason": reason[:MAX_REASON]}


READY: dict[str, Any] = {"t": "ready"}


def abort(reason: str) -> dict[str, Any]:
    return {"t": "abort", "reason": reason[:MAX_REASON]}


class Decoder:
    """Splits a channel's byte stream into admission messages, up to and including
    ``ready``; what follows is :attr:`rest`, the start of MPyC's stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.finished = False
        self.rest = bytearray()

    def has_partial(self) -> bool:
        """Whether bytes of an unfinished message are buffered."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Messages completed by ``data``; raises :class:`RemoteProtocolError`."""
        if self.finished:
            self.rest += data
            return []
        self._buffer += data
        out = []
        while len(self._buffer) >= 4:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if size > MAX_MESSAGE:
                raise RemoteProtocolError(f"admission message of {size} bytes exceeds "
                                          f"{MAX_MESSAGE}")
            if len(self._buffer) < 4 + size:
                break
            body = bytes(self._buffer[4:4 + size])
            del self._buffer[:4 + size]
            message = _parse(body)
            out.append(message)
            if message["t"] == "ready":
                self.finished = True
                self.rest += self._buffer
                self._buffer.clear()
                break
        return out


def _parse(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise RemoteProtocolError("admission message is not JSON") from None
    if not isinstance(message, dict):
        raise RemoteProtocolError("admission message is not a JSON object")
    kind = message.get("t")
    if kind == "presentation":
        if message.get("v") != VERSION:
            raise RemoteProtocolError(f"admission version {message.get('v')!r} is not "
                                      f"supported (this is version {VERSION})")
        if not isinstance(message.get("vp"), dict):
            raise RemoteProtocolError("presentation message without a presentation object")
    elif kind == "verdict":
        if not isinstance(message.get("admitted"), bool) or not isinstance(
                message.get("reason", ""), str):
            raise RemoteProtocolError("verdict message needs 'admitted' (boolean) and "
                                      "'reason' (string)")
        message["reason"] = message.get("reason", "")[:MAX_REASON]
    elif kind == "abort":
        if not isinstance(message.get("reason"), str):
            raise RemoteProtocolError("abort message needs a 'reason' string")
        message["reason"] = message["reason"][:MAX_REASON]
    elif kind != "ready":
        raise RemoteProtocolError(f"unknown admission message type {str(kind)[:40]!r}")
    return message


# --- what each party can do about a refusal ---------------------------------------------


def hint_for_the_refused(reason: str) -> str:
    """What the refused party can do, by the reason it was given (the reason comes from
    the peer: it only selects one of these texts)."""
    text = reason.lower()
    if "revoked" in text or "suspended" in text:
        return ("its issuer revoked that credential: only the issuer can say why, so ask it "
                "(and for a new credential if you should still hold one)")
    if "expired" in text or "not yet valid" in text:
        return "ask its issuer for a current credential and import it (`mpcid credential import`)"
    if "status could not be checked" in text:
        return ("the other party could not read your issuer's status list: ask the issuer "
                "to serve it at the URL in your credential")
    if "replayed" in text:
        return "join again; if this repeats, something between the parties interferes"
    if "no " in text and "credential" in text:
        return ("ask an issuer the invitation names for that credential and import it "
                "(`mpcid credential import`)")
    return ("get a credential that meets the invitation's requirement from an issuer it "
            "names, or ask the inviter about the requirement")


def hint_for_the_others(refused: str) -> str:
    """What every other party can do: nothing about the credential; only without it."""
    return (f"only {refused} can fix that (with its issuer): start a new session without it, "
            "or once it holds a valid credential")


# --- the state machine ------------------------------------------------------------------


class Mine(enum.Enum):
    """My decision about a peer."""

    AWAITING = "awaiting its presentation"
    VERIFYING = "verifying its presentation"
    ADMITTED = "admitted"
    REFUSED = "refused"


class Theirs(enum.Enum):
    """The peer's decision about me, and its readiness."""

    PENDING = "pending"
    ADMITTED_ME = "admitted me"
    REFUSED_ME = "refused me"
    READY = "ready"


_A, _V, _AD, _R = Mine.AWAITING, Mine.VERIFYING, Mine.ADMITTED, Mine.REFUSED
_P, _AM, _RM, _RD = Theirs.PENDING, Theirs.ADMITTED_ME, Theirs.REFUSED_ME, Theirs.READY

#: Every transition of one peer's pair of states: (input, mine, theirs) -> (mine, theirs).
#: Inputs from the peer: ``presentation``, ``admitted`` and ``refused`` (its verdict),
#: ``ready``; from my own verification of its presentation: ``admit``, ``refuse``. An input
#: from the peer that is missing here is a protocol violation, fatal to the session; a
#: refusal either way (REFUSED, REFUSED_ME) fails the whole session, and so does ``abort``,
#: which is about the session, not a peer. MPyC starts when every peer is (ADMITTED, READY)
#: and I have sent ``ready`` (sent once every peer is ADMITTED and has admitted me).
TRANSITIONS: dict[tuple[str, Mine, Theirs], tuple[Mine, Theirs]] = {
    ("presentation", _A, _P): (_V, _P),
    ("presentation", _A, _AM): (_V, _AM),
    ("admit", _V, _P): (_AD, _P),
    ("admit", _V, _AM): (_AD, _AM),
    ("refuse", _V, _P): (_R, _P),
    ("refuse", _V, _AM): (_R, _AM),
    ("admitted", _A, _P): (_A, _AM),
    ("admitted", _V, _P): (_V, _AM),
    ("admitted", _AD, _P): (_AD, _AM),
    ("refused", _A, _P): (_A, _RM),
    ("refused", _V, _P): (_V, _RM),
    ("refused", _AD, _P): (_AD, _RM),
    # A peer is ready only after I admitted it and it admitted me.
    ("ready", _AD, _AM): (_AD, _RD),
}


@dataclass
class PeerState:
    mine: Mine = Mine.AWAITING
    theirs: Theirs = Theirs.PENDING
    presented: Any = None
    """What the caller made of the peer's verified presentation (for the transcript)."""


@dataclass(frozen=True)
class Send:
    peer: int
    message: dict[str, Any]


@dataclass(frozen=True)
class Verify:
    """Verify this presentation of ``peer`` and report with :meth:`Admission.verified`."""

    peer: int
    vp: dict[str, Any]


@dataclass
class Admission:
    """One party's admission of its peers and by its peers."""

    me: int
    peers: tuple[int, ...]
    describe: dict[int, str] = field(default_factory=dict)
    """How to name each peer in messages (e.g. 'party 2 (did:key:...)')."""
    state: dict[int, PeerState] = field(init=False)
    sent_ready: bool = field(default=False, init=False)
    error: MpcidError | None = field(default=None, init=False)
    abort_reason: str = field(default="", init=False)
    """Once failed: why, as told in ``abort`` to the other parties (also to any whose
    channel opens later: :meth:`late_channel`)."""

    def __post_init__(self) -> None:
        self.state = {p: PeerState() for p in self.peers}

    @property
    def complete(self) -> bool:
        """Every peer is ready and so am I: MPyC may start."""
        return self.sent_ready and all(s.theirs is Theirs.READY for s in self.state.values())

    def name(self, peer: int) -> str:
        return self.describe.get(peer, f"party {peer}")

    def receive(self, peer: int, message: dict[str, Any]) -> list[Send | Verify]:
        """A message from ``peer`` (as returned by :class:`Decoder`)."""
        if self.error is not None:
            return []
        kind = message["t"]
        if kind == "abort":
            reason = message["reason"]
            self.error = SessionAborted(
                f"{self.name(peer)} stopped the session: {reason}",
                hint=hint_for_the_others("the refused party") if "refused" in reason
                else None)
            self.abort_reason = self.error.message
            # Passed on once: a party connected only to this one still learns why.
            return [Send(p, abort(self.abort_reason)) for p in self.peers if p != peer]
        peer_state = self.state[peer]
        step = kind if kind != "verdict" else ("admitted" if message["admitted"] else "refused")
        if not self._step(peer, step):
            return self._fail_protocol(peer, f"sent {kind} while I had {peer_state.mine.value}"
                                       f" and it had {peer_state.theirs.value}")
        if step == "presentation":
            return [Verify(peer, message["vp"])]
        if step == "refused":
            why = message["reason"] or "no reason given"
            self.error = AdmissionRefused(f"{self.name(peer)} refused me: {why}",
                                          hint=hint_for_the_refused(why))
            self.abort_reason = f"{self.name(peer)} refused party {self.me}: {why}"
            return [Send(p, abort(self.abort_reason)) for p in self.peers if p != peer]
        if step == "admitted":
            return self._maybe_ready()
        return []  # ready

    def verified(self, peer: int, reason: str | None, presented: Any = None
                 ) -> list[Send | Verify]:
        """The caller's verdict on ``peer``'s presentation: ``None`` admits, a reason
        refuses (and aborts the session for everyone)."""
        if self.error is not None:
            return []
        stepped = self._step(peer, "admit" if reason is None else "refuse")
        assert stepped, "verified() answers a Verify action, once"
        if reason is not None:
            self.error = AdmissionRefused(f"refused {self.name(peer)}: {reason}",
                                          hint=hint_for_the_others(self.name(peer)))
            self.abort_reason = f"party {self.me} refused {self.name(peer)}: {reason}"
            out: list[Send | Verify] = [Send(peer, verdict(False, reason))]
            out += [Send(p, abort(self.abort_reason)) for p in self.peers if p != peer]
            return out
        self.state[peer].presented = presented
        return [Send(peer, verdict(True)), *self._maybe_ready()]

    def fail(self, error: MpcidError, notify: Iterable[int] = ()) -> list[Send | Verify]:
        """Stop admission for a local reason (timeout, a lost channel); tell ``notify``."""
        if self.error is not None:
            return []
        self.error = error
        self.abort_reason = error.message
        return [Send(p, abort(error.message)) for p in notify]

    def late_channel(self, peer: int) -> list[Send | Verify]:
        """A channel to ``peer`` opened: after a failure it gets ``abort`` and nothing
        else (the parties connected at the time were told then)."""
        return [] if self.error is None else [Send(peer, abort(self.abort_reason))]

    def _step(self, peer: int, what: str) -> bool:
        """Move ``peer``'s states as :data:`TRANSITIONS` says; False if it says nothing."""
        peer_state = self.state[peer]
        after = TRANSITIONS.get((what, peer_state.mine, peer_state.theirs))
        if after is None:
            return False
        peer_state.mine, peer_state.theirs = after
        return True

    def _maybe_ready(self) -> list[Send | Verify]:
        if self.sent_ready or not all(
                s.mine is Mine.ADMITTED and s.theirs in (Theirs.ADMITTED_ME, Theirs.READY)
                for s in self.state.values()):
            return []
        self.sent_ready = True
        return [Send(p, READY) for p in self.peers]

    def _fail_protocol(self, peer: int, what: str) -> list[Send | Verify]:
        self.error = RemoteProtocolError(f"{self.name(peer)} broke the admission protocol: "
                                         f"{what}")
        self.abort_reason = self.error.message
        return [Send(p, abort(self.error.message)) for p in self.peers]
