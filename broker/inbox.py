"""The invitations that reached this keystore, and what their invitee made of them.

An invitation reaches a party by any means (token, file, the DHT by session id, or the
``mpcid invite`` that created it). Every invitation a command verifies is kept under
``<home>/invitations/<session>.json``, together with its state for this keystore:

``received`` (not acted on yet), ``accepted`` (a join started), ``declined``,
``completed`` / ``failed`` (how this party's run ended).

The stored invitation is the signed JSON exactly as received; it is verified again on
every read (signature and form; its time window is reported, not enforced, so that an
expired invitation can still be listed and explained).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from mpcid.identity.errors import MpcidError
from mpcid.identity.keystore import Keystore

from .invitation import Invitation
from .session_id import is_session_id

KIND = "invitations"
STATES = ("received", "accepted", "declined", "completed", "failed")


@dataclass(frozen=True)
class StoredInvitation:
    invitation: Invitation
    data: bytes
    """The signed invitation JSON, as received."""
    state: str
    source: str
    """How it arrived: created, token, file, dht."""
    received: float
    updated: float
    reason: str
    """Why it was declined or how the run failed ('' otherwise)."""

    @property
    def session_id(self) -> str:
        return self.invitation.session_id

    def expired(self, now: float) -> bool:
        return self.invitation.expires <= now

    def to_json(self, my_dids: Iterable[str] = (), now: float | None = None
                ) -> dict[str, object]:
        """A summary for people and for the web page's API."""
        now = time.time() if now is None else now
        inv = self.invitation
        mine = [did for did in my_dids if inv.is_party(did)]
        return {
            "session": inv.session_id, "name": inv.name, "inviter": inv.inviter, "parties": list(inv.parties),
            "program": inv.program_name, "program_sha256": inv.program_sha256.hex(),
            "threshold": inv.threshold, "no_prss": inv.no_prss,
            "requirements": [str(r) for r in inv.requirements.requirements],
            "issued": inv.issued, "expires": inv.expires, "expired": self.expired(now),
            "state": self.state, "source": self.source, "reason": self.reason,
            "my_indexes": {did: inv.index_of(did) for did in mine},
            "token": inv.token(),
        }


class InvitationStore:
    """Invitations kept in a keystore folder."""

    def __init__(self, keystore: Keystore) -> None:
        self.keystore = keystore

    def add(self, invitation: Invitation, data: bytes, source: str,
            now: float | None = None) -> StoredInvitation:
        """Keep ``invitation`` (already verified); an invitation already kept keeps its
        state, so receiving it twice does not undo a decline."""
        existing = self.get(invitation.session_id)
        if existing is not None and existing.data == data:
            return existing
        now = time.time() if now is None else now
        stored = StoredInvitation(invitation, data, "received", source, now, now, "")
        self._write(stored)
        return stored

    def get(self, session_id: str) -> StoredInvitation | None:
        if not is_session_id(session_id):
            return None
        raw = self.keystore.get_document(KIND, session_id)
        return None if raw is None else _load(raw)

    def all(self) -> list[StoredInvitation]:
        """Every kept invitation that still verifies, newest first."""
        out = []
        for _, raw in self.keystore.documents(KIND):
            stored = _load(raw)
            if stored is not None:
                out.append(stored)
        return sorted(out, key=lambda s: (-s.invitation.issued, s.session_id))

    def addressed_to(self, dids: Iterable[str]) -> list[StoredInvitation]:
        wanted = set(dids)
        return [s for s in self.all() if wanted & set(s.invitation.parties)]

    def set_state(self, session_id: str, state: str, reason: str = "",
                  now: float | None = None) -> StoredInvitation | None:
        if state not in STATES:
            raise ValueError(state)
        stored = self.get(session_id)
        if stored is None:
            return None
        now = time.time() if now is None else now
        stored = StoredInvitation(stored.invitation, stored.data, state, stored.source,
                                  stored.received, now, reason[:500])
        self._write(stored)
        return stored

    def _write(self, stored: StoredInvitation) -> None:
        self.keystore.put_document(KIND, stored.session_id, {
            "invitation": stored.data.decode(), "state": stored.state,
            "source": stored.source, "received": stored.received,
            "updated": stored.updated, "reason": stored.reason})


def _load(raw: dict[str, object]) -> StoredInvitation | None:
    """A stored entry, verified again; None if it is damaged or no longer verifies."""
    try:
        data = str(raw["invitation"]).encode()
        # Verify signature and form at the invitation's own issue time: the window is
        # reported by StoredInvitation.expired, not enforced when listing.
        probe = Invitation.verify(data, float(_issued(data)))
        state = str(raw.get("state", "received"))
        return StoredInvitation(
            probe, data, state if state in STATES else "received",
            str(raw.get("source", "")), float(raw.get("received", 0) or 0),  # type: ignore[arg-type]
            float(raw.get("updated", 0) or 0), str(raw.get("reason", "")))  # type: ignore[arg-type]
    except (MpcidError, KeyError, ValueError, TypeError):
        return None


def _issued(data: bytes) -> int:
    import json

    value = json.loads(data).get("issued")
    if not isinstance(value, int):
        raise ValueError("issued")
    return value
