"""Plots and a Markdown summary of the WAN benchmark's results (``wan_bench.py --json``).

    .venv/bin/python benchmarks/wan_plots.py RESULTS.json [--out benchmarks/results]

Reads the JSON list ``wan_bench.py`` writes (one object per run, keys in ``REQUIRED``, plus
optionally ``scenario`` and ``error``) and writes into ``--out``:

* ``wall_DEMO_SIZE.png``: one panel per scenario (or RTT), wall time against the number of
  parties, one line per transport: the median over the runs that succeeded, bars from the
  fastest to the slowest run. A point some of whose runs failed says how many; a point
  whose runs all failed is an ``x`` on the axis.
* ``ratio_DEMO_SIZE.png``: the same panels, each transport's wall time over plain MPyC
  TCP's: the median of the per-run ratios where run numbers match (run r over run r of
  the same results file: one interleaved series), else the ratio of the medians.
* ``start.png``: from launch until MPyC is connected at every party, per scenario, all
  demos and sizes pooled.
* ``summary.md``: the Markdown table also printed on stdout.

A transport keeps its colour and marker in every figure. Failed runs (``ok`` false) are
left out of every median and counted; any combination may be missing. A file that is not
such a list gives one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

REQUIRED = ("demo", "size", "parties", "rtt_ms", "measured_rtt_ms", "transport", "run",
            "ok", "wall_s", "start_s", "bytes_per_party", "cpu_s_per_party")
#: Known transports, in the order legends and tables list them, with colour and marker.
STYLES = {"plain": ("#4d4d4d", "o"), "ssl": ("#1f77b4", "s"), "wireguard": ("#2ca02c", "^"),
          "mpcid": ("#d62728", "D"), "mpcid-relay": ("#ff7f0e", "v"),
          "mpcid-punched": ("#9467bd", "P")}
EXTRA_STYLES = [("#8c564b", "X"), ("#e377c2", "<"), ("#17becf", ">"), ("#bcbd22", "h"),
                ("#7f7f7f", "*")]
DEMOS, SIZES = ("secretsanta", "np_cnnmnist"), ("low", "medium", "high")
BASELINE = "plain"
Key = tuple[str, str, str, int, str]  # demo, size, where, parties, transport


class ResultsError(Exception):
    """The results file cannot be read as wan_bench.py's JSON list."""


@dataclass(frozen=True)
class Run:
    demo: str
    size: str
    where: str  # the scenario's name, or "N ms RTT"
    rtt_ms: float
    measured_rtt_ms: float | None
    parties: int
    transport: str
    run: int
    ok: bool
    wall_s: float | None  # the measurements below are None where absent (null)
    start_s: float | None
    bytes_per_party: float | None
    cpu_s_per_party: float | None
    series: int = 0
    """Which results file it came from: runs are paired with plain TCP's only within
    one file (one interleaved series)."""


def _number(entry: dict[str, Any], key: str, where: str) -> float | None:
    value = entry[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultsError(f"{where}: {key!r} is {value!r}, not a number")
    return float(value) if math.isfinite(value) else None  # NaN: not measured


def _run_from(entry: Any, index: int, series: int = 0) -> Run:
    where = f"entry {index}"
    if not isinstance(entry, dict):
        raise ResultsError(f"{where} is not an object")
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise ResultsError(f"{where} lacks {', '.join(repr(key) for key in missing)}")
    for key in ("demo", "size", "transport"):
        if not isinstance(entry[key], str) or not entry[key]:
            raise ResultsError(f"{where}: {key!r} is {entry[key]!r}, not a name")
    for key in ("parties", "run"):
        if isinstance(entry[key], bool) or not isinstance(entry[key], int):
            raise ResultsError(f"{where}: {key!r} is {entry[key]!r}, not an integer")
    if not isinstance(entry["ok"], bool):
        raise ResultsError(f"{where}: 'ok' is {entry['ok']!r}, not true or false")
    rtt, wall = _number(entry, "rtt_ms", where), _number(entry, "wall_s", where)
    if rtt is None:
        raise ResultsError(f"{where}: 'rtt_ms' is null")
    if entry["ok"] and wall is None:
        raise ResultsError(f"{where}: a successful run without 'wall_s'")
    scenario = entry.get("scenario")
    if scenario is not None and (not isinstance(scenario, str) or not scenario):
        raise ResultsError(f"{where}: 'scenario' is {scenario!r}, not a name")
    return Run(entry["demo"], entry["size"], scenario or f"{rtt:g} ms RTT", rtt,
               _number(entry, "measured_rtt_ms", where), entry["parties"],
               entry["transport"], entry["run"], entry["ok"], wall,
               _number(entry, "start_s", where), _number(entry, "bytes_per_party", where),
               _number(entry, "cpu_s_per_party", where), series)


def load_runs(path: Path, series: int = 0) -> list[Run]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ResultsError(f"{path} holds a JSON {type(data).__name__}, not a list of runs")
    if not data:
        raise ResultsError(f"{path} holds no runs")
    try:
        return [_run_from(entry, index, series) for index, entry in enumerate(data)]
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Cell:
    """The runs of one demo, size, scenario, party count and transport."""

    runs: tuple[Run, ...]

    @property
    def good(self) -> list[Run]:
        return [run for run in self.runs if run.ok]

    @property
    def failed(self) -> int:
        return sum(not run.ok for run in self.runs)

    def values(self, field: str) -> list[float]:
        return [v for run in self.good if (v := getattr(run, field)) is not None]

    def median(self, field: str) -> float | None:
        values = self.values(field)
        return statistics.median(values) if values else None

    def walls_by_run(self) -> dict[tuple[int, int], float]:
        """(series, run number) -> wall time (the first such run, if one repeats)."""
        return {(run.series, run.run): run.wall_s for run in reversed(self.good)
                if run.wall_s is not None}


def ratio(cell: Cell, plain: Cell | None) -> tuple[float, bool] | None:
    """Wall time over plain TCP's, and whether it is the median of paired per-run ratios
    (else the ratio of the medians); None when either side has no successful run."""
    mine, base = cell.walls_by_run(), plain.walls_by_run() if plain else {}
    pairs = [mine[r] / base[r] for r in sorted(mine.keys() & base.keys()) if base[r] > 0]
    if pairs:
        return statistics.median(pairs), True
    top, bottom = cell.median("wall_s"), plain.median("wall_s") if plain else None
    if top is None or not bottom:
        return None
    return top / bottom, False


def group(runs: Sequence[Run]) -> dict[Key, Cell]:
    cells: dict[Key, list[Run]] = defaultdict(list)
    for run in runs:
        cells[(run.demo, run.size, run.where, run.parties, run.transport)].append(run)
    return {key: Cell(tuple(found)) for key, found in cells.items()}


def ordered(values: set[str], known: Sequence[str]) -> list[str]:
    """Known names in their order first, then the others alphabetically."""
    return [v for v in known if v in values] + sorted(values - set(known))


def where_order(runs: Sequence[Run]) -> list[str]:
    """Scenarios and RTTs by their (largest) RTT, then name: ``multi`` (73-241 ms)
    after ``two-far`` (90 ms)."""
    rtt: dict[str, float] = {}
    for run in runs:
        rtt[run.where] = max(rtt.get(run.where, run.rtt_ms), run.rtt_ms)
    return sorted(rtt, key=lambda where: (rtt[where], where))


def styles(runs: Sequence[Run]) -> dict[str, tuple[str, str]]:
    """Colour and marker per transport, the same in every figure of these results."""
    found = ordered({run.transport for run in runs}, list(STYLES))
    extra = iter(EXTRA_STYLES * (len(found) // len(EXTRA_STYLES) + 1))
    return {t: STYLES[t] if t in STYLES else next(extra) for t in found}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


#: One plotted point: x, y (None: no successful run), error bar below and above, runs, failed.
Point = tuple[int, float | None, float, float, int, int]


def wall_point(cell: Cell, field: str = "wall_s") -> Point:
    values = cell.values(field)
    x = cell.runs[0].parties
    if not values:
        return x, None, 0.0, 0.0, len(cell.runs), cell.failed
    middle = statistics.median(values)
    return x, middle, middle - min(values), max(values) - middle, len(cell.runs), cell.failed


def draw_line(ax: Any, points: list[Point], style: tuple[str, str], label: str,
              shift: float) -> Any:
    """One transport's line on a panel, shifted sideways a little so that bars and notes
    of different transports do not cover each other; returns the legend handle."""
    colour, marker = style
    good = [p for p in sorted(points, key=lambda p: p[0]) if p[1] is not None]
    handle = ax.errorbar([p[0] + shift for p in good], [p[1] for p in good],
                         yerr=[[p[2] for p in good], [p[3] for p in good]],
                         color=colour, marker=marker, markersize=5, capsize=3,
                         linewidth=1.3, label=label)
    for x, y, _, _, total, failed in points:
        if y is None:
            ax.plot([x + shift], [0], marker="x", color=colour, markersize=8,
                    linestyle="none", clip_on=False)
            ax.annotate(f"all {total} failed", (x + shift, 0), textcoords="offset points",
                        xytext=(3, 5), fontsize=7, color=colour)
        elif failed:
            ax.annotate(f"{failed}/{total} failed", (x + shift, y),
                        textcoords="offset points", xytext=(4, 6), fontsize=7, color=colour)
    return handle


def panels(plt: Any, wheres: list[str], title: str, ylabel: str,
           fill: Callable[[Any, str], dict[str, Any]], path: Path) -> Path:
    """A figure with one panel per scenario; ``fill`` draws a panel and returns its legend
    handles by transport."""
    fig, axes = plt.subplots(1, len(wheres), figsize=(1.0 + 4.2 * len(wheres), 4.2),
                             squeeze=False, layout="constrained")
    handles: dict[str, Any] = {}
    for ax, where in zip(axes[0], wheres):
        handles.update(fill(ax, where))
        ax.set_title(where)
        ax.set_xlabel("parties")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncols=min(len(handles), 6), frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shift(style: dict[str, tuple[str, str]], transport: str) -> float:
    index = list(style).index(transport)
    return 0.07 * (index - (len(style) - 1) / 2)


def plot_wall(plt: Any, cells: dict[Key, Cell], demo: str, size: str, wheres: list[str],
              style: dict[str, tuple[str, str]], out: Path) -> Path:
    def fill(ax: Any, where: str) -> dict[str, Any]:
        handles = {}
        mine = {k: c for k, c in cells.items() if k[:3] == (demo, size, where)}
        for transport in style:
            points = [wall_point(c) for k, c in mine.items() if k[4] == transport]
            if points:
                handles[transport] = draw_line(ax, points, style[transport], transport,
                                               _shift(style, transport))
        ax.set_xticks(sorted({k[3] for k in mine}))
        ax.set_ylim(bottom=0)
        return handles
    return panels(plt, wheres, f"{demo}, {size} input: wall time (median over runs, bars "
                  "min-max)", "wall time (s)", fill, out / f"wall_{slug(demo)}_{slug(size)}.png")


def plot_ratio(plt: Any, cells: dict[Key, Cell], demo: str, size: str, wheres: list[str],
               style: dict[str, tuple[str, str]], out: Path) -> Path:
    def fill(ax: Any, where: str) -> dict[str, Any]:
        handles = {}
        mine = {k: c for k, c in cells.items() if k[:3] == (demo, size, where)}
        ax.axhline(1.0, color=style.get(BASELINE, ("#4d4d4d", ""))[0], linewidth=0.8,
                   linestyle="--")
        for transport in [t for t in style if t != BASELINE]:
            points = []
            for key, cell in sorted(mine.items()):
                found = ratio(cell, mine.get(key[:4] + (BASELINE,)))
                if key[4] == transport and found is not None:
                    points.append((key[3], found[0]))
            if points:
                colour, marker = style[transport]
                handles[transport], = ax.plot([p[0] for p in points], [p[1] for p in points],
                                              color=colour, marker=marker, label=transport)
        if not any(k[4] == BASELINE for k in mine):
            ax.text(0.5, 0.5, "no plain TCP runs", transform=ax.transAxes, ha="center")
        ax.set_xticks(sorted({k[3] for k in mine}))
        return handles
    return panels(plt, wheres, f"{demo}, {size} input: wall time / plain TCP (median of "
                  "paired per-run ratios)", "x plain TCP", fill,
                  out / f"ratio_{slug(demo)}_{slug(size)}.png")


def plot_start(plt: Any, runs: Sequence[Run], wheres: list[str],
               style: dict[str, tuple[str, str]], out: Path) -> Path:
    pooled: dict[tuple[str, int, str], list[Run]] = defaultdict(list)
    for run in runs:
        pooled[(run.where, run.parties, run.transport)].append(run)

    def fill(ax: Any, where: str) -> dict[str, Any]:
        handles = {}
        for transport in style:
            cells = [Cell(tuple(found)) for (w, _, t), found in pooled.items()
                     if (w, t) == (where, transport)]
            points = [wall_point(cell, "start_s") for cell in cells]
            if points:
                handles[transport] = draw_line(ax, points, style[transport], transport,
                                               _shift(style, transport))
        ax.set_xticks(sorted({p for (w, p, _) in pooled if w == where}))
        ax.set_ylim(bottom=0)
        return handles
    return panels(plt, wheres, "Start: launch to MPyC connected at every party (all demos "
                  "and sizes; median, bars min-max)", "start time (s)", fill,
                  out / "start.png")


def _fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value / scale, spec)


def summary_markdown(runs: Sequence[Run]) -> str:
    cells = group(runs)
    transports = list(styles(runs))
    wheres = where_order(runs)
    demos = ordered({run.demo for run in runs}, DEMOS)
    sizes = ordered({run.size for run in runs}, SIZES)
    lines = ["| demo | size | scenario | RTT ms (measured) | parties | transport | runs | "
             "failed | wall s | x plain | start s | MB/party | CPU s/party |",
             "|" + "---|" * 13]
    for key in sorted(cells, key=lambda k: (demos.index(k[0]), sizes.index(k[1]),
                                            wheres.index(k[2]), k[3], transports.index(k[4]))):
        cell = cells[key]
        found = ratio(cell, cells.get(key[:4] + (BASELINE,))) if key[4] != BASELINE else None
        share = ("1.00x" if key[4] == BASELINE and cell.good else "–" if found is None
                 else f"{found[0]:.2f}x" + ("" if found[1] else " (medians)"))
        measured = [r.measured_rtt_ms for r in cell.runs if r.measured_rtt_ms is not None]
        rtt = f"{cell.runs[0].rtt_ms:g}" + (
            f" ({statistics.median(measured):.1f})" if measured else "")
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {rtt} | {key[3]} | {key[4]} | "
            f"{len(cell.runs)} | {cell.failed} | {_fmt(cell.median('wall_s'), '.2f')} | "
            f"{share} | {_fmt(cell.median('start_s'), '.2f')} | "
            f"{_fmt(cell.median('bytes_per_party'), '.3g', 1e6)} | "
            f"{_fmt(cell.median('cpu_s_per_party'), '.2f')} |")
    return ("Medians over the successful runs; x plain: median of per-run ratios to plain "
            "TCP with the same run number in the same results file, or the ratio of the "
            "medians where no run numbers match (marked).\n\n" + "\n".join(lines) + "\n")


def write_all(runs: Sequence[Run], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    cells, style, wheres = group(runs), styles(runs), where_order(runs)
    written = []
    for demo in ordered({run.demo for run in runs}, DEMOS):
        for size in ordered({run.size for run in runs if run.demo == demo}, SIZES):
            mine = [w for w in wheres if any(k[:3] == (demo, size, w) for k in cells)]
            written.append(plot_wall(plt, cells, demo, size, mine, style, out))
            written.append(plot_ratio(plt, cells, demo, size, mine, style, out))
    written.append(plot_start(plt, runs, wheres, style, out))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wan_plots.py", description="Plots and a summary of wan_bench.py --json results.")
    parser.add_argument("results", type=Path, nargs="+",
                        help="JSON files written by wan_bench.py --json (each one series: "
                             "runs are paired with plain TCP's within a file)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="folder for the PNG files and summary.md [benchmarks/results]")
    args = parser.parse_args(argv)
    try:
        runs = [run for series, path in enumerate(args.results)
                for run in load_runs(path, series)]
    except ResultsError as exc:
        print(f"wan_plots.py: error: {exc}", file=sys.stderr)
        return 2
    summary = summary_markdown(runs)
    written = write_all(runs, args.out)
    (args.out / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)
    print(f"wrote {len(written)} figures and summary.md to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
