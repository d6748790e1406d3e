"""Signed session invitations (``mpcid.broker.invitation``, ``specs/session.md``).

``ALICE`` invites ``BOB`` and ``CAROL``; ``MALLORY`` is not invited. :func:`signed` signs any
JSON object the way an inviter would (domain prefix, JCS), so a test of one shape rule
fails on that rule and not on the signature.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcid.broker.errors import (InvalidInvitation, InvitationError, InvitationExpired,
                                 InvitationNotYetValid, NoBootstrapNodes, NotAParty,
                                 SessionError)
from mpcid.broker.invitation import (DOMAIN, MAX_CLOCK_SKEW, MAX_INVITATION_BYTES, MAX_PARTIES,
                                     MAX_TTL, MIN_TTL, TOKEN_PREFIX, Invitation, decode_token)
from mpcid.broker.session_id import session_id_for
from mpcid.broker.session import SessionSpec
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidProof, MpcidError
from mpcid.identity.policy import Policy, Requirement
from mpcid.p2p.signed import canonical_json

ALICE = Ed25519Key.from_seed(bytes(range(32)))
BOB = Ed25519Key.from_seed(bytes(range(1, 33)))
CAROL = Ed25519Key.from_seed(bytes(range(2, 34)))
MALLORY = Ed25519Key.from_seed(bytes(range(3, 35)))
NOW = 1_700_000_000.0
DIGEST = hashlib.sha256(b"print('hello')\n").digest()
BOOT = ("/ip4/192.0.2.10/tcp/4001/p2p/12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv",)
RELAYS = ("/dns4/relay.example.org/tcp/4001/p2p/12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3"
          "XEsk4Ksv",)
POLICY = Policy((Requirement("MembershipCredential", (ALICE.did.did,),
                             (("organization", "Acme"),)),))
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def make(**kwargs: Any) -> tuple[Invitation, bytes]:
    args: dict[str, Any] = dict(requirements=POLICY, ttl=3600, bootstrap=BOOT, relays=RELAYS,
                                now=NOW)
    args.update(kwargs)
    return Invitation.create(ALICE, [BOB.did.did, CAROL.did.did], "hello.py", DIGEST, **args)


INVITATION, DATA = make()


def content(data: bytes = DATA) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(data)
    del obj["sig"]
    return obj


def signed(obj: dict[str, Any], key: Ed25519Key = ALICE) -> bytes:
    sig = key.sign(DOMAIN + canonical_json(obj))
    return canonical_json({**obj, "sig": base64.urlsafe_b64encode(sig).decode().rstrip("=")})


def with_sig_of(obj: dict[str, Any], data: bytes = DATA) -> bytes:
    """``obj`` re-encoded canonically with the signature of ``data`` (a tampered copy)."""
    return canonical_json({**obj, "sig": json.loads(data)["sig"]})


def pack(data: bytes) -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(zlib.compress(data)).decode().rstrip("=")


# --- round trips ---------------------------------------------------------------------------


def test_create_fills_every_field() -> None:
    inv = INVITATION
    assert inv.parties == (ALICE.did.did, BOB.did.did, CAROL.did.did)
    assert inv.inviter == ALICE.did.did
    assert len(inv.session_id) == 32 and int(inv.session_id, 16) >= 0
    assert inv.program_name == "hello.py" and inv.program_sha256 == DIGEST
    assert (inv.threshold, inv.no_prss) == (1, False)  # (3 - 1) // 2
    assert (inv.issued, inv.expires) == (int(NOW), int(NOW) + 3600)
    assert inv.bootstrap == BOOT and inv.relays == RELAYS
    assert inv.requirements == POLICY
    assert len(inv.signature) == 64


def test_session_ids_are_fresh() -> None:
    assert len({make()[0].session_id for _ in range(20)}) == 20


def test_round_trip_object_json_token() -> None:
    assert DATA == INVITATION.encode()
    assert Invitation.verify(DATA, NOW) == INVITATION
    token = INVITATION.token()
    assert token.startswith(TOKEN_PREFIX) and "=" not in token
    assert Invitation.from_token(token, NOW) == INVITATION
    assert decode_token(token) == DATA
    assert DATA == canonical_json(json.loads(DATA))


def test_token_survives_line_wrapping() -> None:
    token = INVITATION.token()
    wrapped = "  " + "\n".join(token[i:i + 60] for i in range(0, len(token), 60)) + "\n"
    assert Invitation.from_token(wrapped, NOW) == INVITATION


def test_requirements_survive_round_trip() -> None:
    policy = Policy((Requirement("MembershipCredential", (ALICE.did.did, BOB.did.did),
                                 (("organization", "Acme"), ("role", "member"))),
                     Requirement("AgeCredential", ("did:web:example.org",))))
    inv, data = make(requirements=policy)
    assert Invitation.verify(data, NOW).requirements == policy
    assert Invitation.from_token(inv.token(), NOW).requirements == policy
    assert make(requirements=Policy())[0].requirements == Policy()


def test_options_and_empty_lists() -> None:
    inv, data = make(threshold=0, no_prss=True, bootstrap=(), relays=())
    assert (inv.threshold, inv.no_prss, inv.bootstrap, inv.relays) == (0, True, (), ())
    assert Invitation.verify(data, NOW) == inv


def test_index_of_and_is_party() -> None:
    assert [INVITATION.index_of(k.did.did) for k in (ALICE, BOB, CAROL)] == [0, 1, 2]
    assert INVITATION.is_party(BOB.did.did) and not INVITATION.is_party(MALLORY.did.did)
    with pytest.raises(NotAParty, match="not invited"):
        INVITATION.index_of(MALLORY.did.did)


def test_unsigned_cannot_be_encoded_and_only_inviter_signs() -> None:
    unsigned = Invitation(INVITATION.session_id, INVITATION.nonce, INVITATION.parties, "p",
                          DIGEST, 1, False, Policy(), 1, 100)
    with pytest.raises(InvalidInvitation, match="not signed"):
        unsigned.encode()
    with pytest.raises(InvalidInvitation, match="cannot be signed by"):
        unsigned.sign(BOB)


# --- session spec --------------------------------------------------------------------------


def test_session_spec_is_valid() -> None:
    spec = INVITATION.session_spec()
    again = SessionSpec.from_json(spec.to_json())
    assert again == spec
    assert spec.session_id == INVITATION.session_id
    assert spec.program_sha256 == DIGEST
    assert spec.dids == list(INVITATION.parties)
    assert all(p.host is None and p.port is None for p in spec.parties)
    assert [p.index for p in spec.parties] == [0, 1, 2]
    assert (spec.mpyc.threshold, spec.mpyc.no_prss) == (1, False)
    assert (spec.bootstrap, spec.relays) == (BOOT, RELAYS)
    assert "host" not in json.dumps(spec.to_json())


def test_session_spec_keeps_options() -> None:
    spec = make(threshold=0, no_prss=True)[0].session_spec()
    assert SessionSpec.from_json(spec.to_json()).mpyc.argv() == ["-T", "0", "--no-prss"]


def test_session_spec_needs_bootstrap() -> None:
    with pytest.raises(NoBootstrapNodes, match="no bootstrap nodes") as info:
        make(bootstrap=())[0].session_spec()
    assert isinstance(info.value, SessionError) and "--bootstrap" in info.value.hint


def test_longest_multiaddr_fits_session_file() -> None:
    addr = "/dns4/" + "a" * (511 - 6)
    spec = make(bootstrap=(addr,))[0].session_spec()
    assert SessionSpec.from_json(spec.to_json()).bootstrap == (addr,)
    with pytest.raises(InvalidInvitation, match="multiaddr"):
        make(bootstrap=(addr + "a",))


# --- authenticity --------------------------------------------------------------------------

TAMPERED: dict[str, Any] = {
    "v": None,  # covered by the version test; every other member below
    "session": None,  # derived from inviter and nonce: test_session_id_names_its_inviter
    "nonce": None,
    "name": "another name",
    "inviter": None,
    "parties": [ALICE.did.did, CAROL.did.did, BOB.did.did],
    "program": "other.py",
    "program_sha256": "00" * 32,
    "mpyc": {"threshold": 0, "no_prss": False},
    "requirements": [],
    "issued": int(NOW) - 1,
    "expires": int(NOW) + 3601,
    "bootstrap": ["/ip4/192.0.2.99/tcp/4001"],
    "relays": [],
}


@pytest.mark.parametrize("name", [n for n, v in TAMPERED.items() if v is not None])
def test_every_field_is_signed(name: str) -> None:
    obj = content()
    assert obj[name] != TAMPERED[name]
    obj[name] = TAMPERED[name]
    with pytest.raises(InvalidProof):
        Invitation.verify(with_sig_of(obj), NOW)


def test_session_id_names_its_inviter() -> None:
    """Nobody but the inviter can sign an invitation under its session id: another
    signer's content with the same session (and nonce) is refused before any signature."""
    obj = content()
    obj["parties"] = [BOB.did.did, ALICE.did.did, CAROL.did.did]
    obj["inviter"] = BOB.did.did
    with pytest.raises(InvalidInvitation, match="not derived from its inviter"):
        Invitation.verify(signed(obj, BOB), NOW)
    obj = content()
    obj["nonce"] = "0" * 32
    with pytest.raises(InvalidInvitation, match="not derived"):
        Invitation.verify(signed(obj), NOW)
    assert session_id_for(ALICE.did.did, INVITATION.nonce) == INVITATION.session_id


def test_tampered_requirement_claim() -> None:
    obj = content()
    obj["requirements"][0]["claims"]["organization"] = "Evil"
    with pytest.raises(InvalidProof):
        Invitation.verify(with_sig_of(obj), NOW)


def test_tampered_inviter_is_refused() -> None:
    """Making BOB the inviter means reordering parties too; BOB's key did not sign it."""
    obj = content()
    obj["inviter"], obj["parties"] = BOB.did.did, [BOB.did.did, ALICE.did.did, CAROL.did.did]
    with pytest.raises(InvalidInvitation, match="not derived from its inviter"):
        Invitation.verify(with_sig_of(obj), NOW)


def test_signature_bits_flipped() -> None:
    obj = json.loads(DATA)
    raw = bytearray(base64.urlsafe_b64decode(obj["sig"] + "=="))
    raw[10] ^= 1
    obj["sig"] = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidProof):
        Invitation.verify(canonical_json(obj), NOW)


def test_signed_by_non_inviter() -> None:
    with pytest.raises(InvalidProof):
        Invitation.verify(signed(content(), BOB), NOW)  # BOB is a party, not party 0
    with pytest.raises(InvalidProof):
        Invitation.verify(signed(content(), MALLORY), NOW)


def test_signature_without_domain_is_refused() -> None:
    sig = ALICE.sign(canonical_json(content()))
    data = canonical_json({**content(), "sig": base64.urlsafe_b64encode(sig).decode()
                           .rstrip("=")})
    with pytest.raises(InvalidProof):
        Invitation.verify(data, NOW)


def test_resigned_content_verifies() -> None:
    """The helper signs exactly as the module does, so shape tests below are meaningful."""
    assert Invitation.verify(signed(content()), NOW) == INVITATION


# --- time ----------------------------------------------------------------------------------


def test_expired() -> None:
    assert Invitation.verify(DATA, NOW + 3599) == INVITATION
    with pytest.raises(InvitationExpired, match="expired 0 s ago"):
        Invitation.verify(DATA, NOW + 3600)
    with pytest.raises(InvitationExpired):
        Invitation.from_token(INVITATION.token(), NOW + 10**6)


def test_issued_in_the_future() -> None:
    assert Invitation.verify(DATA, NOW - MAX_CLOCK_SKEW) == INVITATION
    with pytest.raises(InvitationNotYetValid, match="in the future"):
        Invitation.verify(DATA, NOW - MAX_CLOCK_SKEW - 1)


def test_time_checked_only_for_authentic() -> None:
    obj = content()
    obj["program"] = "x.py"
    with pytest.raises(InvalidProof):
        Invitation.verify(with_sig_of(obj), NOW + 10**6)


@pytest.mark.parametrize("ttl", [MIN_TTL - 1, 0, -5, MAX_TTL + 1])
def test_ttl_limits(ttl: int) -> None:
    with pytest.raises(InvalidInvitation, match="lifetime"):
        make(ttl=ttl)


@pytest.mark.parametrize("ttl", [MIN_TTL, MAX_TTL])
def test_ttl_bounds_accepted(ttl: int) -> None:
    assert make(ttl=ttl)[0].expires == int(NOW) + ttl


# --- shape ---------------------------------------------------------------------------------

WRONG_TYPES: dict[str, list[Any]] = {
    "v": ["1", None, True, 2, 0],
    "session": [1, None, "0" * 31, "0" * 33, "G" * 32, "A" * 32, "0" * 32],
    "nonce": [1, None, "0" * 31, "0" * 33, "G" * 32, "A" * 32],
    "name": [None, 1, "a\nb", "x" * 129, ["x"]],
    "inviter": [None, 1, BOB.did.did],
    "parties": ["did:key:x", None, {}, [1, 2]],
    "program": [None, 1, "", "a\nb", "x" * 257],
    "program_sha256": [None, 1, "00" * 31, "AA" * 32, "zz" * 32],
    "mpyc": [None, [], {"threshold": 1}, {"threshold": 1, "no_prss": False, "x": 1},
             {"threshold": "1", "no_prss": False}, {"threshold": True, "no_prss": False},
             {"threshold": -1, "no_prss": False}, {"threshold": 1, "no_prss": 0},
             {"threshold": None, "no_prss": False}],
    "requirements": [None, {}, [1], [{"type": "X"}], [{"type": "X", "issuers": ["nope"],
                                                       "claims": {}}],
                     [{"type": "X", "issuers": [ALICE.did.did], "claims": {"k": 1}}],
                     [{"type": "X", "issuers": [ALICE.did.did]}],  # claims left out
                     [{"type": "X", "issuers": [ALICE.did.did], "claims": {}, "extra": 1}],
                     [{"type": "X", "issuers": [ALICE.did.did], "claims": {}}] * 17],
    "issued": [None, "1", True, -1, 2**53],
    "expires": [None, "1", False, 2**60],
    "bootstrap": [None, "/ip4/1.2.3.4", [1], ["ip4/1.2.3.4"], ["/a b"], ["/x"] * 17],
    "relays": [None, {}, [None], [""]],
    "sig": [None, 1, "A" * 85, "A" * 87, "!" * 86],
}


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in WRONG_TYPES.items() for v in vs])
def test_wrong_field_value(name: str, value: Any) -> None:
    obj = content()
    obj[name] = value
    data = signed(obj) if name != "sig" else canonical_json({**obj, "sig": value})
    with pytest.raises(InvalidInvitation):
        Invitation.verify(data, NOW)


@pytest.mark.parametrize("name", ["v", "session", "nonce", "name", "inviter", "parties", "program",
                                  "program_sha256", "mpyc", "requirements", "issued",
                                  "expires", "bootstrap", "relays"])
def test_missing_field(name: str) -> None:
    obj = content()
    del obj[name]
    with pytest.raises(InvalidInvitation, match="lacks" if name != "v" else "version"):
        Invitation.verify(signed(obj), NOW)


def test_missing_sig() -> None:
    with pytest.raises(InvalidInvitation, match="lacks sig"):
        Invitation.verify(canonical_json(content()), NOW)


def test_unknown_member() -> None:
    obj = content()
    obj["comment"] = "hi"
    with pytest.raises(InvalidInvitation, match="unknown members comment"):
        Invitation.verify(signed(obj), NOW)


def test_other_version() -> None:
    obj = content()
    obj["v"] = 2
    with pytest.raises(InvalidInvitation, match="version 2 is not supported"):
        Invitation.verify(signed(obj), NOW)


def test_duplicate_parties() -> None:
    with pytest.raises(InvalidInvitation, match="twice"):
        Invitation.create(ALICE, [BOB.did.did, BOB.did.did], "p", DIGEST, ttl=600, now=NOW)
    with pytest.raises(InvalidInvitation, match="twice"):
        Invitation.create(ALICE, [ALICE.did.did], "p", DIGEST, ttl=600, now=NOW)


def keys(n: int) -> list[str]:
    return [Ed25519Key.from_seed(i.to_bytes(32, "big")).did.did for i in range(1, n + 1)]


def test_party_count_limits() -> None:
    with pytest.raises(InvalidInvitation, match="1 parties"):
        Invitation.create(ALICE, [], "p", DIGEST, ttl=600, now=NOW)
    inv, _ = Invitation.create(ALICE, [BOB.did.did], "p", DIGEST, ttl=600, now=NOW)
    assert inv.threshold == 0
    inv, data = Invitation.create(ALICE, keys(MAX_PARTIES - 1), "p", DIGEST, ttl=600,
                                  bootstrap=BOOT, now=NOW)
    assert len(inv.parties) == MAX_PARTIES and inv.threshold == 31
    assert len(data) <= MAX_INVITATION_BYTES
    assert Invitation.from_token(inv.token(), NOW) == inv
    with pytest.raises(InvalidInvitation, match="65 parties"):
        Invitation.create(ALICE, keys(MAX_PARTIES), "p", DIGEST, ttl=600, now=NOW)


@pytest.mark.parametrize("n,t", [(2, 1), (3, 2), (4, 2), (5, 3)])
def test_threshold_too_high(n: int, t: int) -> None:
    with pytest.raises(InvalidInvitation, match="threshold"):
        Invitation.create(ALICE, keys(n - 1), "p", DIGEST, threshold=t, ttl=600, now=NOW)
    assert Invitation.create(ALICE, keys(n - 1), "p", DIGEST, threshold=t - 1, ttl=600,
                             now=NOW)[0].threshold == t - 1


@pytest.mark.parametrize("did", [
    "did:web:example.org", "did:key:abc", "did:key:z6MkXXXX", "not a did",
    BOB.did.did + "#frag", BOB.did.did[:-1], ""])
def test_bad_dids(did: str) -> None:
    with pytest.raises(InvalidInvitation, match="party 1"):
        Invitation.create(ALICE, [did], "p", DIGEST, ttl=600, now=NOW)


def test_bad_digest() -> None:
    with pytest.raises(InvalidInvitation, match="32-byte"):
        Invitation.create(ALICE, [BOB.did.did], "p", DIGEST[:31], ttl=600, now=NOW)


@pytest.mark.parametrize("data,match", [
    (b"", "not UTF-8 JSON"), (b"\xff", "not UTF-8 JSON"), (b"[]", "JSON object"),
    (b'{"v":1.0}', "number"), (b'{"v":NaN}', "number"), (b'{"v":1,"v":1}', "duplicate"),
    (b"[" * 5000 + b"]" * 5000, "UTF-8 JSON|deeper"), (b'{"a":' * 20 + b"1" + b"}" * 20,
                                                       "deeper"),
    (b'{"a":"\\ud800"}', "Unicode"), (b'{"a":"' + b"x" * 513 + b'"}', "longer than 512"),
    (b'{"a":9007199254740992}', "2\\^53"), (b" " * (MAX_INVITATION_BYTES + 1), "exceeds")])
def test_malformed_bytes(data: bytes, match: str) -> None:
    with pytest.raises(InvalidInvitation, match=match):
        Invitation.verify(data, NOW)


def test_not_bytes() -> None:
    with pytest.raises(InvalidInvitation, match="bytes, not str"):
        Invitation.verify(DATA.decode(), NOW)  # type: ignore[arg-type]


def test_non_canonical_encoding() -> None:
    pretty = json.dumps(json.loads(DATA), indent=1).encode()
    with pytest.raises(InvalidInvitation, match="canonical"):
        Invitation.verify(pretty, NOW)
    obj = json.loads(DATA)
    obj["requirements"][0]["claims"] = {"organization": "Acme"}
    reordered = canonical_json(obj).replace(b'"claims"', b'"claims" ', 1)
    with pytest.raises(InvalidInvitation):
        Invitation.verify(reordered, NOW)


def test_errors_form_the_hierarchy_and_are_one_line() -> None:
    assert issubclass(InvalidInvitation, InvitationError)
    assert issubclass(InvitationError, SessionError)
    assert InvalidInvitation("x").exit_code == 2
    for data in (b"\x00", b'{"v":1,"parties":["a\\nb"]}'):
        with pytest.raises(InvalidInvitation) as info:
            Invitation.verify(data, NOW)
        assert "\n" not in info.value.one_line() and info.value.hint


# --- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize("token,match", [
    ("mpcid2:" + INVITATION.token()[7:], "token version mpcid2: is not supported"),
    ("hello", "not an mpcid invitation token"),
    ("", "not an mpcid invitation token"),
    (TOKEN_PREFIX + "abc$", "not base64url"),
    (TOKEN_PREFIX + "a", "not base64url"),
    (TOKEN_PREFIX + "ab==", "not base64url"),
    (TOKEN_PREFIX + "AB", "not canonical"),  # trailing bits set
    (TOKEN_PREFIX + "AAAA", "zlib"),
    (TOKEN_PREFIX + base64.urlsafe_b64encode(zlib.compress(DATA)[:-12]).decode().rstrip("="),
     "truncated"),
    (pack(DATA) + base64.urlsafe_b64encode(b"\x00" * 3).decode(), "not canonical|after"),
    ("x" * 10**6, "too long"),
])
def test_bad_tokens(token: str, match: str) -> None:
    with pytest.raises(InvalidInvitation, match=match):
        Invitation.from_token(token, NOW)


def test_trailing_data_after_stream() -> None:
    packed = zlib.compress(DATA) + b"junk"
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")
    with pytest.raises(InvalidInvitation, match="after its end"):
        Invitation.from_token(token, NOW)


def test_huge_token() -> None:
    # 22400 incompressible bytes: a token of about 30000 characters
    token = pack(b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(700)))
    with pytest.raises(InvalidInvitation, match="token of 29895 characters is too long"):
        Invitation.from_token(token, NOW)
    with pytest.raises(InvalidInvitation, match="token of 21961 characters exceeds"):
        Invitation.from_token(token[:21961] + "\n" * 1000, NOW)


def test_decompression_bomb() -> None:
    token = pack(b" " * (100 * 1024 * 1024))  # 100 MiB of spaces, about 100 KiB packed
    assert len(token) < 200_000
    with pytest.raises(InvalidInvitation, match="too long|expands beyond"):
        Invitation.from_token(token, NOW)
    small_bomb = pack(b" " * (MAX_INVITATION_BYTES + 1))  # a short token, too large inside
    assert len(small_bomb) < 200
    with pytest.raises(InvalidInvitation, match="expands beyond 16384"):
        Invitation.from_token(small_bomb, NOW)


def test_token_of_tampered_json() -> None:
    obj = content()
    obj["program"] = "evil.py"
    with pytest.raises(InvalidProof):
        Invitation.from_token(pack(with_sig_of(obj)), NOW)


def test_token_is_not_text() -> None:
    with pytest.raises(InvalidInvitation, match="text, not bytes"):
        Invitation.from_token(INVITATION.token().encode(), NOW)  # type: ignore[arg-type]


# --- robustness ----------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=2048))
def test_verify_arbitrary_bytes(data: bytes) -> None:
    try:
        Invitation.verify(data, NOW)
    except MpcidError:
        pass


@SETTINGS
@given(st.text(max_size=512))
def test_from_token_arbitrary_text(text: str) -> None:
    try:
        Invitation.from_token(text, NOW)
    except MpcidError:
        pass


@SETTINGS
@given(st.text(alphabet="ABCDEFabcdef0123456789-_", max_size=400))
def test_from_token_arbitrary_payload(body: str) -> None:
    try:
        Invitation.from_token(TOKEN_PREFIX + body, NOW)
    except MpcidError:
        pass


@SETTINGS
@given(st.binary(max_size=1024))
def test_from_token_arbitrary_compressed(raw: bytes) -> None:
    try:
        Invitation.from_token(pack(raw), NOW)
    except MpcidError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=12)


@SETTINGS
@given(st.sampled_from(sorted(TAMPERED)), json_values)
def test_verify_any_field_value(name: str, value: Any) -> None:
    obj = content()
    obj[name] = value
    try:
        Invitation.verify(signed(obj), NOW)
    except MpcidError:
        pass


def test_module_is_sans_io() -> None:
    source = Path(__file__).parents[2] / "broker" / "invitation.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "trio", "socket", "time", "os", "anyio"}
