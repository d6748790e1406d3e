"""``mpcid invitations``: the invitations addressed to this keystore's identities.

``list`` (the default) shows them, ``import`` keeps one given as a token or file, ``fetch``
gets one from the DHT by session id, ``decline`` tells the other parties, through the DHT,
that one of your identities will not join (``specs/session.md`` 8).
:func:`receive_invitation` is the one way any command turns what a user typed (token,
file or session id) into a verified, stored invitation.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from mpcid.identity.errors import UsageError
from mpcid.identity.keystore import IdentityInfo, Keystore

from .cli import cli, config_from, home_option, prompt_passphrase, wraps_async
from .discovery_commands import quiet_libp2p
from .errors import (DeclineNotPublished, InvalidInvitation, InvitationConflict,
                     InvitationNotFound, NotAParty, SessionError)
from .inbox import InvitationStore, StoredInvitation
from .invitation import Invitation
from .session_id import is_session_id

#: What a file given as an invitation may weigh (a 16 KiB invitation pretty-printed).
MAX_FILE_BYTES = 64 * 1024
DHT_TIMEOUT = 30.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OPEN = ("received", "accepted")


# --- receiving -----------------------------------------------------------------------------


def receive_invitation(keystore: Keystore, text: str, now: float,
                       bootstrap: Sequence[str] = (), *,
                       timeout: float = DHT_TIMEOUT) -> StoredInvitation:
    """A verified invitation, valid at ``now``, kept in ``keystore``'s invitation store.

    ``text`` is a token (``mpcid1:...``), the path of a file holding a token or the
    invitation JSON (pretty-printed or not), or a session id (32 hex digits): then the
    stored invitation, else the one the DHT holds, asked through ``bootstrap``. Raises
    the invitation's errors (invalid, bad signature, expired), :class:`InvitationNotFound`
    or :class:`~mpcid.p2p.errors.ConnectFailed`. Blocking: do not call it from a running
    event loop (use :func:`fetch_and_store` there).
    """
    store = InvitationStore(keystore)
    text = text.strip()
    if text.startswith("mpcid") and ":" in text[:12]:
        return store.add(Invitation.from_token(text, now), _token_data(text), "token", now)
    path = Path(text)
    if text and path.is_file():
        invitation, data = read_invitation_file(path, now)
        return store.add(invitation, data, "file", now)
    if is_session_id(text):
        stored = store.get(text)
        if stored is not None:
            Invitation.verify(stored.data, now)  # expired or not yet valid: say so
            return stored
        if not bootstrap:
            raise InvitationNotFound(
                f"invitation {text} is not in this keystore, and no DHT node was given to "
                "ask", hint="pass --bootstrap (or MPCID_BOOTSTRAP), or import its token")
        return asyncio.run(fetch_and_store(keystore, text, tuple(bootstrap), now,
                                           timeout=timeout))
    raise UsageError(f"{_show(text)} is not an invitation token, a file or a session id",
                     hint="give the mpcid1:... token, the invitation file, or the 32-digit "
                          "session id")


def read_invitation_file(path: Path, now: float) -> tuple[Invitation, bytes]:
    """A file with a token or the signed JSON. JSON is brought back to its canonical form
    first (``mpcid invite --out`` writes it indented); the signature covers the content,
    not the layout, so nothing unsigned gets in."""
    from mpcid.p2p.records import canonical_json, strict_json

    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}",
                         hint="give the path of the invitation file") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInvitation(f"{path} is larger than an invitation can be")
    text = raw.decode("utf-8", errors="replace").strip()
    if text.startswith("mpcid"):
        return Invitation.from_token(text, now), _token_data(text)
    obj = strict_json(raw, "invitation file", InvalidInvitation)
    try:
        data = canonical_json(obj)
    except (ValueError, UnicodeError):
        raise InvalidInvitation("invitation file holds a string that is not valid Unicode"
                                ) from None
    return Invitation.verify(data, now), data


async def fetch_and_store(keystore: Keystore, session_id: str, bootstrap: tuple[str, ...],
                          now: float, *, timeout: float = DHT_TIMEOUT) -> StoredInvitation:
    """Fetch ``session_id``'s invitation from the DHT, verify it at ``now`` and keep it."""
    from mpcid.identity.did_key import Ed25519Key

    from .session_records import fetch_invitation, session_dht

    async def fetch() -> bytes | None:
        # A throwaway host identity: reading needs none, and the DID key may be encrypted.
        async with session_dht(Ed25519Key.generate(), bootstrap) as discovery:
            return await fetch_invitation(discovery, session_id)

    data = await _within(fetch(), timeout)
    if data is None:
        raise InvitationNotFound(f"the DHT holds no current invitation for session "
                                 f"{session_id}", hint="check the session id and --bootstrap, "
                                 "or ask the inviter for the token")
    invitation = Invitation.verify(data, now)
    store = InvitationStore(keystore)
    held = store.get(session_id)
    if held is not None and held.data != data:
        # Only the inviter can sign under this session id (it is derived from its DID),
        # but it may have signed another version; the one this party holds stays.
        raise InvitationConflict(
            f"the DHT holds another version of session {session_id}'s invitation from "
            f"{invitation.inviter} than the one you already have; yours was kept",
            hint="ask your inviter whether it changed the session")
    return store.add(invitation, data, "dht", now)


async def _within(work: Any, timeout: float) -> Any:
    from mpcid.p2p.errors import ConnectFailed

    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        raise ConnectFailed(f"the DHT did not answer within {timeout:g} s") from None


def _token_data(text: str) -> bytes:
    from .invitation import decode_token

    return decode_token(text)


# --- showing -------------------------------------------------------------------------------


def summary(stored: StoredInvitation, mine: Sequence[IdentityInfo], now: float) -> list[str]:
    """Lines for people: what, from whom, for which of my identities, until when."""
    inv = stored.invitation
    names = {info.did: info.name for info in mine}
    state = stored.state + (", expired" if stored.expired(now) else "")
    inviter = inv.inviter + (f" (you, {names[inv.inviter]!r})" if inv.inviter in names
                             else "")
    you = ", ".join(f"party {inv.index_of(did)} as {name!r}" for did, name in names.items()
                    if inv.is_party(did)) or "none of your identities is invited"
    needs = "; ".join(str(r) for r in inv.requirements.requirements) or "no credentials"
    lines = [f"session {inv.session_id}  {state}"]
    if inv.name:
        lines.append(f"  name       {inv.name!r}")  # repr: escapes what is not printable
    lines += [f"  inviter    {inviter}",
             f"  you        {you}",
             f"  program    {inv.program_name} (sha256 {inv.program_sha256.hex()[:16]}...), "
             f"{len(inv.parties)} parties, threshold {inv.threshold}",
             f"  requires   {needs}",
             f"  {'expired ' if stored.expired(now) else 'expires  '}  {_when(inv.expires, now)}"]
    if stored.reason:
        lines.append(f"  reason     {stored.reason}")
    return lines


def _when(moment: int, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))
    delta = abs(moment - now)
    span = (f"{delta / 86400:.0f} d" if delta >= 172800 else f"{delta / 3600:.0f} h"
            if delta >= 7200 else f"{delta / 60:.0f} min")
    return f"{stamp} ({'in ' + span if moment > now else span + ' ago'})"


def _show(text: str) -> str:
    text = text.encode("unicode_escape").decode("ascii")
    return repr(text if len(text) <= 60 else text[:57] + "...")


# --- commands ------------------------------------------------------------------------------


def _keystore(home: str | None) -> Keystore:
    return config_from(home).keystore(prompt_passphrase)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print a JSON list instead of text.")(func)


def all_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--all", "show_all", is_flag=True,
                        help="Also list expired, declined, completed and failed ones.")(func)


@cli.group("invitations", invoke_without_command=True)
@json_option
@all_option
@home_option
@click.pass_context
def invitations(ctx: click.Context, as_json: bool, show_all: bool, home: str | None) -> None:
    """Invitations addressed to your identities (default: list them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_invitations, as_json=as_json, show_all=show_all, home=home)


@invitations.command("list")
@json_option
@all_option
@home_option
def list_invitations(as_json: bool, show_all: bool, home: str | None) -> None:
    """List open invitations to any of your identities (--all: every one kept)."""
    keystore = _keystore(home)
    mine = keystore.identities()
    now = time.time()
    found = [s for s in InvitationStore(keystore).addressed_to(i.did for i in mine)
             if show_all or (s.state in _OPEN and not s.expired(now))]
    if as_json:
        dids = [i.did for i in mine]
        click.echo(json.dumps([s.to_json(dids, now) for s in found], indent=2))
        return
    if not found:
        click.echo("no open invitations" + ("" if show_all else " (--all lists every one)"),
                   err=True)
    for i, stored in enumerate(found):
        if i:
            click.echo()
        click.echo("\n".join(summary(stored, mine, now)))


@invitations.command("import")
@click.argument("source", metavar="TOKEN|FILE")
@home_option
def import_invitation(source: str, home: str | None) -> None:
    """Verify an invitation given as a token or file, and keep it."""
    if is_session_id(source.strip()) and not Path(source).exists():
        raise UsageError("import takes a token or a file, not a session id",
                         hint=f"use `mpcid invitations fetch {source.strip()} --bootstrap ...`")
    keystore = _keystore(home)
    stored = receive_invitation(keystore, source, time.time())
    click.echo("\n".join(summary(stored, keystore.identities(), time.time())))


@invitations.command("fetch")
@click.argument("session_id")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
              envvar="MPCID_BOOTSTRAP", show_envvar=True,
              help="DHT node to ask (repeatable; in the variable, separated by spaces).")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=DHT_TIMEOUT,
              show_default=True, help="Seconds for the whole lookup.")
@home_option
@wraps_async
async def fetch(session_id: str, bootstrap: tuple[str, ...], timeout: float,
                home: str | None) -> None:
    """Get a session's invitation from the DHT by its id, verify it and keep it."""
    from .discovery_commands import split_env

    _check_session_id(session_id)
    nodes = split_env(bootstrap)
    if not nodes:
        raise UsageError("fetch needs a DHT node to ask",
                         hint="pass --bootstrap MULTIADDR or set MPCID_BOOTSTRAP")
    quiet_libp2p()
    keystore = _keystore(home)
    stored = await fetch_and_store(keystore, session_id, nodes, time.time(), timeout=timeout)
    click.echo("\n".join(summary(stored, keystore.identities(), time.time())))


@invitations.command("decline")
@click.argument("session_id")
@click.option("--reason", default="", metavar="TEXT",
              help="Why, for the other parties (one line, at most 500 characters).")
@click.option("--as", "name", default=None, metavar="NAME",
              help="Your invited identity [default: the one the invitation lists].")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=DHT_TIMEOUT,
              show_default=True, help="Seconds to publish the decline.")
@home_option
@wraps_async
async def decline(session_id: str, reason: str, name: str | None, timeout: float,
                  home: str | None) -> None:
    """Tell the other parties, through the DHT, that you will not join SESSION_ID."""
    from mpcid.identity.did_key import Ed25519Key
    from mpcid.p2p.errors import TransportError

    from .session_records import MAX_REASON, Decline, session_dht

    _check_session_id(session_id)
    if len(reason) > MAX_REASON or _CONTROL.search(reason):
        raise UsageError(f"the reason is longer than {MAX_REASON} characters or has "
                         "several lines", hint="give one short line with --reason")
    keystore = _keystore(home)
    store = InvitationStore(keystore)
    stored = store.get(session_id)
    if stored is None:
        raise InvitationNotFound(
            f"invitation {session_id} is not in this keystore",
            hint="import it first with `mpcid invitations import TOKEN|FILE`, or fetch it "
                 f"with `mpcid invitations fetch {session_id} --bootstrap MULTIADDR`")
    invitation = stored.invitation
    who = invited_identity(keystore, invitation, name)
    now = time.time()
    if stored.expired(now):
        store.set_state(session_id, "declined", reason, now)
        click.echo(f"declined session {session_id} here; it has expired, so nothing was "
                   "published")
        return
    key = keystore.load_identity(who.name)
    record, value = Decline.create(key, invitation, reason, now)
    quiet_libp2p()

    async def publish() -> None:
        async with session_dht(Ed25519Key.generate(), invitation.bootstrap) as discovery:
            await discovery.put_value(record.key, value)

    try:
        if not invitation.bootstrap:
            raise DeclineNotPublished("the invitation names no DHT node")
        await _within(publish(), timeout)
    except (TransportError, DeclineNotPublished) as exc:
        store.set_state(session_id, "declined", reason, now)
        raise DeclineNotPublished(
            f"declined session {session_id} here, but the other parties were not told: "
            f"{exc.message}", hint=f"run `mpcid invitations decline {session_id}` again "
                                   "when its DHT nodes are reachable") from exc
    store.set_state(session_id, "declined", reason, now)
    click.echo(f"declined session {session_id} as party {invitation.index_of(who.did)} "
               f"({who.name!r}); the other parties can see it in the DHT until "
               f"{_when(record.expires, now)}")


def _check_session_id(session_id: str) -> None:
    if not is_session_id(session_id):
        raise UsageError(f"{_show(session_id)} is not a session id",
                         hint="a session id is 32 lowercase hex digits, as "
                              "`mpcid invitations` shows")


def invited_identity(keystore: Keystore, invitation: Invitation,
                      name: str | None) -> IdentityInfo:
    """The identity ``--as name`` names (which must be invited), or without a name the one
    identity of this keystore that is invited."""
    if name is not None:
        info = keystore.identity(name)
        invitation.index_of(info.did)  # NotAParty
        return info
    invited = [i for i in keystore.identities() if invitation.is_party(i.did)]
    if not invited:
        raise NotAParty(f"none of your identities is invited to session "
                        f"{invitation.session_id}", hint="check `mpcid did list`")
    if len(invited) > 1:
        raise UsageError(f"several of your identities are invited to session "
                         f"{invitation.session_id}: "
                         + ", ".join(repr(i.name) for i in invited),
                         hint="choose one with --as NAME")
    return invited[0]
