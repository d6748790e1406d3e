"""libp2p PeerIDs of Ed25519 keys, and the did:key they name (both ways).

A party's did:key and its libp2p PeerID are two spellings of one Ed25519 public key, so a
party needs no second identity on libp2p: the Noise handshake of libp2p proves the PeerID,
and the PeerID gives back the DID (``specs/discovery.md`` section 1).

Byte layout (libp2p ``peer-ids/peer-ids.md``): the PeerID is the *identity* multihash of
the protobuf ``PublicKey{Type = Ed25519 (1), Data = key}``, because that message is only
36 bytes (keys of at most 42 bytes are inlined, larger ones are SHA-256 hashed)::

    00 24          identity multihash (code 0x00), digest length 36
    08 01          field 1 (Type), varint: 1 = Ed25519
    12 20 || key   field 2 (Data), 32 bytes: the raw Ed25519 public key

Its text form is base58btc of those 38 bytes without a multibase prefix, which always
starts with ``12D3KooW``. Parsing also accepts the CIDv1 form libp2p is moving to:
multibase ``b`` (RFC 4648 base32, lowercase, unpadded) of ``01 72 || multihash`` (CID
version 1, multicodec ``libp2p-key``).

Only Ed25519 PeerIDs map to a did:key. RSA PeerIDs (``Qm...``, SHA-256 multihash: the key
is not recoverable), secp256k1 (``16Uiu2...``) and ECDSA keys raise :class:`InvalidDID`
naming what the PeerID is instead.
"""

from __future__ import annotations

import base64
import re

from mpcid.identity import multibase
from mpcid.identity.did_key import DIDKey
from mpcid.identity.errors import InvalidDID

#: identity multihash, length 36; protobuf Type = Ed25519; protobuf Data, length 32.
ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
PEER_ID_TEXT_PREFIX = "12D3KooW"

_IDENTITY = 0x00
_SHA2_256 = 0x12
_CID_V1 = 0x01
_LIBP2P_KEY = 0x72  # multicodec libp2p-key
_KEY_TYPES = {0: "RSA", 1: "Ed25519", 2: "secp256k1", 3: "ECDSA"}

# Longest text we try to decode: an Ed25519 PeerID is 52 characters, its CID form 65.
# The bound also keeps the quadratic base58 decoder away from megabytes of input.
_MAX_TEXT = 128
_BASE32 = re.compile(r"[a-z2-7]+")
_HINT = "an Ed25519 libp2p PeerID looks like 12D3KooW... (or bafzaa... in its CID form)"


def peer_id_bytes(did: str) -> bytes:
    """The binary PeerID (the 38-byte multihash) of a ``did:key``.

    Raises :class:`InvalidDID` if ``did`` is not an Ed25519 did:key.
    """
    return ED25519_PEER_ID_PREFIX + DIDKey.parse(did).public_key


def peer_id_from_did(did: str) -> str:
    """The libp2p PeerID string (``12D3KooW...``) of a ``did:key``."""
    return multibase.b58encode(peer_id_bytes(did))


def did_from_peer_id(peer_id: str) -> str:
    """The ``did:key`` of an Ed25519 PeerID, given as ``12D3KooW...`` or as a CIDv1
    (``bafzaa...``).

    Raises :class:`InvalidDID` naming the problem: not a PeerID, a PeerID of another key
    type, or a PeerID of a SHA-256 multihash (whose key cannot be recovered).
    """
    return did_from_peer_id_bytes(_decode_text(peer_id), shown=peer_id)


def did_from_peer_id_bytes(data: bytes, *, shown: str | None = None) -> str:
    """The ``did:key`` of a binary PeerID (a multihash, as in ``ID.to_bytes()``)."""
    who = _show(shown if shown is not None else data.hex())
    try:
        code, used = multibase.read_varint(data)
        length, used2 = multibase.read_varint(data[used:])
    except ValueError as exc:
        raise _bad(f"{who} is not a libp2p PeerID: bad multihash ({exc})") from None
    digest = data[used + used2:]
    if code == _SHA2_256:
        raise _bad(f"{who} is a SHA-256 PeerID (an RSA or other large key): it does not "
                   "contain the key, so it has no did:key")
    if code != _IDENTITY:
        raise _bad(f"{who} is not a libp2p PeerID: multihash code 0x{code:x} is neither "
                   "identity (0x00) nor sha2-256 (0x12)")
    if length != len(digest):
        raise _bad(f"{who} is not a libp2p PeerID: the multihash says {length} bytes, "
                   f"{len(digest)} follow")
    if len(digest) >= 2 and digest[0] == 0x08 and digest[1] != 0x01:
        kind = _KEY_TYPES.get(digest[1], str(digest[1]))
        raise _bad(f"{who} is the PeerID of a key of type {kind}; only Ed25519 keys have "
                   "a did:key")
    if len(digest) != 36 or digest[:4] != ED25519_PEER_ID_PREFIX[2:]:
        # The spec's protobuf is fields 1 then 2, nothing else: anything different is
        # either not a key or a non-canonical encoding with a second PeerID for one key.
        raise _bad(f"{who} is not the PeerID of an Ed25519 key (expected the protobuf "
                   "08 01 12 20 followed by 32 key bytes)")
    try:
        return DIDKey.from_public_key(digest[4:]).did
    except InvalidDID:
        raise _bad(f"{who} contains 32 bytes that are not a valid Ed25519 public key"
                   ) from None


def _decode_text(peer_id: str) -> bytes:
    if not isinstance(peer_id, str):
        raise _bad(f"a PeerID must be a string, not {type(peer_id).__name__}")
    who = _show(peer_id)
    if not peer_id or len(peer_id) > _MAX_TEXT:
        raise _bad(f"{who} is not a libp2p PeerID (wrong length)")
    if peer_id[0] in "1Q":  # the legacy form: bare base58btc multihash ("1...", "Qm...")
        try:
            return multibase.b58decode(peer_id)
        except ValueError as exc:
            raise _bad(f"{who} is not a libp2p PeerID: {exc}") from None
    if peer_id[0] != "b":
        raise _bad(f"{who} is not a libp2p PeerID: it is neither base58btc ('1...', "
                   "'Qm...') nor a base32 CID ('b...')")
    raw = _b32decode(peer_id[1:])
    if raw is None:
        raise _bad(f"{who} is not a libp2p PeerID: bad base32")
    try:
        version, used = multibase.read_varint(raw)
        codec, used2 = multibase.read_varint(raw[used:])
    except ValueError as exc:
        raise _bad(f"{who} is not a libp2p PeerID: bad CID ({exc})") from None
    if version != _CID_V1:
        raise _bad(f"{who} is not a libp2p PeerID: CID version {version}, expected 1")
    if codec != _LIBP2P_KEY:
        raise _bad(f"{who} is a CID of multicodec 0x{codec:x}, not libp2p-key (0x72)")
    return raw[used + used2:]


def _b32decode(text: str) -> bytes | None:
    """RFC 4648 base32, lowercase, unpadded, canonical (unused trailing bits zero)."""
    if not _BASE32.fullmatch(text) or len(text) % 8 in (1, 3, 6):
        return None
    raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != text:
        return None  # non-zero padding bits: a second spelling of the same bytes
    return raw


def _bad(message: str) -> InvalidDID:
    return InvalidDID(message, hint=_HINT)


def _show(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
