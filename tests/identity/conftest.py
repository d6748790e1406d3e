"""Shared fixtures for the identity tests: keys, times, fast KDF parameters, signed
credentials and status lists, and a helper that runs an aiohttp app on 127.0.0.1.

Servers are started and stopped inside each test (``serve_app`` is an async context
manager), so nothing outlives the test that needs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import nacl.pwhash
import pytest
from aiohttp import web

from mpcid.identity import credentials as cred
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.keystore import KdfParams
from mpcid.identity.statuslist import Bitstring

STATUS_URL = "https://status.example.org/lists/1"


@pytest.fixture
def org_key() -> Ed25519Key:
    """The issuer (an organisation)."""
    return Ed25519Key.generate()


@pytest.fixture
def other_org_key() -> Ed25519Key:
    """A second issuer, unrelated to ``org_key``."""
    return Ed25519Key.generate()


@pytest.fixture
def alice_key() -> Ed25519Key:
    return Ed25519Key.generate()


@pytest.fixture
def bob_key() -> Ed25519Key:
    return Ed25519Key.generate()


@pytest.fixture
def mallory_key() -> Ed25519Key:
    return Ed25519Key.generate()


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@pytest.fixture
def fast_kdf() -> KdfParams:
    """Argon2id at libsodium's minimum cost, so that tests stay fast."""
    return KdfParams(opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN,
                     memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)


@pytest.fixture
def membership_credential(org_key: Ed25519Key, alice_key: Ed25519Key,
                          now: dt.datetime) -> dict[str, Any]:
    """A signed MembershipCredential (organization=Acme) issued by org to alice, valid
    from a day ago until a day from now, without credentialStatus."""
    document = cred.build_credential(
        issuer=org_key.did.did, subject=alice_key.did.did,
        credential_type="MembershipCredential", claims={"organization": "Acme"},
        valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=1))
    return cred.sign_credential(document, org_key, now=now)


@pytest.fixture
def make_status_list(now: dt.datetime) -> Callable[..., dict[str, Any]]:
    """``make_status_list(key, url, set_bits=(), purpose="revocation", bits=None)`` ->
    a BitstringStatusListCredential signed by ``key``."""

    def make(key: Ed25519Key, url: str = STATUS_URL, set_bits: tuple[int, ...] = (),
             purpose: str = "revocation", bits: Bitstring | None = None) -> dict[str, Any]:
        bits = bits if bits is not None else Bitstring.empty()
        for index in set_bits:
            bits.set(index)
        document = cred.status_list_credential(
            issuer=key.did.did, url=url, bits=bits, purpose=purpose,
            valid_from=now - dt.timedelta(days=1))
        return cred.sign_credential(document, key, now=now)

    return make


@pytest.fixture
def make_status_credential(org_key: Ed25519Key, alice_key: Ed25519Key,
                           now: dt.datetime) -> Callable[..., dict[str, Any]]:
    """``make_status_credential(index, url=STATUS_URL, purpose="revocation")`` -> a signed
    credential from org to alice that points into a status list."""

    def make(index: int, url: str = STATUS_URL, purpose: str = "revocation"
             ) -> dict[str, Any]:
        document = cred.build_credential(
            issuer=org_key.did.did, subject=alice_key.did.did,
            credential_type="MembershipCredential", claims={"organization": "Acme"},
            valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=1),
            status=(url, index), status_purpose=purpose)
        return cred.sign_credential(document, org_key, now=now)

    return make


@contextlib.asynccontextmanager
async def _serve_app(app: web.Application, ssl_context: ssl.SSLContext | None = None
                     ) -> AsyncIterator[int]:
    """Run ``app`` on 127.0.0.1 on a free port; yield the port; stop it afterwards."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield int(port)
    finally:
        await runner.cleanup()


@pytest.fixture
def serve_app() -> Callable[..., contextlib.AbstractAsyncContextManager[int]]:
    return _serve_app
