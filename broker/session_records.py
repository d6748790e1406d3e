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

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidProof, MpcidError
from mpcid.p2p.errors import InvalidRecord
from mpcid.p2p.records import KindValidator, best_index, kind_key, kind_of
from mpcid.p2p.signed import (SignedContent, check_canonical, check_members, open_document,
                              read_did, read_integer, read_signature, show)

from .errors import DeclineExpired, DeclineNotYetValid, InvalidDecline
from .invitation import Invitation
from .session_id import is_session_id

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

_DECLINE_FIELDS = ("v", "session", "did", "reason", "issued", "expires", "sig")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
        raise InvalidRecord(f"DHT key {show(key)} is not a key of kind {kind}")
    return parsed[1]


def _check_session(session_id: object, error: Callable[[str], Exception]) -> str:
    if not is_session_id(session_id):
        raise error(f"session id {show(session_id)} is not 32 lowercase hex digits")
    return session_id


def _check_did(did: object, error: Callable[[str], Exception]) -> str:
    if not isinstance(did, str):
        raise error("a party is named by a did:key string")
    return read_did(did, subject=show(did), error=error)


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
class Decline(SignedContent):
    """The signed content of one decline: party ``did`` will not join ``session_id``."""

    session_id: str
    did: str
    """The declining party; signs the decline."""
    reason: str
    """Free text for the other parties, at most 500 characters, one line."""
    issued: int
    expires: int
    """At most 30 days after ``issued``; by default when the invitation expires."""

    _domain, _what, _error = DECLINE_DOMAIN, "decline", InvalidDecline

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

    @property
    def signer_did(self) -> str:
        return self.did

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
    obj = open_document(value, what="decline", max_bytes=MAX_DECLINE_BYTES,
                        version=DECLINE_VERSION, error=InvalidDecline)
    decline, signature = _decline_fields(obj)
    check_canonical(obj, value, what="decline", error=InvalidDecline)
    if (decline.session_id, decline.did) != (session_id, did):
        raise InvalidDecline("decline is stored under the key of another session or party")
    decline.verify_signature(signature)  # raises InvalidProof
    if decline.issued > now + MAX_CLOCK_SKEW:
        raise DeclineNotYetValid(f"decline by {did} was issued "
                                 f"{decline.issued - now:.0f} s in the future")
    if decline.expires <= now:
        raise DeclineExpired(f"decline by {did} expired {now - decline.expires:.0f} s ago")
    return decline


def _decline_fields(obj: dict[str, Any]) -> tuple[Decline, bytes]:
    check_members(obj, _DECLINE_FIELDS, what="decline", error=InvalidDecline)
    session_id = _check_session(obj["session"], InvalidDecline)
    did = _check_did(obj["did"], InvalidDecline)
    reason = obj["reason"]
    if not isinstance(reason, str) or len(reason) > MAX_REASON or _CONTROL.search(reason):
        raise InvalidDecline(f"decline \"reason\" is not one line of at most {MAX_REASON} "
                             "characters")
    issued, expires = (read_integer(obj, name, what="decline", error=InvalidDecline)
                       for name in ("issued", "expires"))
    if not 0 < expires - issued <= MAX_DECLINE_TTL:
        raise InvalidDecline(f"decline lifetime {expires - issued} s is not within "
                             f"1 s .. {MAX_DECLINE_TTL} s (30 days)")
    signature = read_signature(obj, what="decline", error=InvalidDecline)
    return Decline(session_id, did, reason, issued, expires), signature


class DeclineKind:
    """Rules of ``/mpcid/decline/<session id>/<did:key>`` (:func:`decode_decline`)."""

    def validate(self, key: str, value: bytes, now: float) -> None:
        decode_decline(key, value, now)

    def select(self, key: str, values: Sequence[bytes], now: float) -> int:
        return _select(key, values, lambda v: decode_decline(key, v, now).issued)


def _select(key: str, values: Sequence[bytes], issued: Callable[[bytes], int]) -> int:
    """Latest ``issued``, then the larger bytes, then the first; invalid values never win."""
    return best_index(values, lambda value: (issued(value), value),
                      errors=(MpcidError, InvalidProof),
                      none=f"none of {len(values)} values under {show(key)} is valid")


#: The record kinds of sessions, for :class:`~mpcid.p2p.discovery.DiscoveryConfig`'s
#: ``kinds`` (and :class:`~mpcid.p2p.dht.DHTNode`'s).
def _session_kinds() -> Mapping[str, KindValidator]:
    from .inbox_pointer import INBOX_KIND, InboxKind

    return MappingProxyType({INVITATION_KIND: InvitationKind(), DECLINE_KIND: DeclineKind(),
                             INBOX_KIND: InboxKind()})


SESSION_KINDS: Mapping[str, KindValidator] = _session_kinds()


# --- on a started Discovery ----------------------------------------------------------------


class RecordStore(Protocol):
    """Where session records are published and fetched: a started
    :class:`~mpcid.p2p.discovery.Discovery`, or a session's
    :class:`~mpcid.broker.presence.Presence`."""

    clock: Callable[[], float]

    async def put_value(self, key: str, value: bytes) -> None: ...

    async def get_value(self, key: str) -> bytes | None: ...


async def publish_invitation(discovery: RecordStore, data: bytes) -> Invitation:
    """Publish the signed invitation ``data`` under its session id; return it. Raises the
    invitation's error if it is not valid now."""
    invitation = Invitation.verify(data, discovery.clock())
    await discovery.put_value(invitation_key(invitation.session_id), data)
    return invitation


async def fetch_invitation(discovery: RecordStore, session_id: str) -> bytes | None:
    """The signed invitation of ``session_id`` from the DHT (valid now), or None."""
    return await discovery.get_value(invitation_key(session_id))


async def publish_decline(discovery: RecordStore, key: Ed25519Key, invitation: Invitation,
                          reason: str, now: float) -> Decline:
    """Sign and publish ``key``'s decline of ``invitation`` (see :meth:`Decline.create`)."""
    decline, value = Decline.create(key, invitation, reason, now)
    await discovery.put_value(decline.key, value)
    return decline


async def fetch_decline(discovery: RecordStore, session_id: str, did: str) -> Decline | None:
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
