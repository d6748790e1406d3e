"""Signed canonical JSON documents: the mechanics every mpcid signed object shares.

Theory of operation
-------------------
Endpoint records (``specs/discovery.md`` 2), invitations (``specs/session.md`` 2-4),
declines (8) and transcripts (9) are all one shape: a JSON object whose integer member
``"v"`` names its version and whose member ``"sig"`` holds an Ed25519 signature,
base64url without padding, over ``DOMAIN || JCS(object without "sig")``. The domain is a
short ASCII line per kind, so no signature can pass for another kind's. The encoding is
the canonical JSON (RFC 8785, JCS) of the whole object, ``"sig"`` included, so one signed
content has exactly one byte string.

This module holds the pieces of that shape; each kind keeps its own members, limits,
error types and the *order* of its checks, which its spec fixes. A writer's frozen
dataclass derives from :class:`SignedContent`, naming its domain and signer, and gets
:meth:`~SignedContent.signing_input` and :meth:`~SignedContent.sign`. A reader runs:

1. :func:`open_document`: bytes, size, strict JSON, a top-level object, an optional
   hook for general limits (:func:`check_limits`), then the version;
2. the kind's own member checks, with :func:`check_members`, :func:`read_integer`,
   :func:`read_did` and :func:`read_signature`;
3. :func:`check_canonical`: the bytes are the JCS encoding of the parsed object (or,
   with :meth:`~SignedContent.check_signed`, of the content rebuilt from it);
4. :meth:`~SignedContent.verify_signature`, then any time checks.

Every failure raises the kind's error type with a message that names the kind (``what``,
e.g. ``"record"``); the signature check itself belongs to the DID key and raises the
opaque :class:`~mpcid.identity.errors.InvalidProof`.

This module is sans-IO: no sockets, no event loop, no clock.
"""

from __future__ import annotations

import base64
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from mpcid.identity.compact import b64url as b64url  # the encoding of "sig"; re-exported
from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import InvalidDID, MpcidError

#: Integers must survive a round trip through an IEEE double (JavaScript, JCS).
MAX_INT = 2**53 - 1

_SIG = re.compile(r"[A-Za-z0-9_-]{86}")  # 64 bytes, base64url without padding


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 (JCS) for the values a signed document may hold: objects, arrays, strings,
    integers with ``|n| <= 2**53 - 1``, booleans and null (no floats).

    ``json.dumps`` writes strings and integers exactly as JCS does; object members are
    sorted here by UTF-16 code units, as JCS requires (plain ``sort_keys`` sorts by code
    points, which differs above U+FFFF).
    """
    return json.dumps(_sorted(obj), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj, key=lambda k: k.encode("utf-16-be"))}
    if isinstance(obj, (list, tuple)):
        return [_sorted(item) for item in obj]
    return obj


def strict_json(value: bytes, what: str, error: Callable[[str], Exception]) -> Any:
    """UTF-8 JSON without duplicate member names or non-integer numbers (either would make
    the canonical form ambiguous); failures raise ``error(message)`` naming ``what``."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            raise error(f"{what} has a duplicate JSON member name")
        return obj

    def no_float(text: str) -> Any:
        raise error(f"{what} contains the number {show(text)}; only integers are allowed")

    try:
        return json.loads(value.decode("utf-8"), object_pairs_hook=pairs,
                          parse_float=no_float, parse_constant=no_float)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError too
        raise error(f"{what} is not UTF-8 JSON") from None


# --- writing -------------------------------------------------------------------------------


def signing_input(domain: bytes, content: Mapping[str, Any]) -> bytes:
    """``domain || JCS(content)``: the bytes the Ed25519 signature covers (``content`` is
    the object without ``"sig"``)."""
    return domain + canonical_json(content)


def signed_document(content: Mapping[str, Any], signature: bytes) -> dict[str, Any]:
    """``content`` with its ``"sig"`` member added."""
    return {**content, "sig": b64url(signature)}


def encode_signed(content: Mapping[str, Any], signature: bytes) -> bytes:
    """The encoded document: JCS of ``content`` with ``"sig"`` added."""
    return canonical_json(signed_document(content, signature))


class SignedContent(ABC):
    """Base of the frozen dataclass that holds one kind's signed content. The kind sets
    its signature domain, its name in messages and its error type::

        _domain, _what, _error = DECLINE_DOMAIN, "decline", InvalidDecline

    and implements :meth:`content` and :attr:`signer_did`."""

    _domain: ClassVar[bytes]
    _what: ClassVar[str]
    _error: ClassVar[type[MpcidError]]

    @abstractmethod
    def content(self) -> dict[str, Any]:
        """The JSON object without ``"sig"``."""

    @property
    @abstractmethod
    def signer_did(self) -> str:
        """The DID whose key signs this content."""

    def signing_input(self) -> bytes:
        """``DOMAIN || JCS(content())``: the bytes the Ed25519 signature covers."""
        return signing_input(self._domain, self.content())

    def sign(self, key: Ed25519Key) -> bytes:
        """The encoded document, signed with ``key``, which must be :attr:`signer_did`'s.
        Checks no limits; the kind's ``create`` does, by reading the result back."""
        if key.did.did != self.signer_did:
            raise self._error(f"{_article(self._what)} {self._what} of "
                              f"{show(self.signer_did)} cannot be signed by {key.did.did}")
        return encode_signed(self.content(), key.sign(self.signing_input()))

    def verify_signature(self, signature: bytes) -> None:
        """Raise the opaque :class:`~mpcid.identity.errors.InvalidProof` unless
        ``signature`` is :attr:`signer_did`'s over :meth:`signing_input`."""
        DIDKey.parse(self.signer_did).verify(self.signing_input(), signature)

    def check_signed(self, value: bytes, signature: bytes) -> None:
        """The last steps of a reader that rebuilt this content from ``value``: ``value``
        is exactly this content with ``signature`` in canonical form (so a ``"sig"`` with
        non-zero unused bits fails here too), then the signature verifies."""
        check_canonical(signed_document(self.content(), signature), value, what=self._what,
                        error=self._error)
        self.verify_signature(signature)


# --- reading -------------------------------------------------------------------------------


def open_document(value: bytes, *, what: str, max_bytes: int, version: int,
                  error: type[MpcidError], hint: str | None = None,
                  limits: Callable[[dict[str, Any]], object] | None = None
                  ) -> dict[str, Any]:
    """The JSON object in ``value``, whose ``"v"`` is ``version``; nothing else is read.

    Checks, in this order: ``value`` is bytes of at most ``max_bytes``, strict JSON
    (:func:`strict_json`), a top-level object, passes ``limits`` (if given; general
    limits come before the version in ``specs/session.md`` 4 and 9.4), and has the integer
    ``"v"`` equal to ``version``. Failures raise ``error``; ``hint`` goes with an unknown
    version (e.g. ``"update mpcid"``), other failures keep the error's own hint.
    """
    article = _article(what)
    if not isinstance(value, bytes):
        raise error(f"{article} {what} is bytes, not {type(value).__name__}")
    if len(value) > max_bytes:
        raise error(f"{what} of {len(value)} bytes exceeds {max_bytes}")
    obj = strict_json(value, what, error)
    if not isinstance(obj, dict):
        raise error(f"{article} {what} is a JSON object")
    if limits is not None:
        limits(obj)
    found = obj.get("v")
    if type(found) is not int:
        raise error(f"{what} has no integer version \"v\"")
    if found != version:
        raise error(f"{what} version {found} is not supported (this is version {version})",
                    hint=hint)
    return obj


def check_limits(obj: Any, *, what: str, error: type[MpcidError], max_depth: int,
                 max_string: int) -> None:
    """General limits of a closed document: nesting at most ``max_depth`` (no later step
    can run out of stack), strings (member names included) of at most ``max_string``
    characters and valid Unicode (JCS cannot encode a lone surrogate), integers exact in
    JCS (``|n| <= 2**53 - 1``)."""
    def walk(value: Any, depth: int) -> None:
        if depth > max_depth:
            raise error(f"{what} nests deeper than {max_depth} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key, depth + 1)
                walk(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                walk(item, depth + 1)
        elif isinstance(value, str):
            if len(value) > max_string:
                raise error(f"{what} has a string longer than {max_string} characters")
            try:
                value.encode("utf-8")
            except UnicodeError:  # an unpaired surrogate, "\ud800"
                raise error(f"{what} has a string that is not valid Unicode") from None
        elif type(value) is int and abs(value) > MAX_INT:
            raise error(f"{what} has an integer beyond 2^53-1")

    walk(obj, 0)


def check_members(obj: Mapping[str, Any], names: tuple[str, ...], *, what: str,
                  error: type[MpcidError]) -> None:
    """A closed object: every one of ``names`` present, and nothing else."""
    missing = [name for name in names if name not in obj]
    if missing:
        raise error(f"{what} lacks {', '.join(missing)}")
    unknown = sorted(set(obj) - set(names))
    if unknown:
        raise error(f"{what} has unknown members {show(', '.join(unknown))}")


def read_integer(obj: Mapping[str, Any], name: str, *, what: str,
                 error: type[MpcidError]) -> int:
    """Member ``name``, an integer 0..2^53-1 (not a boolean)."""
    value = obj[name]
    if type(value) is not int:  # bool is an int subclass, and not a number here
        raise error(f"{what} \"{name}\" is not an integer")
    if not 0 <= value <= MAX_INT:
        raise error(f"{what} \"{name}\" is out of range 0..2^53-1")
    return value


def read_did(did: str, *, subject: str, error: Callable[[str], Exception],
             detail: bool = True) -> str:
    """``did`` if it is a bare did:key (no fragment or query); otherwise raise ``error``
    naming ``subject``, with the parser's reason when ``detail``."""
    try:
        parsed = DIDKey.parse(did)  # also refuses a value that is not a string
    except InvalidDID as exc:
        raise error(f"{subject}: {exc}" if detail else f"{subject} is not a did:key"
                    ) from None
    if parsed.did != did:
        raise error(f"{subject} is a DID URL, not a bare DID")
    return did


def read_signature(obj: Mapping[str, Any], *, what: str, error: type[MpcidError],
                   exact: bool = True) -> bytes:
    """The 64-byte signature in member ``"sig"`` (86 base64url characters).

    With ``exact`` the unused low bits must be zero too. A reader whose canonical-form
    check re-encodes the decoded signature (:func:`check_canonical` on
    :func:`signed_document`) passes ``exact=False``: a non-canonical ``"sig"`` then fails
    there, where its spec reports it.
    """
    sig = obj["sig"]
    if not isinstance(sig, str) or not _SIG.fullmatch(sig):
        raise error(f"{what} \"sig\" is not a 64-byte base64url signature")
    signature = base64.urlsafe_b64decode(sig + "==")
    if exact and b64url(signature) != sig:
        raise error(f"{what} \"sig\" is not canonical base64url")
    return signature


def check_canonical(obj: Mapping[str, Any], value: bytes, *, what: str,
                    error: type[MpcidError]) -> None:
    """Raise unless ``value`` is exactly the JCS encoding of ``obj`` (the parsed object,
    or one rebuilt from what was read of it)."""
    try:
        canonical = canonical_json(obj)
    except (ValueError, UnicodeError):  # e.g. an unpaired surrogate: "\ud800"
        raise error(f"{what} contains a string that is not valid Unicode") from None
    if canonical != value:
        raise error(f"{what} is not in canonical JSON form (RFC 8785)")


def show(value: object) -> str:
    """``value`` for an error message: one line of at most 80 characters."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")  # one line, whatever it holds
    return text if len(text) <= 80 else text[:77] + "..."


def _article(what: str) -> str:
    return "an" if what[:1] in "aeiou" else "a"
