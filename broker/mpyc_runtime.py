"""Run an unmodified MPyC program over mpcid channels. The only module that imports mpyc.

MPyC parses ``sys.argv`` when ``mpyc.runtime`` is first imported, so :meth:`PartyRun.run`
sets ``sys.argv`` to exactly what MPyC and the program should see (``-I index``, one
``-P host:port`` per party in session order, the session's MPyC options, then the
program's own arguments) before importing it. It then replaces the runtime's ``start``
with :meth:`PartyRun.start`: the same mesh MPyC builds (party i accepts the parties below
it and dials the parties above it), but every connection is a Noise channel whose peer is
proven by its DID key, and the MPyC index of a peer is the session index of that DID.
Nothing else in MPyC changes: its ``MessageExchanger`` gets a ``ChannelTransport``
and its PRSS keys and shares travel inside the channel.

``start`` does four things, each in its own method: listen and accept channels from the
lower parties (:meth:`PartyRun._listen`), publish this party and join the DHT (through
:class:`~mpcid.broker.paths.Paths`, the one place that dials), dial the higher parties
(:meth:`PartyRun._dial`), and, for an invitation's session, admit every peer
(:meth:`PartyRun._admit`, with :class:`~mpcid.broker.admission_channel.AdmissionGate`)
before MPyC's exchanger gets the channels.

Failure policy: while connecting, a failed handshake only drops that connection (an
impostor must not be able to stop a session); parties that never complete a channel
before the connect timeout are named in a :class:`PartiesMissing` error. A channel that
dies before the computation starts (dropped, or refused because its peer announced an
MPyC index other than the one its DID holds) frees its peer's place: it is taken out of
MPyC's registry, the dialling side dials again until the connect timeout, and the
accepting side accepts the same proven DID again. With admission, whose verdicts belong
to the channel they were given on, such a loss ends the session at once, naming the peer.
Once the computation runs, any channel failure is fatal: the event loop is stopped and the
party exits non-zero naming the peer, instead of waiting forever for shares that never
come.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import runpy
import sys
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.channel import ChannelProtocol, listen, over_socket
from mpcid.p2p.errors import ConnectFailed, HandshakeFailed, RemoteProtocolError
from mpcid.p2p.early_data import ReplayGuard
from mpcid.p2p.noise import ChannelConfig, session_prologue

from . import programs
from .errors import (InvitationDeclined, PartiesMissing, PeerFailed, SessionAborted,
                     SessionError)
from .paths import Paths, PathSettings
from .progress import Progress
from .session import SessionSpec

if TYPE_CHECKING:
    from .program_fetch import ProgramServer

    # Imported where a session has admission: credentials, JSON-LD and policies cost
    # ~40-60 ms of CPU to import, which `mpcid run` without admission does not pay.
    from .admission_channel import AdmissionGate, AdmissionSettings, Presented

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
    paths: PathSettings = PathSettings()
    """DHT discovery and relay fallback; without bootstrap nodes, only the session file's
    endpoints are used."""
    admission: AdmissionSettings | None = None
    """Credential-gated admission before MPyC starts (``mpcid join``); None: none."""
    progress: Progress = Progress()
    """Where found/connected/admitted events go."""
    names: Mapping[str, str] = field(default_factory=dict)
    """DID -> the person's name for it (contacts, own identities), for messages."""


@dataclass(frozen=True)
class RunReport:
    """What happened in a run, for the transcript (:meth:`PartyRun.report`)."""

    started: float | None = None
    """When MPyC started (every channel open, every party admitted)."""
    presented: Mapping[int, Presented] = field(default_factory=dict)
    """Per admitted peer: what it proved."""
    paths: Mapping[int, str] = field(default_factory=dict)
    """Per peer: the path of the channel with it (the last one, if it was redialled)."""


def run_program(session: SessionSpec, key: Ed25519Key, program: Path, program_args: list[str],
                settings: RunSettings = RunSettings(),
                extra_mpyc_args: Sequence[str] = ()) -> RunReport:
    """Run ``program`` as this party of ``session``; raises an :class:`MpcidError` on any
    session failure. The caller has checked the program's hash."""
    party = PartyRun(session, key, settings)
    party.run(program, program_args, extra_mpyc_args)
    return party.report()


class PartyRun:
    """One party's run of one session: MPyC's program, with channels instead of TCP."""

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
        self._slots: dict[int, asyncio.BaseProtocol] = {}
        """Per peer, the application of its live channel before MPyC starts: a second
        channel with the same peer is refused while the first one lives."""
        self._redial: dict[int, asyncio.Future[None]] = {}
        """Per peer this party dials: resolved when its channel died before the start."""
        self._dropped: set[int] = set()
        """Peers whose channel died before the start (they may have connected again)."""
        self._failed: asyncio.Future[MpcidError] | None = None
        """Resolved with the error that ends the connecting phase at once."""
        self._responder_config: ChannelConfig | None = None
        self._replay_guard = ReplayGuard()
        self._paths: dict[int, str] = {}
        """Per peer whose channel this party accepted: the path it came by."""
        self.programs: ProgramServer | None = None
        """The inviter's answer to parties that fetch the program (set by :meth:`run`)."""

    def report(self) -> RunReport:
        """What this run did so far (after :meth:`run`, however it ended)."""
        paths = {**(self.paths.used if self.paths is not None else {}), **self._paths}
        return RunReport(self.start_time,
                         self.gate.presented() if self.gate is not None else {}, paths)

    # -- running the program ------------------------------------------------------------------

    def run(self, program: Path, program_args: list[str],
            extra_mpyc_args: Sequence[str] = ()) -> None:
        """Run ``program`` under MPyC with this party's channels; raise the session's
        failure as an :class:`MpcidError`."""
        argv = [str(program), "-I", str(self.index)]
        for party in self.session.parties:
            # MPyC only records these; start() below decides how parties are reached.
            argv += ["-P", f"{party.host or '127.0.0.1'}:{party.port or 0}"]
        argv += self.session.mpyc.argv() + list(extra_mpyc_args) + list(program_args)
        if self.index == 0 and self.settings.admission is not None:
            self.programs = _program_server(program, self.session.program_sha256)
        saved_argv, saved_path = sys.argv[:], sys.path[:]
        sys.argv = argv
        sys.path.insert(0, str(program.resolve().parent))
        try:
            runtime_module = _import_mpyc_runtime()
            rt = getattr(runtime_module, "mpc", None)
            if rt is None:  # MPyC printed why its setup() failed
                raise PeerFailed("MPyC could not set up its runtime with the session's "
                                 "options", hint="see MPyC's message above")
            rt.start = types.MethodType(self.start, rt)
            self.loop = rt._loop
            self._run_program(program)
        finally:
            sys.argv, sys.path = saved_argv, saved_path
            if self.paths is not None and self.loop is not None and not self.loop.is_closed():
                self.loop.run_until_complete(self.paths.stop())  # withdraw the record

    def _run_program(self, program: Path) -> None:
        try:
            runpy.run_path(str(program), run_name="__main__")
        except SystemExit as exc:
            if self.fatal is not None:
                raise self.fatal from None
            if exc.code not in (None, 0):
                if not self.started:  # e.g. its arguments: the others can still be met
                    raise PeerFailed(
                        f"the program stopped before the session started (exit code "
                        f"{exc.code})", hint="see the program's message above; join again "
                        "with its arguments after -- (the others wait until their connect "
                        "timeout)") from None
                raise
        except RuntimeError as exc:
            # loop.stop() from on_failure surfaces as "Event loop stopped before Future
            # completed" out of mpc.run(); report the cause, not MPyC's traceback.
            if self.fatal is not None:
                raise self.fatal from None
            raise PeerFailed(f"the MPyC program failed: {exc}") from exc
        if self.fatal is not None:
            raise self.fatal

    # -- MPyC's start, over channels ------------------------------------------------------------

    async def start(self, rt: Any) -> None:
        """Replacement for ``mpyc.runtime.Runtime.start`` (MPyC 0.10/0.11 semantics)."""
        logging.info(f"Start MPyC runtime v{rt.version} (mpcid channels, session "
                     f"{self.session.session_id})")
        m = len(rt.parties)
        if m > 1:
            await self._connect_all(rt)
            logging.info(f"All {m} parties connected via mpcid channels.")
        self.started = True
        self.start_time = rt.start_time = time.time()
        if m > 1:
            self.settings.progress.emit("started")

    async def _connect_all(self, rt: Any) -> None:
        """Every channel open (and every peer admitted), or an error naming who is not."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        for peer in rt.parties:
            peer.protocol = asyncio.Future(loop=loop) if peer.pid == rt.pid else None
        self._failed = loop.create_future()
        deadline = loop.time() + self.settings.connect_timeout
        if self.settings.admission is not None:
            from .admission_channel import AdmissionGate

            self.gate = AdmissionGate(self.key, self.session.session_id, rt.pid,
                                      self.session.dids, self.settings.admission,
                                      self.settings.progress, self.describe)
        server, listen_port = await self._listen(rt)
        self.paths = Paths(self.key, self.settings.paths, self.settings.progress)
        await self.paths.start(listen_port, self.session.parties[rt.pid].host,
                               functools.partial(self._accept_stream, rt),
                               peers=tuple(p.did for p in self.session.parties
                                           if p.index != rt.pid))
        if self.paths.publishing is not None:
            self.paths.publishing.add_done_callback(self._published)
        tasks = [asyncio.ensure_future(self._dial(rt, i, deadline))
                 for i in range(len(rt.parties)) if i != rt.pid]
        if self.gate is not None and self.paths.presence is not None:
            tasks.append(asyncio.ensure_future(self._watch_declines(rt)))
        try:
            if self.gate is not None:
                await self._admit(rt, deadline)
            await self._wait_for_mpyc(rt, deadline)
        finally:
            # Python 3.11's wait_for may swallow a cancellation that races a result (in
            # Paths.open); a cancelled waiter still ends a dial task that then waits on it.
            for waiter in self._redial.values():
                waiter.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if server is not None:
                server.close()

    async def _wait_for_mpyc(self, rt: Any, deadline: float) -> None:
        """Until MPyC has registered an exchanger for every peer (it resolves the future in
        ``rt.parties[rt.pid].protocol`` then), or the deadline, or a fatal loss. Ends with
        :attr:`started` set, with no await in between: from then on a loss is fatal."""
        loop = asyncio.get_running_loop()
        assert self._failed is not None
        while True:
            ready = rt.parties[rt.pid].protocol
            if ready.done():
                # _lost replaces a resolved future when it deregisters a peer, so a
                # resolved one means every peer is there; checked all the same.
                if all(p.protocol is not None for p in rt.parties if p.pid != rt.pid):
                    self.started = True
                    return
                ready = rt.parties[rt.pid].protocol = loop.create_future()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._missing(rt)
            await asyncio.wait({ready, self._failed}, timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)
            if self._failed.done():
                raise self._failed.result()

    def _published(self, task: asyncio.Task[None]) -> None:
        """This party's record could not be published: peers cannot find it, so the
        session stops now, saying why, rather than at the connect timeout."""
        if task.cancelled() or task.exception() is None or self.started:
            return
        exc = task.exception()
        error = exc if isinstance(exc, MpcidError) else ConnectFailed(
            f"publishing this party's endpoint record failed: {exc}")
        if self.gate is not None:
            self.gate.fail(error)
        elif self._failed is not None and not self._failed.done():
            self._failed.set_result(error)

    def _lost(self, rt: Any, exchanger: Any, exc: Exception | None) -> None:
        """A channel's exchanger ended before the computation started: take it out of
        MPyC's registry and free its peer's place, then have the peer dialled again (or,
        with admission, end the session naming the peer)."""
        peer = exchanger.proven
        if rt.parties[peer].protocol is exchanger:
            rt.parties[peer].protocol = None
            ready = rt.parties[rt.pid].protocol
            if isinstance(ready, asyncio.Future) and ready.done():
                # MPyC resolves this future when the last peer registers; it must be
                # pending again, or the peer's next registration would resolve it twice.
                rt.parties[rt.pid].protocol = ready.get_loop().create_future()
        if self._slots.get(peer) is exchanger:
            del self._slots[peer]
        self._dropped.add(peer)
        did = self.session.parties[peer].did
        if self.gate is not None:
            if self._failed is not None and not self._failed.done():
                reason = exc.one_line() if isinstance(exc, MpcidError) else (
                    str(exc) if exc else "the channel closed")
                self._failed.set_result(PeerFailed(
                    f"lost {self.describe(did)} before the computation started: {reason}"))
            return
        log.info("channel with %s closed before the computation started; it may "
                 "connect again", self.describe(did))
        redial = self._redial.get(peer)
        if redial is not None and not redial.done():
            redial.set_result(None)

    # -- listen and accept (channels the other parties open) -------------------------------------

    async def _listen(self, rt: Any) -> tuple[asyncio.Server | None, int]:
        """Accept channels on TCP: from the parties below this one, and from those above
        that are behind a NAT while this party is public (``specs/channel.md`` 6)."""
        me = self.session.parties[rt.pid]
        # An ephemeral port is chosen per socket, so listen on IPv4 only to publish one.
        where = self.settings.listen_host or ("" if me.port else "0.0.0.0")
        self._responder_config = self.channel_config(
            False, [p.did for p in self.session.parties if p.index != rt.pid])
        server = await listen(where, me.port or 0,
                              functools.partial(self._responder, rt, "direct TCP"))
        return server, server.sockets[0].getsockname()[1]

    def _responder(self, rt: Any, path: str) -> ChannelProtocol:
        assert self._responder_config is not None

        def application(did: str) -> asyncio.BaseProtocol:
            if self.programs is not None and programs.is_request(
                    protocol.early.get("early_data") or b""):
                # A party without the program asks for it (specs/session.md 10): not
                # its session channel, which it opens after, so no place is taken.
                index = self.session.index_of(did)
                log.info("sending the program to %s (%s)", self.describe(did), path)
                self.settings.progress.emit("program_sent", party=index, did=did)
                return self.programs.app(index)
            return self._accept(rt, path, did)

        protocol = ChannelProtocol(self._responder_config, application,
                                   on_failure=self.on_failure)
        return protocol

    async def _accept_stream(self, rt: Any, sock: Any, path: str) -> None:
        """A channel opened over libp2p (a relay circuit, say) or a punched connection."""
        await over_socket(sock, functools.partial(self._responder, rt, path))

    def _accept(self, rt: Any, path: str, did: str) -> asyncio.Protocol:
        """The application of a channel another party opened, once its DID is proven."""
        index = self.session.index_of(did)
        app = self._claim(rt, index, dialled=False)
        self._paths[index] = path
        log.info("channel from %s established (%s)", self.describe(did), path)
        self.settings.progress.emit("connected", party=index, did=did, path=path)
        return app

    def _claim(self, rt: Any, peer_index: int, dialled: bool) -> asyncio.Protocol:
        """The application of a proven channel with ``peer_index``, which takes the
        peer's place until it dies before the start; refused while the place is taken
        (or once the computation runs)."""
        if peer_index in self._slots or self.started:
            raise HandshakeFailed(
                f"{self.describe(self.session.parties[peer_index].did)} connected twice")
        app = self._application(rt, peer_index, dialled)
        self._slots[peer_index] = app
        return app

    # -- dial (the channels this party opens) ---------------------------------------------------

    async def _dial(self, rt: Any, peer_index: int, deadline: float) -> None:
        party = self.session.parties[peer_index]
        config = self.channel_config(True, [party.did])

        def factory() -> ChannelProtocol:
            return ChannelProtocol(config, lambda did: self._claim(rt, peer_index, True),
                                   on_failure=self.on_failure)

        assert self.paths is not None
        loop = asyncio.get_running_loop()
        while True:  # until cancelled when MPyC starts (or Paths.open gives up)
            dropped = self._redial[peer_index] = loop.create_future()
            # None: the peer opens this pair's channel; wait all the same, in case the
            # records change when it died and this party has to open the next one.
            await self.paths.open(party, factory, deadline, self.describe(party.did),
                                  lower=rt.pid < peer_index)
            await dropped  # the channel died before the start (see _lost): dial again
            await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))

    def _application(self, rt: Any, peer_index: int, dialled: bool) -> asyncio.Protocol:
        """MPyC's exchanger for a proven peer, behind admission when the session has it."""

        def exchanger() -> asyncio.Protocol:
            exchanger_type = _channel_exchanger_type()
            return exchanger_type(rt, self, peer_index, dialled)  # type: ignore[no-any-return]

        if self.gate is None:
            return exchanger()
        return self.gate.app(peer_index, exchanger)

    # -- admit (every pair of parties, before MPyC) ---------------------------------------------

    async def _admit(self, rt: Any, deadline: float) -> None:
        """Wait until every pair of parties admitted each other, then hand the channels to
        MPyC; on a refusal, tell the others, close every channel and raise."""
        gate = self.gate
        assert gate is not None
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(asyncio.shield(gate.done), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            error = self._missing(rt)
            gate.fail(error)
            await gate.close()
            raise error from None
        except MpcidError as exc:
            await gate.close()
            if not isinstance(exc, (SessionAborted, InvitationDeclined)):
                await self._announce(exc)
            raise
        gate.hand_over()

    async def _announce(self, error: MpcidError) -> None:
        """Publish why this party stopped the session as its decline, so that parties that
        have no channel to it yet learn the reason instead of waiting for a timeout."""
        from .session_records import publish_decline

        admission = self.settings.admission
        discovery = self.paths.presence if self.paths is not None else None
        if discovery is None or admission is None or admission.invitation is None:
            return
        reason = " ".join(error.message.split())[:500]  # one line, as a decline's reason is
        try:
            await asyncio.wait_for(publish_decline(discovery, self.key, admission.invitation,
                                                   reason, time.time()), 5)
        except (MpcidError, asyncio.TimeoutError) as exc:
            log.debug("could not publish why the session stopped: %s", exc)

    async def _watch_declines(self, rt: Any, interval: float = 2.0) -> None:
        """While parties are missing, look for their declines (``specs/session.md`` 8); one
        found ends the session for everyone, naming the party and its reason."""
        from .session_records import fetch_decline

        gate = self.gate
        discovery = self.paths.presence if self.paths is not None else None
        assert gate is not None and discovery is not None
        while not gate.done.done():
            # Every party asks the DHT nodes about every missing party: not at once (the
            # parties are publishing their records then), and less often when many are
            # missing, so that a large session does not swamp the nodes.
            missing = [p for p in self.session.parties
                       if p.index != rt.pid and not gate.has_channel(p.index)]
            await asyncio.sleep(interval * max(1.0, len(missing) / 4))
            for party in missing:
                if gate.has_channel(party.index):
                    continue
                try:
                    decline = await fetch_decline(discovery, self.session.session_id,
                                                  party.did)
                except MpcidError as exc:
                    log.debug("looking for a decline of %s: %s", party.did, exc)
                    continue
                if decline is not None:
                    reason = decline.reason or "no reason given"
                    self.settings.progress.emit("declined", party=party.index, did=party.did,
                                                reason=reason)
                    gate.fail(InvitationDeclined(
                        f"{self.describe(party.did)} will not take part: {reason}"))
                    return

    def _missing(self, rt: Any) -> SessionError:
        """Why the session did not start in time: parties without a channel, else parties
        whose admission did not finish."""
        timeout = self.settings.connect_timeout
        gate = self.gate
        admitting = gate is not None and not gate.done.done()
        # Once admission is over (or without it), a peer is missing if MPyC has no
        # exchanger for it: a channel whose peer never sent MPyC's index counts as none.
        absent = [p for p in self.session.parties if p.index != rt.pid and (
            not gate.has_channel(p.index) if gate is not None and admitting
            else rt.parties[p.index].protocol is None)]
        if not absent and gate is not None and admitting:
            # Peers admitted both ways that never said ready wait for some other party
            # (one they have no channel with): say so, or the list names only them.
            others = (" - each of them still waits for another party it has no channel "
                      "with" if gate.waiting_on_others() else "")
            return PartiesMissing(f"admission did not finish within {timeout:g} s ("
                                  + "; ".join(gate.unfinished()) + others + ")")
        # A party that never came is the cause; one whose channel closed while waiting
        # (it gave up, say) is named only when no party is missing from the start.
        never = [p for p in absent if p.index not in self._dropped]
        named = never or absent or [p for p in self.session.parties if p.index != rt.pid]
        note = " (its channel closed before the computation started)" if (
            absent and not never) else ""
        return PartiesMissing("no channel within {:g} s to: {}{}".format(
            timeout, "; ".join(self.describe(p.did) + self._where(p)
                               for p in named), note))

    def _where(self, party: Any) -> str:
        """Where a missing party was looked for, and what was found."""
        if party.host and party.port:
            return f" at {party.where()}"
        paths = self.paths
        if paths is None or paths.presence is None:
            return ""
        if party.index in paths.records or party.index > self.index:  # looked up
            return ", " + paths.whereabouts(party.index)
        return ""

    # -- shared by the channels -----------------------------------------------------------------

    def describe(self, did: str | None) -> str:
        if did is None:
            return "an unknown peer"
        name = self.settings.names.get(did)
        for party in self.session.parties:
            if party.did == did:
                return f"party {party.index} ({name}, {did})" if name else \
                    f"party {party.index} ({did})"
        return f"{name} ({did})" if name else did

    def channel_config(self, initiator: bool, peers: list[str]) -> ChannelConfig:
        """With admission, the dialling side's presentation travels in Noise message 1 and
        a responder takes it there (``specs/channel.md`` 4.2); every responder channel of
        the session shares one replay guard."""
        gate = self.gate
        return ChannelConfig(
            static_private=self.key.x25519_private_key, prologue=self.prologue,
            initiator=initiator,
            expected_peers={did: DIDKey.parse(did).x25519_public_key for did in peers},
            keepalive_interval=self.settings.keepalive_interval,
            idle_timeout=self.settings.idle_timeout,
            handshake_timeout=min(15.0, self.settings.connect_timeout),
            early_data=gate.early_presentation if gate is not None and initiator else None,
            accept_early_data=gate is not None and not initiator,
            replay_guard=None if initiator else self._replay_guard)

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


def _program_server(program: Path, sha256: bytes) -> ProgramServer:
    """What the inviter of an invitation's session answers a party that asks for the
    program: the bytes it runs, read once (a later edit of the file changes nothing)."""
    import hashlib

    from .program_fetch import ProgramServer

    try:
        data = program.read_bytes()
    except OSError:
        return ProgramServer(None, "the inviter cannot read its program")
    if hashlib.sha256(data).digest() != sha256:
        return ProgramServer(None, "the inviter's program changed since it was checked")
    if len(data) > programs.MAX_PROGRAM:
        return ProgramServer(None, f"the program is larger than {programs.MAX_PROGRAM} "
                                   "bytes; ask the inviter for it")
    return ProgramServer(data)


class _NoInstallHints(logging.Filter):
    """MPyC suggests optional packages (numpy, gmpy2) at import: advice for whoever
    installed it, not output of the session."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Install package ")


#: MPyC's modules that only *use* the runtime (each has ``runtime = None`` until
#: ``mpyc.runtime`` is imported and fills it in): importing them does not parse argv.
MPYC_PRELOADABLE = ("mpyc.numpy", "mpyc.gmpy", "mpyc.finfields", "mpyc.thresha",
                    "mpyc.asyncoro", "mpyc.sectypes", "mpyc.mpctools", "mpyc.secgroups",
                    "mpyc.random", "mpyc.statistics", "mpyc.seclists", "mpyc.secpols")


#: What MPyC chose when the launcher preloaded it (numpy off, gmpy2 off), if it did.
_PRELOADED: list[tuple[bool, bool]] = []


def _mpyc_choices() -> tuple[bool, bool]:
    """What MPyC's package decided at import, from its options and environment."""
    return os.getenv("MPYC_NONUMPY") == "1", os.getenv("MPYC_NOGMPY") == "1"


def preload_mpyc() -> None:
    """Import MPyC except ``mpyc.runtime`` (the launcher's preload, before any session:
    numpy and MPyC's field and share code; the runtime is set up per session).

    MPyC's package reads the command line and environment when it is imported (logging,
    worker threads, numpy and gmpy2 on or off): a session of a preloaded MPyC has it read
    them again (:func:`_import_mpyc`), and imports MPyC afresh if its choices differ."""
    import importlib

    hints = _NoInstallHints()
    logging.getLogger().addFilter(hints)
    try:
        for name in MPYC_PRELOADABLE:
            importlib.import_module(name)
    finally:
        logging.getLogger().removeFilter(hints)
    _PRELOADED[:] = [_mpyc_choices()]


def _import_mpyc_runtime() -> Any:
    hints = _NoInstallHints()
    logging.getLogger().addFilter(hints)
    try:
        return _import_mpyc()
    finally:
        logging.getLogger().removeFilter(hints)


def _import_mpyc() -> Any:
    if "mpyc.runtime" in sys.modules:
        # Already set up by an earlier import in this process: set up again from sys.argv.
        module: Any = sys.modules["mpyc.runtime"]
        module.mpc = module.setup()
        return module
    if _PRELOADED and "mpyc" in sys.modules:
        import importlib

        # Preloaded with the launcher's command line: MPyC's package reads this party's.
        importlib.reload(sys.modules["mpyc"])
        if _mpyc_choices() != _PRELOADED[0]:
            for name in [n for n in sys.modules if n == "mpyc" or n.startswith("mpyc.")]:
                del sys.modules[name]
    _PRELOADED.clear()
    import mpyc.runtime  # noqa: F401  (parses sys.argv, sets up mpyc.runtime.mpc)

    return sys.modules["mpyc.runtime"]


@functools.cache
def _channel_exchanger_type() -> type:
    """MPyC's ``MessageExchanger``, bound to the index its channel proved (built once,
    after MPyC is imported)."""
    from mpyc.asyncoro import MessageExchanger

    class ChannelExchanger(MessageExchanger):  # type: ignore[misc]
        def __init__(self, rt: Any, party: PartyRun, proven: int, dialled: bool) -> None:
            super().__init__(rt, proven if dialled else None)
            self.party = party
            self.proven = proven
            self.checked = dialled

        def data_received(self, data: bytes) -> None:
            if not self.checked and len(self.bytes) + len(data) >= 2:
                announced = int.from_bytes((bytes(self.bytes) + data)[:2], "little")
                self.checked = True
                if announced != self.proven:
                    # The index MPyC reads is only accepted if it is the proven one.
                    did = self.party.session.parties[self.proven].did
                    self.transport.abort()
                    self.party.on_failure(did, RemoteProtocolError(
                        f"{self.party.describe(did)} announced index {announced}"))
                    return
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.party.started:
                # MPyC would treat this as its shutdown (or raise exc); before the start
                # the peer only loses its place, to connect again (PartyRun._lost).
                self.party._lost(self.runtime, self, exc)
            elif exc is None and self.peer_pid is not None:
                super().connection_lost(None)
            # Failures are reported once, by the channel's failure handler.

    return ChannelExchanger
