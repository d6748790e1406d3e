"""Run an unmodified MPyC program over mpcid channels. The only module that imports mpyc.

MPyC parses ``sys.argv`` when ``mpyc.runtime`` is first imported, so :func:`run_program`
sets ``sys.argv`` to exactly what MPyC and the program should see (``-I index``, one
``-P host:port`` per party in session order, the session's MPyC options, then the
program's own arguments) before importing it. It then replaces the runtime's ``start``
with :func:`_channel_start`: the same mesh MPyC builds (party i accepts the parties below
it and dials the parties above it), but every connection is a Noise channel whose peer is
proven by its DID key, and the MPyC index of a peer is the session index of that DID.
Nothing else in MPyC changes: its ``MessageExchanger`` gets a :class:`ChannelTransport`
and its PRSS keys and shares travel inside the channel.

Failure policy: while connecting, a failed handshake only drops that connection (an
impostor must not be able to stop a session); parties that never complete a channel
before the connect timeout are named in a :class:`PartiesMissing` error. Once the
computation runs, any channel failure is fatal: the event loop is stopped and the party
exits non-zero naming the peer, instead of waiting forever for shares that never come.
"""

from __future__ import annotations

import asyncio
import logging
import runpy
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.channel import ChannelProtocol, connect, listen, over_socket
from mpcid.p2p.errors import HandshakeFailed, RemoteProtocolError
from mpcid.p2p.noise import ChannelConfig, session_prologue

from .errors import PartiesMissing, PeerFailed
from .paths import Paths, PathSettings
from .session import SessionSpec

log = logging.getLogger("mpcid.run")


@dataclass(frozen=True)
class RunSettings:
    connect_timeout: float = 60.0
    """Seconds to wait for every channel of the session before giving up."""
    keepalive_interval: float = 5.0
    """Seconds of silence after which a channel sends a keepalive."""
    idle_timeout: float = 30.0
    """Seconds without any frame from a peer after which it is declared dead."""
    listen_host: str = ""
    """Address to accept channels on ('' = all interfaces, as MPyC does)."""
    paths: PathSettings | None = None
    """DHT discovery and relay fallback; None: only the session file's endpoints."""


class _Run:
    """State of one party's run, shared by the patched ``start`` and the channels."""

    def __init__(self, session: SessionSpec, key: Ed25519Key, settings: RunSettings) -> None:
        self.session = session
        self.key = key
        self.settings = settings
        self.index = session.index_of(key.did.did)
        self.prologue = session_prologue(session.session_id, session.program_sha256,
                                         session.dids)
        self.started = False
        self.fatal: MpcidError | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.paths: Paths | None = None

    def describe(self, did: str | None) -> str:
        if did is None:
            return "an unknown peer"
        for party in self.session.parties:
            if party.did == did:
                return f"party {party.index} ({did})"
        return did

    def config(self, initiator: bool, peers: list[str]) -> ChannelConfig:
        return ChannelConfig(
            static_private=self.key.x25519_private_key, prologue=self.prologue,
            initiator=initiator,
            expected_peers={did: DIDKey.parse(did).x25519_public_key for did in peers},
            keepalive_interval=self.settings.keepalive_interval,
            idle_timeout=self.settings.idle_timeout,
            handshake_timeout=min(15.0, self.settings.connect_timeout))

    def on_failure(self, did: str | None, exc: MpcidError) -> None:
        if not self.started:
            # Before the computation: drop this connection, keep waiting for the real party.
            log.warning("channel with %s failed: %s", self.describe(did), exc.one_line())
            return
        if self.fatal is None:
            self.fatal = PeerFailed(f"lost {self.describe(did)} during the computation: "
                                    f"{exc.one_line()}")
            assert self.loop is not None
            self.loop.stop()


def run_program(session: SessionSpec, key: Ed25519Key, program: Path, program_args: list[str],
                settings: RunSettings = RunSettings(),
                extra_mpyc_args: Sequence[str] = ()) -> None:
    """Run ``program`` as this party of ``session``; raises an :class:`MpcidError` on any
    session failure. The caller has checked the program's hash."""
    state = _Run(session, key, settings)
    argv = [str(program), "-I", str(state.index)]
    for party in session.parties:
        # MPyC only records these; mpcid's own start() decides how parties are reached.
        argv += ["-P", f"{party.host or '127.0.0.1'}:{party.port or 0}"]
    argv += session.mpyc.argv() + list(extra_mpyc_args) + list(program_args)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = argv
    sys.path.insert(0, str(program.resolve().parent))
    try:
        runtime_module = _import_mpyc_runtime()
        rt = getattr(runtime_module, "mpc", None)
        if rt is None:  # MPyC printed why its setup() failed
            raise PeerFailed("MPyC could not set up its runtime with the session's options",
                             hint="see MPyC's message above")
        rt.start = types.MethodType(_make_start(state), rt)
        state.loop = rt._loop
        try:
            runpy.run_path(str(program), run_name="__main__")
        except SystemExit as exc:
            if state.fatal is not None:
                raise state.fatal from None
            if exc.code not in (None, 0):
                raise
        except RuntimeError as exc:
            # loop.stop() from on_failure surfaces as "Event loop stopped before Future
            # completed" out of mpc.run(); report the cause, not MPyC's traceback.
            if state.fatal is not None:
                raise state.fatal from None
            raise PeerFailed(f"the MPyC program failed: {exc}") from exc
        if state.fatal is not None:
            raise state.fatal
    finally:
        sys.argv, sys.path = saved_argv, saved_path
        if state.paths is not None and state.loop is not None and not state.loop.is_closed():
            state.loop.run_until_complete(state.paths.stop())  # withdraw the record


def _import_mpyc_runtime() -> Any:
    if "mpyc.runtime" in sys.modules:
        # Already set up by an earlier import in this process: set up again from sys.argv.
        module: Any = sys.modules["mpyc.runtime"]
        module.mpc = module.setup()
        return module
    import mpyc.runtime

    return sys.modules["mpyc.runtime"]


def _make_start(state: _Run) -> Any:
    async def start(rt: Any) -> None:
        await _channel_start(rt, state)

    return start


async def _channel_start(rt: Any, state: _Run) -> None:
    """Replacement for ``mpyc.runtime.Runtime.start`` (MPyC 0.10/0.11 semantics)."""
    from mpyc.asyncoro import MessageExchanger

    logging.info(f"Start MPyC runtime v{rt.version} (mpcid channels, session "
                 f"{state.session.session_id})")
    parties = state.session.parties
    m = len(rt.parties)
    if m == 1:
        rt.start_time = time.time()
        state.started = True
        return
    loop = asyncio.get_running_loop()
    state.loop = loop
    for peer in rt.parties:
        peer.protocol = asyncio.Future(loop=loop) if peer.pid == rt.pid else None
    deadline = loop.time() + state.settings.connect_timeout
    index_of = {p.did: p.index for p in parties}

    class ChannelExchanger(MessageExchanger):  # type: ignore[misc]
        """MPyC's exchanger, bound to the index its channel proved."""

        def __init__(self, proven: int, dialled: bool) -> None:
            super().__init__(rt, proven if dialled else None)
            self.proven = proven
            self.checked = dialled

        def data_received(self, data: bytes) -> None:
            if not self.checked and len(self.bytes) + len(data) >= 2:
                announced = int.from_bytes((bytes(self.bytes) + data)[:2], "little")
                self.checked = True
                if announced != self.proven:
                    # The index MPyC reads is only accepted if it is the proven one.
                    self.transport.abort()
                    state.on_failure(parties[self.proven].did, RemoteProtocolError(
                        f"{state.describe(parties[self.proven].did)} announced index "
                        f"{announced}"))
                    return
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if exc is None:
                super().connection_lost(None)
            # Failures are reported once, by the channel's failure handler.

    connected: set[str] = set()

    def accept(did: str) -> ChannelExchanger:
        if did in connected:
            raise HandshakeFailed(f"{state.describe(did)} connected twice")
        connected.add(did)
        log.info("channel from %s established", state.describe(did))
        return ChannelExchanger(index_of[did], dialled=False)

    server = None
    listen_port = 0
    responder = state.config(False, [p.did for p in parties[:rt.pid]]) if rt.pid else None
    if responder is not None:
        # An ephemeral port is chosen per socket, so listen on IPv4 only to publish one.
        where = state.settings.listen_host or ("" if parties[rt.pid].port else "0.0.0.0")
        server = await listen(where, parties[rt.pid].port or 0,
                              lambda: ChannelProtocol(responder, accept,
                                                      on_failure=state.on_failure))
        listen_port = server.sockets[0].getsockname()[1]
    if state.settings.paths is not None:
        state.paths = Paths(state.key, state.settings.paths)

        async def on_stream(sock: Any) -> None:
            if responder is None:  # party 0 accepts no channels: it dials everyone
                sock.close()
                return
            await over_socket(sock, lambda: ChannelProtocol(responder, accept,
                                                            on_failure=state.on_failure))

        await state.paths.start(listen_port, parties[rt.pid].host, on_stream)

    async def dial(peer_index: int) -> None:
        party = parties[peer_index]
        config = state.config(True, [party.did])
        if state.paths is not None:
            await state.paths.open(
                party, lambda: ChannelProtocol(
                    config, lambda did: ChannelExchanger(peer_index, True),
                    on_failure=state.on_failure),
                deadline, state.describe(party.did))
            return
        assert party.host is not None and party.port is not None
        while True:
            protocol = await connect(
                party.host, party.port,
                lambda: ChannelProtocol(config, lambda did: ChannelExchanger(peer_index, True),
                                        on_failure=state.on_failure),
                deadline=deadline, what=state.describe(party.did))
            try:
                await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
                log.info("channel to %s established", state.describe(party.did))
                return
            except (MpcidError, asyncio.TimeoutError):
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    dials = [asyncio.ensure_future(dial(i)) for i in range(rt.pid + 1, m)]
    try:
        await asyncio.wait_for(asyncio.shield(rt.parties[rt.pid].protocol),
                               max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        missing = [p for p in parties if p.index != rt.pid and rt.parties[p.index].protocol is None]
        raise PartiesMissing(
            "no channel within {:g} s to: {}".format(
                state.settings.connect_timeout,
                "; ".join(f"party {p.index} ({p.did}) at {p.where()}" for p in missing)
            )) from None
    finally:
        for task in dials:
            task.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        if server is not None:
            server.close()
    logging.info(f"All {m} parties connected via mpcid channels.")
    state.started = True
    rt.start_time = time.time()
