"""did:web: URL mapping, resolution over real HTTPS (a test CA made here), and credentials
issued by a did:web issuer."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpcid.identity import credentials as cred
from mpcid.identity import dataintegrity as di
from mpcid.identity.did_key import (DID_V1_CONTEXT, MULTIKEY_CONTEXT, Ed25519Key,
                                    ed25519_multibase)
from mpcid.identity.errors import DIDResolutionError, InvalidDID, InvalidProof
from mpcid.identity.jsonld import ContextLoader
from mpcid.identity.resolver import (MAX_DID_DOCUMENT_BYTES, UniversalResolver, WebResolver, WebResolverConfig,
                                     did_web_url, verification_key)

# --- did_web_url ------------------------------------------------------------------------------


@pytest.mark.parametrize("did,url", [
    # the examples of the did:web method specification (w3c-ccg.github.io/did-method-web)
    ("did:web:w3c-ccg.github.io", "https://w3c-ccg.github.io/.well-known/did.json"),
    ("did:web:w3c-ccg.github.io:user:alice", "https://w3c-ccg.github.io/user/alice/did.json"),
    ("did:web:example.com%3A3000:user:alice", "https://example.com:3000/user/alice/did.json"),
    ("did:web:example.com", "https://example.com/.well-known/did.json"),
    ("did:web:localhost%3A8443", "https://localhost:8443/.well-known/did.json"),
    # a fragment or query is not part of the DID
    ("did:web:example.com#key-1", "https://example.com/.well-known/did.json"),
    ("did:web:example.com:a:b:c", "https://example.com/a/b/c/did.json"),
])
def test_did_web_url(did: str, url: str) -> None:
    assert did_web_url(did) == url


@pytest.mark.parametrize("did", [
    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    "did:web:",
    "did:web:example.com:..:etc",
    "did:web:example.com:a:%2E%2E:b",
    "did:web:evil.com%2Fpath",
    "did:web:user%40evil.com",
    "did:web:example.com\n",
    "not a did",
])
def test_did_web_url_refuses(did: str) -> None:
    with pytest.raises(InvalidDID):
        did_web_url(did)


# --- a test PKI -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    other_ca_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("mpcid test CA")
    _, other_ca_cert = _ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    pki = Pki(ca_file=folder / "ca.pem", cert_file=folder / "server.pem",
                  key_file=folder / "server-key.pem", other_ca_file=folder / "other-ca.pem")
    pki.ca_file.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca_file.write_bytes(other_ca_cert.public_bytes(pem))
    pki.cert_file.write_bytes(cert.public_bytes(pem))
    pki.key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return pki


# --- DID documents and a server ---------------------------------------------------------------


def web_did(port: int, *path: str) -> str:
    return ":".join([f"did:web:localhost%3A{port}", *path])


def did_document(did: str, assertion_key: Ed25519Key,
                 other_key: Ed25519Key | None = None) -> dict[str, Any]:
    """A Multikey DID document: ``#key-1`` for assertionMethod (and authentication),
    ``#key-2`` (if given) for authentication only."""
    methods = [{"id": f"{did}#key-1", "type": "Multikey", "controller": did,
                "publicKeyMultibase": ed25519_multibase(assertion_key.public_key)}]
    authentication = [f"{did}#key-1"]
    if other_key is not None:
        methods.append({"id": f"{did}#key-2", "type": "Multikey", "controller": did,
                        "publicKeyMultibase": ed25519_multibase(other_key.public_key)})
        authentication.append(f"{did}#key-2")
    return {"@context": [DID_V1_CONTEXT, MULTIKEY_CONTEXT], "id": did,
            "verificationMethod": methods, "assertionMethod": [f"{did}#key-1"],
            "authentication": authentication}


def did_app(documents: dict[str, Any]) -> web.Application:
    """Serves ``documents[path]`` (a dict as JSON, or bytes) at ``path``; 404 otherwise."""
    async def handler(request: web.Request) -> web.StreamResponse:
        found = documents.get(request.path)
        if found is None:
            raise web.HTTPNotFound()
        if isinstance(found, bytes):
            return web.Response(body=found, content_type="application/did+json")
        return web.json_response(found, content_type="application/did+json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


def resolver_for(pki: Pki, ca_file: Path | None = None) -> WebResolver:
    return WebResolver(WebResolverConfig(
        ca_file=str(ca_file if ca_file is not None else pki.ca_file), timeout=5))


ServeApp = Callable[..., Any]


# --- resolution ------------------------------------------------------------------------------


@pytest.mark.integration
def test_resolve_well_known_and_path(test_pki: Pki, serve_app: ServeApp,
                                     org_key: Ed25519Key, alice_key: Ed25519Key) -> None:
    async def scenario() -> None:
        documents: dict[str, Any] = {}
        async with serve_app(did_app(documents), test_pki.server_context()) as port:
            org_did, alice_did = web_did(port), web_did(port, "user", "alice")
            documents["/.well-known/did.json"] = did_document(org_did, org_key)
            documents["/user/alice/did.json"] = did_document(alice_did, alice_key)
            resolver = resolver_for(test_pki)
            org_doc = await resolver.resolve(org_did)
            assert org_doc == documents["/.well-known/did.json"]
            assert verification_key(org_doc, f"{org_did}#key-1", "assertionMethod") == \
                org_key.public_key
            alice_doc = await resolver.resolve(alice_did + "#key-1")
            assert alice_doc["id"] == alice_did
            assert verification_key(alice_doc, f"{alice_did}#key-1", "authentication") == \
                alice_key.public_key
            universal = UniversalResolver(web=resolver)
            assert await universal.resolve(org_did) == org_doc
            assert (await universal.resolve(org_key.did.did))["id"] == org_key.did.did

    asyncio.run(scenario())


@pytest.mark.integration
def test_public_only_never_connects_to_loopback(test_pki: Pki, serve_app: ServeApp,
                                                org_key: Ed25519Key) -> None:
    """A did:web that an invitation names as issuer is resolved for a session only at a
    public address: the same server that answers a user's own resolution is never
    contacted, and the refusal names no port or file of this machine."""
    async def scenario() -> None:
        hits: list[str] = []
        documents: dict[str, Any] = {}
        app = did_app(documents)

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            hits.append(request.path)
            return await handler(request)

        app.middlewares.append(count)
        async with serve_app(app, test_pki.server_context()) as port:
            org_did = web_did(port)
            documents["/.well-known/did.json"] = did_document(org_did, org_key)
            public = WebResolver(WebResolverConfig(ca_file=str(test_pki.ca_file),
                                                   public_only=True))
            with pytest.raises(DIDResolutionError, match="not a public address"):
                await public.resolve(org_did)
            assert hits == []
            assert (await resolver_for(test_pki).resolve(org_did))["id"] == org_did
            assert hits == ["/.well-known/did.json"]

    asyncio.run(scenario())


@pytest.mark.integration
def test_resolve_a_large_document(test_pki: Pki, serve_app: ServeApp,
                                  org_key: Ed25519Key) -> None:
    """A document of about 200 KB is under the 256 KiB limit and must be read whole,
    however the body is split into TLS records and chunks on the way."""
    async def scenario() -> None:
        documents: dict[str, Any] = {}
        async with serve_app(did_app(documents), test_pki.server_context()) as port:
            did = web_did(port)
            document = did_document(did, org_key)
            document["service"] = [{"id": f"{did}#svc-{i}", "type": "LinkedDomains",
                                    "serviceEndpoint": f"https://example.org/{i:06d}/" + "x" * 40}
                                   for i in range(1300)]
            size = len(json.dumps(document).encode())
            assert 150_000 < size < MAX_DID_DOCUMENT_BYTES
            documents["/.well-known/did.json"] = document
            resolved = await resolver_for(test_pki).resolve(did)
            assert resolved == document

    asyncio.run(scenario())


@pytest.mark.integration
def test_without_the_ca(test_pki: Pki, serve_app: ServeApp, org_key: Ed25519Key) -> None:
    async def scenario() -> None:
        documents: dict[str, Any] = {}
        async with serve_app(did_app(documents), test_pki.server_context()) as port:
            did = web_did(port)
            documents["/.well-known/did.json"] = did_document(did, org_key)
            with pytest.raises(DIDResolutionError):
                await WebResolver(WebResolverConfig(timeout=5)).resolve(did)
            with pytest.raises(DIDResolutionError):
                await resolver_for(test_pki, test_pki.other_ca_file).resolve(did)
            # the server is fine: with the CA the same DID resolves
            assert (await resolver_for(test_pki).resolve(did))["id"] == did

    asyncio.run(scenario())


def test_unreadable_ca_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("this is not PEM")
    for path in (bad, tmp_path / "missing.pem"):
        with pytest.raises(DIDResolutionError):
            asyncio.run(WebResolver(WebResolverConfig(ca_file=str(path), timeout=2))
                        .resolve("did:web:localhost%3A1"))


@pytest.mark.integration
def test_document_of_another_did(test_pki: Pki, serve_app: ServeApp,
                                 org_key: Ed25519Key) -> None:
    async def scenario() -> None:
        documents: dict[str, Any] = {}
        async with serve_app(did_app(documents), test_pki.server_context()) as port:
            did = web_did(port)
            documents["/.well-known/did.json"] = did_document(web_did(port, "elsewhere"),
                                                              org_key)
            documents["/user/alice/did.json"] = did_document(did, org_key)
            with pytest.raises(DIDResolutionError) as info:
                await resolver_for(test_pki).resolve(did)
            assert "another DID" in str(info.value)
            with pytest.raises(DIDResolutionError):
                await resolver_for(test_pki).resolve(web_did(port, "user", "alice"))

    asyncio.run(scenario())


@pytest.mark.integration
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"{}", b"\xff"])
def test_document_not_a_did_document(test_pki: Pki, serve_app: ServeApp,
                                     body: bytes) -> None:
    async def scenario() -> None:
        async with serve_app(did_app({"/.well-known/did.json": body}),
                             test_pki.server_context()) as port:
            with pytest.raises(DIDResolutionError):
                await resolver_for(test_pki).resolve(web_did(port))

    asyncio.run(scenario())


@pytest.mark.integration
def test_not_found(test_pki: Pki, serve_app: ServeApp) -> None:
    async def scenario() -> None:
        async with serve_app(did_app({}), test_pki.server_context()) as port:
            with pytest.raises(DIDResolutionError) as info:
                await resolver_for(test_pki).resolve(web_did(port, "user", "nobody"))
            assert "404" in str(info.value)

    asyncio.run(scenario())


@pytest.mark.integration
def test_redirects_are_not_followed(test_pki: Pki, serve_app: ServeApp,
                                    org_key: Ed25519Key) -> None:
    async def scenario() -> None:
        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound("/user/alice/did.json")

        async def document(request: web.Request) -> web.Response:
            return web.json_response(did_document(web_did(request.url.port or 0), org_key))

        app = web.Application()
        app.router.add_get("/.well-known/did.json", moved)
        app.router.add_get("/user/alice/did.json", document)
        async with serve_app(app, test_pki.server_context()) as port:
            with pytest.raises(DIDResolutionError) as info:
                await resolver_for(test_pki).resolve(web_did(port))
            assert "302" in str(info.value)

    asyncio.run(scenario())


# --- credentials issued by a did:web issuer ---------------------------------------------------


def web_credential(issuer_did: str, signing_key: Ed25519Key, method: str, subject: Ed25519Key,
                   now: dt.datetime) -> dict[str, Any]:
    document = cred.build_credential(issuer=issuer_did, subject=subject.did.did,
                                     credential_type="MembershipCredential",
                                     claims={"organization": "Acme"},
                                     valid_from=now - dt.timedelta(hours=1))
    # sign_credential insists on a did:key issuer matching the key; sign directly instead
    return di.add_proof(document, signing_key, di.ProofOptions(
        verification_method=method, proof_purpose="assertionMethod", created=now),
        ContextLoader())


@pytest.mark.integration
def test_credential_from_a_did_web_issuer(test_pki: Pki, serve_app: ServeApp,
                                          org_key: Ed25519Key, bob_key: Ed25519Key,
                                          alice_key: Ed25519Key, mallory_key: Ed25519Key,
                                          now: dt.datetime) -> None:
    async def scenario() -> None:
        documents: dict[str, Any] = {}
        async with serve_app(did_app(documents), test_pki.server_context()) as port:
            did = web_did(port)
            documents["/.well-known/did.json"] = did_document(did, org_key, other_key=bob_key)

            def config() -> cred.VerifyConfig:  # a fresh resolver cache each time
                return cred.VerifyConfig(resolver=UniversalResolver(
                    web=resolver_for(test_pki)), status=None)

            good = web_credential(did, org_key, f"{did}#key-1", alice_key, now)
            verified = await cred.verify_credential(good, config())
            assert verified.issuer == did
            assert verified.proof.verification_method == f"{did}#key-1"
            assert verified.subject == alice_key.did.did
            assert verified.claims == {"organization": "Acme"}

            # key-2 is in the document, but only for authentication
            not_assertion = web_credential(did, bob_key, f"{did}#key-2", alice_key, now)
            with pytest.raises(InvalidProof):
                await cred.verify_credential(not_assertion, config())

            # a key the document does not list at all, claiming to be key-1
            forged = web_credential(did, mallory_key, f"{did}#key-1", alice_key, now)
            with pytest.raises(InvalidProof):
                await cred.verify_credential(forged, config())

            tampered = copy.deepcopy(good)
            tampered["credentialSubject"]["organization"] = "Evil Corp"
            with pytest.raises(InvalidProof):
                await cred.verify_credential(tampered, config())

            # the issuer's web server is down or gone: the credential cannot be verified
            documents.clear()
            with pytest.raises(DIDResolutionError):
                await cred.verify_credential(good, config())

    asyncio.run(scenario())
