"""Waiting for a peer's endpoint record at a DHT node, instead of polling for it.

A party that joins a session looks up the peers it dials; a peer that has not published
yet is not there, and polling again costs a request per attempt and the pause between
attempts (across 90 ms, one missed lookup delayed a channel by 2-4 round trips). With
``/mpcid/await-record/1.0.0`` (``specs/discovery.md`` 4.1) the party asks a node that
serves the DHT for a DID's record *newer than the one it has*, and the node answers as
soon as it holds one: at once if it does, else the moment a ``PUT_VALUE`` stores it, or
with nothing when the wait it was given runs out.

Node side: :class:`RecordWaiters`, whose :meth:`~RecordWaiters.notify` the value store
calls on every store. Client side: :func:`await_record`, one request to one node.
Trio code, run in the libp2p thread (:mod:`mpcid.p2p.bridge`).

The node never trusts the request: it is at most :data:`MAX_REQUEST` bytes, read within
:data:`REQUEST_TIMEOUT`; the wait is capped at :data:`MAX_WAIT`; a peer holds at most
:data:`PER_PEER` waits at once and the node :data:`TOTAL` (beyond, a request is answered
at once with what the node holds, as a lookup would be). The client checks the answer as
it checks any lookup (size here, signature and time by the caller).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from mpcid.identity.errors import MpcidError

from .multistream import NegotiationRefused, OptimisticHost
from .records import MAX_RECORD_BYTES, dht_key

log = logging.getLogger("mpcid.dht")

AWAIT_PROTOCOL = "/mpcid/await-record/1.0.0"
MAX_REQUEST = 1024
"""Bytes of a request's JSON."""
MAX_WAIT = 10.0
"""Seconds a node holds a request at most (clients ask again)."""
REQUEST_TIMEOUT = 5.0
"""Seconds a node waits for the request once the stream is open."""
PER_PEER = 64
"""Waits one peer may hold at a node at once (a party of a 64-party session awaits 63)."""
TOTAL = 4096
"""Waits a node holds at once."""

Lookup = Callable[[bytes], "bytes | None"]
"""The node's current valid value under a key, or None."""


def encode_request(did: str, after: int, wait: float) -> bytes:
    body = json.dumps({"v": 1, "did": did, "after": after,
                       "wait_ms": int(min(max(wait, 0.0), MAX_WAIT) * 1000)},
                      separators=(",", ":")).encode()
    return len(body).to_bytes(2, "big") + body


def parse_request(body: bytes) -> tuple[str, int, float]:
    """(bare DID, the seq the asker holds or -1, seconds to wait); raises ValueError
    if the request is not one."""
    obj = json.loads(body)
    if not isinstance(obj, dict) or obj.get("v") != 1 or set(obj) != {"v", "did", "after",
                                                                      "wait_ms"}:
        raise ValueError("not a version 1 await request")
    did, after, wait_ms = obj["did"], obj["after"], obj["wait_ms"]
    if not isinstance(did, str):
        raise ValueError("did is not a string")
    try:
        dht_key(did)
    except MpcidError:
        raise ValueError("did is not a bare did:key") from None
    for value in (after, wait_ms):
        if type(value) is not int or not -1 <= value < 2**53:
            raise ValueError("after and wait_ms are integers")
    return did, after, min(wait_ms / 1000, MAX_WAIT)


def _seq(value: bytes) -> int:
    try:
        seq = json.loads(value).get("seq")
    except (ValueError, AttributeError):
        return -1
    return seq if type(seq) is int else -1


class RecordWaiters:
    """A DHT server's side of the protocol: requests waiting for records it will store."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._events: dict[bytes, list[trio.Event]] = {}
        self._per_peer: dict[str, int] = {}
        self._total = 0

    def notify(self, key: bytes) -> None:
        """A value was stored under ``key``: wake the requests waiting for it."""
        for event in self._events.pop(key, ()):
            event.set()

    def _newer(self, key: bytes, after: int) -> bytes | None:
        value = self._lookup(key)
        return value if value is not None and _seq(value) > after else None

    async def handle(self, stream: Any) -> None:
        peer = str(stream.muxed_conn.peer_id)
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                size = int.from_bytes(await _read_exactly(stream, 2), "big")
                if not 0 < size <= MAX_REQUEST:
                    raise ValueError(f"a request of {size} bytes")
                did, after, wait = parse_request(await _read_exactly(stream, size))
            key = dht_key(did).encode()
            value = self._newer(key, after)
            if value is None and wait > 0 and self._total < TOTAL \
                    and self._per_peer.get(peer, 0) < PER_PEER:
                value = await self._wait(peer, key, after, wait)
            answer = value or b""
            await stream.write(len(answer).to_bytes(4, "big") + answer)
            await stream.close()
        except Exception as exc:  # a malformed request, a peer gone: its stream only
            log.debug("await request from %s: %r", peer, exc)
            try:
                await stream.reset()
            except Exception:
                pass

    async def _wait(self, peer: str, key: bytes, after: int, wait: float) -> bytes | None:
        self._total += 1
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        try:
            with trio.move_on_after(wait):
                while True:
                    event = trio.Event()
                    self._events.setdefault(key, []).append(event)
                    try:
                        await event.wait()
                    finally:
                        waiting = self._events.get(key)
                        if waiting is not None and event in waiting:
                            waiting.remove(event)
                            if not waiting:
                                del self._events[key]
                    value = self._newer(key, after)
                    if value is not None:
                        return value
            return None
        finally:
            self._total -= 1
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]


async def _read_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.read(n - len(data))
        if not chunk:
            raise EOFError(f"stream ended after {len(data)} of {n} bytes")
        data += chunk
    return data


async def await_record(host: Any, peer: str, did: str, after: int, wait: float
                       ) -> tuple[bytes | None, bool]:
    """Ask ``peer`` (a DHT server) for ``did``'s record with a seq above ``after``,
    waiting up to ``wait`` seconds: (the value or None, whether the node serves the
    protocol). The value is unchecked but for its size. Raises on a failed request."""
    stream = await OptimisticHost(host, {AWAIT_PROTOCOL}).new_stream(
        ID.from_base58(peer), [TProtocol(AWAIT_PROTOCOL)])
    try:
        await stream.write(encode_request(did, after, wait))
        with trio.fail_after(min(wait, MAX_WAIT) + REQUEST_TIMEOUT):
            try:
                size = int.from_bytes(await _read_exactly(stream, 4), "big")
            except NegotiationRefused:
                return None, False
            if size > MAX_RECORD_BYTES:
                raise ValueError(f"an answer of {size} bytes")
            value = await _read_exactly(stream, size) if size else None
        return value, True
    finally:
        try:
            await stream.close()
        except Exception:
            pass


async def await_at_nodes(host: Any, peers: list[str], did: str, after: int, wait: float,
                         validate: Callable[[str, bytes], None]) -> tuple[bytes | None, bool]:
    """:func:`await_record` at every node of ``peers`` at once: the first value that
    ``validate`` (the DHT's validator) accepts, or None; and whether any node serves
    the protocol."""
    key = dht_key(did)
    found: list[bytes] = []
    served: list[bool] = []

    async def ask(peer: str, cancel: trio.CancelScope) -> None:
        try:
            value, serves = await await_record(host, peer, did, after, wait)
        except Exception as exc:  # one node less to wait on
            log.debug("awaiting %s at %s: %r", key, peer, exc)
            return
        served.append(serves)
        if value is None:
            return
        try:
            validate(key, value)
        except Exception:
            return
        found.append(value)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(ask, peer, nursery.cancel_scope)
    return (found[0] if found else None), any(served)
