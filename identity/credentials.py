"""Issue and verify credentials and presentations (our profile of VC Data Model 2.0).

Issuing is synchronous and offline. Verifying is ``async`` only because it may resolve a
did:web issuer and fetch a status list; the checks themselves are the sans-IO functions of
:mod:`dataintegrity` and :mod:`statuslist`. Checks run in a fixed order so that the error
a user sees is the most fundamental one: shape, signature, issuer, validity period, status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import compact
from . import dataintegrity as di
from . import datamodel as dm
from . import legacy
from .did_key import Ed25519Key, parse_did
from .errors import (CredentialError, CredentialExpired, CredentialNotYetValid,
                     CredentialRevoked, InvalidDID, InvalidProof, MalformedCredential,
                     PresentationMismatch, StatusCheckFailed)
from .jsonld import UNDEFINED_TERMS_CONTEXT, ContextLoader
from .resolver import DIDResolver, UniversalResolver, verification_key
from .statuslist import PURPOSES, Bitstring, StatusSource, read_index

VC_V2 = dm.VC_V2
VC_V1 = dm.VC_V1
STATUS_ENTRY_TYPES = ("BitstringStatusListEntry", "StatusList2021Entry")
STATUS_LIST_TYPES = ("BitstringStatusListCredential", "StatusList2021Credential")
MAX_STATUS_ENTRIES = 4
"""A credential names at most this many status lists (each one is a fetch)."""

Precheck = Callable[[str, list[Any]], None]
"""Called with the holder a presentation names and its credentials, unverified, before
anything is resolved or fetched; raises to refuse (e.g. the session's policy)."""


@dataclass(frozen=True)
class VerifyConfig:
    """Everything verification depends on besides the document itself."""

    loader: ContextLoader = field(default_factory=ContextLoader)
    """JSON-LD contexts: the shipped ones plus those given with --context."""
    resolver: DIDResolver = field(default_factory=UniversalResolver)
    """Resolves issuer and holder DIDs (did:key locally, did:web over HTTPS)."""
    status: StatusSource | None = None
    """Where status lists come from; None skips status checks (only when asked to)."""
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    """The time against which validity periods are checked."""
    status_max_age: dt.timedelta | None = None
    """A status list credential without ``validUntil`` must have been signed
    (``validFrom``) at most this long before ``now``; None accepts any age. Without a
    bound, serving an older signed list (from before a revocation) would make a revoked
    credential valid again (``specs/identity.md`` 6)."""
    status_lists: dict[tuple[str, str], asyncio.Future[VerifiedCredential]] | None = None
    """Status lists fetched and verified so far, by (URL, issuer), for verifiers that check
    many documents at about the same time: the parties of one session, whose credentials
    name one issuer's list, then cost one fetch and one verification instead of one each
    (a failure too is remembered: the same list fails the same way). None: every
    credential's lists are fetched and verified anew. Copies made with
    ``dataclasses.replace`` share it; give each session its own."""


@dataclass(frozen=True)
class VerifiedCredential:
    id: str | None
    types: tuple[str, ...]
    issuer: str
    subject: str | None
    """The subject this credential is read for: its only (or first) subject, or after
    :meth:`about` the holder."""
    claims: dict[str, Any]
    """What the credential says about ``subject``."""
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    proof: di.VerifiedProof
    document: dict[str, Any]
    subjects: tuple[dm.Subject, ...] = ()
    """Every object of ``credentialSubject`` (VC 2.0 allows several)."""

    def about(self, did: str) -> VerifiedCredential | None:
        """This credential read for ``did`` as its subject, or None if it says nothing
        about ``did``."""
        found = dm.about(self.subjects, did)
        return None if found is None else replace(self, subject=did, claims=found.claims)


@dataclass(frozen=True)
class VerifiedPresentation:
    holder: str
    challenge: str | None
    domain: str | None
    credentials: tuple[VerifiedCredential, ...]
    proof: di.VerifiedProof


# --- issuing ------------------------------------------------------------------------------


def build_credential(*, issuer: str, subject: str, credential_type: str,
                     claims: dict[str, Any] | None = None, valid_from: dt.datetime,
                     valid_until: dt.datetime | None = None,
                     status: tuple[str, int] | None = None,
                     status_purpose: str = "revocation",
                     credential_id: str | None = None) -> dict[str, Any]:
    """An unsigned VC 2.0 credential in our profile (claims defined by the mpcid context)."""
    parse_did(issuer)
    parse_did(subject)
    claims = dict(claims or {})
    if "id" in claims:
        raise MalformedCredential("a claim may not be named 'id' (that is the subject DID)")
    types = ["VerifiableCredential"]
    if credential_type != "VerifiableCredential":
        types.append(credential_type)
    document: dict[str, Any] = {
        "@context": [VC_V2, UNDEFINED_TERMS_CONTEXT],
        "id": credential_id or f"urn:uuid:{uuid.uuid4()}",
        "type": types,
        "issuer": issuer,
        "validFrom": di.isoformat(valid_from),
    }
    if valid_until is not None:
        if valid_until <= valid_from:
            raise MalformedCredential("the expiry must be after the start of validity")
        document["validUntil"] = di.isoformat(valid_until)
    document["credentialSubject"] = {"id": subject, **claims}
    if status is not None:
        url, index = status
        document["credentialStatus"] = {
            "id": f"{url}#{index}", "type": "BitstringStatusListEntry",
            "statusPurpose": status_purpose, "statusListIndex": str(index),
            "statusListCredential": url}
    return document


def sign_credential(document: dict[str, Any], key: Ed25519Key, *, now: dt.datetime,
                    loader: ContextLoader | None = None,
                    suite: str = di.EDDSA_RDFC_2022) -> dict[str, Any]:
    """Sign ``document`` as its issuer; refuse what a verifier would refuse."""
    dm.check_credential(document)
    issuer = _issuer(document)
    if issuer != key.did.did:
        raise MalformedCredential(f"the credential's issuer is {issuer}, but the signing key "
                                  f"is {key.did.did}")
    options = di.ProofOptions(verification_method=key.did.verification_method,
                              proof_purpose="assertionMethod", created=now, suite=suite)
    return di.add_proof(document, key, options, loader or ContextLoader())


def create_presentation(holder: Ed25519Key, credentials: list[dict[str, Any]], *,
                        challenge: str, domain: str, now: dt.datetime,
                        loader: ContextLoader | None = None) -> dict[str, Any]:
    """A VC 2.0 presentation signed by the holder for one challenge and domain."""
    return Presenter(holder, credentials, domain=domain, loader=loader).present(challenge, now)


class Presenter:
    """One holder's presentation of the same credentials for one domain, signed for
    many challenges (a session's channels each have their own): the presentation's
    canonical form is computed once, and each proof canonicalizes only its options."""

    def __init__(self, holder: Ed25519Key, credentials: list[dict[str, Any]], *,
                 domain: str, loader: ContextLoader | None = None) -> None:
        if not domain:
            raise MalformedCredential("a presentation needs a non-empty challenge and domain")
        self.holder = holder
        self.domain = domain
        self.loader = loader or ContextLoader()
        self.document: dict[str, Any] = {
            "@context": [VC_V2],
            "id": f"urn:uuid:{uuid.uuid4()}",
            "type": ["VerifiablePresentation"],
            "holder": holder.did.did,
            "verifiableCredential": list(credentials),
        }
        self._hash: bytes | None = None

    def present(self, challenge: str, now: dt.datetime) -> dict[str, Any]:
        """The presentation with a proof for ``challenge``."""
        if not challenge:
            raise MalformedCredential("a presentation needs a non-empty challenge and domain")
        if self._hash is None:
            self._hash = di.hash_document(self.document, self.loader)
        options = di.ProofOptions(verification_method=self.holder.did.verification_method,
                                  proof_purpose="authentication", created=now,
                                  challenge=challenge, domain=self.domain)
        return di.add_proof(self.document, self.holder, options, self.loader,
                            document_hash=self._hash)


def status_list_credential(*, issuer: str, url: str, bits: Bitstring, purpose: str,
                           valid_from: dt.datetime, valid_until: dt.datetime | None = None
                           ) -> dict[str, Any]:
    """An unsigned BitstringStatusListCredential published at ``url``, valid until
    ``valid_until`` if given (verifiers refuse it afterwards: the issuer re-signs it
    within that time, so an old copy cannot be passed off as current)."""
    if purpose not in PURPOSES:
        raise MalformedCredential(f"status purpose must be one of {PURPOSES}")
    if valid_until is not None and valid_until <= valid_from:
        raise MalformedCredential("the status list's validUntil must be after its validFrom")
    window = {"validUntil": di.isoformat(valid_until)} if valid_until is not None else {}
    return {
        "@context": [VC_V2],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": di.isoformat(valid_from),
        **window,
        "credentialSubject": {"id": f"{url}#list", "type": "BitstringStatusList",
                              "statusPurpose": purpose, "encodedList": bits.encode()},
    }


# --- verifying ----------------------------------------------------------------------------


async def verify_credential(document: Any, config: VerifyConfig) -> VerifiedCredential:
    """Verify a credential; raise a :class:`CredentialError` saying why it is not valid."""
    return await _verify_credential(document, config, check_status=config.status is not None)


async def _verify_credential(document: Any, config: VerifyConfig,
                             check_status: bool) -> VerifiedCredential:
    version = dm.check_credential(document)
    types = _types(document)
    issuer = _issuer(document)
    subjects = dm.subjects(document)
    proof = await _signed_by(document, config, issuer, "credential", "claims issuer",
                             "assertionMethod", None, None)
    start, end = _validity(document, version)
    if start is not None and config.now < start:
        raise CredentialNotYetValid(f"credential {document.get('id', '')} is not valid until "
                                    f"{di.isoformat(start)}")
    if end is not None and config.now > end:
        raise CredentialExpired(f"credential {document.get('id', '')} expired on "
                                f"{di.isoformat(end)}")
    if check_status:
        await _check_status(document, issuer, config)
    return VerifiedCredential(
        id=document.get("id") if isinstance(document.get("id"), str) else None,
        types=types, issuer=issuer, subject=subjects[0].id, claims=subjects[0].claims,
        valid_from=start, valid_until=end, proof=proof, document=document, subjects=subjects)


async def verify_presentation(document: Any, config: VerifyConfig, *, challenge: str,
                              domain: str, precheck: Precheck | None = None
                              ) -> VerifiedPresentation:
    """Verify a presentation made for ``challenge`` and ``domain`` and every credential in
    it; every credential must have been issued to the presenting holder.

    ``precheck`` sees the holder and the credentials as presented before any signature
    is checked, any DID resolved or any status list fetched, so that a verifier can
    refuse what it never asked for without doing work (or requests) on its behalf."""
    dm.check_presentation(document)
    holder = document.get("holder")
    if isinstance(holder, dict):
        holder = holder.get("id")
    if not isinstance(holder, str):
        raise MalformedCredential("the presentation names no holder")
    _did(holder, "holder")
    raw = document.get("verifiableCredential", [])
    items = raw if isinstance(raw, list) else [raw]
    if precheck is not None:
        precheck(holder, items)
    proof = await _signed_by(document, config, holder, "presentation", "names holder",
                             "authentication", challenge, domain)
    verified = []
    for item in items:
        credential = await verify_credential(item, config)
        held = credential.about(holder)
        if held is None:
            raise not_issued_to(holder, credential.id, credential.subject)
        verified.append(held)
    return VerifiedPresentation(holder=holder, challenge=proof.challenge, domain=proof.domain,
                                credentials=tuple(verified), proof=proof)


def not_issued_to(holder: str, credential_id: str | None, subject: str | None
                  ) -> PresentationMismatch:
    """The error for a presented credential that says nothing about its presenter."""
    return PresentationMismatch(
        f"credential {credential_id} was issued to {subject}, not to the presenter {holder}",
        hint="a holder can only present credentials issued to its own DID")


async def _signed_by(document: dict[str, Any], config: VerifyConfig, signer: str, what: str,
                     names: str, purpose: str, challenge: str | None, domain: str | None
                     ) -> di.VerifiedProof:
    """The document's verified proof, which must be by ``signer``, the DID it names."""
    if "proof" not in document:
        raise MalformedCredential(f"the {what} has no proof (it is not signed)")
    named = _proof_signer(document)
    if named is not None and named != signer:
        # Before resolving anything: the key to check with is the signer's own.
        raise InvalidProof(f"the {what} {names} {signer} but was signed by {named}")
    proof = await _verify_proof(document, config, purpose, challenge, domain)
    if proof.controller != signer:
        raise InvalidProof(f"the {what} {names} {signer} but was signed by "
                           f"{proof.controller}")
    return proof


def _proof_signer(document: dict[str, Any]) -> str | None:
    """The DID of the first proof's verificationMethod, as written (unverified)."""
    proof = document.get("proof")
    first = proof[0] if isinstance(proof, list) and proof else proof
    vm = first.get("verificationMethod") if isinstance(first, dict) else None
    return vm.split("#", 1)[0] if isinstance(vm, str) else None


async def _verify_proof(document: dict[str, Any], config: VerifyConfig, purpose: str,
                        challenge: str | None, domain: str | None) -> di.VerifiedProof:
    proof = document.get("proof")
    first = proof[0] if isinstance(proof, list) and proof else proof
    if di.proof_type(first) == di.ED25519_2018:
        if _version(document) != "1.1":  # the document's shape is checked already
            raise MalformedCredential("Ed25519Signature2018 proofs are accepted on VC 1.1 "
                                      "documents only")
        assert isinstance(first, dict)
        # Checked first so that a replay says so (didkit would only say "no proof").
        di.check_proof_binding(first, challenge, domain)
        return await legacy.verify_2018(document, presentation=purpose == "authentication",
                                        challenge=challenge, domain=domain)
    assert isinstance(first, dict)
    vm = first.get("verificationMethod")
    if not isinstance(vm, str):
        raise MalformedCredential("the proof has no verificationMethod")
    did_document = await config.resolver.resolve(_did(vm.split("#", 1)[0], "signer"))

    def key_for(method: str, proof_purpose: str) -> bytes:
        return verification_key(did_document, method, proof_purpose)

    # Canonicalization is bounded (specs/identity.md 3.4) but may take a few tenths of a
    # second: in a worker thread, so that a party's event loop (keepalives, other peers)
    # never waits for a peer's document.
    return await asyncio.to_thread(
        di.verify_proof, document, key_for=key_for, loader=config.loader, now=config.now,
        expected_purpose=purpose, challenge=challenge, domain=domain)


async def _check_status(document: dict[str, Any], issuer: str, config: VerifyConfig) -> None:
    assert config.status is not None
    raw = document.get("credentialStatus")
    entries = raw if isinstance(raw, list) else [] if raw is None else [raw]
    if len(entries) > MAX_STATUS_ENTRIES:
        raise StatusCheckFailed(f"the credential names {len(entries)} status lists; at most "
                                f"{MAX_STATUS_ENTRIES} are checked")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") not in STATUS_ENTRY_TYPES:
            raise StatusCheckFailed(f"unsupported credentialStatus "
                                    f"{entry.get('type') if isinstance(entry, dict) else entry!r}")
        url = entry.get("statusListCredential")
        purpose = entry.get("statusPurpose")
        if not isinstance(url, str) or purpose not in PURPOSES:
            raise StatusCheckFailed("credentialStatus lacks statusListCredential or a known "
                                    "statusPurpose")
        index = read_index(entry)
        status_vc = await _status_list(url, issuer, config)
        if status_vc.claims.get("statusPurpose") != purpose:
            raise StatusCheckFailed(f"status list {url} is for "
                                    f"{status_vc.claims.get('statusPurpose')!r}, not {purpose!r}")
        bits = Bitstring.decode(status_vc.claims.get("encodedList"))
        if index >= len(bits):
            raise StatusCheckFailed(f"status index {index} is outside list {url}")
        if bits.get(index):
            state = "revoked" if purpose == "revocation" else "suspended"
            raise CredentialRevoked(f"credential {document.get('id', '')} is {state} "
                                    f"(status list {url}, index {index})")


async def _status_list(url: str, issuer: str, config: VerifyConfig) -> VerifiedCredential:
    """The status list at ``url``, fetched and verified as ``issuer``'s (once per
    :attr:`VerifyConfig.status_lists`, if given); raises :class:`StatusCheckFailed`."""
    memo = config.status_lists
    if memo is None:
        return await _fetch_status_list(url, issuer, config)
    key = (url, issuer)
    known = memo.get(key)
    if known is None:
        known = memo[key] = asyncio.ensure_future(_fetch_status_list(url, issuer, config))
        known.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(known)  # a cancelled verifier leaves it to the others


async def _fetch_status_list(url: str, issuer: str, config: VerifyConfig
                             ) -> VerifiedCredential:
    assert config.status is not None
    status_doc = await config.status.fetch(url)
    try:
        named = _issuer(status_doc)
    except MalformedCredential as exc:
        raise StatusCheckFailed(f"status list {url} is not valid: {exc}") from None
    if named != issuer:  # checked before its issuer is resolved
        raise StatusCheckFailed(f"status list {url} was issued by {named}, "
                                f"not by the credential's issuer {issuer}")
    try:
        status_vc = await _verify_credential(status_doc, config, check_status=False)
    except CredentialError as exc:
        raise StatusCheckFailed(f"status list {url} is not valid: {exc}") from None
    if not set(status_vc.types) & set(STATUS_LIST_TYPES):
        raise StatusCheckFailed(f"{url} is not a status list credential")
    _check_fresh(status_vc, url, config)
    if status_vc.issuer != issuer:
        raise StatusCheckFailed(f"status list {url} was issued by {status_vc.issuer}, "
                                f"not by the credential's issuer {issuer}")
    return status_vc


def _check_fresh(status_vc: VerifiedCredential, url: str, config: VerifyConfig) -> None:
    """A list with ``validUntil`` is fresh until then (checked with its validity period);
    one without must be younger than ``config.status_max_age``."""
    limit = config.status_max_age
    if status_vc.valid_until is not None or limit is None:
        return
    if status_vc.valid_from is None or config.now - status_vc.valid_from > limit:
        signed = di.isoformat(status_vc.valid_from) if status_vc.valid_from else "undated"
        raise StatusCheckFailed(
            f"status list {url} is stale: signed {signed}, has no validUntil, and lists "
            f"older than {limit} are refused (an old copy could hide a revocation)",
            hint="the issuer re-signs it with `mpcid status-list refresh`")


# --- shape helpers ------------------------------------------------------------------------


def _version(document: dict[str, Any]) -> str:
    context = document.get("@context")
    first = context[0] if isinstance(context, list) and context else context
    return "1.1" if first == VC_V1 else "2.0"


def _types(document: dict[str, Any]) -> tuple[str, ...]:
    raw = document["type"]
    return tuple(raw if isinstance(raw, list) else [raw])


def _issuer(document: dict[str, Any]) -> str:
    issuer = document.get("issuer")
    if isinstance(issuer, dict):
        issuer = issuer.get("id")
    if not isinstance(issuer, str):
        raise MalformedCredential("the credential names no issuer")
    return _did(issuer, "issuer")


def _did(value: str, role: str) -> str:
    try:
        return parse_did(value)
    except InvalidDID:
        raise MalformedCredential(f"the {role} {value!r} is not a DID") from None


def _validity(document: dict[str, Any], version: str
              ) -> tuple[dt.datetime | None, dt.datetime | None]:
    start_key, end_key = (("validFrom", "validUntil") if version == "2.0"
                          else ("issuanceDate", "expirationDate"))
    start = document.get(start_key)
    end = document.get(end_key)
    if version == "1.1" and start is None:
        raise MalformedCredential("a VC 1.1 credential must have an issuanceDate")
    return (di.parse_datetime(start, start_key) if start is not None else None,
            di.parse_datetime(end, end_key) if end is not None else None)


# --- as one line of text (specs/identity.md 2.1) -------------------------------------------

#: A credential as a copy-pasteable token: ``"mpcidvc1:" + base64url(zlib(JSON))``.
CREDENTIAL_PREFIX = "mpcidvc1:"
#: The largest credential a token may hold: one that fits a session's presentation
#: (``specs/session.md`` 7.1 limits an admission message to 262144 bytes).
MAX_CREDENTIAL_BYTES = 256 * 1024


def credential_token(document: dict[str, Any]) -> str:
    """``document`` (a signed credential) as one line of text."""
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_CREDENTIAL_BYTES:
        raise MalformedCredential(f"credential of {len(data)} bytes exceeds "
                                  f"{MAX_CREDENTIAL_BYTES}")
    return compact.encode(CREDENTIAL_PREFIX, data)


def read_credential_text(text: str, where: str) -> dict[str, Any]:
    """A credential given as its token or as its JSON text (``where`` names the source in
    errors). Raises :class:`MalformedCredential`; nothing is verified yet."""
    stripped = text.strip()
    if not stripped:
        raise MalformedCredential(f"credential {where} is empty",
                                  hint="paste the whole mpcidvc1: line its issuer sent")
    token = stripped.startswith("mpcid")
    if token and not stripped.startswith(CREDENTIAL_PREFIX[:7]):
        raise MalformedCredential(f"credential {where} is an mpcid invitation token, not a "
                                  "credential", hint="join with: mpcid join TOKEN")
    if token:
        data = compact.decode(stripped, prefix=CREDENTIAL_PREFIX,
                              max_bytes=MAX_CREDENTIAL_BYTES, error=MalformedCredential,
                              kind="mpcid credential token",
                              hint="copy the whole mpcidvc1: line again")
    elif len(stripped) > 4 * MAX_CREDENTIAL_BYTES:
        raise MalformedCredential(f"credential {where} of {len(stripped)} characters is too "
                                  "large")
    else:
        data = stripped.encode("utf-8")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        if not token and not stripped.startswith(("{", "[")):
            raise MalformedCredential(
                f"credential {where} is neither JSON nor an {CREDENTIAL_PREFIX} line",
                hint="paste the whole mpcidvc1: line its issuer sent, or give the "
                     "credential's JSON file") from None
        line = f" (line {exc.lineno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) \
            else ""
        raise MalformedCredential(f"credential {where} is not valid JSON{line}") from None
    if not isinstance(value, dict):
        raise MalformedCredential(f"credential {where} is not a JSON object")
    return value
