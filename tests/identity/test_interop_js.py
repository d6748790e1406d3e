"""Interoperability with the Digital Bazaar JavaScript libraries (``@digitalbazaar/vc`` 7).

Credentials and presentations made by the real ``mpcid`` command line must verify in the
standard JavaScript verifier, edits after signing must not, and a credential issued by those
libraries must verify in ``mpcid``. The JavaScript side (``tests/interop/js``) uses only its
own published context packages and resolves did:key offline; see ``tests/interop/README.md``.

``node_modules`` is installed with ``npm ci`` from the committed lock file when missing or
older than the lock file. Missing node/npm or a failed install fail these tests (not skip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parents[1] / "interop" / "js"
NPM_CI_TIMEOUT = 300
TIMEOUT = 60
MIN_NODE = 18

_next_to_python = Path(sys.executable).parent / "mpcid"
MPCID = str(_next_to_python) if _next_to_python.exists() else shutil.which("mpcid")

PUBLISHED_CONTEXTS = ["https://www.w3.org/ns/credentials/v2",
                      "https://www.w3.org/ns/credentials/undefined-terms/v2"]
EXPIRES = "2099-01-01T00:00:00Z"
CHALLENGE, DOMAIN = "c-4f1d9a", "session.interop.example"
STATUS_URL = "https://org.interop.example/status/1"

Doc = dict[str, Any]


# --- the JavaScript side ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    """Path of ``node``, with ``tests/interop/js/node_modules`` installed from the lock."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail(f"node and npm (node >= {MIN_NODE}) are needed for the JavaScript "
                    f"interop tests; found node={node}, npm={npm}", pytrace=False)
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             timeout=TIMEOUT, check=False).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if not major or int(major.group(1)) < MIN_NODE:
        pytest.fail(f"node >= {MIN_NODE} is needed, found {version or 'nothing'}",
                    pytrace=False)
    installed = JS_DIR / "node_modules" / ".package-lock.json"  # written by npm ci
    wanted = max((JS_DIR / name).stat().st_mtime
                 for name in ("package.json", "package-lock.json"))
    if not installed.exists() or installed.stat().st_mtime < wanted:
        command = [npm, "ci", "--no-audit", "--no-fund"]
        try:
            proc = subprocess.run(command, cwd=JS_DIR, capture_output=True, text=True,
                                  timeout=NPM_CI_TIMEOUT, stdin=subprocess.DEVNULL,
                                  check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(command[1:])}` in {JS_DIR} took more than "
                        f"{NPM_CI_TIMEOUT} s (is the npm registry reachable?)", pytrace=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            pytest.fail(f"`npm ci` in {JS_DIR} failed (exit {proc.returncode}); the npm "
                        f"registry must be reachable:\n{tail}", pytrace=False)
    return node


def js_verify(node: str, document: Doc, *args: str) -> tuple[bool, str]:
    """Run verify.mjs on ``document``; return (verified, error). Exit 0/1 must agree with
    the printed result; anything else (a crash, bad usage) fails the test."""
    proc = subprocess.run([node, "verify.mjs", *args], cwd=JS_DIR, input=json.dumps(document),
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    where = f"verify.mjs {' '.join(args)} -> exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    assert proc.returncode in (0, 1), where
    result = json.loads(proc.stdout)
    assert result["verified"] is (proc.returncode == 0), where
    return result["verified"], result.get("error", "")


def js_issue(node: str, subject: str, *claims: str) -> Doc:
    proc = subprocess.run([node, "issue.mjs", "--subject", subject, "--type",
                           "MemberCredential", "--valid-until", EXPIRES,
                           *(a for claim in claims for a in ("--claim", claim))],
                          cwd=JS_DIR, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, f"issue.mjs -> exit {proc.returncode}\n{proc.stderr}"
    credential: Doc = json.loads(proc.stdout)
    return credential


# --- the mpcid side, through its command line ---------------------------------------------------


def mpcid(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``mpcid ARGS --home HOME``, without the caller's MPCID_* settings (so no passphrase:
    keys are stored unencrypted), stdin closed."""
    assert MPCID, "the mpcid console script is not installed next to this Python"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MPCID_")}
    return subprocess.run([MPCID, *map(str, args), "--home", str(home)], env=environment,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (
        f"{' '.join(map(str, proc.args))} -> exit {proc.returncode}\n"
        f"{proc.stdout}{proc.stderr}")
    return proc


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), (
        f"exit {proc.returncode}, stderr:\n{proc.stderr}")
    return lines[0]


@dataclass(frozen=True)
class Party:
    home: Path
    name: str
    did: str


def make_party(home: Path, name: str) -> Party:
    did = ok(mpcid("create-did", "--name", name, home=home)).stdout.split()[-1]
    assert did.startswith("did:key:z6Mk"), did
    return Party(home, name, did)


def issue(org: Party, subject: str, *extra: str) -> Doc:
    credential: Doc = json.loads(ok(mpcid(
        "credential", "issue", "--issuer", org.name, "--subject", subject,
        "--type", "MemberCredential", "--claim", "role=member", "--expires", EXPIRES,
        *extra, home=org.home)).stdout)
    return credential


def write(path: Path, document: Doc) -> Path:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Issued:
    org: Party
    member: Party
    file: Path
    credential: Doc


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """An org and a member, each with its own temporary keystore, and a MemberCredential the
    org issued to the member (only read by the tests that use it)."""
    base = tmp_path_factory.mktemp("interop")
    org = make_party(base / "org", "org")
    member = make_party(base / "member", "member")
    credential = issue(org, member.did)
    return Issued(org, member, write(base / "member-vc.json", credential), credential)


# --- mpcid -> JavaScript ------------------------------------------------------------------------


def test_js_verifies_mpcid_credential(node: str, issued: Issued, tmp_path: Path) -> None:
    vc = issued.credential
    assert vc["@context"] == PUBLISHED_CONTEXTS
    assert vc["issuer"] == issued.org.did
    assert vc["credentialSubject"] == {"id": issued.member.did, "role": "member"}
    assert (vc["proof"]["type"], vc["proof"]["cryptosuite"]) == ("DataIntegrityProof",
                                                                "eddsa-rdfc-2022")
    assert js_verify(node, vc) == (True, "")
    ok(mpcid("credential", "verify", issued.file, home=tmp_path))  # and mpcid agrees


@pytest.mark.parametrize("edit", ["claim", "subject", "validUntil", "type"])
def test_js_rejects_mpcid_credential_edited_after_signing(
        node: str, issued: Issued, tmp_path: Path, edit: str) -> None:
    vc = json.loads(json.dumps(issued.credential))
    if edit == "claim":
        vc["credentialSubject"]["role"] = "admin"
    elif edit == "subject":
        vc["credentialSubject"]["id"] = issued.org.did
    elif edit == "validUntil":
        vc["validUntil"] = "2199-01-01T00:00:00Z"
    else:
        vc["type"] = ["VerifiableCredential", "AdminCredential"]
    verified, error = js_verify(node, vc)
    assert not verified and "signature" in error.lower(), error
    if edit == "claim":  # and mpcid agrees (its own tests cover the other edits)
        one_error_line(mpcid("credential", "verify", write(tmp_path / "vc.json", vc),
                             home=tmp_path / "verifier"), 1)


def test_js_verifies_mpcid_presentation(node: str, issued: Issued, tmp_path: Path) -> None:
    vp: Doc = json.loads(ok(mpcid(
        "present", "--as", issued.member.name, "--credential", issued.file,
        "--challenge", CHALLENGE, "--domain", DOMAIN, home=issued.member.home)).stdout)
    assert vp["holder"] == issued.member.did
    as_verifier = ("--presentation", "--challenge", CHALLENGE, "--domain", DOMAIN)
    assert js_verify(node, vp, *as_verifier) == (True, "")

    verified, error = js_verify(node, vp, "--presentation", "--challenge", "other",
                                "--domain", DOMAIN)
    assert not verified and "challenge" in error, error
    verified, error = js_verify(node, vp, "--presentation", "--challenge", CHALLENGE,
                                "--domain", "other.example")
    assert not verified and "domain" in error, error

    edited = json.loads(json.dumps(vp))
    edited["verifiableCredential"][0]["credentialSubject"]["role"] = "admin"
    verified, error = js_verify(node, edited, *as_verifier)
    assert not verified and "signature" in error.lower(), error


# --- JavaScript -> mpcid ------------------------------------------------------------------------


def test_mpcid_verifies_js_credential(node: str, issued: Issued, tmp_path: Path) -> None:
    vc = js_issue(node, issued.member.did, "role=member")
    assert vc["@context"] == PUBLISHED_CONTEXTS
    assert vc["credentialSubject"] == {"id": issued.member.did, "role": "member"}
    assert vc["proof"]["cryptosuite"] == "eddsa-rdfc-2022"
    verifier = tmp_path / "verifier"
    out = ok(mpcid("credential", "verify", write(tmp_path / "js-vc.json", vc),
                   home=verifier)).stdout
    assert vc["issuer"] in out and issued.member.did in out, out

    vc["credentialSubject"]["role"] = "admin"
    one_error_line(mpcid("credential", "verify", write(tmp_path / "edited.json", vc),
                         home=verifier), 1)


def test_mpcid_presents_js_credential(node: str, issued: Issued, tmp_path: Path) -> None:
    """A JS-issued credential in an mpcid presentation: both verifiers accept it."""
    vc_file = write(tmp_path / "js-vc.json", js_issue(node, issued.member.did, "role=member"))
    vp_file = tmp_path / "vp.json"
    ok(mpcid("present", "--as", issued.member.name, "--credential", vc_file, "--challenge",
             CHALLENGE, "--domain", DOMAIN, "--out", vp_file, home=issued.member.home))
    vp = json.loads(vp_file.read_text(encoding="utf-8"))
    assert js_verify(node, vp, "--presentation", "--challenge", CHALLENGE,
                     "--domain", DOMAIN) == (True, "")
    ok(mpcid("presentation", "verify", vp_file, "--challenge", CHALLENGE, "--domain", DOMAIN,
             home=tmp_path / "verifier"))


# --- revocation: BitstringStatusListEntry -------------------------------------------------------


def test_js_checks_mpcid_status_list(node: str, issued: Issued, tmp_path: Path) -> None:
    org = make_party(tmp_path / "org", "org")
    published = tmp_path / "status.json"
    ok(mpcid("status-list", "create", "--issuer", "org", "--url", STATUS_URL,
             "--publish", published, home=org.home))
    vc = issue(org, issued.member.did, "--status-list", STATUS_URL)
    assert vc["credentialStatus"]["type"] == "BitstringStatusListEntry"
    status_file = f"{STATUS_URL}={published}"
    assert js_verify(node, vc, "--status-file", status_file) == (True, "")
    verified, error = js_verify(node, vc)  # a status it cannot check is not ignored
    assert not verified and "checkStatus" in error, error

    ok(mpcid("credential", "revoke", write(tmp_path / "vc.json", vc), home=org.home))
    verified, error = js_verify(node, vc, "--status-file", status_file)
    assert not verified and "revoked" in error, error
