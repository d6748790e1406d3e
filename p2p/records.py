"""DID-signed endpoint records: where a party can be reached, published in the DHT.

Theory of operation
-------------------
A party publishes, under the DHT key ``/mpcid/<its did:key>``, a small JSON object that
lists its direct TCP endpoints (for the Noise channel, ``specs/channel.md``) and its libp2p
multiaddrs (possibly relay circuits), signed with its DID key. Anyone can store such a
record, so every reader and every DHT node checks it in full: the key names the DID, the
DID is the signing key, and the record is fresh. Among several valid records the highest
``seq`` wins, so a node that replays an old record loses to the current one.

The value is canonical JSON (RFC 8785, JCS) of the whole object, signature included; the
signature covers ``DOMAIN || JCS(object without "sig")``. One signed content therefore has
exactly one byte string, which keeps DHT deduplication and selection deterministic. Unknown
fields are kept, signed and returned in :attr:`EndpointRecord.extra`: a later version can
add fields that version 1 readers carry along. Wire format: ``specs/discovery.md`` 2;
the mechanics shared with the other signed documents: :mod:`mpcid.p2p.signed`.

Other record kinds share the namespace under keys ``/mpcid/<kind>/<rest>`` (a kind is a
lowercase word, so it never reads ``did:``). This module knows none of them: whoever runs a
DHT node registers a :class:`KindValidator` per kind, and :class:`MpcidValidator` sends each
key to the validator of its kind, refusing kinds nobody registered (``specs/discovery.md`` 2.7).

This module is sans-IO: no sockets, no event loop, no clock. Time comes in as ``now``
(Unix seconds); :class:`MpcidValidator` is the one place that reads a clock, given to it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import InvalidDID, InvalidProof

from .errors import InvalidRecord, RecordError, RecordExpired, RecordNotYetValid
from .signed import (MAX_INT, SignedContent, check_canonical, open_document, read_integer,
                     read_signature)

VERSION = 1
KEY_PREFIX = "/mpcid/"
#: Domain separation: these signatures can never be mistaken for any other mpcid signature.
DOMAIN = b"mpcid-endpoint-record/1\n"

MAX_RECORD_BYTES = 4096
#: Upper bound on a value of any kind, checked before its kind's validator runs.
MAX_KIND_VALUE_BYTES = 64 * 1024
MAX_TCP = 16
MAX_ADDRS = 16
MAX_STRING = 256
MAX_TTL = 86400
DEFAULT_TTL = 3600
#: A record may be issued this far in the future (clock skew between publisher and reader).
MAX_CLOCK_SKEW = 300
#: Deepest nesting of arrays and objects inside unknown fields.
MAX_DEPTH = 16

_FIELDS = ("v", "did", "seq", "issued", "expires", "tcp", "addrs", "sig")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MULTIADDR = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no spaces
#: A record kind: a lowercase word, hence never ``did:`` (the keys of endpoint records).
_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")


def dht_key(did: str) -> str:
    """The DHT key of a party's record: ``"/mpcid/" + did``. Raises :class:`InvalidDID`."""
    parsed = DIDKey.parse(did)
    if parsed.did != did:
        raise InvalidDID(f"{did} has a fragment or query; a DHT key names the bare DID")
    return KEY_PREFIX + did


def did_from_key(key: str) -> str:
    """The DID a DHT key names; raise :class:`InvalidRecord` for any other key."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        raise InvalidRecord(f"DHT key {_show(key)} is not in the /mpcid/ namespace")
    did = key[len(KEY_PREFIX):]
    try:
        if DIDKey.parse(did).did == did:
            return did
    except InvalidDID as exc:
        raise InvalidRecord(f"DHT key {_show(key)} does not name a did:key: {exc}") from None
    raise InvalidRecord(f"DHT key {_show(key)} names a DID URL, not a bare DID")


class KindValidator(Protocol):
    """The rules of one record kind (keys ``/mpcid/<kind>/<rest>``). Both methods get
    the whole key and the current time, and must be pure functions of their arguments,
    so that every DHT node judges a value alike."""

    def validate(self, key: str, value: bytes, now: float) -> None:
        """Raise (an :class:`~mpcid.identity.errors.MpcidError`) unless ``value`` is a
        valid, current value for ``key``."""

    def select(self, key: str, values: Sequence[bytes], now: float) -> int:
        """Index of the best valid value; raise if none is valid."""


def kind_key(kind: str, rest: str) -> str:
    """The DHT key ``/mpcid/<kind>/<rest>``. Raises :class:`InvalidRecord` for a kind that
    is not a lowercase word or an empty ``rest``."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InvalidRecord(f"record kind {_show(kind)} is not a lowercase word")
    if not isinstance(rest, str) or not rest:
        raise InvalidRecord(f"a key of kind {kind} needs something after the kind")
    return f"{KEY_PREFIX}{kind}/{rest}"


def kind_of(key: str) -> tuple[str, str] | None:
    """``(kind, rest)`` of a key ``/mpcid/<kind>/<rest>``; None for the key of an endpoint
    record (``/mpcid/did:...``). Raises :class:`InvalidRecord` for any other key."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        raise InvalidRecord(f"DHT key {_show(key)} is not in the /mpcid/ namespace")
    tail = key[len(KEY_PREFIX):]
    if tail.startswith("did:"):
        return None
    kind, sep, rest = tail.partition("/")
    if not sep or not rest or not _KIND.fullmatch(kind):
        raise InvalidRecord(f"DHT key {_show(key)} is neither /mpcid/<did:key> nor "
                            "/mpcid/<kind>/<rest>")
    return kind, rest


def parse_endpoint(text: str) -> tuple[str, int]:
    """Split ``"host:port"`` into ``(host, port)``; IPv6 addresses come in brackets
    (``"[2001:db8::1]:7000"``) and are returned without them.

    Hosts are IPv4 addresses, bracketed IPv6 addresses (no zone) or DNS names; ports are
    1-65535 in plain decimal. Raises :class:`InvalidRecord` saying what is wrong.
    """
    if not isinstance(text, str) or not 0 < len(text) <= MAX_STRING:
        raise InvalidRecord(f"endpoint {_show(text)} is not a host:port string")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise InvalidRecord(f"endpoint {_show(text)} has no host:port")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise InvalidRecord(f"endpoint {_show(text)}: the port must be 1-65535")
    if host.startswith("["):
        try:
            if not host.endswith("]") or "%" in host:  # no zones: they mean nothing remotely
                raise ValueError
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            raise InvalidRecord(f"endpoint {_show(text)}: bad IPv6 address") from None
    if ":" in host:
        raise InvalidRecord(f"endpoint {_show(text)}: write an IPv6 address in brackets, "
                            "[addr]:port")
    if host.replace(".", "").isdigit():
        try:
            return str(ipaddress.IPv4Address(host)), int(port)
        except ValueError:
            raise InvalidRecord(f"endpoint {_show(text)}: bad IPv4 address") from None
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidRecord(f"endpoint {_show(text)}: bad host name")
    return host, int(port)


@dataclass(frozen=True)
class EndpointRecord(SignedContent):
    """The signed content of one endpoint record (``specs/discovery.md`` 2)."""

    did: str
    """The publishing party; the record is valid only under ``dht_key(did)``."""
    seq: int
    """Sequence number, 0 <= seq < 2**53; every republication increases it."""
    issued: int
    """Unix seconds when the record was made."""
    expires: int
    """Unix seconds after which the record is void (at most a day after ``issued``)."""
    tcp: tuple[str, ...] = ()
    """Direct endpoints of the Noise channel, ``"host:port"`` / ``"[v6]:port"``."""
    addrs: tuple[str, ...] = ()
    """libp2p multiaddrs, relay circuits included (``/.../p2p-circuit/p2p/...``)."""
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}),
                                     hash=False)
    """Fields this version does not know, kept and signed for forward compatibility."""

    _domain, _what, _error = DOMAIN, "record", InvalidRecord

    @classmethod
    def create(cls, key: Ed25519Key, seq: int, now: float, ttl: int = DEFAULT_TTL,
               tcp: Iterable[str] = (), addrs: Iterable[str] = (),
               extra: Mapping[str, Any] | None = None) -> tuple[EndpointRecord, bytes]:
        """Make and sign this party's record, valid from ``now`` for ``ttl`` seconds.

        Returns the record and the bytes to publish under ``dht_key(key.did.did)``. The
        bytes are checked exactly as a reader would check them, so this raises
        :class:`InvalidRecord` (a limit broken, ``ttl`` not in 1..86400) rather than
        publish anything a reader would refuse.
        """
        issued = int(now)
        record = cls(did=key.did.did, seq=seq, issued=issued, expires=issued + ttl,
                     tcp=tuple(tcp), addrs=tuple(addrs),
                     extra=MappingProxyType(dict(extra or {})))
        value = record.sign(key)
        return decode_and_verify(dht_key(record.did), value, now), value

    def content(self) -> dict[str, Any]:
        """The JSON object without ``"sig"``."""
        known = {"v": VERSION, "did": self.did, "seq": self.seq, "issued": self.issued,
                 "expires": self.expires, "tcp": list(self.tcp), "addrs": list(self.addrs)}
        clash = set(self.extra) & set(_FIELDS)
        if clash:
            raise InvalidRecord(f"extra fields may not be named {', '.join(sorted(clash))}")
        return {**self.extra, **known}

    @property
    def signer_did(self) -> str:
        return self.did

    @property
    def refresh_at(self) -> int:
        """When to publish the next record: half-way through this one's lifetime."""
        return self.issued + (self.expires - self.issued) // 2

    def endpoints(self) -> list[tuple[str, int]]:
        """:attr:`tcp` parsed by :func:`parse_endpoint`."""
        return [parse_endpoint(text) for text in self.tcp]


def decode_and_verify(key: str, value: bytes, now: float) -> EndpointRecord:
    """Check a DHT value found under ``key`` at time ``now``, and return its content.

    Raises :class:`InvalidRecord` (malformed, a limit broken, wrong key), the opaque
    :class:`~mpcid.identity.errors.InvalidProof` (the signature is not the DID's over
    this content: forged or altered), :class:`RecordNotYetValid` or :class:`RecordExpired`.
    Checks run in that order, so a time error is only ever reported for an authentic record.
    """
    did = did_from_key(key)
    obj = open_document(value, what="record", max_bytes=MAX_RECORD_BYTES, version=VERSION,
                        error=InvalidRecord)
    record, signature = _check_fields(obj)
    check_canonical(obj, value, what="record", error=InvalidRecord)
    if record.did != did:
        raise InvalidRecord(f"record of {_show(record.did)} is stored under the key of {did}")
    record.verify_signature(signature)  # raises InvalidProof
    if record.issued > now + MAX_CLOCK_SKEW:
        raise RecordNotYetValid(f"record of {did} was issued {record.issued - now:.0f} s "
                                "in the future")
    if record.expires <= now:
        raise RecordExpired(f"record of {did} expired {now - record.expires:.0f} s ago")
    return record


def select(key: str, values: Sequence[bytes], now: float) -> int:
    """Index of the best valid record among ``values`` (all found under ``key``).

    Best: highest ``seq``, then latest ``issued``, then the larger encoded bytes
    (lexicographically); among identical byte strings the first. Invalid, forged and
    expired values never win. Raises :class:`InvalidRecord` if none is valid.
    """
    def rank(value: bytes) -> tuple[int, int, bytes]:
        record = decode_and_verify(key, value, now)
        return record.seq, record.issued, value

    return best_index(values, rank, errors=(RecordError, InvalidProof),
                      none=f"none of {len(values)} values under {_show(key)} is a valid "
                           "record")


def best_index(values: Sequence[bytes], rank: Callable[[bytes], tuple[Any, ...]], *,
               errors: tuple[type[Exception], ...], none: str) -> int:
    """Index of the value of highest ``rank(value)``, the first among equals; a value whose
    rank raises one of ``errors`` never wins. If none ranks, raise :class:`InvalidRecord`
    saying ``none``, from the last of those errors. (The selection rule of every kind.)"""
    best: tuple[Any, ...] | None = None
    index = -1
    last: Exception | None = None
    for i, value in enumerate(values):
        try:
            ranked = rank(value)
        except errors as exc:
            last = exc
            continue
        if best is None or ranked > best:
            best, index = ranked, i
    if best is None:
        raise InvalidRecord(none) from last
    return index


class MpcidValidator:
    """The DHT validator of the ``/mpcid/`` namespace, duck-typed to py-libp2p's
    ``libp2p.records.validator.Validator`` (``validate`` and ``select``), without
    importing libp2p. ``clock`` gives the current Unix time (``time.time`` in use).

    Endpoint records (``/mpcid/<did:key>``) follow this module's rules; a key
    ``/mpcid/<kind>/<rest>`` goes to ``kinds[kind]``, and is refused when that kind has
    no validator here (as py-libp2p refuses namespaces without one)."""

    def __init__(self, clock: Callable[[], float],
                 kinds: Mapping[str, KindValidator] | None = None) -> None:
        self._clock = clock
        self.kinds: Mapping[str, KindValidator] = MappingProxyType(dict(kinds or {}))
        for kind in self.kinds:
            kind_key(kind, "x")  # raises for a kind that could never appear in a key

    def validate(self, key: str, value: bytes) -> None:
        """Raise unless ``value`` is a valid, current record for ``key``."""
        kind = self._kind(key)
        if kind is None:
            decode_and_verify(key, value, self._clock())
            return
        _check_size(value)
        kind.validate(key, value, self._clock())

    def select(self, key: str, values: list[bytes]) -> int:
        """Index of the best valid value (see :func:`select`)."""
        kind = self._kind(key)
        if kind is None:
            return select(key, values, self._clock())
        # Oversized values never reach the kind's own rules, and never win.
        fit = [i for i, value in enumerate(values)
               if isinstance(value, bytes) and len(value) <= MAX_KIND_VALUE_BYTES]
        if not fit:
            raise InvalidRecord(f"none of {len(values)} values under {_show(key)} is valid")
        return fit[kind.select(key, [values[i] for i in fit], self._clock())]

    def check_key(self, key: str) -> None:
        """Raise :class:`InvalidRecord` unless ``key`` is an endpoint key or a key of a
        registered kind (its ``rest`` is for the kind's validator to judge)."""
        if kind_of(key) is None:
            did_from_key(key)
        else:
            self._kind(key)

    def _kind(self, key: str) -> KindValidator | None:
        parsed = kind_of(key)
        if parsed is None:
            return None
        validator = self.kinds.get(parsed[0])
        if validator is None:
            raise InvalidRecord(f"record kind {_show(parsed[0])} is unknown here",
                                hint="the DHT node does not store this kind of record")
        return validator


def _check_size(value: bytes) -> None:
    if not isinstance(value, bytes):
        raise InvalidRecord(f"a record is bytes, not {type(value).__name__}")
    if len(value) > MAX_KIND_VALUE_BYTES:
        raise InvalidRecord(f"record of {len(value)} bytes exceeds {MAX_KIND_VALUE_BYTES}")


# --- parsing -------------------------------------------------------------------------------


def _check_fields(obj: dict[str, Any]) -> tuple[EndpointRecord, bytes]:
    missing = [name for name in _FIELDS if name not in obj]
    if missing:
        raise InvalidRecord(f"record lacks {', '.join(missing)}")
    if not isinstance(obj["did"], str):
        raise InvalidRecord("record \"did\" is not a string")
    seq, issued, expires = (_integer(obj, name) for name in ("seq", "issued", "expires"))
    if expires <= issued:
        raise InvalidRecord("record \"expires\" is not after \"issued\"")
    if expires - issued > MAX_TTL:
        raise InvalidRecord(f"record lifetime {expires - issued} s exceeds {MAX_TTL} s")
    tcp = _strings(obj, "tcp", MAX_TCP)
    for endpoint in tcp:
        parse_endpoint(endpoint)
    addrs = _strings(obj, "addrs", MAX_ADDRS)
    for addr in addrs:
        if not _MULTIADDR.fullmatch(addr):
            raise InvalidRecord(f"record address {_show(addr)} is not a multiaddr")
    signature = read_signature(obj, what="record", error=InvalidRecord)
    extra = {k: v for k, v in obj.items() if k not in _FIELDS}
    _check_extra(extra)
    return EndpointRecord(did=obj["did"], seq=seq, issued=issued, expires=expires, tcp=tcp,
                          addrs=addrs, extra=MappingProxyType(extra)), signature


def _integer(obj: dict[str, Any], name: str) -> int:
    return read_integer(obj, name, what="record", error=InvalidRecord)


def _strings(obj: dict[str, Any], name: str, limit: int) -> tuple[str, ...]:
    items = obj[name]
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidRecord(f"record \"{name}\" is not a list of strings")
    if len(items) > limit:
        raise InvalidRecord(f"record has {len(items)} \"{name}\" entries, at most {limit}")
    if any(len(s) > MAX_STRING for s in items):
        raise InvalidRecord(f"a record \"{name}\" entry exceeds {MAX_STRING} characters")
    return tuple(items)


def _check_extra(value: Any, depth: int = 0) -> None:
    """Integers in unknown fields must be exact in JCS too (|n| <= 2^53 - 1), and nesting
    is bounded so that no later step can run out of stack."""
    if depth > MAX_DEPTH:
        raise InvalidRecord(f"record nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for item in value.values():
            _check_extra(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_extra(item, depth + 1)
    elif type(value) is int and abs(value) > MAX_INT:
        raise InvalidRecord("record contains an integer beyond 2^53-1")


def _show(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
