"""libp2p hosts built from DID keys (:mod:`mpcid.p2p.host`), run in the trio thread of
:mod:`mpcid.p2p.bridge` and used from asyncio, over loopback TCP.

The last test is the point of it all: mpcid's own Noise channel runs end to end inside a
libp2p stream, which is how the relay fallback carries a session.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import multiaddr
import pytest
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.stream_muxer.yamux.yamux import Yamux

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import UsageError
from mpcid.p2p.bridge import TrioThread
from mpcid.p2p.channel import ChannelProtocol, over_socket
from mpcid.p2p.errors import ConnectFailed, ListenFailed
from mpcid.p2p.host import (YAMUX_PROTOCOL_ID, connect, host_addrs,
                            libp2p_key_pair, make_host, peer_id_from_public_key, running_host)
from mpcid.p2p.noise import ChannelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from channel_apps import Acceptor, Sender  # noqa: E402  (this folder)
from channel_apps import run as bounded_run  # noqa: E402

MakeConfig = Callable[..., ChannelConfig]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
PROTOCOL = "/mpcid/test/1.0.0"
TIMEOUT = 15.0


run = functools.partial(bounded_run, timeout=TIMEOUT)


@asynccontextmanager
async def bridge_with_hosts(*keys: Ed25519Key) -> AsyncIterator[tuple[TrioThread, list[IHost]]]:
    """A started bridge with one running loopback host per key; all stopped on exit."""
    bridge = TrioThread()
    await bridge.start()
    try:
        hosts = [await bridge.enter_context(running_host(key, [LOOPBACK])) for key in keys]
        yield bridge, hosts
    finally:
        await bridge.stop()


async def connection_facts(host: IHost, peer: str) -> tuple[str | None, str | None, str]:
    """(negotiated security protocol, negotiated muxer protocol, muxer class) of
    ``host``'s one connection to ``peer``."""
    (conn,) = host.get_network().get_connections(ID.from_base58(peer))
    assert isinstance(conn, SwarmConn)
    return (conn.get_negotiated_security_protocol(), conn.get_negotiated_muxer_protocol(),
            type(conn.muxed_conn).__name__)


# -- identity -----------------------------------------------------------------------------


def test_the_peer_id_is_the_one_libp2p_computes_for_the_did_key() -> None:
    key = Ed25519Key.from_seed(hashlib.sha256(b"alice").digest())
    key_pair = libp2p_key_pair(key)
    assert key_pair.private_key.to_bytes() == key.seed
    assert key_pair.public_key.to_bytes() == key.public_key
    expected = ID.from_pubkey(key_pair.public_key).to_base58()
    assert expected.startswith("12D3KooW")
    assert peer_id_from_public_key(key.did.public_key) == expected
    assert make_host(key, [LOOPBACK]).get_id().to_base58() == expected
    assert peer_id_from_public_key(Ed25519Key.generate().public_key) != expected
    with pytest.raises(UsageError):
        peer_id_from_public_key(b"\x01" * 31)


def test_a_malformed_listen_address_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not a multiaddr"):
        make_host(Ed25519Key.generate(), ["127.0.0.1:4001"])


# -- hosts on loopback --------------------------------------------------------------------


@pytest.mark.integration
def test_two_hosts_connect_over_noise_and_yamux_without_dial_delay() -> None:
    alice, bob = Ed25519Key.generate(), Ed25519Key.generate()

    async def main() -> None:
        async with bridge_with_hosts(alice, bob) as (bridge, (a, b)):
            (addr,) = host_addrs(b)
            assert addr.startswith("/ip4/127.0.0.1/tcp/")
            assert addr.endswith(f"/p2p/{peer_id_from_public_key(bob.public_key)}")
            began = time.perf_counter()
            peer = await bridge.call(connect, a, addr)
            elapsed = time.perf_counter() - began
            assert peer == b.get_id().to_base58()
            # py-libp2p's fixed 250 ms dial delay is gone (host.CONNECTION_CONFIG)
            assert elapsed < 0.2, f"connect took {elapsed * 1e3:.0f} ms"
            assert await bridge.call(connection_facts, a, peer) == (
                "/noise", "/yamux/1.0.0", "Yamux")
            assert await bridge.call(connection_facts, b, peer_id_from_public_key(
                alice.public_key)) == ("/noise", "/yamux/1.0.0", "Yamux")

    run(main)


@asynccontextmanager
async def plaintext_host() -> AsyncIterator[IHost]:
    """Trio: a host that offers nothing but plaintext, as an attacker or old peer might."""
    key_pair = create_new_key_pair()
    host = new_host(key_pair=key_pair,
                    sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)},
                    muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
                    listen_addrs=[multiaddr.Multiaddr(LOOPBACK)])
    async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
        yield host


@pytest.mark.integration
def test_a_plaintext_host_cannot_connect_either_way() -> None:
    async def main() -> None:
        async with bridge_with_hosts(Ed25519Key.generate()) as (bridge, (ours,)):
            plain = await bridge.enter_context(plaintext_host())
            with pytest.raises(ConnectFailed, match="could not connect"):
                await bridge.call(connect, ours, host_addrs(plain)[0])

            async def plain_dials_ours() -> bool:
                try:
                    await plain.connect(info_from_p2p_addr(
                        multiaddr.Multiaddr(host_addrs(ours)[0])))
                except Exception:
                    return False
                return True
            assert not await bridge.call(plain_dials_ours)

            async def connected() -> list[Any]:
                return [*ours.get_network().connections, *plain.get_network().connections]
            assert await bridge.call(connected) == []

    run(main)


@pytest.mark.integration
def test_listening_on_a_busy_port_is_listen_failed() -> None:
    async def main() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            async with bridge_with_hosts() as (bridge, _):
                with pytest.raises(ListenFailed, match=f"tcp/{port}"):
                    await bridge.enter_context(running_host(
                        Ed25519Key.generate(), [f"/ip4/127.0.0.1/tcp/{port}"]))
                assert bridge.running

    run(main)


@pytest.mark.integration
def test_connect_errors_are_mapped() -> None:
    async def main() -> None:
        async with bridge_with_hosts(Ed25519Key.generate()) as (bridge, (a,)):
            with pytest.raises(UsageError, match="names no peer"):
                await bridge.call(connect, a, "/ip4/127.0.0.1/tcp/1")
            with socket.socket() as closed:  # a port that refuses: bound, not listening
                closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
                nobody = peer_id_from_public_key(Ed25519Key.generate().public_key)
                with pytest.raises(ConnectFailed, match="could not connect"):
                    await bridge.call(connect, a, f"/ip4/127.0.0.1/tcp/{port}/p2p/{nobody}")
            with pytest.raises(ConnectFailed, match="cannot open"):
                await bridge.open_stream(a, nobody, PROTOCOL)

    run(main)


# -- streams handed over to asyncio -------------------------------------------------------


@pytest.mark.integration
def test_a_stream_is_handed_to_asyncio_as_a_socket_both_ways_with_eof() -> None:
    alice, bob = Ed25519Key.generate(), Ed25519Key.generate()
    payload = os.urandom(200_000)

    async def main() -> None:
        async with bridge_with_hosts(alice, bob) as (bridge, (a, b)):
            served: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            async def echo(sock: socket.socket, peer: str) -> None:
                reader, writer = await asyncio.open_connection(sock=sock)
                data = await reader.read()  # until the dialer's end of file
                writer.write(b"echo:" + data)
                writer.write_eof()
                await writer.drain()
                writer.close()
                await writer.wait_closed()
                served.set_result(peer)

            await bridge.set_stream_handler(b, PROTOCOL, echo)
            await bridge.call(connect, a, host_addrs(b)[0])
            sock = await bridge.open_stream(a, b.get_id().to_base58(), PROTOCOL)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(payload)
            writer.write_eof()  # half-close: the reply still comes back
            await writer.drain()
            assert await reader.read() == b"echo:" + payload
            assert await served == a.get_id().to_base58()
            writer.close()
            await writer.wait_closed()

    run(main)


@pytest.mark.integration
def test_a_waiting_stream_callback_survives_garbage_collection() -> None:
    """Regression: the task running a stream callback was referenced by nothing but its
    own socket's waiter, so a garbage collection while it waited destroyed it and the
    stream was lost (seen under load as an empty reply)."""
    alice, bob = Ed25519Key.generate(), Ed25519Key.generate()

    async def main() -> None:
        async with bridge_with_hosts(alice, bob) as (bridge, (a, b)):
            waiting = asyncio.get_running_loop().create_future()

            async def echo(sock: socket.socket, peer: str) -> None:
                reader, writer = await asyncio.open_connection(sock=sock)
                waiting.set_result(None)
                writer.write(await reader.read())
                writer.write_eof()
                await writer.drain()
                writer.close()

            await bridge.set_stream_handler(b, PROTOCOL, echo)
            await bridge.call(connect, a, host_addrs(b)[0])
            sock = await bridge.open_stream(a, b.get_id().to_base58(), PROTOCOL)
            reader, writer = await asyncio.open_connection(sock=sock)
            await waiting
            gc.collect()  # the callback waits in reader.read() now
            writer.write(b"still here")
            writer.write_eof()
            assert await reader.read() == b"still here"
            writer.close()

    run(main)


@pytest.mark.integration
def test_our_noise_channel_runs_end_to_end_inside_a_libp2p_stream(
        alice: Ed25519Key, bob: Ed25519Key, make_config: MakeConfig) -> None:
    message = os.urandom(1 << 20)

    async def main() -> None:
        async with bridge_with_hosts(alice, bob) as (bridge, (a, b)):
            accept = Acceptor(make_config(bob, [alice], initiator=False), alice.did.did,
                              len(message))
            await bridge.set_stream_handler(b, "/mpcid/channel/1.0.0", accept)
            await bridge.call(connect, a, host_addrs(b)[0])
            sock = await bridge.open_stream(a, peer_id_from_public_key(bob.public_key),
                                            "/mpcid/channel/1.0.0")
            sender = Sender()
            channel = await over_socket(sock, lambda: ChannelProtocol(
                make_config(alice, [bob], initiator=True), lambda _: sender, label="alice "))
            assert await channel.ready == bob.did.did
            assert await (await accept.accepted).ready == alice.did.did
            assert channel.app_transport is not None
            channel.app_transport.write(message)
            assert await sender.reply == hashlib.sha256(message).digest()
            assert bytes(accept.receivers[0].data) == message
            channel.app_transport.close()  # the channel's authenticated close
            assert await accept.receivers[0].lost is None

    run(main)
