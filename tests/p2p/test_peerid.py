"""did:key -> libp2p PeerID (``mpcid.p2p.peerid``, ``specs/discovery.md`` section 1).

Spec vectors are transcribed from libp2p/specs at commit
7740c076350b6636b868a9e4a411280eea34d335 (https://github.com/libp2p/specs); each test
names the file and section. py-libp2p itself (``libp2p.peer.id.ID``) is the cross-check,
and its parser is the way back from a PeerID to the key (mpcid never parses PeerIDs).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import InvalidDID
from mpcid.p2p.peerid import ED25519_PEER_ID_PREFIX, peer_id_bytes, peer_id_from_did

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "did-key-ed25519.json").read_text())["vectors"]


def key_in(peer_id: str) -> bytes:
    """The Ed25519 public key inside a PeerID string, as py-libp2p reads it."""
    key = ID.from_base58(peer_id).extract_public_key()
    assert key is not None, f"{peer_id} has no inlined key"
    return bytes(key.to_bytes())


# --- spec vectors ----------------------------------------------------------------------------


def test_tls_spec_vector_1_key_and_peer_id() -> None:
    """tls/tls.md, "Test vectors", 1. "Valid certificate authenticating an ED25519 Peer
    ID": the certificate's extension carries the public key protobuf
    ``08011220a77f1d92...c11b9`` and the spec states its PeerId."""
    key = bytes.fromhex("a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b9")
    peer_id = "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"
    did = DIDKey.from_public_key(key).did
    assert peer_id_from_did(did) == peer_id
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


def test_peer_ids_spec_ed25519_example() -> None:
    """peer-ids/peer-ids.md, "String representation", Examples: ``12D3KooWD3eck...U5SA``
    is an ed25519 PeerID with the identity multihash; the DID of its key gives it back."""
    peer_id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    assert peer_id_from_did(DIDKey.from_public_key(key_in(peer_id)).did) == peer_id


# --- did:key vectors and py-libp2p -----------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["did"][-8:])
def test_did_key_vectors(vector: dict[str, Any]) -> None:
    did = vector["did"]
    peer_id = peer_id_from_did(did)
    assert peer_id.startswith("12D3KooW") and len(peer_id) == 52
    assert peer_id_bytes(did) == ED25519_PEER_ID_PREFIX + DIDKey.parse(did).public_key
    assert key_in(peer_id) == DIDKey.parse(did).public_key


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_agrees_with_py_libp2p(seed: bytes) -> None:
    did = Ed25519Key.from_seed(seed).did.did
    libp2p_id = ID.from_pubkey(create_new_key_pair(seed).public_key)
    assert libp2p_id.to_base58() == peer_id_from_did(did)
    assert libp2p_id.to_bytes() == peer_id_bytes(did)
    assert ID.from_base58(peer_id_from_did(did)) == libp2p_id


def test_peer_id_of_a_bad_did() -> None:
    with pytest.raises(InvalidDID, match="is not a did:key"):
        peer_id_from_did("did:web:example.com")


def test_module_is_sans_io() -> None:
    """No sockets, event loops or libp2p: the module is a pure function of its input."""
    from mpcid.p2p import peerid
    tree = ast.parse(Path(peerid.__file__ or "").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert "mpcid" in imported  # the walk sees the imports
    assert not imported & {"asyncio", "trio", "socket", "selectors", "ssl", "libp2p"}
