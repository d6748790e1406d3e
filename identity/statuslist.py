"""W3C Bitstring Status List v1.0: the bitstring, its encoding, and where lists come from.

``encodedList`` = multibase base64url (``u``) of the GZIP of the bitstring; bit 0 is the
left-most (most significant) bit of the first byte (spec section 3.1 / 4.1). The minimum
length is 131,072 bits (16 KiB) so that a single list gives its holders herd privacy.
Decoding refuses lists that inflate beyond :data:`MAX_LIST_BYTES`, so a hostile status
server cannot exhaust memory with a GZIP bomb.
"""

from __future__ import annotations

import abc
import gzip
import json
import os
import stat
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import multibase
from .errors import FetchFailed, StatusCheckFailed

MIN_BITS = 131_072
MAX_LIST_BYTES = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
PURPOSES = ("revocation", "suspension")


class Bitstring:
    """A mutable bitstring addressed as the status list spec addresses it."""

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = bytearray(data)

    @classmethod
    def empty(cls, bits: int = MIN_BITS) -> Bitstring:
        if bits < MIN_BITS or bits % 8:
            raise ValueError(f"a status list has at least {MIN_BITS} bits, a multiple of 8")
        return cls(bytes(bits // 8))

    def __len__(self) -> int:
        return len(self.data) * 8

    def get(self, index: int) -> bool:
        self._check(index)
        return bool(self.data[index // 8] & (0x80 >> (index % 8)))

    def set(self, index: int, value: bool = True) -> None:
        self._check(index)
        if value:
            self.data[index // 8] |= 0x80 >> (index % 8)
        else:
            self.data[index // 8] &= ~(0x80 >> (index % 8)) & 0xFF

    def encode(self) -> str:
        # mtime=0 makes the encoding deterministic for the same bits.
        return multibase.encode(gzip.compress(bytes(self.data), mtime=0), "u")

    @classmethod
    def decode(cls, encoded: object) -> Bitstring:
        if not isinstance(encoded, str) or not encoded:
            raise StatusCheckFailed("the status list has no encodedList")
        try:
            # StatusList2021 lists omit the multibase prefix; accept both forms.
            raw = multibase.decode(encoded if encoded[0] == "u" else "u" + encoded)
        except ValueError:
            raise StatusCheckFailed("the status list's encodedList is not base64url") from None
        try:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            data = inflater.decompress(raw, MAX_LIST_BYTES + 1)
        except zlib.error:
            raise StatusCheckFailed("the status list's encodedList is not GZIP data") from None
        if len(data) > MAX_LIST_BYTES:
            raise StatusCheckFailed("the status list is larger than 16 MiB")
        return cls(data)

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"status index {index} is outside the list (0..{len(self) - 1})")


class StatusSource(abc.ABC):
    """Where status list credentials come from."""

    @abc.abstractmethod
    async def fetch(self, url: str) -> dict[str, Any]:
        """Return the status list credential published at ``url``."""


class FileAndHttpStatusSource(StatusSource):
    """Local overrides first (``{URL: FILE or document}``), then ``file:`` URLs, then
    HTTP(S) through aiohttp (with an optional extra CA).

    ``peer_documents=True`` is for status lists named in credentials someone else
    presents (a session's peers, ``specs/session.md`` 7.4): their URLs are chosen by the
    presenter, so ``file:`` URLs are never read and only https to public addresses is
    fetched (:func:`mpcid.identity.http.fetch` with ``public_only``). A local copy is
    then read only when the user named it (an override, ``--status-file URL=FILE``).
    Every file is read off the event loop, only if it is a regular file, opened without
    blocking (a FIFO cannot stall the verifier) and at most :data:`MAX_DOCUMENT_BYTES`.
    """

    def __init__(self, overrides: Mapping[str, Path | dict[str, Any]] | None = None, *,
                 ca_file: str | None = None, timeout: float = 10.0,
                 peer_documents: bool = False) -> None:
        self.overrides = dict(overrides or {})
        self.ca_file = ca_file
        self.timeout = timeout
        self.peer_documents = peer_documents

    async def fetch(self, url: str) -> dict[str, Any]:
        if url in self.overrides:
            found = self.overrides[url]
            return found if isinstance(found, dict) else await load_file(Path(found), url)
        if url.startswith("file:"):
            if self.peer_documents:
                raise StatusCheckFailed(f"status list {url} is a local file, which is read "
                                        "only when given with --status-file URL=FILE")
            import urllib.parse
            import urllib.request

            path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
            return await load_file(Path(path), url)
        if url.startswith(("http://", "https://")):
            return await self._fetch_http(url)
        raise StatusCheckFailed(f"cannot fetch status list {url}: unsupported URL scheme")

    async def _fetch_http(self, url: str) -> dict[str, Any]:
        from .http import fetch

        try:
            body = await fetch(url, limit=MAX_DOCUMENT_BYTES, timeout=self.timeout,
                               ca_file=self.ca_file, public_only=self.peer_documents)
        except FetchFailed as exc:
            raise StatusCheckFailed(f"cannot fetch status list {url}: {exc}") from None
        return _parse(body, url)


async def load_file(path: Path, url: str) -> dict[str, Any]:
    """The status list in ``path``, read in a worker thread (never on the event loop)."""
    import asyncio

    return _parse(await asyncio.to_thread(_read_regular_file, path, url), url)


def _read_regular_file(path: Path, url: str) -> bytes:
    """At most ``MAX_DOCUMENT_BYTES + 1`` bytes of ``path`` if it is a regular file.
    O_NONBLOCK: opening a FIFO neither waits for a writer nor is accepted (not regular);
    /dev/zero and other devices are refused before a byte is read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise StatusCheckFailed(f"cannot read status list {url} from {path}: "
                                f"{exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StatusCheckFailed(f"cannot read status list {url} from {path}: "
                                    "not a regular file")
        try:
            return handle.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as exc:
            raise StatusCheckFailed(f"cannot read status list {url} from {path}: "
                                    f"{exc.strerror}") from None


def _parse(body: bytes, url: str) -> dict[str, Any]:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise StatusCheckFailed(f"status list {url} is too large")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StatusCheckFailed(f"status list {url} is not JSON") from None
    if not isinstance(document, dict):
        raise StatusCheckFailed(f"status list {url} is not a JSON object")
    return document


def read_index(entry: dict[str, Any]) -> int:
    raw = entry.get("statusListIndex")
    try:
        index = int(str(raw), 10)
    except ValueError:
        raise StatusCheckFailed(f"statusListIndex {raw!r} is not a number") from None
    if index < 0:
        raise StatusCheckFailed(f"statusListIndex {raw!r} is negative")
    return index


def parse_status_reference(text: str) -> tuple[str, int]:
    """``URL#INDEX`` (the CLI's ``--status-list``) -> ``(URL, INDEX)``."""
    url, sep, index = text.rpartition("#")
    if not sep or not url or not index.isdigit():
        raise ValueError(f"{text!r} is not URL#INDEX (e.g. https://example.org/status/1#94567)")
    return url, int(index)
