"""DID-signed endpoint records (``mpcid.p2p.records``, ``specs/discovery.md`` section 2).

``ALICE`` publishes; ``BOB`` is another party, or an attacker with a DID of his own.
:func:`signed` signs any JSON object the way a publisher would (domain prefix, JCS), so
that a test of one rule fails on that rule and not on the signature.
"""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidDID, InvalidProof, MpcidError
from mpcid.p2p.errors import (InvalidRecord, ProtocolError, RecordError, RecordExpired,
                              RecordNotYetValid)
from mpcid.p2p.records import (DOMAIN, MAX_RECORD_BYTES, EndpointRecord, MpcidValidator,
                               decode_and_verify, did_from_key, dht_key, parse_endpoint, select)
from mpcid.p2p.signed import canonical_json

ALICE = Ed25519Key.from_seed(bytes(range(32)))
BOB = Ed25519Key.from_seed(bytes(range(1, 33)))
KEY = dht_key(ALICE.did.did)
NOW = 1_700_000_000.0
TCP = ("192.0.2.1:7000", "[2001:db8::1]:7001", "party.example.org:7002")
ADDRS = ("/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWxxx/p2p-circuit/p2p/12D3KooWyyy",)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(key: Ed25519Key = ALICE, seq: int = 1, now: float = NOW, ttl: int = 3600, *,
         tcp: Sequence[str] = TCP, addrs: Sequence[str] = ADDRS,
         extra: dict[str, Any] | None = None) -> bytes:
    return EndpointRecord.create(key, seq, now, ttl, tcp, addrs, extra)[1]


def make_with(name: str, items: list[str]) -> bytes:
    """A record whose "tcp" or "addrs" (``name``) are ``items``."""
    return make(tcp=items) if name == "tcp" else make(addrs=items)


def content(value: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(value)
    del obj["sig"]
    return obj


def signed(obj: dict[str, Any], key: Ed25519Key = ALICE) -> bytes:
    """Sign ``obj`` (without "sig") as spec 2.3 says, whatever it contains."""
    sig = key.sign(DOMAIN + canonical_json(obj))
    return canonical_json({**obj, "sig": base64.urlsafe_b64encode(sig).decode().rstrip("=")})


def with_sig_of(value: bytes, obj: dict[str, Any]) -> bytes:
    """``obj`` carrying the signature of ``value``: what a tampering relay would store."""
    return canonical_json({**obj, "sig": json.loads(value)["sig"]})


def expect(error: type[Exception], value: bytes, match: str | None = None, key: str = KEY,
           now: float = NOW) -> None:
    with pytest.raises(error, match=match) as info:
        decode_and_verify(key, value, now)
    assert "\n" not in str(info.value)


# --- round trip and wire format ----------------------------------------------------------------


def test_round_trip() -> None:
    record, value = EndpointRecord.create(ALICE, 7, NOW + 0.9, 3600, TCP, ADDRS)
    assert record == EndpointRecord(did=ALICE.did.did, seq=7, issued=int(NOW),
                                    expires=int(NOW) + 3600, tcp=TCP, addrs=ADDRS)
    assert decode_and_verify(KEY, value, NOW) == record
    assert record.endpoints() == [("192.0.2.1", 7000), ("2001:db8::1", 7001),
                                  ("party.example.org", 7002)]
    assert record.sign(ALICE) == value  # Ed25519 is deterministic: one record, one value
    assert hash(record) == hash(decode_and_verify(KEY, value, NOW))
    assert record.refresh_at == int(NOW) + 1800
    assert EndpointRecord.create(ALICE, 8, NOW)[0].expires == int(NOW) + 3600  # the default


def test_wire_format_is_the_spec() -> None:
    """Spec 2.2/2.3 rebuilt with the standard library and PyNaCl only."""
    value = make(seq=3, tcp=["192.0.2.1:7000"], addrs=[])
    obj = json.loads(value)
    assert list(obj) == sorted(obj) and set(obj) == {"v", "did", "seq", "issued", "expires",
                                                     "tcp", "addrs", "sig"}
    assert obj["v"] == 1 and obj["did"] == ALICE.did.did and len(obj["sig"]) == 86
    assert value == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    body = {k: v for k, v in obj.items() if k != "sig"}
    message = b"mpcid-endpoint-record/1\n" + json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    signature = base64.urlsafe_b64decode(obj["sig"] + "==")
    nacl.signing.VerifyKey(ALICE.public_key).verify(message, signature)


def test_canonical_json_sorts_by_utf16_code_units() -> None:
    """RFC 8785 section 3.2.3: U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FB33
    (plain code point order puts it after)."""
    members = {"\u20ac": "Euro Sign", "\r": "Carriage Return",
               "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
               "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
               "\u00f6": "Latin Small Letter O With Diaeresis"}
    assert canonical_json(members).decode() == (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}')


def test_unknown_fields_are_kept_and_signed() -> None:
    extra = {"x-relay-hint": {"b": [1, None, True], "a": "\U0001f600"}, "zzz": -5}
    record, value = EndpointRecord.create(ALICE, 1, NOW, 60, TCP, (), extra)
    assert dict(decode_and_verify(KEY, value, NOW).extra) == extra == dict(record.extra)
    obj = content(value)
    obj["zzz"] = -6
    expect(InvalidProof, with_sig_of(value, obj))
    obj = content(value)
    del obj["x-relay-hint"]
    expect(InvalidProof, with_sig_of(value, obj))


@pytest.mark.parametrize(("extra", "match"), [
    ({"seq": 5}, "may not be named seq"),
    ({"f": 1.5}, "only integers"),
    ({"big": 2**53}, "beyond 2\\^53-1"),
    ({"deep": json.loads("[" * 17 + "]" * 17)}, "deeper than 16"),
])
def test_bad_unknown_fields(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRecord, match=match):
        make(extra=extra)


# --- tampering and forgery -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "new"), [
    ("seq", 2), ("issued", int(NOW) - 1), ("expires", int(NOW) + 3599),
    ("tcp", ["192.0.2.66:7000"]), ("tcp", list(TCP[:2])), ("tcp", list(reversed(TCP))),
    ("addrs", []), ("addrs", ["/ip4/198.51.100.1/tcp/4001"]), ("note", "added"),
])
def test_every_field_is_signed(name: str, new: Any) -> None:
    value = make()
    obj = content(value)
    assert obj.get(name) != new
    obj[name] = new
    expect(InvalidProof, with_sig_of(value, obj))


def test_altered_signature() -> None:
    value = make()
    obj = json.loads(value)
    sig = bytearray(base64.urlsafe_b64decode(obj["sig"] + "=="))
    sig[10] ^= 1
    obj["sig"] = base64.urlsafe_b64encode(bytes(sig)).decode().rstrip("=")
    expect(InvalidProof, canonical_json(obj))


def test_did_swapped_for_the_victims() -> None:
    """Bob's record with its "did" changed to Alice's, under Alice's key."""
    value = make(BOB)
    obj = content(value)
    obj["did"] = ALICE.did.did
    expect(InvalidProof, with_sig_of(value, obj))


def test_record_signed_by_another_did_claiming_this_one() -> None:
    expect(InvalidProof, signed(content(make()), key=BOB))


def test_record_of_another_did_under_this_key() -> None:
    expect(InvalidRecord, make(BOB), match="stored under the key of " + ALICE.did.did)


def test_sign_refuses_a_foreign_key() -> None:
    record = decode_and_verify(KEY, make(), NOW)
    with pytest.raises(InvalidRecord, match="cannot be signed by"):
        record.sign(BOB)


# --- keys ----------------------------------------------------------------------------------------


def test_keys() -> None:
    assert KEY == "/mpcid/" + ALICE.did.did and did_from_key(KEY) == ALICE.did.did
    with pytest.raises(InvalidDID, match="fragment"):
        dht_key(ALICE.did.verification_method)
    with pytest.raises(InvalidDID):
        dht_key("did:web:example.com")


@pytest.mark.parametrize(("key", "match"), [
    ("/ipns/" + ALICE.did.did, "not in the /mpcid/ namespace"),
    ("mpcid/" + ALICE.did.did, "not in the /mpcid/ namespace"),
    ("/mpcid/did:web:example.com", "does not name a did:key"),
    ("/mpcid/" + ALICE.did.verification_method, "names a DID URL"),
    ("/mpcid/", "does not name a did:key"),
])
def test_bad_keys(key: str, match: str) -> None:
    with pytest.raises(InvalidRecord, match=match):
        did_from_key(key)
    expect(InvalidRecord, make(), match=match, key=key)


# --- time ----------------------------------------------------------------------------------------


def test_expiry() -> None:
    value = make(ttl=60)
    decode_and_verify(KEY, value, NOW + 59.9)
    expect(RecordExpired, value, "expired 0 s ago", now=NOW + 60)
    expect(RecordExpired, value, "expired 940 s ago", now=NOW + 1000)


def test_issued_in_the_future() -> None:
    decode_and_verify(KEY, make(now=NOW + 300), NOW)
    expect(RecordNotYetValid, make(now=NOW + 301), "issued 301 s in the future")


@pytest.mark.parametrize(("ttl", "error", "match"), [
    (86401, InvalidRecord, "lifetime 86401 s exceeds 86400"),
    (0, InvalidRecord, "\"expires\" is not after \"issued\""),
    (-5, InvalidRecord, "\"expires\" is not after \"issued\""),
])
def test_bad_ttl(ttl: int, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make(ttl=ttl)


def test_longest_ttl() -> None:
    assert decode_and_verify(KEY, make(ttl=86400), NOW + 86399).expires == int(NOW) + 86400


# --- limits, shape, types -----------------------------------------------------------------------


def test_size_limit() -> None:
    assert len(make(extra={"pad": "x" * 3500})) <= MAX_RECORD_BYTES
    obj = content(make())
    obj["pad"] = "x" * MAX_RECORD_BYTES
    expect(InvalidRecord, signed(obj), "exceeds 4096")


@pytest.mark.parametrize("name", ["tcp", "addrs"])
def test_endpoint_count_limit(name: str) -> None:
    items = [f"/ip4/192.0.2.1/tcp/{1000 + i}" if name == "addrs" else f"192.0.2.1:{1000 + i}"
             for i in range(17)]
    record = decode_and_verify(KEY, make_with(name, items[:16]), NOW)
    assert list(getattr(record, name)) == items[:16]
    obj = content(make())
    obj[name] = items
    expect(InvalidRecord, signed(obj), f"17 \"{name}\" entries, at most 16")


@pytest.mark.parametrize(("name", "longest"), [
    ("tcp", ".".join(["a" * 62] * 4) + ":7000"),
    ("addrs", "/dns/" + "b" * 251),
])
def test_endpoint_length_limit(name: str, longest: str) -> None:
    assert len(longest) == 256
    make_with(name, [longest])
    obj = content(make())
    obj[name] = [longest + "0"]
    expect(InvalidRecord, signed(obj), f"a record \"{name}\" entry exceeds 256 characters")


@pytest.mark.parametrize(("value", "match"), [
    (b"{", "not UTF-8 JSON"),
    (b"\xff{}", "not UTF-8 JSON"),
    (b"", "not UTF-8 JSON"),
    (b"[" * 3000 + b"]" * 3000, "exceeds 4096"),
    (b"[" * 2000 + b"]" * 2000, "not UTF-8 JSON|a JSON object"),
    (b"[]", "a record is a JSON object"),
    (b"null", "a record is a JSON object"),
    (b'"v"', "a record is a JSON object"),
    (b'{"v":1,"v":1}', "duplicate JSON member"),
    (b'{"v":NaN}', "the number NaN"),
    (b'{"v":1.0}', "the number 1.0"),
    (b'{"v":1e0}', "the number 1e0"),
    (b"{}", "no integer version"),
    (b'{"v":"1"}', "no integer version"),
    (b'{"v":true}', "no integer version"),
    (b'{"v":2}', "version 2 is not supported"),
    (b'{"v":0}', "version 0 is not supported"),
    (b'{"v":1}', "lacks did, seq, issued, expires, tcp, addrs, sig"),
])
def test_malformed_json(value: bytes, match: str) -> None:
    expect(InvalidRecord, value, match)


def test_version_2_is_refused_even_if_signed() -> None:
    obj = content(make())
    obj["v"] = 2
    expect(InvalidRecord, signed(obj), "version 2 is not supported")


@pytest.mark.parametrize(("name", "bad", "match"), [
    ("seq", "1", "\"seq\" is not an integer"),
    ("seq", True, "\"seq\" is not an integer"),
    ("seq", None, "\"seq\" is not an integer"),
    ("seq", -1, "\"seq\" is out of range"),
    ("seq", 2**53, "\"seq\" is out of range"),
    ("issued", False, "\"issued\" is not an integer"),
    ("expires", [1], "\"expires\" is not an integer"),
    ("did", 5, "\"did\" is not a string"),
    ("tcp", "192.0.2.1:1", "\"tcp\" is not a list of strings"),
    ("tcp", [7000], "\"tcp\" is not a list of strings"),
    ("addrs", {"a": "/ip4/1.2.3.4"}, "\"addrs\" is not a list of strings"),
    ("tcp", ["192.0.2.1"], "has no host:port"),
    ("tcp", ["2001:db8::1:7000"], "in brackets"),
    ("addrs", ["ip4/192.0.2.1"], "is not a multiaddr"),
    ("addrs", ["/ip4/192.0.2.1 /tcp/1"], "is not a multiaddr"),
])
def test_wrong_types(name: str, bad: Any, match: str) -> None:
    obj = content(make())
    obj[name] = bad
    expect(InvalidRecord, signed(obj), match)


def test_seq_at_the_top_of_its_range() -> None:
    assert decode_and_verify(KEY, make(seq=2**53 - 1), NOW).seq == 2**53 - 1


@pytest.mark.parametrize(("sig", "match"), [
    (None, "lacks sig"),
    (5, "not a 64-byte base64url"),
    ("A" * 85, "not a 64-byte base64url"),
    ("A" * 88, "not a 64-byte base64url"),
    ("A" * 84 + "==", "not a 64-byte base64url"),
    ("+" * 86, "not a 64-byte base64url"),
    ("A" * 85 + "B", "not canonical base64url"),  # the unused low bits must be zero
])
def test_bad_signature_encoding(sig: Any, match: str) -> None:
    obj: dict[str, Any] = content(make())
    if sig is not None:
        obj["sig"] = sig
    expect(InvalidRecord, canonical_json(obj), match)


def test_non_canonical_encodings_are_refused() -> None:
    value = make()
    obj = json.loads(value)
    for variant in (json.dumps(obj).encode(),  # spaces
                    json.dumps(obj, separators=(",", ":")).encode()[:-1] + b" }",
                    json.dumps(dict(reversed(obj.items())), separators=(",", ":")).encode(),
                    value.replace(b"/ip4", b"\\/ip4", 1)):
        assert variant != value
        expect(InvalidRecord, variant, "not in canonical JSON form")


def test_unpaired_surrogate() -> None:
    obj = content(make())
    obj["sig"] = "A" * 86
    value = canonical_json(obj)[:-1] + b',"zz":"\\ud800"}'
    expect(InvalidRecord, value, "not valid Unicode")


# --- selection -----------------------------------------------------------------------------------


def test_select_highest_seq() -> None:
    values = [make(seq=3), make(seq=9), make(seq=4)]
    assert select(KEY, values, NOW) == 1


def test_replayed_lower_seq_loses_even_if_newer() -> None:
    current = make(seq=5, now=NOW - 100)
    replayed_but_later = make(seq=4, now=NOW)
    assert select(KEY, [current, replayed_but_later], NOW) == 0
    assert select(KEY, [replayed_but_later, current], NOW) == 1


def test_select_ignores_invalid_forged_and_expired() -> None:
    good = make(seq=1)
    forged = with_sig_of(good, {**content(good), "seq": 99})
    expired = make(seq=50, now=NOW - 7200, ttl=3600)
    foreign = make(BOB, seq=70)
    future = make(seq=60, now=NOW + 1000)
    values = [forged, b"garbage", expired, foreign, future, good]
    assert select(KEY, values, NOW) == 5


def test_select_tie_breaks() -> None:
    early, late = make(seq=2, now=NOW - 10), make(seq=2, now=NOW)
    assert select(KEY, [late, early], NOW) == 0 and select(KEY, [early, late], NOW) == 1
    a, b = make(seq=2, tcp=["192.0.2.1:1"]), make(seq=2, tcp=["192.0.2.2:1"])
    small, large = sorted([a, b])
    assert select(KEY, [small, large], NOW) == 1 and select(KEY, [large, small], NOW) == 0
    assert select(KEY, [large, large], NOW) == 0  # identical: the first (the DHT keeps it)


@pytest.mark.parametrize("values", [[], [b"{}"], [make(seq=1, now=NOW - 7200)], [make(BOB)]])
def test_select_raises_when_none_is_valid(values: list[bytes]) -> None:
    with pytest.raises(InvalidRecord, match=f"none of {len(values)} values"):
        select(KEY, values, NOW)


def test_validator_follows_its_clock() -> None:
    clock = [NOW]
    validator = MpcidValidator(lambda: clock[0])
    old, new = make(seq=1, ttl=60), make(seq=2, ttl=3600)
    validator.validate(KEY, old)
    assert validator.select(KEY, [new, old]) == 0 and validator.select(KEY, [old, new]) == 1
    clock[0] = NOW + 120
    with pytest.raises(RecordExpired):
        validator.validate(KEY, old)
    assert validator.select(KEY, [old, make(seq=0, now=NOW + 120)]) == 1
    with pytest.raises(InvalidRecord):
        validator.validate("/mpcid/nope", new)


def test_error_hierarchy() -> None:
    assert issubclass(RecordError, ProtocolError) and issubclass(ProtocolError, MpcidError)
    for error in (InvalidRecord, RecordExpired, RecordNotYetValid):
        assert issubclass(error, RecordError) and error("x").hint


# --- parse_endpoint ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.1:7000", ("192.0.2.1", 7000)),
    ("[2001:db8::1]:1", ("2001:db8::1", 1)),
    ("[2001:DB8:0:0::1]:65535", ("2001:db8::1", 65535)),
    ("localhost:8080", ("localhost", 8080)),
    ("party-1.example.org.:443", ("party-1.example.org.", 443)),
])
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(("text", "match"), [
    ("", "not a host:port"),
    ("x" * 250 + ".example:1", "not a host:port"),
    ("192.0.2.1", "no host:port"),
    (":7000", "no host:port"),
    ("192.0.2.1:0", "port must be 1-65535"),
    ("192.0.2.1:65536", "port must be 1-65535"),
    ("192.0.2.1:080", "port must be 1-65535"),
    ("192.0.2.1:+80", "port must be 1-65535"),
    ("192.0.2.1:", "port must be 1-65535"),
    ("192.0.2.1:８０", "port must be 1-65535"),
    ("2001:db8::1:7000", "in brackets"),
    ("[2001:db8::1:7000", "bad IPv6"),
    ("[fe80::1%eth0]:7000", "bad IPv6"),
    ("[192.0.2.1]:7000", "bad IPv6"),
    ("256.0.0.1:7000", "bad IPv4"),
    ("192.0.2:7000", "bad IPv4"),
    ("01.2.3.4:7000", "bad IPv4"),
    ("-bad.example:1", "bad host name"),
    ("bad..example:1", "bad host name"),
    ("under_score.example:1", "bad host name"),
    ("a" * 64 + ".example:1", "bad host name"),
    ("exämple.org:1", "bad host name"),
])
def test_parse_endpoint_rejects(text: str, match: str) -> None:
    with pytest.raises(InvalidRecord, match=match):
        parse_endpoint(text)


# --- properties ----------------------------------------------------------------------------------

VALID = make(extra={"x": [1, "two", {"three": None}]})


def only_mpcid_errors(value: bytes) -> None:
    try:
        record = decode_and_verify(KEY, value, NOW)
    except MpcidError as exc:
        assert isinstance(exc, (RecordError, InvalidProof)) and "\n" not in str(exc)
        return
    assert value == VALID and record.did == ALICE.did.did  # nothing else can be valid


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes(value: bytes) -> None:
    only_mpcid_errors(value)


def flip(at: int, mask: int) -> Callable[[bytes], bytes]:
    def change(v: bytes) -> bytes:
        i = at % len(v) if v else 0
        return v[:i] + bytes([v[i] ^ mask]) + v[i + 1:] if v else v
    return change


def insert(at: int, data: bytes) -> Callable[[bytes], bytes]:
    return lambda v: v[:at] + data + v[at:]


def delete(at: int, count: int) -> Callable[[bytes], bytes]:
    return lambda v: v[:at] + v[at + count:]


mutations = st.one_of(
    st.builds(flip, st.integers(0, len(VALID) - 1), st.integers(1, 255)),
    st.builds(insert, st.integers(0, len(VALID)), st.binary(min_size=1, max_size=8)),
    st.builds(delete, st.integers(0, len(VALID) - 1), st.integers(1, 40)))


@SETTINGS
@given(st.lists(mutations, min_size=1, max_size=3))
def test_mutated_valid_records(changes: list[Callable[[bytes], bytes]]) -> None:
    value = VALID
    for change in changes:
        value = change(value)
    only_mpcid_errors(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20)
    | st.floats(allow_nan=True),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@SETTINGS
@given(st.sampled_from(["v", "did", "seq", "issued", "expires", "tcp", "addrs", "sig", "new"]),
       json_values, st.booleans())
def test_fields_replaced_by_arbitrary_json(name: str, new: Any, resign: bool) -> None:
    obj = json.loads(VALID)
    obj[name] = new
    try:
        value = signed({k: v for k, v in obj.items() if k != "sig"}) if resign else (
            json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
    except (ValueError, TypeError):
        return  # not even encodable (NaN in allow_nan=False, surrogates)
    try:
        decode_and_verify(KEY, value, NOW)
    except MpcidError as exc:
        assert isinstance(exc, (RecordError, InvalidProof))


def test_module_is_sans_io() -> None:
    """No sockets, event loops or libp2p: the module is a pure function of bytes and time."""
    from mpcid.p2p import records
    tree = ast.parse(Path(records.__file__ or "").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert "ipaddress" in imported  # the walk sees the imports
    assert not imported & {"asyncio", "trio", "socket", "selectors", "ssl", "libp2p"}
