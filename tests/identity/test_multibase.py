"""mpcid.identity.multibase: base58btc, base64url, unsigned varints and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpcid.identity import multibase

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
DID_KEY_VECTORS = json.loads((VECTORS / "did-key-ed25519.json").read_text(encoding="utf-8"))
EDDSA = json.loads((VECTORS / "vc-di-eddsa-rdfc-2022.json").read_text(encoding="utf-8"))


# --- base58btc ----------------------------------------------------------------------------

@pytest.mark.parametrize("data, text", [
    (b"", ""),
    (b"\x00", "1"),
    (b"\x00\x00\x00", "111"),
    (b"\x01", "2"),
    (b"\x39", "z"),          # 57, the last digit
    (b"\x3a", "21"),         # 58 = 1*58 + 0
    (b"\x00\x3a", "121"),
    (b"Hello World!", "2NEpo7TZRRrLZSi2U"),   # draft-msporny-base58 section 5
    (b"The quick brown fox jumps over the lazy dog.",
     "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"),
    (bytes.fromhex("0000287fb4cd"), "11233QC4"),
])
def test_b58_known_values(data: bytes, text: str) -> None:
    assert multibase.b58encode(data) == text
    assert multibase.b58decode(text) == data


@pytest.mark.parametrize("data", [
    b"\x00" * 32,
    b"\x00" * 5 + b"\xff",
    b"\xff" * 40,
    bytes(range(256)),
    b"\x00\x01\x00\x00",
])
def test_b58_round_trip_keeps_leading_zero_bytes(data: bytes) -> None:
    text = multibase.b58encode(data)
    zeros = len(data) - len(data.lstrip(b"\0"))
    assert text.startswith("1" * zeros)
    assert not text[zeros:].startswith("1")
    assert multibase.b58decode(text) == data


def test_b58_all_zero_seed_vector() -> None:
    # The did:key vector seed 00..00 as bytes: 32 leading zeros, 32 '1' characters.
    assert multibase.b58encode(bytes(32)) == "1" * 32


@pytest.mark.parametrize("vector", DID_KEY_VECTORS["vectors"][:4],
                         ids=lambda v: v["did"][-8:])
def test_b58_did_key_vector_keys_round_trip(vector: dict) -> None:
    for name in ("ed25519PublicKeyBase58", "x25519PublicKeyBase58", "x25519PrivateKeyBase58"):
        raw = multibase.b58decode(vector[name])
        assert len(raw) == 32
        assert multibase.b58encode(raw) == vector[name]


@pytest.mark.parametrize("vector", DID_KEY_VECTORS["vectors"][:4],
                         ids=lambda v: v["did"][-8:])
def test_multibase_decode_did_key_fingerprint(vector: dict) -> None:
    # did:key:z<base58(0xed 0x01 || pub)>: the multibase value holds the multicodec prefix
    raw = multibase.decode(vector["did"][len("did:key:"):])
    code, key = multibase.split_codec(raw)
    assert raw[:2] == b"\xed\x01"
    assert code == multibase.ED25519_PUB
    assert key == multibase.b58decode(vector["ed25519PublicKeyBase58"])
    assert multibase.encode(multibase.with_codec(code, key)) == vector["did"][len("did:key:"):]


def test_vector_private_key_multibase_layout() -> None:
    raw = multibase.decode(EDDSA["keyPair"]["privateKeyMultibase"])
    assert raw[:2] == b"\x80\x26"
    assert multibase.read_varint(raw) == (multibase.ED25519_PRIV, 2)
    code, seed = multibase.split_codec(raw)
    assert code == 0x1300 and len(seed) == 32
    assert seed.hex() == "c96ef9ea10c5e414c471723aff9de72c35fa5b70fae97e8832ecac7d2e2b8ed6"


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc0", "+", "/", " z", "é", "z\n"])
def test_b58_rejects_characters_outside_the_alphabet(bad: str) -> None:
    with pytest.raises(ValueError, match="base58btc"):
        multibase.b58decode(bad)


# --- multibase ----------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", b"\x00\x00abc", bytes(range(64))])
@pytest.mark.parametrize("base", ["z", "u"])
def test_multibase_round_trip(data: bytes, base: str) -> None:
    text = multibase.encode(data, base)
    assert text[0] == base
    assert multibase.decode(text) == data


@pytest.mark.parametrize("data, text", [
    (b"", "u"),
    (b"f", "uZg"),
    (b"fo", "uZm8"),
    (b"foo", "uZm9v"),
    (b"\xfb\xff", "u-_8"),             # url-safe alphabet, no padding
    (b"\xff\xee\xdd\xcc", "u_-7dzA"),
    (b"yes mani !", "ueWVzIG1hbmkgIQ"),  # multibase spec test vector (base64url)
])
def test_base64url_known_values(data: bytes, text: str) -> None:
    assert multibase.encode(data, "u") == text
    assert "=" not in text
    assert multibase.decode(text) == data


def test_base58btc_multibase_known_value() -> None:
    assert multibase.encode(b"yes mani !", "z") == "z7paNL19xttacUY"   # multibase spec vector


def test_encode_rejects_unknown_base() -> None:
    with pytest.raises(ValueError, match="unsupported multibase prefix"):
        multibase.encode(b"abc", "f")


@pytest.mark.parametrize("bad, reason", [
    ("", "empty"),
    ("f00ff", "unsupported multibase prefix"),     # base16 is not supported
    ("m", "unsupported multibase prefix"),
    ("Z6Mk", "unsupported multibase prefix"),      # case matters
    ("z0OIl", "base58btc"),
    ("uab+c", "base64url"),                         # '+' is base64, not base64url
    ("uab/c", "base64url"),
    ("uab=c", "base64url"),                         # padding is not allowed
    ("uab c", "base64url"),
])
def test_decode_errors_are_value_errors(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        multibase.decode(bad)


@pytest.mark.parametrize("bad", ["uA", "uABCDE", "u12345"])
def test_base64url_impossible_length_is_a_value_error(bad: str) -> None:
    # 1 character (mod 4) cannot encode whole bytes.
    with pytest.raises(ValueError):
        multibase.decode(bad)


@pytest.mark.parametrize("bad", [None, b"z6Mk", 42, ["z"]])
def test_decode_rejects_non_strings_with_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        multibase.decode(bad)  # type: ignore[arg-type]


# --- varint / multicodec --------------------------------------------------------------------

@pytest.mark.parametrize("n, encoded", [
    (0, b"\x00"),
    (1, b"\x01"),
    (0x7F, b"\x7f"),
    (0x80, b"\x80\x01"),
    (0xEC, b"\xec\x01"),      # x25519-pub
    (0xED, b"\xed\x01"),      # ed25519-pub
    (0xE7, b"\xe7\x01"),      # secp256k1-pub
    (0x1300, b"\x80\x26"),    # ed25519-priv
    (300, b"\xac\x02"),
    (2**63 - 1, b"\xff" * 8 + b"\x7f"),
])
def test_varint_known_values(n: int, encoded: bytes) -> None:
    assert multibase.varint(n) == encoded
    assert multibase.read_varint(encoded) == (n, len(encoded))
    assert multibase.read_varint(encoded + b"\xffrest") == (n, len(encoded))


@pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 256, 16383, 16384, 2**21, 2**35 + 7,
                               2**56 - 1, 2**63 - 1])
def test_varint_round_trip(n: int) -> None:
    data = multibase.varint(n)
    assert multibase.read_varint(data) == (n, len(data))
    code, rest = multibase.split_codec(data + b"key")
    assert (code, rest) == (n, b"key")


@pytest.mark.parametrize("bad, reason", [
    (b"", "truncated"),
    (b"\x80", "truncated"),
    (b"\xed", "truncated"),
    (b"\xff" * 9, "truncated"),          # longer than the 9 bytes multiformats allow
    (b"\xff" * 12, "truncated"),
    (b"\x80\x00", "non-minimal"),
    (b"\xed\x80\x00", "non-minimal"),
])
def test_read_varint_errors(bad: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        multibase.read_varint(bad)
    with pytest.raises(ValueError, match=reason):
        multibase.split_codec(bad)


def test_with_codec_and_split_codec_are_inverse() -> None:
    key = bytes(range(32))
    for code in (multibase.ED25519_PUB, multibase.X25519_PUB, multibase.ED25519_PRIV):
        assert multibase.split_codec(multibase.with_codec(code, key)) == (code, key)
