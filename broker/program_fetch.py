"""The session's program, from the inviter to a party that does not have it.

``mpcid join`` without ``--program`` (and without a kept copy) calls :func:`fetch_program`
before its session starts: it finds party 0 (the inviter) as the session would, through
the DHT, opens one channel of the session to it (the Noise prologue binds the session,
the program hash and the parties, so only the inviter can answer and only a party can
ask), and sends :func:`~mpcid.broker.programs.request` as the early data of message 1.
The inviter's :class:`ProgramServer` answers right behind message 2 and closes the
channel; :class:`~mpcid.broker.programs.ProgramReceiver` takes the bytes, bounded, and
checks them against the invitation's hash (``specs/session.md`` 10).

The fetch publishes nothing: the party's own endpoint record is published only when its
session starts, after the person has agreed to run what arrived.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from mpcid.identity.did_key import DIDKey, Ed25519Key
from mpcid.identity.errors import MpcidError
from mpcid.p2p.channel import ChannelProtocol
from mpcid.p2p.errors import ConnectFailed
from mpcid.p2p.noise import ChannelConfig, session_prologue

from . import programs
from .errors import ProgramUnavailable
from .paths import Paths, PathSettings
from .session import SessionSpec

log = logging.getLogger("mpcid.session")

MAX_SERVES = 3
"""Times the inviter sends the program to one party in a session (a party that fetched it
has no need to ask again; more requests only cost the inviter)."""


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = 120.0
    """Seconds to wait for the inviter (which may not have started yet) and the program."""
    paths: PathSettings = PathSettings()
    """The session's DHT nodes and relays (and this identity's local agent)."""


async def fetch_program(key: Ed25519Key, session: SessionSpec, settings: FetchSettings
                        ) -> bytes:
    """The session's program from party 0, whose SHA-256 is the session's; raises
    :class:`ProgramUnavailable` (not reached, refused), :class:`ProgramMismatch` (other
    bytes) or the channel's error."""
    inviter = session.parties[0]
    describe = f"the inviter (party 0, {inviter.did})"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout
    receiver = programs.ProgramReceiver(session.program_sha256, describe)
    done: asyncio.Future[bytes] = loop.create_future()
    config = ChannelConfig(
        static_private=key.x25519_private_key,
        prologue=session_prologue(session.session_id, session.program_sha256, session.dids),
        initiator=True,
        expected_peers={inviter.did: DIDKey.parse(inviter.did).x25519_public_key},
        handshake_timeout=min(15.0, settings.timeout),
        early_data=lambda binding: programs.request())

    def factory() -> ChannelProtocol:
        return ChannelProtocol(config, lambda did: _Receiving(receiver, done),
                               on_failure=lambda did, exc: _settle(done, exc))

    # A throwaway libp2p identity for the fetch (the channel itself is keyed by the DID):
    # the session that follows runs its own host under the DID's peer id, which the
    # inviter's host and the relay must not mistake for this one's, already gone.
    paths = Paths(Ed25519Key.generate(), settings.paths)
    try:
        await paths.join(peers=(inviter.did,))
        await paths.open(inviter, factory, deadline, describe, always=True)
        return await asyncio.wait_for(done, max(0.1, deadline - loop.time()))
    except asyncio.TimeoutError:
        raise ProgramUnavailable(f"{describe} did not send the program within "
                                 f"{settings.timeout:g} s") from None
    except ConnectFailed as exc:
        raise ProgramUnavailable(f"could not reach {describe} to fetch the program: "
                                 f"{exc.message}") from None
    finally:
        await paths.stop()


def _settle(done: asyncio.Future[bytes], result: bytes | BaseException) -> None:
    if done.done():
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


class _Receiving(asyncio.Protocol):
    """The fetching side's application: bytes into the receiver, the result at the end."""

    def __init__(self, receiver: programs.ProgramReceiver, done: asyncio.Future[bytes]
                 ) -> None:
        self.receiver = receiver
        self.done = done
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.receiver.feed(data)
        except MpcidError as exc:
            _settle(self.done, exc)
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            _settle(self.done, exc)
            return
        try:
            _settle(self.done, self.receiver.result())
        except MpcidError as error:
            _settle(self.done, error)


class ProgramServer:
    """The inviter's side: what it sends each party that asks for the program."""

    def __init__(self, program: bytes | None, unavailable: str = "") -> None:
        self.program = program
        self.unavailable = unavailable
        """Why the program cannot be sent, when ``program`` is None."""
        self.served: dict[int, int] = {}

    def app(self, peer: int) -> asyncio.Protocol:
        """The application of a fetch channel opened by ``peer``."""
        count = self.served[peer] = self.served.get(peer, 0) + 1
        if self.program is None:
            message = programs.refusal(self.unavailable or "the inviter has no program")
        elif count > MAX_SERVES:
            message = programs.refusal(f"it asked for the program more than {MAX_SERVES} "
                                       "times")
        else:
            message = programs.answer(self.program)
        return _Serving(message)


class _Serving(asyncio.Protocol):
    def __init__(self, message: bytes) -> None:
        self.message = message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.message)
        transport.close()  # after what is queued: the channel's CLOSE ends the fetch

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("sending the program failed: %s", exc)
