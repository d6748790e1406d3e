"""Draw mpcid's state machines from their transition tables, as Mermaid state diagrams.

    .venv/bin/python specs/diagrams/make_diagrams.py           # (re)write the diagrams
    .venv/bin/python specs/diagrams/make_diagrams.py --check   # exit 1 if one is stale

Each machine becomes ``specs/diagrams/<name>.md``: a short explanation and a Mermaid
``stateDiagram-v2`` block (GitHub renders it; no tool needed) drawn only from the table in
the code, so that the picture cannot say something the code does not do.
``tests/test_diagrams.py`` runs ``--check``.

Adding a machine: write a function that returns a :class:`Machine` (its transitions as
``(state, input, next state)`` strings) and add it to :data:`MACHINES`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mpcid.broker import admission
from mpcid.p2p import noise

HERE = Path(__file__).resolve().parent
COMMAND = "python specs/diagrams/make_diagrams.py"

#: One transition: (state, input, next state), as the table names them.
Edge = tuple[str, str, str]


@dataclass(frozen=True)
class Machine:
    """One state machine, as much as a diagram needs of it."""

    name: str
    """File name stem: the diagram goes to ``specs/diagrams/<name>.md``."""
    title: str
    source: str
    """Where the table lives, in Markdown: ``"`p2p/noise.py`, `TRANSITIONS`"``."""
    initial: str
    edges: tuple[Edge, ...]
    explanation: str
    """Markdown paragraphs printed above the diagram: what the states and inputs mean."""


def noise_machine() -> Machine:
    return Machine(
        name="noise",
        title="The channel (Noise IK session)",
        source="`p2p/noise.py`, `TRANSITIONS`",
        initial=noise.State.AWAIT_PREAMBLE.value,
        edges=tuple((state.value, what, target.value)
                    for (state, what), target in noise.TRANSITIONS.items()),
        explanation="""\
One `NoiseChannel`, on either side of a channel (`specs/channel.md`). Inputs come from
the peer's bytes (`preamble`, `handshake`, and the transport frames `data`, `ping`,
`close`; `peer-error` when they break the protocol), from the application (`send`,
`local-close`), from the clock (`keepalive`: a PING is due; `timeout`) and from the
underlying stream (`connection-lost`). An input with no arrow from the current state is
refused: `RemoteProtocolError` if it came from the peer, `LocalProtocolError` otherwise,
and the state does not change.

`closing`: we sent CLOSE; the peer's frames still in flight are authenticated and
discarded. `closed`: finished, nothing more is read, and a `send` is dropped (an answer
to the peer's last message may race its CLOSE). `failed` is final.""")


def admission_machine() -> Machine:
    def pair(mine: admission.Mine, theirs: admission.Theirs) -> str:
        return f"{mine.name.lower()}, {theirs.name.lower()}"

    return Machine(
        name="admission",
        title="Admission of one peer",
        source="`broker/admission.py`, `TRANSITIONS`",
        initial=pair(admission.Mine.AWAITING, admission.Theirs.PENDING),
        edges=tuple((pair(mine, theirs), what, pair(*after))
                    for (what, mine, theirs), after in admission.TRANSITIONS.items()),
        explanation="""\
What one party's `Admission` holds about each of its peers (`specs/session.md` 6-7): a
pair of states, *mine* (my decision about the peer: awaiting its presentation, verifying
it, admitted, refused) and *theirs* (its decision about me: pending, admitted me, refused
me, ready). Inputs from the peer are its messages `presentation`, `verdict` (drawn as
`admitted` or `refused`) and `ready`; `admit` and `refuse` are the outcome of my own
verification of its presentation. A message with no arrow from the current pair is a
protocol violation and fails the session.

Beyond one peer: `ready` is sent to every peer once every peer is `admitted` and has
admitted me; MPyC starts when every peer is `admitted, ready`. A refusal either way
(`refused`, `refused_me`), an `abort` from any peer, a protocol violation or the timeout
ends admission for the whole session, and every connected peer is told why.""")


#: Every machine that gets a diagram.
MACHINES: list[Callable[[], Machine]] = [noise_machine, admission_machine]


def _node(state: str) -> str:
    """A Mermaid identifier for a state name (which may hold '-', spaces, ...)."""
    return re.sub(r"\W", "_", state)


def mermaid(machine: Machine) -> list[str]:
    """The ``stateDiagram-v2`` lines: one arrow per (state, next state), labelled with
    every input that takes it, in table order."""
    labels: dict[tuple[str, str], list[str]] = {}
    states: list[str] = [machine.initial]
    for state, what, target in machine.edges:
        labels.setdefault((state, target), []).append(what)
        states += [s for s in (state, target) if s not in states]
    lines = ["stateDiagram-v2"]
    lines += [f'    state "{s}" as {_node(s)}' for s in states if _node(s) != s]
    lines.append(f"    [*] --> {_node(machine.initial)}")
    lines += [f"    {_node(state)} --> {_node(target)}: {', '.join(inputs)}"
              for (state, target), inputs in labels.items()]
    return lines


def render(machine: Machine) -> str:
    return "\n".join([
        f"# {machine.title}",
        "",
        f"Generated from {machine.source} by `{COMMAND}`; do not edit by hand.",
        "",
        machine.explanation,
        "",
        "```mermaid",
        *mermaid(machine),
        "```",
        "",
    ])


def outputs(machines: Iterable[Callable[[], Machine]]) -> dict[Path, str]:
    built = [make() for make in machines]
    return {HERE / f"{machine.name}.md": render(machine) for machine in built}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a checked-in diagram is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(MACHINES).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent.parent)}")
    for path in stale:
        print(f"{path.relative_to(HERE.parent.parent)} is stale: run `{COMMAND}`",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
