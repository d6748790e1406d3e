"""``mpcid invite`` and ``mpcid join``: sessions from signed invitations.

The invitation (``specs/session.md``) fixes the session id, the ordered parties (inviter
first), the program's SHA-256, MPyC options, credential requirements, expiry and the DHT
nodes through which the parties find each other. It travels by any means: a printed token,
a file, a message.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import click

from mpcid.identity.errors import UsageError

from .cli import cli, config_from, home_option, prompt_passphrase
from .errors import SessionError

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a duration", hint="e.g. 90m, 24h, 7d or seconds")
    return int(match.group(1)) * _UNITS[match.group(2)]


def read_program(path: str) -> tuple[Path, bytes]:
    program = Path(path)
    try:
        return program, hashlib.sha256(program.read_bytes()).digest()
    except OSError as exc:
        raise UsageError(f"cannot read program {path}: {exc.strerror}",
                         hint="give the path of the MPyC program") from None


@cli.command("invite")
@click.option("--did", "dids", multiple=True, required=True, metavar="DID",
              help="Invited party, in MPyC index order after you (repeatable).")
@click.option("--program", required=True, type=click.Path(dir_okay=False),
              help="The MPyC program every party must run, byte for byte.")
@click.option("--require", "requirements", multiple=True,
              metavar="TYPE@ISSUER_DID[;KEY=VALUE]",
              help="A credential every party must present (repeatable).")
@click.option("--threshold", type=click.IntRange(min=0), default=None,
              help="MPyC corruption threshold t (2t < parties) [default: (n-1)//2].")
@click.option("--no-prss", is_flag=True, help="Disable MPyC's pseudorandom secret sharing.")
@click.option("--expires", default="24h", show_default=True, metavar="DURATION",
              help="How long the invitation can be used (e.g. 90m, 24h, 7d).")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
              envvar="MPCID_BOOTSTRAP", show_envvar=True,
              help="DHT node the parties find each other through (repeatable).")
@click.option("--relay", "relays", multiple=True, metavar="MULTIADDR",
              help="Relay for parties behind NAT (repeatable).")
@click.option("--as", "name", default="default", show_default=True, metavar="NAME",
              help="Your identity: party 0 and signer of the invitation.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
@home_option
def invite(dids: tuple[str, ...], program: str, requirements: tuple[str, ...],
           threshold: int | None, no_prss: bool, expires: str, bootstrap: tuple[str, ...],
           relays: tuple[str, ...], name: str, out: str | None, home: str | None) -> None:
    """Create a session and print its invitation token (last line)."""
    from mpcid.identity.did_key import DIDKey
    from mpcid.identity.policy import Policy

    from .invitation import Invitation

    for did in dids:
        DIDKey.parse(did)
    nodes = tuple(a for value in bootstrap for a in value.split())
    if not nodes:
        raise UsageError("an invitation needs a DHT node for the parties to meet",
                         hint="run `mpcid node` somewhere reachable and pass --bootstrap")
    path, digest = read_program(program)
    key = config_from(home).keystore(prompt_passphrase).load_identity(name)
    invitation, data = Invitation.create(
        key, dids, path.name, digest, threshold=threshold, no_prss=no_prss,
        requirements=Policy.parse(requirements), ttl=parse_duration(expires),
        bootstrap=nodes, relays=relays, now=time.time())
    if out:
        Path(out).write_text(json.dumps(json.loads(data), indent=2) + "\n")
        click.echo(f"wrote {out}", err=True)
    click.echo(f"session {invitation.session_id}: {len(invitation.parties)} parties, "
               f"{invitation.program_name}; each runs `mpcid join TOKEN --program "
               f"{invitation.program_name}`", err=True)
    click.echo(invitation.token())


@cli.command("join")
@click.argument("invitation_arg", metavar="TOKEN|FILE")
@click.option("--program", required=True, type=click.Path(dir_okay=False),
              help="Your copy of the session's MPyC program.")
@click.option("--as", "name", default="default", show_default=True, metavar="NAME",
              help="Your identity; must be one of the invited parties.")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=120.0,
              show_default=True, help="Seconds to wait for every party's channel.")
@home_option
@click.argument("program_args", nargs=-1, type=click.UNPROCESSED)
def join(invitation_arg: str, program: str, name: str, connect_timeout: float,
         home: str | None, program_args: tuple[str, ...]) -> None:
    """Join a session from its invitation and run the program as your party.

    Usage: mpcid join TOKEN|FILE --program FILE [--as NAME] [-- PROGRAM_ARGS...]"""
    from .discovery_commands import quiet_libp2p
    from .invitation import Invitation
    from .mpyc_runtime import RunSettings, run_program
    from .paths import PathSettings

    now = time.time()
    source = Path(invitation_arg)
    if not invitation_arg.startswith("mpcid") and source.is_file():
        text = source.read_text(encoding="utf-8", errors="replace").strip()
        invitation = (Invitation.from_token(text, now) if text.startswith("mpcid")
                      else Invitation.verify(text.encode(), now))
    else:
        invitation = Invitation.from_token(invitation_arg, now)
    key = config_from(home).keystore(prompt_passphrase).load_identity(name)
    invitation.index_of(key.did.did)  # NotAParty otherwise
    session = invitation.session_spec()
    session.check_program(Path(program))
    if invitation.requirements.requirements:
        raise SessionError(
            "this invitation requires credentials ("
            + "; ".join(str(r) for r in invitation.requirements.requirements)
            + "), and this version of mpcid cannot yet run the admission step that checks "
            "them between the parties, so it refuses rather than skip the check",
            hint="ask the inviter for an invitation without --require, or upgrade mpcid")
    quiet_libp2p()
    settings = RunSettings(connect_timeout=connect_timeout,
                           paths=PathSettings(bootstrap=session.bootstrap,
                                              relays=session.relays))
    run_program(session, key, Path(program), list(program_args), settings)
