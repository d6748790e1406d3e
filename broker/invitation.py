"""Signed session invitations: who is asked to compute what, with which requirements.

Theory of operation
-------------------
The inviter (party 0) fixes everything the parties must agree on before any of them
connects: a fresh random session id, the ordered list of party DIDs (the MPyC index), the
program by name and SHA-256, the MPyC options, the credentials each party must present,
a validity window, and the bootstrap and relay nodes through which parties find each other
(``specs/discovery.md``). It signs that object with its DID key and hands out either the
signed JSON or a compact, copy-pasteable token (``mpcid1:...``).

The encoding is canonical JSON (RFC 8785, JCS) of the whole object, ``"sig"`` included;
the Ed25519 signature covers ``DOMAIN || JCS(object without "sig")``, so one signed content
has exactly one byte string. Version 1 knows every member: an unknown member, a missing one
or a non-canonical encoding is refused before the signature is checked, and a changed
content fails the signature with the opaque :class:`~mpcid.identity.errors.InvalidProof`.
Time checks come last, so an expiry is reported only for an authentic invitation.
Wire format and validation order: ``specs/session.md``; the mechanics shared with the
other signed documents: :mod:`mpcid.p2p.signed`.

This module is sans-IO: no sockets, no event loop, no clock. Time comes in as ``now``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mpcid.identity import compact
from mpcid.identity.credentials import CREDENTIAL_PREFIX
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import UsageError
from mpcid.identity.policy import Policy
from mpcid.p2p.signed import (SignedContent, check_limits, check_members,
                              encode_signed, open_document, read_did, read_integer,
                              read_signature, show)

from .errors import (InvalidInvitation, InvitationExpired, InvitationNotYetValid,
                     NoBootstrapNodes, NotAParty)
from .session_id import is_session_id, session_id_for
from .session import MpycOptions, PartyEndpoint, SessionSpec

VERSION = 1
#: Domain separation: an invitation signature can never pass for another mpcid signature.
DOMAIN = b"mpcid-invitation/1\n"
TOKEN_PREFIX = "mpcid1:"

MAX_INVITATION_BYTES = 16 * 1024
#: Compressed JSON is at most MAX_INVITATION_BYTES + zlib overhead; base64 adds a third.
MAX_TOKEN_CHARS = compact.max_chars(TOKEN_PREFIX, MAX_INVITATION_BYTES)
MAX_STRING = 512
#: A multiaddr must also fit the session file (``SessionSpec.from_json``: < 512).
MAX_MULTIADDR = 511
MAX_ADDRS = 16
MIN_PARTIES = 2
MAX_PARTIES = 64
MIN_TTL = 60
MAX_TTL = 30 * 86400
#: An invitation may be issued this far in the future (clock skew inviter/reader).
MAX_CLOCK_SKEW = 300
#: Deepest nesting of arrays and objects (the requirements are the deepest, at 4).
MAX_DEPTH = 8

_FIELDS = ("v", "session", "nonce", "name", "inviter", "parties", "program", "program_sha256", "mpyc",
           "requirements", "issued", "expires", "bootstrap", "relays", "sig")
_MPYC_FIELDS = ("threshold", "no_prss")
_NONCE = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROGRAM = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_NAME = re.compile(r"[^\x00-\x1f\x7f]{0,128}")
_MULTIADDR = re.compile(r"/[\x21-\x7e]{0,%d}" % (MAX_MULTIADDR - 1))


@dataclass(frozen=True)
class Invitation(SignedContent):
    """The signed content of one invitation (``specs/session.md`` 2)."""

    session_id: str
    """32 lowercase hex digits, derived from the inviter and :attr:`nonce`
    (:func:`session_id_for`), so nobody else can sign an invitation for this session."""
    nonce: bytes
    """16 random bytes chosen by the inviter."""
    parties: tuple[str, ...]
    """Party DIDs (bare did:key) in MPyC order; ``parties[0]`` is the inviter."""
    program_name: str
    """The program's file name, for people; the hash is what binds."""
    program_sha256: bytes
    """SHA-256 of the program file, 32 bytes."""
    threshold: int
    """MPyC corruption threshold t, 0 <= 2t < len(parties)."""
    no_prss: bool
    """MPyC --no-prss."""
    requirements: Policy
    """Credentials every party must present."""
    issued: int
    """Unix seconds when the invitation was made."""
    expires: int
    """Unix seconds after which it is void (1 minute .. 30 days after ``issued``)."""
    bootstrap: tuple[str, ...] = ()
    """libp2p multiaddrs of DHT bootstrap nodes."""
    relays: tuple[str, ...] = ()
    """libp2p multiaddrs of circuit relays."""
    signature: bytes = field(default=b"", repr=False)
    """The inviter's Ed25519 signature; empty until signed."""
    name: str = ""
    """What the session is called, for people (may be empty)."""

    _domain, _what, _error = DOMAIN, "invitation", InvalidInvitation

    @property
    def inviter(self) -> str:
        return self.parties[0]

    @property
    def signer_did(self) -> str:
        return self.inviter

    @classmethod
    def create(cls, inviter_key: Ed25519Key, invited_dids: Iterable[str], program_name: str,
               program_sha256: bytes, *, threshold: int | None = None, no_prss: bool = False,
               requirements: Policy = Policy(), ttl: int, bootstrap: Iterable[str] = (),
               relays: Iterable[str] = (), name: str = "", now: float
               ) -> tuple[Invitation, bytes]:
        """Make and sign a new invitation with a fresh session id, valid from ``now`` for
        ``ttl`` seconds. ``threshold`` defaults to ``(n - 1) // 2`` for n parties.

        The bytes are checked exactly as a reader checks them, so this raises
        :class:`InvalidInvitation` rather than hand out anything a party would refuse.
        """
        parties = (inviter_key.did.did, *invited_dids)
        if threshold is None:
            threshold = (len(parties) - 1) // 2
        if not isinstance(program_sha256, bytes) or len(program_sha256) != 32:
            raise InvalidInvitation("program_sha256 must be the 32-byte SHA-256 digest")
        issued = int(now)
        nonce = secrets.token_bytes(16)
        invitation = cls(session_id=session_id_for(parties[0], nonce), nonce=nonce,
                         parties=parties,
                         program_name=program_name, program_sha256=program_sha256,
                         threshold=threshold, no_prss=no_prss, requirements=requirements,
                         issued=issued, expires=issued + ttl, bootstrap=tuple(bootstrap),
                         relays=tuple(relays), name=name)
        data = invitation.sign(inviter_key)
        return cls.verify(data, now), data

    def content(self) -> dict[str, Any]:
        """The JSON object without ``"sig"``."""
        return {"v": VERSION, "session": self.session_id, "nonce": self.nonce.hex(),
                "name": self.name, "inviter": self.inviter,
                "parties": list(self.parties), "program": self.program_name,
                "program_sha256": self.program_sha256.hex(),
                "mpyc": {"threshold": self.threshold, "no_prss": self.no_prss},
                "requirements": self.requirements.to_json(), "issued": self.issued,
                "expires": self.expires, "bootstrap": list(self.bootstrap),
                "relays": list(self.relays)}

    def encode(self) -> bytes:
        """The signed JSON of an invitation that carries its signature."""
        if not self.signature:
            raise InvalidInvitation("this invitation is not signed; sign it with the "
                                    "inviter's key first")
        return encode_signed(self.content(), self.signature)

    def token(self) -> str:
        """The compact form: ``"mpcid1:" + base64url(zlib(signed JSON))``, no padding."""
        return compact.encode(TOKEN_PREFIX, self.encode())

    @classmethod
    def from_token(cls, text: str, now: float) -> Invitation:
        """Decode a token (whitespace from line wrapping is ignored) and :meth:`verify` it."""
        return cls.verify(decode_token(text), now)

    @classmethod
    def verify(cls, data: bytes, now: float) -> Invitation:
        """Check signed invitation JSON at time ``now`` and return its content.

        Raises :class:`InvalidInvitation` (malformed, a limit broken), the opaque
        :class:`~mpcid.identity.errors.InvalidProof` (not the inviter's signature over this
        content), :class:`InvitationNotYetValid` or :class:`InvitationExpired`, checked in
        that order (``specs/session.md`` 4).
        """
        obj = open_document(data, what="invitation", max_bytes=MAX_INVITATION_BYTES,
                            version=VERSION, error=InvalidInvitation, hint="update mpcid",
                            limits=_check_limits)
        invitation = _check_fields(obj)
        invitation.check_signed(data, invitation.signature)  # canonical form, InvalidProof
        if invitation.issued > now + MAX_CLOCK_SKEW:
            raise InvitationNotYetValid(f"invitation {invitation.session_id} was issued "
                                        f"{invitation.issued - now:.0f} s in the future")
        if invitation.expires <= now:
            raise InvitationExpired(f"invitation {invitation.session_id} expired "
                                    f"{now - invitation.expires:.0f} s ago")
        return invitation

    def session_spec(self) -> SessionSpec:
        """The session this invitation describes; parties are found through the DHT."""
        if not self.bootstrap:
            raise NoBootstrapNodes(f"invitation {self.session_id} lists no bootstrap nodes, "
                                   "so its parties cannot be found")
        return SessionSpec(
            self.session_id, self.program_sha256,
            tuple(PartyEndpoint(i, did, None, None) for i, did in enumerate(self.parties)),
            MpycOptions(self.threshold, self.no_prss), self.bootstrap, self.relays)

    def is_party(self, did: str) -> bool:
        return did in self.parties

    def index_of(self, did: str) -> int:
        """The MPyC index of ``did``; raises :class:`NotAParty`."""
        try:
            return self.parties.index(did)
        except ValueError:
            raise NotAParty(f"{show(did)} is not invited to session {self.session_id}",
                            hint="ask the inviter to invite this identity") from None


def decode_token(text: str) -> bytes:
    """The signed JSON inside a token, not yet verified. Raises :class:`InvalidInvitation`.

    Decompression stops at :data:`MAX_INVITATION_BYTES` + 1 bytes, so a small token cannot
    expand into a large allocation (:func:`mpcid.identity.compact.decode`).
    """
    if isinstance(text, str) and text[:256].lstrip().startswith(CREDENTIAL_PREFIX):
        raise InvalidInvitation("this is a credential token, not an invitation",
                                hint="import it with: mpcid credential import TOKEN")
    return compact.decode(text, prefix=TOKEN_PREFIX, max_bytes=MAX_INVITATION_BYTES,
                          error=InvalidInvitation, kind="mpcid invitation token")


# --- parsing -------------------------------------------------------------------------------


def _check_limits(obj: dict[str, Any]) -> None:
    check_limits(obj, what="invitation", error=InvalidInvitation, max_depth=MAX_DEPTH,
                 max_string=MAX_STRING)


def _check_fields(obj: dict[str, Any]) -> Invitation:
    check_members(obj, _FIELDS, what="invitation", error=InvalidInvitation)
    session = obj["session"]
    if not is_session_id(session):
        raise InvalidInvitation("invitation \"session\" is not 32 lowercase hex digits")
    nonce = obj["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise InvalidInvitation("invitation \"nonce\" is not 32 lowercase hex digits")
    parties = _parties(obj)
    if obj["inviter"] != parties[0]:
        raise InvalidInvitation("invitation \"inviter\" is not the first of \"parties\"")
    if session != session_id_for(parties[0], bytes.fromhex(nonce)):
        raise InvalidInvitation("invitation \"session\" is not derived from its inviter and "
                                "nonce (section 2 of specs/session.md)")
    name = obj["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInvitation("invitation \"name\" is not 0-128 printable characters")
    program = obj["program"]
    if not isinstance(program, str) or not _PROGRAM.fullmatch(program):
        raise InvalidInvitation("invitation \"program\" is not a name of 1-256 printable "
                                "characters")
    digest = obj["program_sha256"]
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise InvalidInvitation("invitation \"program_sha256\" is not 64 lowercase hex digits")
    threshold, no_prss = _mpyc(obj["mpyc"], len(parties))
    try:
        requirements = Policy.from_json(obj["requirements"])
    except UsageError as exc:
        raise InvalidInvitation(f"invitation \"requirements\": {exc}") from None
    issued, expires = _integer(obj, "issued"), _integer(obj, "expires")
    if not MIN_TTL <= expires - issued <= MAX_TTL:
        raise InvalidInvitation(f"invitation lifetime {expires - issued} s is not within "
                                f"{MIN_TTL} s .. {MAX_TTL} s (30 days)")
    signature = read_signature(obj, what="invitation", error=InvalidInvitation, exact=False)
    return Invitation(session_id=session, nonce=bytes.fromhex(nonce), parties=parties,
                      program_name=program, program_sha256=bytes.fromhex(digest),
                      threshold=threshold, no_prss=no_prss, requirements=requirements,
                      issued=issued, expires=expires, bootstrap=_multiaddrs(obj, "bootstrap"),
                      relays=_multiaddrs(obj, "relays"), signature=signature, name=name)


def _parties(obj: dict[str, Any]) -> tuple[str, ...]:
    parties = obj["parties"]
    if not isinstance(parties, list) or not all(isinstance(p, str) for p in parties):
        raise InvalidInvitation("invitation \"parties\" is not a list of DIDs")
    if not MIN_PARTIES <= len(parties) <= MAX_PARTIES:
        raise InvalidInvitation(f"invitation has {len(parties)} parties; a session has "
                                f"{MIN_PARTIES} to {MAX_PARTIES}")
    for i, did in enumerate(parties):
        read_did(did, subject=f"invitation party {i}", error=InvalidInvitation)
    if len(set(parties)) != len(parties):
        raise InvalidInvitation("invitation lists a party twice")
    return tuple(parties)


def _mpyc(options: Any, n: int) -> tuple[int, bool]:
    if not isinstance(options, dict) or sorted(options) != sorted(_MPYC_FIELDS):
        raise InvalidInvitation("invitation \"mpyc\" must be an object with exactly "
                                "threshold and no_prss")
    threshold, no_prss = options["threshold"], options["no_prss"]
    if type(threshold) is not int or not 0 <= 2 * threshold < n:
        raise InvalidInvitation(f"invitation \"mpyc.threshold\" must be an integer t with "
                                f"0 <= 2t < {n} (the number of parties)")
    if type(no_prss) is not bool:
        raise InvalidInvitation("invitation \"mpyc.no_prss\" must be true or false")
    return threshold, no_prss


def _integer(obj: dict[str, Any], name: str) -> int:
    return read_integer(obj, name, what="invitation", error=InvalidInvitation)


def _multiaddrs(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    items = obj[name]
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidInvitation(f"invitation \"{name}\" is not a list of multiaddrs")
    if len(items) > MAX_ADDRS:
        raise InvalidInvitation(f"invitation has {len(items)} \"{name}\" entries, at most "
                                f"{MAX_ADDRS}")
    for addr in items:
        if not _MULTIADDR.fullmatch(addr):
            raise InvalidInvitation(f"invitation \"{name}\" entry {show(addr)} is not a "
                                    f"multiaddr of at most {MAX_MULTIADDR} characters")
    return tuple(items)
