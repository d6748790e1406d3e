"""Property tests (Hypothesis): parsers and verifiers fail only with mpcid's own errors.

Every public entry point that reads untrusted input must turn any malformed input into an
:class:`~mpcid.identity.errors.MpcidError` subclass (never ``KeyError``, ``TypeError``,
``AttributeError``, ``OverflowError``, ...), because the CLI and the broker report those and
nothing else.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpcid.identity import credentials, multibase
from mpcid.identity.credentials import VerifyConfig
from mpcid.identity.did_key import DIDKey, Ed25519Key, parse_did
from mpcid.identity.errors import (DIDResolutionError, InvalidDID, MpcidError, StatusCheckFailed,
                                   UsageError)
from mpcid.identity.policy import Requirement
from mpcid.identity.resolver import DIDResolver, UniversalResolver
from mpcid.identity.statuslist import MIN_BITS, Bitstring

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ISSUER = Ed25519Key.from_seed(bytes([7]) * 32)
HOLDER = Ed25519Key.from_seed(bytes([9]) * 32)
NOW = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
CHALLENGE, DOMAIN = "5f1c0e4e-challenge", "verifier.example"


class StaticResolver(DIDResolver):
    """Documents known in advance; every other DID is unknown, without any network."""

    def __init__(self, documents: Mapping[str, dict[str, Any]]) -> None:
        self.documents = dict(documents)

    async def resolve(self, did: str) -> dict[str, Any]:
        try:
            return self.documents[parse_did(did)]
        except KeyError:
            raise DIDResolutionError(f"{did} is not known to this resolver") from None


def _offline_config() -> VerifyConfig:
    """No status lists, and did:web resolution that never touches the network."""
    return VerifyConfig(status=None, now=NOW,
                        resolver=UniversalResolver(web=StaticResolver({})))


CREDENTIAL = credentials.sign_credential(
    credentials.build_credential(
        issuer=ISSUER.did.did, subject=HOLDER.did.did, credential_type="MembershipCredential",
        claims={"organization": "Acme", "level": 3}, valid_from=NOW - dt.timedelta(days=1),
        valid_until=NOW + dt.timedelta(days=1), credential_id="urn:uuid:1"),
    ISSUER, now=NOW)
PRESENTATION = credentials.create_presentation(
    HOLDER, [CREDENTIAL], challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def test_fixtures_verify() -> None:
    # The documents the mutation properties start from are valid.
    asyncio.run(credentials.verify_credential(CREDENTIAL, _offline_config()))
    asyncio.run(credentials.verify_presentation(PRESENTATION, _offline_config(),
                                                challenge=CHALLENGE, domain=DOMAIN))


# --- strategies -----------------------------------------------------------------------------

VC_KEYS = ["@context", "id", "type", "issuer", "holder", "validFrom", "validUntil",
           "issuanceDate", "expirationDate", "credentialSubject", "credentialStatus", "proof",
           "verifiableCredential", "proofValue", "verificationMethod", "proofPurpose",
           "cryptosuite", "created", "expires", "challenge", "domain", "@type", "@id",
           "@value", "@graph", "@list", "@vocab", "@foo", "statusListIndex",
           "statusListCredential", "statusPurpose", "encodedList"]
VC_STRINGS = ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/2018/credentials/v1",
              "https://w3id.org/mpcid/v1", "https://example.org/unknown",
              "VerifiableCredential", "VerifiablePresentation", "DataIntegrityProof",
              "eddsa-rdfc-2022", "Ed25519Signature2020", "Ed25519Signature2018",
              "assertionMethod", "authentication", ISSUER.did.did,
              ISSUER.did.verification_method, HOLDER.did.did, "did:example:123",
              "did:key:z6Mk", "2025-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
              "9999-12-31T23:59:59-01:00", "z" + "1" * 64, "", "@id", "@vocab", "@json"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=20) | st.sampled_from(VC_STRINGS))
json_values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.sampled_from(VC_KEYS) | st.text(max_size=10),
                                        children, max_size=5)),
    max_leaves=25)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, prefix + (index,))
    return found


CREDENTIAL_PATHS = _paths(CREDENTIAL)
PRESENTATION_PATHS = _paths(PRESENTATION)


def _replace(document: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    document = copy.deepcopy(document)
    target = document
    for step in path[:-1]:
        target = target[step]
    if delete and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


def _run_credential(value: Any) -> None:
    try:
        asyncio.run(credentials.verify_credential(value, _offline_config()))
    except MpcidError:
        pass


def _run_presentation(value: Any) -> None:
    try:
        asyncio.run(credentials.verify_presentation(value, _offline_config(),
                                                    challenge=CHALLENGE, domain=DOMAIN))
    except MpcidError:
        pass


# --- parsers ------------------------------------------------------------------------------

@FAST
@given(st.text() | st.text(alphabet=B58, max_size=60).map(lambda s: "did:key:z" + s)
       | st.binary(max_size=40).map(lambda b: "did:key:" + multibase.encode(b)))
def test_did_key_parse_raises_only_invalid_did(text: str) -> None:
    try:
        parsed = DIDKey.parse(text)
    except InvalidDID as exc:
        assert str(exc)
        return
    # Anything accepted is a canonical did:key that round-trips.
    assert parsed.did == text.split("#", 1)[0].split("?", 1)[0]
    assert DIDKey.from_public_key(parsed.public_key).did == parsed.did


@FAST
@given(st.binary(max_size=40))
def test_did_key_parse_of_ed25519_codec_bytes(body: bytes) -> None:
    did = "did:key:" + multibase.encode(multibase.with_codec(multibase.ED25519_PUB, body))
    try:
        parsed = DIDKey.parse(did)
    except InvalidDID:
        return
    assert parsed.public_key == body and len(body) == 32


@FAST
@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text()),
                 st.dictionaries(st.text(), st.text())))
def test_did_key_parse_non_strings(value: Any) -> None:
    try:
        DIDKey.parse(value)
    except InvalidDID:
        pass


@FAST
@given(st.text() | st.text().map(lambda s: "z" + s) | st.text().map(lambda s: "u" + s)
       | st.text(alphabet=B58).map(lambda s: "z" + s))
def test_multibase_decode_raises_only_value_error(text: str) -> None:
    try:
        multibase.decode(text)
    except ValueError:
        pass


@FAST
@given(st.binary(max_size=100), st.sampled_from(["z", "u"]))
def test_multibase_round_trip(data: bytes, base: str) -> None:
    assert multibase.decode(multibase.encode(data, base)) == data


@FAST
@given(st.integers(min_value=0, max_value=2**63 - 1), st.binary(max_size=8))
def test_varint_round_trip(n: int, rest: bytes) -> None:
    assert multibase.split_codec(multibase.varint(n) + rest) == (n, rest)


@FAST
@given(st.binary(max_size=12))
def test_read_varint_raises_only_value_error(data: bytes) -> None:
    try:
        value, used = multibase.read_varint(data)
    except ValueError:
        return
    assert multibase.varint(value) == data[:used]


@FAST
@given(st.one_of(st.text(), st.text().map(lambda s: "u" + s), st.none(), st.integers(),
                 st.binary(), st.lists(st.integers()),
                 st.binary(max_size=64).map(lambda b: multibase.encode(b, "u")),
                 st.binary(max_size=64).map(lambda b: multibase.encode(b, "u")[1:])))
def test_bitstring_decode_raises_only_status_check_failed(value: Any) -> None:
    try:
        Bitstring.decode(value)
    except StatusCheckFailed:
        pass


@FAST
@given(st.text() | st.builds(lambda t, i, c: f"{t}@{i}{c}",
                             st.text(max_size=12), st.text(max_size=30),
                             st.text(max_size=20)))
def test_requirement_parse_raises_only_usage_error(text: str) -> None:
    try:
        requirement = Requirement.parse(text)
    except UsageError:
        return
    assert Requirement.parse(str(requirement)) == requirement


# --- status list bitstrings ------------------------------------------------------------------

@FAST
@given(st.sets(st.integers(min_value=0, max_value=MIN_BITS - 1), max_size=50),
       st.lists(st.integers(min_value=0, max_value=MIN_BITS - 1), max_size=20))
def test_bitstring_set_get(indices: set[int], probes: list[int]) -> None:
    bits = Bitstring.empty()
    for index in indices:
        bits.set(index)
    for index in indices:
        assert bits.get(index)
    for index in probes:
        assert bits.get(index) == (index in indices)
    assert sum(bin(b).count("1") for b in bits.data) == len(indices)
    for index in indices:
        bits.set(index, False)
    assert not any(bits.data)


@FAST
@given(st.sets(st.integers(min_value=0, max_value=MIN_BITS - 1), max_size=50))
def test_bitstring_encode_decode(indices: set[int]) -> None:
    bits = Bitstring.empty()
    for index in indices:
        bits.set(index)
    encoded = bits.encode()
    assert encoded.startswith("u") and encoded == bits.encode()   # deterministic
    decoded = Bitstring.decode(encoded)
    assert decoded.data == bits.data and len(decoded) == MIN_BITS
    assert all(decoded.get(i) for i in indices)
    assert sum(bin(b).count("1") for b in decoded.data) == len(indices)
    # StatusList2021 form without the multibase prefix
    assert Bitstring.decode(encoded[1:]).data == bits.data


@FAST
@given(st.binary(max_size=300))
def test_bitstring_encode_decode_arbitrary_bytes(data: bytes) -> None:
    assert Bitstring.decode(Bitstring(data).encode()).data == bytearray(data)


# --- credential and presentation verification ---------------------------------------------

@FAST
@given(json_values)
def test_verify_credential_raises_only_mpcid_errors(value: Any) -> None:
    try:
        asyncio.run(credentials.verify_credential(value, VerifyConfig(status=None)))
    except MpcidError:
        pass


@FAST
@given(json_values)
def test_verify_presentation_raises_only_mpcid_errors(value: Any) -> None:
    try:
        asyncio.run(credentials.verify_presentation(
            value, VerifyConfig(status=None), challenge=CHALLENGE, domain=DOMAIN))
    except MpcidError:
        pass


@FAST
@given(st.sampled_from(CREDENTIAL_PATHS), json_values, st.booleans())
# a nested object with a relative @context IRI: pyld raises a bare ValueError
@example(("validFrom",), {"@context": "0"}, False)
@example(("credentialSubject", "organization"), {"@context": ""}, False)
def test_verify_mutated_credential_raises_only_mpcid_errors(
        path: tuple[Any, ...], value: Any, delete: bool) -> None:
    _run_credential(_replace(CREDENTIAL, path, value, delete))


@FAST
@given(st.sampled_from(PRESENTATION_PATHS), json_values, st.booleans())
@example(("holder",), {"@context": "0"}, False)
# a null @vocab in an embedded credential's context: pyld raises a bare KeyError
@example(("verifiableCredential", 0, "@context"), {"@vocab": None}, False)
def test_verify_mutated_presentation_raises_only_mpcid_errors(
        path: tuple[Any, ...], value: Any, delete: bool) -> None:
    _run_presentation(_replace(PRESENTATION, path, value, delete))


dates = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31),
                 timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=5)),
                                            dt.timezone(dt.timedelta(hours=-5))]))
    .map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                     "2025-06-01T12:00:00Z", "2025-06-01T12:00:00", "not a date", ""]),
    st.text(max_size=30), st.integers(), st.none())


@SLOW
@given(dates, dates)
# expired / not yet valid, with an offset that moves the instant outside years 1..9999
@example(None, "0001-01-01T00:00:00+01:00")
@example("9999-12-31T23:59:59-01:00", None)
def test_signed_credential_with_any_validity_period(valid_from: Any, valid_until: Any
                                                    ) -> None:
    # Properly signed, so verification reaches the validity checks with these values.
    document = {
        "@context": ["https://www.w3.org/ns/credentials/v2", "https://w3id.org/mpcid/v1"],
        "id": "urn:uuid:2", "type": ["VerifiableCredential", "MembershipCredential"],
        "issuer": ISSUER.did.did, "credentialSubject": {"id": HOLDER.did.did, "level": 1}}
    if valid_from is not None:
        document["validFrom"] = valid_from
    if valid_until is not None:
        document["validUntil"] = valid_until
    try:
        signed = credentials.sign_credential(document, ISSUER, now=NOW)
    except MpcidError:
        return
    _run_credential(signed)


claim_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=15),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.from_regex(r"[a-z][A-Za-z0-9]{0,8}", fullmatch=True), children,
                      max_size=3),
    max_leaves=10)


@SLOW
@given(st.dictionaries(st.from_regex(r"[a-z][A-Za-z0-9]{0,8}", fullmatch=True).filter(
    lambda k: k not in ("id", "type")), claim_values, max_size=4))
def test_signed_claims_round_trip(claims: dict[str, Any]) -> None:
    try:
        document = credentials.build_credential(
            issuer=ISSUER.did.did, subject=HOLDER.did.did,
            credential_type="MembershipCredential", claims=claims,
            valid_from=NOW - dt.timedelta(days=1), credential_id="urn:uuid:3")
        signed = credentials.sign_credential(document, ISSUER, now=NOW)
    except MpcidError:
        return
    verified = asyncio.run(credentials.verify_credential(signed, _offline_config()))
    assert verified.claims == claims
    assert verified.issuer == ISSUER.did.did and verified.subject == HOLDER.did.did
