"""The did:key method for Ed25519 keys, and the one key type every party holds.

A party's single secret is an Ed25519 seed. From it follow, deterministically:

* its DID, ``did:key:z6Mk...`` = ``z`` + base58btc(varint(0xed) || public key);
* its X25519 key-agreement key (the birational map of RFC 7748 section 4.1, as libsodium's
  ``crypto_sign_ed25519_pk_to_curve25519`` computes it), listed in the DID document under
  ``keyAgreement`` and used as the Noise static key;
* its libp2p PeerID (see ``mpcid.p2p``).

Specification: https://w3c-ccg.github.io/did-method-key/ (documents in its current
"Multikey" form by default, and in the older forms its published test vectors use).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from . import multibase
from .errors import InvalidDID, InvalidProof

DID_KEY_PREFIX = "did:key:"
_DID_SYNTAX = re.compile(r"^did:[a-z0-9]+:[A-Za-z0-9._%:-]+$")

DID_V1_CONTEXT = "https://www.w3.org/ns/did/v1"
ED25519_2020_CONTEXT = "https://w3id.org/security/suites/ed25519-2020/v1"
X25519_2020_CONTEXT = "https://w3id.org/security/suites/x25519-2020/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"

ED25519_2018_CONTEXT = "https://w3id.org/security/suites/ed25519-2018/v1"
X25519_2019_CONTEXT = "https://w3id.org/security/suites/x25519-2019/v1"

#: DID document forms: "Multikey" (the current did:key draft), and the two older forms the
#: method's published test vectors use.
KEY_FORMATS = ("Multikey", "Ed25519VerificationKey2020", "Ed25519VerificationKey2018")


@dataclass(frozen=True)
class DIDKey:
    """A parsed, validated ``did:key`` for an Ed25519 public key."""

    did: str
    public_key: bytes

    @classmethod
    def parse(cls, did: str) -> DIDKey:
        """Parse ``did:key:z6Mk...`` (a DID URL's fragment or query is ignored).

        Raises :class:`InvalidDID` naming the first thing that is wrong. Valid DIDs are
        remembered (a session parses each party's DID many times, and the point check
        costs a field inversion): the result is immutable.
        """
        if isinstance(did, str) and len(did) <= _CACHED_DID_CHARS:
            return _parse_cached(did)
        return cls._parse(did)

    @classmethod
    def _parse(cls, did: str) -> DIDKey:
        if not isinstance(did, str):
            raise InvalidDID(f"a DID must be a string, not {type(did).__name__}")
        base = did.split("#", 1)[0].split("?", 1)[0]
        if not base.startswith(DID_KEY_PREFIX):
            raise InvalidDID(f"{_show(did)} is not a did:key (it must start with 'did:key:')")
        value = base[len(DID_KEY_PREFIX):]
        if ":" in value:  # did:key:<version>:<mb> forms are not used for Ed25519
            raise InvalidDID(f"{_show(did)} has an unsupported did:key version component")
        if not value.startswith("z"):
            raise InvalidDID(f"{_show(did)}: the key must be base58btc multibase (start with 'z')")
        try:
            raw = multibase.decode(value)
        except ValueError as exc:
            raise InvalidDID(f"{_show(did)}: bad multibase encoding ({exc})") from None
        try:
            code, key = multibase.split_codec(raw)
        except ValueError as exc:
            raise InvalidDID(f"{_show(did)}: bad multicodec prefix ({exc})") from None
        if code != multibase.ED25519_PUB:
            raise InvalidDID(
                f"{_show(did)}: multicodec 0x{code:x} is not an Ed25519 public key (0xed)")
        if len(key) != 32:
            raise InvalidDID(
                f"{_show(did)}: an Ed25519 public key is 32 bytes, this one is {len(key)}")
        if not _is_valid_point(key):
            raise InvalidDID(f"{_show(did)}: the key is not a valid Ed25519 public key")
        return cls(did=base, public_key=key)

    @classmethod
    def from_public_key(cls, public_key: bytes) -> DIDKey:
        if len(public_key) != 32:
            raise InvalidDID(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
        return cls.parse(DID_KEY_PREFIX + ed25519_multibase(public_key))

    @property
    def fingerprint(self) -> str:
        """The multibase value after ``did:key:``; also the verification method fragment."""
        return self.did[len(DID_KEY_PREFIX):]

    @property
    def verification_method(self) -> str:
        return f"{self.did}#{self.fingerprint}"

    @functools.cached_property
    def x25519_public_key(self) -> bytes:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self.public_key)

    @property
    def key_agreement_id(self) -> str:
        return f"{self.did}#{x25519_multibase(self.x25519_public_key)}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check an Ed25519 signature; raise :class:`InvalidProof` if it does not verify."""
        try:
            nacl.signing.VerifyKey(self.public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            raise InvalidProof() from None

    def document(self, key_format: str = "Multikey") -> dict[str, Any]:
        """The DID document the did:key method defines for this key, in one of
        :data:`KEY_FORMATS`."""
        if key_format not in KEY_FORMATS:
            raise ValueError(f"key_format must be one of {KEY_FORMATS}")
        vm_id = self.verification_method
        x_key = self.x25519_public_key
        x_id = f"{self.did}#{x25519_multibase(x_key)}"
        if key_format == "Ed25519VerificationKey2018":
            # The 2019/2018 form: raw base58 keys, key agreement listed by reference.
            methods: list[dict[str, Any]] = [
                {"id": vm_id, "type": "Ed25519VerificationKey2018", "controller": self.did,
                 "publicKeyBase58": multibase.b58encode(self.public_key)},
                {"id": x_id, "type": "X25519KeyAgreementKey2019", "controller": self.did,
                 "publicKeyBase58": multibase.b58encode(x_key)}]
            return {"@context": [DID_V1_CONTEXT, ED25519_2018_CONTEXT, X25519_2019_CONTEXT],
                    "id": self.did, "verificationMethod": methods,
                    "assertionMethod": [vm_id], "authentication": [vm_id],
                    "capabilityInvocation": [vm_id], "capabilityDelegation": [vm_id],
                    "keyAgreement": [x_id]}
        if key_format == "Multikey":
            context: list[str] = [DID_V1_CONTEXT, MULTIKEY_CONTEXT]
            vm_type, ka_type = "Multikey", "Multikey"
        else:
            context = [DID_V1_CONTEXT, ED25519_2020_CONTEXT, X25519_2020_CONTEXT]
            vm_type, ka_type = "Ed25519VerificationKey2020", "X25519KeyAgreementKey2020"
        return {
            "@context": context,
            "id": self.did,
            "verificationMethod": [{
                "id": vm_id, "type": vm_type, "controller": self.did,
                "publicKeyMultibase": self.fingerprint,
            }],
            "authentication": [vm_id],
            "assertionMethod": [vm_id],
            "capabilityDelegation": [vm_id],
            "capabilityInvocation": [vm_id],
            "keyAgreement": [{
                "id": x_id, "type": ka_type, "controller": self.did,
                "publicKeyMultibase": x25519_multibase(x_key),
            }],
        }


class Ed25519Key:
    """A party's private Ed25519 key. The seed never leaves this object except to the
    keystore, which encrypts it."""

    __slots__ = ("_signing_key", "did")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.did = DIDKey.from_public_key(bytes(signing_key.verify_key))

    @classmethod
    def generate(cls) -> Ed25519Key:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Key:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    @property
    def public_key(self) -> bytes:
        return self.did.public_key

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    @property
    def x25519_private_key(self) -> bytes:
        """The X25519 private key matching :attr:`DIDKey.x25519_public_key`."""
        return nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(
            self.seed + self.public_key)

    def __repr__(self) -> str:  # never print the seed
        return f"Ed25519Key({self.did.did})"


_CACHED_DID_CHARS = 256
"""Longer strings (never a valid Ed25519 did:key with a short fragment) are not cached."""


@functools.lru_cache(maxsize=1024)
def _parse_cached(did: str) -> DIDKey:
    return DIDKey._parse(did)  # an InvalidDID propagates and is not cached


def ed25519_multibase(public_key: bytes) -> str:
    return multibase.encode(multibase.with_codec(multibase.ED25519_PUB, public_key))


def x25519_multibase(public_key: bytes) -> str:
    return multibase.encode(multibase.with_codec(multibase.X25519_PUB, public_key))


def parse_did(did: str) -> str:
    """Check generic DID syntax (any method) and return the DID without fragment/query."""
    if not isinstance(did, str) or not _DID_SYNTAX.fullmatch(did.split("#", 1)[0].split("?", 1)[0]):
        raise InvalidDID(f"{_show(did)} is not a DID (expected did:METHOD:ID)")
    return did.split("#", 1)[0].split("?", 1)[0]


def _is_valid_point(key: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(key)
    except (nacl.exceptions.RuntimeError, ValueError, TypeError):
        return False
    return True


def _show(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."
