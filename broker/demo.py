"""``mpcid demo``: the main job on an embedded default, on one machine.

An organisation and its members create DIDs; the organisation hosts a status list and
issues membership credentials; every member proves membership with a presentation bound
to the session (a member whose credential was revoked is refused); then the admitted
members run an MPyC program together, each as a separate process, over mpcid's
DID-authenticated Noise channels, finding each other through the DHT of a local bootstrap
node that the demo starts. Invitations (`mpcid invite` / `mpcid join`) replace the
hand-made session file of step 4 once the broker exists.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import click

from mpcid.identity.keystore import Keystore

from .cli import cli
from .errors import SessionError, SessionFileInvalid

EXAMPLES = ("salary_sum", "sealed_bid_auction")


@cli.command("demo")
@click.option("--parties", type=click.IntRange(2, 8), default=3, show_default=True,
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

    from mpcid.identity import credentials as vc
    from mpcid.identity.errors import CredentialError
    from mpcid.identity.policy import Policy
    from mpcid.identity.statuslist import Bitstring, FileAndHttpStatusSource

    console = Console(highlight=False, emoji=False, soft_wrap=True)
    phases: list[tuple[str, float]] = []
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases.append((name, now - clock))
        clock = now

    # 1. identities
    org = Keystore(root / "acme").create_identity("acme")
    names = [f"member{i}" for i in range(n)] + ["former"]
    members = {name: Keystore(root / name).create_identity(name) for name in names}
    console.print(f"[bold]1.[/] DIDs: organisation {org.did.did}")
    for name, key in members.items():
        console.print(f"      {name:<8} {key.did.did}")
    phase("identities")

    # 2. credentials, revocable through a status list the organisation hosts
    now = dt.datetime.now(dt.timezone.utc)
    url = "https://acme.example/status/1"
    bits = Bitstring.empty()
    credentials = {}
    for index, (name, key) in enumerate(members.items()):
        credentials[name] = vc.sign_credential(vc.build_credential(
            issuer=org.did.did, subject=key.did.did, credential_type="MembershipCredential",
            claims={"organization": "Acme"}, valid_from=now,
            valid_until=now + dt.timedelta(days=365), status=(url, index)), org, now=now)
    bits.set(len(names) - 1)  # the former member's credential is revoked
    status_list = vc.sign_credential(vc.status_list_credential(
        issuer=org.did.did, url=url, bits=bits, purpose="revocation", valid_from=now),
        org, now=now)
    console.print(f"[bold]2.[/] Acme issued {len(names)} MembershipCredentials "
                  "(eddsa-rdfc-2022) and revoked the former member's")
    phase("credentials")

    # 3. admission: presentations bound to this session's challenge and id
    session_id = f"demo-{secrets.token_hex(4)}"
    policy = Policy.parse([f"MembershipCredential@{org.did.did};organization=Acme"])
    config = vc.VerifyConfig(status=FileAndHttpStatusSource({url: status_list}), now=now)
    admitted = []
    for name, key in members.items():
        challenge = secrets.token_urlsafe(16)
        vp = vc.create_presentation(key, [credentials[name]], challenge=challenge,
                                    domain=session_id, now=now)
        try:
            result = asyncio.run(vc.verify_presentation(vp, config, challenge=challenge,
                                                        domain=session_id))
            policy.evaluate(result)
        except CredentialError as exc:
            console.print(f"[bold]3.[/] {name:<8} [red]refused[/]: {exc}")
            continue
        admitted.append(name)
        console.print(f"[bold]3.[/] {name:<8} [green]admitted[/] (policy: "
                      f"{policy.requirements[0].credential_type} from Acme, not revoked)")
    phase("admission")

    # 4. a local bootstrap/relay node, and the session: admitted members by DID only
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPCID_PASSPHRASE", "MPCID_BOOTSTRAP")}
    node = subprocess.Popen(
        [sys.executable, "-m", "mpcid.broker", "node", "--home", str(root / "node"),
         "--listen", "/ip4/127.0.0.1/tcp/0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    procs: list[subprocess.Popen[str]] = []
    try:
        assert node.stdout is not None
        bootstrap = node.stdout.readline().strip()
        if not bootstrap.startswith("/"):
            raise SessionError("the local bootstrap node did not start: "
                               f"{node.communicate(timeout=10)[1].strip()[-300:]}")
        session_file = root / "session.json"
        session_file.write_text(json.dumps({
            "session": session_id,
            "program_sha256": hashlib.sha256(program.read_bytes()).hexdigest(),
            "parties": [{"did": members[name].did.did} for name in admitted],
            "bootstrap": [bootstrap]}, indent=2))
        console.print(f"[bold]4.[/] session {session_id}: {len(admitted)} parties run "
                      f"{program.name}, found through the DHT of a local node {bootstrap}")
        phase("bootstrap node")

        # 5. every admitted member runs the program in its own process
        procs = [subprocess.Popen(
            [sys.executable, "-m", "mpcid.broker", "run", "--home", str(root / name),
             "--session", str(session_file), "--as", name, "--connect-timeout", "60",
             "--", str(program)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
            for name in admitted]
        outputs = []
        paths = set()
        for name, proc in zip(admitted, procs):
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                lines = [line for line in err.splitlines() if line.startswith("error:")]
                raise SessionError(f"party {name} failed: "
                                   f"{lines[-1] if lines else err.strip()[-300:]}")
            outputs.append([line for line in out.splitlines() if not line[:4].isdigit()])
            paths |= {line.split(": ", 2)[1].split(" to ")[0] for line in out.splitlines()
                      if " channel to party " in line and ": " in line}
    finally:
        for proc in [*procs, node]:
            if proc.poll() is None:
                proc.terminate() if proc is node else proc.kill()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    phase("MPC over Noise channels")
    if any(o != outputs[0] for o in outputs):
        raise SessionError("the parties disagree on the result")
    console.print(f"[bold]5.[/] result (identical at all {len(admitted)} parties; channels: "
                  f"{', '.join(sorted(paths)) or 'direct TCP'}):")
    for line in outputs[0]:
        console.print(f"      {line}")
    console.print("timings: " + ", ".join(f"{name} {seconds:.2f} s"
                                          for name, seconds in phases))
