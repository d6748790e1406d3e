"""Whole-package checks: strict typing, and sans-IO cores that import no I/O."""

from __future__ import annotations

import ast
import importlib.util
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
           "identity/dataintegrity.py", "identity/policy.py", "p2p/noise.py", "p2p/early_data.py",
           "identity/compact.py",
           "p2p/records.py", "p2p/signed.py", "p2p/peerid.py", "broker/invitation.py",
           "broker/admission.py", "broker/transcript.py", "broker/programs.py"]
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


def _not_installed() -> list[str]:
    """Modules of the package folders that the installed mpcid does not import from their
    file: a strict editable install (pyproject.toml) sees new files only once reinstalled,
    and mypy would skip them without a word."""
    stale: list[str] = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            try:
                spec = importlib.util.find_spec(name)
            except ImportError:
                spec = None
            origin = spec.origin if spec is not None else None
            if origin is None or Path(origin).resolve() != path.resolve():
                stale.append(name)
    return stale


def test_mypy_strict() -> None:
    """The plain command, as a developer types it: the project's own configuration, no
    MYPYPATH, nothing but the editable install to find the packages."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy, "mypy is a test dependency: pip install -e '.[test]'"
    stale = _not_installed()
    assert not stale, (f"the installed mpcid lacks {', '.join(stale)}: run `pip install -e .` "
                       "again (and list a new package in pyproject.toml)")
    args = [mypy]
    for package in PACKAGES.values():
        args += ["-p", package]
    env = {name: value for name, value in os.environ.items() if name != "MYPYPATH"}
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    if "Can't find package" in output:
        output += ("\nthe editable install predates pyproject.toml's strict mode: run "
                   "`pip install -e .` again")
    assert result.returncode == 0, output
