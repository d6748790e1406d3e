"""``python -m mpcid.broker`` is the ``mpcid`` command."""

from .cli import main

main()
