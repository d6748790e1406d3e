"""``mpcid invite`` and ``mpcid join``: sessions from signed invitations.

The invitation (``specs/session.md``) fixes the session id, the ordered parties (inviter
first), the program's SHA-256, MPyC options, credential requirements, expiry and the DHT
nodes through which the parties find each other. It travels by any means: a printed token,
a file, a message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from mpcid.broker.errors import RequirementsUnmet, SessionError
from mpcid.broker.inbox import InvitationStore, invited_identity, receive_invitation
from mpcid.broker.invitation import Invitation
from mpcid.broker.join import JoinSettings, SessionPlan, run_join
from mpcid.broker.programs import ProgramStore
from mpcid.broker.progress import MODES, make_progress
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError, UsageError
from mpcid.identity.keystore import Keystore

from .options import (bootstrap_option, ca_file_option, files, home_option, identity_name,
                      keystore, parse_duration, trust_options)



def read_program(path: str) -> tuple[Path, bytes]:
    program = Path(path)
    try:
        return program, hashlib.sha256(program.read_bytes()).digest()
    except OSError as exc:
        raise UsageError(f"cannot read program {path}: {exc.strerror}",
                         hint="give the path of the MPyC program") from None


def unmet_hint(problem: str, invitation: Invitation, issuer: str | None = None) -> str:
    """What the person who cannot meet a requirement can do, by what is wrong
    (``issuer``: who issued the credential at fault, when one was found)."""
    issuers = sorted({i for r in invitation.requirements.requirements for i in r.issuers})
    named = ", ".join(issuers) or "the issuer"
    if "revoked" in problem or "suspended" in problem:
        return (f"its issuer revoked it: ask the issuer ({issuer or named}) why, and for a "
                "new credential if it should still hold")
    if "expired" in problem or "not yet valid" in problem:
        return f"ask the issuer ({issuer or named}) for a current credential and import it"
    if "you hold no" in problem:
        return (f"ask an issuer the invitation names ({named}) for that credential and "
                "import it with `mpcid credential import`")
    return (f"the invitation accepts credentials issued by {named} with the claims it names: "
            "ask one of them, or ask the inviter to change the requirement")


def join_options(func: Any) -> Any:
    """What ``join`` and ``invite --join`` share."""
    for option in reversed([
        click.option("--even-if-unmet", "even_if_unmet", is_flag=True,
                     help="Go ahead although your own credentials do not meet the "
                          "requirements as checked here (e.g. this machine's clock is off): "
                          "the other parties decide."),
        click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=120.0,
                     show_default=True,
                     help="Seconds to wait for every party's channel and admission."),
        click.option("--transcript", type=click.Path(dir_okay=False),
                     help="Write this party's signed transcript of the session here."),
        trust_options,
        ca_file_option(),
        click.option(
            "--progress", "progress_mode", type=click.Choice(MODES), default="auto",
            show_default=True,
            help="How to show who is found, connected, admitted: a live table (on a "
                 "terminal), JSON lines on stderr (for programs), plain lines, or nothing."),
    ]):
        func = option(func)
    return func


def join_with(ks: Keystore, key: Ed25519Key, invitation: Invitation, program: Path,
              program_args: tuple[str, ...], connect_timeout: float, transcript: str | None,
              contexts: tuple[str, ...], status_files: tuple[str, ...],
              status_max_age: dt.timedelta, ca_file: str | None,
              progress_mode: str, even_if_unmet: bool = False) -> None:
    """Plan and run this party's session from the options of ``join_options``."""
    settings = JoinSettings(connect_timeout=connect_timeout,
                            transcript=Path(transcript) if transcript else None,
                            contexts=files(contexts, "--context"),
                            status_files=files(status_files, "--status-file"),
                            status_max_age=status_max_age, ca_file=ca_file)
    plan = SessionPlan.prepare(ks, key, invitation, program, settings)
    ProgramStore(ks.home).keep_file(plan.program)  # the session's, byte for byte
    if plan.unmet and not even_if_unmet:
        from .programs import decline

        decline(ks, key, invitation, f"its own credentials do not meet the requirements: "
                                     f"{plan.unmet[0]}")
        raise RequirementsUnmet(
            f"you do not meet this session's requirements: {plan.unmet[0]}; you did not "
            "join, and the other parties are told",
            hint=unmet_hint(plan.unmet[0], invitation, plan.unmet_issuer))
    for warning in plan.warnings:
        click.echo(f"warning: {warning}; the other parties may refuse you", err=True)
    progress = make_progress(progress_mode, terminal=sys.stderr.isatty())
    run_join(ks, plan, list(program_args), settings, progress,
             notify=lambda line: click.echo(line, err=True))


@click.command("invite")
@click.option("--did", "dids", multiple=True, required=True, metavar="DID|CONTACT",
              help="Invited party, in MPyC index order after you (repeatable; a contact's "
                   "name stands for its DID).")
@click.option("--program", required=True, type=click.Path(dir_okay=False),
              help="The MPyC program every party must run, byte for byte.")
@click.option("--require", "requirements", multiple=True,
              metavar="TYPE@ISSUER_DID[,ISSUER_DID...][;KEY=VALUE]",
              help="A credential every party must present, issued by any of the listed "
                   "DIDs (or contacts), e.g. MembershipCredential@did:key:z6MkAcme...,"
                   "did:key:z6MkGlobex... (repeatable: every requirement must be met).")
@click.option("--threshold", type=click.IntRange(min=0), default=None,
              help="MPyC corruption threshold t (2t < parties) [default: (n-1)//2].")
@click.option("--no-prss", is_flag=True, help="Disable MPyC's pseudorandom secret sharing.")
@click.option("--expires", default="24h", show_default=True, metavar="DURATION",
              help="How long the invitation can be used (e.g. 90m, 24h, 7d).")
@bootstrap_option(help="DHT node the parties find each other through (repeatable).")
@click.option("--relay", "relays", multiple=True, metavar="MULTIADDR",
              help="Relay for parties behind NAT (repeatable).")
@click.option("--as", "name", default=None, metavar="NAME",
              help="Your identity: party 0 and signer of the invitation.")
@click.option("--name", "session_name", default="", metavar="NAME",
              help="What the session is called, for the invitees (e.g. 'Q3 salaries').")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
@click.option("--no-publish", is_flag=True,
              help="Do not publish the invitation in the DHT (hand out the token only).")
@click.option("--join", "and_join", is_flag=True,
              help="Then join the session at once as party 0 (as `mpcid join` would).")
@join_options
@home_option
@click.argument("program_args", nargs=-1, type=click.UNPROCESSED)
def invite(dids: tuple[str, ...], program: str, requirements: tuple[str, ...],
           threshold: int | None, no_prss: bool, expires: str, bootstrap: tuple[str, ...],
           relays: tuple[str, ...], name: str, session_name: str, out: str | None,
           no_publish: bool,
           and_join: bool, home: str | None, program_args: tuple[str, ...],
           **options: Any) -> None:
    """Create a session and print its invitation token (last line).

    Usage: mpcid invite --did DID [--did DID ...] --program FILE [--require TYPE@ISSUER]
    [--join [-- PROGRAM_ARGS...]]

    The invitation is kept in your keystore and published in the DHT under its session
    id, so invitees can also `mpcid join SESSION_ID`."""
    from mpcid.identity.contacts import Contacts
    from mpcid.identity.did_key import DIDKey
    from mpcid.identity.policy import Policy

    if program_args and not and_join:
        raise UsageError(f"program arguments ({' '.join(program_args)}) are only used with "
                         "--join", hint="each party gives its own to `mpcid join`")
    if not bootstrap:
        raise UsageError("an invitation needs a DHT node for the parties to meet",
                         hint="run `mpcid node` somewhere reachable and pass --bootstrap")
    path, digest = read_program(program)
    ks = keystore(home)
    name = identity_name(ks, name)
    key = ks.load_identity(name)
    contacts = Contacts(ks.home)
    dids = tuple(contacts.did_of(d) for d in dids)  # a contact's name is its DID
    for did in dids:
        DIDKey.parse(did)
    policy = Policy.parse([contacts.requirement(r) for r in requirements])
    if policy.requirements and not options["even_if_unmet"]:
        check_inviter(ks, key, policy)
    invitation, data = Invitation.create(
        key, dids, path.name, digest, threshold=threshold, no_prss=no_prss,
        requirements=policy, ttl=parse_duration(expires),
        bootstrap=bootstrap, relays=relays, name=session_name, now=time.time())
    if out:
        Path(out).write_text(json.dumps(json.loads(data), indent=2) + "\n")
        click.echo(f"wrote {out}", err=True)
    click.echo(f"session {invitation.session_id}: {len(invitation.parties)} parties, "
               f"{invitation.program_name}; each runs `mpcid join TOKEN` (or SESSION_ID "
               "with --bootstrap instead of TOKEN), and fetches the program from you while "
               "you are in the session, unless it has a copy (--program FILE)", err=True)
    InvitationStore(ks).add(invitation, data, "created")
    ProgramStore(ks.home).keep_file(path)  # for `mpcid join TOKEN` later, and to send
    if not no_publish:
        publish_or_warn(key, data, bootstrap, InvitationStore(ks))
    click.echo(invitation.token())
    if and_join:
        sys.stdout.flush()
        join_with(ks, key, invitation, path, program_args, **options)


def check_inviter(ks: Keystore, key: Ed25519Key, policy: Any) -> None:
    """Refuse an invitation whose requirements the inviter itself cannot meet: every
    other party would refuse it, after everyone had started."""
    import datetime as dt

    from mpcid.broker.credential_choice import choose
    from mpcid.broker.verifier import verify_config

    config = verify_config(ks, now=dt.datetime.now(dt.timezone.utc))
    choice = asyncio.run(choose(ks, key.did.did, policy, config))
    if choice.unmet:
        raise UsageError(f"you do not meet this invitation's requirements yourself: "
                         f"{choice.unmet[0]}; every other party would refuse you",
                         hint="import the credential you lack, change --require, or pass "
                              "--even-if-unmet to create it anyway")
    for warning in choice.warnings:
        click.echo(f"warning: {warning}", err=True)


def publish_or_warn(key: Ed25519Key, data: bytes, bootstrap: tuple[str, ...],
                    store: InvitationStore | None = None) -> None:
    """Publish the invitation in the DHT, and point each invitee's inbox at it (and at
    this inviter's other current invitations to it); a failure only costs the lookup by
    session id."""
    from mpcid.broker.inbox import publish_pointers
    from mpcid.broker.session_records import publish_invitation, session_dht

    async def publish() -> None:
        # A throwaway host identity: the invitation carries the inviter's signature, and a
        # host with the inviter's own peer id would linger in the nodes' routing tables
        # when the inviter's party starts moments later.
        async with session_dht(Ed25519Key.generate(), bootstrap) as discovery:
            invitation = await publish_invitation(discovery, data)
            if store is not None:
                await publish_pointers(discovery, key, store, invitation.parties[1:],
                                       time.time())

    try:
        asyncio.run(asyncio.wait_for(publish(), 20))
    except (MpcidError, asyncio.TimeoutError, OSError) as exc:
        why = str(exc) or "timed out"
        click.echo(f"warning: could not publish the invitation in the DHT ({why}); hand out "
                   "the token instead", err=True)


@click.command("join")
@click.argument("invitation_arg", metavar="TOKEN|FILE|SESSION_ID")
@click.option("--program", type=click.Path(dir_okay=False),
              help="Your copy of the session's MPyC program [default: the copy kept from "
                   "an earlier session, else the inviter's, fetched and shown to you first].")
@click.option("--accept-program", is_flag=True,
              help="Run the program fetched from the inviter without asking (it is checked "
                   "against the invitation's SHA-256 all the same).")
@click.option("--as", "name", default=None, metavar="NAME",
              help="Your identity; must be one of the invited parties [default: the one "
                   "of your identities that is invited].")
@bootstrap_option(help="DHT node to fetch the invitation from, when given a SESSION_ID.")
@join_options
@home_option
@click.argument("program_args", nargs=-1, type=click.UNPROCESSED)
def join(invitation_arg: str, program: str | None, accept_program: bool, name: str | None,
         bootstrap: tuple[str, ...], home: str | None, program_args: tuple[str, ...],
         **options: Any) -> None:
    """Join a session from its invitation and run the program as your party.

    Usage: mpcid join TOKEN|FILE|SESSION_ID [--program FILE] [--as NAME]
    [-- PROGRAM_ARGS...]

    Checks the invitation, that you are a party and that your program is the session's;
    without --program, runs the copy kept from an earlier session or fetches the program
    from the inviter and asks you before running it. Then finds the other parties, opens
    Noise channels, exchanges presentations bound to the session, and runs MPyC once
    every party has admitted every other."""
    from .programs import session_program

    ks = keystore(home)
    stored = receive_invitation(ks, invitation_arg, time.time(), bootstrap)
    if stored.state == "declined":
        raise SessionError(f"you declined invitation {stored.session_id}",
                           hint="the other parties were told; ask the inviter for a new one")
    key = ks.load_identity(invited_identity(ks, stored.invitation, name).name)
    path = session_program(ks, key, stored.invitation, program, accept_program,
                           options["connect_timeout"],
                           sys.stdin.isatty() and sys.stderr.isatty())
    join_with(ks, key, stored.invitation, path, program_args, **options)


COMMANDS = (invite, join)
