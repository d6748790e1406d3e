"""``benchmarks/wan_bench.py`` as a reviewer runs it: the JSON contract of its runs, its
one-line refusals, and that nothing is left behind, also when it is interrupted.

The sessions run a small MPyC program of ours in place of MPyC's demos (which are not
in MPyC's package): two parties, 2 ms round trip, plain MPyC and mpcid (a real
``mpcid node`` and ``mpcid invite``/``join`` in the namespaces). Needs root, iproute2
and iptables, like the other namespace tests (they fail where namespaces are missing).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "wan_bench.py"
sys.path.insert(0, str(ROOT / "tests" / "broker"))
from netns_topology import list_namespaces, require_netns  # noqa: E402

#: Stands in for secretsanta.py: a few rounds between all parties.
PROGRAM = """\
import sys
from mpyc.runtime import mpc


async def main():
    await mpc.start()
    secint = mpc.SecInt()
    x = mpc.input(secint(mpc.pid + int(sys.argv[1]) if sys.argv[1:] else 1))
    print('sum', await mpc.output(mpc.sum(x)))
    await mpc.shutdown()

mpc.run(main())
"""
KEYS = {"demo": str, "size": str, "parties": int, "rtt_ms": float,
        "measured_rtt_ms": float, "transport": str, "run": int, "ok": bool,
        "wall_s": float, "start_s": float, "bytes_per_party": int,
        "cpu_s_per_party": float}


def demos(tmp_path: Path) -> Path:
    folder = tmp_path / "demos"
    (folder / "data" / "cnn").mkdir(parents=True)
    (folder / "secretsanta.py").write_text(PROGRAM)
    (folder / "data" / "cnn" / "W_fc1.npy").write_bytes(b"unused")  # not generated
    return folder


def ours() -> set[str]:
    return {ns for ns in list_namespaces() if ns.startswith("wan")}


def bench(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


@pytest.mark.integration
@pytest.mark.parametrize("args, says", [
    (["--transports", "plain,tcp"], "unknown transport tcp"),
    (["--parties", "11"], "--parties values must be between 2 and 10"),
    (["--rtt-ms", "20", "--scenario", "multi"], "not allowed with argument"),
    (["--scenario", "mars"], "unknown scenario mars"),
])
def test_bad_arguments_get_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    proc = bench("--mpyc-demos", str(demos(tmp_path)), *args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and says in err and "Traceback" not in err


@pytest.mark.integration
def test_runs_follow_the_json_contract(tmp_path: Path) -> None:
    require_netns()
    before = ours()
    out_json = tmp_path / "out.json"
    proc = bench("--mpyc-demos", str(demos(tmp_path)), "--parties", "2", "--rtt-ms", "2",
                 "--transports", "plain,mpcid", "--runs", "1", "--json", str(out_json),
                 "--timeout", "120")
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    rows = json.loads(out_json.read_text())
    assert [r["transport"] for r in rows] == ["plain", "mpcid"]
    for row in rows:
        for key, kind in KEYS.items():
            assert isinstance(row[key], kind if kind is not float else (int, float)), key
        assert row["ok"] and row["demo"] == "secretsanta" and row["size"] == "low"
        assert row["parties"] == 2 and row["run"] == 1 and row["rtt_ms"] == 2
        assert abs(row["measured_rtt_ms"] - 2) <= 1, row  # the delay line's, measured
        assert 0 < row["start_s"] < row["wall_s"] and row["bytes_per_party"] > 0
        assert row["cpu_s_per_party"] > 0.1  # a Python process that imported MPyC
    assert all(p.startswith("direct TCP") for p in rows[1]["paths"])
    assert ours() == before


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_or_kill_removes_everything(tmp_path: Path, signum: int) -> None:
    """Ctrl-C, or kill; also when started in the background by a shell script (whose
    children ignore SIGINT: the benchmark takes it back)."""
    require_netns()
    before, others = ours(), parties()
    proc = bench("--mpyc-demos", str(demos(tmp_path)), "--parties", "2", "--rtt-ms", "2",
                 "--transports", "plain", "--runs", "50", "--json",
                 str(tmp_path / "out.json"), start_new_session=True,
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not (tmp_path / "out.json").exists():  # written after the first timed run
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
    assert ours() == before
    assert json.loads((tmp_path / "out.json").read_text())  # what it measured is kept
    assert parties() <= others


def parties() -> set[str]:
    """Processes started from a wan_bench work folder (mpcid-wan-*)."""
    found = subprocess.run(["pgrep", "-f", "mpcid-wan-"], capture_output=True, text=True)
    return set(found.stdout.split())
