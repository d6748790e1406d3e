"""What an issuer's keystore remembers of the credentials it issued, and their state.

``mpcid credential issue`` keeps a copy of every credential it signs (document kind
``issued``), so that an organisation can list what it issued and revoke one by its id
(``mpcid credential issued``, ``mpcid credential revoke ID``, the page). A credential's
state is read from what this keystore knows: its validity period, and its bit in the
status list the keystore hosts; a list hosted elsewhere leaves it ``unknown``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .errors import MpcidError, StatusCheckFailed
from .keystore import Keystore
from .statuslist import Bitstring, read_index

KIND = "issued"


def status_list_id(url: str) -> str:
    """The keystore id of the hosted status list published at ``url``."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def document_id(document: dict[str, Any]) -> str:
    """The keystore id of a credential: a short hash of its canonical JSON."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


@dataclass(frozen=True)
class IssuedCredential:
    doc_id: str
    document: dict[str, Any]
    state: str
    """``valid``, ``expired``, ``not yet valid``, ``revoked``, ``suspended`` or
    ``unknown`` (its status list is not hosted here)."""
    status: str | None
    """``URL#INDEX`` of its status entry, if it has one."""

    @property
    def types(self) -> list[str]:
        raw = self.document.get("type")
        types = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        return [str(t) for t in types if t != "VerifiableCredential"]

    @property
    def subject(self) -> str:
        raw = self.document.get("credentialSubject")
        first = raw[0] if isinstance(raw, list) and raw else raw
        return str(first.get("id", "")) if isinstance(first, dict) else ""

    @property
    def claims(self) -> dict[str, str]:
        raw = self.document.get("credentialSubject")
        first = raw[0] if isinstance(raw, list) and raw else raw
        if not isinstance(first, dict):
            return {}
        return {str(k): str(v) for k, v in first.items() if k != "id"}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.doc_id, "credential_id": self.document.get("id"),
                "types": self.types, "subject": self.subject, "claims": self.claims,
                "issued": self.document.get("validFrom"),
                "expires": self.document.get("validUntil"), "state": self.state,
                "status": self.status}


def keep_issued(keystore: Keystore, credential: dict[str, Any]) -> str:
    """Remember a credential this keystore signed; its keystore id."""
    doc_id = document_id(credential)
    keystore.put_document(KIND, doc_id, credential)
    return doc_id


def issued(keystore: Keystore, now: dt.datetime) -> list[IssuedCredential]:
    """Every credential this keystore issued, with its state at ``now``, newest first."""
    lists: dict[str, Bitstring | None] = {}
    out = []
    for doc_id, document in keystore.documents(KIND):
        state, status = _state(keystore, document, now, lists)
        out.append(IssuedCredential(doc_id, document, state, status))
    return sorted(out, key=lambda c: (str(c.document.get("validFrom", "")), c.doc_id),
                  reverse=True)


def _state(keystore: Keystore, document: dict[str, Any], now: dt.datetime,
           lists: dict[str, Bitstring | None]) -> tuple[str, str | None]:
    entry = document.get("credentialStatus")
    entry = entry[0] if isinstance(entry, list) and entry else entry
    status = None
    if isinstance(entry, dict) and isinstance(entry.get("statusListCredential"), str):
        url = entry["statusListCredential"]
        try:
            index = read_index(entry)
        except StatusCheckFailed:
            return "unknown", None
        status = f"{url}#{index}"
        if url not in lists:
            record = keystore.get_document("statuslists", status_list_id(url))
            try:
                lists[url] = Bitstring.decode(
                    record["credential"]["credentialSubject"]["encodedList"]) \
                    if record else None
            except (KeyError, TypeError, ValueError, MpcidError):
                lists[url] = None
        bits = lists[url]
        if bits is None or index >= len(bits):
            return "unknown", status
        if bits.get(index):
            purpose = entry.get("statusPurpose")
            return ("suspended" if purpose == "suspension" else "revoked"), status
    start, end = parse_time(document.get("validFrom")), parse_time(document.get("validUntil"))
    if end is not None and end <= now:
        return "expired", status
    if start is not None and start > now:
        return "not yet valid", status
    return "valid", status


def parse_time(value: object) -> dt.datetime | None:
    """An ISO 8601 date-time as written in a credential (``Z`` or an offset; none means
    UTC), or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
