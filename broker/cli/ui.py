"""``mpcid ui``: the local web page (:mod:`mpcid.broker.ui`) from the command line."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

import click

from mpcid.broker.errors import NotLoopback
from mpcid.broker.ui import UiSettings, is_loopback_host, serve

from .options import config_from, home_option


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless --public).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--public", is_flag=True,
              help="Allow a non-loopback --host (anyone who learns the URL can act as you).")
@home_option
def ui_command(host: str, port: int, public: bool, home: str | None) -> None:
    """Serve a local web page of your identities, credentials and invitations, from
    which you accept (join) or decline sessions. The URL, with its secret token, is
    the last line of stdout; Ctrl-C stops the page and every session it started."""
    config = config_from(home)
    if not is_loopback_host(host):
        if not public:
            raise NotLoopback(f"refusing to serve the page on non-loopback address {host}")
        click.echo(f"warning: serving on {host}: anyone who can reach it and learns the URL "
                   "can join and decline sessions as you", err=True)
    env = {k: v for k, v in os.environ.items() if k != "MPCID_HOME"}
    settings = UiSettings(home=config.home, host=host, port=port, public=public,
                          token=secrets.token_urlsafe(24), env={**env, "PYTHONUNBUFFERED": "1"})

    def ready(url: str) -> None:
        click.echo(f"mpcid ui: keystore {config.home}; Ctrl-C to stop", err=True)
        click.echo(url)
        sys.stdout.flush()

    asyncio.run(serve(settings, ready))


COMMANDS = (ui_command,)
