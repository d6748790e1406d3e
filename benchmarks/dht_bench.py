"""Discovery DHT on loopback: publish and look up DID records in networks of N hosts.

    .venv/bin/python benchmarks/dht_bench.py [--sizes 20,50] [--reps 20]

For each size, a network of that many py-libp2p hosts with mpcid's DHT (``mpcid.p2p.dht``)
is built on 127.0.0.1, all in this one process and one trio loop, with the bootstrap
procedure of ``tests/p2p/test_dht.py``: every node bootstraps from node 0 (connect, add it
to its routing table, refresh = a network lookup of its own ID and of one random ID per
non-empty bucket), node 0 adds every joiner, then every joiner refreshes once more to learn
about the late joiners. Setup time (first host started to last refresh done) is reported.
Cheap as it gets: node identities come from fixed seeds (no key generation) and the hosts
start concurrently (0.1-0.2 s in all), but joining and refreshing stay one node at a time
(``--setup-concurrency 1``): setup is CPU-bound in this one thread (every DHT RPC costs
both of its ends Python time), and running joins or refreshes concurrently was measured
slower (20 nodes: 8.2 s at 1, 12.0 s at 8; 50 nodes: 73 s at 1, 96 s at 4).

Then, rep by rep, interleaved over the sizes (all networks stay up together): a random
node publishes a fresh record (``EndpointRecord.create``, one tcp endpoint) for a fresh DID
with ``DHTNode.put`` (a network lookup of the key, then PUT_VALUE to the closest peers), the
nodes of that network holding it are counted, and a different random node looks it up with
``DHTNode.get`` (which drops any local copy and asks the network). Reported per size:
median, p90 and range of put and lookup latency, lookups that returned the published
record, and the median number of nodes holding a record after its put (publisher
included). Every wait is bounded; an operation over ``--op-timeout`` counts as failed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from mpcid.identity.did_key import Ed25519Key
from mpcid.p2p.dht import DHTNode
from mpcid.p2p.host import host_addrs, running_host
from mpcid.p2p.records import EndpointRecord, dht_key

# py-libp2p logs "Value not found" and failed stores at WARNING; a failure shows in the table.
logging.getLogger("libp2p").setLevel(logging.ERROR)


def node_key(size: int, index: int) -> Ed25519Key:
    """Fixed, distinct identities per network, so that runs are comparable."""
    return Ed25519Key.from_seed(hashlib.sha256(f"dht-bench/{size}/{index}".encode()).digest())


async def hold_node(key: Ed25519Key, stop: trio.Event, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run one host and its DHT until ``stop``; hand the node out once it listens."""
    async with running_host(key, ["/ip4/127.0.0.1/tcp/0"]) as host:
        node = DHTNode(host)
        async with node.running():
            task_status.started(node)
            await stop.wait()


@asynccontextmanager
async def network(size: int, concurrency: int, phases: dict[str, float]) -> Any:
    """Trio: a DHT network of ``size`` nodes, bootstrapped as in tests/p2p/test_dht.py;
    yields the nodes and stops them all (concurrently) on exit."""
    stop = trio.Event()
    limiter = trio.CapacityLimiter(concurrency)
    nodes: list[DHTNode | None] = [None] * size
    async with trio.open_nursery() as holders:
        try:
            t0 = time.perf_counter()

            async def start(i: int) -> None:
                nodes[i] = await holders.start(hold_node, node_key(size, i), stop)

            async with trio.open_nursery() as starters:
                for i in range(size):
                    starters.start_soon(start, i)
            ready = [n for n in nodes if n is not None]
            assert len(ready) == size
            t1 = time.perf_counter()
            boot = host_addrs(ready[0].host)

            async def join(node: DHTNode) -> None:
                async with limiter:
                    await node.bootstrap(boot)
                    await ready[0].add_peer(node.host.get_id().to_base58())

            async with trio.open_nursery() as joiners:
                for node in ready[1:]:
                    joiners.start_soon(join, node)
            t2 = time.perf_counter()

            async def refresh(node: DHTNode) -> None:
                async with limiter:
                    await node.dht.refresh_routing_table()

            async with trio.open_nursery() as refreshers:  # the second round
                for node in ready[1:]:
                    refreshers.start_soon(refresh, node)
            t3 = time.perf_counter()
            phases.update(start=t1 - t0, bootstrap=t2 - t1, refresh=t3 - t2, total=t3 - t0)
            yield ready
        finally:
            # A host that stops while a peer is still dialing it makes libp2p's swarm log
            # "failed to upgrade security"; during teardown that is noise, not a finding.
            logging.getLogger("libp2p.network.swarm").setLevel(logging.CRITICAL)
            stop.set()


async def one_rep(nodes: Sequence[DHTNode], rng: random.Random,
                  op_timeout: float) -> tuple[float | None, float | None, bool, int]:
    """Publish a fresh DID's record from one random node, look it up from another.
    Returns (put ms or None, lookup ms or None, found, nodes holding the record)."""
    publisher, reader = rng.sample(range(len(nodes)), 2)
    party = Ed25519Key.generate()
    key = dht_key(party.did.did)
    _, value = EndpointRecord.create(party, 1, time.time(), ttl=600,
                                     tcp=[f"127.0.0.1:{rng.randrange(1024, 65536)}"])
    put_ms: float | None = None
    get_ms: float | None = None
    found = False
    start = time.perf_counter()
    try:
        with trio.fail_after(op_timeout):
            await nodes[publisher].put(key, value)
        put_ms = (time.perf_counter() - start) * 1e3
    except Exception as exc:  # TooSlowError, or ConnectFailed from the DHT
        print(f"  put failed ({len(nodes)} nodes): {type(exc).__name__}: {exc}",
              file=sys.stderr)
    holders = sum(1 for n in nodes if n.dht.value_store.get(key.encode()) is not None)
    start = time.perf_counter()
    try:
        with trio.fail_after(op_timeout):
            got = await nodes[reader].get(key)
        get_ms = (time.perf_counter() - start) * 1e3
        found = got == value
    except trio.TooSlowError:
        print(f"  lookup timed out ({len(nodes)} nodes)", file=sys.stderr)
    return put_ms, get_ms, found, holders


def p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 \
        else values[0]


def latency_cells(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>9}{'-':>9}{'-':>16}"
    spread = f"{min(values):.0f}-{max(values):.0f}"
    return f"{statistics.median(values):>9.1f}{p90(values):>9.1f}{spread:>16}"


async def main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    setups: dict[int, dict[str, float]] = {}
    tables: dict[int, float] = {}
    results: dict[int, list[tuple[float | None, float | None, bool, int]]] = {
        s: [] for s in sizes}
    began = time.perf_counter()
    # The deadline encloses every network: cancel scopes must nest with the services.
    with trio.fail_after(args.timeout):
        async with _networks(sizes, args, setups) as nets:
            for size, nodes in nets.items():
                tables[size] = statistics.median(n.routing_table_size() for n in nodes)
            for rep in range(args.reps):
                order = sizes if rep % 2 == 0 else sizes[::-1]
                for size in order:
                    results[size].append(await one_rep(nets[size], rng, args.op_timeout))
                    if args.verbose:
                        print(f"  rep {rep}, {size} nodes: (put ms, lookup ms, found, holders)"
                              f" = {results[size][-1]}", file=sys.stderr, flush=True)
            measured = time.perf_counter()
        teardown = time.perf_counter() - measured
    print(f"# DHT benchmark: {platform.machine()}, Python {platform.python_version()}, "
          f"py-libp2p Kademlia on 127.0.0.1, one trio loop, all networks up together, "
          f"{args.reps} interleaved reps, setup concurrency {args.setup_concurrency}")
    print(f"{'nodes':>5}{'setup s':>9}{'rt size':>9}{'put ms':>9}{'p90':>9}"
          f"{'put range':>16}{'get ms':>9}{'p90':>9}{'get range':>16}{'found':>8}"
          f"{'holders':>9}{'range':>8}")
    summary = []
    for size in sizes:
        rows = results[size]
        puts = [r[0] for r in rows if r[0] is not None]
        gets = [r[1] for r in rows if r[1] is not None]
        found = sum(1 for r in rows if r[2])
        holders = [r[3] for r in rows]
        print(f"{size:>5}{setups[size]['total']:>9.1f}{tables[size]:>9.0f}"
              f"{latency_cells(puts)}{latency_cells(gets)}"
              f"{f'{found}/{len(rows)}':>8}{statistics.median(holders):>9.0f}"
              f"{f'{min(holders)}-{max(holders)}':>8}")
        summary.append(f"{size} nodes: lookup {statistics.median(gets) if gets else 0:.0f} ms "
                       f"median, put {statistics.median(puts) if puts else 0:.0f} ms, "
                       f"{found}/{len(rows)} found, setup {setups[size]['total']:.1f} s")
    for size in sizes:
        ph = setups[size]
        print(f"  setup {size}: start hosts {ph['start']:.1f} s, bootstrap {ph['bootstrap']:.1f} s"
              f", second refresh {ph['refresh']:.1f} s")
    print(f"  wall {time.perf_counter() - began:.1f} s (teardown {teardown:.1f} s)")
    print("summary: " + "; ".join(summary))


@asynccontextmanager
async def _networks(sizes: Sequence[int], args: argparse.Namespace,
                    setups: dict[int, dict[str, float]]) -> Any:
    """All networks, built one after the other (so each setup time is its own), kept up
    together."""
    async with AsyncExitStack() as stack:
        nets = {}
        for size in sizes:
            setups[size] = {}
            nets[size] = await stack.enter_async_context(
                network(size, args.setup_concurrency, setups[size]))
        yield nets


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,50", help="network sizes, comma-separated")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--setup-concurrency", type=int, default=1,
                        help="nodes joining / refreshing at a time (1: as in the test)")
    parser.add_argument("--op-timeout", type=float, default=30.0,
                        help="seconds one put or lookup may take before it counts as failed")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="bound on the whole run, seconds")
    parser.add_argument("--verbose", action="store_true", help="print every rep to stderr")
    parser.add_argument("--seed", type=int, default=1, help="seed of the node choices")
    trio.run(main, parser.parse_args())
