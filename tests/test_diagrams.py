"""The checked-in state diagrams (``specs/diagrams/``) match the tables they are drawn from."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "specs" / "diagrams" / "make_diagrams.py"


def test_diagrams_are_up_to_date() -> None:
    """A changed transition table needs new diagrams: run the command the failure names."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def make_diagrams(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script, imported (it is no package module)."""
    spec = importlib.util.spec_from_file_location("make_diagrams", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_check_finds_a_stale_diagram(make_diagrams: ModuleType, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(make_diagrams, "HERE", tmp_path)
    assert make_diagrams.main(["--check"]) == 1  # missing
    assert not list(tmp_path.iterdir())  # --check writes nothing
    assert make_diagrams.main([]) == 0
    assert make_diagrams.main(["--check"]) == 0
    drawn = tmp_path / "noise.md"
    drawn.write_text(drawn.read_text(encoding="utf-8").replace("open", "opened"),
                     encoding="utf-8")
    assert make_diagrams.main(["--check"]) == 1


def test_diagram_has_every_transition(make_diagrams: ModuleType) -> None:
    """Each (state, next state) of the table is one arrow, labelled with its inputs."""
    from mpcid.p2p.noise import TRANSITIONS, State

    lines = make_diagrams.mermaid(make_diagrams.noise_machine())
    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> await_preamble" in lines
    arrows = [line for line in lines if " --> " in line and "[*]" not in line]
    pairs = {(s, t) for (s, _), t in TRANSITIONS.items()}
    assert len(arrows) == len(pairs)
    node = {s: s.value.replace("-", "_") for s in State}
    for (state, what), target in TRANSITIONS.items():
        (arrow,) = [a for a in arrows if a.startswith(f"    {node[state]} --> {node[target]}:")]
        assert what in [label.strip() for label in arrow.split(":", 1)[1].split(",")]
