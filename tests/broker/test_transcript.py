"""Signed session transcripts (``mpcid.broker.transcript``, ``specs/session.md`` 9).

``BOB`` (party 1) signs his transcript of a session ``ALICE`` (party 0) invited him and
``CAROL`` (party 2) to; ``MALLORY`` is in no session. :func:`signed` signs any JSON object
the way a party would (domain prefix, JCS), so a test of one shape rule fails on that rule
and not on the signature.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpcid.broker.errors import InvalidTranscript, SessionError
from mpcid.broker.transcript import (DOMAIN, MAX_CREDENTIALS, MAX_STRING, MAX_TRANSCRIPT_BYTES,
                                     CredentialRef, PartyEntry, Transcript, one_line,
                                     write_transcript)
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import InvalidProof, MpcidError, UsageError
from mpcid.p2p.signed import canonical_json

ALICE = Ed25519Key.from_seed(bytes(range(32)))
BOB = Ed25519Key.from_seed(bytes(range(1, 33)))
CAROL = Ed25519Key.from_seed(bytes(range(2, 34)))
MALLORY = Ed25519Key.from_seed(bytes(range(3, 35)))
SESSION = "0123456789abcdef0123456789abcdef"
INVITATION = b'{"v":1,"session":"0123456789abcdef0123456789abcdef"}'
PROGRAM = hashlib.sha256(b"print('hello')\n").digest()
STARTED = 1_700_000_000.1234
ENDED = 1_700_000_012.5
MEMBERSHIP = CredentialRef("urn:uuid:7d3c1d9e-5c1f-4a0e-9d59-000000000001",
                           ("VerifiableCredential", "MembershipCredential"), ALICE.did.did)
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def parties(*credentials: tuple[CredentialRef, ...]) -> list[PartyEntry]:
    creds = list(credentials) + [()] * (3 - len(credentials))
    return [PartyEntry(i, key.did.did, True, creds[i])
            for i, key in enumerate((ALICE, BOB, CAROL))]


def make(key: Ed25519Key = BOB, **kwargs: Any) -> tuple[Transcript, bytes]:
    args: dict[str, Any] = dict(
        session_id=SESSION, invitation=INVITATION, program_name="hello.py",
        program_sha256=PROGRAM, index=1,
        parties=parties((MEMBERSHIP,), (MEMBERSHIP,), (MEMBERSHIP,)),
        started=STARTED, ended=ENDED, outcome="completed")
    args.update(kwargs)
    return Transcript.create(key, **args)


TRANSCRIPT, DATA = make()


def content(data: bytes = DATA) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(data)
    del obj["sig"]
    return obj


def signed(obj: dict[str, Any], key: Ed25519Key = BOB) -> bytes:
    sig = key.sign(DOMAIN + canonical_json(obj))
    return canonical_json({**obj, "sig": base64.urlsafe_b64encode(sig).decode().rstrip("=")})


def with_sig_of(obj: dict[str, Any], data: bytes = DATA) -> bytes:
    """``obj`` re-encoded canonically with the signature of ``data`` (a tampered copy)."""
    return canonical_json({**obj, "sig": json.loads(data)["sig"]})


def changed(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    obj = content()
    edit(obj)
    return obj


# --- round trips ---------------------------------------------------------------------------


def test_round_trip() -> None:
    assert Transcript.verify(DATA) == TRANSCRIPT
    assert TRANSCRIPT.encode() == DATA
    assert TRANSCRIPT.signer == BOB.did.did == TRANSCRIPT.parties[1].did
    assert TRANSCRIPT.invitation_sha256 == hashlib.sha256(INVITATION).digest()
    assert TRANSCRIPT.started_ms == 1_700_000_000_123
    assert TRANSCRIPT.ended_ms == 1_700_000_012_500
    assert TRANSCRIPT.started == 1_700_000_000.123
    assert TRANSCRIPT.duration == pytest.approx(12.377)
    assert TRANSCRIPT.parties[0].credentials == (MEMBERSHIP,)


def test_wire_members() -> None:
    obj = json.loads(DATA)
    assert sorted(obj) == sorted(["v", "session", "invitation_sha256", "program",
                                  "program_sha256", "signer", "index", "parties",
                                  "started_ms", "ended_ms", "outcome", "error", "sig"])
    assert obj["parties"][0] == {"index": 0, "did": ALICE.did.did, "admitted": True,
                                 "credentials": [MEMBERSHIP.to_json()]}
    assert len(obj["sig"]) == 86
    assert DATA == canonical_json(obj)
    BOB.did.verify(DOMAIN + canonical_json(content()),
                   base64.urlsafe_b64decode(obj["sig"] + "=="))  # raises if not Bob's


def test_the_path_of_each_channel_is_kept() -> None:
    entries = [PartyEntry(0, ALICE.did.did, True, (), "hole-punched TCP 203.0.113.7:40123"),
               PartyEntry(1, BOB.did.did, True),
               PartyEntry(2, CAROL.did.did, True, (), "relay circuit")]
    transcript, data = make(parties=entries)
    assert Transcript.verify(data) == transcript
    assert [p.path for p in Transcript.verify(data).parties] == [
        "hole-punched TCP 203.0.113.7:40123", None, "relay circuit"]
    assert "path" not in json.loads(data)["parties"][1]
    for bad in ("", "x" * 129, "direct\nTCP", 7):
        obj = content(data)
        obj["parties"][0]["path"] = bad
        with pytest.raises(InvalidTranscript, match='"path" is not 1-128 printable'):
            Transcript.verify(signed(obj))


def test_never_started() -> None:
    t, data = make(started=None, outcome="declined", error="the user said no",
                   parties=[PartyEntry(0, ALICE.did.did, False), PartyEntry(1, BOB.did.did,
                                                                            False)])
    assert json.loads(data)["started_ms"] is None
    assert t.started is None and t.duration is None
    assert Transcript.verify(data) == t


def test_any_party_may_sign_its_own() -> None:
    t, data = make(CAROL, index=2, outcome="failed", error="party 0 disconnected")
    assert Transcript.verify(data).signer == CAROL.did.did


def test_issuer_may_be_any_did() -> None:
    web = CredentialRef(None, ("VerifiableCredential",), "did:web:example.org")
    t, _ = make(parties=parties((web,)))
    assert t.parties[0].credentials == (web,)


def test_error_is_flattened_and_shortened() -> None:
    t, _ = make(outcome="failed", error="line one\nline\ttwo\x00 \ud800")
    assert t.error == "line one line two ?"
    t, _ = make(outcome="failed", error="x" * (MAX_STRING + 10))
    assert len(t.error) == MAX_STRING and t.error.endswith("...")
    assert one_line("  plain  ") == "plain"


def test_credential_ref_of_anything_with_id_types_issuer() -> None:
    class Verified:
        id = "urn:x"
        types = ["VerifiableCredential", "X"]
        issuer = ALICE.did.did

    assert CredentialRef.of(Verified()) == CredentialRef("urn:x", ("VerifiableCredential",
                                                                   "X"), ALICE.did.did)


@pytest.mark.parametrize("kwargs", [
    dict(index=0),                                  # BOB is not party 0
    dict(index=3),
    dict(session_id="not hex"),
    dict(program_sha256=b"short"),
    dict(invitation="text"),
    dict(started=ENDED + 1),                        # started after ended
    dict(ended=-1.0),
    dict(ended=float("nan")),
    dict(outcome="won"),
    dict(outcome="completed", error="but failed"),
    dict(outcome="completed", started=None),
    dict(parties=parties()[:1]),
    dict(program_name=""),
])
def test_create_refuses_what_a_reader_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidTranscript):
        make(**kwargs)


def test_sign_with_another_key_is_refused() -> None:
    with pytest.raises(InvalidTranscript, match="cannot be signed"):
        TRANSCRIPT.sign(MALLORY)


# --- tampering: the opaque signature failure ----------------------------------------------


@pytest.mark.parametrize("edit", [
    lambda o: o.update(session="f" * 32),
    lambda o: o.update(program="evil.py"),
    lambda o: o.update(program_sha256="0" * 64),
    lambda o: o.update(invitation_sha256="1" * 64),
    lambda o: o.update(ended_ms=o["ended_ms"] + 1),
    lambda o: o.update(started_ms=o["started_ms"] - 1),
    lambda o: o.update(outcome="failed", error="made up"),
    lambda o: o["parties"][0].update(admitted=False),
    lambda o: o["parties"][2]["credentials"].clear(),
    lambda o: o["parties"][0]["credentials"][0].update(id="urn:other"),
    lambda o: o["parties"][0]["credentials"][0].update(issuer=MALLORY.did.did),
    lambda o: o["parties"][0]["credentials"][0]["types"].append("AdminCredential"),
    # Claim to be Carol, consistently: now her key must have signed it.
    lambda o: o.update(index=2, signer=CAROL.did.did),
    # Replace a party by Mallory.
    lambda o: o["parties"][2].update(did=MALLORY.did.did),
], ids=["session", "program", "program_sha256", "invitation_sha256", "ended", "started",
        "outcome", "admitted", "credentials-removed", "credential-id", "credential-issuer",
        "credential-types", "signer-and-index", "party-did"])
def test_changed_member_fails_the_signature(edit: Callable[[dict[str, Any]], object]) -> None:
    with pytest.raises(InvalidProof) as info:
        Transcript.verify(with_sig_of(changed(edit)))
    assert info.value.exit_code == 1


def test_signature_by_another_key() -> None:
    with pytest.raises(InvalidProof):
        Transcript.verify(signed(content(), MALLORY))
    with pytest.raises(InvalidProof):
        Transcript.verify(signed(content(), ALICE))  # a party, but not the signer


def test_flipped_signature_bit() -> None:
    sig = bytearray(base64.urlsafe_b64decode(json.loads(DATA)["sig"] + "=="))
    sig[10] ^= 1
    obj = {**content(), "sig": base64.urlsafe_b64encode(bytes(sig)).decode().rstrip("=")}
    with pytest.raises(InvalidProof):
        Transcript.verify(canonical_json(obj))


# --- malformed: InvalidTranscript, before the signature ----------------------------------


def test_invalid_transcript_is_a_session_and_usage_error() -> None:
    err = InvalidTranscript("x")
    assert isinstance(err, SessionError) and isinstance(err, UsageError)
    assert err.exit_code == 2 and err.hint and "\n" not in err.one_line()


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(extra=1), "unknown members extra"),
    (lambda o: o.pop("error"), "lacks error"),
    (lambda o: o.pop("sig"), "lacks sig"),
    (lambda o: o["parties"][0].update(role="inviter"), "unknown members role"),
    (lambda o: o["parties"][1].pop("admitted"), "lacks admitted"),
    (lambda o: o["parties"][0]["credentials"][0].update(claims={}), "unknown members claims"),
    (lambda o: o["parties"][0]["credentials"][0].pop("id"), "lacks id"),
], ids=["added", "removed", "sig-removed", "party-added", "party-removed",
        "credential-added", "credential-removed"])
def test_member_added_or_removed(edit: Callable[[dict[str, Any]], object],
                                 message: str) -> None:
    obj = json.loads(DATA)
    edit(obj)
    candidates = [canonical_json(obj)]
    if "sig" in obj:  # also correctly signed: the member rule alone must refuse it
        candidates.append(signed({k: v for k, v in obj.items() if k != "sig"}))
    for candidate in candidates:
        with pytest.raises(InvalidTranscript, match=message):
            Transcript.verify(candidate)


@pytest.mark.parametrize("encode", [
    lambda o: json.dumps(o).encode(),                                 # spaces
    lambda o: json.dumps(o, indent=2, sort_keys=True).encode(),
    lambda o: canonical_json(o) + b"\n",
    lambda o: b" " + canonical_json(o),
    lambda o: json.dumps(dict(reversed(list(o.items()))), separators=(",", ":")).encode(),
    lambda o: canonical_json(o).replace(b'"hello.py"', b'"hello\\u002epy"'),
    lambda o: canonical_json(o).replace(b'"index":1', b'"index":1.0'),
    lambda o: canonical_json(o).replace(b'"index":1', b'"index":1e0'),
], ids=["spaces", "indented", "newline", "leading-space", "member-order", "escape",
        "float", "exponent"])
def test_non_canonical_encoding(encode: Callable[[dict[str, Any]], bytes]) -> None:
    with pytest.raises(InvalidTranscript):
        Transcript.verify(encode(json.loads(DATA)))


def test_signer_must_be_the_party_at_index() -> None:
    # Properly signed by Bob's key, but Bob claims index 0, which is Alice.
    with pytest.raises(InvalidTranscript, match="not the DID of party 0"):
        Transcript.verify(signed(changed(lambda o: o.update(index=0))))
    # Mallory signs, naming herself, but she is not a party at that index.
    obj = changed(lambda o: o.update(signer=MALLORY.did.did))
    with pytest.raises(InvalidTranscript, match="signer"):
        Transcript.verify(signed(obj, MALLORY))


def _party(i: int, **edit: Any) -> Callable[[dict[str, Any]], object]:
    return lambda o: o["parties"][i].update(edit)


def _cred(**edit: Any) -> Callable[[dict[str, Any]], object]:
    return lambda o: o["parties"][0]["credentials"][0].update(edit)


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(v=2), "version 2"),
    (lambda o: o.update(v="1"), "integer version"),
    (lambda o: o.update(v=True), "integer version"),
    (lambda o: o.update(session="0123456789ABCDEF0123456789ABCDEF"), "session"),
    (lambda o: o.update(session=None), "session"),
    (lambda o: o.update(invitation_sha256="ab"), "invitation_sha256"),
    (lambda o: o.update(program_sha256=0), "program_sha256"),
    (lambda o: o.update(program=""), "program"),
    (lambda o: o.update(program="a\nb"), "program"),
    (lambda o: o.update(index=True), "index"),
    (lambda o: o.update(index=-1), "index"),
    (lambda o: o.update(index=3), "index"),
    (lambda o: o.update(index="1"), "index"),
    (lambda o: o.update(parties=o["parties"][:1]), "parties"),
    (lambda o: o.update(parties={}), "parties"),
    (lambda o: o["parties"].append(o["parties"][0] | {"index": 3}), "twice"),
    (lambda o: o["parties"].reverse(), "index"),
    (lambda o: o["parties"].__setitem__(0, "did:key:x"), "not an object"),
    (_party(0, index=False), "index"),
    (_party(0, did="did:web:example.org"), "did:key"),
    (_party(0, did=None), "did:key"),
    (lambda o: o["parties"][0].update(did=o["parties"][0]["did"] + "#k"), "DID URL"),
    (_party(0, admitted=1), "admitted"),
    (_party(0, credentials=None), "credentials"),
    (_party(0, credentials=[MEMBERSHIP.to_json()] * (MAX_CREDENTIALS + 1)), "credentials"),
    (_party(0, credentials=["urn:uuid:1"]), "not an object"),
    (_cred(id=""), "\"id\""),
    (_cred(id=7), "\"id\""),
    (_cred(id="a\rb"), "\"id\""),
    (_cred(types=[]), "types"),
    (_cred(types="MembershipCredential"), "types"),
    (_cred(types=[1]), "types"),
    (_cred(types=["x"] * 17), "types"),
    (_cred(issuer="Acme Corp"), "issuer"),
    (_cred(issuer=None), "issuer"),
    (_cred(issuer=ALICE.did.did + "#key-1"), "DID URL"),
    (lambda o: o.update(started_ms=o["ended_ms"] + 1), "after"),
    (lambda o: o.update(started_ms=-1), "started_ms"),
    (lambda o: o.update(ended_ms="now"), "ended_ms"),
    (lambda o: o.update(ended_ms=None), "ended_ms"),
    (lambda o: o.update(ended_ms=2**53), "2\\^53"),
    (lambda o: o.update(outcome="won"), "outcome"),
    (lambda o: o.update(outcome=["completed"]), "outcome"),
    (lambda o: o.update(error="but it broke"), "completed"),
    (lambda o: o.update(started_ms=None), "completed"),
    (lambda o: o.update(outcome="failed", error="two\nlines"), "error"),
    (lambda o: o.update(outcome="failed", error=None), "error"),
    (lambda o: o.update(outcome="failed", error="x" * (MAX_STRING + 1)), "longer than"),
    (lambda o: o.update(program="\ud800"), "Unicode"),
    (lambda o: o.update(error=[[[[[[[[[]]]]]]]]]), "nests deeper"),
])
def test_shape_rules(edit: Callable[[dict[str, Any]], object], message: str) -> None:
    """Each rule on its own, in a transcript that is otherwise valid and correctly signed
    (when the broken value can be signed at all)."""
    obj = changed(edit)
    try:
        data = signed(obj)
    except (UnicodeError, ValueError):  # not even encodable; tamper by hand
        data = json.dumps({**obj, "sig": "A" * 86}).encode("utf-8", "surrogatepass")
    with pytest.raises(InvalidTranscript, match=message):
        Transcript.verify(data)


@pytest.mark.parametrize("sig", ["A" * 85, "A" * 87, "A" * 85 + "=", "A" * 85 + "+", 7])
def test_malformed_sig(sig: object) -> None:
    with pytest.raises(InvalidTranscript, match="sig"):
        Transcript.verify(canonical_json({**content(), "sig": sig}))


@pytest.mark.parametrize("data, message", [
    (b"", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[]", "JSON object"),
    (b'{"v":1,"v":1}', "duplicate"),
    (b'{"v":1.5}', "only integers"),
    (b'{"v":NaN}', "only integers"),
    (b'{"v":1}', "lacks"),
    (b"{}", "integer version"),
    (b" " * (MAX_TRANSCRIPT_BYTES + 1), "exceeds"),
    (b"[" * 100_000 + b"]" * 100_000, "not UTF-8 JSON|nests deeper"),
])
def test_not_a_transcript(data: bytes, message: str) -> None:
    with pytest.raises(InvalidTranscript, match=message):
        Transcript.verify(data)


def test_not_bytes() -> None:
    with pytest.raises(InvalidTranscript, match="bytes"):
        Transcript.verify(DATA.decode())  # type: ignore[arg-type]


def test_large_but_valid_transcript() -> None:
    many = tuple(CredentialRef(f"urn:uuid:{i:04d}" + "x" * 400, ("VerifiableCredential",),
                               ALICE.did.did) for i in range(MAX_CREDENTIALS))
    t, data = make(parties=parties(many, many, many))
    assert 50_000 < len(data) <= MAX_TRANSCRIPT_BYTES
    assert Transcript.verify(data) == t


def test_create_refuses_an_oversized_transcript() -> None:
    long = tuple(CredentialRef("urn:" + "x" * (MAX_STRING - 4), ("VerifiableCredential",),
                               ALICE.did.did) for _ in range(MAX_CREDENTIALS))
    keys = [ALICE, BOB] + [Ed25519Key.from_seed(bytes([i]) * 32) for i in range(10, 18)]
    entries = [PartyEntry(i, key.did.did, True, long) for i, key in enumerate(keys)]
    with pytest.raises(InvalidTranscript, match="exceeds"):  # 10 x 32 x 1 KiB
        make(parties=entries)


# --- properties: parsers of untrusted bytes raise only mpcid errors -----------------------


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        Transcript.verify(data)
    except MpcidError:
        pass


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@SETTINGS
@given(st.sampled_from(sorted(json.loads(DATA))), _JSON)
def test_any_member_replaced(name: str, value: Any) -> None:
    obj = {**json.loads(DATA), name: value}
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        result = Transcript.verify(data)
    except MpcidError:
        return
    assert result == TRANSCRIPT  # only an unchanged value can pass


@SETTINGS
@given(st.integers(0, len(DATA) - 1), st.integers(1, 255))
def test_any_flipped_byte(position: int, flip: int) -> None:
    data = bytearray(DATA)
    data[position] ^= flip
    with pytest.raises((InvalidTranscript, InvalidProof)):
        Transcript.verify(bytes(data))


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, len(DATA)))
def test_any_insertion(chunk: bytes, position: int) -> None:
    data = DATA[:position] + chunk + DATA[position:]
    try:
        assert Transcript.verify(data) == TRANSCRIPT and data == DATA
    except MpcidError:
        pass


# --- writing, and no I/O in the core ------------------------------------------------------


def test_write_transcript(tmp_path: Path) -> None:
    path = tmp_path / "session.transcript.json"
    write_transcript(path, DATA)
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(InvalidTranscript):
        write_transcript(tmp_path / "bad.json", DATA + b"\n")
    assert not (tmp_path / "bad.json").exists()
    assert sorted(os.listdir(tmp_path)) == ["session.transcript.json"]  # no temp files


def test_core_imports_no_io() -> None:
    source = Path(__file__).resolve().parents[2] / "broker" / "transcript.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    assert not names & {"asyncio", "trio", "socket", "aiohttp", "selectors", "ssl",
                        "libp2p", "time"}


# --- the command line ---------------------------------------------------------------------


def mpcid(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPCID_")}
    return subprocess.run([sys.executable, "-m", "mpcid.broker", *map(str, args)],
                          input=stdin.decode() if stdin is not None else None,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def error_line(proc: subprocess.CompletedProcess[str], code: int, fragment: str) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("transcripts")
    tampered = changed(lambda o: o["parties"][2].update(admitted=False))
    declined, declined_data = make(started=None, outcome="declined",
                                   error="no\u202e credential", program_name="h\x85llo.py")
    paths = {"good": DATA, "tampered": with_sig_of(tampered), "malformed": DATA + b"\n",
             "declined": declined_data}
    for name, data in paths.items():
        (folder / f"{name}.json").write_bytes(data)
    return {name: folder / f"{name}.json" for name in paths}


def test_cli_verify_summary(files: dict[str, Path]) -> None:
    proc = mpcid("transcript", "verify", files["good"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert SESSION in out and "party 1" in out and BOB.did.did in out
    assert "completed" in out and "12.377 s" in out
    assert out.count("admitted: yes") == 3
    assert MEMBERSHIP.id is not None and MEMBERSHIP.id in out and ALICE.did.did in out


def test_cli_verify_json(files: dict[str, Path]) -> None:
    proc = mpcid("transcript", "verify", "--json", files["good"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(DATA)


def test_cli_verify_stdin(files: dict[str, Path]) -> None:
    proc = mpcid("transcript", "verify", "-", stdin=DATA)
    assert proc.returncode == 0, proc.stderr


def test_cli_never_started_and_escapes(files: dict[str, Path]) -> None:
    proc = mpcid("transcript", "verify", files["declined"])
    assert proc.returncode == 0, proc.stderr
    assert "declined: no\\u202e credential" in proc.stdout
    assert "h\\x85llo.py" in proc.stdout
    assert "never started" in proc.stdout


def test_cli_tampered(files: dict[str, Path]) -> None:
    error_line(mpcid("transcript", "verify", files["tampered"]), 1, "bad signature")


def test_cli_malformed(files: dict[str, Path]) -> None:
    error_line(mpcid("transcript", "verify", files["malformed"]), 2, "canonical")


def test_cli_missing_file(tmp_path: Path) -> None:
    error_line(mpcid("transcript", "verify", tmp_path / "nope.json"), 2, "cannot read")
