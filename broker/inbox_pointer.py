"""Inbox pointers: an inviter tells an invitee, through the DHT, which of its sessions
invite it (``specs/session.md`` 8.5).

``/mpcid/inbox/<invitee did:key>/<inviter did:key>`` holds one small object signed by the
inviter: the session ids (at most :data:`MAX_SESSIONS`, newest first) of its current
invitations that name the invitee. An invitee looks only under the inviters it knows (its
contacts), so nobody else can fill its inbox: an unknown inviter still hands over a token
or a session id. The pointer proves nothing about the sessions themselves; the reader
fetches each invitation by session id and keeps it only if it verifies, names the reader
and was signed by that inviter.

Sans-IO: rules with time passed in; publishing and reading are thin helpers on a
:class:`~mpcid.broker.session_records.RecordStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.errors import InvalidRecord
from mpcid.p2p.records import kind_key, kind_of
from mpcid.p2p.signed import (SignedContent, check_canonical, check_members, open_document,
                              read_did, read_integer, read_signature, show)

from .errors import InvalidInboxPointer
from .session_id import is_session_id

INBOX_KIND = "inbox"
INBOX_VERSION = 1
#: Domain separation from every other mpcid signature.
INBOX_DOMAIN = b"mpcid-inbox/1\n"
MAX_SESSIONS = 16
MAX_INBOX_BYTES = 2048
MAX_INBOX_TTL = 30 * 86400
MAX_CLOCK_SKEW = 300
_FIELDS = ("v", "invitee", "inviter", "sessions", "issued", "expires", "sig")


def inbox_key(invitee: str, inviter: str) -> str:
    """``/mpcid/inbox/<invitee>/<inviter>``."""
    for did in (invitee, inviter):
        read_did(did, subject=show(did), error=InvalidRecord)
    return kind_key(INBOX_KIND, f"{invitee}/{inviter}")


@dataclass(frozen=True)
class InboxPointer(SignedContent):
    invitee: str
    inviter: str
    """Signs the pointer."""
    sessions: tuple[str, ...]
    """Session ids, newest first, at most :data:`MAX_SESSIONS`."""
    issued: int
    expires: int

    _domain, _what, _error = INBOX_DOMAIN, "inbox pointer", InvalidInboxPointer

    @classmethod
    def create(cls, key: Ed25519Key, invitee: str, sessions: Sequence[str], expires: int,
               now: float) -> tuple[InboxPointer, bytes]:
        issued = int(now)
        expires = max(issued + 60, min(expires, issued + MAX_INBOX_TTL))
        pointer = cls(invitee, key.did.did, tuple(sessions)[:MAX_SESSIONS], issued, expires)
        value = pointer.sign(key)
        return decode_pointer(pointer.key, value, now), value

    @property
    def key(self) -> str:
        return inbox_key(self.invitee, self.inviter)

    def content(self) -> dict[str, Any]:
        return {"v": INBOX_VERSION, "invitee": self.invitee, "inviter": self.inviter,
                "sessions": list(self.sessions), "issued": self.issued,
                "expires": self.expires}

    @property
    def signer_did(self) -> str:
        return self.inviter


def decode_pointer(key: str, value: bytes, now: float) -> InboxPointer:
    """Check a pointer found under ``key`` at ``now``: form, key, signature, time."""
    parsed = kind_of(key)
    if parsed is None or parsed[0] != INBOX_KIND:
        raise InvalidRecord(f"DHT key {show(key)} is not an inbox key")
    invitee, sep, inviter = parsed[1].partition("/")
    obj = open_document(value, what="inbox pointer", max_bytes=MAX_INBOX_BYTES,
                        version=INBOX_VERSION, error=InvalidInboxPointer)
    check_members(obj, _FIELDS, what="inbox pointer", error=InvalidInboxPointer)
    sessions = obj["sessions"]
    if not isinstance(sessions, list) or len(sessions) > MAX_SESSIONS or not all(
            is_session_id(s) for s in sessions) or len(set(sessions)) != len(sessions):
        raise InvalidInboxPointer(f"inbox pointer \"sessions\" is not a list of at most "
                                  f"{MAX_SESSIONS} different session ids")
    pointer = InboxPointer(
        read_did(obj["invitee"], subject="invitee", error=InvalidInboxPointer)
        if isinstance(obj["invitee"], str) else "",
        read_did(obj["inviter"], subject="inviter", error=InvalidInboxPointer)
        if isinstance(obj["inviter"], str) else "",
        tuple(sessions),
        *(read_integer(obj, n, what="inbox pointer", error=InvalidInboxPointer)
          for n in ("issued", "expires")))
    signature = read_signature(obj, what="inbox pointer", error=InvalidInboxPointer)
    check_canonical(obj, value, what="inbox pointer", error=InvalidInboxPointer)
    if not sep or (pointer.invitee, pointer.inviter) != (invitee, inviter):
        raise InvalidInboxPointer("inbox pointer is stored under the key of other parties")
    if not 0 < pointer.expires - pointer.issued <= MAX_INBOX_TTL:
        raise InvalidInboxPointer("inbox pointer lifetime is not within 1 s .. 30 days")
    pointer.verify_signature(signature)  # the opaque InvalidProof
    if pointer.issued > now + MAX_CLOCK_SKEW or pointer.expires <= now:
        raise InvalidInboxPointer("inbox pointer is not valid now")
    return pointer


class InboxKind:
    """Rules of ``/mpcid/inbox/<invitee>/<inviter>`` (:func:`decode_pointer`); the newest
    ``issued`` wins."""

    def validate(self, key: str, value: bytes, now: float) -> None:
        decode_pointer(key, value, now)

    def select(self, key: str, values: Sequence[bytes], now: float) -> int:
        from .session_records import _select

        return _select(key, values, lambda v: decode_pointer(key, v, now).issued)
