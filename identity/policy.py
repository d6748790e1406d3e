"""Credential policies: what a session demands of each party.

A requirement reads "a credential of TYPE, issued by one of ISSUERS, valid now, not
revoked, optionally with claims KEY=VALUE". Validity and revocation are established by
verifying the presentation (:func:`credentials.verify_presentation`, which checks every
contained credential against the clock and its status list); the policy then matches the
verified credentials, and when none fits says precisely why for the closest candidate.

A verifier facing someone else's presentation first runs :meth:`Policy.precheck` on the
credentials as presented (unverified): type, issuer, claims, subject = the holder at the
other end. Only what passes is verified, so a credential from an issuer nobody asked for
costs no DID resolution and no status list fetch (``specs/session.md`` 7.4). The policy
is evaluated again on the verified credentials: the pre-check decides nothing alone.

Text form (the CLI's ``--require``)::

    TYPE@ISSUER_DID[,ISSUER_DID...][;KEY=VALUE...]
    MembershipCredential@did:key:z6Mk...;organization=Acme

JSON form (inside invitations, ``specs/identity.md``)::

    {"type": "MembershipCredential", "issuers": ["did:key:z6Mk..."],
     "claims": {"organization": "Acme"}}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .credentials import VerifiedCredential, VerifiedPresentation, not_issued_to
from .datamodel import MAX_SUBJECTS, Subject, about, check_credential
from .did_key import parse_did
from .errors import (InvalidDID, MalformedCredential, PolicyNotSatisfied,
                     PresentationMismatch, UsageError)

_TERM = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
MAX_REQUIREMENTS = 16


class Described(Protocol):
    """What a requirement looks at: a verified credential, or one as presented."""

    @property
    def id(self) -> str | None: ...
    @property
    def types(self) -> tuple[str, ...]: ...
    @property
    def issuer(self) -> str: ...
    @property
    def claims(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Presented:
    """A credential as presented, read without verifying anything."""

    id: str | None
    types: tuple[str, ...]
    issuer: str
    claims: dict[str, Any]
    subject: str | None
    subjects: tuple[Subject, ...] = ()

    @classmethod
    def read(cls, document: Any) -> Presented:
        if not isinstance(document, dict):
            raise MalformedCredential("a credential must be a JSON object")
        issuer = document.get("issuer")
        issuer = issuer.get("id") if isinstance(issuer, dict) else issuer
        raw = document.get("credentialSubject")
        items = [s for s in (raw if isinstance(raw, list) else [raw]) if isinstance(s, dict)]
        subjects = tuple(Subject(s.get("id") if isinstance(s.get("id"), str) else None,
                                 {k: v for k, v in s.items() if k != "id"})
                         for s in items[:MAX_SUBJECTS]) or (Subject(None, {}),)
        types = document.get("type")
        types = types if isinstance(types, list) else [types]
        cid = document.get("id")
        return cls(cid if isinstance(cid, str) else None, tuple(str(t) for t in types),
                   str(issuer), subjects[0].claims, subjects[0].id, subjects)

    def about(self, did: str) -> Presented | None:
        """This credential read for ``did`` as its subject (None: not about ``did``)."""
        found = about(self.subjects, did)
        return None if found is None else replace(self, subject=did, claims=found.claims)


@dataclass(frozen=True)
class Requirement:
    credential_type: str
    issuers: tuple[str, ...]
    claims: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _TERM.fullmatch(self.credential_type):
            raise UsageError(f"{self.credential_type!r} is not a credential type name")
        if not self.issuers:
            raise UsageError("a requirement names at least one issuer DID")
        for issuer in self.issuers:
            try:
                parse_did(issuer)
            except InvalidDID:
                raise UsageError(f"requirement issuer {issuer!r} is not a DID") from None
        for key, _ in self.claims:
            if not _TERM.fullmatch(key):
                raise UsageError(f"{key!r} is not a claim name")

    @classmethod
    def parse(cls, text: str) -> Requirement:
        head, *claim_parts = text.split(";")
        ctype, sep, issuers = head.partition("@")
        if not sep or not ctype or not issuers:
            raise UsageError(f"{text!r} is not TYPE@ISSUER_DID[;KEY=VALUE]",
                             hint="e.g. MembershipCredential@did:key:z6Mk...;organization=Acme")
        claims = []
        for part in claim_parts:
            key, eq, value = part.partition("=")
            if not eq:
                raise UsageError(f"claim condition {part!r} is not KEY=VALUE")
            claims.append((key.strip(), value))
        return cls(ctype.strip(), tuple(i.strip() for i in issuers.split(",")), tuple(claims))

    def __str__(self) -> str:
        claims = "".join(f";{k}={v}" for k, v in self.claims)
        return f"{self.credential_type}@{','.join(self.issuers)}{claims}"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.credential_type, "issuers": list(self.issuers),
                "claims": dict(self.claims)}

    @classmethod
    def from_json(cls, value: Any) -> Requirement:
        if not isinstance(value, dict):
            raise UsageError("a requirement must be a JSON object")
        claims = value.get("claims", {})
        issuers = value.get("issuers")
        if (not isinstance(value.get("type"), str) or not isinstance(issuers, list)
                or not all(isinstance(i, str) for i in issuers) or not isinstance(claims, dict)
                or not all(isinstance(v, str) for v in claims.values())):
            raise UsageError("a requirement needs type (string), issuers (list of DIDs) and "
                             "optional claims (string values)")
        return cls(value["type"], tuple(issuers), tuple(sorted(claims.items())))

    def mismatch(self, credential: Described) -> str | None:
        """Why ``credential`` does not meet this requirement, or None if it does."""
        cid = credential.id or "(no id)"
        if self.credential_type not in credential.types:
            return f"credential {cid} is not a {self.credential_type}"
        if credential.issuer not in self.issuers:
            return (f"credential {cid} was issued by {credential.issuer}, not by "
                    f"{' or '.join(self.issuers)}")
        for key, expected in self.claims:
            got = credential.claims.get(key)
            if got != expected:
                return f"credential {cid} has {key}={got!r}, required {key}={expected!r}"
        return None


@dataclass(frozen=True)
class Policy:
    requirements: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        if len(self.requirements) > MAX_REQUIREMENTS:
            raise UsageError(f"at most {MAX_REQUIREMENTS} credential requirements")

    @classmethod
    def parse(cls, texts: list[str] | tuple[str, ...]) -> Policy:
        return cls(tuple(Requirement.parse(t) for t in texts))

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.requirements]

    @classmethod
    def from_json(cls, value: Any) -> Policy:
        if not isinstance(value, list):
            raise UsageError("a policy must be a JSON list of requirements")
        return cls(tuple(Requirement.from_json(v) for v in value))

    def evaluate(self, presentation: VerifiedPresentation
                 ) -> dict[Requirement, VerifiedCredential]:
        """Match each requirement to a presented credential, or raise
        :class:`PolicyNotSatisfied` naming the holder, the requirement and the reason."""
        return self._match(presentation.holder, presentation.credentials)

    def precheck(self, holder: str, documents: list[Any], *, expected: str) -> None:
        """The policy on a presentation as presented, before anything is verified: the
        holder is ``expected`` (the DID at the other end of the channel), every
        credential was issued to it and is one the policy asks for, and every
        requirement is met by one. Raises what :meth:`evaluate` would, or
        :class:`PresentationMismatch`."""
        if holder != expected:
            raise PresentationMismatch(f"it presented a presentation of {holder}, not its own")
        if len(documents) > max(len(self.requirements), 1):
            raise PolicyNotSatisfied(f"{holder} presented {len(documents)} credentials; the "
                                     f"session asks for {len(self.requirements)}")
        shapes = []
        for document in documents:
            check_credential(document)
            shape = Presented.read(document)
            held = shape.about(holder)
            if held is None:
                raise not_issued_to(holder, shape.id, shape.subject)
            shapes.append(held)
        matched = self._match(holder, shapes)
        for shape in shapes:
            if not any(m is shape for m in matched.values()):
                raise PolicyNotSatisfied(f"{holder} presented credential {shape.id}, which "
                                         "the session does not ask for")

    def _match(self, holder: str, credentials: Any) -> dict[Requirement, Any]:
        matched = {}
        for requirement in self.requirements:
            reasons = []
            for credential in credentials:
                reason = requirement.mismatch(credential)
                if reason is None:
                    matched[requirement] = credential
                    break
                reasons.append(reason)
            else:
                why = self._closest(requirement, reasons)
                raise PolicyNotSatisfied(
                    f"{holder} does not meet the requirement {requirement}: {why}")
        return matched

    @staticmethod
    def _closest(requirement: Requirement, reasons: list[str]) -> str:
        if not reasons:
            return "no credential was presented"
        typed = [r for r in reasons if "is not a " not in r]
        if not typed:
            return f"no credential of type {requirement.credential_type} was presented"
        return typed[0]
