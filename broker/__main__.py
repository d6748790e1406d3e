"""``python -m mpcid.broker`` is the ``mpcid`` command."""

from .launcher import main

main()
