"""Signed session transcripts: one party's own account of a session it took part in.

Theory of operation
-------------------
When a party leaves a session, whether the computation completed, failed, or never began,
it records what it saw: which invitation (by SHA-256) and program it ran, which parties it
admitted and which credentials each of them presented (and it verified), when MPyC started
and the session ended, and how it ended. It signs that record with its own DID key.

A transcript is a *statement by its signer*, not a consensus: it proves that the holder of
``signer``'s key claimed these facts, nothing more. Other parties may sign different
transcripts of the same session; comparing them is up to whoever collects them.

The encoding follows the invitation's (:mod:`mpcid.broker.invitation`): canonical JSON
(RFC 8785, JCS) of the whole object, ``"sig"`` included; the Ed25519 signature covers
``DOMAIN || JCS(object without "sig")``. Times are integer Unix *milliseconds*
(``started_ms``, ``ended_ms``): JCS serialises floats with ECMAScript's number-to-string
algorithm, which Python's ``repr`` does not always match, and integers sidestep that trap
(and the strict reader refuses every non-integer number). Version 1 knows every member: an
unknown or missing member or a non-canonical encoding is refused before the signature is
checked; changed content fails the signature with the opaque
:class:`~mpcid.identity.errors.InvalidProof`. Wire format and validation order:
``specs/session.md`` section 9; the shared mechanics: :mod:`mpcid.p2p.signed`.

This module is sans-IO apart from :func:`write_transcript`, the one helper that writes a
file: no sockets, no event loop, no clock. Times are passed in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from mpcid.identity.did_key import Ed25519Key, parse_did
from mpcid.identity.errors import InvalidDID
from mpcid.identity.keystore import atomic_write
from mpcid.p2p.signed import (MAX_INT, SignedContent, check_limits, check_members,
                              encode_signed, open_document, read_did, read_integer,
                              read_signature, show)

from .errors import InvalidTranscript
from .session_id import is_session_id

VERSION = 1
#: Domain separation: a transcript signature never passes for another mpcid signature.
DOMAIN = b"mpcid-transcript/1\n"

MAX_TRANSCRIPT_BYTES = 256 * 1024
MIN_PARTIES = 2
MAX_PARTIES = 64
#: Credentials listed for one party, and types listed for one credential.
MAX_CREDENTIALS = 32
MAX_TYPES = 16
#: Longest string anywhere in a transcript (the error message and credential ids).
MAX_STRING = 1024
#: The structure is 6 levels deep (object, parties, entry, credentials, credential, types).
MAX_DEPTH = 8

Outcome = Literal["completed", "failed", "refused", "declined"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

_FIELDS = ("v", "session", "invitation_sha256", "program", "program_sha256", "signer",
           "index", "parties", "started_ms", "ended_ms", "outcome", "error", "sig")
_PARTY_FIELDS = ("index", "did", "admitted", "credentials")
_PATH = re.compile(r"[\x20-\x7e]{1,128}")
_CREDENTIAL_FIELDS = ("id", "types", "issuer")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROGRAM = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_TYPE = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{0,%d}" % MAX_STRING)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class CredentialLike(Protocol):
    """What :meth:`CredentialRef.of` reads, e.g. a
    :class:`~mpcid.identity.credentials.VerifiedCredential`."""

    @property
    def id(self) -> str | None: ...

    @property
    def types(self) -> Sequence[str]: ...

    @property
    def issuer(self) -> str: ...


@dataclass(frozen=True)
class CredentialRef:
    """A credential a party presented, named by id, types and issuer (not its claims)."""

    id: str | None
    """The credential's ``id``, if it has one."""
    types: tuple[str, ...]
    """Its ``type`` values, e.g. ``("VerifiableCredential", "MembershipCredential")``."""
    issuer: str
    """The issuer's DID (any method)."""

    @classmethod
    def of(cls, credential: CredentialLike) -> CredentialRef:
        return cls(credential.id, tuple(credential.types), credential.issuer)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "types": list(self.types), "issuer": self.issuer}


@dataclass(frozen=True)
class PartyEntry:
    """One party of the session as the signer saw it."""

    index: int
    """The party's MPyC index (its position in the invitation)."""
    did: str
    """The party's bare did:key."""
    admitted: bool
    """The signer admitted it (for the signer's own entry: the signer took part)."""
    credentials: tuple[CredentialRef, ...] = ()
    """What it presented and the signer verified (the signer's own: what it presented)."""
    path: str | None = None
    """How the signer's channel with it ran (``direct TCP``, ``hole-punched TCP ...``,
    ``relay circuit``, ...); None for the signer's own entry or without a channel."""

    def to_json(self) -> dict[str, Any]:
        entry = {"index": self.index, "did": self.did, "admitted": self.admitted,
                 "credentials": [c.to_json() for c in self.credentials]}
        return entry if self.path is None else {**entry, "path": self.path}


@dataclass(frozen=True)
class Transcript(SignedContent):
    """The signed content of one transcript (``specs/session.md`` 9)."""

    session_id: str
    """The invitation's session id, 32 lowercase hex digits."""
    invitation_sha256: bytes
    """SHA-256 of the signed invitation JSON, 32 bytes."""
    program_name: str
    program_sha256: bytes
    """SHA-256 of the program file, 32 bytes."""
    signer: str
    """The signing party's did:key; equal to ``parties[index].did``."""
    index: int
    """The signer's MPyC index."""
    parties: tuple[PartyEntry, ...]
    """Every party of the invitation, in index order."""
    started_ms: int | None
    """Unix milliseconds when MPyC started, or None if it never did."""
    ended_ms: int
    """Unix milliseconds when the session ended for the signer."""
    outcome: Outcome
    error: str
    """What went wrong, one line; empty when the outcome is ``completed``."""
    signature: bytes = field(default=b"", repr=False)

    _domain, _what, _error = DOMAIN, "transcript", InvalidTranscript

    @property
    def started(self) -> float | None:
        """``started_ms`` in Unix seconds."""
        return None if self.started_ms is None else self.started_ms / 1000

    @property
    def ended(self) -> float:
        """``ended_ms`` in Unix seconds."""
        return self.ended_ms / 1000

    @property
    def duration(self) -> float | None:
        """Seconds from MPyC's start to the end, or None if MPyC never started."""
        return None if self.started_ms is None else (self.ended_ms - self.started_ms) / 1000

    @classmethod
    def create(cls, key: Ed25519Key, *, session_id: str, invitation: bytes,
               program_name: str, program_sha256: bytes, index: int,
               parties: Iterable[PartyEntry], started: float | None, ended: float,
               outcome: Outcome, error: str = "") -> tuple[Transcript, bytes]:
        """Make and sign the transcript of ``key``'s party (MPyC index ``index``).

        ``invitation`` is the signed invitation JSON (its SHA-256 is recorded);
        ``started`` and ``ended`` are Unix seconds (e.g. ``time.time()``), recorded to the
        millisecond; ``error`` is flattened to one line and shortened to
        :data:`MAX_STRING` characters. The bytes are checked exactly as a reader checks
        them, so this raises :class:`InvalidTranscript` rather than hand out anything a
        reader would refuse.
        """
        if not isinstance(invitation, bytes):
            raise InvalidTranscript("invitation must be the signed invitation bytes")
        if not isinstance(program_sha256, bytes) or len(program_sha256) != 32:
            raise InvalidTranscript("program_sha256 must be the 32-byte SHA-256 digest")
        transcript = cls(
            session_id=session_id, invitation_sha256=hashlib.sha256(invitation).digest(),
            program_name=program_name, program_sha256=program_sha256,
            signer=key.did.did, index=index, parties=tuple(parties),
            started_ms=None if started is None else _to_ms(started, "started"),
            ended_ms=_to_ms(ended, "ended"), outcome=outcome, error=one_line(error))
        data = transcript.sign(key)
        return cls.verify(data), data

    def content(self) -> dict[str, Any]:
        """The JSON object without ``"sig"``."""
        return {"v": VERSION, "session": self.session_id,
                "invitation_sha256": self.invitation_sha256.hex(),
                "program": self.program_name, "program_sha256": self.program_sha256.hex(),
                "signer": self.signer, "index": self.index,
                "parties": [p.to_json() for p in self.parties],
                "started_ms": self.started_ms, "ended_ms": self.ended_ms,
                "outcome": self.outcome, "error": self.error}

    @property
    def signer_did(self) -> str:
        return self.signer

    def encode(self) -> bytes:
        """The signed JSON of a transcript that carries its signature."""
        if not self.signature:
            raise InvalidTranscript("this transcript is not signed",
                                    hint="sign it with the signer's key first")
        return encode_signed(self.content(), self.signature)

    @classmethod
    def verify(cls, data: bytes) -> Transcript:
        """Check signed transcript JSON and return its content.

        Raises :class:`InvalidTranscript` (malformed, a limit broken, not canonical) or the
        opaque :class:`~mpcid.identity.errors.InvalidProof` (not the signer's signature over
        this content), in that order (``specs/session.md`` 9.3). No time check: a
        transcript records the past and stays valid.
        """
        obj = open_document(data, what="transcript", max_bytes=MAX_TRANSCRIPT_BYTES,
                            version=VERSION, error=InvalidTranscript, hint="update mpcid",
                            limits=_check_limits)
        transcript = _check_fields(obj)
        transcript.check_signed(data, transcript.signature)  # canonical form, InvalidProof
        return transcript


def write_transcript(path: str | Path, data: bytes) -> None:
    """Write transcript bytes to ``path`` atomically (mode 0644: a transcript is meant to
    be shown). Refuses bytes that :meth:`Transcript.verify` refuses."""
    Transcript.verify(data)
    atomic_write(Path(path), data, mode=0o644)


def one_line(text: str) -> str:
    """``text`` on one line of at most :data:`MAX_STRING` characters, valid Unicode: how
    :meth:`Transcript.create` records an error message."""
    text = " ".join(_CONTROL.sub(" ", text).split())  # also U+2028 and other breaks
    text = text.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
    return text if len(text) <= MAX_STRING else text[:MAX_STRING - 3] + "..."


# --- parsing -------------------------------------------------------------------------------


def _to_ms(seconds: float, name: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
            not 0 <= seconds <= MAX_INT / 1000:
        raise InvalidTranscript(f"\"{name}\" must be Unix seconds, not {show(seconds)}")
    return round(seconds * 1000)


def _check_limits(obj: dict[str, Any]) -> None:
    check_limits(obj, what="transcript", error=InvalidTranscript, max_depth=MAX_DEPTH,
                 max_string=MAX_STRING)


def _members(obj: dict[str, Any], names: tuple[str, ...], what: str) -> None:
    check_members(obj, names, what=what, error=InvalidTranscript)


def _check_fields(obj: dict[str, Any]) -> Transcript:
    _members(obj, _FIELDS, "transcript")
    session = obj["session"]
    if not is_session_id(session):
        raise InvalidTranscript("transcript \"session\" is not 32 lowercase hex digits")
    invitation_sha256, program_sha256 = (_digest(obj, name) for name in
                                         ("invitation_sha256", "program_sha256"))
    program = obj["program"]
    if not isinstance(program, str) or not _PROGRAM.fullmatch(program):
        raise InvalidTranscript("transcript \"program\" is not a name of 1-256 printable "
                                "characters")
    parties = _parties(obj["parties"])
    index = obj["index"]
    if type(index) is not int or not 0 <= index < len(parties):
        raise InvalidTranscript(f"transcript \"index\" is not a party index 0..."
                                f"{len(parties) - 1}")
    if obj["signer"] != parties[index].did:
        raise InvalidTranscript(f"transcript \"signer\" is not the DID of party {index}")
    started, ended = obj["started_ms"], _integer(obj, "ended_ms")
    if started is not None:
        started = _integer(obj, "started_ms")
        if started > ended:
            raise InvalidTranscript("transcript \"started_ms\" is after \"ended_ms\"")
    outcome = obj["outcome"]
    if outcome not in OUTCOMES:  # a list or object is unhashable but compares unequal
        raise InvalidTranscript(f"transcript \"outcome\" is not one of {', '.join(OUTCOMES)}")
    error = obj["error"]
    if not isinstance(error, str) or not _TEXT.fullmatch(error):
        raise InvalidTranscript("transcript \"error\" is not one line of text")
    if outcome == "completed" and (error or started is None):
        raise InvalidTranscript("a completed transcript has \"started_ms\" and no \"error\"")
    signature = read_signature(obj, what="transcript", error=InvalidTranscript, exact=False)
    return Transcript(session_id=session, invitation_sha256=invitation_sha256,
                      program_name=program, program_sha256=program_sha256,
                      signer=parties[index].did, index=index, parties=parties,
                      started_ms=started, ended_ms=ended, outcome=outcome, error=error,
                      signature=signature)


def _parties(items: Any) -> tuple[PartyEntry, ...]:
    if not isinstance(items, list) or not MIN_PARTIES <= len(items) <= MAX_PARTIES:
        raise InvalidTranscript(f"transcript \"parties\" is not a list of {MIN_PARTIES} to "
                                f"{MAX_PARTIES} parties")
    parties = tuple(_party(i, item) for i, item in enumerate(items))
    if len({p.did for p in parties}) != len(parties):
        raise InvalidTranscript("transcript lists a party twice")
    return parties


def _party(i: int, item: Any) -> PartyEntry:
    what = f"transcript party {i}"
    if not isinstance(item, dict):
        raise InvalidTranscript(f"{what} is not an object")
    _members({k: v for k, v in item.items() if k != "path"}, _PARTY_FIELDS, what)
    path = item.get("path")
    if path is not None and (not isinstance(path, str) or not _PATH.fullmatch(path)):
        raise InvalidTranscript(f"{what} \"path\" is not 1-128 printable characters")
    if type(item["index"]) is not int or item["index"] != i:
        raise InvalidTranscript(f"{what} has \"index\" other than {i} (parties are listed "
                                "in index order)")
    did = read_did(item["did"], subject=f"{what} \"did\"", error=InvalidTranscript,
                   detail=False)
    if type(item["admitted"]) is not bool:
        raise InvalidTranscript(f"{what} \"admitted\" is not true or false")
    credentials = item["credentials"]
    if not isinstance(credentials, list) or len(credentials) > MAX_CREDENTIALS:
        raise InvalidTranscript(f"{what} \"credentials\" is not a list of at most "
                                f"{MAX_CREDENTIALS}")
    return PartyEntry(i, did, item["admitted"],
                      tuple(_credential(f"{what} credential {j}", c)
                            for j, c in enumerate(credentials)), path)


def _credential(what: str, item: Any) -> CredentialRef:
    if not isinstance(item, dict):
        raise InvalidTranscript(f"{what} is not an object")
    _members(item, _CREDENTIAL_FIELDS, what)
    cid, types, issuer = item["id"], item["types"], item["issuer"]
    if cid is not None and (not isinstance(cid, str) or not cid or
                            not _TEXT.fullmatch(cid)):
        raise InvalidTranscript(f"{what} \"id\" is neither null nor one line of text")
    if not isinstance(types, list) or not 1 <= len(types) <= MAX_TYPES or \
            not all(isinstance(t, str) and _TYPE.fullmatch(t) for t in types):
        raise InvalidTranscript(f"{what} \"types\" is not a list of 1 to {MAX_TYPES} type "
                                "names")
    try:
        bare = parse_did(issuer)
    except InvalidDID:
        raise InvalidTranscript(f"{what} \"issuer\" is not a DID") from None
    if bare != issuer:
        raise InvalidTranscript(f"{what} \"issuer\" is a DID URL, not a bare DID")
    return CredentialRef(cid, tuple(types), issuer)


def _digest(obj: dict[str, Any], name: str) -> bytes:
    value = obj[name]
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidTranscript(f"transcript \"{name}\" is not 64 lowercase hex digits")
    return bytes.fromhex(value)


def _integer(obj: dict[str, Any], name: str) -> int:
    return read_integer(obj, name, what="transcript", error=InvalidTranscript)
