"""``mpcid run``: one party of a session described by a session file."""

from __future__ import annotations

from pathlib import Path

import click

from mpcid.broker.errors import SessionFileInvalid
from mpcid.broker.session import SessionSpec

from .options import bootstrap_option, home_option, identity_name, keystore


@click.command("run", context_settings={"ignore_unknown_options": True,
                                      "allow_interspersed_args": False})
@click.option("--session", "session_file", required=True, type=click.Path(dir_okay=False),
              help="Session file (JSON: session, program_sha256, parties).")
@click.option("--as", "name", default=None, metavar="NAME",
              help="Local identity; must be one of the session's parties.")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=60.0,
              show_default=True, help="Seconds to wait for every party's channel.")
@click.option("--idle-timeout", type=click.FloatRange(min=1.0), default=30.0,
              show_default=True, help="Seconds of silence after which a peer counts as dead.")
@click.option("--listen-host", default="", help="Address to accept channels on [all].")
@bootstrap_option(help="DHT node: find parties by their endpoint records (added to the "
                      "session's).")
@click.option("--relay", "relays", multiple=True, metavar="MULTIADDR",
              help="Relay to hold a reservation on, for peers that cannot reach this "
                   "party directly (added to the session's).")
@home_option
@click.argument("program", type=click.Path(dir_okay=False))
@click.argument("program_args", nargs=-1, type=click.UNPROCESSED)
def run(session_file: str, name: str | None, connect_timeout: float, idle_timeout: float,
        listen_host: str, bootstrap: tuple[str, ...], relays: tuple[str, ...],
        home: str | None, program: str, program_args: tuple[str, ...]) -> None:
    """Run an unmodified MPyC PROGRAM as one party, over authenticated Noise channels.

    Usage: mpcid run --session SESSION.json --as NAME -- PROGRAM.py [ARGS...]
    MPyC's own options (e.g. -T, --no-prss, --log-level) may be given among ARGS.
    """
    from mpcid.broker.agent import agent_socket
    from mpcid.broker.mpyc_runtime import RunSettings, run_program
    from mpcid.broker.paths import PathSettings

    session = SessionSpec.load(Path(session_file))
    program_path = Path(program)
    if not program_path.is_file():
        raise SessionFileInvalid(f"program {program} does not exist",
                                 hint="give the path of the MPyC program")
    session.check_program(program_path)
    store = keystore(home)
    key = store.load_identity(identity_name(store, name))
    session.index_of(key.did.did)
    # Without DHT nodes only the session file's endpoints are used (and no relay).
    paths = PathSettings(bootstrap=session.bootstrap + bootstrap,
                         relays=session.relays + relays,
                         agent=agent_socket(store.home, key.did.did))
    settings = RunSettings(connect_timeout=connect_timeout, idle_timeout=idle_timeout,
                           keepalive_interval=min(5.0, idle_timeout / 3),
                           listen_host=listen_host, paths=paths)
    run_program(session, key, program_path, list(program_args), settings)

COMMANDS = (run,)
