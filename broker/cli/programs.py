"""The session's program for ``mpcid join``, and ``mpcid programs``: the kept ones.

A party joins with ``--program FILE`` (checked against the invitation's SHA-256), or
with the copy this keystore kept from an earlier session, or else fetches the program
from the inviter (:mod:`mpcid.broker.program_fetch`) and runs it only after the person
said yes: at a prompt on a terminal, or with ``--accept-program`` beforehand. Fetched
programs are kept by hash (:class:`~mpcid.broker.programs.ProgramStore`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from mpcid.broker.errors import ProgramMismatch, ProgramNotAccepted
from mpcid.broker.inbox import InvitationStore, invited_identity, receive_invitation
from mpcid.broker.invitation import Invitation
from mpcid.broker.programs import KeptProgram, ProgramStore, listing
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError, UsageError
from mpcid.identity.keystore import Keystore

from .options import bootstrap_option, home_option, keystore


def session_program(ks: Keystore, key: Ed25519Key, invitation: Invitation,
                    program: str | None, accept: bool, timeout: float,
                    interactive: bool) -> Path:
    """The file this party runs: ``program`` as given, else the kept copy, else the
    inviter's, fetched and accepted. ``interactive``: a person can be asked here."""
    if program is not None:
        return Path(program)
    store = ProgramStore(ks.home)
    name, digest = invitation.program_name, invitation.program_sha256
    kept = store.find(digest)
    if kept is not None:
        click.echo(f"running the kept program {kept.path} (sha256 {digest.hex()[:16]}…, "
                   "the invitation's)", err=True)
        return kept.path
    if invitation.parties.index(key.did.did) == 0:
        raise UsageError(f"you invited this session, but its program {name} is not kept "
                         "here", hint="give your copy with --program FILE")
    if not accept and not interactive:
        raise ProgramNotAccepted(
            f"the session's program {name} (sha256 {digest.hex()[:16]}…) is not here, and "
            "without a terminal nobody can be asked whether to run it",
            hint="review it with `mpcid programs fetch` and join with --program FILE, run "
                 "`mpcid join` on a terminal (it shows the program and asks), or pass "
                 "--accept-program to run it as the inviter sends it")
    data = fetch(ks, key, invitation, timeout)
    if accept:
        click.echo("running it (--accept-program)", err=True)
    elif not consent(name, data):
        decline(ks, key, invitation, f"it did not accept the program {name}")
        raise ProgramNotAccepted(f"you did not accept the program {name}; the other "
                                 "parties are told that you will not take part",
                                 hint="ask the inviter about the program, and for a new "
                                      "invitation if you want to take part")
    kept = store.keep(name, data)
    click.echo(f"kept it as {kept.path}", err=True)
    return kept.path


def fetch(ks: Keystore, key: Ed25519Key, invitation: Invitation, timeout: float) -> bytes:
    """The program from the inviter, checked against the invitation; a program whose
    bytes differ is declined at once, so that the others stop waiting."""
    from mpcid.broker.agent import agent_socket
    from mpcid.broker.paths import PathSettings
    from mpcid.broker.program_fetch import FetchSettings, fetch_program

    name, digest = invitation.program_name, invitation.program_sha256
    click.echo(f"the session's program {name} is not here: fetching it from the inviter "
               f"(party 0, {invitation.parties[0]})", err=True)
    settings = FetchSettings(timeout=timeout, paths=PathSettings(
        bootstrap=invitation.bootstrap, relays=invitation.relays,
        agent=agent_socket(ks.home, key.did.did)))
    try:
        data = asyncio.run(fetch_program(key, invitation.session_spec(), settings))
    except ProgramMismatch as exc:
        decline(ks, key, invitation, "the program the inviter sent is not the invitation's")
        raise ProgramMismatch(exc.message + "; the other parties are told that you will not "
                              "take part", hint=exc.hint) from None
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    click.echo(f"fetched {name}: {len(data):,} bytes, {lines:,} lines, sha256 "
               f"{digest.hex()} (the invitation's)", err=True)
    return data


def consent(name: str, data: bytes) -> bool:
    """Ask the person at the terminal whether to run the fetched program."""
    click.echo(f"{name} will run on this machine with your rights, as your party of the "
               "session. Run it only if you trust it.", err=True)
    while True:
        try:
            answer = click.prompt(f"Run {name}? [y]es, [n]o, [s]how the source", err=True,
                                  default="", show_default=False).strip().lower()
        except click.exceptions.Abort:
            click.echo("", err=True)
            return False
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no", ""):
            return False
        if answer in ("s", "show", "source"):
            click.echo(listing(data), err=True)


def decline(ks: Keystore, key: Ed25519Key, invitation: Invitation, reason: str) -> None:
    """Mark the invitation declined here and tell the other parties through the DHT
    (best effort, a few seconds: they would otherwise wait for this party until their
    connect timeout)."""
    from mpcid.broker.session_records import publish_decline, session_dht

    now = time.time()
    InvitationStore(ks).set_state(invitation.session_id, "declined", reason, now)

    async def publish() -> None:
        async with session_dht(Ed25519Key.generate(), invitation.bootstrap) as discovery:
            await publish_decline(discovery, key, invitation, reason, now)

    try:
        asyncio.run(asyncio.wait_for(publish(), 10))
    except (MpcidError, asyncio.TimeoutError, OSError) as exc:
        click.echo(f"warning: could not tell the other parties ({exc or 'timed out'})",
                   err=True)


# --- mpcid programs ----------------------------------------------------------------------


@click.group("programs", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for programs.")
@home_option
@click.pass_context
def programs(ctx: click.Context, as_json: bool, home: str | None) -> None:
    """The programs this keystore kept: fetched from inviters, or run with --program.

    `mpcid join` runs a kept program when an invitation names its SHA-256, without
    --program and without fetching it again."""
    ctx.obj = home  # `mpcid programs --home H show ...` means H for the subcommand too
    if ctx.invoked_subcommand is not None:
        return
    kept = ProgramStore(keystore(home).home).all()
    if as_json:
        click.echo(json.dumps([k.to_json() for k in kept], indent=2))
        return
    if not kept:
        click.echo("no programs kept yet: `mpcid join` keeps the program of every session")
        return
    for k in kept:
        click.echo(f"{k.name:<28} {k.size:>9,} bytes  sha256 {k.sha256[:16]}…  {k.path}")


@programs.command("fetch")
@click.argument("invitation_arg", metavar="TOKEN|FILE|SESSION_ID")
@click.option("--as", "name", default=None, metavar="NAME",
              help="Your invited identity [default: the one of yours that is invited].")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds to wait for the inviter and the program.")
@bootstrap_option(help="DHT node to fetch the invitation from, when given a SESSION_ID.")
@home_option
@click.pass_context
def fetch_command(ctx: click.Context, invitation_arg: str, name: str | None, timeout: float,
                  bootstrap: tuple[str, ...], home: str | None) -> None:
    """Fetch a session's program from its inviter to review it, without running it.

    The program is checked against the invitation's SHA-256 and written for review (its
    path is the last line of stdout); join with `mpcid join TOKEN --program PATH` once
    you have read it. The inviter must be in the session (its `mpcid join` running)."""
    ks = keystore(home or ctx.obj)
    stored = receive_invitation(ks, invitation_arg, time.time(), bootstrap)
    invitation = stored.invitation
    key = ks.load_identity(invited_identity(ks, invitation, name).name)
    kept = ProgramStore(ks.home).find(invitation.program_sha256)
    if kept is not None:
        click.echo(f"{invitation.program_name} is kept here already (you ran it before)",
                   err=True)
        click.echo(str(kept.path))
        return
    if invitation.parties.index(key.did.did) == 0:
        raise UsageError("you invited this session: there is nobody to fetch its program "
                         "from", hint="give your copy with --program FILE")
    data = fetch(ks, key, invitation, timeout)
    path = ProgramStore(ks.home).hold_for_review(invitation.program_name, data)
    click.echo(f"not run and not kept: read it, then join with --program {path}", err=True)
    click.echo(str(path))


@programs.command("show")
@click.argument("which", metavar="SHA256|NAME")
@home_option
@click.pass_context
def show(ctx: click.Context, which: str, home: str | None) -> None:
    """Print a kept program's source (control characters shown as escapes)."""
    found = _find(ProgramStore(keystore(home or ctx.obj).home).all(), which)
    sys.stdout.write(listing(found.path.read_bytes()) + "\n")


def _find(kept: list[KeptProgram], which: str) -> KeptProgram:
    which = which.strip().lower()
    if len(which) >= 8 and all(c in "0123456789abcdef" for c in which):
        matches = [k for k in kept if k.sha256.startswith(which)]
    else:
        matches = [k for k in kept if k.name.lower() == which]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no kept program is {which[:80]!r}",
                         hint="see `mpcid programs` for the kept ones")
    raise UsageError(f"{len(matches)} kept programs are {which[:80]!r}",
                     hint="name it by (a prefix of) its SHA-256, as `mpcid programs` shows")


COMMANDS = (programs,)
