"""``mpcid status-list``: the Bitstring Status Lists an issuer hosts (create, re-sign,
check what their URLs serve). Revoking is ``mpcid credential revoke``
(:mod:`.identity`), which republishes the list as these commands do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mpcid.identity.dataintegrity import isoformat
from mpcid.identity.errors import MpcidError, UsageError
from mpcid.identity.issued import status_list_id
from mpcid.identity.statuslist import Bitstring

from .identity import emit_json, now_utc, publish_status_list
from .options import ca_file_option, home_option, keystore, parse_duration, wraps_async


@click.group("status-list")
def status_list_group() -> None:
    """Host Bitstring Status Lists for credentials you issue."""


@status_list_group.command("create")
@click.option("--issuer", required=True, metavar="NAME", help="Local identity that signs.")
@click.option("--url", required=True, help="Where the list will be published.")
@click.option("--purpose", type=click.Choice(["revocation", "suspension"]),
              default="revocation", show_default=True)
@click.option("--publish", type=click.Path(dir_okay=False),
              help="File your web server serves at URL; rewritten on every revocation.")
@click.option("--valid-for", default="7d", show_default=True, metavar="DURATION",
              help="Each signed list is valid this long (validUntil); re-sign it within "
                   "that time with `mpcid status-list refresh` (revoking re-signs too).")
@home_option
def status_list_create(issuer: str, url: str, purpose: str, publish: str | None,
                       valid_for: str, home: str | None) -> None:
    """Create a signed, empty status list (131,072 entries) and host it here."""

    seconds = parse_duration(valid_for)
    if seconds <= 0:
        raise UsageError("--valid-for must be positive")
    ks = keystore(home)
    if not url.startswith(("https://", "http://", "file://")):
        raise UsageError(f"{url!r} is not an http(s) or file URL")
    if ks.get_document("statuslists", status_list_id(url)) is not None:
        raise UsageError(f"status list {url} exists already")
    key = ks.load_identity(issuer)
    record: dict[str, Any] = {"url": url, "issuer": issuer, "issuer_did": key.did.did,
                              "purpose": purpose, "next_index": 0, "valid_for": seconds,
                              "publish": str(Path(publish).resolve()) if publish else None}
    publish_status_list(ks, record, Bitstring.empty())
    days = seconds / 86400
    click.echo(f"verifiers fetch this list from {url}: serve "
               + (f"{record['publish']}" if publish else "the JSON printed above")
               + f" there over HTTPS; it is valid for {days:g} days, so re-sign it before "
               "then with `mpcid status-list refresh` (revoking re-signs too); check what "
               f"is served with `mpcid status-list check --url {url}`", err=True)
    if not publish:
        emit_json(record["credential"])


@status_list_group.command("refresh")
@click.option("--url", "urls", multiple=True, metavar="URL",
              help="The list to re-sign (repeatable); default: every list hosted here.")
@home_option
def status_list_refresh(urls: tuple[str, ...], home: str | None) -> None:
    """Re-sign hosted status lists with a new validity window and republish them (run it
    regularly, e.g. daily from cron: verifiers refuse a list past its validUntil)."""
    ks = keystore(home)
    records = {str(r.get("url")): r for _, r in ks.documents("statuslists")
               if isinstance(r, dict) and isinstance(r.get("credential"), dict)}
    for url in urls:
        if url not in records:
            raise UsageError(f"status list {url} is not hosted in this keystore")
    for url in urls or tuple(records):
        record = records[url]
        bits = Bitstring.decode(record["credential"]["credentialSubject"]["encodedList"])
        publish_status_list(ks, record, bits)
        until = record["credential"].get("validUntil", "no validUntil")
        click.echo(f"refreshed: {url} (valid until {until})")


@status_list_group.command("check")
@click.option("--url", "urls", multiple=True, metavar="URL",
              help="The list to check (repeatable); default: every list hosted here.")
@ca_file_option()
@home_option
@wraps_async
async def status_list_check(urls: tuple[str, ...], ca_file: str | None,
                            home: str | None) -> None:
    """Fetch each hosted list from its URL, as a verifier would, and say whether what is
    served is the current signed list (exit 1 if any is not)."""
    from mpcid.identity.statuslist import FileAndHttpStatusSource

    ks = keystore(home, prompt=False)
    records = {str(r.get("url")): r for _, r in ks.documents("statuslists")
               if isinstance(r, dict) and isinstance(r.get("credential"), dict)}
    for url in urls:
        if url not in records:
            raise UsageError(f"status list {url} is not hosted in this keystore")
    source = FileAndHttpStatusSource(ca_file=ca_file)
    bad = 0
    for url in urls or tuple(records):
        verdict = await _served(source, url, records[url]["credential"])
        bad += verdict is not None
        click.echo(f"{url}: " + (verdict or "served, and it is the current signed list"))
    if bad:
        raise MpcidError(f"{bad} status list(s) not served as they should be",
                         hint="serve the publish file (or `mpcid status-list create` "
                              "output) at each URL over HTTPS")


async def _served(source: Any, url: str, current: dict[str, Any]) -> str | None:
    """Why what ``url`` serves is not ``current``, or None if it is."""
    try:
        served = await source.fetch(url)
    except MpcidError as exc:
        return f"not served ({exc.message})"
    if served == current:
        return None
    subject = served.get("credentialSubject")
    listed = subject.get("encodedList") if isinstance(subject, dict) else None
    if served.get("issuer") != current.get("issuer") or listed is None:
        return "it serves something else than this list: serve the publish file there"
    if listed != current["credentialSubject"]["encodedList"]:
        return ("it serves an older list, without the latest revocations: publish the "
                "current one there again")
    until = served.get("validUntil")
    if isinstance(until, str) and until <= isoformat(now_utc()):
        return f"the served list expired at {until}: publish the current one there"
    return "it serves an earlier signature of the same list: publish the current one"


COMMANDS = (status_list_group,)
