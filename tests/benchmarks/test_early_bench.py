"""benchmarks/early_bench.py runs, and reports both flows for every round trip asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "early_bench.py"


def test_reports_both_flows_per_round_trip() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--rtt-ms", "4,10", "--reps", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no stray tracebacks from the proxy's tasks
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 4 |")
            or line.startswith("| 10 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["after the handshake", "in message 1"] * 2
    for row in rows:  # ms (RTT) at the responder and the dialler
        for cell in row.split("|")[3:5]:
            ms, rtts = cell.split()
            assert float(ms) > 0 and rtts.startswith("(")


@pytest.mark.parametrize("rtt", ["0", "abc", ","])
def test_refuses_bad_arguments(rtt: str) -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--rtt-ms", rtt],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--rtt-ms" in out.stderr and "Traceback" not in out.stderr
