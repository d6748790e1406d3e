"""The ``mpcid`` command line: one click group, one place that turns errors into text.

Every command accepts ``--home`` (or ``MPCID_HOME``). Errors derived from
:class:`mpcid.identity.errors.MpcidError` are printed as one line on stderr,
``error: <what happened> (<what to do>)``, with the error's exit code (1: something was
checked and is not valid; 2: the input could not be used). No traceback reaches the user
unless ``MPCID_DEBUG=1``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from mpcid.identity.errors import MpcidError

from .config import CliConfig

F = TypeVar("F", bound=Callable[..., Any])


def home_option(func: F) -> F:
    """``--home`` on every command (and the group), defaulting to $MPCID_HOME."""
    return click.option("--home", envvar="MPCID_HOME", show_envvar=True,
                        type=click.Path(file_okay=False), default=None,
                        help="Keystore folder [default: ~/.mpcid].")(func)


def config_from(home: str | None) -> CliConfig:
    """The command's ``--home`` wins, then the group's (``mpcid --home X cmd``), then
    $MPCID_HOME, then ~/.mpcid."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    root = ctx.find_root()
    explicit = ctx.get_parameter_source("home") == ParameterSource.COMMANDLINE
    if not explicit and root.params.get("home") is not None and \
            root.get_parameter_source("home") == ParameterSource.COMMANDLINE:
        home = root.params["home"]
    return CliConfig.from_environment(home)


def prompt_passphrase(text: str, confirm: bool) -> str | None:
    suffix = " (empty for none)" if confirm else ""
    value = click.prompt(text + suffix, hide_input=True, default="", show_default=False,
                         confirmation_prompt=confirm, err=True)
    return value or None


@click.group(context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 100})
@home_option
@click.version_option(package_name="mpcid")
def cli(home: str | None) -> None:
    """mpcid: decentralised identities and credentials for ad hoc MPC sessions."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map every error to one line and an exit code."""
    code = _run(argv)
    if "didkit" in sys.modules:
        # didkit's Rust runtime can crash while the interpreter finalizes (seen as exit
        # 134/139 after a successful command); its work is done, so leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="mpcid", standalone_mode=False)
    except MpcidError as exc:
        if os.environ.get("MPCID_DEBUG"):
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


def wraps_async(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run an ``async def`` command body on a fresh event loop."""
    import asyncio

    @functools.wraps(func)
    def runner(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(func(*args, **kwargs))

    return runner


# Commands register themselves on `cli` when their modules are imported.
from . import identity_commands  # noqa: E402,F401
from . import demo  # noqa: E402,F401
from . import run_command  # noqa: E402,F401
from . import discovery_commands  # noqa: E402,F401
from . import session_commands  # noqa: E402,F401
from . import transcript_commands  # noqa: E402,F401
from . import invitation_commands  # noqa: E402,F401
from . import ui  # noqa: E402,F401
