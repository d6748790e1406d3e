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

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from mpcid.identity.errors import MpcidError, UsageError
from mpcid.identity.keystore import IdentityInfo, Keystore

from .errors import InvalidInvitation, InvitationConflict, InvitationNotFound, NotAParty
from .invitation import Invitation, decode_token
from .session_id import is_session_id

#: What a file given as an invitation may weigh (a 16 KiB invitation pretty-printed).
MAX_FILE_BYTES = 64 * 1024
#: Seconds a lookup of an invitation in the DHT may take.
DHT_TIMEOUT = 30.0

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


# --- receiving ---------------------------------------------------------------------------


def receive_invitation(keystore: Keystore, text: str, now: float,
                       bootstrap: Sequence[str] = (), *,
                       timeout: float = DHT_TIMEOUT) -> StoredInvitation:
    """A verified invitation, valid at ``now``, kept in ``keystore``'s invitation store.

    ``text`` is a token (``mpcid1:...``), the path of a file holding a token or the
    invitation JSON (pretty-printed or not), or a session id (32 hex digits): then the
    stored invitation, else the one the DHT holds, asked through ``bootstrap``. Raises
    the invitation's errors (invalid, bad signature, expired), :class:`InvitationNotFound`
    or :class:`~mpcid.p2p.errors.ConnectFailed`. Blocking: do not call it from a running
    event loop (use :func:`fetch_and_store` there).
    """
    store = InvitationStore(keystore)
    text = text.strip()
    if text.startswith("mpcid") and ":" in text[:12]:
        return store.add(Invitation.from_token(text, now), decode_token(text), "token", now)
    path = Path(text)
    if text and path.is_file():
        invitation, data = read_invitation_file(path, now)
        return store.add(invitation, data, "file", now)
    if is_session_id(text):
        stored = store.get(text)
        if stored is not None:
            Invitation.verify(stored.data, now)  # expired or not yet valid: say so
            return stored
        if not bootstrap:
            raise InvitationNotFound(
                f"invitation {text} is not in this keystore, and no DHT node was given to "
                "ask", hint="pass --bootstrap (or MPCID_BOOTSTRAP), or import its token")
        return asyncio.run(fetch_and_store(keystore, text, tuple(bootstrap), now,
                                           timeout=timeout))
    raise UsageError(f"{show_input(text)} is not an invitation token, a file or a session id",
                     hint="give the mpcid1:... token, the invitation file, or the 32-digit "
                          "session id")


def read_invitation_file(path: Path, now: float) -> tuple[Invitation, bytes]:
    """A file with a token or the signed JSON. JSON is brought back to its canonical form
    first (``mpcid invite --out`` writes it indented); the signature covers the content,
    not the layout, so nothing unsigned gets in."""
    from mpcid.p2p.signed import canonical_json, strict_json

    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}",
                         hint="give the path of the invitation file") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInvitation(f"{path} is larger than an invitation can be")
    text = raw.decode("utf-8", errors="replace").strip()
    if text.startswith("mpcid"):
        return Invitation.from_token(text, now), decode_token(text)
    obj = strict_json(raw, "invitation file", InvalidInvitation)
    try:
        data = canonical_json(obj)
    except (ValueError, UnicodeError):
        raise InvalidInvitation("invitation file holds a string that is not valid Unicode"
                                ) from None
    return Invitation.verify(data, now), data


async def fetch_and_store(keystore: Keystore, session_id: str, bootstrap: tuple[str, ...],
                          now: float, *, timeout: float = DHT_TIMEOUT) -> StoredInvitation:
    """Fetch ``session_id``'s invitation from the DHT, verify it at ``now`` and keep it."""
    from mpcid.identity.did_key import Ed25519Key

    from .session_records import fetch_invitation, session_dht

    async def fetch() -> bytes | None:
        # A throwaway host identity: reading needs none, and the DID key may be encrypted.
        async with session_dht(Ed25519Key.generate(), bootstrap) as discovery:
            return await fetch_invitation(discovery, session_id)

    data = await within(fetch(), timeout)
    if data is None:
        raise InvitationNotFound(f"the DHT holds no current invitation for session "
                                 f"{session_id}", hint="check the session id and --bootstrap, "
                                 "or ask the inviter for the token")
    invitation = Invitation.verify(data, now)
    store = InvitationStore(keystore)
    held = store.get(session_id)
    if held is not None and held.data != data:
        # Only the inviter can sign under this session id (it is derived from its DID),
        # but it may have signed another version; the one this party holds stays.
        raise InvitationConflict(
            f"the DHT holds another version of session {session_id}'s invitation from "
            f"{invitation.inviter} than the one you already have; yours was kept",
            hint="ask your inviter whether it changed the session")
    return store.add(invitation, data, "dht", now)


def inbox_sessions(store: InvitationStore, inviter: str, invitee: str, now: float
                   ) -> tuple[list[str], int]:
    """The session ids (newest first) of ``inviter``'s current invitations naming
    ``invitee``, and when the last of them expires: what its inbox pointer says."""
    current = [s for s in store.all() if s.invitation.inviter == inviter
               and invitee in s.invitation.parties[1:] and not s.expired(now)]
    current.sort(key=lambda s: -s.invitation.issued)
    return ([s.session_id for s in current][:16],
            max((s.invitation.expires for s in current), default=int(now) + 60))


async def publish_pointers(discovery: Any, key: Any, store: InvitationStore,
                           invitees: tuple[str, ...], now: float) -> None:
    """Point each invitee's inbox at this inviter's current invitations to it."""
    from .inbox_pointer import InboxPointer

    for invitee in invitees:
        sessions, expires = inbox_sessions(store, key.did.did, invitee, now)
        if sessions:
            pointer, value = InboxPointer.create(key, invitee, sessions, expires, now)
            await discovery.put_value(pointer.key, value)


async def check_inboxes(keystore: Keystore, bootstrap: tuple[str, ...], now: float, *,
                        inviters: tuple[str, ...], timeout: float = DHT_TIMEOUT
                        ) -> list[StoredInvitation]:
    """Look in the DHT for invitations to this keystore's identities from ``inviters``
    (its contacts: nobody else can put anything here), keep the new ones that verify,
    name the identity and were signed by that inviter; return them."""
    from mpcid.identity.did_key import Ed25519Key

    from .inbox_pointer import decode_pointer, inbox_key
    from .session_records import fetch_invitation, session_dht

    store = InvitationStore(keystore)
    mine = [info.did for info in keystore.identities()]
    found: list[StoredInvitation] = []

    async def one(discovery: Any, invitee: str, inviter: str) -> None:
        async with lookups:
            key = inbox_key(invitee, inviter)
            value = await discovery.get_value(key)
            try:
                pointer = decode_pointer(key, value, now) if value is not None else None
            except MpcidError:
                return
            for session_id in pointer.sessions if pointer is not None else ():
                if store.get(session_id) is not None:
                    continue
                data = await fetch_invitation(discovery, session_id)
                try:
                    invitation = Invitation.verify(data or b"", now)
                except MpcidError:
                    continue
                if invitation.inviter == inviter and invitee in invitation.parties:
                    found.append(store.add(invitation, data or b"", "inbox", now))

    async def look() -> None:
        async with session_dht(Ed25519Key.generate(), bootstrap) as discovery:
            await asyncio.gather(*(one(discovery, invitee, inviter)
                                   for invitee in mine for inviter in inviters
                                   if inviter != invitee and inviter.startswith("did:key:")))

    lookups = asyncio.Semaphore(8)  # a few at a time, for a long contact list
    await within(look(), timeout)
    return found


async def within(work: Any, timeout: float) -> Any:
    """``work``, or :class:`~mpcid.p2p.errors.ConnectFailed` when the DHT takes longer
    than ``timeout`` seconds."""
    from mpcid.p2p.errors import ConnectFailed

    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        raise ConnectFailed(f"the DHT did not answer within {timeout:g} s") from None


def invited_identity(keystore: Keystore, invitation: Invitation,
                      name: str | None) -> IdentityInfo:
    """The identity ``--as name`` names (which must be invited), or without a name the one
    identity of this keystore that is invited."""
    if name is not None:
        info = keystore.identity(name)
        invitation.index_of(info.did)  # NotAParty
        return info
    invited = [i for i in keystore.identities() if invitation.is_party(i.did)]
    if not invited:
        raise NotAParty(f"none of your identities is invited to session "
                        f"{invitation.session_id}", hint="check `mpcid did list`")
    if len(invited) > 1:
        raise UsageError(f"several of your identities are invited to session "
                         f"{invitation.session_id}: "
                         + ", ".join(repr(i.name) for i in invited),
                         hint="choose one with --as NAME")
    return invited[0]


def show_input(text: str) -> str:
    """What a user typed, quoted and shortened, with control characters escaped."""
    text = text.encode("unicode_escape").decode("ascii")
    return repr(text if len(text) <= 60 else text[:57] + "...")
