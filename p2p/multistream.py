"""Outgoing libp2p streams whose protocol negotiation costs no round trip of its own.

py-libp2p negotiates every stream it opens in lock step: it sends multistream-select's
header and waits for the answer, then proposes the protocol and waits again, and only then
writes the request. A DHT request on a new stream thus costs three round trips where one
carries the request and its answer; across continents (90 ms) a lookup took 270 ms.

multistream-select allows the initiator to send the header, its one proposal and the first
message together (the specification's "lazy" negotiation, which go-libp2p uses): the
responder reads them in order and answers the header and the proposal before the request's
answer. :class:`OptimisticHost` does that for a set of protocols that the peers are known
to serve (the Kademlia protocol towards DHT nodes): the stream it returns writes the two
negotiation messages in front of its first write, and its first read consumes and checks
the responder's two answers first. A responder that does not speak the protocol answers
``na``; the read then raises :class:`NegotiationRefused`, and the request bytes it already
received end that stream at the responder (as any unknown proposal would), nothing more.

Where the first message cannot travel with the proposal (the security and multiplexer
negotiations of a new connection, whose next message is the Noise handshake, and every
other stream a host opens), :class:`LazyMultiselectClient` still sends the header and a
single proposal together and reads both answers after: one round trip instead of two.
:func:`negotiate_lazily` installs it on a host.

Trio code, used in the libp2p thread (:mod:`mpcid.p2p.bridge`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.protocol_muxer.exceptions import MultiselectClientError, MultiselectError
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
from libp2p.utils.varint import encode_delim, read_delim

__all__ = ["MULTISTREAM", "LazyMultiselectClient", "NegotiationRefused", "OptimisticHost",
           "OptimisticStream", "negotiate_lazily"]

MULTISTREAM = b"/multistream/1.0.0"


class NegotiationRefused(Exception):
    """The responder did not accept the proposed protocol (or answered something else)."""


class OptimisticStream:
    """A stream whose negotiation of ``protocol`` travels with its first write."""

    def __init__(self, stream: INetStream, protocol: TProtocol) -> None:
        self._stream = stream
        self._protocol = protocol
        self._pending = encode_delim(MULTISTREAM) + encode_delim(protocol.encode())
        self._checked = False

    async def write(self, data: bytes) -> None:
        if self._pending:
            data, self._pending = self._pending + data, b""
        await self._stream.write(data)

    async def read(self, n: int | None = None) -> bytes:
        if not self._checked:
            if self._pending:  # reading first: the proposal must go out all the same
                await self.write(b"")
            await self._check()
        return await self._stream.read(n)

    async def _check(self) -> None:
        header = await read_delim(self._stream)
        if header != MULTISTREAM:
            raise NegotiationRefused(f"not multistream-select: {header[:40]!r}")
        answer = await read_delim(self._stream)
        if answer != self._protocol.encode():
            raise NegotiationRefused(f"{self._protocol} refused ({answer[:40]!r})")
        self._checked = True

    def get_protocol(self) -> TProtocol:
        return self._protocol

    def __getattr__(self, name: str) -> Any:  # close, reset, muxed_conn, ...
        return getattr(self._stream, name)


class OptimisticHost:
    """``host``, except that streams of ``protocols`` are negotiated optimistically, to
    peers that identify said serve them (or to any peer, with ``known=False``: for
    protocols every host serves). Towards a peer that does not, the request would be
    read as a second proposal; py-libp2p's responder fails on a proposal that is not
    UTF-8 in a way that can end its host (:func:`negotiate_lazily` guards ours)."""

    def __init__(self, host: IHost, protocols: Collection[str], known: bool = True) -> None:
        self._host = host
        self._protocols = frozenset(protocols)
        self._known = known

    def _serves(self, peer_id: ID, protocol: str) -> bool:
        if not self._known:
            return True
        try:
            return protocol in (self._host.get_peerstore().get_protocols(peer_id) or ())
        except Exception:  # a peer identify has not described
            return False

    async def new_stream(self, peer_id: ID, protocol_ids: Sequence[TProtocol]) -> Any:
        if len(protocol_ids) != 1 or str(protocol_ids[0]) not in self._protocols \
                or not self._serves(peer_id, str(protocol_ids[0])):
            return await self._host.new_stream(peer_id, protocol_ids)
        stream = await self._host.get_network().new_stream(peer_id)
        stream.set_protocol(protocol_ids[0])
        return OptimisticStream(stream, protocol_ids[0])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


class LazyMultiselectClient(MultiselectClient):
    """py-libp2p's multiselect client, sending header and proposal in one write when
    there is only one protocol to propose (mpcid's hosts offer one security protocol and
    one multiplexer); with several, it asks one after the other as before."""

    async def select_one_of(self, protocols: Sequence[TProtocol], communicator: Any,
                            negotiate_timeout: int = 60) -> TProtocol:
        if len(protocols) != 1 or not isinstance(communicator, MultiselectCommunicator):
            return await super().select_one_of(protocols, communicator, negotiate_timeout)
        protocol = protocols[0]
        with trio.move_on_after(negotiate_timeout):
            try:
                await communicator.read_writer.write(
                    encode_delim(MULTISTREAM) + encode_delim(str(protocol).encode()))
                header = await read_delim(communicator.read_writer)
                answer = await read_delim(communicator.read_writer)
            except Exception as exc:
                raise MultiselectClientError(
                    f"negotiating {protocol} failed: {exc or type(exc).__name__}") from exc
            if header != MULTISTREAM:
                raise MultiselectClientError(f"not multistream-select: {header[:40]!r}")
            if answer != str(protocol).encode():
                raise MultiselectClientError(
                    f"protocol not supported: {protocol} ({answer[:40]!r})")
            return protocol
        raise MultiselectClientError(f"negotiating {protocol} timed out after "
                                     f"{negotiate_timeout}s")


def negotiate_lazily(host: IHost) -> IHost:
    """Make ``host`` negotiate its connections' security and multiplexer, and the
    streams it opens, with :class:`LazyMultiselectClient`; and make its responders
    refuse a proposal that is not UTF-8 as any other bad proposal (py-libp2p lets the
    decoding error escape the negotiation, which a peer could use to end the host's
    tasks). Returns ``host``."""
    host.multiselect_client = LazyMultiselectClient()  # type: ignore[attr-defined]
    _guard(host.multiselect)  # type: ignore[attr-defined]
    upgrader = host.get_network().upgrader  # type: ignore[attr-defined]
    for layer in (upgrader.security_multistream, upgrader.muxer_multistream):
        layer._selector.multiselect_client = LazyMultiselectClient()
        _guard(layer._selector.multiselect)
    return host


def _guard(multiselect: Any) -> None:
    negotiate = multiselect.negotiate

    async def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return await negotiate(*args, **kwargs)
        except UnicodeDecodeError:
            raise MultiselectError("a protocol proposal that is not UTF-8") from None

    multiselect.negotiate = guarded
