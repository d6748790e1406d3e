"""Optimistic multistream-select (:mod:`mpcid.p2p.multistream`): the negotiation travels
with the first request, against a fake stream (what goes out, and when) and against
py-libp2p's own responder on loopback (it understands it; a refusal is an error)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_delim

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.host import connect, host_addrs, running_host
from mpcid.p2p.bridge import TrioThread
from mpcid.p2p.multistream import MULTISTREAM, NegotiationRefused, OptimisticHost, OptimisticStream

ECHO = TProtocol("/mpcid/test-echo/1.0.0")
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


class FakeStream:
    """Records every write; reads come from ``incoming``, a byte at a time if asked."""

    def __init__(self, incoming: bytes = b"") -> None:
        self.writes: list[bytes] = []
        self.incoming = incoming
        self.reads_before_first_write = 0
        self.closed = False

    async def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def read(self, n: int | None = None) -> bytes:
        if not self.writes:
            self.reads_before_first_write += 1
        n = len(self.incoming) if n is None or n < 0 else n
        data, self.incoming = self.incoming[:n], self.incoming[n:]
        return data

    async def close(self) -> None:
        self.closed = True


def answers(protocol: bytes) -> bytes:
    return encode_delim(MULTISTREAM) + encode_delim(protocol)


def test_the_proposal_and_the_request_leave_in_one_write_before_anything_is_read() -> None:
    async def main() -> None:
        fake = FakeStream(answers(ECHO.encode()) + b"reply")
        stream = OptimisticStream(fake, ECHO)  # type: ignore[arg-type]
        await stream.write(b"request")
        await stream.write(b"more")
        assert fake.writes == [encode_delim(MULTISTREAM) + encode_delim(ECHO.encode())
                               + b"request", b"more"]
        assert await stream.read(5) == b"reply"
        assert fake.reads_before_first_write == 0
        await stream.close()  # the rest is the wrapped stream's
        assert fake.closed and stream.get_protocol() == ECHO

    trio.run(main)


def test_a_stream_that_reads_first_still_sends_its_proposal_first() -> None:
    async def main() -> None:
        fake = FakeStream(answers(ECHO.encode()) + b"hello")
        stream = OptimisticStream(fake, ECHO)  # type: ignore[arg-type]
        assert await stream.read(5) == b"hello"
        assert fake.writes == [encode_delim(MULTISTREAM) + encode_delim(ECHO.encode())]
        assert fake.reads_before_first_write == 0

    trio.run(main)


@pytest.mark.parametrize("incoming, match", [
    (answers(b"na"), "refused"),
    (answers(b"/other/1.0.0"), "refused"),
    (encode_delim(b"/multistream/2.0.0") + encode_delim(ECHO.encode()), "not multistream"),
])
def test_an_answer_other_than_the_proposal_is_refused_before_any_data(
        incoming: bytes, match: str) -> None:
    async def main() -> None:
        stream = OptimisticStream(FakeStream(incoming + b"data"), ECHO)  # type: ignore[arg-type]
        await stream.write(b"request")
        with pytest.raises(NegotiationRefused, match=match):
            await stream.read(4)

    trio.run(main)


async def _echo(stream: Any) -> None:
    data = await stream.read(1024)
    await stream.write(b"echo:" + data)
    await stream.close()


def between_two_hosts(talk: Any) -> None:
    """Run ``talk(a, b)`` in the trio thread with two fresh loopback hosts."""

    async def main() -> None:
        bridge = TrioThread()
        await bridge.start()
        try:
            a = await bridge.enter_context(running_host(Ed25519Key.generate(), [LOOPBACK]))
            b = await bridge.enter_context(running_host(Ed25519Key.generate(), [LOOPBACK]))
            await bridge.call(functools.partial(talk, a, b))
        finally:
            await bridge.stop()

    asyncio.run(main())


def _exchange(protocols: set[str], protocol: TProtocol, known: bool = False
              ) -> tuple[bytes | None, str | None, str]:
    """From one loopback host to another serving ECHO: what ``protocol`` gets back through
    OptimisticHost(host, protocols), or the error, and the type of stream it was."""
    outcome: list[Any] = [None, None, ""]

    async def talk(a: Any, b: Any) -> None:
        b.set_stream_handler(ECHO, _echo)
        peer = await connect(a, host_addrs(b)[0] + f"/p2p/{b.get_id().to_base58()}")
        with trio.fail_after(10):
            try:
                stream = await OptimisticHost(a, protocols, known=known).new_stream(
                    ID.from_base58(peer), [protocol])
                outcome[2] = type(stream).__name__
                await stream.write(b"ping")
                outcome[0] = await stream.read(1024)
            except Exception as exc:
                outcome[1] = f"{type(exc).__name__}: {exc}"

    between_two_hosts(talk)
    return outcome[0], outcome[1], outcome[2]


@pytest.mark.integration
def test_py_libp2p_answers_an_optimistic_proposal_and_its_request() -> None:
    reply, error, kind = _exchange({str(ECHO)}, ECHO)
    assert (reply, error, kind) == (b"echo:ping", None, "OptimisticStream")


@pytest.mark.integration
def test_a_protocol_the_peer_does_not_serve_is_refused_not_hung() -> None:
    other = TProtocol("/mpcid/test-unserved/1.0.0")
    reply, error, _ = _exchange({str(other)}, other)
    assert reply is None and error is not None and "refused" in error


@pytest.mark.integration
def test_other_protocols_are_negotiated_as_py_libp2p_does() -> None:
    reply, error, kind = _exchange(set(), ECHO)
    assert (reply, error) == (b"echo:ping", None) and kind != "OptimisticStream"


@pytest.mark.integration
def test_only_peers_known_to_serve_the_protocol_get_it_optimistically() -> None:
    """By default a proposal travels with data only to a peer whose identify listed the
    protocol; to others it is negotiated in lock step, and a refusal is an error."""
    other = TProtocol("/mpcid/test-unserved/1.0.0")
    reply, error, kind = _exchange({str(other)}, other, known=True)
    # Lock step: the refusal comes before any stream is handed out (optimistically, a
    # stream would be returned and its first read would fail).
    assert reply is None and error is not None and kind == "", (error, kind)


@pytest.mark.integration
def test_a_proposal_that_is_not_utf8_is_refused_and_the_host_serves_on() -> None:
    """A peer sending bytes that are not UTF-8 as its proposal gets its stream refused;
    py-libp2p alone let the decoding error end the responder's tasks."""
    outcome: list[Any] = []

    async def talk(a: Any, b: Any) -> None:
        b.set_stream_handler(ECHO, _echo)
        peer = await connect(a, host_addrs(b)[0] + f"/p2p/{b.get_id().to_base58()}")
        with trio.fail_after(10):
            raw = await a.get_network().new_stream(ID.from_base58(peer))
            await raw.write(encode_delim(MULTISTREAM) + encode_delim(b"\xff\xfe/x"))
            try:
                outcome.append(await raw.read(1024))
            except Exception as exc:
                outcome.append(type(exc).__name__)
            stream = await OptimisticHost(a, {str(ECHO)}, known=False).new_stream(
                ID.from_base58(peer), [ECHO])
            await stream.write(b"still")
            outcome.append(await stream.read(1024))

    between_two_hosts(talk)
    assert outcome[-1] == b"echo:still", outcome
