"""VC 1.1 / Ed25519Signature2018 through didkit, and Ed25519Signature2020 interop with
didkit in both directions (our signer -> didkit verifier, didkit signer -> our verifier).

mpcid only verifies 2018 proofs (:mod:`mpcid.identity.legacy`); the documents to verify
are signed here, with didkit itself (:func:`issue_vc11`)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
from typing import Any

import didkit
import pytest

from mpcid.identity import credentials as cred
from mpcid.identity import dataintegrity as di
from mpcid.identity import multibase
from mpcid.identity.did_key import ED25519_2020_CONTEXT, Ed25519Key
from mpcid.identity.errors import (CredentialExpired, InvalidProof, MalformedCredential,
                                   PresentationMismatch)

VC_V1 = "https://www.w3.org/2018/credentials/v1"


def vc11(issuer: Ed25519Key, subject: Ed25519Key, *, extra_context: tuple[str, ...] = (),
         **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": [VC_V1, *extra_context],
        "id": "urn:uuid:3978344f-8596-4c3a-a978-8fcaba3903c5",
        "type": ["VerifiableCredential"],
        "issuer": issuer.did.did,
        "issuanceDate": "2024-01-01T00:00:00Z",
        "credentialSubject": {"id": subject.did.did},
    }
    document.update(fields)
    return document


def verify(document: dict[str, Any], config: cred.VerifyConfig | None = None
           ) -> cred.VerifiedCredential:
    return asyncio.run(cred.verify_credential(document, config or cred.VerifyConfig()))


def didkit_verify(document: dict[str, Any]) -> dict[str, Any]:
    # didkit's coroutines must be created inside a running event loop
    async def run() -> str:
        return str(await didkit.verify_credential(
            json.dumps(document), json.dumps({"proofPurpose": "assertionMethod"})))

    answer: dict[str, Any] = json.loads(asyncio.run(run()))
    return answer


def jwk(key: Ed25519Key) -> str:
    """The private key as the OKP JWK didkit takes (RFC 8037)."""
    return json.dumps({"kty": "OKP", "crv": "Ed25519",
                       "x": multibase.encode(key.public_key, "u")[1:],
                       "d": multibase.encode(key.seed, "u")[1:]})


def didkit_issue(document: dict[str, Any], options: dict[str, Any], key: Ed25519Key,
                 presentation: bool = False) -> dict[str, Any]:
    async def run() -> str:
        issue = didkit.issue_presentation if presentation else didkit.issue_credential
        return str(await issue(json.dumps(document), json.dumps(options), jwk(key)))

    answer: dict[str, Any] = json.loads(asyncio.run(run()))
    return answer


def issue_vc11(credential: dict[str, Any], key: Ed25519Key) -> dict[str, Any]:
    """``credential`` signed by didkit with an Ed25519Signature2018 proof by ``key``."""
    options = {"proofPurpose": "assertionMethod", "type": "Ed25519Signature2018",
               "verificationMethod": key.did.verification_method}
    return didkit_issue(credential, options, key)


# --- the 2018 bridge ------------------------------------------------------------------------


def test_jwk_is_the_okp_form_of_the_key(org_key: Ed25519Key) -> None:
    value = json.loads(jwk(org_key))
    assert value["kty"] == "OKP" and value["crv"] == "Ed25519"
    assert multibase.decode("u" + value["x"]) == org_key.public_key
    assert multibase.decode("u" + value["d"]) == org_key.seed
    assert "=" not in value["x"] + value["d"]
    # didkit derives the same did:key from it
    assert didkit.key_to_did("key", jwk(org_key)) == org_key.did.did


def test_vc11_signed_by_didkit_verifies(org_key: Ed25519Key, alice_key: Ed25519Key) -> None:
    signed = issue_vc11(vc11(org_key, alice_key), org_key)
    assert signed["proof"]["type"] == "Ed25519Signature2018"
    assert signed["proof"]["verificationMethod"] == org_key.did.verification_method
    assert "jws" in signed["proof"]
    verified = verify(signed)
    assert verified.proof.suite == "Ed25519Signature2018"
    assert verified.proof.controller == org_key.did.did
    assert verified.issuer == org_key.did.did
    assert verified.subject == alice_key.did.did
    assert verified.valid_from == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("change", [
    lambda d: d["credentialSubject"].__setitem__("id", "did:example:someone-else"),
    lambda d: d.__setitem__("issuanceDate", "2023-01-01T00:00:00Z"),
    lambda d: d.__setitem__("id", "urn:uuid:00000000-0000-4000-8000-000000000000"),
])
def test_vc11_tampered(org_key: Ed25519Key, alice_key: Ed25519Key, change: Any) -> None:
    signed = issue_vc11(vc11(org_key, alice_key), org_key)
    tampered = copy.deepcopy(signed)
    change(tampered)
    with pytest.raises(InvalidProof):
        verify(tampered)


def test_vc11_issuer_swapped(org_key: Ed25519Key, alice_key: Ed25519Key,
                             mallory_key: Ed25519Key) -> None:
    """The issuer field no longer names the key that signed: org's credential re-labelled as
    mallory's, and mallory's credential re-labelled as org's (didkit refuses to sign a
    credential whose issuer does not control the signing key, so this is the way to get a
    2018 credential "signed by a key other than its issuer")."""
    by_org = issue_vc11(vc11(org_key, alice_key), org_key)
    by_mallory = issue_vc11(vc11(mallory_key, alice_key), mallory_key)
    for signed, claimed in ((by_org, mallory_key), (by_mallory, org_key)):
        tampered = copy.deepcopy(signed)
        tampered["issuer"] = claimed.did.did
        with pytest.raises(InvalidProof):
            verify(tampered)


def test_vc11_expired_uses_the_configured_clock(org_key: Ed25519Key,
                                                alice_key: Ed25519Key) -> None:
    signed = issue_vc11(vc11(org_key, alice_key, expirationDate="2030-01-01T00:00:00Z"),
                        org_key)
    verify(signed, cred.VerifyConfig(now=dt.datetime(2029, 1, 1, tzinfo=dt.timezone.utc)))
    with pytest.raises(CredentialExpired):
        verify(signed, cred.VerifyConfig(now=dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)))


def test_2018_proof_on_a_vc2_document_is_refused(org_key: Ed25519Key,
                                                 membership_credential: dict[str, Any]
                                                 ) -> None:
    signed = issue_vc11(vc11(org_key, org_key), org_key)
    document = copy.deepcopy(membership_credential)
    document["proof"] = signed["proof"]
    with pytest.raises(MalformedCredential):
        verify(document)


def _presentation_2018(org_key: Ed25519Key, alice_key: Ed25519Key) -> dict[str, Any]:
    """A VC 1.1 presentation with an Ed25519Signature2018 proof made by didkit, for
    challenge "c-2018" and domain "d-2018"."""
    credential = issue_vc11(vc11(org_key, alice_key), org_key)
    presentation = {"@context": [VC_V1], "type": ["VerifiablePresentation"],
                    "holder": alice_key.did.did, "verifiableCredential": [credential]}
    options = {"proofPurpose": "authentication", "type": "Ed25519Signature2018",
               "verificationMethod": alice_key.did.verification_method,
               "challenge": "c-2018", "domain": "d-2018"}
    return didkit_issue(presentation, options, alice_key, presentation=True)


def test_2018_presentation(org_key: Ed25519Key, alice_key: Ed25519Key) -> None:
    vp = _presentation_2018(org_key, alice_key)
    verified = asyncio.run(cred.verify_presentation(vp, cred.VerifyConfig(),
                                                    challenge="c-2018", domain="d-2018"))
    assert verified.holder == alice_key.did.did
    assert verified.proof.suite == "Ed25519Signature2018"
    assert verified.challenge == "c-2018" and verified.domain == "d-2018"
    assert verified.credentials[0].proof.suite == "Ed25519Signature2018"


@pytest.mark.parametrize("challenge,domain", [("other", "d-2018"), ("c-2018", "other")])
def test_2018_presentation_for_another_session(org_key: Ed25519Key, alice_key: Ed25519Key,
                                               challenge: str, domain: str) -> None:
    vp = _presentation_2018(org_key, alice_key)
    with pytest.raises(PresentationMismatch):
        asyncio.run(cred.verify_presentation(vp, cred.VerifyConfig(), challenge=challenge,
                                             domain=domain))


# --- Ed25519Signature2020 interop -------------------------------------------------------------


def test_didkit_verifies_our_ed25519signature2020(org_key: Ed25519Key, alice_key: Ed25519Key,
                                                  now: dt.datetime) -> None:
    document = vc11(org_key, alice_key, extra_context=(ED25519_2020_CONTEXT,))
    signed = cred.sign_credential(document, org_key, now=now, suite=di.ED25519_2020)
    assert signed["proof"]["type"] == "Ed25519Signature2020"
    answer = didkit_verify(signed)
    assert answer["errors"] == [], answer
    assert "proof" in answer["checks"]
    # and it is not a rubber stamp: a changed document fails in didkit too
    tampered = copy.deepcopy(signed)
    tampered["credentialSubject"]["id"] = org_key.did.did
    assert didkit_verify(tampered)["errors"] != []


def test_we_verify_didkits_ed25519signature2020(org_key: Ed25519Key,
                                                alice_key: Ed25519Key) -> None:
    document = vc11(org_key, alice_key, extra_context=(ED25519_2020_CONTEXT,))
    options = {"proofPurpose": "assertionMethod", "type": "Ed25519Signature2020",
               "verificationMethod": org_key.did.verification_method}
    signed = didkit_issue(document, options, org_key)
    assert signed["proof"]["type"] == "Ed25519Signature2020"
    assert signed["proof"]["proofValue"].startswith("z")
    verified = verify(signed)
    assert verified.proof.suite == "Ed25519Signature2020"
    assert verified.issuer == org_key.did.did
    assert verified.subject == alice_key.did.did
    tampered = copy.deepcopy(signed)
    tampered["issuanceDate"] = "2023-06-01T00:00:00Z"
    with pytest.raises(InvalidProof):
        verify(tampered)
