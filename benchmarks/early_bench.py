"""Admission across a delayed path: the dialler's presentation in Noise message 1 (early
data, channel version 2) against after the handshake (version 1's message flow).

    .venv/bin/python benchmarks/early_bench.py [--rtt-ms 20,90] [--reps 7]

Two parties in one process, each with its admission gate as `mpcid join` runs it (one
membership credential required, with its status list), their channel through a
user-space TCP proxy that holds every chunk for half the round trip in each direction.
Per repetition both flows run, alternating; reported: medians of the time from the
dialler's TCP connection to admission complete (every pair admitted, `ready` received)
at the responder and at the dialler, in ms and in round trips. The only difference
between the two flows is the dialler's ``early_data`` (None: it presents after the
handshake, as channel version 1 did).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import platform
import statistics
from typing import Any

from mpcid.broker.admission_channel import AdmissionGate, AdmissionSettings
from mpcid.broker.progress import Progress
from mpcid.identity import credentials as vc
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.policy import Policy
from mpcid.identity.statuslist import Bitstring, FileAndHttpStatusSource
from mpcid.p2p.channel import ChannelProtocol
from mpcid.p2p.early_data import ReplayGuard
from mpcid.p2p.noise import ChannelConfig, session_prologue

NOW = dt.datetime.now(dt.timezone.utc)
URL = "https://acme.example/status/1"
SESSION = "b" * 32


class _Delayed:
    """One direction of the proxy: chunks leave ``delay`` seconds after they came, in
    order."""

    def __init__(self, writer: asyncio.StreamWriter, delay: float) -> None:
        self.writer, self.delay = writer, delay
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.loop = asyncio.get_running_loop()

    def put(self, data: bytes) -> None:
        self.queue.append((self.loop.time() + self.delay, data))
        if len(self.queue) == 1:
            self.loop.call_at(self.queue[0][0], self._due)

    def _due(self) -> None:
        while self.queue and self.queue[0][0] <= self.loop.time():
            self.writer.write(self.queue.popleft()[1])
        if self.queue:
            self.loop.call_at(self.queue[0][0], self._due)


async def delay_proxy(target: int, one_way: float, writers: list[asyncio.StreamWriter]
                      ) -> asyncio.Server:
    """A proxy to ``target`` that delays each direction by ``one_way`` seconds; the
    writers of its connections go to ``writers`` (closing them ends the connection)."""
    async def pump(reader: asyncio.StreamReader, out: _Delayed) -> None:
        try:
            while data := await reader.read(65536):
                out.put(data)
        except OSError:
            pass

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        writers.extend((writer, up_writer))
        await asyncio.gather(pump(reader, _Delayed(up_writer, one_way)),
                             pump(up_reader, _Delayed(writer, one_way)))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def parties() -> tuple[list[Ed25519Key], list[AdmissionSettings]]:
    org = Ed25519Key.generate()
    keys = [Ed25519Key.generate() for _ in range(2)]
    status = vc.sign_credential(vc.status_list_credential(
        issuer=org.did.did, url=URL, bits=Bitstring.empty(), purpose="revocation",
        valid_from=NOW), org, now=NOW)
    policy = Policy.parse([f"MembershipCredential@{org.did.did};organization=Acme"])
    settings = []
    for i, key in enumerate(keys):
        credential = vc.sign_credential(vc.build_credential(
            issuer=org.did.did, subject=key.did.did, credential_type="MembershipCredential",
            claims={"organization": "Acme"}, valid_from=NOW, status=(URL, i)), org, now=NOW)
        settings.append(AdmissionSettings(policy, (credential,), vc.VerifyConfig(
            status=FileAndHttpStatusSource({URL: status}), now=NOW, status_lists={})))
    return keys, settings


async def one_session(keys: list[Ed25519Key], settings: list[AdmissionSettings],
                      one_way: float, early: bool) -> tuple[float, float]:
    """Seconds from the dialler's TCP connection to admission complete at the responder
    and at the dialler."""
    loop = asyncio.get_running_loop()
    dids = [k.did.did for k in keys]
    prologue = session_prologue(SESSION, bytes(32), dids)
    gates = [AdmissionGate(keys[i], SESSION, i, dids, settings[i], Progress(),
                           lambda did: did) for i in range(2)]
    responder = ChannelConfig(keys[1].x25519_private_key, prologue, False,
                              {dids[0]: keys[0].did.x25519_public_key},
                              accept_early_data=True, replay_guard=ReplayGuard())
    dialler = ChannelConfig(keys[0].x25519_private_key, prologue, True,
                            {dids[1]: keys[1].did.x25519_public_key},
                            early_data=gates[0].early_presentation if early else None)
    server = await loop.create_server(lambda: ChannelProtocol(
        responder, lambda did: gates[1].app(0, asyncio.Protocol)), "127.0.0.1", 0)
    writers: list[asyncio.StreamWriter] = []
    proxy = await delay_proxy(server.sockets[0].getsockname()[1], one_way, writers)
    done: list[float] = [0.0, 0.0]
    for i, gate in enumerate(gates):
        gate.done.add_done_callback(lambda _, i=i: done.__setitem__(i, loop.time()))
    connected = loop.time()
    await loop.create_connection(lambda: ChannelProtocol(
        dialler, lambda did: gates[0].app(1, asyncio.Protocol)),
        "127.0.0.1", proxy.sockets[0].getsockname()[1])
    await asyncio.wait_for(asyncio.gather(*(g.done for g in gates)), 30)
    for gate in gates:
        await gate.close(drain=0)
    for writer in writers:  # the proxy's pumps see the end of their streams and return
        writer.close()
    proxy.close()
    server.close()
    await asyncio.sleep(0.01)
    return done[1] - connected, done[0] - connected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", default="20,90", help="comma-separated round trips")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    try:
        rtts = [float(x) for x in args.rtt_ms.split(",") if x]
    except ValueError:
        rtts = []
    if not rtts or any(r <= 0 or r > 2000 for r in rtts) or args.reps < 1:
        raise SystemExit("error: --rtt-ms takes round trips in (0, 2000] ms, --reps >= 1")
    keys, settings = parties()
    print(f"# python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.reps} reps per cell, alternating, medians")
    print("| RTT ms | presentation | responder admitted, ms (RTT) | dialler admitted, ms (RTT) |")
    print("|---|---|---|---|")
    for rtt in rtts:
        samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for _ in range(args.reps):
            for early in (False, True):
                samples[early].append(asyncio.run(one_session(keys, settings,
                                                              rtt / 2000, early)))
        for early in (False, True):
            cells: list[Any] = []
            for side in (0, 1):
                ms = statistics.median(s[side] for s in samples[early]) * 1000
                cells.append(f"{ms:.1f} ({ms / rtt:.2f})")
            label = "in message 1" if early else "after the handshake"
            print(f"| {rtt:g} | {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
