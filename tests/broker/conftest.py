"""Fixtures for the end-to-end tests of the ``mpcid`` command line.

Every test runs the installed console script as a real subprocess, with its own keystore
folder in ``MPCID_HOME`` (never the user's ``~/.mpcid``), no passphrase unless the test sets
one, stdin closed (so no prompt can ever wait) and a timeout.

Starting the CLI costs a few tenths of a second, so the identities and credentials that many
tests only read are made once per session (``org``, ``alice``, ``bob``, ``membership``).
Tests that change a keystore make their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from processes import running_node

TIMEOUT = 60

_next_to_python = Path(sys.executable).parent / "mpcid"
MPCID = str(_next_to_python) if _next_to_python.exists() else shutil.which("mpcid")

#: Variables the CLI reads; removed from the inherited environment so a developer's own
#: settings cannot leak into (or out of) the tests.
_CLI_VARIABLES = ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_CA_FILE")


def run(*args: str | os.PathLike[str], home: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``mpcid ARGS`` with ``MPCID_HOME=home`` (unset if None) plus ``env``."""
    assert MPCID, "the mpcid console script is not installed next to this Python"
    environment = {k: v for k, v in os.environ.items() if k not in _CLI_VARIABLES}
    if home is not None:
        environment["MPCID_HOME"] = str(home)
    environment.update(env or {})
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run([MPCID, *map(str, args)], env=environment, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False, **stdin)


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"mpcid {' '.join(map(str, proc.args[1:]))} -> exit {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}")


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert success without a traceback and return the process."""
    assert proc.returncode == 0, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    return proc


def error_line(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """Assert exit ``code`` and exactly one stderr line ``error: ...`` containing every
    fragment (case-insensitively); return that line."""
    assert proc.returncode == code, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith("error: "), describe(proc)
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (
            f"{fragment!r} not in the error line\n{describe(proc)}")
    return lines[0]


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert lines, "no output"
    return lines[-1]


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_json(path: Path, value: Any) -> Path:
    Path(path).write_text(json.dumps(value, indent=2), encoding="utf-8")
    return Path(path)


@dataclass(frozen=True)
class Party:
    """A keystore folder holding one identity."""

    home: Path
    name: str
    did: str


def make_party(home: Path, name: str = "default") -> Party:
    proc = ok(run("create-did", "--name", name, home=home))
    did = last_line(proc.stdout)
    assert did.startswith("did:key:z6Mk"), describe(proc)
    return Party(home=home, name=name, did=did)


@pytest.fixture(name="run")
def run_fixture() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run


@pytest.fixture(scope="session")
def org(tmp_path_factory: pytest.TempPathFactory) -> Party:
    """The issuing organisation (identity 'org'). Tests must not change its keystore."""
    return make_party(tmp_path_factory.mktemp("org"), "org")


@pytest.fixture(scope="session")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Party:
    """A member (identity 'default'). Tests must not change her keystore."""
    return make_party(tmp_path_factory.mktemp("alice"))


@pytest.fixture(scope="session")
def bob(tmp_path_factory: pytest.TempPathFactory) -> Party:
    """Another party (identity 'default'). Tests must not change his keystore."""
    return make_party(tmp_path_factory.mktemp("bob"))


@pytest.fixture(scope="session")
def verifier_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty keystore: a verifier that knows no identities and hosts no lists."""
    return tmp_path_factory.mktemp("verifier")


@pytest.fixture(scope="session")
def membership(org: Party, alice: Party, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A MembershipCredential (organization=Acme, valid for a year) from org to alice,
    issued to stdout and saved as a file; also returns the issuing process."""
    proc = ok(run("credential", "issue", "--issuer", "org", "--subject", alice.did,
                  "--type", "MembershipCredential", "--claim", "organization=Acme",
                  "--expires", "2099-01-01T00:00:00Z", home=org.home))
    path = tmp_path_factory.mktemp("membership") / "membership.json"
    path.write_text(proc.stdout, encoding="utf-8")
    return path, proc


@pytest.fixture
def membership_file(membership: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    return membership[0]


@pytest.fixture
def membership_doc(membership_file: Path) -> dict[str, Any]:
    """A fresh copy of the membership credential, to tamper with."""
    return load_json(membership_file)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[str]:
    """A local DHT bootstrap node (``mpcid node``) for one test; its multiaddr."""
    with running_node(tmp_path / "node") as address:
        yield address
