"""Invitation and decline records (specs/session.md 8), sans-IO: keys, validation order,
selection, and Hypothesis on every parser of bytes that come from the DHT."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcid.broker.errors import (DeclineError, DeclineExpired, DeclineNotYetValid,
                                 InvalidDecline, InvitationExpired, NotAParty)
from mpcid.broker.invitation import Invitation
from mpcid.broker.session_records import (DECLINE_DOMAIN, MAX_DECLINE_BYTES, SESSION_KINDS,
                                          Decline, decline_key, decode_decline, invitation_key)
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidProof, MpcidError
from mpcid.p2p.errors import InvalidRecord
from mpcid.p2p.records import MpcidValidator
from mpcid.p2p.signed import canonical_json

NOW = 1_700_000_000
INVITER, BOB, CAROL, MALLORY = (Ed25519Key.from_seed(bytes([i]) * 32) for i in range(1, 5))
SHA = hashlib.sha256(b"program").digest()


def invite(now: float = NOW, ttl: int = 86400) -> tuple[Invitation, bytes]:
    return Invitation.create(INVITER, [BOB.did.did, CAROL.did.did], "p.py", SHA, ttl=ttl,
                             bootstrap=["/ip4/127.0.0.1/tcp/1"], now=now)


INVITATION, INVITATION_DATA = invite()


def declined(key: Ed25519Key = BOB, reason: str = "busy", now: float = NOW) -> bytes:
    return Decline.create(key, INVITATION, reason, now)[1]


BOB_KEY = decline_key(INVITATION.session_id, BOB.did.did)
VALID = declined()


def validator(now: float = NOW) -> MpcidValidator:
    return MpcidValidator(lambda: now, SESSION_KINDS)


def resign(obj: dict[str, Any], key: Ed25519Key = BOB) -> bytes:
    content = {k: v for k, v in obj.items() if k != "sig"}
    sig = key.sign(DECLINE_DOMAIN + canonical_json(content))
    return canonical_json({**content, "sig": base64.urlsafe_b64encode(sig).rstrip(b"=")
                           .decode()})


# --- invitations ---------------------------------------------------------------------------


def test_invitation_key_and_value() -> None:
    key = invitation_key(INVITATION.session_id)
    assert key == f"/mpcid/invitation/{INVITATION.session_id}"
    validator(NOW + 10).validate(key, INVITATION_DATA)
    other, other_data = invite()
    with pytest.raises(InvalidRecord, match="stored under the key"):
        validator().validate(key, other_data)
    with pytest.raises(InvitationExpired):
        validator(NOW + 86400).validate(key, INVITATION_DATA)
    with pytest.raises(MpcidError):
        validator().validate(key, INVITATION_DATA.replace(b"p.py", b"q.py"))
    for bad in ("/mpcid/invitation/XYZ", "/mpcid/invitation/" + "0" * 31,
                f"/mpcid/invitation/{INVITATION.session_id}/x"):
        with pytest.raises(InvalidRecord):
            validator().validate(bad, INVITATION_DATA)


def test_invitation_selection_latest_issued() -> None:
    later = Invitation(**{**INVITATION.__dict__, "issued": NOW + 5, "signature": b""})
    later_data = later.sign(INVITER)
    key = invitation_key(INVITATION.session_id)
    assert validator(NOW + 10).select(key, [INVITATION_DATA, later_data, b"junk"]) == 1
    assert validator(NOW + 10).select(key, [b"junk", INVITATION_DATA]) == 1
    with pytest.raises(InvalidRecord):
        validator().select(key, [b"junk"])


# --- declines ------------------------------------------------------------------------------


def test_decline_round_trip_and_format() -> None:
    decline = decode_decline(BOB_KEY, VALID, NOW)
    assert decline == Decline(INVITATION.session_id, BOB.did.did, "busy", NOW,
                              INVITATION.expires)
    assert decline.key == BOB_KEY == (f"/mpcid/decline/{INVITATION.session_id}/"
                                      f"{BOB.did.did}")
    obj = json.loads(VALID)
    assert sorted(obj) == ["did", "expires", "issued", "reason", "session", "sig", "v"]
    assert obj["v"] == 1 and len(obj["sig"]) == 86
    assert VALID == canonical_json(obj)
    validator().validate(BOB_KEY, VALID)


def test_decline_needs_an_invited_party_and_a_live_invitation() -> None:
    with pytest.raises(NotAParty):
        Decline.create(MALLORY, INVITATION, "", NOW)
    with pytest.raises(InvalidDecline, match="expired"):
        Decline.create(BOB, INVITATION, "", INVITATION.expires)
    with pytest.raises(InvalidDecline, match="reason"):
        Decline.create(BOB, INVITATION, "x" * 501, NOW)
    with pytest.raises(InvalidDecline, match="reason"):
        Decline.create(BOB, INVITATION, "two\nlines", NOW)
    assert decode_decline(BOB_KEY, declined(reason="é" * 500), NOW).reason == "é" * 500


def test_decline_lifetime_follows_the_invitation_within_limits() -> None:
    short, _ = invite(ttl=60)
    assert Decline.create(BOB, short, "", NOW + 30)[0].expires == NOW + 90  # >= 1 minute
    long_inv, _ = invite(ttl=30 * 86400)
    assert Decline.create(BOB, long_inv, "", NOW + 1000)[0].expires == long_inv.expires
    # Issued before the invitation (clock skew): still at most 30 days.
    assert Decline.create(BOB, long_inv, "", NOW - 200)[0].expires == NOW - 200 + 30 * 86400


def test_decline_time_checks_come_last() -> None:
    with pytest.raises(DeclineExpired):
        decode_decline(BOB_KEY, VALID, INVITATION.expires)
    with pytest.raises(DeclineNotYetValid):
        decode_decline(BOB_KEY, VALID, NOW - 301)
    decode_decline(BOB_KEY, VALID, NOW - 300)


def test_decline_under_another_key() -> None:
    carol_key = decline_key(INVITATION.session_id, CAROL.did.did)
    with pytest.raises(InvalidDecline, match="another session or party"):
        decode_decline(carol_key, VALID, NOW)
    other_session = decline_key("0" * 32, BOB.did.did)
    with pytest.raises(InvalidDecline, match="another session or party"):
        decode_decline(other_session, VALID, NOW)
    for bad in (f"/mpcid/decline/{INVITATION.session_id}", "/mpcid/decline/x/" + BOB.did.did,
                f"/mpcid/decline/{INVITATION.session_id}/did:key:zBad",
                f"/mpcid/decline/{INVITATION.session_id}/{BOB.did.did}#k",
                f"/mpcid/invitation/{INVITATION.session_id}"):
        with pytest.raises(InvalidRecord):
            decode_decline(bad, VALID, NOW)


def test_forged_and_altered_declines_fail_opaquely() -> None:
    obj = json.loads(VALID)
    with pytest.raises(InvalidProof):  # Mallory signs "Bob declines"
        decode_decline(BOB_KEY, resign(obj, MALLORY), NOW)
    for name, new in (("reason", "changed"), ("issued", NOW + 1), ("expires", NOW + 99)):
        altered = canonical_json({**obj, name: new})
        with pytest.raises(InvalidProof):
            decode_decline(BOB_KEY, altered, NOW)


@pytest.mark.parametrize("change, match", [
    (lambda o: {**o, "v": 2}, "version 2"),
    (lambda o: {**o, "v": True}, "integer version"),
    (lambda o: {k: v for k, v in o.items() if k != "reason"}, "lacks reason"),
    (lambda o: {**o, "extra": 1}, "unknown members"),
    (lambda o: {**o, "session": "ABC"}, "session id"),
    (lambda o: {**o, "did": "did:web:example.com"}, "did:key"),
    (lambda o: {**o, "reason": 5}, "reason"),
    (lambda o: {**o, "reason": "a" * 501}, "reason"),
    (lambda o: {**o, "reason": "a\tb"}, "reason"),
    (lambda o: {**o, "issued": -1}, "out of range"),
    (lambda o: {**o, "issued": 1.5}, "integer"),
    (lambda o: {**o, "expires": o["issued"]}, "lifetime"),
    (lambda o: {**o, "expires": o["issued"] + 30 * 86400 + 1}, "lifetime"),
    (lambda o: {**o, "sig": "A" * 85 + "B"}, "canonical base64url"),
    (lambda o: {**o, "sig": "short"}, "sig"),
])
def test_malformed_declines(change: Callable[[dict[str, Any]], dict[str, Any]],
                            match: str) -> None:
    value = json.dumps(change(json.loads(VALID)), separators=(",", ":")).encode()
    with pytest.raises(InvalidDecline, match=match):
        decode_decline(BOB_KEY, value, NOW)


@pytest.mark.parametrize("value, match", [
    (b"\xff", "UTF-8 JSON"), (b"[]", "JSON object"), (b'{"v":1,"v":1}', "duplicate"),
    (b" " + VALID, "canonical"), (VALID.replace(b":", b": ", 1), "canonical"),
    (b"{" + b" " * MAX_DECLINE_BYTES + b"}", "exceeds"), (b'{"v":NaN}', "integers"),
])
def test_malformed_bytes(value: bytes, match: str) -> None:
    with pytest.raises(InvalidDecline, match=match):
        decode_decline(BOB_KEY, value, NOW)


def test_decline_selection_latest_issued_then_bytes() -> None:
    first, second = declined(reason="a", now=NOW), declined(reason="b", now=NOW + 10)
    same_time = declined(reason="c", now=NOW)
    assert validator(NOW + 20).select(BOB_KEY, [first, second, b"junk"]) == 1
    assert validator(NOW + 20).select(BOB_KEY, [first, same_time]) == int(same_time > first)
    forged = resign({**json.loads(second), "issued": NOW + 15}, MALLORY)
    assert validator(NOW + 20).select(BOB_KEY, [forged, first]) == 1
    with pytest.raises(InvalidRecord):
        validator(NOW + 20).select(BOB_KEY, [forged])


def test_errors_belong_to_the_hierarchy() -> None:
    from mpcid.broker.errors import SessionError

    assert issubclass(DeclineError, SessionError)
    for error in (InvalidDecline, DeclineExpired, DeclineNotYetValid):
        assert issubclass(error, DeclineError) and error.hint


# --- Hypothesis ----------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@given(st.binary(max_size=3000))
def test_arbitrary_bytes(value: bytes) -> None:
    try:
        decode_decline(BOB_KEY, value, NOW)
    except DeclineError:
        pass


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["v", "session", "did", "reason", "issued", "expires", "sig",
                        "other"]), JSON, st.booleans())
def test_members_replaced_by_arbitrary_json(name: str, new: Any, sign: bool) -> None:
    obj = {**json.loads(VALID), name: new}
    value = resign(obj) if sign else json.dumps(obj).encode()
    try:
        decline = decode_decline(BOB_KEY, value, NOW)
    except (DeclineError, InvalidProof):
        return
    # Accepted only if it is a well-formed decline that Bob really signed.
    assert decline.did == BOB.did.did and sign or value == VALID


@given(st.integers(0, len(VALID) - 1), st.integers(0, 255))
def test_every_byte_flip_is_refused(position: int, byte: int) -> None:
    value = bytearray(VALID)
    if value[position] == byte:
        return
    value[position] = byte
    with pytest.raises((DeclineError, InvalidProof)):
        decode_decline(BOB_KEY, bytes(value), NOW)


@given(st.text(max_size=500).filter(lambda s: not any(c < " " or c == "\x7f" for c in s)))
def test_any_one_line_reason_round_trips(reason: str) -> None:
    try:
        value = declined(reason=reason)
    except InvalidDecline:  # unpaired surrogates cannot be encoded
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in reason)
        return
    assert decode_decline(BOB_KEY, value, NOW).reason == reason
