"""Compact, copy-pasteable text for a document: ``PREFIX + base64url(zlib(bytes))``,
no padding. Invitations (``mpcid1:``) and credentials (``mpcidvc1:``,
``specs/identity.md`` 2.1) travel this way, so that a user can paste one line into a
terminal, a chat or a form field instead of handing over a file.

Decoding treats the text as hostile: its length is checked before any copying,
whitespace from line wrapping is dropped, the base64url must be canonical, and
decompression stops one byte past the document limit, so a short text cannot expand into
a large allocation. Sans-IO.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

from .errors import MpcidError

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def encode(prefix: str, data: bytes) -> str:
    """``prefix`` and the compressed, base64url-encoded ``data``."""
    return prefix + b64url(zlib.compress(data, 9))


def max_chars(prefix: str, max_bytes: int) -> int:
    """The longest text that can hold ``max_bytes``: compressed data is at most the input
    plus zlib's overhead, and base64 adds a third."""
    return len(prefix) + 4 * ((max_bytes + 64 + 2) // 3)


def _show(text: str) -> str:
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 80 else text[:77] + "..."


def decode(text: object, *, prefix: str, max_bytes: int, error: type[MpcidError],
           kind: str, hint: str | None = None) -> bytes:
    """The bytes in ``text``, a ``prefix`` token of a ``kind`` ("mpcid invitation
    token"); raises ``error`` naming what is wrong. ``prefix`` is a family name, a version
    number and a colon: a token of the same family with another version is refused as
    unsupported rather than as foreign. ``hint`` (else the error's own) goes with every
    refusal but that one."""
    if not isinstance(text, str):
        raise error(f"a token is text, not {type(text).__name__}", hint=hint)
    limit = max_chars(prefix, max_bytes)
    if len(text) > limit + 1024:  # before any copying; whitespace allowance
        raise error(f"token of {len(text)} characters is too long", hint=hint)
    compact = "".join(text.split())
    if len(compact) > limit:
        raise error(f"token of {len(compact)} characters exceeds {limit}", hint=hint)
    if not compact.startswith(prefix):
        family = re.escape(prefix.rstrip(":").rstrip("0123456789"))
        match = re.match(family + r"[0-9]+:", compact)
        if match:
            raise error(f"token version {_show(match.group())} is not supported "
                        f"(this is {prefix})", hint="update mpcid")
        raise error(f"this is not an {kind} (it must start with {prefix!r})", hint=hint)
    body = compact[len(prefix):]
    if not _B64URL.fullmatch(body) or len(body) % 4 == 1:
        raise error("token is not base64url text (damaged in copying?)", hint=hint)
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise error("token is not base64url text (damaged in copying?)", hint=hint) from None
    if b64url(packed) != body:
        raise error("token is not canonical base64url (damaged in copying?)", hint=hint)
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(packed, max_bytes + 1)
    except zlib.error:
        raise error("token does not hold zlib data (damaged in copying?)", hint=hint) from None
    if len(data) > max_bytes:
        raise error(f"token expands beyond {max_bytes} bytes", hint=hint)
    if not inflater.eof:
        raise error("token is truncated (copy all of it)", hint=hint)
    if inflater.unused_data:
        raise error("token has data after its end (damaged in copying?)", hint=hint)
    return data
