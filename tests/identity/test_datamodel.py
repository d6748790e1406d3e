"""The VC Data Model rules a verifier can check on the JSON alone (specs/identity.md 3.5).

Each broken rule is signed the way an attacker or a careless issuer would (straight
through Data Integrity, past mpcid's issuing checks), so that the signature is valid and
only the data model rule can refuse it; the same document is refused by
``sign_credential``, which must never issue what a verifier refuses.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcid.identity import credentials as cred
from mpcid.identity import dataintegrity as di
from mpcid.identity import datamodel as dm
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MalformedCredential, PolicyNotSatisfied, PresentationMismatch
from mpcid.identity.jsonld import ContextLoader
from mpcid.identity.policy import Policy

Doc = dict[str, Any]


def raw_sign(document: Doc, key: Ed25519Key, now: dt.datetime) -> Doc:
    """A valid eddsa-rdfc-2022 proof on ``document``, without the issuing checks."""
    options = di.ProofOptions(verification_method=key.did.verification_method,
                              proof_purpose="assertionMethod", created=now)
    return di.add_proof(document, key, options, ContextLoader())


def base(org: Ed25519Key, alice: Ed25519Key, now: dt.datetime) -> Doc:
    return cred.build_credential(
        issuer=org.did.did, subject=alice.did.did, credential_type="MembershipCredential",
        claims={"organization": "Acme"}, valid_from=now - dt.timedelta(days=1),
        valid_until=now + dt.timedelta(days=1))


def verify(document: Doc) -> cred.VerifiedCredential:
    return asyncio.run(cred.verify_credential(document, cred.VerifyConfig()))


def _set(key: str, value: Any) -> Callable[[Doc], None]:
    return lambda d: d.__setitem__(key, value)


BROKEN: dict[str, tuple[Callable[[Doc], None], str]] = {
    "evidence without type": (_set("evidence", {"id": "urn:uuid:1", "verifier": "x"}),
                              "an entry of evidence has no type"),
    "one of two evidence without type": (
        _set("evidence", [{"type": "DocumentVerification"}, {"verifier": "x"}]),
        "an entry of evidence has no type"),
    "refreshService without type": (_set("refreshService", {"id": "https://r.example/1"}),
                                    "an entry of refreshService has no type"),
    "termsOfUse without type": (_set("termsOfUse", {"id": "https://t.example/1"}),
                                "an entry of termsOfUse has no type"),
    "credentialSchema without type": (
        _set("credentialSchema", {"id": "https://s.example/1.json"}),
        "an entry of credentialSchema has no type"),
    "credentialSchema without id": (_set("credentialSchema", {"type": "JsonSchema"}),
                                    "an entry of credentialSchema has no id"),
    "credentialSchema with a non-URL id": (
        _set("credentialSchema", {"type": "JsonSchema", "id": "schema 1"}),
        "the id in credentialSchema 'schema 1' is not a single URL"),
    "credentialStatus without type": (
        _set("credentialStatus", {"id": "https://status.example/1#3"}),
        "an entry of credentialStatus has no type"),
    "credentialStatus with two ids": (
        _set("credentialStatus", {"id": ["urn:a", "urn:b"], "type": "X"}),
        "is not a single URL"),
    "empty credentialSubject": (_set("credentialSubject", {}), "it makes no claim"),
    "an empty subject among others": (
        lambda d: d.__setitem__("credentialSubject", [d["credentialSubject"], {}]),
        "it makes no claim"),
    "no credentialSubject": (lambda d: d.pop("credentialSubject"), "no credentialSubject"),
    "subject with two ids": (
        lambda d: d["credentialSubject"].__setitem__("id", ["did:key:a", "did:key:b"]),
        "the credentialSubject's id .* is not a single URL"),
    "name with an extra property": (
        _set("name", {"@value": "Membership", "@language": "en", "url": "urn:x"}),
        "the credential's name must be a string or language value objects"),
    "issuer description that is a number": (
        lambda d: d.__setitem__("issuer", {"id": d["issuer"], "description": 7}),
        "the issuer's description"),
    "validFrom without a time zone": (_set("validFrom", "2025-01-01T00:00:00"),
                                      "validFrom .* is not a date-time with a time zone"),
    "validUntil before validFrom": (_set("validUntil", "2000-01-01T00:00:00Z"),
                                    "validUntil .* is before validFrom"),
    "relatedResource without digest": (
        _set("relatedResource", [{"id": "https://r.example/a"}]),
        "has no digestSRI or digestMultibase"),
    "relatedResource named twice": (
        _set("relatedResource", [{"id": "https://r.example/a", "digestSRI": "sha384-x"},
                                 {"id": "https://r.example/a", "digestSRI": "sha384-y"}]),
        "names https://r.example/a twice"),
    "a @context entry that is a number": (
        lambda d: d.__setitem__("@context", [*d["@context"], 123192875]),
        "each @context entry must be a URL or an object"),
    "id null": (_set("id", None), "the credential's id None is not a single URL"),
    "issuer object whose id is not a URL": (
        _set("issuer", {"id": "z6MkpJySvETLnxhQG9DzEdmKJtysBDjuuTeDfUj1uNNCUqcj"}),
        "the issuer must be a URL or an object whose id is a URL"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_rule_is_refused_by_the_verifier_and_never_signed(
        name: str, org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime) -> None:
    change, message = BROKEN[name]
    document = base(org_key, alice_key, now)
    change(document)
    with pytest.raises(MalformedCredential, match=message):
        cred.sign_credential(copy.deepcopy(document), org_key, now=now)
    try:
        signed = raw_sign(document, org_key, now)
    except MalformedCredential:
        return  # not even the canonical form takes it (e.g. an id that is not a URL)
    with pytest.raises(MalformedCredential, match=message):
        verify(signed)


GOOD: dict[str, Callable[[Doc], None]] = {
    "typed evidence": _set("evidence", [{"type": "DocumentVerification",
                                         "verifier": "https://acme.example/hr"}]),
    "schema with id and type": _set("credentialSchema", {
        "id": "https://acme.example/schemas/membership.json", "type": "JsonSchema"}),
    "terms of use": _set("termsOfUse", {"type": "IssuerPolicy",
                                        "id": "https://acme.example/policies/1"}),
    "refresh service": _set("refreshService", {"type": "ManualRefreshService2018",
                                               "id": "https://acme.example/refresh"}),
    "related resource": _set("relatedResource", [{"id": "https://acme.example/logo.png",
                                                  "digestSRI": "sha384-abc"}]),
    "language value name": _set("name", [{"@value": "Membership", "@language": "en"},
                                         {"@value": "Mitgliedschaft", "@language": "de"}]),
    "validFrom with an offset": _set("validFrom", "2025-01-01T01:00:00+01:00"),
    "issuer object with a name": lambda d: d.__setitem__("issuer", {"id": d["issuer"],
                                                                    "name": "Acme"}),
}


@pytest.mark.parametrize("name", GOOD)
def test_what_the_data_model_allows_is_signed_and_verified(
        name: str, org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime) -> None:
    document = base(org_key, alice_key, now)
    GOOD[name](document)
    result = verify(cred.sign_credential(document, org_key, now=now))
    assert result.subject == alice_key.did.did
    assert result.claims == {"organization": "Acme"}


# --- several subjects ---------------------------------------------------------------------


def two_subjects(org: Ed25519Key, alice: Ed25519Key, bob: Ed25519Key,
                 now: dt.datetime) -> Doc:
    """One credential about Bob (a Partner) and Alice (organization=Acme)."""
    document = base(org, alice, now)
    document["credentialSubject"] = [{"id": bob.did.did, "organization": "Partner"},
                                     {"id": alice.did.did, "organization": "Acme"}]
    return cred.sign_credential(document, org, now=now)


def present(holder: Ed25519Key, document: Doc, now: dt.datetime) -> Doc:
    return cred.create_presentation(holder, [document], challenge="c", domain="d", now=now)


def test_a_subject_array_is_read_for_the_holder(org_key: Ed25519Key, alice_key: Ed25519Key,
                                                bob_key: Ed25519Key, now: dt.datetime
                                                ) -> None:
    signed = two_subjects(org_key, alice_key, bob_key, now)
    result = verify(signed)
    assert [s.id for s in result.subjects] == [bob_key.did.did, alice_key.did.did]
    policy = Policy.parse([f"MembershipCredential@{org_key.did.did};organization=Acme"])
    for holder, organization in ((alice_key, "Acme"), (bob_key, "Partner")):
        vp = present(holder, signed, now)
        policy_for = Policy.parse([f"MembershipCredential@{org_key.did.did};"
                                   f"organization={organization}"])
        policy_for.precheck(holder.did.did, vp["verifiableCredential"],
                            expected=holder.did.did)
        verified = asyncio.run(cred.verify_presentation(vp, cred.VerifyConfig(),
                                                        challenge="c", domain="d"))
        assert verified.credentials[0].subject == holder.did.did
        assert verified.credentials[0].claims == {"organization": organization}
        policy_for.evaluate(verified)
    # Bob is a subject too, but what is said about him is not what Alice's policy asks.
    bob_vp = present(bob_key, signed, now)
    with pytest.raises(PolicyNotSatisfied, match="has organization='Partner', required organization='Acme'"):
        policy.precheck(bob_key.did.did, bob_vp["verifiableCredential"],
                        expected=bob_key.did.did)


def test_a_holder_outside_the_subjects_is_refused(org_key: Ed25519Key, alice_key: Ed25519Key,
                                                 bob_key: Ed25519Key, mallory_key: Ed25519Key,
                                                 now: dt.datetime) -> None:
    signed = two_subjects(org_key, alice_key, bob_key, now)
    vp = present(mallory_key, signed, now)
    policy = Policy.parse([f"MembershipCredential@{org_key.did.did}"])
    with pytest.raises(PresentationMismatch, match="not to the presenter"):
        policy.precheck(mallory_key.did.did, vp["verifiableCredential"],
                        expected=mallory_key.did.did)
    with pytest.raises(PresentationMismatch, match="not to the presenter"):
        asyncio.run(cred.verify_presentation(vp, cred.VerifyConfig(), challenge="c",
                                             domain="d"))


def test_conflicting_claims_about_one_subject_match_neither() -> None:
    found = dm.about((dm.Subject("did:key:a", {"role": "member"}),
                      dm.Subject("did:key:a", {"role": "admin", "team": "x"})), "did:key:a")
    assert found is not None
    assert found.claims == {"role": ["member", "admin"], "team": "x"}
    assert dm.about((dm.Subject("did:key:b", {}),), "did:key:a") is None


# --- presentations ------------------------------------------------------------------------


PRESENTATIONS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "credential as a string": (_set("verifiableCredential", ["urn:uuid:1"]),
                               "must hold credential objects"),
    "enveloped credential": (
        _set("verifiableCredential", [{"@context": [cred.VC_V2],
                                       "type": "EnvelopedVerifiableCredential",
                                       "id": "data:application/vc+sd-jwt,abc"}]),
        "enveloped credentials"),
    "holder object without id": (_set("holder", {"name": "Acme"}), "the holder must be"),
    "no VerifiablePresentation type": (_set("type", ["Presentation"]),
                                       "type must include VerifiablePresentation"),
    "id that is not a URL": (_set("id", "presentation 1"), "is not a single URL"),
}


@pytest.mark.parametrize("name", PRESENTATIONS)
def test_broken_presentations_are_refused(name: str, membership_credential: Doc,
                                          alice_key: Ed25519Key, now: dt.datetime) -> None:
    change, message = PRESENTATIONS[name]
    vp = present(alice_key, membership_credential, now)
    change(vp)
    with pytest.raises(MalformedCredential, match=message):
        asyncio.run(cred.verify_presentation(vp, cred.VerifyConfig(), challenge="c",
                                             domain="d"))


@settings(max_examples=300, deadline=2000)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["@context", "id", "type", "issuer", "credentialSubject", "name",
                         "validFrom", "validUntil", "evidence", "credentialSchema",
                         "relatedResource", "holder", "verifiableCredential", "@value"]),
                        inner, max_size=6), max_leaves=30))
def test_any_json_is_checked_or_refused_in_one_line(document: Any) -> None:
    for check in (dm.check_credential, dm.check_presentation):
        try:
            check(document)
        except MalformedCredential as exc:
            assert "\n" not in exc.message


# --- through the command line -------------------------------------------------------------


def test_cli_refuses_evidence_without_type_in_one_line(
        org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime, tmp_path: Path) -> None:
    document = base(org_key, alice_key, now)
    document["evidence"] = {"verifier": "https://acme.example/hr"}
    path = tmp_path / "credential.json"
    path.write_text(json.dumps(raw_sign(document, org_key, now)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPCID_")}
    env["MPCID_HOME"] = str(tmp_path / "home")
    mpcid = Path(sys.executable).parent / "mpcid"
    proc = subprocess.run([str(mpcid), "credential", "verify", str(path), "--no-status"], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == ("error: an entry of evidence has no type (VC 2.0 requires a type on "
                        "each entry of evidence)")
