"""did:key for Ed25519 (mpcid.identity.did_key) against the did-method-key test vectors
(w3c-ccg/did-method-key, test-vectors/ed25519-x25519.json; see tests/vectors/README.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mpcid.identity import multibase
from mpcid.identity.did_key import (DID_V1_CONTEXT, MULTIKEY_CONTEXT, DIDKey, Ed25519Key,
                                    ed25519_multibase, parse_did, x25519_multibase)
from mpcid.identity.errors import InvalidDID, InvalidProof, UsageError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
DID_KEY = json.loads((VECTORS / "did-key-ed25519.json").read_text(encoding="utf-8"))
ALL = DID_KEY["vectors"]
BASE58_2018 = [v for v in ALL if v["verificationKeyType"] == "Ed25519VerificationKey2018"]
JWK = [v for v in ALL if v["verificationKeyType"] == "JsonWebKey2020"]

#: From w3c-ccg/did-method-key test-vectors/secp256k1.json (same commit): multicodec 0xe7.
SECP256K1_DID = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"
VALID = ALL[0]["did"]   # did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _did_for(raw: bytes) -> str:
    return "did:key:" + multibase.encode(raw)


def test_vector_file_is_complete() -> None:
    assert DID_KEY["source"]["repository"] == "https://github.com/w3c-ccg/did-method-key"
    assert len(ALL) == 5
    assert len(BASE58_2018) == 4 and len(JWK) == 1


# --- the published vectors -------------------------------------------------------------------

@pytest.mark.parametrize("vector", ALL, ids=lambda v: v["seed"][-2:])
def test_seed_gives_the_did(vector: dict) -> None:
    key = Ed25519Key.from_seed(bytes.fromhex(vector["seed"]))
    assert key.did.did == vector["did"]
    assert key.seed == bytes.fromhex(vector["seed"])
    assert DIDKey.parse(vector["did"]) == key.did
    assert key.did.fingerprint == vector["did"][len("did:key:"):]
    assert key.did.verification_method == f"{vector['did']}#{key.did.fingerprint}"
    assert vector["verificationMethodId"] in (key.did.verification_method,
                                              "#" + key.did.fingerprint)


@pytest.mark.parametrize("vector", BASE58_2018, ids=lambda v: v["seed"][-2:])
def test_base58_keys_match(vector: dict) -> None:
    key = Ed25519Key.from_seed(bytes.fromhex(vector["seed"]))
    assert multibase.b58encode(key.public_key) == vector["ed25519PublicKeyBase58"]
    assert multibase.b58encode(key.did.x25519_public_key) == vector["x25519PublicKeyBase58"]
    assert multibase.b58encode(key.x25519_private_key) == vector["x25519PrivateKeyBase58"]


@pytest.mark.parametrize("vector", JWK, ids=lambda v: v["seed"][-2:])
def test_jwk_keys_match(vector: dict) -> None:
    key = Ed25519Key.from_seed(bytes.fromhex(vector["seed"]))
    assert vector["ed25519PublicKeyJwk"]["crv"] == "Ed25519"
    assert key.public_key == _b64url(vector["ed25519PublicKeyJwk"]["x"])
    assert key.seed == _b64url(vector["ed25519PrivateKeyJwk"]["d"])
    assert vector["x25519PublicKeyJwk"]["crv"] == "X25519"
    assert key.did.x25519_public_key == _b64url(vector["x25519PublicKeyJwk"]["x"])
    assert key.x25519_private_key == _b64url(vector["x25519PrivateKeyJwk"]["d"])


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v["seed"][-2:])
def test_key_agreement_id_matches(vector: dict) -> None:
    did = DIDKey.parse(vector["did"])
    fragment = vector["keyAgreementId"].split("#", 1)[1]
    assert fragment.startswith("z6LS")
    assert did.key_agreement_id == f"{vector['did']}#{fragment}"
    assert x25519_multibase(did.x25519_public_key) == fragment


@pytest.mark.parametrize("vector", BASE58_2018, ids=lambda v: v["seed"][-2:])
def test_document_2018_equals_the_vector_exactly(vector: dict) -> None:
    assert DIDKey.parse(vector["did"]).document("Ed25519VerificationKey2018") == \
        vector["didDocument"]


def test_x25519_keys_are_a_key_pair() -> None:
    import nacl.bindings

    for vector in ALL:
        key = Ed25519Key.from_seed(bytes.fromhex(vector["seed"]))
        assert nacl.bindings.crypto_scalarmult_base(key.x25519_private_key) == \
            key.did.x25519_public_key


# --- the current (Multikey) document form ------------------------------------------------------

def test_multikey_document_shape() -> None:
    did = DIDKey.parse(VALID)
    fp = did.fingerprint
    doc = did.document()
    assert doc == did.document("Multikey")
    assert doc["@context"] == [DID_V1_CONTEXT, MULTIKEY_CONTEXT]
    assert doc["@context"] == ["https://www.w3.org/ns/did/v1",
                               "https://w3id.org/security/multikey/v1"]
    assert doc["id"] == VALID
    vm_id = f"{VALID}#{fp}"
    assert doc["verificationMethod"] == [{
        "id": vm_id, "type": "Multikey", "controller": VALID, "publicKeyMultibase": fp}]
    for relationship in ("authentication", "assertionMethod", "capabilityInvocation",
                         "capabilityDelegation"):
        assert doc[relationship] == [vm_id], relationship
    (agreement,) = doc["keyAgreement"]
    x_mb = x25519_multibase(did.x25519_public_key)
    assert x_mb.startswith("z6LS")
    assert agreement == {"id": f"{VALID}#{x_mb}", "type": "Multikey", "controller": VALID,
                         "publicKeyMultibase": x_mb}
    assert set(doc) == {"@context", "id", "verificationMethod", "authentication",
                        "assertionMethod", "capabilityInvocation", "capabilityDelegation",
                        "keyAgreement"}
    # The key agreement multibase is what the published vector names.
    assert f"{VALID}#{x_mb}" == f"{VALID}{ALL[0]['keyAgreementId']}"


def test_ed25519_2020_document_shape() -> None:
    did = DIDKey.parse(VALID)
    doc = did.document("Ed25519VerificationKey2020")
    assert doc["@context"] == ["https://www.w3.org/ns/did/v1",
                               "https://w3id.org/security/suites/ed25519-2020/v1",
                               "https://w3id.org/security/suites/x25519-2020/v1"]
    assert doc["verificationMethod"][0]["type"] == "Ed25519VerificationKey2020"
    assert doc["verificationMethod"][0]["publicKeyMultibase"] == did.fingerprint
    assert doc["keyAgreement"][0]["type"] == "X25519KeyAgreementKey2020"


def test_unknown_document_format_is_refused() -> None:
    with pytest.raises(ValueError, match="key_format"):
        DIDKey.parse(VALID).document("JsonWebKey2020")


# --- DID URLs --------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [
    "#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    "#z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",
    "#key-1",
    "?versionId=1",
    "?service=files#frag",
])
def test_did_url_parses_to_the_base_did(suffix: str) -> None:
    parsed = DIDKey.parse(VALID + suffix)
    assert parsed.did == VALID
    assert parsed == DIDKey.parse(VALID)
    assert parse_did(VALID + suffix) == VALID


# --- invalid DIDs ------------------------------------------------------------------------------

def _expect_invalid(did: object, *words: str) -> InvalidDID:
    with pytest.raises(InvalidDID) as info:
        DIDKey.parse(did)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert isinstance(info.value, UsageError)
    assert info.value.hint
    return info.value


@pytest.mark.parametrize("did", [
    "did:web:example.com",
    "did:web:example.com:user:alice",
    "did:example:123456789abcdefghi",
    "did:keys:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    "DID:KEY:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    " did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
])
def test_wrong_method_prefix(did: str) -> None:
    _expect_invalid(did, "is not a did:key", "did:key:")


@pytest.mark.parametrize("did", [
    "",
    "z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    "not a DID",
    "https://example.com/did.json",
    "#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
])
def test_not_a_did_at_all(did: str) -> None:
    _expect_invalid(did, "is not a did:key")
    with pytest.raises(InvalidDID, match="is not a DID"):
        parse_did(did)


@pytest.mark.parametrize("value", [None, 42, b"did:key:z6Mk", ["did:key:z6Mk"]])
def test_non_string(value: object) -> None:
    _expect_invalid(value, "must be a string")


def test_version_component_is_refused() -> None:
    _expect_invalid("did:key:1:" + VALID[len("did:key:"):], "version")


@pytest.mark.parametrize("mb", [
    # the same key as the first vector in other multibase encodings
    "u" + base64.urlsafe_b64encode(multibase.decode(VALID[8:])).decode().rstrip("="),
    "f" + multibase.decode(VALID[8:]).hex(),
    "Z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    "6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
])
def test_non_z_multibase(mb: str) -> None:
    _expect_invalid("did:key:" + mb, "base58btc", "'z'")


@pytest.mark.parametrize("did", [
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",   # '0'
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWO",   # 'O'
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWI",   # 'I'
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDoolp",   # 'l'
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW_",
])
def test_bad_base58_character(did: str) -> None:
    _expect_invalid(did, "bad multibase encoding", "base58btc character")


def test_empty_key() -> None:
    _expect_invalid("did:key:z", "multicodec", "truncated")


def test_truncated_multicodec() -> None:
    _expect_invalid(_did_for(b"\xed"), "bad multicodec prefix", "truncated")


def test_x25519_key_is_not_an_ed25519_did() -> None:
    # keyAgreement key of the first vector: multicodec 0xec (x25519-pub)
    x_did = "did:key:" + ALL[0]["keyAgreementId"].split("#", 1)[1]
    assert x_did.startswith("did:key:z6LS")
    _expect_invalid(x_did, "multicodec 0xec", "not an Ed25519 public key")


def test_secp256k1_key_is_not_an_ed25519_did() -> None:
    _expect_invalid(SECP256K1_DID, "multicodec 0xe7", "not an Ed25519 public key")


def test_other_codec_with_32_bytes() -> None:
    _expect_invalid(_did_for(multibase.with_codec(0xEC, bytes(32))), "0xec")
    _expect_invalid(_did_for(multibase.with_codec(0x1300, bytes(range(32)))), "0x1300")


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_wrong_key_length(length: int) -> None:
    pub = DIDKey.parse(VALID).public_key
    key = (pub * 3)[:length]
    _expect_invalid(_did_for(multibase.with_codec(0xED, key)), "32 bytes",
                    f"this one is {length}")


@pytest.mark.parametrize("length", [31, 33])
def test_from_public_key_wrong_length(length: int) -> None:
    with pytest.raises(InvalidDID, match=f"not {length}"):
        DIDKey.from_public_key(bytes(length))


@pytest.mark.parametrize("point", [
    bytes([2]) + bytes(31),          # y = 2: not the encoding of a usable curve point
    bytes([1]) + bytes(31),          # the neutral element (small order)
    bytes(32),                       # y = 0: a point of small order
    (2**255 - 18).to_bytes(32, "little"),  # y = p + 1: non-canonical encoding
])
def test_invalid_curve_point(point: bytes) -> None:
    _expect_invalid(_did_for(multibase.with_codec(0xED, point)),
                    "not a valid Ed25519 public key")
    with pytest.raises(InvalidDID):
        DIDKey.from_public_key(point)


def test_long_input_is_shortened_in_the_message() -> None:
    err = _expect_invalid("did:web:" + "a" * 500, "is not a did:key")
    assert len(str(err)) < 200


# --- keys --------------------------------------------------------------------------------------

def test_seed_must_be_32_bytes() -> None:
    for length in (0, 31, 33):
        with pytest.raises(ValueError):
            Ed25519Key.from_seed(bytes(length))


def test_sign_and_verify() -> None:
    key = Ed25519Key.from_seed(bytes.fromhex(ALL[1]["seed"]))
    signature = key.sign(b"message")
    key.did.verify(b"message", signature)
    with pytest.raises(InvalidProof):
        key.did.verify(b"messagE", signature)
    with pytest.raises(InvalidProof):
        key.did.verify(b"message", signature[:-1] + bytes([signature[-1] ^ 1]))
    with pytest.raises(InvalidProof):
        key.did.verify(b"message", signature[:63])
    with pytest.raises(InvalidProof):
        DIDKey.parse(ALL[2]["did"]).verify(b"message", signature)


def test_generated_keys_round_trip() -> None:
    key = Ed25519Key.generate()
    assert DIDKey.parse(key.did.did) == key.did
    assert ed25519_multibase(key.public_key) == key.did.fingerprint
    assert key.did.fingerprint.startswith("z6Mk")
    assert "seed" not in repr(key) and key.seed.hex() not in repr(key)


def test_parsed_dids_are_remembered_and_bad_ones_refused_every_time() -> None:
    key = Ed25519Key.generate()
    first = DIDKey.parse(key.did.did)
    assert DIDKey.parse(key.did.did) is first
    assert first.x25519_public_key == DIDKey.parse(key.did.verification_method).x25519_public_key
    bad = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2do"  # malformed
    for _ in range(2):
        with pytest.raises(InvalidDID):
            DIDKey.parse(bad)
    long_fragment = key.did.did + "#" + "x" * 500
    assert DIDKey.parse(long_fragment) == first
