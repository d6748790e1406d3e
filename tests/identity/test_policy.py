"""Credential requirements and their evaluation against verified presentations."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from mpcid.identity import credentials as cred
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import PolicyNotSatisfied, UsageError
from mpcid.identity.policy import MAX_REQUIREMENTS, Policy, Requirement

CHALLENGE = "policy-challenge"
DOMAIN = "mpcid:session:policy"


def presented(holder: Ed25519Key, credentials: list[dict[str, Any]],
              now: dt.datetime) -> cred.VerifiedPresentation:
    """Create and verify a presentation: the policy works on verified presentations."""
    vp = cred.create_presentation(holder, credentials, challenge=CHALLENGE, domain=DOMAIN,
                                  now=now)
    return asyncio.run(cred.verify_presentation(vp, cred.VerifyConfig(), challenge=CHALLENGE,
                                                domain=DOMAIN))


def issue(issuer: Ed25519Key, subject: Ed25519Key, now: dt.datetime,
          credential_type: str = "MembershipCredential",
          claims: dict[str, Any] | None = None) -> dict[str, Any]:
    document = cred.build_credential(issuer=issuer.did.did, subject=subject.did.did,
                                     credential_type=credential_type,
                                     claims=claims if claims is not None else
                                     {"organization": "Acme"},
                                     valid_from=now - dt.timedelta(hours=1))
    return cred.sign_credential(document, issuer, now=now)


# --- parsing ------------------------------------------------------------------------------


def test_parse_simple(org_key: Ed25519Key) -> None:
    req = Requirement.parse(f"MembershipCredential@{org_key.did.did}")
    assert req == Requirement("MembershipCredential", (org_key.did.did,), ())
    assert str(req) == f"MembershipCredential@{org_key.did.did}"


def test_parse_with_claims(org_key: Ed25519Key) -> None:
    text = f"MembershipCredential@{org_key.did.did};organization=Acme;role=admin=root"
    req = Requirement.parse(text)
    assert req.credential_type == "MembershipCredential"
    assert req.issuers == (org_key.did.did,)
    assert req.claims == (("organization", "Acme"), ("role", "admin=root"))
    assert Requirement.parse(str(req)) == req


def test_parse_several_issuers(org_key: Ed25519Key, other_org_key: Ed25519Key) -> None:
    text = (f"MembershipCredential@{org_key.did.did}, {other_org_key.did.did}"
            ";organization=Acme")
    req = Requirement.parse(text)
    assert req.issuers == (org_key.did.did, other_org_key.did.did)
    assert req.claims == (("organization", "Acme"),)


def test_parse_did_web_issuer() -> None:
    req = Requirement.parse("MembershipCredential@did:web:example.com%3A8443:org")
    assert req.issuers == ("did:web:example.com%3A8443:org",)


@pytest.mark.parametrize("template", [
    "",
    "MembershipCredential",
    "MembershipCredential@",
    "@{did}",
    "MembershipCredential@not-a-did",
    "MembershipCredential@{did},",
    "MembershipCredential@{did};organization",
    "MembershipCredential@{did};=Acme",
    "MembershipCredential@{did};9lives=yes",
    "Membership Credential@{did}",
    "1Membership@{did}",
    "Membership/Credential@{did}",
])
def test_parse_bad_forms(template: str, org_key: Ed25519Key) -> None:
    with pytest.raises(UsageError):
        Requirement.parse(template.format(did=org_key.did.did))


def test_json_round_trip(org_key: Ed25519Key, other_org_key: Ed25519Key) -> None:
    req = Requirement.parse(f"MembershipCredential@{org_key.did.did},{other_org_key.did.did}"
                            ";role=admin;organization=Acme")
    value = req.to_json()
    assert value == {"type": "MembershipCredential",
                     "issuers": [org_key.did.did, other_org_key.did.did],
                     "claims": {"role": "admin", "organization": "Acme"}}
    again = Requirement.from_json(json.loads(json.dumps(value)))
    assert again.credential_type == req.credential_type
    assert again.issuers == req.issuers
    assert dict(again.claims) == dict(req.claims)
    assert again.to_json() == value

    policy = Policy((req, Requirement.parse(f"AgeCredential@{org_key.did.did}")))
    assert Policy.from_json(json.loads(json.dumps(policy.to_json()))).to_json() == \
        policy.to_json()


def test_from_json_without_claims(org_key: Ed25519Key) -> None:
    req = Requirement.from_json({"type": "MembershipCredential", "issuers": [org_key.did.did]})
    assert req.claims == ()


@pytest.mark.parametrize("value", [
    None,
    [],
    "MembershipCredential",
    {"issuers": ["{did}"]},
    {"type": "MembershipCredential"},
    {"type": "MembershipCredential", "issuers": "{did}"},
    {"type": "MembershipCredential", "issuers": []},
    {"type": "MembershipCredential", "issuers": [5]},
    {"type": "MembershipCredential", "issuers": ["nope"]},
    {"type": "MembershipCredential", "issuers": ["{did}"], "claims": {"age": 18}},
    {"type": "MembershipCredential", "issuers": ["{did}"], "claims": ["a=b"]},
    {"type": 5, "issuers": ["{did}"]},
    {"type": "MembershipCredential\n", "issuers": ["{did}"]},
])
def test_from_json_bad_forms(value: Any, org_key: Ed25519Key) -> None:
    text = json.dumps(value).replace("{did}", org_key.did.did)
    with pytest.raises(UsageError):
        Requirement.from_json(json.loads(text))


def test_policy_bad_forms(org_key: Ed25519Key) -> None:
    with pytest.raises(UsageError):
        Policy.from_json({"type": "MembershipCredential"})
    with pytest.raises(UsageError):
        Policy.parse([f"T{i}@{org_key.did.did}" for i in range(MAX_REQUIREMENTS + 1)])
    assert len(Policy.parse([f"T{i}@{org_key.did.did}"
                             for i in range(MAX_REQUIREMENTS)]).requirements) == \
        MAX_REQUIREMENTS


# --- evaluation -----------------------------------------------------------------------------


def test_satisfied(org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime) -> None:
    credential = issue(org_key, alice_key, now, claims={"organization": "Acme", "role": "x"})
    vp = presented(alice_key, [credential], now)
    req = Requirement.parse(f"MembershipCredential@{org_key.did.did};organization=Acme")
    matched = Policy((req,)).evaluate(vp)
    assert list(matched) == [req]
    assert matched[req].id == credential["id"]


def test_satisfied_by_one_of_several_issuers_and_credentials(
        org_key: Ed25519Key, other_org_key: Ed25519Key, alice_key: Ed25519Key,
        now: dt.datetime) -> None:
    unrelated = issue(org_key, alice_key, now, credential_type="AgeCredential", claims={})
    wanted = issue(other_org_key, alice_key, now)
    vp = presented(alice_key, [unrelated, wanted], now)
    membership = Requirement.parse(
        f"MembershipCredential@{org_key.did.did},{other_org_key.did.did}")
    age = Requirement.parse(f"AgeCredential@{org_key.did.did}")
    matched = Policy((membership, age)).evaluate(vp)
    assert matched[membership].id == wanted["id"]
    assert matched[age].id == unrelated["id"]


def test_empty_policy_is_satisfied(alice_key: Ed25519Key, now: dt.datetime) -> None:
    assert Policy().evaluate(presented(alice_key, [], now)) == {}


def test_wrong_type(org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime) -> None:
    vp = presented(alice_key, [issue(org_key, alice_key, now, credential_type="AgeCredential")],
                   now)
    with pytest.raises(PolicyNotSatisfied) as info:
        Policy.parse([f"MembershipCredential@{org_key.did.did}"]).evaluate(vp)
    message = str(info.value)
    assert "no credential of type MembershipCredential" in message
    assert alice_key.did.did in message


def test_wrong_issuer(org_key: Ed25519Key, other_org_key: Ed25519Key, alice_key: Ed25519Key,
                      now: dt.datetime) -> None:
    vp = presented(alice_key, [issue(other_org_key, alice_key, now)], now)
    with pytest.raises(PolicyNotSatisfied) as info:
        Policy.parse([f"MembershipCredential@{org_key.did.did}"]).evaluate(vp)
    message = str(info.value)
    assert f"issued by {other_org_key.did.did}" in message
    assert org_key.did.did in message


def test_wrong_claim_value(org_key: Ed25519Key, alice_key: Ed25519Key,
                           now: dt.datetime) -> None:
    vp = presented(alice_key, [issue(org_key, alice_key, now,
                                     claims={"organization": "Initech"})], now)
    with pytest.raises(PolicyNotSatisfied) as info:
        Policy.parse([f"MembershipCredential@{org_key.did.did};organization=Acme"]).evaluate(vp)
    message = str(info.value)
    assert "organization='Initech'" in message
    assert "organization='Acme'" in message


def test_missing_claim(org_key: Ed25519Key, alice_key: Ed25519Key, now: dt.datetime) -> None:
    vp = presented(alice_key, [issue(org_key, alice_key, now, claims={})], now)
    with pytest.raises(PolicyNotSatisfied) as info:
        Policy.parse([f"MembershipCredential@{org_key.did.did};organization=Acme"]).evaluate(vp)
    assert "organization=None" in str(info.value)


def test_closest_reason_prefers_a_credential_of_the_right_type(
        org_key: Ed25519Key, other_org_key: Ed25519Key, alice_key: Ed25519Key,
        now: dt.datetime) -> None:
    vp = presented(alice_key, [issue(org_key, alice_key, now, credential_type="AgeCredential"),
                               issue(other_org_key, alice_key, now)], now)
    with pytest.raises(PolicyNotSatisfied) as info:
        Policy.parse([f"MembershipCredential@{org_key.did.did}"]).evaluate(vp)
    assert f"issued by {other_org_key.did.did}" in str(info.value)


def test_no_credential_presented(org_key: Ed25519Key, alice_key: Ed25519Key,
                                 now: dt.datetime) -> None:
    vp = presented(alice_key, [], now)
    with pytest.raises(PolicyNotSatisfied) as info:
        Policy.parse([f"MembershipCredential@{org_key.did.did}"]).evaluate(vp)
    assert "no credential was presented" in str(info.value)
    assert info.value.hint
