"""The module map the README draws ("Architecture"), checked: what may import what, every
module importable on its own, short functions, state machines that change state in one
place."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"identity": "mpcid.identity", "p2p": "mpcid.p2p", "broker": "mpcid.broker"}
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 700


def modules() -> dict[str, Path]:
    """Every module of the three packages, by its dotted name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            found[".".join((package, *parts)).removesuffix(".__init__")] = path
    return found


MODULES = modules()


def absolute_imports(name: str, path: Path) -> set[str]:
    """The modules ``path`` imports anywhere (also inside functions), relative ones made
    absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                # `from . import x` imports the module x of the package
                found.update(f"{module}.{alias.name}" for alias in node.names)
                found.add(module)
            elif node.module:
                found.add(node.module)
    return found


def importers_of(prefix: str) -> set[str]:
    return {name for name, path in MODULES.items()
            if any(m == prefix or m.startswith(prefix + ".")
                   for m in absolute_imports(name, path))}


def test_every_module_imports_on_its_own() -> None:
    """A fresh interpreter per module: an import circle fails only when its module is the
    first one imported (``python -c "import mpcid.broker.<module>"``)."""
    names = [name for name in MODULES if not name.endswith("__main__")]

    def load(name: str) -> tuple[str, str]:
        result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                                text=True, timeout=120)
        return name, (result.stderr.strip().splitlines() or [""])[-1] \
            if result.returncode else ""

    with ThreadPoolExecutor(4) as pool:
        failures = {name: error for name, error in pool.map(load, names) if error}
    assert not failures


def test_only_the_command_line_imports_click() -> None:
    assert "mpcid.broker.cli.options" in importers_of("click")  # the check sees imports
    assert {name for name in importers_of("click")
            if not name.startswith("mpcid.broker.cli")} == set()


#: What starts the command line: the entry point (which runs a session command in the
#: local launcher when there is one, before click is imported) and the launcher.
ENTRY = {"mpcid.broker.launcher", "mpcid.broker.launcher_server"}


def test_nothing_outside_the_command_line_imports_from_it() -> None:
    assert "mpcid.broker.launcher" in importers_of("mpcid.broker.cli")  # relative imports too
    assert {name for name in importers_of("mpcid.broker.cli")
            if not name.startswith("mpcid.broker.cli") and name not in ENTRY} == set()


@pytest.mark.parametrize(("package", "forbidden"), [
    ("mpcid.identity", "mpcid.p2p"), ("mpcid.identity", "mpcid.broker"),
    ("mpcid.p2p", "mpcid.broker")])
def test_lower_layers_do_not_know_higher_ones(package: str, forbidden: str) -> None:
    """identity knows no peer-to-peer network, p2p knows no sessions."""
    assert {name for name in importers_of(forbidden) if name.startswith(package)} == set()


def test_only_the_runtime_imports_mpyc() -> None:
    assert importers_of("mpyc") == {"mpcid.broker.mpyc_runtime"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_and_modules_are_short(name: str) -> None:
    path = MODULES[name]
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long


def assigned_attributes(path: Path, attributes: set[str]) -> dict[str, list[str]]:
    """Function name -> the ``x.attr = ...`` assignments in it, for ``attr`` in
    ``attributes``."""
    found: dict[str, list[str]] = {}
    for func in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                for element in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(element, ast.Attribute) and element.attr in attributes:
                        found.setdefault(func.name, []).append(element.attr)
    return found


def test_the_admission_table_is_the_only_way_a_peer_state_changes() -> None:
    assigned = assigned_attributes(ROOT / "broker/admission.py", {"mine", "theirs"})
    assert set(assigned) == {"_step"}
