"""``mpcid invitations``: the invitations addressed to this keystore's identities.

``list`` (the default) shows them, ``import`` keeps one given as a token or file, ``fetch``
gets one from the DHT by session id, ``decline`` tells the other parties, through the DHT,
that one of your identities will not join (``specs/session.md`` 8).
Receiving, storing and choosing the invited identity are the domain's
(:mod:`mpcid.broker.inbox`); this module shows and asks.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from mpcid.broker.errors import DeclineNotPublished, InvitationNotFound
from mpcid.broker.inbox import (DHT_TIMEOUT, InvitationStore, StoredInvitation, fetch_and_store,
                                invited_identity, receive_invitation, show_input, within)
from mpcid.broker.session_id import is_session_id
from mpcid.identity.errors import UsageError
from mpcid.identity.keystore import IdentityInfo

from .options import bootstrap_option, home_option, json_option, keystore, wraps_async

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OPEN = ("received", "accepted")


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


# --- commands ------------------------------------------------------------------------------


_JSON = json_option(help="Print a JSON list instead of text.")
_ALL = click.option("--all", "show_all", is_flag=True,
                    help="Also list expired, declined, completed and failed ones.")


@click.group("invitations", invoke_without_command=True)
@_JSON
@_ALL
@bootstrap_option(help="DHT node through which to look in your inbox first (repeatable).")
@home_option
@click.pass_context
def invitations(ctx: click.Context, as_json: bool, show_all: bool,
                bootstrap: tuple[str, ...], home: str | None) -> None:
    """Invitations addressed to your identities (default: look in your inbox when a DHT
    node is known, then list them)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_invitations, as_json=as_json, show_all=show_all, home=home,
                   bootstrap=bootstrap)


@invitations.command("list")
@_JSON
@_ALL
@bootstrap_option(help="DHT node through which to look in your inbox first (repeatable; "
                       "in the variable, separated by spaces).")
@home_option
def list_invitations(as_json: bool, show_all: bool, home: str | None,
                     bootstrap: tuple[str, ...] = ()) -> None:
    """List open invitations to any of your identities (--all: every one kept).

    With a DHT node (--bootstrap or MPCID_BOOTSTRAP), first look for new ones in your
    inbox: invitations your contacts (`mpcid contacts`) made for you, found without a
    token; join one with `mpcid join SESSION_ID`."""
    store_keys = keystore(home)
    mine = store_keys.identities()
    now = time.time()
    if bootstrap:
        look_in_inbox(store_keys, bootstrap, now)
    found = [s for s in InvitationStore(store_keys).addressed_to(i.did for i in mine)
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


def look_in_inbox(store_keys: Any, bootstrap: tuple[str, ...], now: float) -> None:
    """New invitations from contacts, through the DHT; a failure is a warning."""
    import asyncio

    from mpcid.broker.inbox import check_inboxes
    from mpcid.identity.contacts import Contacts
    from mpcid.identity.errors import MpcidError

    inviters = tuple(Contacts(store_keys.home).all().values())
    if not inviters:
        click.echo("no contacts: only invitations from contacts arrive in the inbox "
                   "(`mpcid contacts add NAME DID`)", err=True)
        return
    try:
        new = asyncio.run(check_inboxes(store_keys, bootstrap, now, inviters=inviters))
    except MpcidError as exc:
        click.echo(f"warning: could not look in the inbox ({exc.one_line()})", err=True)
        return
    click.echo(f"{len(new)} new invitation(s) in your inbox" if new else
               "no new invitations in your inbox", err=True)


@invitations.command("import")
@click.argument("source", metavar="TOKEN|FILE")
@home_option
def import_invitation(source: str, home: str | None) -> None:
    """Verify an invitation given as a token or file, and keep it."""
    if is_session_id(source.strip()) and not Path(source).exists():
        raise UsageError("import takes a token or a file, not a session id",
                         hint=f"use `mpcid invitations fetch {source.strip()} --bootstrap ...`")
    store_keys = keystore(home)
    stored = receive_invitation(store_keys, source, time.time())
    click.echo("\n".join(summary(stored, store_keys.identities(), time.time())))


@invitations.command("fetch")
@click.argument("session_id")
@bootstrap_option(help="DHT node to ask (repeatable; in the variable, separated by spaces).")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=DHT_TIMEOUT,
              show_default=True, help="Seconds for the whole lookup.")
@home_option
@wraps_async
async def fetch(session_id: str, bootstrap: tuple[str, ...], timeout: float,
                home: str | None) -> None:
    """Get a session's invitation from the DHT by its id, verify it and keep it."""
    _check_session_id(session_id)
    if not bootstrap:
        raise UsageError("fetch needs a DHT node to ask",
                         hint="pass --bootstrap MULTIADDR or set MPCID_BOOTSTRAP")
    store_keys = keystore(home)
    stored = await fetch_and_store(store_keys, session_id, bootstrap, time.time(), timeout=timeout)
    click.echo("\n".join(summary(stored, store_keys.identities(), time.time())))


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

    from mpcid.broker.session_records import MAX_REASON, publish_decline, session_dht

    _check_session_id(session_id)
    if len(reason) > MAX_REASON or _CONTROL.search(reason):
        raise UsageError(f"the reason is longer than {MAX_REASON} characters or has "
                         "several lines", hint="give one short line with --reason")
    store_keys = keystore(home)
    store = InvitationStore(store_keys)
    stored = store.get(session_id)
    if stored is None:
        raise InvitationNotFound(
            f"invitation {session_id} is not in this keystore",
            hint="import it first with `mpcid invitations import TOKEN|FILE`, or fetch it "
                 f"with `mpcid invitations fetch {session_id} --bootstrap MULTIADDR`")
    invitation = stored.invitation
    who = invited_identity(store_keys, invitation, name)
    now = time.time()
    if stored.expired(now):
        store.set_state(session_id, "declined", reason, now)
        click.echo(f"declined session {session_id} here; it has expired, so nothing was "
                   "published")
        return
    key = store_keys.load_identity(who.name)

    async def publish() -> int:
        async with session_dht(Ed25519Key.generate(), invitation.bootstrap) as discovery:
            return (await publish_decline(discovery, key, invitation, reason, now)).expires

    try:
        if not invitation.bootstrap:
            raise DeclineNotPublished("the invitation names no DHT node")
        expires = await within(publish(), timeout)
    except (TransportError, DeclineNotPublished) as exc:
        store.set_state(session_id, "declined", reason, now)
        raise DeclineNotPublished(
            f"declined session {session_id} here, but the other parties were not told: "
            f"{exc.message}", hint=f"run `mpcid invitations decline {session_id}` again "
                                   "when its DHT nodes are reachable") from exc
    store.set_state(session_id, "declined", reason, now)
    click.echo(f"declined session {session_id} as party {invitation.index_of(who.did)} "
               f"({who.name!r}); the other parties can see it in the DHT until "
               f"{_when(expires, now)}")


def _check_session_id(session_id: str) -> None:
    if not is_session_id(session_id):
        raise UsageError(f"{show_input(session_id)} is not a session id",
                         hint="a session id is 32 lowercase hex digits, as "
                              "`mpcid invitations` shows")


COMMANDS = (invitations,)
