"""Data Integrity proofs (mpcid.identity.dataintegrity) against the published vectors.

W3C vc-di-eddsa, section 3.3 "eddsa-rdfc-2022" / Appendix test vectors (the Alumni
credential), and the Ed25519Signature2020 vectors of the same repository; values are in
tests/vectors/ (see tests/vectors/README.md for repository, commit and path).

The negative tests tamper with every part of the signed vector credential, one at a time,
and check that verification fails with the error the user should see.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mpcid.identity import dataintegrity as di
from mpcid.identity import multibase
from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import (CredentialError, InvalidDID, InvalidProof,
                                   MalformedCredential, PresentationMismatch, UnknownContext,
                                   UnsupportedCryptosuite)
from mpcid.identity.jsonld import ContextLoader, canonicalize
from mpcid.identity.resolver import verification_key

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
EDDSA = json.loads((VECTORS / "vc-di-eddsa-rdfc-2022.json").read_text(encoding="utf-8"))
ED2020 = json.loads((VECTORS / "ed25519-signature-2020.json").read_text(encoding="utf-8"))
EXAMPLES_URL = "https://www.w3.org/ns/credentials/examples/v2"
VC_V2 = "https://www.w3.org/ns/credentials/v2"
UTC = dt.timezone.utc

#: The examples context, given explicitly (mpcid does not ship it).
LOADER = ContextLoader({EXAMPLES_URL: {"@context": {
    "@vocab": "https://www.w3.org/ns/credentials/examples#"}}})
VECTOR_KEY = Ed25519Key.from_seed(
    multibase.decode(EDDSA["keyPair"]["privateKeyMultibase"])[2:])
OTHER_KEY = Ed25519Key.from_seed(bytes(range(32)))
CREATED = dt.datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)
NOW = dt.datetime(2025, 6, 1, tzinfo=UTC)


def key_for(vm: str, purpose: str) -> bytes:
    """Resolve a did:key verification method as a verifier would."""
    try:
        did = DIDKey.parse(vm.split("#", 1)[0])
    except InvalidDID:
        raise InvalidProof(f"{vm} is not a did:key verification method") from None
    return verification_key(did.document(), vm, purpose)


def verify(document: dict[str, Any], *, purpose: str = "assertionMethod",
           lookup: Callable[[str, str], bytes] = key_for, loader: ContextLoader = LOADER,
           now: dt.datetime = NOW, challenge: str | None = None,
           domain: str | None = None) -> di.VerifiedProof:
    return di.verify_proof(document, key_for=lookup, loader=loader, now=now,
                           expected_purpose=purpose, challenge=challenge, domain=domain)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the vectors: W3C vc-di-eddsa, section 3.3 / Appendix test vectors ----------------------

def test_vector_key_pair() -> None:
    raw = multibase.decode(EDDSA["keyPair"]["privateKeyMultibase"])
    assert raw[:2] == b"\x80\x26" and len(raw) == 34
    assert VECTOR_KEY.did.fingerprint == EDDSA["keyPair"]["publicKeyMultibase"]
    assert VECTOR_KEY.did.verification_method == EDDSA["proofConfig"]["verificationMethod"]


@pytest.mark.parametrize("vector", [EDDSA, ED2020], ids=["eddsa-rdfc-2022", "Ed2020"])
def test_canonical_document(vector: dict[str, Any]) -> None:
    assert canonicalize(vector["unsigned"], LOADER) == vector["canonicalDocument"]


@pytest.mark.parametrize("vector", [EDDSA, ED2020], ids=["eddsa-rdfc-2022", "Ed2020"])
def test_canonical_proof_config(vector: dict[str, Any]) -> None:
    assert canonicalize(vector["proofConfig"], LOADER) == vector["canonicalProofConfig"]


@pytest.mark.parametrize("vector", [EDDSA, ED2020], ids=["eddsa-rdfc-2022", "Ed2020"])
def test_hashes(vector: dict[str, Any]) -> None:
    assert _sha256(vector["canonicalDocument"]) == vector["docHash"]
    assert _sha256(vector["canonicalProofConfig"]) == vector["proofHash"]
    assert vector["combinedHash"] == vector["proofHash"] + vector["docHash"]
    # the same hashes from the module's own canonicalization
    assert _sha256(canonicalize(vector["unsigned"], LOADER)) == vector["docHash"]
    assert _sha256(canonicalize(vector["proofConfig"], LOADER)) == vector["proofHash"]


@pytest.mark.parametrize("vector", [EDDSA, ED2020], ids=["eddsa-rdfc-2022", "Ed2020"])
def test_signature(vector: dict[str, Any]) -> None:
    signature = VECTOR_KEY.sign(bytes.fromhex(vector["combinedHash"]))
    assert signature.hex() == vector["signatureHex"]
    assert multibase.encode(signature) == vector["proofValue"]
    assert vector["signed"]["proof"]["proofValue"] == vector["proofValue"]


def test_add_proof_reproduces_the_eddsa_rdfc_2022_vector() -> None:
    options = di.ProofOptions(verification_method=VECTOR_KEY.did.verification_method,
                              proof_purpose="assertionMethod", created=CREATED)
    unsigned = copy.deepcopy(EDDSA["unsigned"])
    signed = di.add_proof(unsigned, VECTOR_KEY, options, LOADER)
    assert signed == EDDSA["signed"]
    assert signed["proof"]["proofValue"] == EDDSA["proofValue"]
    assert unsigned == EDDSA["unsigned"]    # the input is not modified


def test_add_proof_reproduces_the_ed25519_signature_2020_vector() -> None:
    options = di.ProofOptions(verification_method=VECTOR_KEY.did.verification_method,
                              proof_purpose="assertionMethod", created=CREATED,
                              suite="Ed25519Signature2020")
    signed = di.add_proof(ED2020["unsigned"], VECTOR_KEY, options, LOADER)
    assert signed == ED2020["signed"]
    assert signed["proof"]["proofValue"] == ED2020["proofValue"]


def test_verify_proof_accepts_the_eddsa_rdfc_2022_vector() -> None:
    result = verify(copy.deepcopy(EDDSA["signed"]))
    assert result == di.VerifiedProof(
        suite="eddsa-rdfc-2022", verification_method=VECTOR_KEY.did.verification_method,
        controller=VECTOR_KEY.did.did, proof_purpose="assertionMethod",
        created="2023-02-24T23:36:38Z", challenge=None, domain=None)


def test_verify_proof_accepts_the_ed25519_signature_2020_vector() -> None:
    result = verify(copy.deepcopy(ED2020["signed"]))
    assert result.suite == "Ed25519Signature2020"
    assert result.controller == VECTOR_KEY.did.did


def test_hash_data_is_proof_hash_then_document_hash() -> None:
    options = {k: v for k, v in EDDSA["proofConfig"].items() if k != "@context"}
    assert di._hash_data(EDDSA["unsigned"], options, LOADER).hex() == EDDSA["combinedHash"]


def test_the_examples_context_is_not_fetched() -> None:
    with pytest.raises(UnknownContext, match=EXAMPLES_URL):
        verify(copy.deepcopy(EDDSA["signed"]), loader=ContextLoader())
    with pytest.raises(UnknownContext):
        canonicalize(EDDSA["unsigned"], ContextLoader())


# --- tampering with the signed vector, one field at a time --------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(*path_and_value: Any) -> Mutation:
    """``_set("a", "b", value)`` sets ``doc["a"]["b"] = value``."""
    *path, value = path_and_value

    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return mutate


def _del(*path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
    return mutate


def _flip_proof_value(doc: dict[str, Any]) -> None:
    sig = bytearray(multibase.decode(doc["proof"]["proofValue"]))
    sig[10] ^= 0x01
    doc["proof"]["proofValue"] = multibase.encode(bytes(sig))


def _proof_value_as_base64url(doc: dict[str, Any]) -> None:
    sig = multibase.decode(doc["proof"]["proofValue"])
    doc["proof"]["proofValue"] = multibase.encode(sig, "u")


SUBJECT = EDDSA["signed"]["credentialSubject"]
OTHER_VM = OTHER_KEY.did.verification_method

DOCUMENT_CHANGES: dict[str, Mutation] = {
    # top level
    "id changed": _set("id", "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc34"),
    "id removed": _del("id"),
    "type: AlumniCredential removed": _set("type", ["VerifiableCredential"]),
    "type: another type added": _set("type", ["VerifiableCredential", "AlumniCredential",
                                              "ExampleDegreeCredential"]),
    "type: replaced": _set("type", ["VerifiableCredential", "EmployeeCredential"]),
    "name changed": _set("name", "Alumni Credential!"),
    "name removed": _del("name"),
    "description changed": _set("description", "A maximum viable example."),
    "description removed": _del("description"),
    "issuer changed": _set("issuer", "https://vc.example/issuers/5679"),
    "issuer changed to a DID": _set("issuer", OTHER_KEY.did.did),
    "validFrom changed": _set("validFrom", "2023-01-01T00:00:01Z"),
    "validFrom removed": _del("validFrom"),
    "validFrom other lexical form": _set("validFrom", "2023-01-01T00:00:00.000Z"),
    "validUntil added": _set("validUntil", "2030-01-01T00:00:00Z"),
    "credentialStatus added": _set("credentialStatus", {
        "id": "https://vc.example/status/1#5", "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation", "statusListIndex": "5",
        "statusListCredential": "https://vc.example/status/1"}),
    "new top-level field (defined by @vocab)": _set("favouriteColour", "green"),
    "credentialSubject removed": _del("credentialSubject"),
    # credentialSubject
    "credentialSubject.id changed": _set("credentialSubject", "id", "did:example:abcdefgi"),
    "credentialSubject.id removed": _del("credentialSubject", "id"),
    "credentialSubject.alumniOf changed": _set("credentialSubject", "alumniOf",
                                               "The School of Counter-Examples"),
    "credentialSubject.alumniOf removed": _del("credentialSubject", "alumniOf"),
    "credentialSubject.alumniOf nested": _set("credentialSubject", "alumniOf",
                                              {"name": "The School of Examples"}),
    "credentialSubject.alumniOf as list": _set("credentialSubject", "alumniOf",
                                               ["The School of Examples", "Another School"]),
    "credentialSubject.alumniOf as number": _set("credentialSubject", "alumniOf", 1),
    "credentialSubject.name added": _set("credentialSubject", "name", "Jane Doe"),
    "credentialSubject.type added": _set("credentialSubject", "type", "Person"),
    "credentialSubject replaced": _set("credentialSubject",
                                       {"id": "did:example:abcdefgh", "alumniOf": "X"}),
    "credentialSubject emptied": _set("credentialSubject", {}),
}

PROOF_CHANGES: dict[str, Mutation] = {
    "proof.created changed": _set("proof", "created", "2023-02-24T23:36:39Z"),
    "proof.created removed": _del("proof", "created"),
    "proof.verificationMethod: another DID": _set("proof", "verificationMethod", OTHER_VM),
    "proof.verificationMethod: unknown fragment": _set(
        "proof", "verificationMethod", VECTOR_KEY.did.did + "#key-1"),
    "proof.verificationMethod: not a DID": _set(
        "proof", "verificationMethod", "https://vc.example/issuers/5678#key-1"),
    "proof.proofValue: one bit flipped": _flip_proof_value,
    "proof.proofValue: truncated": _set(
        "proof", "proofValue", EDDSA["proofValue"][:-1]),
    "proof.proofValue: extended": _set("proof", "proofValue", EDDSA["proofValue"] + "z"),
    "proof.proofValue: not base58": _set("proof", "proofValue", EDDSA["proofValue"][:-1] + "0"),
    "proof.proofValue: base64url multibase": _proof_value_as_base64url,
    "proof.proofValue: no multibase prefix": _set("proof", "proofValue",
                                                  EDDSA["proofValue"][1:]),
    "proof.proofValue: empty": _set("proof", "proofValue", ""),
    "proof.proofValue: the Ed25519Signature2020 one": _set("proof", "proofValue",
                                                           ED2020["proofValue"]),
    "proof.type: Ed25519Signature2020": _set("proof", "type", "Ed25519Signature2020"),
    "proof.challenge added": _set("proof", "challenge", "abc"),
    "proof.domain added": _set("proof", "domain", "vc.example"),
    "proof.nonce added": _set("proof", "nonce", "123"),
    "proof.expires added (future)": _set("proof", "expires", "2999-01-01T00:00:00Z"),
    "proof.@context differs from the document's": _set("proof", "@context", [VC_V2]),
    "proof.id added": _set("proof", "id", "urn:uuid:1"),
}

SIGNATURE_BREAKING = {**DOCUMENT_CHANGES, **PROOF_CHANGES}

#: The same changes for the Ed25519Signature2020 vector, less the two that are no-ops there.
ED2020_BREAKING = {
    **{name: mutate for name, mutate in SIGNATURE_BREAKING.items()
       if name not in ("proof.type: Ed25519Signature2020",
                       "proof.proofValue: the Ed25519Signature2020 one")},
    "proof.proofValue: the eddsa-rdfc-2022 one": _set("proof", "proofValue",
                                                      EDDSA["proofValue"]),
}


@pytest.mark.parametrize("mutate", SIGNATURE_BREAKING.values(), ids=SIGNATURE_BREAKING.keys())
def test_tampering_breaks_the_signature(mutate: Mutation) -> None:
    document = copy.deepcopy(EDDSA["signed"])
    mutate(document)
    assert document != EDDSA["signed"]
    with pytest.raises(InvalidProof):
        verify(document)


@pytest.mark.parametrize("mutate", ED2020_BREAKING.values(), ids=ED2020_BREAKING.keys())
def test_tampering_the_ed25519_signature_2020_vector(mutate: Mutation) -> None:
    document = copy.deepcopy(ED2020["signed"])
    mutate(document)
    assert document != ED2020["signed"]
    with pytest.raises(InvalidProof):
        verify(document)


@pytest.mark.parametrize("purpose", ["authentication", "capabilityInvocation",
                                     "capabilityDelegation", "keyAgreement", "assertion",
                                     ""])
def test_other_proof_purpose_is_a_presentation_mismatch(purpose: str) -> None:
    document = copy.deepcopy(EDDSA["signed"])
    document["proof"]["proofPurpose"] = purpose
    with pytest.raises(PresentationMismatch, match="purpose"):
        verify(document)


def test_untouched_credential_for_another_purpose_is_a_presentation_mismatch() -> None:
    with pytest.raises(PresentationMismatch, match="assertionMethod"):
        verify(copy.deepcopy(EDDSA["signed"]), purpose="authentication")


UNSUPPORTED: dict[str, Mutation] = {
    "cryptosuite: ecdsa-rdfc-2019": _set("proof", "cryptosuite", "ecdsa-rdfc-2019"),
    "cryptosuite: eddsa-jcs-2022": _set("proof", "cryptosuite", "eddsa-jcs-2022"),
    "cryptosuite: eddsa-2022 (draft name)": _set("proof", "cryptosuite", "eddsa-2022"),
    "cryptosuite: case changed": _set("proof", "cryptosuite", "EdDSA-RDFC-2022"),
    "cryptosuite removed": _del("proof", "cryptosuite"),
    "cryptosuite: not a string": _set("proof", "cryptosuite", ["eddsa-rdfc-2022"]),
    "type: unknown": _set("proof", "type", "Ed25519Signature2099"),
    "type: JsonWebSignature2020": _set("proof", "type", "JsonWebSignature2020"),
    "type: Ed25519Signature2018": _set("proof", "type", "Ed25519Signature2018"),
    "type removed": _del("proof", "type"),
    "type: list": _set("proof", "type", ["DataIntegrityProof"]),
}


@pytest.mark.parametrize("mutate", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_cryptosuite_or_proof_type(mutate: Mutation) -> None:
    document = copy.deepcopy(EDDSA["signed"])
    mutate(document)
    with pytest.raises(UnsupportedCryptosuite):
        verify(document)


MALFORMED: dict[str, Mutation] = {
    "proof.proofValue removed": _del("proof", "proofValue"),
    "proof.proofValue not a string": _set("proof", "proofValue", 12345),
    "proof.verificationMethod removed": _del("proof", "verificationMethod"),
    "proof.verificationMethod as object": _set(
        "proof", "verificationMethod", {"id": VECTOR_KEY.did.verification_method}),
    "proof.proofPurpose removed": _del("proof", "proofPurpose"),
    "proof removed": _del("proof"),
    "proof is a string": _set("proof", EDDSA["proofValue"]),
    "proof is an empty list": _set("proof", []),
    "proof set with two proofs": lambda d: d.__setitem__("proof", [d["proof"], d["proof"]]),
    "@context removed": _del("@context"),
    "examples context removed: alumniOf is defined by no context":
        _set("@context", [VC_V2]),
    "proof.expires not a date": _set("proof", "expires", "next week"),
}


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed(mutate: Mutation) -> None:
    document = copy.deepcopy(EDDSA["signed"])
    mutate(document)
    with pytest.raises(MalformedCredential):
        verify(document)


def test_term_no_context_defines_is_named() -> None:
    document = copy.deepcopy(EDDSA["signed"])
    document["@context"] = [VC_V2]
    with pytest.raises(MalformedCredential, match="alumniOf"):
        verify(document)


def test_keyword_like_key_is_refused_and_named() -> None:
    # "@foo" looks like a keyword but is none: JSON-LD expansion drops it (safe mode: error).
    document = copy.deepcopy(EDDSA["signed"])
    document["@foo"] = "bar"
    with pytest.raises(MalformedCredential) as info:
        verify(document)
    assert "@foo" in str(info.value)


@pytest.mark.parametrize("context", [
    [VC_V2, EXAMPLES_URL, "https://example.org/unknown/v1"],
    ["https://example.org/unknown/v1", VC_V2, EXAMPLES_URL],
    [VC_V2, "https://www.w3.org/ns/credentials/examples/v3"],
    [VC_V2, EXAMPLES_URL, "https://w3id.org/citizenship/v4rc1"],
    [VC_V2, "http://www.w3.org/ns/credentials/examples/v2"],    # http, not https
])
def test_unknown_context_url(context: list[str]) -> None:
    document = copy.deepcopy(EDDSA["signed"])
    document["@context"] = context
    with pytest.raises(UnknownContext):
        verify(document)


@pytest.mark.parametrize("context", [
    [VC_V2, EXAMPLES_URL, "relative/context"],
    [VC_V2, EXAMPLES_URL, ""],
])
def test_relative_context_iri_is_refused(context: list[str]) -> None:
    # A relative context IRI cannot be resolved (documents have no base IRI here).
    document = copy.deepcopy(EDDSA["signed"])
    document["@context"] = context
    with pytest.raises((MalformedCredential, UnknownContext)):
        verify(document)


def test_relative_context_iri_in_a_nested_object_is_refused() -> None:
    document = copy.deepcopy(EDDSA["signed"])
    document["credentialSubject"]["alumniOf"] = {"@context": "0", "name": "X"}
    with pytest.raises((MalformedCredential, UnknownContext)):
        verify(document)


def test_null_vocab_in_an_embedded_context_is_refused() -> None:
    # {"@vocab": null} is valid JSON-LD: it removes the examples vocabulary, after which
    # alumniOf is a term no context defines (safe mode).
    document = copy.deepcopy(EDDSA["signed"])
    document["@context"] = [VC_V2, EXAMPLES_URL, {"@vocab": None}]
    with pytest.raises(MalformedCredential):
        verify(document)


def test_null_vocab_without_a_vocab_is_valid_json_ld() -> None:
    # Resetting @vocab to null when no vocabulary is set is valid JSON-LD that changes
    # nothing: signing and verifying must work (or at worst fail with an mpcid error).
    document = {**PRESENTATION, "@context": [VC_V2, {"@vocab": None}]}
    options = di.ProofOptions(verification_method=HOLDER.did.verification_method,
                              proof_purpose="authentication", created=CREATED,
                              challenge="c", domain="d")
    try:
        signed = di.add_proof(document, HOLDER, options, ContextLoader())
    except MalformedCredential:
        return      # acceptable: refused with an mpcid error (pyld cannot process it)
    assert _verify_presented(signed, "c", "d").challenge == "c"


def test_unknown_context_in_the_proof() -> None:
    document = copy.deepcopy(EDDSA["signed"])
    document["proof"]["@context"] = [VC_V2, "https://example.org/unknown/v1"]
    with pytest.raises((UnknownContext, InvalidProof)):
        verify(document)


# --- changes that do not alter what was signed ----------------------------------------------

@pytest.mark.parametrize("mutate", [
    _set("proof", "@context", EDDSA["signed"]["@context"]),
    lambda d: d.__setitem__("proof", [d["proof"]]),
    lambda d: d.__setitem__("issuer", {"id": d["issuer"]}),
], ids=["proof @context equal to the document's", "proof as a one-element list",
        "issuer as an object with the same id"])
def test_equivalent_forms_still_verify(mutate: Mutation) -> None:
    document = copy.deepcopy(EDDSA["signed"])
    mutate(document)
    assert verify(document).suite == "eddsa-rdfc-2022"


def test_verify_does_not_modify_the_document() -> None:
    document = copy.deepcopy(EDDSA["signed"])
    verify(document)
    assert document == EDDSA["signed"]


# --- keys ---------------------------------------------------------------------------------

def test_wrong_key() -> None:
    with pytest.raises(InvalidProof):
        verify(copy.deepcopy(EDDSA["signed"]), lookup=lambda vm, p: OTHER_KEY.public_key)
    with pytest.raises(InvalidProof):
        verify(copy.deepcopy(ED2020["signed"]), lookup=lambda vm, p: OTHER_KEY.public_key)


def test_key_lookup_receives_the_method_and_purpose() -> None:
    seen = []

    def lookup(vm: str, purpose: str) -> bytes:
        seen.append((vm, purpose))
        return VECTOR_KEY.public_key

    verify(copy.deepcopy(EDDSA["signed"]), lookup=lookup)
    assert seen == [(VECTOR_KEY.did.verification_method, "assertionMethod")]


def test_key_lookup_refusal_propagates() -> None:
    def lookup(vm: str, purpose: str) -> bytes:
        raise InvalidProof(f"{vm} is not authorised")

    with pytest.raises(InvalidProof, match="not authorised"):
        verify(copy.deepcopy(EDDSA["signed"]), lookup=lookup)


def test_signed_by_another_key_naming_the_vector_key() -> None:
    options = di.ProofOptions(verification_method=VECTOR_KEY.did.verification_method,
                              proof_purpose="assertionMethod", created=CREATED)
    forged = di.add_proof(EDDSA["unsigned"], OTHER_KEY, options, LOADER)
    with pytest.raises(InvalidProof):
        verify(forged)


# --- expiry -------------------------------------------------------------------------------

def _signed_with_expiry(expires: dt.datetime) -> dict[str, Any]:
    options = di.ProofOptions(verification_method=VECTOR_KEY.did.verification_method,
                              proof_purpose="assertionMethod", created=CREATED,
                              expires=expires)
    return di.add_proof(EDDSA["unsigned"], VECTOR_KEY, options, LOADER)


def test_expired_proof() -> None:
    signed = _signed_with_expiry(NOW - dt.timedelta(seconds=1))
    assert signed["proof"]["expires"] == "2025-05-31T23:59:59Z"
    with pytest.raises(InvalidProof, match="expired"):
        verify(signed)


def test_proof_expiring_later_verifies_and_its_expiry_is_signed() -> None:
    signed = _signed_with_expiry(NOW + dt.timedelta(days=1))
    verify(signed)
    signed["proof"]["expires"] = "2999-01-01T00:00:00Z"
    with pytest.raises(InvalidProof):
        verify(signed)
    with pytest.raises(InvalidProof, match="expired"):
        verify(_signed_with_expiry(NOW + dt.timedelta(days=1)),
               now=NOW + dt.timedelta(days=2))


# --- presentations: challenge and domain --------------------------------------------------

HOLDER = VECTOR_KEY
PRESENTATION = {"@context": [VC_V2], "id": "urn:uuid:3978344f-8596-4c3a-a978-8fcaba3903c5",
                "type": ["VerifiablePresentation"], "holder": HOLDER.did.did}


def _presented(challenge: str = "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e",
               domain: str = "verifier.example") -> dict[str, Any]:
    options = di.ProofOptions(verification_method=HOLDER.did.verification_method,
                              proof_purpose="authentication", created=CREATED,
                              challenge=challenge, domain=domain)
    return di.add_proof(PRESENTATION, HOLDER, options, ContextLoader())


def _verify_presented(document: dict[str, Any], challenge: str, domain: str
                      ) -> di.VerifiedProof:
    return verify(document, purpose="authentication", loader=ContextLoader(),
                  challenge=challenge, domain=domain)


def test_presentation_binding_accepted() -> None:
    presented = _presented()
    assert presented["proof"]["challenge"] == "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e"
    assert presented["proof"]["domain"] == "verifier.example"
    result = _verify_presented(presented, "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e",
                               "verifier.example")
    assert result.challenge == "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e"
    assert result.domain == "verifier.example"
    assert result.proof_purpose == "authentication"


@pytest.mark.parametrize("challenge, domain", [
    ("another-challenge", "verifier.example"),
    ("C0AE1C8E-C7E7-469F-B252-86E6A0E7387E", "verifier.example"),
    ("", "verifier.example"),
    ("c0ae1c8e-c7e7-469f-b252-86e6a0e7387e", "attacker.example"),
    ("c0ae1c8e-c7e7-469f-b252-86e6a0e7387e", "verifier.example.org"),
    ("c0ae1c8e-c7e7-469f-b252-86e6a0e7387e", ""),
    ("another-challenge", "attacker.example"),
])
def test_presentation_binding_mismatch(challenge: str, domain: str) -> None:
    with pytest.raises(PresentationMismatch):
        _verify_presented(_presented(), challenge, domain)


def test_presentation_without_challenge_or_domain_when_one_is_expected() -> None:
    presented = _presented()
    del presented["proof"]["challenge"]
    with pytest.raises(PresentationMismatch, match="challenge"):
        _verify_presented(presented, "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e",
                          "verifier.example")
    presented = _presented()
    del presented["proof"]["domain"]
    with pytest.raises(PresentationMismatch, match="domain"):
        _verify_presented(presented, "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e",
                          "verifier.example")


def test_presentation_challenge_and_domain_are_signed() -> None:
    # Rewriting the proof's challenge to the one the verifier expects breaks the signature.
    presented = _presented(challenge="old-challenge", domain="old.example")
    presented["proof"]["challenge"] = "new-challenge"
    with pytest.raises(InvalidProof):
        _verify_presented(presented, "new-challenge", "old.example")
    presented = _presented(challenge="old-challenge", domain="old.example")
    presented["proof"]["domain"] = "new.example"
    with pytest.raises(InvalidProof):
        _verify_presented(presented, "old-challenge", "new.example")


def test_presentation_purpose_must_be_authentication() -> None:
    with pytest.raises(PresentationMismatch):
        verify(_presented(), purpose="assertionMethod", loader=ContextLoader())


@pytest.mark.parametrize("field, value", [
    ("holder", OTHER_KEY.did.did),
    ("id", "urn:uuid:00000000-0000-0000-0000-000000000000"),
    ("type", ["VerifiablePresentation", "ExamplePresentation"]),
    ("verifiableCredential", [{"@context": [VC_V2], "type": ["VerifiableCredential"],
                               "issuer": "did:example:issuer",
                               "credentialSubject": {"id": "did:example:subject"}}]),
])
def test_presentation_fields_are_signed(field: str, value: Any) -> None:
    presented = _presented()
    presented[field] = value
    with pytest.raises((InvalidProof, MalformedCredential)):
        _verify_presented(presented, "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e",
                          "verifier.example")


def test_undefined_term_in_a_vc_2_document_is_malformed() -> None:
    presented = _presented()
    presented["favouriteColour"] = "green"    # the VC 2.0 context has no @vocab
    with pytest.raises(MalformedCredential, match="favouriteColour"):
        _verify_presented(presented, "c0ae1c8e-c7e7-469f-b252-86e6a0e7387e",
                          "verifier.example")
    with pytest.raises(MalformedCredential, match="favouriteColour"):
        di.add_proof({**PRESENTATION, "favouriteColour": "green"}, HOLDER,
                     di.ProofOptions(verification_method=HOLDER.did.verification_method,
                                     proof_purpose="authentication", created=CREATED),
                     ContextLoader())


# --- signing ------------------------------------------------------------------------------

def test_add_proof_refuses_a_signed_document() -> None:
    options = di.ProofOptions(verification_method=VECTOR_KEY.did.verification_method,
                              proof_purpose="assertionMethod", created=CREATED)
    with pytest.raises(MalformedCredential, match="already signed"):
        di.add_proof(EDDSA["signed"], VECTOR_KEY, options, LOADER)


@pytest.mark.parametrize("suite", ["Ed25519Signature2018", "ecdsa-rdfc-2019", "eddsa-jcs-2022"])
def test_add_proof_refuses_other_suites(suite: str) -> None:
    options = di.ProofOptions(verification_method=VECTOR_KEY.did.verification_method,
                              proof_purpose="assertionMethod", created=CREATED, suite=suite)
    with pytest.raises(UnsupportedCryptosuite):
        di.add_proof(EDDSA["unsigned"], VECTOR_KEY, options, LOADER)


def test_add_proof_normalises_created_to_utc_seconds() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    options = di.ProofOptions(verification_method=VECTOR_KEY.did.verification_method,
                              proof_purpose="assertionMethod",
                              created=dt.datetime(2023, 2, 25, 0, 36, 38, 999_000, tzinfo=cet))
    assert di.add_proof(EDDSA["unsigned"], VECTOR_KEY, options, LOADER) == EDDSA["signed"]


def test_every_error_is_a_credential_error() -> None:
    for error in (InvalidProof, MalformedCredential, PresentationMismatch, UnknownContext,
                  UnsupportedCryptosuite):
        assert issubclass(error, CredentialError)
