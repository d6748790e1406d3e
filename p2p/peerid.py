"""The libp2p PeerID of an Ed25519 did:key.

A party's did:key and its libp2p PeerID are two spellings of one Ed25519 public key, so a
party needs no second identity on libp2p: its libp2p host uses the DID's key, and anyone
who knows the DID knows the PeerID to dial (``specs/discovery.md`` section 1).

Byte layout (libp2p ``peer-ids/peer-ids.md``): the PeerID is the *identity* multihash of
the protobuf ``PublicKey{Type = Ed25519 (1), Data = key}``, because that message is only
36 bytes (keys of at most 42 bytes are inlined, larger ones are SHA-256 hashed)::

    00 24          identity multihash (code 0x00), digest length 36
    08 01          field 1 (Type), varint: 1 = Ed25519
    12 20 || key   field 2 (Data), 32 bytes: the raw Ed25519 public key

Its text form is base58btc of those 38 bytes without a multibase prefix, which always
starts with ``12D3KooW``.

mpcid only needs this direction: it always starts from a DID it knows (from a session, an
invitation or a record) and derives the PeerID to dial or to show. The parsing of PeerID
strings that the spec describes for other implementations has no caller here; the tests
check the way back with py-libp2p's own parser.
"""

from __future__ import annotations

from mpcid.identity import multibase
from mpcid.identity.did_key import DIDKey

#: identity multihash, length 36; protobuf Type = Ed25519; protobuf Data, length 32.
ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def peer_id_bytes(did: str) -> bytes:
    """The binary PeerID (the 38-byte multihash) of a ``did:key``.

    Raises :class:`~mpcid.identity.errors.InvalidDID` if ``did`` is not an Ed25519 did:key.
    """
    return ED25519_PEER_ID_PREFIX + DIDKey.parse(did).public_key


def peer_id_from_did(did: str) -> str:
    """The libp2p PeerID string (``12D3KooW...``) of a ``did:key``."""
    return multibase.b58encode(peer_id_bytes(did))
