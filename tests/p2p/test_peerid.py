"""libp2p PeerID <-> did:key (``mpcid.p2p.peerid``, ``specs/discovery.md`` section 1).

Spec vectors are transcribed from libp2p/specs at commit
7740c076350b6636b868a9e4a411280eea34d335 (https://github.com/libp2p/specs); each test
names the file and section. py-libp2p itself (``libp2p.peer.id.ID``) is the cross-check.
"""

from __future__ import annotations

import ast
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cid import make_cid
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from mpcid.identity import multibase
from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import InvalidDID
from mpcid.p2p.peerid import (ED25519_PEER_ID_PREFIX, did_from_peer_id, did_from_peer_id_bytes,
                              peer_id_bytes, peer_id_from_did)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "did-key-ed25519.json").read_text())["vectors"]


def b32(data: bytes) -> str:
    return "b" + base64.b32encode(data).decode().rstrip("=").lower()


def cid_text(multihash: bytes, version: int = 1, codec: int = 0x72) -> str:
    return b32(multibase.varint(version) + multibase.varint(codec) + multihash)


# --- spec vectors ----------------------------------------------------------------------------


def test_tls_spec_vector_1_key_and_peer_id() -> None:
    """tls/tls.md, "Test vectors", 1. "Valid certificate authenticating an ED25519 Peer
    ID": the certificate's extension carries the public key protobuf
    ``08011220a77f1d92...c11b9`` and the spec states its PeerId."""
    key = bytes.fromhex("a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b9")
    peer_id = "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"
    did = DIDKey.from_public_key(key).did
    assert peer_id_from_did(did) == peer_id
    assert did_from_peer_id(peer_id) == did
    assert peer_id_bytes(did) == bytes.fromhex("0024" "08011220") + key


def test_peer_ids_spec_ed25519_key_vectors() -> None:
    """peer-ids/peer-ids.md, "Test vectors": the ED25519 private key protobuf is
    ``08 01 12 40 || seed || public key`` and the public key protobuf
    ``08 01 12 20 || public key``. Our seed gives that public key, and the PeerID's
    digest is exactly that public key protobuf."""
    private = bytes.fromhex(
        "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
        "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
    public = bytes.fromhex(
        "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
    key = Ed25519Key.from_seed(private[4:36])
    assert key.public_key == private[36:] == public[4:]
    assert peer_id_bytes(key.did.did) == bytes([0x00, len(public)]) + public
    assert did_from_peer_id_bytes(bytes([0x00, 36]) + public) == key.did.did


def test_peer_ids_spec_ed25519_example_round_trips() -> None:
    """peer-ids/peer-ids.md, "String representation", Examples: ``12D3KooWD3eck...U5SA``
    is an ed25519 PeerID with the identity multihash."""
    peer_id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    did = did_from_peer_id(peer_id)
    assert did.startswith("did:key:z6Mk")
    assert peer_id_from_did(did) == peer_id


@pytest.mark.parametrize(("peer_id", "problem"), [
    # peer-ids/peer-ids.md, Examples: a sha256 PeerID, raw and as a CID.
    ("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "SHA-256 PeerID"),
    ("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe", "SHA-256 PeerID"),
    # tls/tls.md, Test vectors 2 (ECDSA, hashed) and 3 (secp256k1, inlined).
    ("QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE", "SHA-256 PeerID"),
    ("16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs", "key of type secp256k1"),
])
def test_spec_peer_ids_of_other_keys_have_no_did(peer_id: str, problem: str) -> None:
    with pytest.raises(InvalidDID, match=problem) as info:
        did_from_peer_id(peer_id)
    assert peer_id in str(info.value) and "\n" not in str(info.value)


# --- did:key vectors and py-libp2p -----------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["did"][-8:])
def test_did_key_vectors_round_trip(vector: dict[str, Any]) -> None:
    did = vector["did"]
    peer_id = peer_id_from_did(did)
    assert peer_id.startswith("12D3KooW") and len(peer_id) == 52
    assert did_from_peer_id(peer_id) == did
    assert did_from_peer_id(cid_text(peer_id_bytes(did))) == did
    assert peer_id_bytes(did) == ED25519_PEER_ID_PREFIX + DIDKey.parse(did).public_key


SEEDS = [bytes.fromhex(v["seed"]) for v in VECTORS] + [os.urandom(32) for _ in range(5)]


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.hex()[:8])
def test_agrees_with_py_libp2p(seed: bytes) -> None:
    did = Ed25519Key.from_seed(seed).did.did
    libp2p_id = ID.from_pubkey(create_new_key_pair(seed).public_key)
    assert libp2p_id.to_base58() == peer_id_from_did(did)
    assert libp2p_id.to_bytes() == peer_id_bytes(did)
    assert did_from_peer_id(libp2p_id.to_base58()) == did
    assert ID.from_base58(peer_id_from_did(did)) == libp2p_id


@pytest.mark.parametrize("seed", SEEDS[:3], ids=lambda s: s.hex()[:8])
def test_cid_form_agrees_with_py_cid(seed: bytes) -> None:
    """The CIDv1 form built by the ``py-cid`` package (a libp2p dependency) parses."""
    did = Ed25519Key.from_seed(seed).did.did
    text = make_cid(1, "libp2p-key", peer_id_bytes(did)).encode("base32").decode()
    assert text == cid_text(peer_id_bytes(did)) and text.startswith("bafzaa")
    assert did_from_peer_id(text) == did


# --- malformed PeerIDs -----------------------------------------------------------------------

GOOD = peer_id_bytes(VECTORS[0]["did"])


def non_canonical_b32(data: bytes) -> str:
    """``data`` in base32 with a non-zero unused bit in the last character."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    assert len(data) * 8 % 5, "needs unused bits"
    text = b32(data)
    return text[:-1] + alphabet[alphabet.index(text[-1]) | 1]


@pytest.mark.parametrize(("text", "problem"), [
    ("", "wrong length"),
    ("1" * 129, "wrong length"),
    ("12D3KooW0abc", "not a base58btc character"),
    ("z" + multibase.b58encode(GOOD), "neither base58btc"),
    (cid_text(GOOD).upper(), "neither base58btc"),
    (cid_text(GOOD) + "1", "bad base32"),
    (cid_text(GOOD) + "a", "bad base32"),  # 65 characters: no whole number of bytes
    (non_canonical_b32(b"\x01\x72" + GOOD[:-1]), "bad base32"),
    (cid_text(GOOD, version=2), "CID version 2"),
    (cid_text(GOOD, codec=0x70), "multicodec 0x70, not libp2p-key"),
    (b32(b"\x01\xff"), "bad CID .truncated varint"),
    (multibase.b58encode(GOOD[:-1]), "36 bytes, 35 follow"),
    (cid_text(GOOD[:-1]), "36 bytes, 35 follow"),
])
def test_malformed_peer_id_text(text: str, problem: str) -> None:
    with pytest.raises(InvalidDID, match=problem) as info:
        did_from_peer_id(text)
    assert "\n" not in str(info.value) and info.value.hint.startswith("an Ed25519 libp2p")


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "bad multihash .truncated varint"),
    (b"\x00\x80", "bad multihash .truncated varint"),
    (GOOD + b"\0", "36 bytes, 37 follow"),
    (b"\x16\x20" + bytes(32), "multihash code 0x16"),
    (b"\x00\x24\x08\x00\x12\x20" + bytes(32), "key of type RSA"),
    (b"\x00\x24\x08\x03\x12\x20" + bytes(32), "key of type ECDSA"),
    (b"\x00\x24\x08\x07\x12\x20" + bytes(32), "key of type 7"),
    (b"\x00\x26" + GOOD[2:] + b"\x18\x00", "not the PeerID of an Ed25519"),
    (b"\x00\x24\x12\x20" + GOOD[6:] + b"\x08\x01", "not the PeerID of an Ed25519"),
    (ED25519_PEER_ID_PREFIX + bytes([1]) + bytes(31), "not a valid Ed25519 public key"),
])
def test_malformed_peer_id_bytes(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidDID, match=problem) as info:
        did_from_peer_id_bytes(data)
    assert "\n" not in str(info.value)


def test_peer_id_must_be_a_string() -> None:
    with pytest.raises(InvalidDID, match="must be a string, not bytes"):
        did_from_peer_id(GOOD)  # type: ignore[arg-type]


def test_peer_id_of_a_bad_did() -> None:
    with pytest.raises(InvalidDID, match="is not a did:key"):
        peer_id_from_did("did:web:example.com")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=140),
                 st.text(alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
                         max_size=70),
                 st.from_regex(r"b[a-z2-7]{0,70}", fullmatch=True)))
def test_arbitrary_text_raises_only_invalid_did(text: str) -> None:
    try:
        did = did_from_peer_id(text)
    except InvalidDID:
        return
    assert text in (peer_id_from_did(did), cid_text(peer_id_bytes(did)))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=60),
                 st.binary(max_size=40).map(lambda tail: GOOD[:6] + tail)))
def test_arbitrary_bytes_raise_only_invalid_did(data: bytes) -> None:
    try:
        did = did_from_peer_id_bytes(data)
    except InvalidDID:
        return
    assert peer_id_bytes(did) == data


def test_module_is_sans_io() -> None:
    """No sockets, event loops or libp2p: the module is a pure function of bytes and time."""
    from mpcid.p2p import peerid
    tree = ast.parse(Path(peerid.__file__ or "").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert "json" in imported or "base64" in imported  # the walk sees the imports
    assert not imported & {"asyncio", "trio", "socket", "selectors", "ssl", "libp2p"}
