"""DID resolution: did:key locally, did:web over HTTPS (aiohttp), behind one interface.

``DIDResolver.resolve(did)`` returns a DID document. ``verification_key`` then picks the
Ed25519 public key of a verification method that the document authorises for a given
purpose (``assertionMethod`` for credentials, ``authentication`` for presentations).
"""

from __future__ import annotations

import abc
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from . import multibase
from .did_key import DIDKey, parse_did
from .errors import DIDResolutionError, FetchFailed, InvalidDID, InvalidProof
from .http import fetch

MAX_DID_DOCUMENT_BYTES = 256 * 1024


class DIDResolver(abc.ABC):
    @abc.abstractmethod
    async def resolve(self, did: str) -> dict[str, Any]:
        """Return the DID document of ``did`` or raise :class:`DIDResolutionError` /
        :class:`InvalidDID`."""


class KeyResolver(DIDResolver):
    async def resolve(self, did: str) -> dict[str, Any]:
        return DIDKey.parse(did).document()


def did_web_url(did: str) -> str:
    """``did:web:example.com:user:alice`` -> ``https://example.com/user/alice/did.json``
    (W3C-CCG did:web method, section "Read (Resolve)"); no path means /.well-known/."""
    base = parse_did(did)
    if not base.startswith("did:web:"):
        raise InvalidDID(f"{did} is not a did:web")
    parts = base[len("did:web:"):].split(":")
    host = urllib.parse.unquote(parts[0])
    if not host or "/" in host or "@" in host:
        raise InvalidDID(f"{did}: {host!r} is not a host name")
    path = "/".join(urllib.parse.unquote(p) for p in parts[1:])
    if ".." in path.split("/"):
        raise InvalidDID(f"{did}: path segments may not be '..'")
    return f"https://{host}/{path}/did.json" if path else f"https://{host}/.well-known/did.json"


@dataclass(frozen=True)
class WebResolverConfig:
    ca_file: str | None = None
    """Extra CA bundle (PEM) to trust, e.g. an organisation's internal CA or a test CA."""
    timeout: float = 10.0
    """Seconds for the whole HTTPS request."""
    public_only: bool = False
    """Resolve only at public addresses (:func:`http.fetch`): for DIDs that someone else
    chose, such as the issuers an invitation names (``specs/session.md`` 7.4)."""


class WebResolver(DIDResolver):
    def __init__(self, config: WebResolverConfig = WebResolverConfig()) -> None:
        self.config = config

    async def resolve(self, did: str) -> dict[str, Any]:
        base = parse_did(did)
        url = did_web_url(base)
        try:
            body = await fetch(url, limit=MAX_DID_DOCUMENT_BYTES, timeout=self.config.timeout,
                               ca_file=self.config.ca_file,
                               public_only=self.config.public_only)
        except FetchFailed as exc:
            raise DIDResolutionError(f"resolving {base}: cannot fetch {url}: {exc}") from None
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DIDResolutionError(f"resolving {base}: {url} is not JSON") from None
        if not isinstance(document, dict) or document.get("id") != base:
            raise DIDResolutionError(
                f"resolving {base}: the document at {url} describes another DID "
                f"({document.get('id') if isinstance(document, dict) else None!r})")
        return document


@dataclass
class UniversalResolver(DIDResolver):
    """did:key locally, did:web over HTTPS, with a per-instance cache."""

    web: DIDResolver = field(default_factory=WebResolver)
    key: DIDResolver = field(default_factory=KeyResolver)
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def resolve(self, did: str) -> dict[str, Any]:
        base = parse_did(did)
        if base not in self._cache:
            if base.startswith("did:key:"):
                self._cache[base] = await self.key.resolve(base)
            elif base.startswith("did:web:"):
                self._cache[base] = await self.web.resolve(base)
            else:
                raise InvalidDID(f"{base}: only did:key and did:web are supported")
        return self._cache[base]


def verification_key(document: dict[str, Any], vm_id: str, purpose: str) -> bytes:
    """The raw Ed25519 key of ``vm_id`` if ``document`` authorises it for ``purpose``.

    Raises :class:`InvalidProof` otherwise: to a verifier, a key the issuer never
    authorised is no different from a forged signature.
    """
    did = document.get("id")
    relationship = document.get(purpose)
    if not isinstance(relationship, list):
        raise InvalidProof(f"{did} authorises no key for {purpose}")
    methods = {_absolute(m.get("id"), did): m for m in document.get("verificationMethod", [])
               if isinstance(m, dict)}
    for entry in relationship:
        method = methods.get(_absolute(entry, did)) if isinstance(entry, str) else entry
        if isinstance(method, dict) and _absolute(method.get("id"), did) == vm_id:
            return _public_key(method)
    raise InvalidProof(f"{vm_id} is not a {purpose} key of {did}",
                       hint="the proof names a key its DID document does not authorise")


def _absolute(ref: object, did: object) -> object:
    return f"{did}{ref}" if isinstance(ref, str) and ref.startswith("#") else ref


def _public_key(method: dict[str, Any]) -> bytes:
    mtype = method.get("type")
    try:
        if mtype in ("Multikey", "Ed25519VerificationKey2020"):
            code, key = multibase.split_codec(multibase.decode(method["publicKeyMultibase"]))
            if code != multibase.ED25519_PUB:
                raise ValueError("not an Ed25519 key")
        elif mtype == "Ed25519VerificationKey2018":
            key = multibase.b58decode(method["publicKeyBase58"])
        elif mtype == "JsonWebKey2020":
            jwk = method["publicKeyJwk"]
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise ValueError("not an Ed25519 JWK")
            key = multibase.decode("u" + jwk["x"])
        else:
            raise ValueError(f"unsupported verification method type {mtype!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidProof(f"verification method {method.get('id')}: {exc}") from None
    if len(key) != 32:
        raise InvalidProof(f"verification method {method.get('id')}: not a 32-byte key")
    return key
