"""``mpcid demo``: the main job on an embedded default, on one machine.

An organisation and its members create DIDs; the organisation publishes a status list and
issues membership credentials; a local bootstrap node starts; one member invites the
others with ``mpcid invite``, requiring Acme membership; every member runs ``mpcid join``
as a separate process: they find each other through the DHT, open DID-authenticated Noise
channels, admit each other with presentations bound to the session, and run the MPyC
program. A second session that invites the member whose credential was revoked shows the
refusal: every party stops before any MPyC traffic.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click

from mpcid.broker.errors import AdmissionRefused, SessionError, SessionFileInvalid
from mpcid.identity.keystore import Keystore

EXAMPLES = ("salary_sum", "sealed_bid_auction")
STATUS_URL = "https://acme.example/status/1"
"""Where Acme would publish its status list (.example: never resolves; the parties get
the list itself with --status-file)."""


@click.command("demo")
@click.option("--parties", type=click.IntRange(2, 16), default=3, show_default=True,
              help="Number of organisations' members that compute together.")
@click.option("--program", default="salary_sum", show_default=True,
              help=f"An example ({', '.join(EXAMPLES)}) or the path of any MPyC program.")
@click.option("--keep", type=click.Path(file_okay=False),
              help="Keep the demo keystores in this folder instead of a temporary one.")
def demo(parties: int, program: str, keep: str | None) -> None:
    """Run a local session: DIDs, credentials, admission, then MPC over Noise channels."""
    path = resolve_program(program)
    if keep:
        run_demo(Path(keep), parties, path)
    else:
        with tempfile.TemporaryDirectory(prefix="mpcid-demo-") as folder:
            run_demo(Path(folder), parties, path)


def resolve_program(program: str) -> Path:
    if program in EXAMPLES:
        return Path(str(resources.files("mpcid.examples").joinpath(f"{program}.py")))
    path = Path(program)
    if not path.is_file():
        raise SessionFileInvalid(f"{program} is neither an example ({', '.join(EXAMPLES)}) "
                                 "nor an MPyC program file")
    return path


def run_demo(root: Path, n: int, program: Path) -> None:
    from rich.console import Console

    console = Console(highlight=False, emoji=False, soft_wrap=True)
    demo = _Demo(root, n, program, console)
    try:
        demo.run()
    finally:
        demo.stop()


class _Demo:
    """One run of the demo; every process it starts is stopped by :meth:`stop`."""

    def __init__(self, root: Path, n: int, program: Path, console: Any) -> None:
        self.root, self.n, self.program, self.console = root, n, program, console
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MPCID_PASSPHRASE", "MPCID_BOOTSTRAP", "MPCID_HOME")}
        self.procs: list[subprocess.Popen[str]] = []
        self.phases: list[tuple[str, float]] = []
        self.clock = time.perf_counter()

    def phase(self, name: str) -> None:
        now = time.perf_counter()
        self.phases.append((name, now - self.clock))
        self.clock = now

    def mpcid(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "mpcid.broker", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, cwd=self.root)
        self.procs.append(proc)
        return proc

    def run(self) -> None:
        from mpcid.identity import credentials as vc
        from mpcid.identity.statuslist import Bitstring

        print_ = self.console.print
        # 1. identities: each party makes its own did:key in its own keystore
        org = Keystore(self.root / "acme").create_identity("acme")
        names = [f"member{i}" for i in range(self.n)] + ["former"]
        members = {name: Keystore(self.root / name).create_identity(name) for name in names}
        print_(f"[bold]1.[/] DIDs: organisation Acme {org.did.did}")
        for name, key in members.items():
            print_(f"      {name:<8} {key.did.did}")
        self.phase("identities")

        # 2. credentials, revocable through a status list Acme publishes at an https URL;
        #    offline, each party is handed a copy with --status-file URL=FILE (a status
        #    URL a peer presents is never read from the local disk)
        now = dt.datetime.now(dt.timezone.utc)
        status_file = self.root / "acme-status.json"
        url = STATUS_URL
        bits = Bitstring.empty()
        for index, (name, key) in enumerate(members.items()):
            credential = vc.sign_credential(vc.build_credential(
                issuer=org.did.did, subject=key.did.did,
                credential_type="MembershipCredential", claims={"organization": "Acme"},
                valid_from=now, valid_until=now + dt.timedelta(days=365),
                status=(url, index)), org, now=now)
            # what `mpcid credential import` does in the member's keystore
            Keystore(self.root / name).put_document("credentials", "membership", credential)
        bits.set(len(names) - 1)  # the former member's credential is revoked
        status_file.write_text(json.dumps(vc.sign_credential(vc.status_list_credential(
            issuer=org.did.did, url=url, bits=bits, purpose="revocation", valid_from=now),
            org, now=now)))
        print_(f"[bold]2.[/] Acme issued {len(names)} MembershipCredentials "
               "(eddsa-rdfc-2022) and revoked the former member's")
        self.phase("credentials")

        # 3. a local bootstrap/relay node: the only meeting point, and it holds no secret
        node = self.mpcid("node", "--home", str(self.root / "node"), "--listen",
                          "/ip4/127.0.0.1/tcp/0")
        assert node.stdout is not None
        bootstrap = node.stdout.readline().strip()
        if not bootstrap.startswith("/"):
            raise SessionError("the local bootstrap node did not start: "
                               f"{node.communicate(timeout=10)[1].strip()[-300:]}")
        print_(f"[bold]3.[/] local DHT node {bootstrap}")
        self.phase("bootstrap node")

        # 4. member0 invites the others, requiring Acme membership
        requirement = f"MembershipCredential@{org.did.did};organization=Acme"
        active = names[:-1]
        token = self.invite(active, requirement, bootstrap)
        print_(f"[bold]4.[/] member0 invited {', '.join(active[1:])} to the session "
               f"'Acme demo: {self.program.stem}' to run "
               f"{self.program.name}, requiring {requirement.split('@')[0]} from Acme "
               "(organization=Acme); invitation token:")
        print_(f"      {token[:60]}… ({len(token)} characters)")
        self.phase("invitation")

        # 5. every member joins in its own process: find, connect, admit, compute
        print_(f"[bold]5.[/] {len(active)} members join (each a separate `mpcid join` "
               "process, with its own private input):")
        print_("\n".join(f"      {name:<8} mpcid join TOKEN -- {' '.join(self.inputs(name))}"
                         for name in active if self.inputs(name)))
        results = self.join_all(active, token, url, status_file)
        self.phase("join: discovery, channels, admission, MPC")
        print_(f"[bold]6.[/] result (identical at all {len(active)} parties):")
        for line in results:
            print_(f"      {line}")

        # 7. the same with the former member invited: its own join sees the revocation
        #    and declines, and the inviter stops at once, told why; no MPyC traffic
        token = self.invite(["member0", "former"], requirement, bootstrap)
        self.show_refusal(self.join_refused(["member0", "former"], token, url, status_file))
        self.phase("refused session")
        print_("timings: " + ", ".join(f"{name} {seconds:.2f} s"
                                       for name, seconds in self.phases))

    def show_refusal(self, errors: dict[str, str]) -> None:
        self.console.print("[bold]7.[/] a session inviting the former member: [red]not "
                           "started[/]: its own join finds its credential revoked and "
                           "declines, and the inviter is told at once:")
        for name, error in errors.items():
            self.console.print(f"      {name:<8} {error}")

    def invite(self, names: list[str], requirement: str, bootstrap: str) -> str:
        args = ["invite", "--home", str(self.root / names[0]), "--as", names[0],
                "--program", str(self.program), "--require", requirement,
                "--bootstrap", bootstrap, "--expires", "1h", "--name",
                f"Acme demo: {self.program.stem}"]
        for name in names[1:]:
            args += ["--did", Keystore(self.root / name).identity(name).did]
        proc = self.mpcid(*args)
        out, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SessionError(f"mpcid invite failed: {_error_line(err)}")
        return out.strip().splitlines()[-1]

    def _join(self, name: str, token: str, url: str, status_file: Path
              ) -> subprocess.Popen[str]:
        return self.mpcid("join", token, "--home", str(self.root / name), "--as", name,
                          "--program", str(self.program), "--status-file",
                          f"{url}={status_file}", "--progress", "json",
                          "--connect-timeout", "60", "--", *self.inputs(name))

    def inputs(self, name: str) -> list[str]:
        """Each member's own private input to the examples (as a member types it after
        ``--``); a program of the user's own gets none."""
        seed = sum(map(ord, name))
        if self.program.name == "salary_sum.py":
            return ["--salaries", ",".join(str(40_000 + (seed * k * 7919) % 50_000 // 100 * 100)
                                           for k in range(1, 4))]
        if self.program.name == "sealed_bid_auction.py":
            return ["--bid", str(100 + seed * 7919 % 9_900)]
        return []

    def join_all(self, names: list[str], token: str, url: str, status_file: Path
                 ) -> list[str]:
        procs = {name: self._join(name, token, url, status_file) for name in names}
        board = _Board(names, self.console)
        outputs = board.follow(procs)
        for name, proc in procs.items():
            if proc.returncode != 0:
                raise SessionError(f"party {name} failed: {_error_line(outputs[name][1])}")
        results = [[line for line in out.splitlines() if not line[:4].isdigit()]
                   for out, _ in outputs.values()]
        if any(r != results[0] for r in results):
            raise SessionError("the parties disagree on the result")
        return results[0]

    def join_refused(self, names: list[str], token: str, url: str, status_file: Path
                     ) -> dict[str, str]:
        procs = {name: self._join(name, token, url, status_file) for name in names}
        errors = {}
        for name, proc in procs.items():
            _, err = proc.communicate(timeout=120)
            if proc.returncode == 0:
                raise SessionError(f"{name} was not refused, though a member was revoked")
            errors[name] = _error_line(err)
        return errors

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


class _Board:
    """A live table of the parties' progress events (``--progress json``)."""

    def __init__(self, names: list[str], console: Any) -> None:
        self.names = names
        self.console = console
        self.rows: dict[str, dict[str, Any]] = {name: {"found": 0, "connected": 0, "admitted": 0, "admitted_me": 0,
                            "state": "starting"} for name in names}

    def follow(self, procs: dict[str, subprocess.Popen[str]]) -> dict[str, tuple[str, str]]:
        import threading

        from rich.live import Live

        errs: dict[str, list[str]] = {name: [] for name in procs}
        outs: dict[str, str] = {}
        lock = threading.Lock()

        def pump(name: str, proc: subprocess.Popen[str]) -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                errs[name].append(line)
                if line.startswith('{"event"'):
                    with lock:
                        self.update(name, json.loads(line))

        def collect(name: str, proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            outs[name] = proc.stdout.read()

        threads = [threading.Thread(target=f, args=(name, proc), daemon=True)
                   for name, proc in procs.items() for f in (pump, collect)]
        for thread in threads:
            thread.start()
        with Live(self.table(), console=self.console, refresh_per_second=10,
                  transient=not self.console.is_terminal) as live:
            deadline = time.monotonic() + 600
            while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
                time.sleep(0.1)
                with lock:
                    live.update(self.table())
        if not self.console.is_terminal:
            self.console.print(self.table())
        for proc in procs.values():
            proc.wait(timeout=30)
        return {name: (outs.get(name, ""), "".join(errs[name])) for name in procs}

    def update(self, name: str, event: dict[str, Any]) -> None:
        row = self.rows[name]
        kind = event["event"]
        if kind in ("found", "connected", "admitted", "admitted_me"):
            row[kind] = int(row[kind]) + 1
        elif kind == "started":
            row["state"] = "MPyC running"
        elif kind == "finished":
            row["state"] = event["outcome"]
        elif kind == "session":
            row["state"] = "looking for the others"

    def table(self) -> Any:
        from rich.table import Table

        others = len(self.names) - 1
        table = Table("party", "channels", "it admitted", "admitted it", "state",
                      title_justify="left")
        for name in self.names:
            row = self.rows[name]
            table.add_row(name, f"{row['connected']}/{others}",
                          f"{row['admitted']}/{others}", f"{row['admitted_me']}/{others}",
                          str(row["state"]))
        return table


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    if not lines:
        return err.strip()[-300:]
    line = lines[-1][len("error: "):]
    hint = f" ({AdmissionRefused.hint})"
    return line[:-len(hint)] if line.endswith(hint) else line


COMMANDS = (demo,)
