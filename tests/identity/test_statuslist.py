"""W3C Bitstring Status List v1.0: bitstring, encoding, sources (file, HTTP)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gzip
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mpcid.identity import credentials as cred
from mpcid.identity import multibase
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import CredentialRevoked, StatusCheckFailed
from mpcid.identity.statuslist import (MIN_BITS, Bitstring, FileAndHttpStatusSource,
                                       parse_status_reference, read_index)

Doc = dict[str, Any]
STATUS_URL = "https://status.example.org/lists/1"  # as in conftest.py

#: The encodedList of the example BitstringStatusListCredential in W3C "Bitstring Status
#: List v1.0" (W3C Recommendation, 15 May 2025, https://www.w3.org/TR/vc-bitstring-status-list/,
#: example "Example BitstringStatusListCredential"): a 131,072-bit (16 KiB) list, all zero.
W3C_EXAMPLE_ENCODED_LIST = "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"


# --- Bitstring --------------------------------------------------------------------------------


def test_bit_order_index_0_is_msb_of_byte_0() -> None:
    bits = Bitstring.empty()
    bits.set(0)
    assert bits.data[0] == 0x80
    bits.set(7)
    assert bits.data[0] == 0x81
    bits.set(8)
    assert bits.data[1] == 0x80
    bits.set(MIN_BITS - 1)
    assert bits.data[-1] == 0x01
    assert [bits.get(i) for i in (0, 1, 6, 7, 8, 9, MIN_BITS - 2, MIN_BITS - 1)] == [
        True, False, False, True, True, False, False, True]
    bits.set(0, False)
    assert bits.data[0] == 0x01
    assert bits.get(0) is False


def test_bitstring_from_bytes() -> None:
    bits = Bitstring(bytes([0b10100000, 0b00000001]))
    assert len(bits) == 16
    assert [i for i in range(16) if bits.get(i)] == [0, 2, 15]


def test_empty_sizes() -> None:
    assert len(Bitstring.empty()) == MIN_BITS == 131_072
    assert len(Bitstring.empty().data) == 16 * 1024
    assert not any(Bitstring.empty().data)
    assert len(Bitstring.empty(MIN_BITS + 8)) == MIN_BITS + 8
    for bad in (0, 8, MIN_BITS - 8, MIN_BITS + 1, MIN_BITS + 7):
        with pytest.raises(ValueError):
            Bitstring.empty(bad)


@pytest.mark.parametrize("index", [-1, MIN_BITS, MIN_BITS + 100])
def test_index_outside(index: int) -> None:
    bits = Bitstring.empty()
    with pytest.raises(IndexError):
        bits.get(index)
    with pytest.raises(IndexError):
        bits.set(index)


def test_encode_decode_round_trip() -> None:
    rng = random.Random(1234)
    bits = Bitstring.empty(MIN_BITS * 2)
    chosen = sorted(rng.sample(range(len(bits)), 500))
    for i in chosen:
        bits.set(i)
    encoded = bits.encode()
    assert encoded.startswith("u")
    assert set(encoded[1:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_")
    assert encoded == bits.encode()  # deterministic (mtime=0)
    decoded = Bitstring.decode(encoded)
    assert len(decoded) == len(bits)
    assert [i for i in range(len(decoded)) if decoded.get(i)] == chosen
    # the payload is a GZIP stream of the raw bytes
    assert gzip.decompress(multibase.decode(encoded)) == bytes(bits.data)


def test_decode_statuslist2021_form_without_prefix() -> None:
    bits = Bitstring.empty()
    bits.set(5)
    decoded = Bitstring.decode(bits.encode()[1:])
    assert decoded.get(5) and not decoded.get(4)


def test_decode_w3c_spec_example() -> None:
    bits = Bitstring.decode(W3C_EXAMPLE_ENCODED_LIST)
    assert len(bits) == 131_072
    assert bytes(bits.data) == bytes(16 * 1024)


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(bytes(20 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 64 * 1024
    encoded = multibase.encode(bomb, "u")
    started = time.monotonic()
    with pytest.raises(StatusCheckFailed) as info:
        Bitstring.decode(encoded)
    assert "16 MiB" in str(info.value)
    assert time.monotonic() - started < 5


def test_largest_allowed_list_decodes() -> None:
    encoded = multibase.encode(gzip.compress(bytes(16 * 1024 * 1024)), "u")
    assert len(Bitstring.decode(encoded)) == 16 * 1024 * 1024 * 8


@pytest.mark.parametrize("encoded", [
    multibase.encode(b"this is not gzip data at all", "u"),
    multibase.encode(b"\x1f\x8b\x08\x00garbage-after-magic", "u"),
    "u!!!not-base64!!!",
    "zNotBase64url",
    "",
    None,
    12345,
])
def test_decode_refuses_bad_lists(encoded: Any) -> None:
    with pytest.raises(StatusCheckFailed):
        Bitstring.decode(encoded)


# --- references -----------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("https://example.org/status/1#94567", ("https://example.org/status/1", 94567)),
    ("https://example.org/status/1#0", ("https://example.org/status/1", 0)),
    ("file:///tmp/list.json#12", ("file:///tmp/list.json", 12)),
    ("https://example.org/a#b#7", ("https://example.org/a#b", 7)),
])
def test_parse_status_reference(text: str, expected: tuple[str, int]) -> None:
    assert parse_status_reference(text) == expected


@pytest.mark.parametrize("text", [
    "https://example.org/status/1", "https://example.org/status/1#", "#5",
    "https://example.org/status/1#-1", "https://example.org/status/1#x1", "",
    "https://example.org/status/1#1.5"])
def test_parse_status_reference_bad(text: str) -> None:
    with pytest.raises(ValueError):
        parse_status_reference(text)


def test_read_index() -> None:
    assert read_index({"statusListIndex": "94567"}) == 94567
    assert read_index({"statusListIndex": 3}) == 3
    for bad in ("-1", "abc", None, "1.5"):
        with pytest.raises(StatusCheckFailed):
            read_index({"statusListIndex": bad})


# --- sources --------------------------------------------------------------------------------


def fetch(source: FileAndHttpStatusSource, url: str) -> Doc:
    return asyncio.run(source.fetch(url))


def test_override_with_document_and_file(tmp_path: Path, org_key: Ed25519Key,
                                         make_status_list: Callable[..., Doc]) -> None:
    status = make_status_list(org_key)
    path = tmp_path / "list.json"
    path.write_text(json.dumps(status))
    assert fetch(FileAndHttpStatusSource({"https://a.example/1": status}),
                 "https://a.example/1") == status
    assert fetch(FileAndHttpStatusSource({"https://a.example/1": path}),
                 "https://a.example/1") == status


def test_file_url(tmp_path: Path, org_key: Ed25519Key,
                  make_status_list: Callable[..., Doc]) -> None:
    status = make_status_list(org_key)
    path = tmp_path / "list.json"
    path.write_text(json.dumps(status))
    assert fetch(FileAndHttpStatusSource(), f"file://{path}") == status


def test_file_url_from_path_as_uri(tmp_path: Path, org_key: Ed25519Key,
                                   make_status_list: Callable[..., Doc]) -> None:
    """A file: URL as Python (and RFC 8089) spell it: percent-encoded."""
    status = make_status_list(org_key)
    path = tmp_path / "status lists" / "list 1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(status))
    assert fetch(FileAndHttpStatusSource(), path.as_uri()) == status


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2, 3]", b"\xff\xfe"])
def test_file_not_a_json_object(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "list.json"
    path.write_bytes(content)
    with pytest.raises(StatusCheckFailed):
        fetch(FileAndHttpStatusSource(), f"file://{path}")


def test_missing_file_and_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(StatusCheckFailed):
        fetch(FileAndHttpStatusSource(), f"file://{tmp_path}/missing.json")
    with pytest.raises(StatusCheckFailed):
        fetch(FileAndHttpStatusSource(), "ftp://example.org/list.json")


def test_revocation_through_a_file_url(tmp_path: Path, org_key: Ed25519Key,
                                       make_status_list: Callable[..., Doc],
                                       make_status_credential: Callable[..., Doc]) -> None:
    path = tmp_path / "list.json"
    url = f"file://{path}"
    path.write_text(json.dumps(make_status_list(org_key, url=url, set_bits=(9,))))
    config = cred.VerifyConfig(status=FileAndHttpStatusSource())
    asyncio.run(cred.verify_credential(make_status_credential(8, url=url), config))
    with pytest.raises(CredentialRevoked):
        asyncio.run(cred.verify_credential(make_status_credential(9, url=url), config))


def _status_app(documents: dict[str, bytes]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        body = documents.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/vc+ld+json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


@pytest.mark.integration
def test_fetch_over_http(org_key: Ed25519Key, make_status_list: Callable[..., Doc],
                         make_status_credential: Callable[..., Doc],
                         serve_app: Callable[..., Any]) -> None:
    async def scenario() -> None:
        documents: dict[str, bytes] = {}
        async with serve_app(_status_app(documents)) as port:
            url = f"http://127.0.0.1:{port}/status/1"
            status = make_status_list(org_key, url=url, set_bits=(100,))
            documents["/status/1"] = json.dumps(status).encode()
            source = FileAndHttpStatusSource(timeout=5)
            assert await source.fetch(url) == status
            config = cred.VerifyConfig(status=source)
            ok = await cred.verify_credential(make_status_credential(99, url=url), config)
            assert ok.claims == {"organization": "Acme"}
            with pytest.raises(CredentialRevoked):
                await cred.verify_credential(make_status_credential(100, url=url), config)
            with pytest.raises(StatusCheckFailed) as info:
                await source.fetch(f"http://127.0.0.1:{port}/status/404")
            assert "404" in str(info.value)

    asyncio.run(scenario())


@pytest.mark.integration
def test_fetch_a_large_list_over_http(org_key: Ed25519Key,
                                      make_status_list: Callable[..., Doc],
                                      make_status_credential: Callable[..., Doc],
                                      serve_app: Callable[..., Any]) -> None:
    """A 1 MiB list (8,388,608 entries) whose bits look random does not compress: the
    credential is about 1.4 MB, well below the 32 MiB document limit, and must be read
    whole, however the body is split into chunks on the way."""
    async def scenario() -> None:
        documents: dict[str, bytes] = {}
        async with serve_app(_status_app(documents)) as port:
            url = f"http://127.0.0.1:{port}/status/big"
            data = bytearray(random.Random(7).randbytes(1024 * 1024))
            data[0] |= 0x80  # index 0 revoked
            data[1] &= 0x7F  # index 8 not revoked
            status = make_status_list(org_key, url=url, bits=Bitstring(data))
            documents["/status/big"] = json.dumps(status).encode()
            assert len(documents["/status/big"]) > 1_000_000
            source = FileAndHttpStatusSource(timeout=10)
            assert await source.fetch(url) == status
            config = cred.VerifyConfig(status=source)
            await cred.verify_credential(make_status_credential(8, url=url), config)
            with pytest.raises(CredentialRevoked):
                await cred.verify_credential(make_status_credential(0, url=url), config)

    asyncio.run(scenario())


@pytest.mark.integration
def test_http_non_json_answer(serve_app: Callable[..., Any]) -> None:
    async def scenario() -> None:
        async with serve_app(_status_app({"/x": b"<html>hello</html>"})) as port:
            with pytest.raises(StatusCheckFailed):
                await FileAndHttpStatusSource(timeout=5).fetch(f"http://127.0.0.1:{port}/x")

    asyncio.run(scenario())


@pytest.mark.integration
def test_unreachable_port_fails_quickly() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StatusCheckFailed) as info:
        fetch(FileAndHttpStatusSource(timeout=5), f"http://127.0.0.1:{port}/status/1")
    assert time.monotonic() - started < 3
    assert str(port) in str(info.value)


@pytest.mark.integration
def test_slow_server_times_out(serve_app: Callable[..., Any]) -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def slow(request: web.Request) -> web.Response:
            await release.wait()
            return web.Response(text="{}")

        app = web.Application()
        app.router.add_get("/slow", slow)
        async with serve_app(app) as port:
            started = time.monotonic()
            with pytest.raises(StatusCheckFailed):
                await FileAndHttpStatusSource(timeout=0.5).fetch(
                    f"http://127.0.0.1:{port}/slow")
            assert time.monotonic() - started < 3
            release.set()

    asyncio.run(scenario())


# --- what a status list URL may make the verifier read (specs/identity.md 6) ----------------

_MPCID = Path(sys.executable).parent / "mpcid"


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_status_file_that_is_not_a_regular_file(tmp_path: Path, org_key: Ed25519Key,
                                                alice_key: Ed25519Key,
                                                make_status_credential: Callable[..., Doc],
                                                kind: str) -> None:
    """`mpcid credential verify --status-file URL=FILE` where FILE is a FIFO nobody writes
    to, or /dev/zero: refused at once, instead of blocking forever or reading until the
    memory runs out."""
    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    else:
        target = Path("/dev/zero")
    credential = tmp_path / "vc.json"
    credential.write_text(json.dumps(make_status_credential(3)))
    started = time.monotonic()
    proc = subprocess.run(
        [str(_MPCID), "credential", "verify", str(credential), "--home", str(tmp_path / "h"),
         "--status-file", f"{STATUS_URL}={target}"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("MPCID_")})
    assert proc.returncode == 1, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30


def test_peer_documents_never_read_file_urls(tmp_path: Path, org_key: Ed25519Key,
                                             make_status_list: Callable[..., Doc]) -> None:
    """A status URL in someone else's credential never reads the local disk; the same
    list given explicitly (an override, --status-file) is read."""
    path = tmp_path / "list.json"
    status = make_status_list(org_key, url=path.as_uri())
    path.write_text(json.dumps(status))
    with pytest.raises(StatusCheckFailed, match="--status-file"):
        fetch(FileAndHttpStatusSource(peer_documents=True), path.as_uri())
    assert fetch(FileAndHttpStatusSource({path.as_uri(): path}, peer_documents=True),
                 path.as_uri()) == status


@pytest.mark.parametrize("url", [
    "http://example.org/status/1",  # not https
    "https://127.0.0.1/status/1", "https://[::1]/status/1", "https://10.1.2.3/s",
    "https://192.168.0.1/s", "https://169.254.169.254/latest", "https://0.0.0.0/s",
    "https://224.0.0.1/s", "https://[::ffff:127.0.0.1]/s", "https://[fe80::1]/s",
    "https://localhost/status/1",
])
def test_peer_documents_fetch_only_public_https(url: str) -> None:
    with pytest.raises(StatusCheckFailed) as info:
        fetch(FileAndHttpStatusSource(timeout=5, peer_documents=True), url)
    assert "not a public address" in str(info.value) or "only https" in str(info.value)


@pytest.mark.integration
def test_peer_documents_do_not_connect_to_loopback(serve_app: Callable[..., Any]) -> None:
    """The same server that answers a user's own `credential verify` is never contacted
    for a peer's document (the name resolves to loopback: checked at resolution)."""
    async def scenario() -> None:
        hits: list[str] = []

        async def handler(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.Response(text="{}")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        async with serve_app(app) as port:
            with pytest.raises(StatusCheckFailed):
                await FileAndHttpStatusSource(timeout=5, peer_documents=True).fetch(
                    f"https://localhost:{port}/s")
            assert hits == []
            await FileAndHttpStatusSource(timeout=5).fetch(f"http://localhost:{port}/s")
            assert hits == ["/s"]

    asyncio.run(scenario())


# --- freshness: an older signed list cannot undo a revocation (specs/identity.md 6) ---------


def _cli(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_MPCID), *map(str, args), "--home", str(home)], capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("MPCID_")})


@pytest.mark.integration
def test_rolled_back_list_is_refused_after_its_window(tmp_path: Path) -> None:
    """The issuer revokes; someone keeps serving the list from before the revocation. Once
    that copy's validUntil has passed it is refused, and `status-list refresh` re-signs
    the current list with a new window."""
    org, verifier = tmp_path / "org", tmp_path / "verifier"
    url = "https://status.acme.example/1"
    published, old = tmp_path / "published.json", tmp_path / "old.json"
    holder = _cli("create-did", "--name", "org", home=org)
    assert holder.returncode == 0, holder.stderr
    made = _cli("status-list", "create", "--issuer", "org", "--url", url, "--publish",
                published, "--valid-for", "1h", home=org)
    assert made.returncode == 0, made.stderr
    subject = holder.stdout.split()[-1]
    issued = _cli("credential", "issue", "--issuer", "org", "--subject", subject, "--type",
                  "MembershipCredential", "--status-list", url, "--expires",
                  "2099-01-01T00:00:00Z", home=org)
    assert issued.returncode == 0, issued.stderr
    credential = tmp_path / "vc.json"
    credential.write_text(issued.stdout)
    old.write_text(published.read_text())
    assert _cli("credential", "revoke", credential, home=org).returncode == 0
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")

    def verify(copy: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return _cli("credential", "verify", credential, "--status-file", f"{url}={copy}",
                    *extra, home=verifier)

    assert verify(old).returncode == 0  # within its window: the known limit
    rolled_back = verify(old, "--at", later)
    assert rolled_back.returncode == 1 and "expired" in rolled_back.stderr, rolled_back.stderr
    assert "revoked" in verify(published).stderr
    before = json.loads(published.read_text())["validUntil"]
    refreshed = _cli("status-list", "refresh", home=org)
    assert refreshed.returncode == 0 and url in refreshed.stdout, refreshed.stderr
    assert json.loads(published.read_text())["validUntil"] >= before
    assert "revoked" in verify(published).stderr


def test_list_without_valid_until_has_a_maximum_age(
        org_key: Ed25519Key, make_status_credential: Callable[..., Doc],
        now: dt.datetime) -> None:
    old = cred.sign_credential(cred.status_list_credential(
        issuer=org_key.did.did, url=STATUS_URL, bits=Bitstring.empty(), purpose="revocation",
        valid_from=now - dt.timedelta(days=8)), org_key, now=now)
    source = FileAndHttpStatusSource({STATUS_URL: old})
    credential = make_status_credential(1)
    asyncio.run(cred.verify_credential(credential, cred.VerifyConfig(status=source)))
    config = cred.VerifyConfig(status=source, status_max_age=dt.timedelta(days=7))
    with pytest.raises(StatusCheckFailed, match="stale"):
        asyncio.run(cred.verify_credential(credential, config))


@pytest.mark.integration
def test_the_verifier_sets_the_maximum_age(tmp_path: Path, org_key: Ed25519Key,
                                           make_status_credential: Callable[..., Doc],
                                           now: dt.datetime) -> None:
    """`--status-max-age` (default 7d) on the verifying commands, `join` included."""
    signed_2h_ago = cred.sign_credential(cred.status_list_credential(
        issuer=org_key.did.did, url=STATUS_URL, bits=Bitstring.empty(), purpose="revocation",
        valid_from=now - dt.timedelta(hours=2)), org_key, now=now)
    (tmp_path / "list.json").write_text(json.dumps(signed_2h_ago), encoding="utf-8")
    (tmp_path / "vc.json").write_text(json.dumps(make_status_credential(1)), encoding="utf-8")
    base = ("credential", "verify", tmp_path / "vc.json",
            "--status-file", f"{STATUS_URL}={tmp_path / 'list.json'}")
    home = tmp_path / "home"
    assert _cli(*base, home=home).returncode == 0
    assert _cli(*base, "--status-max-age", "3h", home=home).returncode == 0
    stale = _cli(*base, "--status-max-age", "1h", home=home)
    assert stale.returncode == 1 and "is stale" in stale.stderr, stale.stderr
    zero = _cli(*base, "--status-max-age", "0", home=home)
    assert zero.returncode == 2 and zero.stderr.strip() == (
        "error: --status-max-age must be positive (e.g. 24h or 7d)"), zero.stderr
    for command in (("join",), ("presentation", "verify")):
        shown = _cli(*command, "--help", home=home).stdout
        assert "--status-max-age" in shown, command


class CountingSource(FileAndHttpStatusSource):
    """Overrides only, counting the fetches (and answering after a pause, so that
    verifiers running at once overlap)."""

    def __init__(self, documents: dict[str, Any]) -> None:
        super().__init__(documents)
        self.fetches: list[str] = []

    async def fetch(self, url: str) -> dict[str, Any]:
        self.fetches.append(url)
        await asyncio.sleep(0.01)
        if url not in self.overrides:
            raise StatusCheckFailed(f"cannot fetch status list {url}: nobody answers")
        return await super().fetch(url)


def test_a_session_fetches_and_verifies_an_issuers_list_once_for_all_peers(
        org_key: Ed25519Key, now: dt.datetime, make_status_list: Callable[..., Doc],
        make_status_credential: Callable[..., Doc]) -> None:
    source = CountingSource({STATUS_URL: make_status_list(org_key, set_bits=(9,))})
    session = cred.VerifyConfig(status=source, now=now, status_lists={})

    async def peers() -> list[Any]:
        return await asyncio.gather(
            *(cred.verify_credential(make_status_credential(i), session)
              for i in (1, 2, 9, 3)), return_exceptions=True)

    outcomes = asyncio.run(peers())
    assert [type(o).__name__ for o in outcomes] == [
        "VerifiedCredential", "VerifiedCredential", "CredentialRevoked", "VerifiedCredential"]
    assert source.fetches == [STATUS_URL]
    # Each verifier of a session works on a copy with its own clock: the lists are shared.
    copy = dataclasses.replace(session, now=now)
    with pytest.raises(CredentialRevoked):
        asyncio.run(cred.verify_credential(make_status_credential(9), copy))
    assert source.fetches == [STATUS_URL]
    # Without a memo (a one-off command), every credential fetches its lists.
    plain = cred.VerifyConfig(status=source, now=now)
    for index in (1, 2):
        asyncio.run(cred.verify_credential(make_status_credential(index), plain))
    assert source.fetches == [STATUS_URL] * 3


def test_a_list_that_cannot_be_fetched_fails_every_peer_with_one_attempt(
        now: dt.datetime, make_status_credential: Callable[..., Doc]) -> None:
    source = CountingSource({})
    session = cred.VerifyConfig(status=source, now=now, status_lists={})

    async def peers() -> list[Any]:
        return await asyncio.gather(
            *(cred.verify_credential(make_status_credential(i), session) for i in (1, 2)),
            return_exceptions=True)

    outcomes = asyncio.run(peers())
    assert all(isinstance(o, StatusCheckFailed) and "nobody answers" in str(o)
               for o in outcomes), outcomes
    assert source.fetches == [STATUS_URL]


def test_the_memo_is_per_issuer_so_a_list_claimed_by_another_issuer_is_still_refused(
        org_key: Ed25519Key, other_org_key: Ed25519Key, now: dt.datetime,
        make_status_list: Callable[..., Doc],
        make_status_credential: Callable[..., Doc]) -> None:
    """A peer whose credential names a list that verified for another issuer gains
    nothing from the memo: the list is checked against its own credential's issuer."""
    source = CountingSource({STATUS_URL: make_status_list(org_key)})
    session = cred.VerifyConfig(status=source, now=now, status_lists={})
    asyncio.run(cred.verify_credential(make_status_credential(1), session))
    forged = cred.build_credential(
        issuer=other_org_key.did.did, subject=Ed25519Key.generate().did.did,
        credential_type="MembershipCredential", claims={"organization": "Acme"},
        valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=1),
        status=(STATUS_URL, 1))
    signed = cred.sign_credential(forged, other_org_key, now=now)
    with pytest.raises(StatusCheckFailed, match="issued by"):
        asyncio.run(cred.verify_credential(signed, session))
