"""Bounded HTTP(S) GET for did:web documents and status lists (aiohttp, imported lazily).

One function so that both callers get the same guarantees: certificates checked against
the system store plus an optional extra CA bundle, no redirects, no proxy from the
environment, a total timeout, and a size limit enforced while reading (a hostile server
cannot exhaust memory). Failures raise :class:`~mpcid.identity.errors.FetchFailed` with a
one-line reason; callers turn it into their own error type.

``public_only=True`` is for URLs someone else chose (a status list named in a peer's
credential): https only, and only to public addresses. The host's addresses are checked
when they are resolved, inside the connection (a resolver handed to aiohttp), and aiohttp
connects to exactly the addresses checked, so a DNS answer cannot change between the check
and the connection (no rebinding). Refused: loopback, private, shared (100.64/10),
link-local, unspecified, reserved and multicast addresses, IPv4-mapped ones included.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from .errors import FetchFailed


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise FetchFailed(f"cannot load the CA file {ca_file}: {exc}") from None
    return context


def check_public(address: str) -> None:
    """Raise :class:`FetchFailed` unless ``address`` (an IP) is a public unicast one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise FetchFailed(f"{address!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        raise FetchFailed(f"it is at {ip}, not a public address")


def check_url(url: str, *, public_only: bool) -> None:
    """The checks that need no network: scheme, and the host when it is an IP literal."""
    parts = urlsplit(url)
    allowed = ("https",) if public_only else ("https", "http")
    if parts.scheme not in allowed or not parts.hostname:
        raise FetchFailed(f"only {' or '.join(allowed)} URLs with a host are fetched")
    if public_only:
        try:
            ipaddress.ip_address(parts.hostname.split("%", 1)[0])
        except ValueError:
            return  # a name: checked when it is resolved
        check_public(parts.hostname)


def _public_resolver() -> Any:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

    class PublicResolver(AbstractResolver):
        """aiohttp's resolver, refusing a name if any of its addresses is not public."""

        def __init__(self) -> None:
            self.inner = aiohttp.ThreadedResolver()

        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET
                          ) -> list[ResolveResult]:
            found = await self.inner.resolve(host, port, family)
            for entry in found:
                check_public(entry["host"])
            return found

        async def close(self) -> None:
            await self.inner.close()

    return PublicResolver()


async def fetch(url: str, *, limit: int, timeout: float, ca_file: str | None = None,
                public_only: bool = False) -> bytes:
    """GET ``url`` and return its body (HTTP 200 only, at most ``limit`` bytes)."""
    import aiohttp

    check_url(url, public_only=public_only)
    context = ssl_context(ca_file) if url.startswith("https://") else None
    connector = aiohttp.TCPConnector(
        resolver=_public_resolver() if public_only else None, use_dns_cache=False)
    try:
        async with aiohttp.ClientSession(
                connector=connector, trust_env=False,
                timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, ssl=context if context is not None else True,
                                   allow_redirects=False) as response:
                if response.status != 200:
                    raise FetchFailed(f"it answered HTTP {response.status}")
                body = await read_body(response, limit)
    except FetchFailed:
        raise
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, FetchFailed):
            raise cause from None
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
