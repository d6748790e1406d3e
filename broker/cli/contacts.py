"""``mpcid contacts``: names for other people's DIDs (:mod:`mpcid.identity.contacts`)."""

from __future__ import annotations

import json

import click

from mpcid.identity.contacts import Contacts

from .options import home_option, keystore


@click.group("contacts", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, name -> DID.")
@home_option
@click.pass_context
def contacts(ctx: click.Context, as_json: bool, home: str | None) -> None:
    """Names for other people's DIDs: accepted wherever a DID is (`invite --did bob`,
    `--require MembershipCredential@acme`, `credential issue --subject bob`) and shown in
    messages and on the page. Local to this keystore; nothing sent carries them."""
    ctx.obj = home  # `mpcid contacts --home H add ...` means H for the subcommand too
    if ctx.invoked_subcommand is not None:
        return
    known = Contacts(keystore(home, prompt=False).home).all()
    if as_json:
        click.echo(json.dumps(known, indent=2))
    elif not known:
        click.echo("no contacts yet: `mpcid contacts add NAME DID`", err=True)
    for name, did in ([] if as_json else known.items()):
        click.echo(f"{name:<20} {did}")


@contacts.command("add")
@click.argument("name")
@click.argument("did")
@home_option
@click.pass_context
def add(ctx: click.Context, name: str, did: str, home: str | None) -> None:
    """Call DID by NAME from now on."""
    Contacts(keystore(home or ctx.obj, prompt=False).home).add(name, did)
    click.echo(f"{name} is {did.strip()}")


@contacts.command("remove")
@click.argument("name")
@home_option
@click.pass_context
def remove(ctx: click.Context, name: str, home: str | None) -> None:
    """Forget the contact NAME (nothing else changes)."""
    Contacts(keystore(home or ctx.obj, prompt=False).home).remove(name)
    click.echo(f"removed {name}")


@contacts.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, name -> DID.")
@home_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool, home: str | None) -> None:
    """Every contact, by name."""
    ctx.invoke(contacts, as_json=as_json, home=home or ctx.obj)


COMMANDS = (contacts,)
