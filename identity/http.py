"""Bounded HTTP(S) GET for did:web documents and status lists (aiohttp, imported lazily).

One function so that both callers get the same guarantees: certificates checked against
the system store plus an optional extra CA bundle, no redirects, a total timeout, and a
size limit enforced while reading (a hostile server cannot exhaust memory). Failures raise
:class:`~mpcid.identity.errors.FetchFailed` with a one-line reason; callers turn it into
their own error type.
"""

from __future__ import annotations

import ssl
from typing import Any

from .errors import FetchFailed


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise FetchFailed(f"cannot load the CA file {ca_file}: {exc}") from None
    return context


async def fetch(url: str, *, limit: int, timeout: float, ca_file: str | None = None) -> bytes:
    """GET ``url`` and return its body (HTTP 200 only, at most ``limit`` bytes)."""
    import aiohttp

    context = ssl_context(ca_file) if url.startswith("https://") else None
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, ssl=context if context is not None else True,
                                   allow_redirects=False) as response:
                if response.status != 200:
                    raise FetchFailed(f"it answered HTTP {response.status}")
                body = await read_body(response, limit)
    except FetchFailed:
        raise
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise FetchFailed(f"{type(exc).__name__}: {exc}") from None
    if len(body) > limit:
        raise FetchFailed(f"it is larger than {limit} bytes")
    return body


async def read_body(response: Any, limit: int) -> bytes:
    """The whole body, or ``limit + 1`` bytes of it when it is larger (aiohttp's
    ``read(n)`` returns only what is buffered, so read in chunks)."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            break
    return bytes(body)
