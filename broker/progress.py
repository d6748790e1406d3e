"""Live progress of one party's session: who is found, connected, admitted.

The runtime reports events through a :class:`Progress`; what the user sees is chosen at
the edge: a live rich table on a terminal (:class:`RichProgress`), one JSON object per
line for programs such as ``mpcid ui`` (:class:`JsonProgress`, ``--progress json``), or
plain log lines (:class:`LogProgress`).

Events (each a dict with ``"event"`` and ``"t"``, Unix seconds, plus the fields below):

``session``    session, index (mine), parties (DIDs in order), program, names (per party:
               the person's name for it, "" if none)
``found``      party, did: its endpoint record was found in the DHT
``connected``  party, did, path: a Noise channel is open ("direct TCP", "libp2p",
               "relay circuit", or "accepted" for a channel the peer opened)
``admitted``   party, did, credentials (ids): I checked its presentation against the policy
``admitted_me`` party, did: it admitted me
``refused``    party, did, reason: I refused it, or (by="them") it refused me
``declined``   party, did, reason: it declined the invitation
``program_sent`` party, did: (the inviter) it fetched the program from me
``started``    MPyC starts (every party admitted every other)
``finished``   outcome ("completed" or "failed"), error (one line, when failed)
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

EVENTS = ("session", "found", "connected", "admitted", "admitted_me", "refused", "declined",
          "program_sent", "started", "finished")


class Progress:
    """Receives session events; the base class ignores them."""

    def emit(self, event: str, **fields: Any) -> None:
        assert event in EVENTS, event
        self.handle({"event": event, "t": round(time.time(), 3), **fields})

    def handle(self, event: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonProgress(Progress):
    """One JSON object per line (flushed at once) on ``stream``, default stderr."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def handle(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.stream.flush()


class LogProgress(Progress):
    """Events as plain lines for people on ``stream`` (default stderr): MPyC's own log
    and the program's output go to stdout."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.names: dict[str, str] = {}

    def handle(self, event: dict[str, Any]) -> None:
        if event["event"] == "session":
            self.names = dict(zip(event.get("parties", []), event.get("names", [])))
        self.stream.write(f"mpcid: {describe(event, self.names)}\n")
        self.stream.flush()


def describe(event: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """One line for people (``names``: DID -> the person's name for it)."""
    kind = event["event"]
    name = (names or {}).get(str(event.get("did")))
    who = f"party {event.get('party')} ({name + ', ' if name else ''}{event.get('did')})"
    if kind == "session":
        return (f"session {event['session']}: I am party {event['index']} of "
                f"{len(event['parties'])}, running {event['program']}")
    if kind == "found":
        return f"found {who} in the DHT"
    if kind == "connected":
        return f"channel with {who}: {event.get('path')}"
    if kind == "admitted":
        creds = ", ".join(event.get("credentials") or []) or "no credential required"
        return f"admitted {who} ({creds})"
    if kind == "admitted_me":
        return f"{who} admitted me"
    if kind == "refused":
        if event.get("by") == "them":
            return f"{who} refused me: {event.get('reason')}"
        return f"refused {who}: {event.get('reason')}"
    if kind == "declined":
        return f"{who} declined the invitation: {event.get('reason') or 'no reason given'}"
    if kind == "program_sent":
        return f"sent the program to {who}"
    if kind == "started":
        return "every party admitted every other: MPyC starts"
    if kind == "finished":
        return f"session {event.get('outcome')}" + (
            f": {event['error']}" if event.get("error") else "")
    return str(kind)


class RichProgress(Progress):
    """A live table on stderr: one row per party, its state as it changes."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True, highlight=False, emoji=False)
        self.rows: dict[int, dict[str, str]] = {}
        self.title = "session"
        self.mine = -1
        self.live = Live(self._table(), console=self.console, refresh_per_second=8,
                         transient=False)
        self.live.start()
        self._lock = threading.Lock()

    def handle(self, event: dict[str, Any]) -> None:
        with self._lock:
            kind = event["event"]
            if kind == "session":
                self.title = (f"session {event['session']} · {event['program']} · "
                              f"I am party {event['index']}")
                self.mine = event["index"]
                names = list(event.get("names") or [])
                for i, did in enumerate(event["parties"]):
                    self.rows[i] = {"did": did, "state": "me" if i == self.mine else "waiting",
                                    "path": "", "admission": "",
                                    "name": names[i] if i < len(names) else ""}
            elif "party" in event and event["party"] in self.rows:
                row = self.rows[event["party"]]
                if kind == "found":
                    row["state"] = "found"
                elif kind == "connected":
                    row["state"], row["path"] = "connected", str(event.get("path", ""))
                elif kind == "admitted":
                    row["admission"] = _join(row["admission"], "[green]I admitted[/]")
                elif kind == "admitted_me":
                    row["admission"] = _join(row["admission"], "[green]admitted me[/]")
                elif kind == "refused":
                    row["admission"] = f"[red]refused: {event.get('reason')}[/]"
                elif kind == "declined":
                    row["state"] = "[red]declined[/]"
                elif kind == "program_sent":
                    row["path"] = _join(row["path"], "sent the program")
            elif kind == "started":
                self.title += " · [green]MPyC running[/]"
            elif kind == "finished":
                self.title += (" · [green]completed[/]" if event["outcome"] == "completed"
                               else " · [red]failed[/]")
            self.live.update(self._table())

    def close(self) -> None:
        self.live.stop()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, title_justify="left", expand=False)
        for column in ("#", "party", "channel", "admission"):
            table.add_column(column)
        for i, row in sorted(self.rows.items()):
            did = row["did"]
            short = did[:14] + "…" + did[-6:] if len(did) > 24 else did
            if row.get("name"):  # as wide as a DID alone, so the table keeps its columns
                short = f"{row['name'][:14]} …{did[-6:]}"
            channel = row["state"] + (f" ({row['path']})" if row["path"] else "")
            table.add_row(str(i), short, channel, row["admission"])
        return table


def _join(a: str, b: str) -> str:
    return f"{a}, {b}" if a else b


MODES = ("auto", "live", "json", "log", "none")


def make_progress(mode: str, *, terminal: bool) -> Progress:
    """The sink for ``--progress MODE``; ``auto`` is a live table on a ``terminal``, else
    plain lines."""
    if mode == "auto":
        mode = "live" if terminal else "log"
    if mode == "live":
        return RichProgress()
    if mode == "json":
        return JsonProgress()
    if mode == "log":
        return LogProgress()
    return Progress()
