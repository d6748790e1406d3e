"""Data Integrity proofs with Ed25519: ``eddsa-rdfc-2022`` and ``Ed25519Signature2020``.

Sans-IO: this module signs and checks one proof given the document, a JSON-LD loader and a
function that maps a verification method to its public key. It never resolves DIDs or
reads the clock itself; the caller passes both in (``key_for``, ``now``).

Both suites hash the same way (W3C vc-di-eddsa, section 3.3 "eddsa-rdfc-2022"; the
Ed25519Signature2020 suite is its predecessor):

    hashData  = SHA-256(RDFC(proof options with the document's @context))
             || SHA-256(RDFC(document without its proof))
    proofValue = "z" + base58btc(Ed25519-sign(secret key, hashData))

They differ only in the proof's ``type`` (``DataIntegrityProof`` with ``cryptosuite``
versus ``Ed25519Signature2020``) and in the contexts that define those terms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import multibase
from .did_key import Ed25519Key
from .errors import InvalidProof, MalformedCredential, PresentationMismatch, UnsupportedCryptosuite
from .jsonld import ContextLoader, canonicalize

EDDSA_RDFC_2022 = "eddsa-rdfc-2022"
ED25519_2020 = "Ed25519Signature2020"
ED25519_2018 = "Ed25519Signature2018"
SUITES = (EDDSA_RDFC_2022, ED25519_2020)

#: ``key_for(verification_method, proof_purpose) -> raw Ed25519 public key``; raises
#: :class:`InvalidProof` when the method is unknown or not authorised for the purpose.
KeyLookup = Callable[[str, str], bytes]


@dataclass(frozen=True)
class ProofOptions:
    """What a new proof asserts besides the signature."""

    verification_method: str
    proof_purpose: str
    created: dt.datetime
    suite: str = EDDSA_RDFC_2022
    challenge: str | None = None
    domain: str | None = None
    expires: dt.datetime | None = None


@dataclass(frozen=True)
class VerifiedProof:
    """The facts a verified proof establishes."""

    suite: str
    verification_method: str
    controller: str
    proof_purpose: str
    created: str | None
    challenge: str | None
    domain: str | None


def proof_type(proof: Any) -> str:
    """``eddsa-rdfc-2022``, ``Ed25519Signature2020``, ``Ed25519Signature2018`` or raise."""
    if not isinstance(proof, dict):
        raise MalformedCredential("the proof is not a JSON object")
    ptype = proof.get("type")
    if ptype == "DataIntegrityProof":
        suite = proof.get("cryptosuite")
        if suite == EDDSA_RDFC_2022:
            return EDDSA_RDFC_2022
        raise UnsupportedCryptosuite(f"unsupported cryptosuite {suite!r}")
    if ptype in (ED25519_2020, ED25519_2018):
        return str(ptype)
    raise UnsupportedCryptosuite(f"unsupported proof type {ptype!r}")


def add_proof(document: dict[str, Any], key: Ed25519Key, options: ProofOptions,
              loader: ContextLoader, *, document_hash: bytes | None = None
              ) -> dict[str, Any]:
    """Return a copy of ``document`` with a new proof (documents with a proof are refused:
    proof sets are not part of our profile). ``document_hash``, if given, is
    :func:`hash_document` of this very ``document`` (to sign one document many times)."""
    if "proof" in document:
        raise MalformedCredential("the document is already signed")
    if options.suite not in SUITES:
        raise UnsupportedCryptosuite(f"cannot sign with {options.suite!r}")
    proof: dict[str, Any] = {"type": "DataIntegrityProof", "cryptosuite": EDDSA_RDFC_2022}
    if options.suite == ED25519_2020:
        proof = {"type": ED25519_2020}
    proof["created"] = _isoformat(options.created)
    if options.expires is not None:
        proof["expires"] = _isoformat(options.expires)
    proof["verificationMethod"] = options.verification_method
    proof["proofPurpose"] = options.proof_purpose
    if options.challenge is not None:
        proof["challenge"] = options.challenge
    if options.domain is not None:
        proof["domain"] = options.domain
    signed = _hash_data(document, proof, loader, document_hash)
    proof["proofValue"] = multibase.encode(key.sign(signed))
    return {**document, "proof": proof}


def verify_proof(document: dict[str, Any], *, key_for: KeyLookup, loader: ContextLoader,
                 now: dt.datetime, expected_purpose: str, challenge: str | None = None,
                 domain: str | None = None) -> VerifiedProof:
    """Verify the single Ed25519 Data Integrity proof of ``document``.

    Raises :class:`InvalidProof` for any signature failure (opaque by design),
    :class:`UnsupportedCryptosuite`, :class:`MalformedCredential`, or
    :class:`PresentationMismatch` when purpose, challenge or domain differ from the ones
    expected. ``challenge``/``domain`` of None mean "must be absent or not checked" only
    for credentials; presentations always pass both.
    """
    proof = document.get("proof")
    if isinstance(proof, list):
        if len(proof) != 1:
            raise MalformedCredential("proof sets with several proofs are not accepted")
        proof = proof[0]
    suite = proof_type(proof)
    if suite == ED25519_2018:
        raise UnsupportedCryptosuite("Ed25519Signature2018 is verified through didkit",
                                     hint="use mpcid.identity.credentials.verify_credential")
    assert isinstance(proof, dict)
    value = proof.get("proofValue")
    vm = proof.get("verificationMethod")
    purpose = proof.get("proofPurpose")
    if not isinstance(value, str) or not isinstance(vm, str) or not isinstance(purpose, str):
        raise MalformedCredential("the proof lacks proofValue, verificationMethod or "
                                  "proofPurpose")
    if purpose != expected_purpose:
        raise PresentationMismatch(
            f"the proof's purpose is {purpose!r}, expected {expected_purpose!r}")
    check_proof_binding(proof, challenge, domain)
    expires = proof.get("expires")
    if expires is not None and parse_datetime(expires, "proof expires") < now:
        raise InvalidProof("the proof has expired", hint="ask for a fresh proof")
    try:
        signature = multibase.decode(value)
    except ValueError:
        raise InvalidProof() from None
    if len(signature) != 64 or not value.startswith("z"):
        raise InvalidProof()
    unsigned = {k: v for k, v in document.items() if k != "proof"}
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    if "@context" in options and options["@context"] != document.get("@context"):
        raise InvalidProof()
    options.pop("@context", None)
    public_key = key_for(vm, purpose)
    _verify_ed25519(public_key, _hash_data(unsigned, options, loader), signature)
    return VerifiedProof(suite=suite, verification_method=vm, controller=vm.split("#", 1)[0],
                         proof_purpose=purpose, created=_opt_str(proof.get("created")),
                         challenge=_opt_str(proof.get("challenge")),
                         domain=_opt_str(proof.get("domain")))


def check_proof_binding(proof: dict[str, Any], challenge: str | None,
                        domain: str | None) -> None:
    """A presentation proof must carry exactly the expected challenge and domain."""
    if challenge is not None and proof.get("challenge") != challenge:
        raise PresentationMismatch(
            f"wrong challenge: the presentation was made for {proof.get('challenge')!r}")
    if domain is not None:
        got = proof.get("domain")
        if (got if isinstance(got, str) else got) != domain and not (
                isinstance(got, list) and domain in got):
            raise PresentationMismatch(
                f"wrong domain: the presentation was made for {got!r}, not {domain!r}")


def hash_document(document: dict[str, Any], loader: ContextLoader) -> bytes:
    """SHA-256 of the canonical form of an unsigned document: its half of what a proof
    signs (eddsa-rdfc-2022 and Ed25519Signature2020 hash the proof options and the
    document separately)."""
    if "@context" not in document:
        raise MalformedCredential("the document has no @context")
    return hashlib.sha256(canonicalize(document, loader).encode("utf-8")).digest()


def _hash_data(document: dict[str, Any], proof_options: dict[str, Any],
               loader: ContextLoader, document_hash: bytes | None = None) -> bytes:
    if "@context" not in document:
        raise MalformedCredential("the document has no @context")
    config = {"@context": document["@context"], **proof_options}
    proof_hash = hashlib.sha256(canonicalize(config, loader).encode("utf-8")).digest()
    return proof_hash + (document_hash or hash_document(document, loader))


def _verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None:
    from .did_key import DIDKey  # local: DIDKey.verify maps nacl errors to InvalidProof

    DIDKey(did="", public_key=public_key).verify(message, signature)


def parse_datetime(value: object, what: str) -> dt.datetime:
    """Parse an XML Schema dateTime as used by VCs; naive times are taken as UTC."""
    if not isinstance(value, str):
        raise MalformedCredential(f"{what} is not a date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise MalformedCredential(f"{what} {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def _isoformat(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    try:
        value = value.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC form in datetime
        return value.replace(microsecond=0).isoformat()
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def isoformat(value: dt.datetime) -> str:
    return _isoformat(value)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
