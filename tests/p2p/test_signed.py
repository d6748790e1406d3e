"""The shared mechanics of signed canonical JSON documents (``mpcid.p2p.signed``).

The kinds that use them (records, invitations, declines, transcripts) test their own rules
and messages; these tests pin the pieces themselves, with a throwaway error type.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidProof, MpcidError
from mpcid.p2p.signed import (MAX_INT, SignedContent, b64url, canonical_json, check_canonical,
                              check_limits, check_members, encode_signed, open_document,
                              read_did, read_integer, read_signature, signing_input,
                              strict_json)

KEY = Ed25519Key.from_seed(bytes(range(32)))
DOMAIN = b"mpcid-test/1\n"
CONTENT: dict[str, Any] = {"v": 1, "name": "x", "n": 7}


class Bad(MpcidError):
    """The error of the test document kind."""

    hint = "the default hint"


def document(**changes: Any) -> bytes:
    signature = KEY.sign(signing_input(DOMAIN, {**CONTENT, **changes}))
    return encode_signed({**CONTENT, **changes}, signature)


def test_encoding_and_signing_input() -> None:
    data = document()
    assert data == b'{"n":7,"name":"x","sig":"' + b64url(KEY.sign(
        DOMAIN + b'{"n":7,"name":"x","v":1}')).encode() + b'","v":1}'
    sig = strict_json(data, "doc", Bad)["sig"]
    assert len(sig) == 86 and "=" not in sig
    assert base64.urlsafe_b64decode(sig + "==") == KEY.sign(signing_input(DOMAIN, CONTENT))


def test_open_document_order_and_messages() -> None:
    opened = open_document(document(), what="doc", max_bytes=200, version=1, error=Bad)
    assert opened["name"] == "x"
    cases: list[tuple[Any, str]] = [
        ("{}", "a doc is bytes, not str"),
        (b" " * 201, "doc of 201 bytes exceeds 200"),
        (b"[1.5]", "doc contains the number 1.5; only integers are allowed"),
        (b'{"a":1,"a":1}', "doc has a duplicate JSON member name"),
        (b"\xff", "doc is not UTF-8 JSON"),
        (b"[]", "a doc is a JSON object"),
        (b'{"v":true}', 'doc has no integer version "v"'),
        (b'{"v":2}', r"doc version 2 is not supported \(this is version 1\)"),
    ]
    for value, message in cases:
        with pytest.raises(Bad, match=f"^{message}$"):
            open_document(value, what="doc", max_bytes=200, version=1, error=Bad)
    not_bytes: Any = None
    with pytest.raises(Bad, match="^an item is bytes"):
        open_document(not_bytes, what="item", max_bytes=200, version=1, error=Bad)


def test_version_hint_and_limits_before_version() -> None:
    with pytest.raises(Bad) as info:
        open_document(b'{"v":2}', what="doc", max_bytes=99, version=1, error=Bad,
                      hint="update mpcid")
    assert info.value.hint == "update mpcid"
    with pytest.raises(Bad) as info:
        open_document(b'{"v":2}', what="doc", max_bytes=99, version=1, error=Bad)
    assert info.value.hint == "the default hint"
    seen: list[dict[str, Any]] = []
    with pytest.raises(Bad, match="version 2"):
        open_document(b'{"v":2}', what="doc", max_bytes=99, version=1, error=Bad,
                      limits=seen.append)
    assert seen == [{"v": 2}]  # the limits ran first (specs/session.md 4, steps 4 and 5)


@pytest.mark.parametrize(("value", "message"), [
    ({"a": [[[1]]]}, "doc nests deeper than 3 levels"),
    ({"a": "x" * 5}, "doc has a string longer than 4 characters"),
    ({"x" * 5: 1}, "doc has a string longer than 4 characters"),
    ({"a": "\ud800"}, "doc has a string that is not valid Unicode"),
    ({"a": -MAX_INT - 1}, r"doc has an integer beyond 2\^53-1"),
])
def test_check_limits(value: Any, message: str) -> None:
    check_limits({"a": [[1]], "b": "xxxx", "c": -MAX_INT}, what="doc", error=Bad,
                 max_depth=3, max_string=4)
    with pytest.raises(Bad, match=f"^{message}$"):
        check_limits(value, what="doc", error=Bad, max_depth=3, max_string=4)


def test_members_and_integers() -> None:
    check_members({"a": 1, "b": 2}, ("a", "b"), what="doc", error=Bad)
    with pytest.raises(Bad, match="^doc lacks b$"):
        check_members({"a": 1}, ("a", "b"), what="doc", error=Bad)
    with pytest.raises(Bad, match="^doc has unknown members c, d$"):
        check_members({"a": 1, "b": 2, "d": 0, "c": 0}, ("a", "b"), what="doc", error=Bad)
    assert read_integer({"n": MAX_INT}, "n", what="doc", error=Bad) == MAX_INT
    for bad, message in [(True, "is not an integer"), ("1", "is not an integer"),
                         (-1, "is out of range 0..2\\^53-1"),
                         (MAX_INT + 1, "is out of range 0..2\\^53-1")]:
        with pytest.raises(Bad, match=f'^doc "n" {message}$'):
            read_integer({"n": bad}, "n", what="doc", error=Bad)


def test_read_signature() -> None:
    signature = KEY.sign(b"anything")
    assert read_signature({"sig": b64url(signature)}, what="doc", error=Bad) == signature
    for bad in ("A" * 85, "A" * 85 + "=", 7, "A" * 85 + "+"):
        with pytest.raises(Bad, match='^doc "sig" is not a 64-byte base64url signature$'):
            read_signature({"sig": bad}, what="doc", error=Bad)
    loose = {"sig": "A" * 85 + "B"}  # unused low bits not zero
    with pytest.raises(Bad, match='^doc "sig" is not canonical base64url$'):
        read_signature(loose, what="doc", error=Bad)
    assert read_signature(loose, what="doc", error=Bad, exact=False) == bytes(64)


def test_check_canonical() -> None:
    data = document()
    obj = strict_json(data, "doc", Bad)
    check_canonical(obj, data, what="doc", error=Bad)
    with pytest.raises(Bad, match=r"^doc is not in canonical JSON form \(RFC 8785\)$"):
        check_canonical(obj, data.replace(b",", b", ", 1), what="doc", error=Bad)
    with pytest.raises(Bad, match="^doc contains a string that is not valid Unicode$"):
        check_canonical({"a": "\ud800"}, b"", what="doc", error=Bad)


def test_canonical_json_sorts_by_utf16_code_units() -> None:
    # U+10000 is D800 DC00 in UTF-16, which sorts before U+FFFF; code points say otherwise.
    assert canonical_json({"\uffff": 1, "\U00010000": 2}) == \
        '{"\U00010000":2,"\uffff":1}'.encode()


@dataclass(frozen=True)
class Note(SignedContent):
    """A toy kind: ``signer`` says ``text``."""

    signer: str
    text: str

    _domain, _what, _error = DOMAIN, "item", Bad

    @property
    def signer_did(self) -> str:
        return self.signer

    def content(self) -> dict[str, Any]:
        return {"v": 1, "signer": self.signer, "text": self.text}


def test_signed_content() -> None:
    note = Note(KEY.did.did, "hello")
    data = note.sign(KEY)
    assert note.signing_input() == DOMAIN + canonical_json(note.content())
    signature = read_signature(strict_json(data, "item", Bad), what="item", error=Bad)
    assert data == encode_signed(note.content(), signature)
    note.check_signed(data, signature)
    with pytest.raises(InvalidProof):
        Note(KEY.did.did, "changed").check_signed(
            encode_signed({**note.content(), "text": "changed"}, signature), signature)
    with pytest.raises(Bad, match="not in canonical JSON form"):
        note.check_signed(data + b" ", signature)
    other = Ed25519Key.from_seed(bytes(range(1, 33)))
    with pytest.raises(Bad, match=f"^an item of {KEY.did.did} cannot be signed by "):
        note.sign(other)


def test_read_did() -> None:
    assert read_did(KEY.did.did, subject="party 1", error=Bad) == KEY.did.did
    with pytest.raises(Bad, match="^party 1: did:web:x is not a did:key"):
        read_did("did:web:x", subject="party 1", error=Bad)
    with pytest.raises(Bad, match="^party 1 is a DID URL, not a bare DID$"):
        read_did(KEY.did.did + "#key-1", subject="party 1", error=Bad)
    with pytest.raises(Bad, match="^party 1 is not a did:key$"):
        read_did("did:web:x", subject="party 1", error=Bad, detail=False)
