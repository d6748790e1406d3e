"""Contacts: names a person gives to other people's DIDs, kept in the keystore.

``mpcid contacts add bob did:key:z6Mk...`` lets every command take ``bob`` where it takes
a DID (``invite --did bob``, a requirement's issuers ``MembershipCredential@acme``,
``credential issue --subject bob``), and lets messages, tables and the page say
``bob (did:key:z6Mk…)`` instead of the bare DID. The name is local to this keystore:
nothing signed or sent ever carries it (invitations, records and transcripts hold DIDs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from .did_key import DIDKey, parse_did
from .errors import KeystoreError, UsageError
from .keystore import atomic_write

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
MAX_CONTACTS = 10_000


class Contacts:
    """The contacts of one keystore (``contacts.json`` in its folder)."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "contacts.json"

    def all(self) -> dict[str, str]:
        """Name -> DID, sorted by name (empty when there are none)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"cannot read the contacts {self.path}: {exc}",
                                hint="fix or remove the file") from None
        if not isinstance(raw, dict):
            raise KeystoreError(f"the contacts {self.path} are not a JSON object",
                                hint="fix or remove the file")
        return {str(k): str(v) for k, v in sorted(raw.items())}

    def add(self, name: str, did: str) -> None:
        if not NAME.fullmatch(name) or name.startswith("did"):
            raise UsageError(f"{name[:70]!r} cannot be a contact's name",
                             hint="a letter, then letters, digits, '.', '_' or '-' (not "
                                  "starting with 'did')")
        did = checked_did(did)
        known = self.all()
        if name in known and known[name] != did:
            raise UsageError(f"contact {name} is {known[name]} already",
                             hint=f"remove it first with `mpcid contacts remove {name}`")
        if len(known) >= MAX_CONTACTS:
            raise UsageError(f"this keystore holds {MAX_CONTACTS} contacts already")
        known[name] = did
        self._write(known)

    def remove(self, name: str) -> None:
        known = self.all()
        if name not in known:
            raise UsageError(f"no contact named {name[:70]!r}",
                             hint="see `mpcid contacts list`")
        del known[name]
        self._write(known)

    def did_of(self, name_or_did: str) -> str:
        """The DID a command was given: a DID as it is, a contact's name as its DID."""
        text = name_or_did.strip()
        if text.startswith("did:"):
            return text
        known = self.all()
        if text in known:
            return known[text]
        raise UsageError(f"{text[:70]!r} is neither a DID nor one of your contacts",
                         hint=f"add it with `mpcid contacts add {text[:30] or 'NAME'} DID`, "
                              "or give the DID")

    def requirement(self, text: str) -> str:
        """A requirement ``TYPE@ISSUER[,ISSUER...][;K=V...]`` with contacts' names among
        its issuers replaced by their DIDs (the rest is left for the policy to check)."""
        head, sep, claims = text.partition(";")
        ctype, at, issuers = head.partition("@")
        if not at or not issuers:
            return text
        dids = ",".join(self.did_of(i) if i.strip() else i for i in issuers.split(","))
        return f"{ctype}@{dids}{sep}{claims}"

    def names(self) -> dict[str, str]:
        """DID -> name (the first name, if a DID has several)."""
        out: dict[str, str] = {}
        for name, did in self.all().items():
            out.setdefault(did, name)
        return out

    def _write(self, known: Mapping[str, str]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path, (json.dumps(dict(known), indent=2, sort_keys=True)
                                 + "\n").encode(), mode=0o600)


def checked_did(did: str) -> str:
    """A DID fit to be a contact: did:key ones must decode to an Ed25519 key."""
    did = parse_did(did.strip())
    if did.startswith("did:key:"):
        DIDKey.parse(did)
    return did


def named(did: str, names: Mapping[str, str]) -> str:
    """``bob (did:key:...)`` when ``did`` is a contact, else the DID."""
    name = names.get(did)
    return f"{name} ({did})" if name else did
