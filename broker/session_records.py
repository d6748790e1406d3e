"""Invitations and declines published in the discovery DHT (``specs/session.md`` 8).

Theory of operation
-------------------
Two record kinds of the ``/mpcid/`` namespace (``specs/discovery.md`` 2.7) let parties
hand invitations around by session id and tell each other that they will not come:

* ``/mpcid/invitation/<session id>``: the signed invitation, byte for byte as
  :meth:`Invitation.verify` accepts it. Any node can check it; the key's session id must be
  the invitation's.
* ``/mpcid/decline/<session id>/<did:key>``: a small signed object by which the party
  ``did`` says that it will not join ``session``. Nothing in the DHT can tell whether
  ``did`` really is a party of that session (the node does not know the invitation), so a
  reader checks that against its own copy of the invitation; a decline is advisory.

Both are signed by the DID that speaks, so a DHT node can withhold them but cannot forge
or alter them. Among several valid values under one key the latest ``issued`` wins, then
the larger byte string: the same total order on every node.

The kinds' rules (:class:`InvitationKind`, :class:`DeclineKind`, :class:`Decline`) are
sans-IO, with time passed in as ``now``. The ``async`` helpers at the end are thin: they
work on a started :class:`~mpcid.p2p.discovery.Discovery`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import InvalidDID, InvalidProof, MpcidError
from mpcid.p2p.records import (InvalidRecord, KindValidator, canonical_json, kind_key,
                               kind_of, strict_json)

from .errors import SessionError
from .invitation import Invitation

if TYPE_CHECKING:
    from mpcid.p2p.discovery import Discovery

INVITATION_KIND = "invitation"
DECLINE_KIND = "decline"

DECLINE_VERSION = 1
#: Domain separation: a decline signature can never pass for another mpcid signature.
DECLINE_DOMAIN = b"mpcid-decline/1\n"
MAX_DECLINE_BYTES = 2048
MAX_REASON = 500
MAX_DECLINE_TTL = 30 * 86400
#: A decline may be issued this far in the future (clock skew between parties).
MAX_CLOCK_SKEW = 300
MAX_INT = 2**53 - 1

_DECLINE_FIELDS = ("v", "session", "did", "reason", "issued", "expires", "sig")
_SESSION = re.compile(r"[0-9a-f]{32}")
_SIG = re.compile(r"[A-Za-z0-9_-]{86}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DeclineError(SessionError):
    """A decline from the DHT was not accepted."""

    hint = "the decline is ignored; the party may still join"


class InvalidDecline(DeclineError):
    """The decline is malformed: not canonical JSON, a wrong field or type, a broken
    limit, or stored under the key of another session or party."""


class DeclineExpired(DeclineError):
    """The decline's ``expires`` time has passed."""


class DeclineNotYetValid(DeclineError):
    """The decline was issued more than :data:`MAX_CLOCK_SKEW` seconds in the future."""

    hint = "check this machine's clock (and the declining party's)"


# --- keys ----------------------------------------------------------------------------------


def invitation_key(session_id: str) -> str:
    """``/mpcid/invitation/<session id>``."""
    _check_session(session_id, InvalidRecord)
    return kind_key(INVITATION_KIND, session_id)


def decline_key(session_id: str, did: str) -> str:
    """``/mpcid/decline/<session id>/<did:key>``."""
    _check_session(session_id, InvalidRecord)
    _check_did(did, InvalidRecord)
    return kind_key(DECLINE_KIND, f"{session_id}/{did}")


def _rest(key: str, kind: str) -> str:
    parsed = kind_of(key)
    if parsed is None or parsed[0] != kind:
        raise InvalidRecord(f"DHT key {_show(key)} is not a key of kind {kind}")
    return parsed[1]


def _check_session(session_id: object, error: Callable[[str], Exception]) -> str:
    if not isinstance(session_id, str) or not _SESSION.fullmatch(session_id):
        raise error(f"session id {_show(session_id)} is not 32 lowercase hex digits")
    return session_id


def _check_did(did: object, error: Callable[[str], Exception]) -> str:
    if not isinstance(did, str):
        raise error("a party is named by a did:key string")
    try:
        parsed = DIDKey.parse(did)
    except InvalidDID as exc:
        raise error(f"{_show(did)} is not a did:key: {exc}") from None
    if parsed.did != did:
        raise error(f"{_show(did)} is a DID URL, not a bare DID")
    return did


# --- invitations ---------------------------------------------------------------------------


class InvitationKind:
    """Rules of ``/mpcid/invitation/<session id>``: a valid, current invitation of that
    session (:meth:`Invitation.verify`, which also bounds the size to 16 KiB)."""

    def validate(self, key: str, value: bytes, now: float) -> None:
        self.verify(key, value, now)

    def verify(self, key: str, value: bytes, now: float) -> Invitation:
        session_id = _check_session(_rest(key, INVITATION_KIND), InvalidRecord)
        invitation = Invitation.verify(value, now)
        if invitation.session_id != session_id:
            raise InvalidRecord(f"invitation {invitation.session_id} is stored under the key "
                                f"of session {session_id}")
        return invitation

    def select(self, key: str, values: Sequence[bytes], now: float) -> int:
        return _select(key, values, lambda v: self.verify(key, v, now).issued)


# --- declines ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decline:
    """The signed content of one decline: party ``did`` will not join ``session_id``."""

    session_id: str
    did: str
    """The declining party; signs the decline."""
    reason: str
    """Free text for the other parties, at most 500 characters, one line."""
    issued: int
    expires: int
    """At most 30 days after ``issued``; by default when the invitation expires."""

    @classmethod
    def create(cls, key: Ed25519Key, invitation: Invitation, reason: str, now: float
               ) -> tuple[Decline, bytes]:
        """Sign a decline of ``invitation`` by ``key``'s party, valid until the invitation
        expires (at least one minute). Raises :class:`~mpcid.broker.errors.NotAParty` if
        the key is not invited, :class:`InvalidDecline` for a reason that breaks a limit
        or an invitation that has expired."""
        invitation.index_of(key.did.did)
        issued = int(now)
        expires = min(max(invitation.expires, issued + 60), issued + MAX_DECLINE_TTL)
        if invitation.expires <= now:
            raise InvalidDecline(f"invitation {invitation.session_id} has expired; there is "
                                 "nothing left to decline", hint="no one can join it anyway")
        decline = cls(invitation.session_id, key.did.did, reason, issued, expires)
        value = decline.sign(key)
        return decode_decline(decline.key, value, now), value

    @property
    def key(self) -> str:
        return decline_key(self.session_id, self.did)

    def content(self) -> dict[str, Any]:
        """The JSON object without ``"sig"``."""
        return {"v": DECLINE_VERSION, "session": self.session_id, "did": self.did,
                "reason": self.reason, "issued": self.issued, "expires": self.expires}

    def signing_input(self) -> bytes:
        """``DECLINE_DOMAIN || JCS(content())``."""
        return DECLINE_DOMAIN + canonical_json(self.content())

    def sign(self, key: Ed25519Key) -> bytes:
        """The encoded decline, signed by ``key`` (which must be :attr:`did`'s)."""
        if key.did.did != self.did:
            raise InvalidDecline(f"a decline of {self.did} cannot be signed by {key.did.did}")
        sig = base64.urlsafe_b64encode(key.sign(self.signing_input())).rstrip(b"=")
        return canonical_json({**self.content(), "sig": sig.decode("ascii")})

    def to_json(self) -> dict[str, object]:
        return dict(self.content())


def decode_decline(key: str, value: bytes, now: float) -> Decline:
    """Check a decline found under ``key`` at time ``now`` and return it.

    Raises :class:`InvalidRecord` (not a decline key), :class:`InvalidDecline`, the opaque
    :class:`~mpcid.identity.errors.InvalidProof`, :class:`DeclineNotYetValid` or
    :class:`DeclineExpired`, in that order (``specs/session.md`` 8.3).
    """
    session_id, sep, did = _rest(key, DECLINE_KIND).partition("/")
    _check_session(session_id, InvalidRecord)
    _check_did(did if sep else "", InvalidRecord)
    if not isinstance(value, bytes):
        raise InvalidDecline(f"a decline is bytes, not {type(value).__name__}")
    if len(value) > MAX_DECLINE_BYTES:
        raise InvalidDecline(f"decline of {len(value)} bytes exceeds {MAX_DECLINE_BYTES}")
    obj = strict_json(value, "decline", InvalidDecline)
    if not isinstance(obj, dict):
        raise InvalidDecline("a decline is a JSON object")
    version = obj.get("v")
    if type(version) is not int:
        raise InvalidDecline("decline has no integer version \"v\"")
    if version != DECLINE_VERSION:
        raise InvalidDecline(f"decline version {version} is not supported (this is "
                             f"version {DECLINE_VERSION})")
    decline, signature = _decline_fields(obj)
    try:
        canonical = canonical_json(obj)
    except (ValueError, UnicodeError):  # an unpaired surrogate, "\ud800"
        raise InvalidDecline("decline contains a string that is not valid Unicode") from None
    if canonical != value:
        raise InvalidDecline("decline is not in canonical JSON form (RFC 8785)")
    if (decline.session_id, decline.did) != (session_id, did):
        raise InvalidDecline("decline is stored under the key of another session or party")
    DIDKey.parse(did).verify(decline.signing_input(), signature)  # raises InvalidProof
    if decline.issued > now + MAX_CLOCK_SKEW:
        raise DeclineNotYetValid(f"decline by {did} was issued "
                                 f"{decline.issued - now:.0f} s in the future")
    if decline.expires <= now:
        raise DeclineExpired(f"decline by {did} expired {now - decline.expires:.0f} s ago")
    return decline


def _decline_fields(obj: dict[str, Any]) -> tuple[Decline, bytes]:
    missing = [name for name in _DECLINE_FIELDS if name not in obj]
    if missing:
        raise InvalidDecline(f"decline lacks {', '.join(missing)}")
    unknown = sorted(set(obj) - set(_DECLINE_FIELDS))
    if unknown:
        raise InvalidDecline(f"decline has unknown members {_show(', '.join(unknown))}")
    session_id = _check_session(obj["session"], InvalidDecline)
    did = _check_did(obj["did"], InvalidDecline)
    reason = obj["reason"]
    if not isinstance(reason, str) or len(reason) > MAX_REASON or _CONTROL.search(reason):
        raise InvalidDecline(f"decline \"reason\" is not one line of at most {MAX_REASON} "
                             "characters")
    issued, expires = (_integer(obj, name) for name in ("issued", "expires"))
    if not 0 < expires - issued <= MAX_DECLINE_TTL:
        raise InvalidDecline(f"decline lifetime {expires - issued} s is not within "
                             f"1 s .. {MAX_DECLINE_TTL} s (30 days)")
    sig = obj["sig"]
    if not isinstance(sig, str) or not _SIG.fullmatch(sig):
        raise InvalidDecline("decline \"sig\" is not a 64-byte base64url signature")
    signature = base64.urlsafe_b64decode(sig + "==")
    if base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii") != sig:
        raise InvalidDecline("decline \"sig\" is not canonical base64url")
    return Decline(session_id, did, reason, issued, expires), signature


def _integer(obj: dict[str, Any], name: str) -> int:
    value = obj[name]
    if type(value) is not int:  # bool is an int subclass, and not a number here
        raise InvalidDecline(f"decline \"{name}\" is not an integer")
    if not 0 <= value <= MAX_INT:
        raise InvalidDecline(f"decline \"{name}\" is out of range 0..2^53-1")
    return value


class DeclineKind:
    """Rules of ``/mpcid/decline/<session id>/<did:key>`` (:func:`decode_decline`)."""

    def validate(self, key: str, value: bytes, now: float) -> None:
        decode_decline(key, value, now)

    def select(self, key: str, values: Sequence[bytes], now: float) -> int:
        return _select(key, values, lambda v: decode_decline(key, v, now).issued)


def _select(key: str, values: Sequence[bytes], issued: Callable[[bytes], int]) -> int:
    """Latest ``issued``, then the larger bytes, then the first; invalid values never win."""
    best: tuple[int, bytes] | None = None
    index = -1
    last: Exception | None = None
    for i, value in enumerate(values):
        try:
            rank = (issued(value), value)
        except (MpcidError, InvalidProof) as exc:
            last = exc
            continue
        if best is None or rank > best:
            best, index = rank, i
    if best is None:
        raise InvalidRecord(f"none of {len(values)} values under {_show(key)} is "
                            "valid") from last
    return index


#: The record kinds of sessions, for :class:`~mpcid.p2p.discovery.DiscoveryConfig`'s
#: ``kinds`` (and :class:`~mpcid.p2p.dht.DHTNode`'s).
SESSION_KINDS: Mapping[str, KindValidator] = MappingProxyType({
    INVITATION_KIND: InvitationKind(), DECLINE_KIND: DeclineKind()})


# --- on a started Discovery ----------------------------------------------------------------


async def publish_invitation(discovery: Discovery, data: bytes) -> Invitation:
    """Publish the signed invitation ``data`` under its session id; return it. Raises the
    invitation's error if it is not valid now."""
    invitation = Invitation.verify(data, discovery.clock())
    await discovery.put_value(invitation_key(invitation.session_id), data)
    return invitation


async def fetch_invitation(discovery: Discovery, session_id: str) -> bytes | None:
    """The signed invitation of ``session_id`` from the DHT (valid now), or None."""
    return await discovery.get_value(invitation_key(session_id))


async def publish_decline(discovery: Discovery, key: Ed25519Key, invitation: Invitation,
                          reason: str, now: float) -> Decline:
    """Sign and publish ``key``'s decline of ``invitation`` (see :meth:`Decline.create`)."""
    decline, value = Decline.create(key, invitation, reason, now)
    await discovery.put_value(decline.key, value)
    return decline


async def fetch_decline(discovery: Discovery, session_id: str, did: str) -> Decline | None:
    """``did``'s current decline of ``session_id``, or None if the DHT has none."""
    key = decline_key(session_id, did)
    value = await discovery.get_value(key)
    return None if value is None else decode_decline(key, value, discovery.clock())


@asynccontextmanager
async def session_dht(key: Ed25519Key, bootstrap: tuple[str, ...], *,
                      connect_timeout: float = 10.0) -> AsyncIterator[Discovery]:
    """A one-off DHT client on ``bootstrap`` that knows :data:`SESSION_KINDS`, with host
    identity ``key``; stopped on exit. Raises :class:`~mpcid.p2p.errors.ConnectFailed`
    when no bootstrap node answers."""
    from mpcid.p2p.discovery import Discovery, DiscoveryConfig

    discovery = Discovery(key, DiscoveryConfig(
        listen=("/ip4/127.0.0.1/tcp/0",), bootstrap=bootstrap, server=False,
        connect_timeout=connect_timeout, kinds=SESSION_KINDS))
    try:
        await discovery.start()
        yield discovery
    finally:
        await discovery.stop()


def _show(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 80 else text[:77] + "..."
