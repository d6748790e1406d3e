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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.channel import ChannelProtocol, connect, listen, over_socket
from mpcid.p2p.errors import HandshakeFailed, RemoteProtocolError
from mpcid.p2p.noise import ChannelConfig, session_prologue

from .admission_channel import AdmissionGate, AdmissionSettings
from .errors import InvitationDeclined, PartiesMissing, PeerFailed, SessionAborted
from .paths import Paths, PathSettings
from .progress import Progress
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
    admission: AdmissionSettings | None = None
    """Credential-gated admission before MPyC starts (``mpcid join``); None: none."""
    progress: Progress = Progress()
    """Where found/connected/admitted events go."""


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
        self.gate: AdmissionGate | None = None
        self.start_time: float | None = None

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


@dataclass
class RunReport:
    """What happened in a run, for the transcript (filled in by :func:`run_program`)."""

    started: float | None = None
    """When MPyC started (every channel open, every party admitted)."""
    presented: dict[int, Any] = field(default_factory=dict)
    """Per admitted peer: what it proved (:class:`~.admission_channel.Presented`)."""


def run_program(session: SessionSpec, key: Ed25519Key, program: Path, program_args: list[str],
                settings: RunSettings = RunSettings(),
                extra_mpyc_args: Sequence[str] = (), report: RunReport | None = None) -> None:
    """Run ``program`` as this party of ``session``; raises an :class:`MpcidError` on any
    session failure. The caller has checked the program's hash."""
    state = _Run(session, key, settings)
    try:
        _run(state, program, program_args, extra_mpyc_args)
    finally:
        if report is not None:
            report.started = state.start_time
            if state.gate is not None:
                report.presented = {i: s.presented for i, s in state.gate.machine.state.items()
                                    if s.presented is not None}


def _run(state: _Run, program: Path, program_args: list[str],
         extra_mpyc_args: Sequence[str]) -> None:
    session = state.session
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
    progress = state.settings.progress
    if state.settings.admission is not None:
        state.gate = AdmissionGate(state.key, state.session.session_id, rt.pid,
                                   state.session.dids, state.settings.admission, progress,
                                   state.describe)

    def app_for(peer_index: int, dialled: bool) -> asyncio.Protocol:
        def exchanger() -> asyncio.Protocol:
            return ChannelExchanger(peer_index, dialled)

        if state.gate is None:
            return exchanger()
        return state.gate.app(peer_index, exchanger)

    def accept(did: str) -> asyncio.Protocol:
        if did in connected:
            raise HandshakeFailed(f"{state.describe(did)} connected twice")
        connected.add(did)
        log.info("channel from %s established", state.describe(did))
        progress.emit("connected", party=index_of[did], did=did, path="accepted")
        return app_for(index_of[did], dialled=False)

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
        state.paths = Paths(state.key, state.settings.paths, progress)

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

        def factory() -> ChannelProtocol:
            return ChannelProtocol(config, lambda did: app_for(peer_index, True),
                                   on_failure=state.on_failure)

        if state.paths is not None:
            await state.paths.open(party, factory, deadline, state.describe(party.did))
            return
        assert party.host is not None and party.port is not None
        while True:
            protocol = await connect(party.host, party.port, factory, deadline=deadline,
                                     what=state.describe(party.did))
            try:
                await asyncio.wait_for(protocol.ready, max(0.1, deadline - loop.time()))
                log.info("channel to %s established", state.describe(party.did))
                progress.emit("connected", party=peer_index, did=party.did,
                              path=f"direct TCP {party.host}:{party.port}")
                return
            except (MpcidError, asyncio.TimeoutError):
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    dials = [asyncio.ensure_future(dial(i)) for i in range(rt.pid + 1, m)]
    if state.gate is not None and state.paths is not None:
        dials.append(asyncio.ensure_future(_watch_declines(state, rt)))
    try:
        if state.gate is not None:
            await _admit(state, rt, deadline)
        await asyncio.wait_for(asyncio.shield(rt.parties[rt.pid].protocol),
                               max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        raise _missing(state, rt) from None
    finally:
        for task in dials:
            task.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        if server is not None:
            server.close()
    logging.info(f"All {m} parties connected via mpcid channels.")
    state.started = True
    state.start_time = rt.start_time = time.time()
    progress.emit("started")


async def _admit(state: _Run, rt: Any, deadline: float) -> None:
    """Wait until every pair of parties admitted each other, then hand the channels to
    MPyC; on a refusal, tell the others, close every channel and raise."""
    gate = state.gate
    assert gate is not None
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(asyncio.shield(gate.done), max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        error = _missing(state, rt)
        gate.fail(error)
        await gate.close()
        raise error from None
    except MpcidError as exc:
        await gate.close()
        if not isinstance(exc, (SessionAborted, InvitationDeclined)):
            await _announce(state, exc)
        raise
    gate.hand_over()


async def _announce(state: _Run, error: MpcidError) -> None:
    """Publish why this party stopped the session as its decline, so that parties that
    have no channel to it yet learn the reason instead of waiting for a timeout."""
    from .session_records import publish_decline

    admission = state.settings.admission
    if state.paths is None or admission is None or admission.invitation is None:
        return
    reason = " ".join(error.message.split())[:500]  # one line, as a decline's reason is
    try:
        await asyncio.wait_for(publish_decline(state.paths.discovery, state.key,
                                               admission.invitation, reason, time.time()), 5)
    except (MpcidError, asyncio.TimeoutError) as exc:
        log.debug("could not publish why the session stopped: %s", exc)


async def _watch_declines(state: _Run, rt: Any, interval: float = 2.0) -> None:
    """While parties are missing, look for their declines (``specs/session.md`` 8); one
    found ends the session for everyone, naming the party and its reason."""
    from .session_records import fetch_decline

    gate, paths = state.gate, state.paths
    assert gate is not None and paths is not None
    while not gate.done.done():
        for party in state.session.parties:
            if party.index == rt.pid or party.index in gate.apps:
                continue
            try:
                decline = await fetch_decline(paths.discovery, state.session.session_id,
                                              party.did)
            except MpcidError as exc:
                log.debug("looking for a decline of %s: %s", party.did, exc)
                continue
            if decline is not None:
                reason = decline.reason or "no reason given"
                state.settings.progress.emit("declined", party=party.index, did=party.did,
                                             reason=reason)
                gate.fail(InvitationDeclined(
                    f"{state.describe(party.did)} will not take part: {reason}"))
                return
        await asyncio.sleep(interval)


def _missing(state: _Run, rt: Any) -> MpcidError:
    """Why the session did not start in time: parties without a channel, else parties
    whose admission did not finish."""
    parties = state.session.parties
    gate = state.gate
    timeout = state.settings.connect_timeout
    if gate is not None:
        absent = [p for p in parties if p.index != rt.pid and p.index not in gate.apps]
    else:
        absent = [p for p in parties
                  if p.index != rt.pid and rt.parties[p.index].protocol is None]
    if absent:
        return PartiesMissing("no channel within {:g} s to: {}".format(
            timeout, "; ".join(f"party {p.index} ({p.did}) at {p.where()}" for p in absent)))
    assert gate is not None
    waiting = [f"{gate.machine.name(i)}: I {s.mine.value}, it {s.theirs.value}"
               for i, s in gate.machine.state.items()
               if not (s.mine.value == "admitted" and s.theirs.value == "ready")]
    return PartiesMissing(f"admission did not finish within {timeout:g} s ("
                          + "; ".join(waiting) + ")")
