"""Multibase (base58btc ``z``, base64url ``u``) and unsigned-varint multicodec prefixes.

Small enough to own: did:key, Data Integrity proofs and status lists need only these two
bases and two codecs. Decoders raise :class:`ValueError` with a short reason; callers map it
to their own error type, because "bad multibase" means different things in different places.
"""

from __future__ import annotations

import base64

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}

#: Multicodec codes used by mpcid (https://github.com/multiformats/multicodec).
ED25519_PUB = 0xED
X25519_PUB = 0xEC
ED25519_PRIV = 0x1300


def b58encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    if not text:
        return b""
    n = 0
    for ch in text:
        try:
            n = n * 58 + _B58_INDEX[ch]
        except KeyError:
            raise ValueError(f"{ch!r} is not a base58btc character") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def encode(data: bytes, base: str = "z") -> str:
    """Multibase-encode ``data``: ``z`` is base58btc, ``u`` is base64url without padding."""
    if base == "z":
        return "z" + b58encode(data)
    if base == "u":
        return "u" + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    raise ValueError(f"unsupported multibase prefix {base!r}")


def decode(text: str) -> bytes:
    """Decode a multibase string with prefix ``z`` or ``u``."""
    if not isinstance(text, str) or not text:
        raise ValueError("empty multibase value")
    prefix, body = text[0], text[1:]
    if prefix == "z":
        return b58decode(body)
    if prefix == "u":
        if not all(c.isalnum() or c in "-_" for c in body):
            raise ValueError("not base64url")
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    raise ValueError(f"unsupported multibase prefix {prefix!r} (expected 'z' or 'u')")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes) -> tuple[int, int]:
    """Return ``(value, bytes consumed)``; multicodec varints are at most 9 bytes."""
    value = 0
    for i, byte in enumerate(data[:9]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and byte == 0:
                raise ValueError("non-minimal varint")
            return value, i + 1
    raise ValueError("truncated varint")


def with_codec(code: int, key: bytes) -> bytes:
    return varint(code) + key


def split_codec(data: bytes) -> tuple[int, bytes]:
    code, used = read_varint(data)
    return code, data[used:]
