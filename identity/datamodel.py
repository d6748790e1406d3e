"""The rules of the VC Data Model that hold on the JSON alone (``specs/identity.md`` 3.5).

Every MUST of VC Data Model 2.0 (and the matching ones of 1.1) that a verifier can check
without fetching anything: contexts, identifiers, types, names and descriptions, the
issuer, the subjects, the validity period, and the shape of ``credentialStatus``,
``credentialSchema``, ``refreshService``, ``termsOfUse``, ``evidence`` and
``relatedResource``. The same functions run before signing, so that mpcid never issues a
credential that it, or another verifier, would refuse.

Sans-IO and cheap (linear in the size of the document): the verifier runs them before any
signature is checked or anything is resolved or fetched. What needs the JSON-LD context
(that every term maps to a URL and every statement is signed) is checked by
:mod:`jsonld`, and proofs by :mod:`dataintegrity`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .dataintegrity import parse_datetime
from .errors import MalformedCredential

VC_V2 = "https://www.w3.org/ns/credentials/v2"
VC_V1 = "https://www.w3.org/2018/credentials/v1"
MAX_SUBJECTS = 16
"""A credential speaks about at most this many subjects."""
MAX_ITEMS = 16
"""At most this many entries in each of credentialStatus, evidence, termsOfUse, ..."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20<>\"{}|^`\\]+")
# XML Schema dateTimeStamp: a dateTime whose time zone is required.
_DATE_TIME_STAMP = re.compile(
    r"-?[0-9]{4,}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"(Z|z|[+-][0-9]{2}:[0-9]{2})")
_LANGUAGE_KEYS = {"@value", "@language", "@direction"}
# property -> whether each of its objects needs an id (VC 2.0; 1.1 differs, see below)
_TYPED: dict[str, bool] = {"credentialStatus": False, "credentialSchema": True,
                           "refreshService": False, "termsOfUse": False, "evidence": False}


@dataclass(frozen=True)
class Subject:
    """One object of ``credentialSubject``: the entity it is about and its claims."""

    id: str | None
    claims: dict[str, Any]


def check_credential(document: Any) -> str:
    """Refuse a credential that breaks a rule of its data model; return its version,
    ``"2.0"`` or ``"1.1"``."""
    if not isinstance(document, dict):
        raise MalformedCredential("a credential must be a JSON object")
    version = _context(document, "credential")
    _identifier(document, "id", "the credential's id")
    _types(document, "VerifiableCredential", "credential")
    _names(document, "credential")
    _issuer(document)
    subjects(document)
    _validity(document, version)
    for prop in _TYPED:
        _typed_objects(document, prop, version)
    _related_resources(document)
    return version


def check_presentation(document: Any) -> str:
    """Refuse a presentation that breaks a rule of its data model (its credentials are
    checked one by one with :func:`check_credential`); return its version."""
    if not isinstance(document, dict):
        raise MalformedCredential("a presentation must be a JSON object")
    version = _context(document, "presentation")
    _identifier(document, "id", "the presentation's id")
    _types(document, "VerifiablePresentation", "presentation")
    if "holder" in document:
        _url_or_object(document["holder"], "holder")
    for prop in ("termsOfUse", "evidence", "refreshService"):
        _typed_objects(document, prop, version)
    for item in _as_list(document.get("verifiableCredential", [])):
        if not isinstance(item, dict):
            raise MalformedCredential(
                "verifiableCredential must hold credential objects, not strings or numbers",
                hint="embed each credential as a JSON object")
        if "EnvelopedVerifiableCredential" in _as_list(item.get("type")):
            raise MalformedCredential(
                "enveloped credentials (VC-JOSE-COSE) are not supported",
                hint="present credentials secured with a Data Integrity proof")
    return version


def subjects(document: dict[str, Any]) -> tuple[Subject, ...]:
    """The credential's subjects: ``credentialSubject`` is one object or a list of them,
    each of which says something (an empty object is a subject of no claim)."""
    if "credentialSubject" not in document:
        raise MalformedCredential("the credential has no credentialSubject")
    raw = document["credentialSubject"]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise MalformedCredential("credentialSubject is an empty list")
    if len(items) > MAX_SUBJECTS:
        raise MalformedCredential(f"the credential has {len(items)} subjects; at most "
                                  f"{MAX_SUBJECTS} are accepted")
    found = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedCredential("each credentialSubject must be a JSON object")
        if not item:
            raise MalformedCredential("a credentialSubject is empty: it makes no claim",
                                      hint="a subject needs its id or at least one claim")
        _identifier(item, "id", "the credentialSubject's id")
        subject_id = item.get("id")
        found.append(Subject(subject_id if isinstance(subject_id, str) else None,
                             {k: v for k, v in item.items() if k != "id"}))
    return tuple(found)


def about(found: tuple[Subject, ...], did: str) -> Subject | None:
    """What the credential says about ``did``: the claims of every subject object with
    that id, merged (None if it says nothing about ``did``). A claim that two objects
    give different values is kept as the list of both, which matches no single value."""
    mine = [s for s in found if s.id == did]
    if not mine:
        return None
    claims: dict[str, Any] = {}
    for subject in mine:
        for key, value in subject.claims.items():
            if key in claims and claims[key] != value:
                previous = claims[key]
                claims[key] = [*(previous if isinstance(previous, list) else [previous]),
                               value]
            else:
                claims[key] = value
    return Subject(did, claims)


# --- the rules ----------------------------------------------------------------------------


def _context(document: dict[str, Any], what: str) -> str:
    if "@context" not in document:
        raise MalformedCredential(f"the {what} has no @context")
    context = document["@context"]
    items = context if isinstance(context, list) else [context]
    first = items[0] if items else None
    if first == VC_V2:
        version = "2.0"
    elif first == VC_V1:
        version = "1.1"
    else:
        raise MalformedCredential(f"the first @context must be {VC_V2} or {VC_V1}")
    for item in items[1:]:
        if isinstance(item, str):
            if not _URL.fullmatch(item):
                raise MalformedCredential(f"the @context entry {item!r} is not a URL")
        elif not isinstance(item, dict):
            raise MalformedCredential("each @context entry must be a URL or an object")
    return version


def _identifier(node: dict[str, Any], key: str, what: str) -> None:
    if key in node and not (isinstance(node[key], str) and _URL.fullmatch(node[key])):
        raise MalformedCredential(f"{what} {node[key]!r} is not a single URL",
                                  hint="an id is a URL, a DID or a URN such as urn:uuid:...")


def _types(document: dict[str, Any], required: str, what: str) -> tuple[str, ...]:
    raw = document.get("type")
    types = raw if isinstance(raw, list) else [raw]
    if not types or not all(isinstance(t, str) and t for t in types) or required not in types:
        raise MalformedCredential(f"the {what}'s type must include {required}")
    return tuple(types)


def _names(document: dict[str, Any], what: str) -> None:
    issuer = document.get("issuer")
    for node, owner in ((document, what), (issuer, "issuer")):
        if not isinstance(node, dict):
            continue
        for key in ("name", "description"):
            if key in node and not _language_values(node[key]):
                raise MalformedCredential(
                    f"the {owner}'s {key} must be a string or language value objects "
                    "(@value, @language, @direction)")


def _language_values(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str):
            continue
        if (not isinstance(item, dict) or not isinstance(item.get("@value"), str)
                or not set(item) <= _LANGUAGE_KEYS
                or not all(isinstance(item[k], str) for k in item)):
            return False
    return bool(items)


def _issuer(document: dict[str, Any]) -> None:
    if "issuer" not in document:
        raise MalformedCredential("the credential names no issuer")
    _url_or_object(document["issuer"], "issuer")


def _url_or_object(value: Any, what: str) -> None:
    target = value.get("id") if isinstance(value, dict) else value
    if not isinstance(target, str) or not _URL.fullmatch(target):
        raise MalformedCredential(f"the {what} must be a URL or an object whose id is a URL")


def _validity(document: dict[str, Any], version: str) -> None:
    if version == "2.0":
        keys = ("validFrom", "validUntil")
        for key in keys:
            value = document.get(key)
            if key in document and not (isinstance(value, str)
                                        and _DATE_TIME_STAMP.fullmatch(value)):
                raise MalformedCredential(
                    f"{key} {value!r} is not a date-time with a time zone",
                    hint="e.g. 2026-01-31T12:00:00Z")
        if all(key in document for key in keys):
            start, end = (parse_datetime(document[key], key) for key in keys)
            if start > end:
                raise MalformedCredential(
                    f"validUntil {document['validUntil']} is before validFrom "
                    f"{document['validFrom']}")
    elif "issuanceDate" not in document:
        raise MalformedCredential("a VC 1.1 credential must have an issuanceDate")


def _typed_objects(document: dict[str, Any], prop: str, version: str) -> None:
    if prop not in document:
        return
    needs_id = _TYPED[prop]
    if version == "1.1" and prop in ("credentialStatus", "refreshService"):
        needs_id = True
    items = _as_list(document[prop])
    if not items:
        raise MalformedCredential(f"{prop} is empty")
    if len(items) > MAX_ITEMS:
        raise MalformedCredential(f"{prop} has {len(items)} entries; at most {MAX_ITEMS}")
    for item in items:
        if not isinstance(item, dict):
            raise MalformedCredential(f"each {prop} entry must be a JSON object")
        types = item.get("type")
        types = types if isinstance(types, list) else [types]
        if not types or not all(isinstance(t, str) and t for t in types):
            raise MalformedCredential(f"an entry of {prop} has no type",
                                      hint=f"VC 2.0 requires a type on each entry of {prop}")
        if needs_id and "id" not in item:
            raise MalformedCredential(f"an entry of {prop} has no id",
                                      hint=f"VC 2.0 requires an id on each entry of {prop}")
        _identifier(item, "id", f"the id in {prop}")


def _related_resources(document: dict[str, Any]) -> None:
    if "relatedResource" not in document:
        return
    items = _as_list(document["relatedResource"])
    if not items or len(items) > MAX_ITEMS:
        raise MalformedCredential(f"relatedResource must hold 1 to {MAX_ITEMS} objects")
    seen = set()
    for item in items:
        if not isinstance(item, dict) or "id" not in item:
            raise MalformedCredential("each relatedResource must be an object with an id")
        _identifier(item, "id", "the related resource's id")
        if item["id"] in seen:
            raise MalformedCredential(f"relatedResource names {item['id']} twice")
        seen.add(item["id"])
        if not any(isinstance(item.get(k), str) for k in ("digestSRI", "digestMultibase")):
            raise MalformedCredential(f"the related resource {item['id']} has no digestSRI "
                                      "or digestMultibase")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
