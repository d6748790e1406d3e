"""The ``mpcid`` command line: one click group, one place that turns errors into text.

Only the modules of this package import click, and nothing outside it imports from it:
each command module holds one family of commands (``identity``, ``discovery``,
``statuslists``, ``contacts``, ``sessions``, ``programs``, ``run``, ``invitations``, ``transcript``, ``demo``, ``ui``), built on the
shared options of :mod:`.options` and the domain packages, and this module adds them to
the group.

Every command accepts ``--home`` (or ``MPCID_HOME``). Errors derived from
:class:`mpcid.identity.errors.MpcidError` are printed as one line on stderr,
``error: <what happened> (<what to do>)``, with the error's exit code (1: something was
checked and is not valid; 2: the input could not be used). No traceback reaches the user
unless ``MPCID_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from mpcid.identity.errors import MpcidError

from .options import debug, home_option

#: The module of every command. A command's module (and what it imports) is loaded only
#: when that command runs, or for the list in ``--help``: every ``mpcid join`` would
#: otherwise pay for importing the page, the demo and the identity commands.
COMMAND_MODULES = {
    "create-did": "identity", "did": "identity", "credential": "identity",
    "status-list": "statuslists", "present": "identity", "presentation": "identity",
    "demo": "demo", "run": "run", "node": "discovery", "online": "discovery",
    "resolve": "discovery", "invite": "sessions", "join": "sessions",
    "transcript": "transcript", "invitations": "invitations", "ui": "ui",
    "programs": "programs", "contacts": "contacts"}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = COMMAND_MODULES.get(cmd_name)
        if name is None:
            return None
        module = importlib.import_module(f"{__name__}.{name}")
        return next((c for c in module.COMMANDS if c.name == cmd_name), None)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@home_option
@click.version_option(package_name="mpcid")
def cli(home: str | None) -> None:
    """mpcid: decentralised identities and credentials for ad hoc MPC sessions."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map every error to one line and an exit code."""
    if not debug():
        quiet_libp2p()
    code = _run(argv)
    if "didkit" in sys.modules:
        # didkit's Rust runtime can crash while the interpreter finalizes (seen as exit
        # 134/139 after a successful command); its work is done, so leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class _Libp2pNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL or not record.name.startswith("libp2p")


def quiet_libp2p() -> None:
    """py-libp2p logs failures that it also raises (which mpcid reports in one line) and
    many harmless ones. When imported it detaches its loggers (no handlers, no
    propagation), so their records reach only :data:`logging.lastResort`: drop them
    there, whenever libp2p is imported. ``MPCID_DEBUG=1`` keeps them."""
    if logging.lastResort is not None and not any(
            isinstance(f, _Libp2pNoise) for f in logging.lastResort.filters):
        logging.lastResort.addFilter(_Libp2pNoise())


def _run(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="mpcid", standalone_mode=False)
    except MpcidError as exc:
        if debug():
            raise
        click.echo(f"error: {exc.one_line()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 1
    except SystemExit as exc:
        # An MPyC program run by `mpcid run` may call sys.exit itself.
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
