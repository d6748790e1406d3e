"""Whole-package checks: strict typing, and sans-IO cores that import no I/O."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"identity": "mpcid.identity", "p2p": "mpcid.p2p", "broker": "mpcid.broker"}

#: Protocol cores: pure functions of bytes, documents and time, never of sockets or loops.
SANS_IO = ["identity/multibase.py", "identity/did_key.py", "identity/jsonld.py",
           "identity/dataintegrity.py", "identity/policy.py", "p2p/noise.py",
           "p2p/records.py", "p2p/signed.py", "p2p/peerid.py", "broker/invitation.py",
           "broker/admission.py", "broker/transcript.py"]
IO_MODULES = {"asyncio", "trio", "socket", "aiohttp", "selectors", "ssl", "libp2p"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("relpath", SANS_IO)
def test_core_module_does_no_io(relpath: str) -> None:
    assert not imported_modules(ROOT / relpath) & IO_MODULES


def test_mypy_strict(tmp_path: Path) -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy, "mypy is a test dependency: pip install -e '.[test]'"
    # The folders install as mpcid.<name>; give mypy the same layout through symlinks.
    (tmp_path / "mpcid").mkdir()
    for folder, _ in PACKAGES.items():
        os.symlink(ROOT / folder, tmp_path / "mpcid" / folder)
    args = [mypy, "--strict", "--python-executable", sys.executable,
            "--cache-dir", str(tmp_path / ".mypy_cache")]
    for package in PACKAGES.values():
        args += ["-p", package]
    result = subprocess.run(args, cwd=ROOT, env={**os.environ, "MYPYPATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
