"""``benchmarks/wan_plots.py`` on small synthetic results: the figures it writes, the
ratios and failure counts of its summary, and its one-line refusal of malformed files.

The script is loaded from its file and its ``main`` called in this process (it is not part
of the installed package); one test runs it as a real process to see the exit status and
stderr a user sees.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "wan_plots.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Wall times of runs 1, 2, 3 where the formula in ``synthetic`` is not used: paired
#: ratios 1.5, 1.1, 1.5 (median 1.5), while the ratio of the medians would be 3.3/3 = 1.1.
KNOWN = {("plain", 20, 3): [2.0, 3.0, 4.0], ("mpcid", 20, 3): [3.0, 3.3, 6.0]}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wan_plots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["wan_plots"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


wan_plots = load_script()


def entry(transport: str, rtt: float, parties: int, run: int, wall: float | None,
          **extra: Any) -> dict[str, Any]:
    found = {"demo": "secretsanta", "size": "low", "parties": parties, "rtt_ms": rtt,
             "measured_rtt_ms": rtt + 0.4, "transport": transport, "run": run,
             "ok": wall is not None, "wall_s": wall, "start_s": 1.0 + run / 10,
             "bytes_per_party": 180_000, "cpu_s_per_party": 1.2}
    return found | extra


def synthetic() -> list[dict[str, Any]]:
    """Two transports, two party counts, two RTTs, three runs each; mpcid's run 3 with
    5 parties at 2 ms failed."""
    runs = []
    for transport in ("plain", "mpcid"):
        for rtt in (2, 20):
            for parties in (3, 5):
                for run in (1, 2, 3):
                    wall = KNOWN.get((transport, rtt, parties), [None] * 3)[run - 1] \
                        or parties * (1 + rtt / 10) * (1.2 if transport == "mpcid" else 1.0)
                    if (transport, rtt, parties, run) == ("mpcid", 2, 5, 3):
                        runs.append(entry(transport, rtt, parties, run, None, error="timeout"))
                    else:
                        runs.append(entry(transport, rtt, parties, run, wall))
    return runs


def table(summary: str) -> list[dict[str, str]]:
    """The rows of the summary's Markdown table, by column name."""
    lines = [line for line in summary.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
            for line in lines[2:]]


def row(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r[key] == value for key, value in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("wan")
    results = folder / "results.json"
    results.write_text(json.dumps(synthetic()), encoding="utf-8")
    assert wan_plots.main([str(results), "--out", str(folder / "out")]) == 0
    return folder / "out", (folder / "out" / "summary.md").read_text(encoding="utf-8")


def test_writes_the_wall_ratio_and_start_figures(plotted: tuple[Path, str]) -> None:
    out, _ = plotted
    names = {"wall_secretsanta_low.png", "ratio_secretsanta_low.png", "start.png"}
    assert {path.name for path in out.glob("*.png")} == names
    for name in names:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


def test_summary_ratio_is_the_median_of_paired_runs(plotted: tuple[Path, str]) -> None:
    rows = table(plotted[1])
    assert len(rows) == 8  # 2 transports x 2 party counts x 2 RTTs
    mpcid = row(rows, transport="mpcid", scenario="20 ms RTT", parties="3")
    assert mpcid["x plain"] == "1.50x"
    assert mpcid["wall s"] == "3.30"
    assert mpcid["RTT ms (measured)"] == "20 (20.4)"
    assert row(rows, transport="plain", scenario="20 ms RTT", parties="3")["x plain"] == "1.00x"
    other = row(rows, transport="mpcid", scenario="2 ms RTT", parties="3")
    assert other["x plain"] == "1.20x"


def test_failed_runs_are_counted_and_left_out(plotted: tuple[Path, str]) -> None:
    rows = table(plotted[1])
    failed = row(rows, transport="mpcid", scenario="2 ms RTT", parties="5")
    assert (failed["runs"], failed["failed"]) == ("3", "1")
    assert failed["wall s"] == "7.20"  # 5 x 1.2 x 1.2, from the two runs that succeeded
    assert failed["start s"] == "1.15"  # median of runs 1 and 2 only
    assert {r["failed"] for r in rows if r is not failed} == {"0"}


def test_printed_summary_is_the_file(plotted: tuple[Path, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, summary = plotted
    assert wan_plots.main([str(out.parent / "results.json"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == summary.strip()


def test_scenarios_unpaired_runs_and_missing_combinations(tmp_path: Path) -> None:
    """Run numbers that do not match give the ratio of the medians; a transport without
    plain TCP next to it, or whose runs all failed, still gets its row and its figure; a
    measurement written as NaN counts as missing."""
    runs = [entry("plain", 90, 3, 1, 10.0, scenario="two-far"),
            entry("plain", 90, 3, 2, 12.0, scenario="two-far"),
            entry("mpcid", 90, 3, 3, 22.0, scenario="two-far"),
            entry("mpcid", 90, 3, 4, 11.0, scenario="two-far"),
            entry("ssl", 90, 4, 1, 9.0, scenario="two-far", cpu_s_per_party=float("nan")),
            entry("wireguard", 90, 3, 1, None, scenario="two-far", error="no handshake")]
    (tmp_path / "r.json").write_text(json.dumps(runs), encoding="utf-8")
    assert wan_plots.main([str(tmp_path / "r.json"), "--out", str(tmp_path / "out")]) == 0
    rows = table((tmp_path / "out" / "summary.md").read_text(encoding="utf-8"))
    assert row(rows, transport="mpcid")["x plain"] == "1.50x (medians)"  # 16.5 / 11
    ssl = row(rows, transport="ssl")
    assert (ssl["x plain"], ssl["CPU s/party"], ssl["wall s"]) == ("–", "–", "9.00")
    wireguard = row(rows, transport="wireguard")
    assert (wireguard["wall s"], wireguard["x plain"], wireguard["failed"]) == ("–", "–", "1")
    assert {r["scenario"] for r in rows} == {"two-far"}
    assert (tmp_path / "out" / "ratio_secretsanta_low.png").read_bytes().startswith(
        PNG_SIGNATURE)


def test_several_files_pair_runs_only_within_each(tmp_path: Path) -> None:
    """Each results file is one interleaved series: run 1 of one file is never paired
    with run 1 of another; the medians take every file's runs."""
    (tmp_path / "a.json").write_text(json.dumps(
        [entry("plain", 90, 3, 1, 10.0), entry("mpcid", 90, 3, 1, 11.0)]), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps(
        [entry("mpcid", 90, 3, 1, 30.0), entry("mpcid-relay", 90, 3, 1, 40.0)]),
        encoding="utf-8")
    assert wan_plots.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                           "--out", str(tmp_path / "out")]) == 0
    rows = table((tmp_path / "out" / "summary.md").read_text(encoding="utf-8"))
    mpcid = row(rows, transport="mpcid")
    assert (mpcid["runs"], mpcid["wall s"], mpcid["x plain"]) == ("2", "20.50", "1.10x")
    assert row(rows, transport="mpcid-relay")["x plain"] == "4.00x (medians)"


MALFORMED = {
    "not JSON": "[{\"demo\": ",
    "an object": json.dumps({"runs": synthetic()}),
    "empty": "[]",
    "not an object": json.dumps([synthetic()[0], 7]),
    "missing keys": json.dumps([{k: v for k, v in synthetic()[0].items() if k != "wall_s"}]),
    "ok not a boolean": json.dumps([synthetic()[0] | {"ok": "yes"}]),
    "wall not a number": json.dumps([synthetic()[0] | {"wall_s": "3 s"}]),
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_results_give_one_line_and_status_2(
        text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.json").write_text(text, encoding="utf-8")
    assert wan_plots.main([str(tmp_path / "r.json"), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("wan_plots.py: error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_the_script_exits_2_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(MALFORMED["missing keys"], encoding="utf-8")
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "r.json"),
                             "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == \
        f"wan_plots.py: error: {tmp_path / 'r.json'}: entry 0 lacks 'wall_s'"
    assert "Traceback" not in result.stderr and result.stdout == ""
