"""The asyncio side of admission: one :class:`AdmissionApp` per channel, one
:class:`AdmissionGate` per party.

Each channel starts with an :class:`AdmissionApp` as its application. It sends this
party's presentation for the channel's challenge (on a channel this party dials, the
presentation has gone out already, as early data in Noise message 1:
:meth:`AdmissionGate.early_presentation`), feeds what arrives to the sans-IO
:class:`~mpcid.broker.admission.Admission` machine, verifies the peer's presentation
(credentials, holder, challenge, domain, status lists, policy) and carries out what the
machine says. When the machine is complete, :meth:`AdmissionGate.hand_over` gives every
channel to MPyC's exchanger, together with any MPyC bytes that arrived after the peer's
``ready``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpcid.identity import credentials as vc
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import (CredentialError, DIDResolutionError, MpcidError,
                                   StatusCheckFailed)
from mpcid.identity.policy import Policy
from mpcid.p2p.errors import RemoteProtocolError
from mpcid.p2p.early_data import MAX_EARLY_DATA

from . import admission as adm
from .errors import PeerFailed
from .invitation import Invitation
from .progress import Progress

log = logging.getLogger("mpcid.session")


@dataclass(frozen=True)
class AdmissionSettings:
    policy: Policy
    """The session's credential requirements (from the invitation)."""
    credentials: tuple[dict[str, Any], ...]
    """The credentials this party presents (chosen for the policy)."""
    verify: vc.VerifyConfig
    """How peers' credentials are verified (contexts, resolver, status lists)."""
    invitation: Invitation | None = None
    """The session's invitation: a party that stops the session during admission
    publishes why as its decline (``specs/session.md`` 8), for parties not yet connected."""


@dataclass(frozen=True)
class Presented:
    """What a peer proved, kept for the transcript."""

    credentials: tuple[tuple[str | None, tuple[str, ...], str], ...]
    """(id, types, issuer) of every credential in its presentation."""


class AdmissionGate:
    """One party's admission over all its channels."""

    def __init__(self, key: Ed25519Key, session_id: str, me: int,
                 parties: list[str], settings: AdmissionSettings, progress: Progress,
                 describe: Callable[[str | None], str]) -> None:
        self.key = key
        self.session_id = session_id
        self.parties = parties
        self.settings = settings
        self.progress = progress
        peers = tuple(i for i in range(len(parties)) if i != me)
        self.machine = adm.Admission(me, peers, {i: describe(parties[i]) for i in peers})
        self.apps: dict[int, AdmissionApp] = {}
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._presenter = vc.Presenter(key, list(settings.credentials),
                                       domain=adm.domain_for(session_id),
                                       loader=settings.verify.loader)
        """One presentation for the session, with a proof per channel."""

    def app(self, peer: int, make_exchanger: Callable[[], asyncio.Protocol]) -> AdmissionApp:
        return AdmissionApp(self, peer, make_exchanger)

    # -- what the runtime and the transcript ask ------------------------------------------

    def has_channel(self, peer: int) -> bool:
        """Whether a channel with ``peer`` has opened (admitted or not)."""
        return peer in self.apps

    def presented(self) -> dict[int, Presented]:
        """What each admitted peer proved."""
        return {peer: state.presented for peer, state in self.machine.state.items()
                if isinstance(state.presented, Presented)}

    def unfinished(self) -> list[str]:
        """The peers whose admission is not complete, with where each side stands."""
        return [f"{self.machine.name(peer)}: I {state.mine.value}, it {state.theirs.value}"
                for peer, state in self.machine.state.items()
                if not (state.mine is adm.Mine.ADMITTED and state.theirs is adm.Theirs.READY)]

    def waiting_on_others(self) -> bool:
        """Whether every unfinished peer admitted me and was admitted, and only its
        ``ready`` is missing: it waits for a party other than this one."""
        unfinished = [state for state in self.machine.state.values()
                      if not (state.mine is adm.Mine.ADMITTED
                              and state.theirs is adm.Theirs.READY)]
        return bool(unfinished) and all(
            state.mine is adm.Mine.ADMITTED and state.theirs is adm.Theirs.ADMITTED_ME
            for state in unfinished)

    # -- called by the apps ---------------------------------------------------------------

    def opened(self, app: AdmissionApp) -> None:
        self.apps[app.peer] = app
        late = self.machine.late_channel(app.peer)
        if late:  # the session has failed already: tell this party why, and nothing else
            self._carry_out(late)
            app.transport.close()
            return
        if not app.transport.get_extra_info("early_data_sent"):
            hh = app.transport.get_extra_info("handshake_hash")
            try:
                vp = self._presenter.present(adm.challenge_for(hh),
                                             dt.datetime.now(dt.timezone.utc))
                app.send(adm.presentation(vp))
            except MpcidError as exc:
                self._carry_out(self.machine.fail(exc, self.apps))
                return
        early = app.transport.get_extra_info("early_data")
        if early:
            app.early_received(early, app.transport.get_extra_info("early_binding"))

    def early_presentation(self, binding: bytes) -> bytes:
        """The dialling side's presentation as early data for a channel's Noise message 1
        (``specs/channel.md`` 4.2), or ``b""`` when it cannot go there (too large for
        message 1, or it cannot be made now: then it is sent after the handshake, where a
        failure is reported)."""
        if self.machine.error is not None:
            return b""
        try:
            vp = self._presenter.present(adm.early_challenge_for(binding),
                                         dt.datetime.now(dt.timezone.utc))
            data = adm.encode(adm.presentation(vp))
        except MpcidError as exc:
            log.debug("presentation not sent in handshake message 1: %s", exc.one_line())
            return b""
        return data if len(data) <= MAX_EARLY_DATA else b""

    def received(self, peer: int, message: dict[str, Any]) -> None:
        self._carry_out(self.machine.receive(peer, message))

    def fail(self, error: MpcidError) -> None:
        """Stop for a local reason (e.g. the timeout), telling every connected peer."""
        self._carry_out(self.machine.fail(error, self.apps))

    def broken(self, peer: int, error: MpcidError) -> None:
        self._carry_out(self.machine.fail(error, [p for p in self.apps if p != peer]))

    # -- internals ------------------------------------------------------------------------

    def _carry_out(self, actions: list[adm.Send | adm.Verify]) -> None:
        for action in actions:
            if isinstance(action, adm.Send):
                app = self.apps.get(action.peer)
                if app is not None:
                    app.send(action.message)
            else:
                task = asyncio.ensure_future(self._verify(action.peer, action.vp))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._settle()

    def _settle(self) -> None:
        if self.done.done():
            return
        if self.machine.error is not None:
            self.done.set_exception(self.machine.error)
            self.done.exception()  # retrieved by the runtime; avoid "never retrieved"
        elif self.machine.complete:
            self.done.set_result(None)

    async def _verify(self, peer: int, vp: dict[str, Any]) -> None:
        did = self.parties[peer]
        app = self.apps[peer]
        challenge = app.early_challenge or adm.challenge_for(
            app.transport.get_extra_info("handshake_hash"))
        config = dataclasses.replace(self.settings.verify,
                                     now=dt.datetime.now(dt.timezone.utc))
        reason: str | None = None
        detail = ""
        presented = None
        policy = self.settings.policy

        def precheck(holder: str, documents: list[Any]) -> None:
            policy.precheck(holder, documents, expected=did)

        try:
            # specs/session.md 7.4: the policy on the credentials as presented, then the
            # full verification (the only step that resolves or fetches), then the
            # policy again on what was verified.
            result = await vc.verify_presentation(vp, config, challenge=challenge,
                                                  domain=adm.domain_for(self.session_id),
                                                  precheck=precheck)
            if result.holder != did:
                raise CredentialError(f"it presented a presentation of {result.holder}, "
                                      "not its own")
            policy.evaluate(result)
            presented = Presented(tuple((c.id, c.types, c.issuer) for c in result.credentials))
        except MpcidError as exc:
            reason, detail = _reason(exc, vp, challenge, self.session_id)
        if reason is None:
            assert presented is not None
            self.progress.emit("admitted", party=peer, did=did,
                               credentials=[c[0] or "(no id)" for c in presented.credentials])
        else:  # the local display says more than the peer is told (GENERIC_REASONS)
            log.info("refusing %s: %s", did, detail)
            self.progress.emit("refused", party=peer, did=did, reason=detail)
        self._carry_out(self.machine.verified(peer, reason, presented))

    def emit_verdict(self, peer: int, message: dict[str, Any]) -> None:
        if message["t"] == "verdict":
            did = self.parties[peer]
            if message["admitted"]:
                self.progress.emit("admitted_me", party=peer, did=did)
            else:
                self.progress.emit("refused", party=peer, did=did, by="them",
                                   reason=message["reason"])

    def hand_over(self) -> None:
        """Admission is complete: give every channel to MPyC."""
        for app in self.apps.values():
            app.hand_over()

    async def close(self, drain: float = 1.0) -> None:
        """Admission failed: close every channel (after the messages already queued)."""
        for task in list(self._tasks):
            task.cancel()
        for app in self.apps.values():
            app.transport.close()
        loop = asyncio.get_running_loop()
        end = loop.time() + drain
        while loop.time() < end and any(a.transport.get_write_buffer_size()
                                        for a in self.apps.values()):
            await asyncio.sleep(0.02)


#: What the peer (and the other parties) are told when something this party had to
#: fetch or resolve for the peer's credentials failed. The local detail (a path, an
#: errno, a connection error, an address) stays in the local log and progress: it would
#: tell the peer which files exist and which ports are open here.
GENERIC_REASONS: dict[type[MpcidError], str] = {
    StatusCheckFailed: "its credential's status could not be checked",
    DIDResolutionError: "a DID in its presentation could not be resolved",
}


def _reason(exc: MpcidError, vp: dict[str, Any], challenge: str, session_id: str
            ) -> tuple[str, str]:
    """Why a presentation is refused: (what the peer is told, what is logged here)."""
    for kind, generic in GENERIC_REASONS.items():
        if isinstance(exc, kind):
            return generic, exc.message
    proof = vp.get("proof")
    if isinstance(proof, dict):
        if proof.get("domain") != adm.domain_for(session_id) or \
                proof.get("challenge") != challenge:
            reason = ("its presentation was made for another session or channel (replayed): "
                      f"{exc.message}")
            return reason, reason
    return exc.message, exc.message


class AdmissionApp(asyncio.Protocol):
    """A channel's application during admission."""

    def __init__(self, gate: AdmissionGate, peer: int,
                 make_exchanger: Callable[[], asyncio.Protocol]) -> None:
        self.gate = gate
        self.peer = peer
        self.make_exchanger = make_exchanger
        self.decoder = adm.Decoder()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.handed_over = False
        self.early_challenge: str | None = None
        """The challenge of the peer's presentation when it came as early data."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.gate.opened(self)

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.transport.write(adm.encode(message))
        except MpcidError as exc:
            self.gate.broken(self.peer, exc)

    def early_received(self, data: bytes, binding: bytes) -> None:
        """The peer's early data: exactly its presentation, bound to ``binding``."""
        decoder = adm.Decoder()
        try:
            messages = decoder.feed(data)
            if len(messages) != 1 or messages[0].get("t") != "presentation" or \
                    decoder.has_partial():
                raise RemoteProtocolError("its handshake message 1 carried something other "
                                          "than one presentation")
        except RemoteProtocolError as exc:
            self.gate.broken(self.peer, RemoteProtocolError(
                f"{self.gate.machine.name(self.peer)}: {exc.message}"))
            return
        self.early_challenge = adm.early_challenge_for(binding)
        self.gate.received(self.peer, messages[0])

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            self.gate.broken(self.peer, RemoteProtocolError(
                f"{self.gate.machine.name(self.peer)}: {exc.message}"))
            return
        for message in messages:
            self.gate.emit_verdict(self.peer, message)
            self.gate.received(self.peer, message)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handed_over:
            return
        name = self.gate.machine.name(self.peer)
        detail = exc.one_line() if isinstance(exc, MpcidError) else (str(exc) if exc else
                                                                    "it closed the channel")
        self.gate.broken(self.peer, PeerFailed(f"lost {name} during admission: {detail}"))

    def hand_over(self) -> None:
        self.handed_over = True
        exchanger = self.make_exchanger()
        self.transport.set_protocol(exchanger)
        exchanger.connection_made(self.transport)
        if self.decoder.rest:
            exchanger.data_received(bytes(self.decoder.rest))
            self.decoder.rest.clear()
        log.debug("channel with %s handed to MPyC", self.gate.machine.name(self.peer))
