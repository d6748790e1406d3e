"""End-to-end tests of the ``mpcid`` identity commands, run as real subprocesses.

Each error path checks the exit code (1: checked and not valid; 2: unusable input) and that
stderr is exactly one line ``error: ...`` naming the problem, never a traceback.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# The helpers live in conftest.py beside this file. Load it by path under a unique name
# rather than `import conftest`, which depends on which conftest pytest imported last.
_spec = importlib.util.spec_from_file_location("_mpcid_cli_helpers",
                                               Path(__file__).with_name("conftest.py"))
assert _spec is not None and _spec.loader is not None
_helpers = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _helpers
_spec.loader.exec_module(_helpers)

Party = _helpers.Party
error_line = _helpers.error_line
last_line = _helpers.last_line
load_json = _helpers.load_json
make_party = _helpers.make_party
ok = _helpers.ok
run = _helpers.run
write_json = _helpers.write_json

ENCRYPTION = "argon2id+xsalsa20poly1305"
STATUS_URL = "https://org.example/status/1"
PAST_FROM, PAST_UNTIL = "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"
FUTURE_FROM = "2999-01-01T00:00:00Z"
DID_KEY = re.compile(r"^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}$")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58(data: bytes) -> str:
    """base58btc, written out here so the invalid DIDs do not depend on the code tested."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def issue(party: Party, subject: str, *extra: str, ctype: str = "MembershipCredential",
          claim: str = "organization=Acme") -> dict[str, Any]:
    proc = ok(run("credential", "issue", "--issuer", party.name, "--subject", subject,
                  "--type", ctype, "--claim", claim, *extra, home=party.home))
    return json.loads(proc.stdout)


# --- create-did -----------------------------------------------------------------------------


def test_create_did_default_name_refuses_existing_unless_force(tmp_path: Path) -> None:
    first = ok(run("create-did", home=tmp_path))
    did = last_line(first.stdout)
    assert DID_KEY.match(did)
    assert "created identity 'default'" in first.stderr
    record = load_json(tmp_path / "identities" / "default.json")
    assert record["did"] == did
    assert record["key"]["encryption"] == "none" and "seed" in record["key"]

    again = run("create-did", home=tmp_path)
    error_line(again, 1, "'default' exists already", "--force")
    assert load_json(tmp_path / "identities" / "default.json")["did"] == did

    replaced = ok(run("create-did", "--force", home=tmp_path))
    new_did = last_line(replaced.stdout)
    assert DID_KEY.match(new_did) and new_did != did
    assert load_json(tmp_path / "identities" / "default.json")["did"] == new_did


def test_create_did_with_name_and_did_list(tmp_path: Path) -> None:
    empty = ok(run("did", "list", home=tmp_path))
    assert empty.stdout == "" and "no identities yet" in empty.stderr

    work = last_line(ok(run("create-did", "--name", "work", home=tmp_path)).stdout)
    home = last_line(ok(run("create-did", "--name", "home.2", home=tmp_path)).stdout)
    assert (tmp_path / "identities" / "work.json").exists()
    assert work != home

    table = ok(run("did", "list", home=tmp_path)).stdout
    rows = {line.split("│")[1].strip(): line for line in table.splitlines()
            if line.count("│") >= 4}
    assert set(rows) == {"work", "home.2"}
    assert work in rows["work"] and home in rows["home.2"]
    assert "no" in rows["work"].split("│")[4]


@pytest.mark.parametrize("name", ["bad name", "../escape", "-dash-first", "x" * 65])
def test_create_did_invalid_name(tmp_path: Path, name: str) -> None:
    error_line(run("create-did", "--name", name, home=tmp_path), 2,
               "is not a valid identity name")
    assert not (tmp_path / "identities").exists() or not any(
        (tmp_path / "identities").iterdir())


def test_home_flag_on_command_and_group_without_env(tmp_path: Path) -> None:
    on_command, on_group = tmp_path / "cmd", tmp_path / "group"
    did = last_line(ok(run("create-did", "--home", on_command, home=None)).stdout)
    assert load_json(on_command / "identities" / "default.json")["did"] == did
    did2 = last_line(ok(run("--home", on_group, "create-did", "--name", "g", home=None)).stdout)
    assert load_json(on_group / "identities" / "g.json")["did"] == did2
    shown = json.loads(ok(run("did", "show", "g", "--home", on_group, home=None)).stdout)
    assert shown["id"] == did2


def test_home_flag_beats_mpcid_home(tmp_path: Path) -> None:
    env_home, flag_home = tmp_path / "env", tmp_path / "flag"
    ok(run("create-did", "--home", flag_home, "--name", "a", home=env_home))
    assert (flag_home / "identities" / "a.json").exists()
    ok(run("--home", flag_home, "create-did", "--name", "b", home=env_home))
    # An explicit --home, wherever it is given, must win over $MPCID_HOME.
    assert (flag_home / "identities" / "b.json").exists()
    assert not (env_home / "identities").exists()


def test_encrypted_identity_needs_the_passphrase(tmp_path: Path, alice: Party) -> None:
    secret = {"MPCID_PASSPHRASE": "correct horse battery staple"}
    created = ok(run("create-did", "--name", "org", home=tmp_path, env=secret))
    did = last_line(created.stdout)
    assert "(encrypted)" in created.stderr
    raw = (tmp_path / "identities" / "org.json").read_text(encoding="utf-8")
    record = json.loads(raw)
    assert record["did"] == did
    assert record["key"]["encryption"] == ENCRYPTION
    assert '"seed"' not in raw and "seed" not in record["key"]
    assert {"salt", "ciphertext", "opslimit", "memlimit"} <= set(record["key"])

    # Reading public data needs no passphrase.
    assert json.loads(ok(run("did", "show", "org", home=tmp_path)).stdout)["id"] == did
    assert "yes" in ok(run("did", "list", home=tmp_path)).stdout

    args = ("credential", "issue", "--issuer", "org", "--subject", alice.did,
            "--type", "MembershipCredential", "--claim", "organization=Acme")
    signed = json.loads(ok(run(*args, home=tmp_path, env=secret)).stdout)
    assert signed["issuer"] == did and signed["proof"]["cryptosuite"] == "eddsa-rdfc-2022"

    error_line(run(*args, home=tmp_path, env={"MPCID_PASSPHRASE": "wrong"}), 1,
               "wrong passphrase", "'org'")
    error_line(run(*args, home=tmp_path), 1, "encrypted", "MPCID_PASSPHRASE")


def _start_create_did(home: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if k not in _helpers._CLI_VARIABLES}
    return subprocess.Popen([_helpers.MPCID, "create-did", "--name", "x", "--home", str(home)],
                            env={**environment, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_create_did_racing_processes_exactly_one_wins(tmp_path: Path) -> None:
    """Issue item 9: two processes create the same name at once. With a passphrase both
    spend ~0.5 s in Argon2id between the existence check and the write, so both pass the
    check; before the fix both printed a DID and one key was lost."""
    from mpcid.identity.keystore import Keystore

    secret = {"MPCID_PASSPHRASE": "correct horse battery staple"}
    for round_ in range(3):
        home = tmp_path / f"round{round_}"
        procs = [_start_create_did(home, secret) for _ in range(2)]
        results = [(proc.returncode, out, err) for proc in procs
                   for out, err in [proc.communicate(timeout=_helpers.TIMEOUT)]]
        winners = [out for code, out, _ in results if code == 0]
        assert len(winners) == 1, results
        [(code, out, err)] = [r for r in results if r[0] != 0]
        assert (code, out) == (1, ""), results
        assert err.startswith("error: ") and len(err.splitlines()) == 1, results
        assert "'x' exists already" in err and "Traceback" not in err
        did = last_line(winners[0])
        assert load_json(home / "identities" / "x.json")["did"] == did
        stored = Keystore(home, passphrase=lambda *_: secret["MPCID_PASSPHRASE"])
        assert stored.load_identity("x").did.did == did
        assert [p.name for p in (home / "identities").iterdir()] == ["x.json"]


_SEALED = {"encryption": ENCRYPTION, "salt": base64.b64encode(b"s" * 16).decode(),
           "opslimit": 3, "memlimit": 268435456,
           "ciphertext": base64.b64encode(b"c" * 72).decode()}


@pytest.mark.parametrize(("change", "fragment"), [
    ({"memlimit": 2**42}, "memlimit 4398046511104 is outside"),
    ({"opslimit": 2**32 - 1, "memlimit": 8192}, "opslimit 4294967295 is outside"),
    ({"opslimit": 0}, "opslimit 0 is outside"),
    ({"opslimit": "3"}, "opslimit '3' is not an integer"),
    ({"memlimit": 2.5e8}, "memlimit 250000000.0 is not an integer"),
    ({"memlimit": None}, "has no memlimit"),
], ids=["memlimit-2^42", "opslimit-2^32-1", "opslimit-0", "opslimit-str", "memlimit-float",
        "memlimit-missing"])
def test_unusable_kdf_parameters_are_one_line_errors(
        tmp_path: Path, alice: Party, monkeypatch: pytest.MonkeyPatch,
        change: dict[str, Any], fragment: str) -> None:
    """Issue item 10: Argon2id costs read from an identity file are bounded; a file outside
    the bounds is reported at once (no traceback, no hour-long derivation) as damaged."""
    monkeypatch.setattr(_helpers, "TIMEOUT", 10)  # an unbounded opslimit ran for hours
    path = tmp_path / "identities" / "org.json"
    path.parent.mkdir(mode=0o700)
    sealed = {k: v for k, v in {**_SEALED, **change}.items() if v is not None}
    write_json(path, {"version": 1, "name": "org", "did": alice.did,
                      "created": "2026-11-26T10:00:00Z", "key": sealed})
    issue_args = ("credential", "issue", "--issuer", "org", "--subject", alice.did,
                  "--type", "MembershipCredential")
    for env in ({"MPCID_PASSPHRASE": "pw"}, {}):
        line = error_line(run(*issue_args, home=tmp_path, env=env), 1, "is damaged", fragment,
                          str(path), "--name org --force")
        assert "backup" in line
    # The public part stays readable.
    assert json.loads(ok(run("did", "show", "org", home=tmp_path)).stdout)["id"] == alice.did


# --- did show / resolve -------------------------------------------------------------------


def test_did_show_formats(org: Party) -> None:
    document = json.loads(ok(run("did", "show", "org", home=org.home)).stdout)
    assert document["id"] == org.did
    assert document["verificationMethod"][0]["type"] == "Multikey"
    assert document["verificationMethod"][0]["controller"] == org.did

    legacy = json.loads(ok(run("did", "show", "org", "--format",
                               "Ed25519VerificationKey2020", home=org.home)).stdout)
    assert legacy["id"] == org.did
    assert legacy["verificationMethod"][0]["type"] == "Ed25519VerificationKey2020"

    bad = run("did", "show", "org", "--format", "RSA", home=org.home)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "Invalid value for '--format'" in bad.stderr


def test_did_show_default_and_unknown_name(alice: Party) -> None:
    assert json.loads(ok(run("did", "show", home=alice.home)).stdout)["id"] == alice.did
    error_line(run("did", "show", "nobody", home=alice.home), 1, "no identity named 'nobody'")


def test_did_resolve_did_key(org: Party, verifier_home: Path) -> None:
    document = json.loads(ok(run("did", "resolve", org.did, home=verifier_home)).stdout)
    assert document["id"] == org.did
    assert org.did in document["assertionMethod"][0]
    old = json.loads(ok(run("did", "resolve", org.did, "--format",
                            "Ed25519VerificationKey2018", home=verifier_home)).stdout)
    assert old["verificationMethod"][0]["type"] == "Ed25519VerificationKey2018"


ED25519_KEY = bytes(range(1, 33))


@pytest.mark.parametrize(("did", "fragment"), [
    ("notadid", "is not a DID"),
    ("did:example:123456", "only did:key and did:web"),
    ("did:key:f" + "ab" * 34, "must be base58btc multibase"),
    ("did:key:z6Mk0OIl" + "1" * 40, "not a base58btc character"),
    ("did:key:z" + b58(b"\xe7\x01" + b"\x02" * 33), "multicodec 0xe7"),
    ("did:key:z" + b58(b"\xed\x01" + ED25519_KEY[:31]), "is 32 bytes, this one is 31"),
    ("did:key:z" + b58(b"\xed\x01" + ED25519_KEY + b"\x00"), "this one is 33"),
])
def test_did_resolve_invalid(verifier_home: Path, did: str, fragment: str) -> None:
    error_line(run("did", "resolve", did, home=verifier_home), 2, fragment)


# --- credential issue -----------------------------------------------------------------------


def test_credential_issue_output(org: Party, alice: Party,
                                 membership: tuple[Path, Any]) -> None:
    _, proc = membership
    assert proc.stderr == ""
    vc = json.loads(proc.stdout)
    assert vc["issuer"] == org.did
    assert vc["type"] == ["VerifiableCredential", "MembershipCredential"]
    assert vc["credentialSubject"] == {"id": alice.did, "organization": "Acme"}
    assert vc["validUntil"] == "2099-01-01T00:00:00Z"
    assert "validFrom" in vc and "credentialStatus" not in vc
    assert vc["proof"]["type"] == "DataIntegrityProof"
    assert vc["proof"]["cryptosuite"] == "eddsa-rdfc-2022"
    assert vc["proof"]["proofPurpose"] == "assertionMethod"
    assert vc["proof"]["verificationMethod"].startswith(org.did + "#")


def test_credential_issue_out_file(org: Party, alice: Party, tmp_path: Path) -> None:
    out = tmp_path / "role.json"
    proc = ok(run("credential", "issue", "--issuer", "org", "--subject", alice.did,
                  "--type", "RoleCredential", "--claim", "role=admin", "--claim", "team=mpc",
                  "--valid-from", "2024-05-01T12:00:00+02:00", "--out", out, home=org.home))
    assert proc.stdout == "" and f"wrote {out}" in proc.stderr
    vc = load_json(out)
    assert vc["credentialSubject"] == {"id": alice.did, "role": "admin", "team": "mpc"}
    assert vc["validFrom"] == "2024-05-01T10:00:00Z" and "validUntil" not in vc
    assert vc["proof"]["cryptosuite"] == "eddsa-rdfc-2022"
    # Only contexts a verifier elsewhere can load (not the unpublished mpcid/v1).
    assert vc["@context"] == ["https://www.w3.org/ns/credentials/v2",
                              "https://www.w3.org/ns/credentials/undefined-terms/v2"]


def test_credential_issue_out_in_missing_folder(org: Party, alice: Party,
                                                tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "folder" / "vc.json"
    proc = run("credential", "issue", "--issuer", "org", "--subject", alice.did,
               "--type", "MembershipCredential", "--out", out, home=org.home)
    error_line(proc, 2, str(out.parent))
    assert not out.exists()


@pytest.mark.parametrize(("extra", "code", "fragment"), [
    (("--claim", "organization"), 2, "'organization' is not KEY=VALUE"),
    (("--claim", "=Acme"), 2, "is not KEY=VALUE"),
    (("--expires", "2000-01-01T00:00:00Z"), 2, "is not after the start of validity"),
    (("--subject", "not-a-did"), 2, "is neither a DID nor one of your contacts"),
    (("--subject", "did:nope"), 2, "is not a DID"),
    (("--issuer", "nobody"), 1, "no identity named 'nobody'"),
    (("--status-list", "https://elsewhere.example/list"), 2, "not hosted here"),
    (("--status-list", "https://elsewhere.example/list#x"), 2, "is not URL#INDEX"),
])
def test_credential_issue_errors(org: Party, alice: Party, extra: tuple[str, ...],
                                 code: int, fragment: str) -> None:
    args = {"--issuer": "org", "--subject": alice.did, "--type": "MembershipCredential"}
    rest: list[str] = []
    for i in range(0, len(extra), 2):
        if extra[i] in args:
            args[extra[i]] = extra[i + 1]
        else:
            rest += extra[i:i + 2]
    flat = [x for pair in args.items() for x in pair]
    error_line(run("credential", "issue", *flat, *rest, home=org.home), code, fragment)


@pytest.mark.parametrize(("option", "value"), [
    ("--expires", "next tuesday"),
    ("--valid-from", "2024-13-45"),
])
def test_credential_issue_bad_date_is_a_usage_error(org: Party, alice: Party, option: str,
                                                    value: str) -> None:
    # A malformed option is unusable input (exit 2), not an invalid credential (exit 1).
    proc = run("credential", "issue", "--issuer", "org", "--subject", alice.did, "--type",
               "MembershipCredential", option, value, home=org.home)
    line = error_line(proc, 2, option, "is not an ISO 8601 date-time")
    assert "verifiable credential or presentation" not in line


def test_credential_issue_claim_named_id_is_a_usage_error(org: Party, alice: Party) -> None:
    proc = run("credential", "issue", "--issuer", "org", "--subject", alice.did, "--type",
               "MembershipCredential", "--claim", "id=did:key:zOther", home=org.home)
    error_line(proc, 2, "may not be named 'id'")


# --- credential verify ----------------------------------------------------------------------


def test_verify_valid_text_json_and_stdin(membership_file: Path, org: Party, alice: Party,
                                          verifier_home: Path) -> None:
    text = ok(run("credential", "verify", membership_file, home=verifier_home)).stdout
    assert text.startswith("valid: VerifiableCredential, MembershipCredential issued by "
                           f"{org.did} to {alice.did} (eddsa-rdfc-2022)")
    result = json.loads(ok(run("credential", "verify", "--json", membership_file,
                               home=verifier_home)).stdout)
    assert result["valid"] is True
    assert result["issuer"] == org.did and result["subject"] == alice.did
    assert result["claims"] == {"organization": "Acme"}
    assert result["type"] == ["VerifiableCredential", "MembershipCredential"]
    assert result["validUntil"] == "2099-01-01T00:00:00Z"
    assert result["status"] == "checked"
    piped = run("credential", "verify", "-", home=verifier_home,
                input=membership_file.read_text(encoding="utf-8"))
    assert ok(piped).stdout.startswith("valid: ")


def test_verify_tampered_claim(membership_doc: dict[str, Any], tmp_path: Path,
                               verifier_home: Path) -> None:
    membership_doc["credentialSubject"]["organization"] = "Evil Corp"
    path = write_json(tmp_path / "tampered.json", membership_doc)
    error_line(run("credential", "verify", path, home=verifier_home), 1, "bad signature")
    as_json = run("credential", "verify", "--json", path, home=verifier_home)
    error_line(as_json, 1, "bad signature")
    report = json.loads(as_json.stdout)
    assert report["valid"] is False and report["error"] == "InvalidProof"
    assert "bad signature" in report["reason"]


def test_verify_expired_and_at(org: Party, alice: Party, tmp_path: Path,
                               verifier_home: Path) -> None:
    vc = issue(org, alice.did, "--valid-from", PAST_FROM, "--expires", PAST_UNTIL)
    path = write_json(tmp_path / "old.json", vc)
    error_line(run("credential", "verify", path, home=verifier_home), 1,
               "expired on 2021-01-01T00:00:00Z")
    ok(run("credential", "verify", path, "--at", "2020-06-01T00:00:00Z", home=verifier_home))
    error_line(run("credential", "verify", path, "--at", "2019-12-31T23:59:59Z",
                   home=verifier_home), 1, "not valid until 2020-01-01T00:00:00Z")


def test_verify_not_yet_valid(org: Party, alice: Party, tmp_path: Path,
                              verifier_home: Path) -> None:
    path = write_json(tmp_path / "future.json",
                      issue(org, alice.did, "--valid-from", FUTURE_FROM))
    error_line(run("credential", "verify", path, home=verifier_home), 1,
               "not valid until 2999-01-01T00:00:00Z")
    ok(run("credential", "verify", path, "--at", "3000-01-01T00:00:00Z", home=verifier_home))


def test_verify_bad_at_is_a_usage_error(membership_file: Path, verifier_home: Path) -> None:
    line = error_line(run("credential", "verify", membership_file, "--at", "yesterday",
                          home=verifier_home), 2, "--at", "is not an ISO 8601 date-time")
    assert "verifiable credential or presentation" not in line


def test_verify_unknown_context_then_given_context(membership_doc: dict[str, Any],
                                                   tmp_path: Path,
                                                   verifier_home: Path) -> None:
    url = "https://contexts.example/extra/v1"
    membership_doc["@context"].append(url)
    path = write_json(tmp_path / "extra-context.json", membership_doc)
    error_line(run("credential", "verify", path, home=verifier_home), 1,
               f"unknown JSON-LD context {url}", "--context URL=FILE")

    # With the context given, it is processed and the signature is checked. This context
    # changes what the credential's terms mean (another @vocab), so it no longer verifies.
    context = write_json(tmp_path / "extra.jsonld",
                         {"@context": {"@vocab": "https://contexts.example/vocab#"}})
    line = error_line(run("credential", "verify", path, "--context", f"{url}={context}",
                          home=verifier_home), 1, "bad signature")
    assert "context" not in line.split("(")[0]

    # A context file that cannot be read is a usage error.
    error_line(run("credential", "verify", path, "--context", f"{url}={tmp_path / 'nope'}",
                   home=verifier_home), 2, "cannot read JSON-LD context file")
    error_line(run("credential", "verify", path, "--context", url, home=verifier_home), 2,
               "--context", "is not KEY=VALUE")


def test_verify_malformed_json(tmp_path: Path, verifier_home: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"@context": [', encoding="utf-8")
    error_line(run("credential", "verify", path, home=verifier_home), 1, "is not valid JSON")
    not_object = write_json(tmp_path / "list.json", [1, 2])
    error_line(run("credential", "verify", not_object, home=verifier_home), 1,
               "is not a JSON object")


def test_verify_nonexistent_file(tmp_path: Path, verifier_home: Path) -> None:
    error_line(run("credential", "verify", tmp_path / "missing.json", home=verifier_home), 2,
               "cannot read credential", "No such file")


def test_verify_unsupported_cryptosuite(membership_doc: dict[str, Any], tmp_path: Path,
                                        verifier_home: Path) -> None:
    membership_doc["proof"]["cryptosuite"] = "ecdsa-rdfc-2019"
    path = write_json(tmp_path / "ecdsa.json", membership_doc)
    error_line(run("credential", "verify", path, home=verifier_home), 1,
               "unsupported cryptosuite 'ecdsa-rdfc-2019'")


def test_verify_unsigned(membership_doc: dict[str, Any], tmp_path: Path,
                         verifier_home: Path) -> None:
    del membership_doc["proof"]
    path = write_json(tmp_path / "unsigned.json", membership_doc)
    error_line(run("credential", "verify", path, home=verifier_home), 1, "has no proof")


# --- status lists and revocation ----------------------------------------------------------


def test_status_list_issue_revoke_verify(tmp_path: Path, alice: Party, bob: Party,
                                         verifier_home: Path) -> None:
    issuer = make_party(tmp_path / "issuer", "org")
    published = tmp_path / "www" / "status-1.json"
    published.parent.mkdir()
    created = ok(run("status-list", "create", "--issuer", "org", "--url", STATUS_URL,
                     "--publish", published, home=issuer.home))
    assert created.stdout == ""
    status_vc = load_json(published)
    assert status_vc["id"] == STATUS_URL and status_vc["issuer"] == issuer.did
    assert "BitstringStatusListCredential" in status_vc["type"]
    assert status_vc["credentialSubject"]["statusPurpose"] == "revocation"

    error_line(run("status-list", "create", "--issuer", "org", "--url", STATUS_URL,
                   home=issuer.home), 2, "exists already")

    files = {}
    for index, holder in enumerate((alice, bob)):
        vc = issue(issuer, holder.did, "--status-list", STATUS_URL)
        entry = vc["credentialStatus"]
        assert entry["statusListIndex"] == str(index)
        assert entry["statusListCredential"] == STATUS_URL
        assert entry["type"] == "BitstringStatusListEntry"
        assert entry["statusPurpose"] == "revocation"
        files[index] = write_json(tmp_path / f"vc{index}.json", vc)

    status_file = f"{STATUS_URL}={published}"
    ok(run("credential", "verify", files[0], "--status-file", status_file, home=verifier_home))

    revoked = ok(run("credential", "revoke", files[0], home=issuer.home))
    assert revoked.stdout.strip() == f"revoked: {STATUS_URL}#0"
    assert load_json(published) != status_vc

    error_line(run("credential", "verify", files[0], "--status-file", status_file,
                   home=verifier_home), 1, "is revoked", f"{STATUS_URL}, index 0")
    ok(run("credential", "verify", files[1], "--status-file", status_file, home=verifier_home))
    # The issuer hosts the list: its keystore needs no --status-file.
    error_line(run("credential", "verify", files[0], home=issuer.home), 1, "revoked")

    skipped = json.loads(ok(run("credential", "verify", files[0], "--no-status", "--json",
                                home=verifier_home)).stdout)
    assert skipped["valid"] is True and skipped["status"] == "not checked"

    by_entry = ok(run("credential", "revoke", "--status-list", f"{STATUS_URL}#1",
                      home=issuer.home))
    assert by_entry.stdout.strip() == f"revoked: {STATUS_URL}#1"
    error_line(run("credential", "verify", files[1], "--status-file", status_file,
                   home=verifier_home), 1, "revoked", "index 1")

    # A third credential gets the next index and is valid at the issuer without a file.
    third = write_json(tmp_path / "vc2.json", issue(issuer, alice.did, "--status-list",
                                                    STATUS_URL))
    assert load_json(third)["credentialStatus"]["statusListIndex"] == "2"
    ok(run("credential", "verify", third, home=issuer.home))

    undone = ok(run("credential", "revoke", "--status-list", f"{STATUS_URL}#1", "--undo",
                    home=issuer.home))
    assert undone.stdout.strip() == f"cleared: {STATUS_URL}#1"
    ok(run("credential", "verify", files[1], "--status-file", status_file, home=verifier_home))


def test_status_list_create_errors(org: Party, tmp_path: Path) -> None:
    home = tmp_path / "issuer"
    error_line(run("status-list", "create", "--issuer", "org", "--url", "ftp://x.example/1",
                   home=home), 2, "is not an http(s) or file URL")
    error_line(run("status-list", "create", "--issuer", "nobody", "--url", STATUS_URL,
                   home=org.home), 1, "no identity named 'nobody'")


def test_status_list_create_without_publish_prints_it(tmp_path: Path) -> None:
    issuer = make_party(tmp_path, "org")
    url = "file:///srv/status/2.json"
    proc = ok(run("status-list", "create", "--issuer", "org", "--url", url,
                  "--purpose", "suspension", home=issuer.home))
    vc = json.loads(proc.stdout)
    assert vc["id"] == url and vc["credentialSubject"]["statusPurpose"] == "suspension"
    assert vc["proof"]["cryptosuite"] == "eddsa-rdfc-2022"
    holder = last_line(ok(run("create-did", "--name", "holder", home=issuer.home)).stdout)
    cred = write_json(tmp_path / "s.json", issue(issuer, holder, "--status-list", f"{url}#7"))
    assert load_json(cred)["credentialStatus"]["statusListIndex"] == "7"
    suspended = ok(run("credential", "revoke", cred, home=issuer.home))
    assert suspended.stdout.strip() == f"suspended: {url}#7"
    error_line(run("credential", "revoke", "--status-list", f"{url}#131072",
                   home=issuer.home), 2, "outside status list")


def test_revoke_errors(org: Party, membership_file: Path, tmp_path: Path) -> None:
    error_line(run("credential", "revoke", home=org.home), 2,
               "give either a credential (FILE or ID) or --status-list")
    error_line(run("credential", "revoke", membership_file, "--status-list",
                   f"{STATUS_URL}#0", home=org.home), 2, "give either")
    error_line(run("credential", "revoke", membership_file, home=org.home), 2,
               "has no credentialStatus")
    error_line(run("credential", "revoke", "--status-list", "https://x.example/1#3",
                   home=org.home), 2, "is not hosted in this keystore")
    error_line(run("credential", "revoke", "--status-list", "https://x.example/1",
                   home=org.home), 2, "is not URL#INDEX")


def test_revoke_credential_with_malformed_status_entry(org: Party, alice: Party,
                                                       tmp_path: Path) -> None:
    vc = issue(org, alice.did, "--status-list", "https://x.example/list#4")
    del vc["credentialStatus"]["statusListIndex"]
    path = write_json(tmp_path / "no-index.json", vc)
    error_line(run("credential", "revoke", path, home=org.home), 2, "statusListIndex")


def test_unreachable_status_list(org: Party, alice: Party, tmp_path: Path,
                                 verifier_home: Path) -> None:
    path = write_json(tmp_path / "remote.json",
                      issue(org, alice.did, "--status-list", "http://127.0.0.1:9/x#5"))
    error_line(run("credential", "verify", path, home=verifier_home), 1,
               "cannot fetch status list http://127.0.0.1:9/x")
    error_line(run("credential", "verify", path, "--status-file",
                   f"http://127.0.0.1:9/x={tmp_path / 'missing.json'}", home=verifier_home),
               1, "cannot read status list")
    ok(run("credential", "verify", path, "--no-status", home=verifier_home))


def test_missing_ca_file(org: Party, alice: Party, tmp_path: Path,
                         verifier_home: Path) -> None:
    path = write_json(tmp_path / "remote.json",
                      issue(org, alice.did, "--status-list", "https://127.0.0.1:9/x#5"))
    error_line(run("credential", "verify", path, "--ca-file", tmp_path / "no-ca.pem",
                   home=verifier_home), 2, "no-ca.pem")


# --- credential import / list / show --------------------------------------------------------


def test_import_list_show(membership_file: Path, membership_doc: dict[str, Any],
                          tmp_path: Path, alice: Party) -> None:
    holder = tmp_path / "holder"
    empty = ok(run("credential", "list", home=holder))
    assert empty.stdout == "" and "no credentials yet" in empty.stderr

    imported = ok(run("credential", "import", membership_file, home=holder))
    doc_id = imported.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", doc_id)
    assert "none of your identities" in imported.stderr  # holder has no identity here
    assert "imported MembershipCredential from did:key:" in imported.stderr
    assert "(organization=Acme), valid until 2099-01-01" in imported.stderr

    listing = ok(run("credential", "list", home=holder)).stdout
    row = next(line for line in listing.splitlines() if doc_id in line)
    assert "MembershipCredential" in row and alice.did in row and "2099-01-01" in row

    assert json.loads(ok(run("credential", "show", doc_id, home=holder)).stdout) == \
        membership_doc
    error_line(run("credential", "show", "0123456789abcdef", home=holder), 1,
               "no stored credential with id '0123456789abcdef'")
    error_line(run("credential", "show", "../identities/x", home=holder), 1,
               "no stored credential")

    membership_doc["credentialSubject"]["organization"] = "Evil Corp"
    tampered = write_json(tmp_path / "tampered.json", membership_doc)
    error_line(run("credential", "import", tampered, home=holder), 1, "bad signature")
    stored = sorted(p.name for p in (holder / "credentials").iterdir())
    assert stored == [f"{doc_id}.json"]


def test_import_json_for_own_identity(membership_file: Path, alice: Party,
                                      tmp_path: Path) -> None:
    # A copy of alice's keystore, so the shared one stays unchanged.
    home = tmp_path / "alice"
    (home / "identities").mkdir(parents=True)
    (home / "identities" / "default.json").write_bytes(
        (alice.home / "identities" / "default.json").read_bytes())
    proc = ok(run("credential", "import", "--json", membership_file, home=home))
    summary = json.loads(proc.stdout)
    assert summary["subject"] == alice.did and summary["claims"] == {"organization": "Acme"}
    assert "none of your identities" not in proc.stderr
    # The JSON must tell the local ID that `credential show` and `present` take.
    (stored,) = (home / "credentials").glob("*.json")
    assert stored.stem in summary.values(), summary


# --- presentations --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def presentation(org: Party, alice: Party, membership: tuple[Path, Any],
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice presents her stored membership credential (by id) and a role credential file."""
    folder = tmp_path_factory.mktemp("presentation")
    home = folder / "alice"
    (home / "identities").mkdir(parents=True)
    (home / "identities" / "default.json").write_bytes(
        (alice.home / "identities" / "default.json").read_bytes())
    doc_id = ok(run("credential", "import", membership[0], home=home)).stdout.strip()
    role = write_json(folder / "role.json",
                      issue(org, alice.did, ctype="RoleCredential", claim="role=admin"))
    out = folder / "vp.json"
    proc = ok(run("present", "--credential", doc_id, "--credential", role, "--challenge",
                  "c-123", "--domain", "session:42", "--out", out, home=home))
    assert f"wrote {out}" in proc.stderr
    return out


def test_present_document(presentation: Path, alice: Party) -> None:
    vp = load_json(presentation)
    assert vp["type"] == ["VerifiablePresentation"] and vp["holder"] == alice.did
    assert [c["type"][1] for c in vp["verifiableCredential"]] == [
        "MembershipCredential", "RoleCredential"]
    assert vp["proof"]["challenge"] == "c-123" and vp["proof"]["domain"] == "session:42"
    assert vp["proof"]["proofPurpose"] == "authentication"


def test_presentation_verify(presentation: Path, org: Party, alice: Party,
                             verifier_home: Path) -> None:
    base = ("presentation", "verify", presentation, "--challenge", "c-123", "--domain",
            "session:42")
    text = ok(run(*base, home=verifier_home)).stdout
    assert text.strip() == f"valid: presentation by {alice.did} with 2 credential(s)"
    result = json.loads(ok(run(*base, "--json", "--require",
                               f"MembershipCredential@{org.did};organization=Acme",
                               "--require", f"RoleCredential@{org.did};role=admin",
                               home=verifier_home)).stdout)
    assert result["valid"] is True and result["holder"] == alice.did
    assert result["challenge"] == "c-123" and result["domain"] == "session:42"
    assert [c["type"][-1] for c in result["credentials"]] == ["MembershipCredential",
                                                            "RoleCredential"]


def test_presentation_wrong_challenge_or_domain(presentation: Path,
                                                verifier_home: Path) -> None:
    error_line(run("presentation", "verify", presentation, "--challenge", "other",
                   "--domain", "session:42", home=verifier_home), 1, "wrong challenge")
    proc = run("presentation", "verify", presentation, "--challenge", "c-123", "--domain",
               "session:43", "--json", home=verifier_home)
    error_line(proc, 1, "wrong domain")
    assert json.loads(proc.stdout)["error"] == "PresentationMismatch"


def test_presentation_requirements_not_met(presentation: Path, org: Party, bob: Party,
                                           verifier_home: Path) -> None:
    base = ("presentation", "verify", presentation, "--challenge", "c-123", "--domain",
            "session:42")
    requirement = f"MembershipCredential@{bob.did}"
    error_line(run(*base, "--require", requirement, home=verifier_home), 1,
               f"does not meet the requirement {requirement}", f"not by {bob.did}")
    other = f"MembershipCredential@{org.did};organization=Other"
    error_line(run(*base, "--require", other, home=verifier_home), 1,
               f"requirement {other}", "organization='Acme', required organization='Other'")
    error_line(run(*base, "--require", f"DegreeCredential@{org.did}", home=verifier_home), 1,
               "no credential of type DegreeCredential")
    error_line(run(*base, "--require", "MembershipCredential", home=verifier_home), 2,
               "is not TYPE@ISSUER_DID")


def test_presentation_tampered(presentation: Path, tmp_path: Path,
                               verifier_home: Path) -> None:
    vp = load_json(presentation)
    vp["verifiableCredential"][1]["credentialSubject"]["role"] = "root"
    path = write_json(tmp_path / "vp.json", vp)
    error_line(run("presentation", "verify", path, "--challenge", "c-123", "--domain",
                   "session:42", home=verifier_home), 1, "bad signature")


def test_present_refuses_credential_of_another_holder(membership_file: Path,
                                                      bob: Party, alice: Party) -> None:
    error_line(run("present", "--credential", membership_file, "--challenge", "c",
                   "--domain", "d", home=bob.home), 2,
               f"was issued to {alice.did}", f"not to default ({bob.did})")


def test_present_unknown_credential(alice: Party, tmp_path: Path) -> None:
    error_line(run("present", "--credential", "feedfacefeedface", "--challenge", "c",
                   "--domain", "d", home=alice.home), 1, "no stored credential")


# --- demo and help --------------------------------------------------------------------------


def test_demo(tmp_path: Path) -> None:
    proc = ok(run("demo", home=tmp_path))
    assert "admitted" in proc.stdout and "not started" in proc.stdout
    assert "revoked" in proc.stdout


COMMANDS = [
    (), ("create-did",), ("did",), ("did", "list"), ("did", "show"), ("did", "resolve"),
    ("credential",), ("credential", "issue"), ("credential", "verify"),
    ("credential", "import"), ("credential", "list"), ("credential", "show"),
    ("credential", "revoke"), ("status-list",), ("status-list", "create"), ("present",),
    ("presentation",), ("presentation", "verify"), ("demo",),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mpcid")
def test_help(command: tuple[str, ...], tmp_path: Path) -> None:
    proc = ok(run(*command, "--help", home=tmp_path))
    assert proc.stdout.startswith(f"Usage: mpcid {' '.join(command)}".rstrip())
    assert "--help" in proc.stdout and proc.stderr == ""
    assert not tmp_path.joinpath("identities").exists()


def test_unknown_command(tmp_path: Path) -> None:
    proc = run("frobnicate", home=tmp_path)
    assert proc.returncode == 2 and "No such command 'frobnicate'" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- a credential as one pasted line (specs/identity.md 2.1) --------------------------------
# `credential issue --token`, then `credential import` of the line itself, a file holding
# it, or standard input; damaged lines refused in one line naming what is wrong.


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> tuple[Party, Party, str]:
    """(issuer, member, the member's credential as a token)."""
    root = tmp_path_factory.mktemp("token")
    org, member = make_party(root / "org", "org"), make_party(root / "member")
    proc = ok(run("credential", "issue", "--issuer", "org", "--subject", member.did, "--type",
                  "MembershipCredential", "--claim", "organization=Acme", "--token",
                  home=org.home))
    token = proc.stdout.strip()
    assert token.startswith("mpcidvc1:") and "\n" not in token and len(token) < 2000
    return org, member, token


def test_the_pasted_line_imports_and_verifies(issued: tuple[Party, Party, str]) -> None:
    _, member, token = issued
    local_id = last_line(ok(run("credential", "import", token, home=member.home)).stdout)
    assert local_id in ok(run("credential", "list", home=member.home)).stdout
    verified = ok(run("credential", "verify", token, home=member.home)).stdout
    assert verified.startswith("valid: ") and "MembershipCredential" in verified
    # Wrapped by a mail client: whitespace inside the line does not matter.
    wrapped = "\n".join(token[i:i + 60] for i in range(0, len(token), 60))
    assert last_line(ok(run("credential", "import", wrapped, home=member.home)).stdout) \
        == local_id


def test_a_file_or_standard_input_holding_the_line_or_json(
        issued: tuple[Party, Party, str], tmp_path: Path) -> None:
    org, member, token = issued
    ids = set()
    (tmp_path / "token.txt").write_text(token + "\n")
    ids.add(last_line(ok(run("credential", "import", tmp_path / "token.txt",
                             home=member.home)).stdout))
    ids.add(last_line(ok(run("credential", "import", "-", input=token,
                             home=member.home)).stdout))
    # --token --out writes the line to a file; plain JSON pasted works as well.
    ok(run("credential", "issue", "--issuer", "org", "--subject", member.did, "--type",
           "MembershipCredential", "--token", "--out", tmp_path / "t.txt", home=org.home))
    assert (tmp_path / "t.txt").read_text().startswith("mpcidvc1:")
    ok(run("credential", "issue", "--issuer", "org", "--subject", member.did, "--type",
           "MembershipCredential", "--out", tmp_path / "c.json", home=org.home))
    pasted_json = (tmp_path / "c.json").read_text()
    assert json.loads(pasted_json)["type"] == ["VerifiableCredential", "MembershipCredential"]
    ok(run("credential", "import", pasted_json, home=member.home))
    assert len(ids) == 1  # the same credential, the same local id


@pytest.mark.parametrize("damage,fragments", [
    (lambda t: t[:len(t) // 2], ["copy the whole mpcidvc1: line again"]),
    (lambda t: t[:40] + "*" + t[41:], ["not base64url"]),
    (lambda t: "mpcidvc2:" + t[9:], ["version mpcidvc2: is not supported"]),
    (lambda t: "mpcid1:" + t[9:], ["invitation token, not a credential", "mpcid join"]),
    (lambda t: "   ", ["no credential given"]),
    (lambda t: "{not json", ["not valid JSON"]),
    (lambda t: "hello", ["cannot read credential hello"]),
], ids=["truncated", "not-base64", "other-version", "invitation", "empty", "bad-json",
        "neither"])
def test_damaged_input_is_refused_in_one_line(issued: tuple[Party, Party, str],
                                              damage: object, fragments: list[str]) -> None:
    _, member, token = issued
    assert callable(damage)
    before = ok(run("credential", "list", home=member.home)).stdout
    proc = run("credential", "import", damage(token), home=member.home)
    error_line(proc, proc.returncode if proc.returncode in (1, 2) else -1, *fragments)
    assert ok(run("credential", "list", home=member.home)).stdout == before


def test_a_file_of_something_else_is_refused(issued: tuple[Party, Party, str],
                                             tmp_path: Path) -> None:
    _, member, _ = issued
    for name, content, fragment in (("list.json", "[1, 2]", "is not a JSON object"),
                                    ("text.txt", "hello", "neither JSON nor an mpcidvc1:"),
                                    ("obj.json", '{"a": 1}', "")):
        (tmp_path / name).write_text(content)
        proc = run("credential", "import", tmp_path / name, home=member.home)
        assert proc.returncode in (1, 2)
        error_line(proc, proc.returncode, fragment)


def test_a_missing_file_names_the_other_ways(issued: tuple[Party, Party, str]) -> None:
    _, member, _ = issued
    error_line(run("credential", "import", "no-such-file.json", home=member.home), 2,
               "cannot read credential no-such-file.json", "paste the mpcidvc1: line")


def test_join_given_a_credential_token_says_what_it_is(issued: tuple[Party, Party, str],
                                                       tmp_path: Path) -> None:
    _, member, token = issued
    program = tmp_path / "p.py"
    program.write_text("print(1)\n")
    error_line(run("join", token, "--program", program, home=member.home), 2,
               "credential token, not an invitation", "mpcid credential import")


def test_status_list_publishing_is_explained_and_checked(tmp_path: Path, alice: Party) -> None:
    issuer = make_party(tmp_path / "issuer", "org")
    served = tmp_path / "www" / "served.json"
    served.parent.mkdir()
    url = served.as_uri()
    published = tmp_path / "publish.json"
    created = ok(run("status-list", "create", "--issuer", "org", "--url", url,
                     "--publish", published, home=issuer.home))
    assert f"verifiers fetch this list from {url}: serve {published} there" in created.stderr
    assert "valid for 7 days" in created.stderr and "status-list check" in created.stderr
    missing = run("status-list", "check", home=issuer.home)
    assert missing.returncode == 1 and f"{url}: not served (" in missing.stdout
    served.write_bytes(published.read_bytes())
    current = ok(run("status-list", "check", "--url", url, home=issuer.home))
    assert current.stdout == f"{url}: served, and it is the current signed list\n"
    issue(issuer, alice.did, "--status-list", url)
    [entry] = json.loads(ok(run("credential", "issued", "--json", home=issuer.home)).stdout)
    assert entry["state"] == "valid" and entry["status"] == f"{url}#0"
    assert ok(run("credential", "revoke", entry["id"], home=issuer.home)).stdout == \
        f"revoked: {url}#0\n"
    [entry] = json.loads(ok(run("credential", "issued", "--json", home=issuer.home)).stdout)
    assert entry["state"] == "revoked"
    older = run("status-list", "check", home=issuer.home)
    assert older.returncode == 1 and "an older list, without the latest revocations" in \
        older.stdout
    error_line(run("status-list", "check", "--url", "https://other.example/1",
                   home=issuer.home), 2, "is not hosted in this keystore")


def test_contacts_stand_for_dids_in_commands(tmp_path: Path, alice: Party) -> None:
    issuer = make_party(tmp_path / "issuer", "org")
    ok(run("contacts", "add", "alice", alice.did, home=issuer.home))
    listed = ok(run("contacts", home=issuer.home)).stdout
    assert listed.split() == ["alice", alice.did]
    issued = json.loads(ok(run("credential", "issue", "--issuer", "org", "--subject", "alice",
                               "--type", "MembershipCredential", home=issuer.home)).stdout)
    assert issued["credentialSubject"]["id"] == alice.did
    error_line(run("credential", "issue", "--issuer", "org", "--subject", "mallory",
                   "--type", "MembershipCredential", home=issuer.home), 2,
               "'mallory' is neither a DID nor one of your contacts",
               "mpcid contacts add mallory DID")
    error_line(run("contacts", "add", "alice", issuer.did, home=issuer.home), 2,
               "contact alice is", "remove it first")
    ok(run("contacts", "remove", "alice", home=issuer.home))
    assert json.loads(ok(run("contacts", "list", "--json", home=issuer.home)).stdout) == {}
