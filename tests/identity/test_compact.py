"""The compact token codec shared by invitations and credentials (identity/compact.py)."""

from __future__ import annotations

import json
import zlib

import pytest

from mpcid.identity import compact
from mpcid.identity import credentials as vc
from mpcid.identity.errors import MalformedCredential

PREFIX = "mpcidvc1:"


def decode(text: object, max_bytes: int = 1000) -> bytes:
    return compact.decode(text, prefix=PREFIX, max_bytes=max_bytes,
                          error=MalformedCredential, kind="mpcid credential token",
                          hint="copy it again")


def test_round_trip_and_wrapping() -> None:
    data = json.dumps({"a": "b" * 300}).encode()
    token = compact.encode(PREFIX, data)
    assert token.startswith(PREFIX) and len(token) < len(data)
    assert decode(token) == data
    assert decode("  " + "\n".join(token[i:i + 10] for i in range(0, len(token), 10))) == data


def test_a_small_token_cannot_expand_beyond_the_limit() -> None:
    bomb = compact.encode(PREFIX, bytes(10_000_000))  # ten million zeros: ~13 KB of text
    assert len(bomb) < compact.max_chars(PREFIX, 100_000)  # passes the length check
    with pytest.raises(MalformedCredential, match="expands beyond 100000 bytes"):
        decode(bomb, max_bytes=100_000)


@pytest.mark.parametrize("text,fragment", [
    (123, "a token is text"),
    ("x" * 5000, "is too long"),
    ("mpcidvc9:abcd", "version mpcidvc9: is not supported"),
    ("hello", "not an mpcid credential token"),
    (PREFIX + "abc*", "not base64url"),
    (PREFIX + "A", "not base64url"),
    (PREFIX + "AB", "not canonical"),
    (PREFIX + compact.b64url(b"not zlib at all"), "does not hold zlib data"),
    (PREFIX + compact.b64url(zlib.compress(b"{}")[:-3]), "truncated"),
    (PREFIX + compact.b64url(zlib.compress(b"{}") + b"tail"), "data after its end"),
])
def test_damage_is_named(text: object, fragment: str) -> None:
    with pytest.raises(MalformedCredential, match=fragment) as info:
        decode(text)
    if "version" not in fragment:
        assert info.value.hint == "copy it again"


def test_a_credential_as_token_and_as_json_reads_the_same() -> None:
    document = {"@context": ["https://www.w3.org/ns/credentials/v2"], "type": ["X"], "n": "ü"}
    token = vc.credential_token(document)
    assert vc.read_credential_text(token, "pasted") == document
    assert vc.read_credential_text(json.dumps(document), "pasted") == document
    with pytest.raises(MalformedCredential, match="too large|exceeds"):
        vc.credential_token({"big": "x" * (vc.MAX_CREDENTIAL_BYTES + 1)})
