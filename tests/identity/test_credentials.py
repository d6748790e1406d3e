"""Issuing and verifying credentials and presentations (mpcid.identity.credentials)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from mpcid.identity import credentials as cred
from mpcid.identity import dataintegrity as di
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import (CredentialExpired, CredentialNotYetValid, CredentialRevoked,
                                   InvalidProof, MalformedCredential, PolicyNotSatisfied,
                                   PresentationMismatch, StatusCheckFailed)
from mpcid.identity.jsonld import ContextLoader
from mpcid.identity.policy import Policy
from mpcid.identity.resolver import DIDResolver, UniversalResolver
from mpcid.identity.statuslist import FileAndHttpStatusSource, StatusSource


STATUS_URL = "https://status.example.org/lists/1"  # as in conftest.py
CHALLENGE = "challenge-session-1"
DOMAIN = "mpcid:session:1"

Doc = dict[str, Any]


def verify(document: Any, config: cred.VerifyConfig | None = None) -> cred.VerifiedCredential:
    return asyncio.run(cred.verify_credential(document, config or cred.VerifyConfig()))


def verify_vp(document: Any, *, challenge: str = CHALLENGE, domain: str = DOMAIN,
              config: cred.VerifyConfig | None = None) -> cred.VerifiedPresentation:
    return asyncio.run(cred.verify_presentation(document, config or cred.VerifyConfig(),
                                                challenge=challenge, domain=domain))


def with_status(*lists: Doc) -> cred.VerifyConfig:
    return cred.VerifyConfig(status=FileAndHttpStatusSource({d["id"]: d for d in lists}))


# --- round trips ----------------------------------------------------------------------------


def test_credential_round_trip(membership_credential: Doc, org_key: Ed25519Key,
                               alice_key: Ed25519Key, now: dt.datetime) -> None:
    verified = verify(membership_credential)
    assert verified.issuer == org_key.did.did
    assert verified.subject == alice_key.did.did
    assert verified.claims == {"organization": "Acme"}
    assert verified.types == ("VerifiableCredential", "MembershipCredential")
    assert verified.valid_from == now - dt.timedelta(days=1)
    assert verified.valid_until == now + dt.timedelta(days=1)
    assert verified.proof.suite == di.EDDSA_RDFC_2022
    assert verified.proof.controller == org_key.did.did
    assert verified.proof.proof_purpose == "assertionMethod"
    assert verified.id == membership_credential["id"]


def test_credential_round_trip_ed25519signature2020(org_key: Ed25519Key, alice_key: Ed25519Key,
                                                    now: dt.datetime) -> None:
    document = cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                                     credential_type="MembershipCredential",
                                     claims={"role": "admin"}, valid_from=now)
    signed = cred.sign_credential(document, org_key, now=now, suite=di.ED25519_2020)
    verified = verify(signed)
    assert verified.proof.suite == di.ED25519_2020
    assert verified.claims == {"role": "admin"}
    assert verified.valid_until is None


def test_sign_refuses_a_key_that_is_not_the_issuer(org_key: Ed25519Key, alice_key: Ed25519Key,
                                                   now: dt.datetime) -> None:
    document = cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                                     credential_type="MembershipCredential", valid_from=now)
    with pytest.raises(MalformedCredential):
        cred.sign_credential(document, alice_key, now=now)


def test_build_refuses_bad_input(org_key: Ed25519Key, alice_key: Ed25519Key,
                                 now: dt.datetime) -> None:
    with pytest.raises(MalformedCredential):
        cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                              credential_type="X", claims={"id": "nope"}, valid_from=now)
    with pytest.raises(MalformedCredential):
        cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                              credential_type="X", valid_from=now, valid_until=now)


def test_presentation_round_trip(membership_credential: Doc, alice_key: Ed25519Key,
                                 org_key: Ed25519Key, now: dt.datetime) -> None:
    vp = cred.create_presentation(alice_key, [membership_credential], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    verified = verify_vp(vp)
    assert verified.holder == alice_key.did.did
    assert verified.challenge == CHALLENGE
    assert verified.domain == DOMAIN
    assert verified.proof.proof_purpose == "authentication"
    assert len(verified.credentials) == 1
    assert verified.credentials[0].issuer == org_key.did.did
    assert verified.credentials[0].claims == {"organization": "Acme"}


def test_presentation_without_credentials(alice_key: Ed25519Key, now: dt.datetime) -> None:
    vp = cred.create_presentation(alice_key, [], challenge=CHALLENGE, domain=DOMAIN, now=now)
    assert verify_vp(vp).credentials == ()


def test_one_presentation_signed_per_challenge(membership_credential: Doc,
                                               alice_key: Ed25519Key, now: dt.datetime,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A Presenter signs one document for many channels: each proof verifies for its own
    challenge only, and the document is canonicalized once."""
    presenter = cred.Presenter(alice_key, [membership_credential], domain=DOMAIN)
    hashed: list[int] = []
    inner = di.hash_document
    monkeypatch.setattr(di, "hash_document", lambda *a: hashed.append(1) or inner(*a))
    first, second = presenter.present("channel-1", now), presenter.present("channel-2", now)
    assert len(hashed) == 1
    assert first["id"] == second["id"] and first["proof"] != second["proof"]
    assert verify_vp(first, challenge="channel-1").holder == alice_key.did.did
    assert verify_vp(second, challenge="channel-2").holder == alice_key.did.did
    with pytest.raises(PresentationMismatch):
        verify_vp(first, challenge="channel-2")
    replayed = {**second, "proof": {**second["proof"], "challenge": "channel-1"}}
    with pytest.raises(InvalidProof):
        verify_vp(replayed, challenge="channel-1")


def test_presentation_needs_challenge_and_domain(alice_key: Ed25519Key,
                                                 now: dt.datetime) -> None:
    with pytest.raises(MalformedCredential):
        cred.create_presentation(alice_key, [], challenge="", domain=DOMAIN, now=now)
    with pytest.raises(MalformedCredential):
        cred.create_presentation(alice_key, [], challenge=CHALLENGE, domain="", now=now)


# --- validity period ------------------------------------------------------------------------


def test_expired(membership_credential: Doc, now: dt.datetime) -> None:
    later = now + dt.timedelta(days=1, seconds=1)
    with pytest.raises(CredentialExpired):
        verify(membership_credential, cred.VerifyConfig(now=later))
    # the last valid second is still valid
    verify(membership_credential, cred.VerifyConfig(now=now + dt.timedelta(days=1)))


def test_not_yet_valid(membership_credential: Doc, now: dt.datetime) -> None:
    earlier = now - dt.timedelta(days=1, seconds=1)
    with pytest.raises(CredentialNotYetValid):
        verify(membership_credential, cred.VerifyConfig(now=earlier))


def test_expired_credential_inside_a_presentation(membership_credential: Doc,
                                                  alice_key: Ed25519Key,
                                                  now: dt.datetime) -> None:
    vp = cred.create_presentation(alice_key, [membership_credential], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    with pytest.raises(CredentialExpired):
        verify_vp(vp, config=cred.VerifyConfig(now=now + dt.timedelta(days=2)))


# --- status lists ---------------------------------------------------------------------------


def test_status_not_revoked(make_status_credential: Callable[..., Doc],
                            make_status_list: Callable[..., Doc], org_key: Ed25519Key) -> None:
    credential = make_status_credential(42)
    status = make_status_list(org_key, set_bits=(41, 43))
    verified = verify(credential, with_status(status))
    assert verified.claims == {"organization": "Acme"}


def test_status_revoked(make_status_credential: Callable[..., Doc],
                        make_status_list: Callable[..., Doc], org_key: Ed25519Key) -> None:
    credential = make_status_credential(42)
    status = make_status_list(org_key, set_bits=(42,))
    with pytest.raises(CredentialRevoked) as info:
        verify(credential, with_status(status))
    assert "revoked" in str(info.value)
    # with status checks off the same credential verifies
    verify(credential)


def test_status_suspended(make_status_credential: Callable[..., Doc],
                          make_status_list: Callable[..., Doc], org_key: Ed25519Key) -> None:
    credential = make_status_credential(7, purpose="suspension")
    status = make_status_list(org_key, set_bits=(7,), purpose="suspension")
    with pytest.raises(CredentialRevoked) as info:
        verify(credential, with_status(status))
    assert "suspended" in str(info.value)


def test_status_revoked_inside_a_presentation(make_status_credential: Callable[..., Doc],
                                              make_status_list: Callable[..., Doc],
                                              org_key: Ed25519Key, alice_key: Ed25519Key,
                                              now: dt.datetime) -> None:
    vp = cred.create_presentation(alice_key, [make_status_credential(3)], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    with pytest.raises(CredentialRevoked):
        verify_vp(vp, config=with_status(make_status_list(org_key, set_bits=(3,))))


def test_status_list_from_another_issuer(make_status_credential: Callable[..., Doc],
                                         make_status_list: Callable[..., Doc],
                                         other_org_key: Ed25519Key) -> None:
    credential = make_status_credential(42)
    status = make_status_list(other_org_key)
    with pytest.raises(StatusCheckFailed) as info:
        verify(credential, with_status(status))
    assert other_org_key.did.did in str(info.value)


def test_status_list_with_wrong_purpose(make_status_credential: Callable[..., Doc],
                                        make_status_list: Callable[..., Doc],
                                        org_key: Ed25519Key) -> None:
    credential = make_status_credential(42, purpose="revocation")
    status = make_status_list(org_key, purpose="suspension", set_bits=(42,))
    with pytest.raises(StatusCheckFailed):
        verify(credential, with_status(status))


def test_status_index_outside_the_list(make_status_credential: Callable[..., Doc],
                                       make_status_list: Callable[..., Doc],
                                       org_key: Ed25519Key) -> None:
    credential = make_status_credential(131_072)  # the list has indices 0..131071
    status = make_status_list(org_key)
    with pytest.raises(StatusCheckFailed):
        verify(credential, with_status(status))


def test_status_list_tampered(make_status_credential: Callable[..., Doc],
                              make_status_list: Callable[..., Doc], org_key: Ed25519Key) -> None:
    """Clearing a revocation bit in a signed list invalidates the list."""
    credential = make_status_credential(42)
    status = make_status_list(org_key, set_bits=(42,))
    empty = make_status_list(org_key)
    status["credentialSubject"]["encodedList"] = empty["credentialSubject"]["encodedList"]
    with pytest.raises(StatusCheckFailed):
        verify(credential, with_status(status))


def test_status_list_is_not_a_status_list(make_status_credential: Callable[..., Doc],
                                          org_key: Ed25519Key, alice_key: Ed25519Key,
                                          now: dt.datetime) -> None:
    """An ordinary credential of the issuer served at the status URL is refused."""
    credential = make_status_credential(42)
    imposter = cred.sign_credential(cred.build_credential(
        issuer=org_key.did.did, subject=alice_key.did.did, credential_type="MembershipCredential",
        valid_from=now - dt.timedelta(days=1), credential_id=STATUS_URL), org_key, now=now)
    with pytest.raises(StatusCheckFailed):
        verify(credential, with_status(imposter))


# --- signatures -----------------------------------------------------------------------------


def test_signed_by_another_key_than_its_issuer(org_key: Ed25519Key, alice_key: Ed25519Key,
                                               mallory_key: Ed25519Key,
                                               now: dt.datetime) -> None:
    document = cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                                     credential_type="MembershipCredential", valid_from=now)
    forged = di.add_proof(document, mallory_key, di.ProofOptions(
        verification_method=mallory_key.did.verification_method,
        proof_purpose="assertionMethod", created=now), ContextLoader())
    with pytest.raises(InvalidProof):
        verify(forged)


def test_signed_by_another_key_claiming_the_issuers_method(
        org_key: Ed25519Key, alice_key: Ed25519Key, mallory_key: Ed25519Key,
        now: dt.datetime) -> None:
    document = cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                                     credential_type="MembershipCredential", valid_from=now)
    forged = di.add_proof(document, mallory_key, di.ProofOptions(
        verification_method=org_key.did.verification_method,
        proof_purpose="assertionMethod", created=now), ContextLoader())
    with pytest.raises(InvalidProof):
        verify(forged)


def test_issuer_swapped_after_signing(membership_credential: Doc,
                                      mallory_key: Ed25519Key) -> None:
    tampered = copy.deepcopy(membership_credential)
    tampered["issuer"] = mallory_key.did.did
    with pytest.raises(InvalidProof):
        verify(tampered)


@pytest.mark.parametrize("change", [
    lambda d: d["credentialSubject"].__setitem__("organization", "Evil Corp"),
    lambda d: d.__setitem__("validUntil", "2999-01-01T00:00:00Z"),
    lambda d: d["proof"].__setitem__("created", "2000-01-01T00:00:00Z"),
    lambda d: d["proof"].__setitem__(
        "proofValue", d["proof"]["proofValue"][:-2] + ("11" if not
                                                      d["proof"]["proofValue"].endswith("11")
                                                      else "22")),
])
def test_tampered_credential(membership_credential: Doc, change: Callable[[Doc], None]) -> None:
    tampered = copy.deepcopy(membership_credential)
    change(tampered)
    with pytest.raises(InvalidProof):
        verify(tampered)


# --- presentations --------------------------------------------------------------------------


def test_wrong_challenge(membership_credential: Doc, alice_key: Ed25519Key,
                         now: dt.datetime) -> None:
    vp = cred.create_presentation(alice_key, [membership_credential], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    with pytest.raises(PresentationMismatch):
        verify_vp(vp, challenge="another-challenge")


def test_wrong_domain(membership_credential: Doc, alice_key: Ed25519Key,
                      now: dt.datetime) -> None:
    vp = cred.create_presentation(alice_key, [membership_credential], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    with pytest.raises(PresentationMismatch):
        verify_vp(vp, domain="mpcid:session:2")


def test_replay_with_another_sessions_challenge(membership_credential: Doc,
                                                alice_key: Ed25519Key,
                                                now: dt.datetime) -> None:
    """A presentation recorded in session 1 cannot be replayed in session 2, neither as is
    nor with the challenge in the proof rewritten (that breaks the signature)."""
    vp = cred.create_presentation(alice_key, [membership_credential], challenge="session-1",
                                  domain=DOMAIN, now=now)
    verify_vp(vp, challenge="session-1")
    with pytest.raises(PresentationMismatch):
        verify_vp(vp, challenge="session-2")
    rewritten = copy.deepcopy(vp)
    rewritten["proof"]["challenge"] = "session-2"
    with pytest.raises(InvalidProof):
        verify_vp(rewritten, challenge="session-2")


def test_holder_presents_someone_elses_credential(membership_credential: Doc,
                                                  bob_key: Ed25519Key,
                                                  now: dt.datetime) -> None:
    vp = cred.create_presentation(bob_key, [membership_credential], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    with pytest.raises(PresentationMismatch):
        verify_vp(vp)


def test_presentation_signed_by_another_key_than_holder(membership_credential: Doc,
                                                        alice_key: Ed25519Key,
                                                        mallory_key: Ed25519Key,
                                                        now: dt.datetime) -> None:
    document = {"@context": [cred.VC_V2], "type": ["VerifiablePresentation"],
                "holder": alice_key.did.did, "verifiableCredential": [membership_credential]}
    forged = di.add_proof(document, mallory_key, di.ProofOptions(
        verification_method=mallory_key.did.verification_method,
        proof_purpose="authentication", created=now, challenge=CHALLENGE, domain=DOMAIN),
        ContextLoader())
    with pytest.raises(InvalidProof):
        verify_vp(forged)


def test_credential_tampered_inside_the_presentation(membership_credential: Doc,
                                                     alice_key: Ed25519Key,
                                                     now: dt.datetime) -> None:
    vp = cred.create_presentation(alice_key, [membership_credential], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    after = copy.deepcopy(vp)
    after["verifiableCredential"][0]["credentialSubject"]["organization"] = "Evil Corp"
    with pytest.raises(InvalidProof):
        verify_vp(after)
    # tampered before the holder signed: the presentation proof holds, the credential's not
    tampered = copy.deepcopy(membership_credential)
    tampered["credentialSubject"]["organization"] = "Evil Corp"
    vp2 = cred.create_presentation(alice_key, [tampered], challenge=CHALLENGE, domain=DOMAIN,
                                   now=now)
    with pytest.raises(InvalidProof):
        verify_vp(vp2)


def test_presentation_with_assertion_purpose(membership_credential: Doc, alice_key: Ed25519Key,
                                             now: dt.datetime) -> None:
    document = {"@context": [cred.VC_V2], "type": ["VerifiablePresentation"],
                "holder": alice_key.did.did, "verifiableCredential": [membership_credential]}
    signed = di.add_proof(document, alice_key, di.ProofOptions(
        verification_method=alice_key.did.verification_method,
        proof_purpose="assertionMethod", created=now, challenge=CHALLENGE, domain=DOMAIN),
        ContextLoader())
    with pytest.raises(PresentationMismatch):
        verify_vp(signed)


def test_credential_presented_as_presentation(membership_credential: Doc) -> None:
    with pytest.raises(MalformedCredential):
        verify_vp(membership_credential)


# --- malformed documents --------------------------------------------------------------------


def test_vc11_without_issuance_date(org_key: Ed25519Key, alice_key: Ed25519Key,
                                    now: dt.datetime) -> None:
    document = {"@context": [cred.VC_V1, "https://w3id.org/security/suites/ed25519-2020/v1"],
                "id": "urn:uuid:8d1c3a5e-0000-4000-8000-000000000001",
                "type": ["VerifiableCredential"], "issuer": org_key.did.did,
                "credentialSubject": {"id": alice_key.did.did}}
    with pytest.raises(MalformedCredential, match="issuanceDate"):
        cred.sign_credential(document, org_key, now=now, suite=di.ED25519_2020)
    signed = cred.sign_credential({**document, "issuanceDate": "2025-01-01T00:00:00Z"},
                                  org_key, now=now, suite=di.ED25519_2020)
    del signed["issuanceDate"]
    with pytest.raises(MalformedCredential) as info:
        verify(signed)
    assert "issuanceDate" in str(info.value)


def test_vc11_with_issuance_date_verifies(org_key: Ed25519Key, alice_key: Ed25519Key,
                                          now: dt.datetime) -> None:
    document = {"@context": [cred.VC_V1, "https://w3id.org/security/suites/ed25519-2020/v1"],
                "type": ["VerifiableCredential"], "issuer": org_key.did.did,
                "issuanceDate": "2024-01-01T00:00:00Z",
                "expirationDate": "2999-01-01T00:00:00Z",
                "credentialSubject": {"id": alice_key.did.did}}
    verified = verify(cred.sign_credential(document, org_key, now=now, suite=di.ED25519_2020))
    assert verified.valid_from == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert verified.valid_until == dt.datetime(2999, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("context", [
    ["https://w3id.org/mpcid/v1", cred.VC_V2],
    ["https://www.w3.org/ns/did/v1"],
    "https://example.org/not-vc",
    [],
    None,
])
def test_first_context_not_vc(membership_credential: Doc, context: Any) -> None:
    document = copy.deepcopy(membership_credential)
    document["@context"] = context
    with pytest.raises(MalformedCredential):
        verify(document)


def test_no_proof(membership_credential: Doc) -> None:
    document = copy.deepcopy(membership_credential)
    del document["proof"]
    with pytest.raises(MalformedCredential) as info:
        verify(document)
    assert "proof" in str(info.value)


@pytest.mark.parametrize("change", [
    lambda d: d.pop("issuer"),
    lambda d: d.__setitem__("issuer", "not a did"),
    lambda d: d.__setitem__("type", ["MembershipCredential"]),
    lambda d: d.__setitem__("credentialSubject", []),
    lambda d: d.__setitem__("credentialSubject", [d["credentialSubject"], {}]),
    lambda d: d.__setitem__("proof", "zzz"),
])
def test_other_malformed_shapes(membership_credential: Doc,
                                change: Callable[[Doc], None]) -> None:
    document = copy.deepcopy(membership_credential)
    change(document)
    with pytest.raises(MalformedCredential):
        verify(document)


@pytest.mark.parametrize("value", [None, [], "credential", 42])
def test_not_an_object(value: Any) -> None:
    with pytest.raises(MalformedCredential):
        verify(value)
    with pytest.raises(MalformedCredential):
        verify_vp(value)


# --- nothing resolved or fetched for what a verifier did not ask for (specs/identity.md 5) --


class RecordingResolver(DIDResolver):
    """did:key as usual; records every DID it is asked for (a did:web would be a fetch)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.inner = UniversalResolver()

    async def resolve(self, did: str) -> dict[str, Any]:
        self.asked.append(did)
        return await self.inner.resolve(did)


class RecordingStatus(StatusSource):
    def __init__(self, *lists: Doc) -> None:
        self.asked: list[str] = []
        self.lists = {d["id"]: d for d in lists}

    async def fetch(self, url: str) -> dict[str, Any]:
        self.asked.append(url)
        return self.lists[url]


def test_precheck_refuses_before_any_resolution_or_fetch(
        make_status_credential: Callable[..., Doc], make_status_list: Callable[..., Doc],
        org_key: Ed25519Key, other_org_key: Ed25519Key, alice_key: Ed25519Key,
        now: dt.datetime) -> None:
    """The policy runs on the credentials as presented: an issuer nobody asked for is
    refused without resolving a DID or fetching its status list."""
    resolver, status = RecordingResolver(), RecordingStatus(make_status_list(org_key))
    config = cred.VerifyConfig(resolver=resolver, status=status)
    vp = cred.create_presentation(alice_key, [make_status_credential(3)], challenge=CHALLENGE,
                                  domain=DOMAIN, now=now)
    policy = Policy.parse([f"MembershipCredential@{other_org_key.did.did}"])

    def precheck(holder: str, documents: list[Any]) -> None:
        policy.precheck(holder, documents, expected=alice_key.did.did)

    with pytest.raises(PolicyNotSatisfied, match="was issued by"):
        asyncio.run(cred.verify_presentation(vp, config, challenge=CHALLENGE, domain=DOMAIN,
                                             precheck=precheck))
    assert resolver.asked == [] and status.asked == []
    # The issuer asked for: verified in full, status list included.
    policy = Policy.parse([f"MembershipCredential@{org_key.did.did}"])
    result = asyncio.run(cred.verify_presentation(vp, config, challenge=CHALLENGE,
                                                  domain=DOMAIN, precheck=precheck))
    assert policy.evaluate(result) and status.asked == [STATUS_URL]


def test_precheck_refuses_unrequested_credentials_and_another_holder(
        membership_credential: Doc, alice_key: Ed25519Key, bob_key: Ed25519Key,
        org_key: Ed25519Key) -> None:
    policy = Policy.parse([f"MembershipCredential@{org_key.did.did}"])
    with pytest.raises(PresentationMismatch, match="not its own"):
        policy.precheck(alice_key.did.did, [membership_credential], expected=bob_key.did.did)
    with pytest.raises(PolicyNotSatisfied):
        policy.precheck(alice_key.did.did, [membership_credential] * 2,
                        expected=alice_key.did.did)
    with pytest.raises(PresentationMismatch, match="not to the presenter"):
        policy.precheck(bob_key.did.did, [membership_credential], expected=bob_key.did.did)
    with pytest.raises(PolicyNotSatisfied, match="does not ask for"):
        Policy().precheck(alice_key.did.did, [membership_credential],
                          expected=alice_key.did.did)
    policy.precheck(alice_key.did.did, [membership_credential], expected=alice_key.did.did)


def test_proof_naming_another_did_is_refused_before_resolving_it(
        org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime) -> None:
    """A proof whose verificationMethod is a did:web on an internal host: refused because
    it is not the issuer's, without resolving (fetching) it."""
    document = cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                                     credential_type="MembershipCredential", valid_from=now)
    signed = cred.sign_credential(document, org_key, now=now)
    signed["proof"]["verificationMethod"] = "did:web:127.0.0.1%3A22#key-1"
    resolver = RecordingResolver()
    with pytest.raises(InvalidProof):
        verify(signed, cred.VerifyConfig(resolver=resolver))
    assert resolver.asked == []


def test_status_list_of_another_issuer_is_not_resolved(
        make_status_credential: Callable[..., Doc], make_status_list: Callable[..., Doc],
        other_org_key: Ed25519Key) -> None:
    resolver = RecordingResolver()
    config = cred.VerifyConfig(resolver=resolver,
                               status=RecordingStatus(make_status_list(other_org_key)))
    with pytest.raises(StatusCheckFailed, match="not by the credential's issuer"):
        verify(make_status_credential(1), config)
    assert other_org_key.did.did not in resolver.asked


def test_too_many_status_entries(make_status_list: Callable[..., Doc], org_key: Ed25519Key,
                                 alice_key: Ed25519Key, now: dt.datetime) -> None:
    """Each status entry is a fetch: a credential naming more than a few is refused
    before any is fetched."""
    document = cred.build_credential(issuer=org_key.did.did, subject=alice_key.did.did,
                                     credential_type="MembershipCredential", valid_from=now,
                                     status=(STATUS_URL, 1))
    entry = document["credentialStatus"]
    document["credentialStatus"] = [{**entry, "id": f"{STATUS_URL}#{i}",
                                     "statusListIndex": str(i)} for i in range(5)]
    credential = cred.sign_credential(document, org_key, now=now)
    status = RecordingStatus(make_status_list(org_key))
    with pytest.raises(StatusCheckFailed, match="at most 4"):
        verify(credential, cred.VerifyConfig(status=status))
    assert status.asked == []


# --- contexts a verifier elsewhere can load ----------------------------------------------

#: Contexts that W3C or the usual verifier libraries publish (and that mpcid ships).
PUBLISHED = {cred.VC_V2, "https://www.w3.org/ns/credentials/undefined-terms/v2"}


def test_issued_credentials_use_published_contexts_only(membership_credential: Doc) -> None:
    """https://w3id.org/mpcid/v1 is published nowhere, so a verifier elsewhere could not
    load it: custom types and claims go through W3C's undefined-terms context."""
    assert set(membership_credential["@context"]) <= PUBLISHED
    assert "https://w3id.org/mpcid/v1" not in membership_credential["@context"]
    verified = verify(membership_credential)
    assert "MembershipCredential" in verified.types
    assert verified.claims == {"organization": "Acme"}


def test_credentials_issued_with_the_old_mpcid_context_still_verify(
        org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime) -> None:
    document = cred.build_credential(
        issuer=org_key.did.did, subject=alice_key.did.did,
        credential_type="MembershipCredential", claims={"organization": "Acme"},
        valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=1))
    document["@context"] = [cred.VC_V2, "https://w3id.org/mpcid/v1"]
    verified = verify(cred.sign_credential(document, org_key, now=now))
    assert verified.claims == {"organization": "Acme"}
