"""``mpcid ui``: the local web page (:mod:`mpcid.broker.ui`) from the command line."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

import click

from mpcid.broker.errors import NotLoopback
from mpcid.broker.ui import UiSettings, is_loopback_host, serve
from mpcid.identity.errors import UsageError

from .options import bootstrap_option, config_from, files, home_option


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless --public).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--public", is_flag=True,
              help="Allow a non-loopback --host (anyone who learns the URL can act as you).")
@bootstrap_option(help="DHT node offered for the invitations you create on the page "
                       "(repeatable).")
@click.option("--status-file", "status_files", multiple=True, metavar="URL=FILE",
              help="Read the status list published at URL from FILE in every session "
                   "joined and every credential imported from the page (repeatable; "
                   "offline copies).")
@home_option
def ui_command(host: str, port: int, public: bool, bootstrap: tuple[str, ...],
               status_files: tuple[str, ...], home: str | None) -> None:
    """Serve a local web page for every role: your identities and credentials; as an
    organisation, issue and revoke credentials and publish status lists; as an inviter,
    create invitations; as an invitee, review the program and join or decline; follow
    sessions live and look back at past ones. The URL, with its secret token, is the
    last line of stdout; Ctrl-C stops the page and every session it started."""
    config = config_from(home)
    checked = files(status_files, "--status-file")  # refused now, not at every join
    for url, path in checked.items():
        if not path.is_file():
            raise UsageError(f"--status-file {url}={path}: no such file",
                             hint="give the path of the status list's local copy")
    if not is_loopback_host(host):
        if not public:
            raise NotLoopback(f"refusing to serve the page on non-loopback address {host}")
        click.echo(f"warning: serving on {host}: anyone who can reach it and learns the URL "
                   "can join and decline sessions as you", err=True)
    env = {k: v for k, v in os.environ.items() if k != "MPCID_HOME"}
    settings = UiSettings(home=config.home, host=host, port=port, public=public,
                          token=secrets.token_urlsafe(24), env={**env, "PYTHONUNBUFFERED": "1"},
                          bootstrap=bootstrap,
                          status_files=tuple(f"{url}={path.resolve()}"
                                             for url, path in checked.items()))

    def ready(url: str) -> None:
        click.echo(f"mpcid ui: keystore {config.home}; Ctrl-C to stop", err=True)
        click.echo(url)
        sys.stdout.flush()

    asyncio.run(serve(settings, ready))


COMMANDS = (ui_command,)
