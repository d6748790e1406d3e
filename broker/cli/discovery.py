"""``mpcid node``, ``mpcid online`` and ``mpcid resolve``: the discovery DHT from the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from mpcid.identity.did_key import Ed25519Key, parse_did
from mpcid.identity.errors import IdentityExists, IdentityNotFound, UsageError

from .options import bootstrap_option, home_option, identity_name, keystore, wraps_async


def listen_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--listen", "listen", multiple=True, default=(default,),
                        show_default=True, metavar="MULTIADDR",
                        help="libp2p listen address (repeatable).")


class Interrupts:
    """Ctrl-C and SIGTERM, caught from entering until leaving: a long-running command
    enters it before it prints anything a caller may act on, so that a signal sent right
    after (or while it refreshes) is never lost, also where SIGINT came in ignored (a
    background job of a script)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def __aenter__(self) -> Interrupts:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self.event.set)
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            loop.remove_signal_handler(sig)

    async def wait(self, timeout: float | None = None) -> bool:
        """True once interrupted; False when ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


def node_key(home: str | None, name: str) -> Ed25519Key:
    """A node's identity: a keystore identity, created on first use (a bootstrap node's
    multiaddr must not change between restarts)."""
    store = keystore(home)
    try:
        return store.load_identity(name)
    except IdentityNotFound:
        pass
    try:
        key = store.create_identity(name, encrypt=False)
    except IdentityExists:  # another node on this keystore created it just now: use it
        return store.load_identity(name)
    click.echo(f"created node identity {name!r} in {store.home}", err=True)
    return key


def kind_caps(defaults: Mapping[str, Any], options: tuple[str, ...]) -> dict[str, Any]:
    """``defaults`` with each ``KIND=COUNT:BYTES`` of ``--kind-limit`` applied."""
    from mpcid.p2p.dht import KindLimits

    caps = dict(defaults)
    for option in options:
        kind, _, spec = option.partition("=")
        count, _, size = spec.partition(":")
        if not (kind and count.isdigit() and size.isdigit()):
            raise UsageError(f"--kind-limit {option!r} is not KIND=COUNT:BYTES",
                             hint="e.g. --kind-limit endpoint=20000:4096")
        caps[kind] = KindLimits(max_records=int(count), max_value_bytes=int(size))
    return caps


def shareable(addrs: list[str]) -> list[tuple[str, str]]:
    """The node's multiaddrs as others can dial them, each with its kind (``public``,
    ``private``, ``loopback``), public first: a wildcard listen address (0.0.0.0) becomes
    one address per interface of this machine."""
    from mpcid.p2p import nat

    out: list[tuple[str, str]] = []
    for addr in addrs:
        if addr.startswith("/ip4/0.0.0.0/"):
            for ip, kind in nat.dialable(nat.interface_addresses()):
                out.append((addr.replace("/ip4/0.0.0.0/", f"/ip4/{ip}/", 1), kind))
        else:
            parts = addr.split("/")
            kinds = nat.dialable([parts[2]]) if len(parts) > 2 else []
            out.append((addr, kinds[0][1] if kinds else "other"))
    order = {"public": 0, "private": 1, "other": 2, "loopback": 3}
    return sorted(dict.fromkeys(out), key=lambda item: order[item[1]])


def explain(shown: list[tuple[str, str]]) -> None:
    """Say on stderr which printed address to hand out (stdout keeps only addresses)."""
    if not shown:
        return
    first, kind = shown[0]
    if kind == "public":
        click.echo(f"share the first address with the parties (--bootstrap): {first}",
                   err=True)
    elif kind == "private":
        click.echo("this machine has no public address: the first one works for parties on "
                   "the same network; for others, forward the port to it and share "
                   "/ip4/<your public IP>/tcp/<port>/p2p/... (the part after /p2p/ stays)",
                   err=True)
    else:
        click.echo("listening on loopback only: only this machine can use this node "
                   "(--listen /ip4/0.0.0.0/tcp/4001 to serve others)", err=True)


@click.command("node")
@listen_option("/ip4/0.0.0.0/tcp/4001")
@bootstrap_option()
@click.option("--as", "name", default="node", show_default=True, metavar="NAME",
              help="Keystore identity of the node (created if missing).")
@click.option("--relay/--no-relay", default=True, show_default=True,
              help="Also serve as a circuit relay v2 hop for parties behind NAT.")
@click.option("--max-reservations", type=click.IntRange(1, 100_000), default=128,
              show_default=True, help="Relay: parties that may hold a reservation.")
@click.option("--max-circuits", type=click.IntRange(1, 10_000), default=64,
              show_default=True, help="Relay: open circuits per reserved party.")
@click.option("--circuit-mib", type=click.IntRange(0), default=1024, show_default=True,
              help="Relay: MiB a circuit may carry (0: no limit).")
@click.option("--circuit-seconds", type=click.IntRange(0), default=3600, show_default=True,
              help="Relay: seconds a circuit may last (0: no limit).")
@click.option("--max-reservations-per-ip", type=click.IntRange(1, 100_000), default=8,
              show_default=True,
              help="Relay: reservations held from one IPv4 address or IPv6 /64.")
@click.option("--store-mib", type=click.IntRange(1, 1 << 20), default=32, show_default=True,
              help="DHT: MiB of records held for others; beyond it new records are "
                   "refused, held ones kept.")
@click.option("--peer-records", type=click.IntRange(1), default=200, show_default=True,
              help="DHT: records one peer may store per --peer-window.")
@click.option("--peer-window", type=click.IntRange(1), default=600, show_default=True,
              help="DHT: seconds of the per-peer and per-address record quotas.")
@click.option("--address-records", type=click.IntRange(1), default=1000, show_default=True,
              help="DHT: records all peers from one IPv4 address or IPv6 /64 may store "
                   "per --peer-window.")
@click.option("--kind-limit", "kind_limits", multiple=True, metavar="KIND=COUNT:BYTES",
              help="DHT: records of a kind held at most, and the largest value "
                   "(repeatable; kinds: endpoint, invitation, decline, inbox).")
@home_option
@wraps_async
async def node(listen: tuple[str, ...], bootstrap: tuple[str, ...], name: str, relay: bool,
               max_reservations: int, max_circuits: int, circuit_mib: int,
               circuit_seconds: int, max_reservations_per_ip: int, store_mib: int,
               peer_records: int, peer_window: int, address_records: int,
               kind_limits: tuple[str, ...], home: str | None) -> None:
    """Run a DHT bootstrap node (and relay) until interrupted; print its multiaddrs.

    It needs no configuration and keeps nothing anyone must trust: records are signed by
    the DIDs they describe and channels through the relay are end-to-end encrypted."""
    from mpcid.p2p.dht import StoreLimits
    from mpcid.p2p.discovery import Discovery, DiscoveryConfig
    from mpcid.p2p.relay import RelayLimits

    from mpcid.broker.session_records import SESSION_KINDS

    limits = RelayLimits(duration=circuit_seconds, data=circuit_mib << 20,
                         max_reservations=max_reservations, max_circuits=max_circuits,
                         max_reservations_per_ip=max_reservations_per_ip)
    store = StoreLimits(max_bytes=store_mib << 20, peer_records=peer_records,
                        peer_window=float(peer_window), address_records=address_records,
                        kinds=kind_caps(StoreLimits().kinds, kind_limits))
    discovery = Discovery(node_key(home, name),
                          DiscoveryConfig(listen=listen, bootstrap=bootstrap,
                                          relay=limits if relay else None,
                                          kinds=SESSION_KINDS, store=store))
    async with Interrupts() as interrupts:
        addrs = await discovery.start()
        try:
            shown = shareable(addrs)
            for addr, _ in shown:
                click.echo(addr)
            explain(shown)
            click.echo("node running; Ctrl-C to stop", err=True)
            await interrupts.wait()
        finally:
            await discovery.stop()


@click.command("online")
@listen_option("/ip4/0.0.0.0/tcp/0")
@bootstrap_option()
@click.option("--as", "name", default=None, metavar="NAME",
              help="Local identity to publish.")
@click.option("--endpoint", "endpoints", multiple=True, metavar="HOST:PORT",
              help="Direct TCP endpoint of this party's Noise channel (repeatable).")
@click.option("--relay", "relays", multiple=True, metavar="MULTIADDR",
              help="Hold a reservation on this relay and publish its circuit address, "
                   "for peers that cannot reach this party directly (repeatable).")
@click.option("--ttl", type=click.IntRange(60, 86400), default=3600, show_default=True,
              help="Record lifetime in seconds; republished at half of it.")
@click.option("--launcher/--no-launcher", default=True, show_default=True,
              help="Keep a process with mpcid and MPyC imported, from which `mpcid join` "
                   "and `mpcid run` of this home start (saves ~0.3 CPU-s per session).")
@home_option
@wraps_async
async def online(listen: tuple[str, ...], bootstrap: tuple[str, ...], name: str | None,
                 endpoints: tuple[str, ...], relays: tuple[str, ...], ttl: int,
                 launcher: bool, home: str | None) -> None:
    """Keep this DID online: publish and refresh its endpoint record until interrupted,
    then withdraw it.

    It is also this identity's local agent: while it runs, `mpcid join` and `mpcid run`
    of the same identity and home use its libp2p host and DHT node instead of starting
    their own, which makes them start much faster. The record lists the --endpoint
    addresses, and the endpoints of the sessions it serves while they run.

    It also keeps a launcher (unless --no-launcher): a process that has imported what a
    session needs, from which joins and runs of this home start as forks."""
    from mpcid.p2p.records import parse_endpoint

    for endpoint in endpoints:
        parse_endpoint(endpoint)
    store = keystore(home)
    key = store.load_identity(identity_name(store, name))
    async with Interrupts() as interrupts:
        await _online(key, store.home, listen, bootstrap, endpoints, relays, ttl, launcher,
                      interrupts)


async def _online(key: Ed25519Key, home: Path, listen: tuple[str, ...],
                  bootstrap: tuple[str, ...], endpoints: tuple[str, ...],
                  relays: tuple[str, ...], ttl: int, launcher: bool,
                  interrupts: Interrupts) -> None:
    from mpcid.broker.agent import agent_socket
    from mpcid.broker.agent_server import AgentServer
    from mpcid.broker.presence import LocalPresence
    from mpcid.broker.session_records import SESSION_KINDS
    from mpcid.p2p.discovery import Discovery, DiscoveryConfig
    from mpcid.p2p.nat import record_fields
    from mpcid.p2p.peerid import peer_id_from_did

    # A DHT client, like a session party: serving the DHT is the nodes' job, and a
    # party that served would be asked in every lookup of every other party.
    presence = LocalPresence(Discovery(key, DiscoveryConfig(
        listen=listen, bootstrap=bootstrap, ttl=ttl, relays=relays, kinds=SESSION_KINDS,
        server=False, observe=True)))
    await presence.start()
    # Behind a NAT it reserved on a relay itself.
    agent = AgentServer(presence, endpoints, record_fields(presence.reach, []))
    launched: Callable[[], None] | None = None
    try:
        await agent.publish()
        click.echo(f"did {key.did.did}")
        click.echo(f"peer {peer_id_from_did(key.did.did)}")
        for addr in presence.addrs:
            click.echo(f"addr {addr}")
        await agent.start(agent_socket(home, key.did.did))
        click.echo(f"agent {agent.path}")
        if launcher and hasattr(os, "fork") and hasattr(os, "pidfd_open"):  # Linux
            launched = start_launcher(home)
        click.echo("online" + (f", endpoints published for {ttl} s at a time" if endpoints
                               else "") + "; Ctrl-C to stop", err=True)
        while not await interrupts.wait(
                max(1.0, agent.record_refresh_at - presence.clock())):
            await agent.publish()
        await agent.stop()
        await presence.withdraw()
        click.echo("withdrawn", err=True)
    finally:
        if launched is not None:
            launched()
        await agent.stop()
        await presence.stop()


def start_launcher(home: Path) -> Callable[[], None]:
    """Start the home's launcher; print ``launcher PATH`` once it listens. Returns what
    stops it (it finishes the commands it runs, then exits)."""
    from mpcid.broker.launcher import launcher_socket
    from mpcid.broker.launcher_server import spawn

    path = launcher_socket(home)
    proc = spawn(path)
    loop = asyncio.get_running_loop()
    out = proc.stdout
    assert out is not None

    def announce() -> None:
        loop.remove_reader(out.fileno())
        if out.readline().strip() in (b"ready", b"shared"):
            click.echo(f"launcher {path}")

    loop.add_reader(out.fileno(), announce)

    def stop() -> None:
        try:
            loop.remove_reader(out.fileno())
        except (ValueError, OSError):
            pass
        out.close()
        if proc.poll() is None:
            proc.terminate()  # not waited for: it may still finish commands it runs

    return stop


@click.command("resolve")
@click.argument("did")
@bootstrap_option()
@click.option("--timeout", type=click.FloatRange(min=0.5), default=20.0, show_default=True,
              help="Seconds for the whole lookup.")
@wraps_async
async def resolve(did: str, bootstrap: tuple[str, ...], timeout: float) -> None:
    """Print DID's current endpoint record from the DHT (signature checked), or exit 1."""
    from mpcid.identity.errors import UsageError
    from mpcid.p2p.discovery import Discovery, DiscoveryConfig

    parse_did(did)
    if not bootstrap:
        raise UsageError("resolve needs a DHT node to ask",
                         hint="pass --bootstrap MULTIADDR or set MPCID_BOOTSTRAP")
    discovery = Discovery(Ed25519Key.generate(),  # a throwaway identity: it only reads
                          DiscoveryConfig(listen=("/ip4/127.0.0.1/tcp/0",),
                                          bootstrap=bootstrap, server=False))
    try:
        await asyncio.wait_for(discovery.start(), timeout)
        record = await asyncio.wait_for(discovery.resolve(did), timeout)
    except asyncio.TimeoutError:
        from mpcid.p2p.errors import ConnectFailed

        raise ConnectFailed(f"the DHT did not answer within {timeout:g} s") from None
    finally:
        await discovery.stop()
    if record is None or (not record.tcp and not record.addrs):
        click.echo(f"not found: {did} has no current endpoint record", err=True)
        raise SystemExit(1)
    click.echo(json.dumps({"did": record.did, "seq": record.seq, "issued": record.issued,
                           "expires": record.expires, "tcp": list(record.tcp),
                           "addrs": list(record.addrs)}, indent=2))


COMMANDS = (node, online, resolve)
