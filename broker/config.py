"""Configuration built once at the edge (the CLI) and passed inward as frozen data.

Core code reads no environment variables and no ``sys.argv``; this module is where the
command line and the environment (``MPCID_HOME``, ``MPCID_PASSPHRASE``) become objects.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mpcid.identity.keystore import Keystore, default_home


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
