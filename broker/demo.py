"""``mpcid demo``: the main job on an embedded default, on one machine.

Until the session broker exists, the demo exercises the identity layer end to end in a
temporary keystore: an organisation and two members create DIDs, the organisation hosts a
status list and issues membership credentials, a member presents hers to a verifier's
challenge, the verifier checks it against a policy, and a revoked credential is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path

import click

from mpcid.identity import credentials as vc
from mpcid.identity.errors import CredentialRevoked
from mpcid.identity.keystore import Keystore
from mpcid.identity.policy import Policy
from mpcid.identity.statuslist import Bitstring, FileAndHttpStatusSource

from .cli import cli


@cli.command("demo")
@click.option("--keep", type=click.Path(file_okay=False),
              help="Keep the demo keystores in this folder instead of a temporary one.")
def demo(keep: str | None) -> None:
    """Run a local identity demo: DIDs, credentials, presentations, revocation."""
    if keep:
        run_demo(Path(keep))
    else:
        with tempfile.TemporaryDirectory(prefix="mpcid-demo-") as folder:
            run_demo(Path(folder))


def run_demo(root: Path) -> None:
    from rich.console import Console

    console = Console(highlight=False, emoji=False)
    started = time.perf_counter()
    now = dt.datetime.now(dt.timezone.utc)
    org_ks, alice_ks, bob_ks = (Keystore(root / n) for n in ("org", "alice", "bob"))
    org = org_ks.create_identity("acme")
    alice = alice_ks.create_identity("alice")
    bob = bob_ks.create_identity("bob")
    console.print(f"[bold]1.[/] DIDs created\n   org   {org.did.did}\n"
                  f"   alice {alice.did.did}\n   bob   {bob.did.did}")

    url = "https://acme.example/status/1"
    bits = Bitstring.empty()
    statuses = FileAndHttpStatusSource()

    def publish() -> None:
        statuses.overrides[url] = vc.sign_credential(vc.status_list_credential(
            issuer=org.did.did, url=url, bits=bits, purpose="revocation", valid_from=now),
            org, now=now)

    publish()
    issued = {}
    for index, (name, member) in enumerate((("alice", alice), ("bob", bob))):
        issued[name] = vc.sign_credential(vc.build_credential(
            issuer=org.did.did, subject=member.did.did, credential_type="MembershipCredential",
            claims={"organization": "Acme"}, valid_from=now,
            valid_until=now + dt.timedelta(days=365), status=(url, index)), org, now=now)
    console.print("[bold]2.[/] Acme issued MembershipCredential (eddsa-rdfc-2022) to alice "
                  "and bob, revocable through a Bitstring Status List")

    policy = Policy.parse([f"MembershipCredential@{org.did.did};organization=Acme"])
    config = vc.VerifyConfig(status=statuses, now=now)
    challenge, domain = "demo-challenge-1", "mpcid:demo"
    vp = vc.create_presentation(alice, [issued["alice"]], challenge=challenge, domain=domain,
                                now=now)
    result = asyncio.run(vc.verify_presentation(vp, config, challenge=challenge, domain=domain))
    policy.evaluate(result)
    console.print(f"[bold]3.[/] alice presented her credential: [green]admitted[/] "
                  f"(policy: {policy.requirements[0].credential_type} from Acme)")

    bits.set(1)
    publish()
    vp = vc.create_presentation(bob, [issued["bob"]], challenge=challenge, domain=domain,
                                now=now)
    try:
        asyncio.run(vc.verify_presentation(vp, config, challenge=challenge, domain=domain))
        raise SystemExit("demo failed: a revoked credential was accepted")
    except CredentialRevoked as exc:
        console.print(f"[bold]4.[/] Acme revoked bob's credential; bob is [red]refused[/]: "
                      f"{exc}")
    console.print(f"done in {time.perf_counter() - started:.2f} s (keystores in {root})")
