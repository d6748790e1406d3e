"""What the command line shares: options, the ``MPCID_*`` environment, the keystore.

Configuration is built here, once, at the edge: every ``MPCID_*`` variable is read in this
module (``MPCID_HOME``, ``MPCID_BOOTSTRAP`` and ``MPCID_CA_FILE`` through click's
``envvar``, ``MPCID_PASSPHRASE`` in :meth:`CliConfig.from_environment`, ``MPCID_DEBUG``
in :func:`debug`), and the domain below receives plain values and frozen dataclasses.
The one exception runs before this module is imported: the entry point
(:mod:`mpcid.broker.launcher`) reads ``MPCID_HOME`` and ``MPCID_NO_LAUNCHER`` to decide
whether the local launcher runs the command, and never imports click for that.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from mpcid.identity.errors import UsageError
from mpcid.identity.keystore import Keystore, default_home

F = TypeVar("F", bound=Callable[..., Any])


def debug() -> bool:
    """``MPCID_DEBUG=1``: tracebacks instead of one-line errors, and libp2p's own logs."""
    return bool(os.environ.get("MPCID_DEBUG"))


# --- the keystore ----------------------------------------------------------------------------


def identity_name(ks: Keystore, name: str | None) -> str:
    """The identity a command acts as: ``--as NAME`` when given; else the keystore's only
    identity, or the one named ``default``; else say which exist."""
    if name:
        return name
    names = sorted(info.name for info in ks.identities())
    if len(names) == 1:
        return names[0]
    if "default" in names or not names:
        return "default"
    raise UsageError(f"this keystore holds several identities ({', '.join(names[:8])})",
                     hint="say which one with --as NAME")


@dataclass(frozen=True)
class CliConfig:
    home: Path
    """The keystore folder ($MPCID_HOME, default ~/.mpcid)."""
    passphrase: str | None
    """From $MPCID_PASSPHRASE; None means: prompt on a terminal, else unencrypted/refuse."""
    interactive: bool
    """Whether stdin is a terminal we may prompt on."""

    @classmethod
    def from_environment(cls, home: str | None) -> CliConfig:
        return cls(home=Path(home).expanduser() if home else default_home(),
                   passphrase=os.environ.get("MPCID_PASSPHRASE") or None,
                   interactive=sys.stdin.isatty())

    def keystore(self, prompt: Callable[[str, bool], str | None] | None = None) -> Keystore:
        def source(text: str, confirm: bool) -> str | None:
            if self.passphrase:
                return self.passphrase
            if self.interactive and prompt is not None:
                return prompt(text, confirm)
            return None

        return Keystore(self.home, passphrase=source)


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


def keystore(home: str | None, *, prompt: bool = True) -> Keystore:
    """The keystore of ``--home``; ``prompt``: ask for a passphrase on a terminal."""
    return config_from(home).keystore(prompt_passphrase if prompt else None)


# --- options shared by several commands ------------------------------------------------------


def _split(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
           ) -> tuple[str, ...]:
    """Repeated options and a variable alike: ``MPCID_BOOTSTRAP="/ip4/.. /ip4/.."``. A
    node's listen-all address is refused with what to use instead."""
    parts = tuple(part for value in values or () for part in value.split())
    for part in parts:
        if part.startswith(("/ip4/0.0.0.0/", "/ip6/::/")):
            raise UsageError(f"{part[:60]}... is where a node listens (every interface of "
                             "its machine), not an address to dial",
                             hint="use an address `mpcid node` printed, with its machine's "
                                  "IP in place of 0.0.0.0")
    return parts


def bootstrap_option(help: str = "DHT node to join through, /ip4/.../tcp/.../p2p/12D3KooW... "
                     "(repeatable; in the variable, separated by spaces).") -> Callable[[F], F]:
    """``--bootstrap`` (or $MPCID_BOOTSTRAP): a tuple of multiaddrs, already split."""
    return click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
                        envvar="MPCID_BOOTSTRAP", show_envvar=True, callback=_split, help=help)


def ca_file_option(help: str = "Extra CA certificates (PEM) for did:web and status lists."
                   ) -> Callable[[F], F]:
    return click.option("--ca-file", envvar="MPCID_CA_FILE", show_envvar=True,
                        type=click.Path(dir_okay=False), help=help)


def json_option(help: str = "Print the result as JSON.") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help)


_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds of a duration such as ``90m``, ``24h``, ``7d`` or ``3600``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a duration", hint="e.g. 90m, 24h, 7d or seconds")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _max_age(ctx: click.Context, param: click.Parameter, value: str) -> dt.timedelta:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise UsageError("--status-max-age must be positive", hint="e.g. 24h or 7d")
    return dt.timedelta(seconds=seconds)


def trust_options(func: F) -> F:
    """``--context``, ``--status-file`` and ``--status-max-age``: what a verifier may read
    locally, and how old a status list it accepts."""
    func = click.option("--status-max-age", "status_max_age", default="7d",
                        show_default=True, metavar="DURATION", callback=_max_age,
                        help="Refuse status lists without validUntil signed longer ago "
                             "than this (an old copy could hide a revocation).")(func)
    func = click.option("--status-file", "status_files", multiple=True, metavar="URL=FILE",
                        help="Read the status list published at URL from FILE "
                             "(repeatable).")(func)
    return click.option("--context", "contexts", multiple=True, metavar="URL=FILE",
                        help="Trust this JSON-LD context file for URL (offline; "
                             "repeatable).")(func)


def pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict; a malformed one is a usage error."""
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{what} {item!r} is not KEY=VALUE")
        result[key] = value
    return result


def files(values: tuple[str, ...], what: str) -> dict[str, Path]:
    """``URL=FILE`` options as a dict of paths."""
    return {url: Path(file) for url, file in pairs(values, what).items()}


def wraps_async(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run an ``async def`` command body on a fresh event loop."""

    @functools.wraps(func)
    def runner(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(func(*args, **kwargs))

    return runner
