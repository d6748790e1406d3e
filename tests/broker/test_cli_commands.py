"""The command line loads a command's module only when that command runs."""

from __future__ import annotations

import importlib
import subprocess
import sys

from mpcid.broker.cli import COMMAND_MODULES

MODULES = ("identity", "demo", "run", "discovery", "sessions", "transcript", "invitations",
           "ui", "programs", "statuslists", "contacts")


def test_every_command_is_mapped_to_its_module() -> None:
    found = {}
    for name in MODULES:
        module = importlib.import_module(f"mpcid.broker.cli.{name}")
        for command in module.COMMANDS:
            found[command.name] = name
    assert found == COMMAND_MODULES


def test_running_join_does_not_import_the_other_commands() -> None:
    code = ("import sys; from mpcid.broker.cli import cli; "
            "cli.get_command(None, 'join'); "
            "print(sorted(m for m in sys.modules if m.startswith('mpcid.broker.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert eval(out) == ["mpcid.broker.cli.options", "mpcid.broker.cli.sessions"]
