"""``mpcid invite`` and ``mpcid join``: sessions from signed invitations.

The invitation (``specs/session.md``) fixes the session id, the ordered parties (inviter
first), the program's SHA-256, MPyC options, credential requirements, expiry and the DHT
nodes through which the parties find each other. It travels by any means: a printed token,
a file, a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError, UsageError
from mpcid.identity.keystore import Keystore

from .admission_channel import AdmissionSettings
from .inbox import InvitationStore
from .invitation import Invitation
from .progress import Progress

from .cli import cli, config_from, home_option, prompt_passphrase
from .errors import AdmissionRefused, SessionAborted, SessionError

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


PROGRESS_MODES = ("auto", "live", "json", "log", "none")


def progress_option(func: Any) -> Any:
    return click.option(
        "--progress", "progress_mode", type=click.Choice(PROGRESS_MODES), default="auto",
        show_default=True,
        help="How to show who is found, connected, admitted: a live table (on a terminal), "
             "JSON lines on stderr (for programs), plain lines, or nothing.")(func)


def join_options(func: Any) -> Any:
    for option in reversed([
        click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=120.0,
                     show_default=True,
                     help="Seconds to wait for every party's channel and admission."),
        click.option("--transcript", type=click.Path(dir_okay=False),
                     help="Write this party's signed transcript of the session here."),
        click.option("--context", "contexts", multiple=True, metavar="URL=FILE",
                     help="Trust this JSON-LD context file for URL (offline; repeatable)."),
        click.option("--status-file", "status_files", multiple=True, metavar="URL=FILE",
                     help="Read the status list published at URL from FILE (repeatable)."),
        click.option("--ca-file", envvar="MPCID_CA_FILE", show_envvar=True,
                     type=click.Path(dir_okay=False),
                     help="Extra CA certificates (PEM) for did:web and status lists."),
        progress_option,
    ]):
        func = option(func)
    return func


@dataclass(frozen=True)
class JoinOptions:
    connect_timeout: float
    transcript: str | None
    contexts: tuple[str, ...]
    status_files: tuple[str, ...]
    ca_file: str | None
    progress_mode: str


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
    from mpcid.identity.did_key import DIDKey
    from mpcid.identity.policy import Policy

    if program_args and not and_join:
        raise UsageError(f"program arguments ({' '.join(program_args)}) are only used with "
                         "--join", hint="each party gives its own to `mpcid join`")
    for did in dids:
        DIDKey.parse(did)
    nodes = tuple(a for value in bootstrap for a in value.split())
    if not nodes:
        raise UsageError("an invitation needs a DHT node for the parties to meet",
                         hint="run `mpcid node` somewhere reachable and pass --bootstrap")
    path, digest = read_program(program)
    ks = config_from(home).keystore(prompt_passphrase)
    key = ks.load_identity(name)
    invitation, data = Invitation.create(
        key, dids, path.name, digest, threshold=threshold, no_prss=no_prss,
        requirements=Policy.parse(requirements), ttl=parse_duration(expires),
        bootstrap=nodes, relays=relays, name=session_name, now=time.time())
    if out:
        Path(out).write_text(json.dumps(json.loads(data), indent=2) + "\n")
        click.echo(f"wrote {out}", err=True)
    click.echo(f"session {invitation.session_id}: {len(invitation.parties)} parties, "
               f"{invitation.program_name}; each runs `mpcid join TOKEN --program "
               f"{invitation.program_name}` (or SESSION_ID with --bootstrap instead of "
               "TOKEN)", err=True)
    InvitationStore(ks).add(invitation, data, "created")
    if not no_publish:
        publish_or_warn(key, data, nodes)
    click.echo(invitation.token())
    if and_join:
        import sys

        sys.stdout.flush()
        run_join(ks, key, invitation, path, list(program_args), JoinOptions(**options))


def publish_or_warn(key: Ed25519Key, data: bytes, bootstrap: tuple[str, ...]) -> None:
    """Publish the invitation in the DHT; a failure only costs the lookup by session id."""
    from .discovery_commands import quiet_libp2p
    from .session_records import publish_invitation, session_dht

    async def publish() -> None:
        # A throwaway host identity: the invitation carries the inviter's signature, and a
        # host with the inviter's own peer id would linger in the nodes' routing tables
        # when the inviter's party starts moments later.
        async with session_dht(Ed25519Key.generate(), bootstrap) as discovery:
            await publish_invitation(discovery, data)

    quiet_libp2p()
    try:
        asyncio.run(asyncio.wait_for(publish(), 20))
    except (MpcidError, asyncio.TimeoutError, OSError) as exc:
        why = str(exc) or "timed out"
        click.echo(f"warning: could not publish the invitation in the DHT ({why}); hand out "
                   "the token instead", err=True)


@cli.command("join")
@click.argument("invitation_arg", metavar="TOKEN|FILE|SESSION_ID")
@click.option("--program", required=True, type=click.Path(dir_okay=False),
              help="Your copy of the session's MPyC program.")
@click.option("--as", "name", default=None, metavar="NAME",
              help="Your identity; must be one of the invited parties [default: the one "
                   "of your identities that is invited].")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
              envvar="MPCID_BOOTSTRAP", show_envvar=True,
              help="DHT node to fetch the invitation from, when given a SESSION_ID.")
@join_options
@home_option
@click.argument("program_args", nargs=-1, type=click.UNPROCESSED)
def join(invitation_arg: str, program: str, name: str | None, bootstrap: tuple[str, ...],
         home: str | None, program_args: tuple[str, ...], **options: Any) -> None:
    """Join a session from its invitation and run the program as your party.

    Usage: mpcid join TOKEN|FILE|SESSION_ID --program FILE [--as NAME] [-- PROGRAM_ARGS...]

    Checks the invitation, that you are a party and that your program is the session's;
    finds the other parties, opens Noise channels, exchanges presentations bound to the
    session, and runs MPyC once every party has admitted every other."""
    from .discovery_commands import quiet_libp2p
    from .invitation_commands import invited_identity, receive_invitation

    quiet_libp2p()
    ks = config_from(home).keystore(prompt_passphrase)
    stored = receive_invitation(ks, invitation_arg, time.time(),
                                tuple(a for v in bootstrap for a in v.split()))
    if stored.state == "declined":
        raise SessionError(f"you declined invitation {stored.session_id}",
                           hint="the other parties were told; ask the inviter for a new one")
    key = ks.load_identity(invited_identity(ks, stored.invitation, name).name)
    run_join(ks, key, stored.invitation, Path(program), list(program_args),
             JoinOptions(**options))


def run_join(ks: Keystore, key: Ed25519Key, invitation: Invitation, program: Path,
             program_args: list[str], options: JoinOptions) -> None:
    """The whole of a party's session, shared by `join`, `invite --join` and `mpcid ui`."""
    from .credential_choice import choose
    from .discovery_commands import quiet_libp2p
    from .identity_commands import make_verify_config
    from .inbox import InvitationStore
    from .mpyc_runtime import RunReport, RunSettings, run_program
    from .paths import PathSettings

    index = invitation.index_of(key.did.did)  # NotAParty otherwise
    session = invitation.session_spec()
    session.check_program(program)
    if options.transcript:
        folder = Path(options.transcript).resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UsageError(f"cannot write the transcript {options.transcript}: {folder} is "
                             "not a writable folder", hint="give a path in an existing folder")
    store = InvitationStore(ks)
    config = make_verify_config(ks, options.contexts, options.status_files, False,
                                options.ca_file, None)
    choice = asyncio.run(choose(ks, key.did.did, invitation.requirements, config))
    for warning in choice.warnings:
        click.echo(f"warning: {warning}; the other parties will refuse you", err=True)
    progress = make_progress(options.progress_mode)
    progress.emit("session", session=invitation.session_id, index=index,
                  parties=list(invitation.parties), program=invitation.program_name)
    store.set_state(invitation.session_id, "accepted")
    quiet_libp2p()
    settings = RunSettings(
        connect_timeout=options.connect_timeout,
        paths=PathSettings(bootstrap=session.bootstrap, relays=session.relays),
        admission=AdmissionSettings(invitation.requirements, choice.credentials, config,
                                    invitation),
        progress=progress)
    report = RunReport()
    outcome, error = "failed", ""
    try:
        run_program(session, key, program, program_args, settings, report=report)
        outcome = "completed"
    except MpcidError as exc:
        error = exc.one_line()
        outcome = "refused" if isinstance(exc, (AdmissionRefused, SessionAborted)) \
            else "failed"
        raise
    finally:
        store.set_state(invitation.session_id,
                        "completed" if outcome == "completed" else "failed", error)
        progress.emit("finished", outcome=outcome, **({"error": error} if error else {}))
        progress.close()
        if options.transcript:
            try:
                write_session_transcript(Path(options.transcript), key, invitation, index,
                                         choice, report, outcome, error)
            except (MpcidError, OSError) as exc:  # never hide how the session ended
                click.echo(f"warning: could not write the transcript {options.transcript}: "
                           f"{exc}", err=True)


def write_session_transcript(path: Path, key: Ed25519Key, invitation: Invitation, index: int,
                             choice: Any, report: Any, outcome: str, error: str) -> None:
    """This party's signed account of the session (``specs/session.md`` 9)."""
    from .credential_choice import describe_presented
    from .transcript import CredentialRef, PartyEntry, Transcript, write_transcript

    entries = []
    for i, did in enumerate(invitation.parties):
        if i == index:
            refs = [CredentialRef(*c) for c in describe_presented(choice.credentials)]
            entries.append(PartyEntry(i, did, report.started is not None, tuple(refs)))
            continue
        presented = report.presented.get(i)
        refs = [CredentialRef(*c) for c in presented.credentials] if presented else []
        entries.append(PartyEntry(i, did, presented is not None, tuple(refs)))
    ended = time.time()
    started = min(report.started, ended) if report.started is not None else None
    _, data = Transcript.create(
        key, session_id=invitation.session_id, invitation=invitation.encode(),
        program_name=invitation.program_name, program_sha256=invitation.program_sha256,
        index=index, parties=entries, started=started, ended=ended,
        outcome=outcome, error=error)  # type: ignore[arg-type]
    write_transcript(path, data)
    click.echo(f"wrote the signed transcript {path}", err=True)


def make_progress(mode: str) -> Progress:
    import sys

    from .progress import JsonProgress, LogProgress, RichProgress

    if mode == "auto":
        mode = "live" if sys.stderr.isatty() else "log"
    if mode == "live":
        return RichProgress()
    if mode == "json":
        return JsonProgress()
    if mode == "log":
        return LogProgress()
    return Progress()

