"""What credential-gated admission costs, side by side with what a session pays anyway.

    .venv/bin/python benchmarks/admission_bench.py [--reps 7] [--sessions 3]

1. Per channel, in one process (interleaved, medians): a Noise IK handshake (both ends,
   sans-IO) against what admission adds on one side of a channel: signing a presentation
   with one membership credential (eddsa-rdfc-2022), and verifying the peer's
   (presentation proof, credential proof, status list, policy); and the same with no
   credential (a session without requirements still exchanges presentations).
2. Whole sessions: three `mpcid join` processes on loopback through a local `mpcid node`,
   from launch to MPyC start (the ``started`` progress event, slowest party), with a
   credential requirement and without, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpcid.broker.admission import challenge_for, domain_for
from mpcid.identity import credentials as vc
from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.keystore import Keystore
from mpcid.identity.policy import Policy
from mpcid.identity.statuslist import Bitstring, FileAndHttpStatusSource
from mpcid.p2p.noise import ChannelConfig, NoiseChannel, session_prologue

ROOT = Path(__file__).resolve().parents[1]
SALARY = ROOT / "examples" / "salary_sum.py"
MPCID = str(Path(sys.executable).parent / "mpcid")
NOW = dt.datetime.now(dt.timezone.utc)
URL = "https://acme.example/status/1"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def per_channel(reps: int) -> None:
    org, alice, bob = (Ed25519Key.generate() for _ in range(3))
    credential = vc.sign_credential(vc.build_credential(
        issuer=org.did.did, subject=bob.did.did, credential_type="MembershipCredential",
        claims={"organization": "Acme"}, valid_from=NOW, status=(URL, 1)), org, now=NOW)
    status = vc.sign_credential(vc.status_list_credential(
        issuer=org.did.did, url=URL, bits=Bitstring.empty(), purpose="revocation",
        valid_from=NOW), org, now=NOW)
    config = vc.VerifyConfig(status=FileAndHttpStatusSource({URL: status}), now=NOW)
    policy = Policy.parse([f"MembershipCredential@{org.did.did};organization=Acme"])
    dids = [alice.did.did, bob.did.did]
    prologue = session_prologue("0" * 32, bytes(32), dids)

    def handshake() -> None:
        a = NoiseChannel(ChannelConfig(alice.x25519_private_key, prologue, True,
                                       {bob.did.did: bob.did.x25519_public_key}), 0.0)
        b = NoiseChannel(ChannelConfig(bob.x25519_private_key, prologue, False,
                                       {alice.did.did: alice.did.x25519_public_key}), 0.0)
        a.start()
        b.start()
        b.receive_data(a.data_to_send(), 0.0)  # preamble, message 1
        assert a.receive_data(b.data_to_send(), 0.0)  # preamble, message 2: complete

    challenge, domain = challenge_for(bytes(32)), domain_for("0" * 32)
    made: dict[str, Any] = {}

    def create(credentials: list[dict[str, Any]]) -> Callable[[], None]:
        def run() -> None:
            made["vp"] = vc.create_presentation(bob, credentials, challenge=challenge,
                                                domain=domain, now=NOW)
        return run

    def verify(with_policy: Policy) -> None:
        result = asyncio.run(vc.verify_presentation(made["vp"], config, challenge=challenge,
                                                    domain=domain))
        with_policy.evaluate(result)

    samples: dict[str, list[float]] = {k: [] for k in (
        "handshake", "create1", "verify1", "create0", "verify0")}
    for _ in range(reps):
        samples["handshake"].append(timed(handshake))
        samples["create1"].append(timed(create([credential])))
        samples["verify1"].append(timed(lambda: verify(policy)))
        samples["create0"].append(timed(create([])))
        samples["verify0"].append(timed(lambda: verify(Policy())))
    hs = median_ms(samples["handshake"])
    one = median_ms(samples["create1"]) + median_ms(samples["verify1"])
    none = median_ms(samples["create0"]) + median_ms(samples["verify0"])
    print(f"\n1. per channel, one process, {reps} reps (medians)")
    print("| step | ms |")
    print("|---|---|")
    print(f"| Noise IK handshake, both ends | {hs:.2f} |")
    print(f"| sign a presentation, 1 credential | {median_ms(samples['create1']):.2f} |")
    print(f"| verify it (2 proofs, status list, policy) | {median_ms(samples['verify1']):.2f} |")
    print(f"| sign a presentation, no credential | {median_ms(samples['create0']):.2f} |")
    print(f"| verify it | {median_ms(samples['verify0']):.2f} |")
    print(f"admission per side and channel / handshake: with a credential "
          f"{one / hs:.1f}x, without {none / hs:.1f}x")


def session_start(requirement: bool, root: Path, node: str, n: int) -> float:
    """Seconds from launching n joins to the last party's MPyC start."""
    names = [f"p{i}" for i in range(n)]
    args = ["invite", "--home", str(root / names[0]), "--as", names[0], "--program",
            str(SALARY), "--bootstrap", node, "--no-publish"]
    for name in names[1:]:
        args += ["--did", Keystore(root / name).identity(name).did]
    if requirement:
        args += ["--require", f"MembershipCredential@{Keystore(root / 'org').identity('org').did}"]
    token = subprocess.run([MPCID, *args], capture_output=True, text=True, check=True,
                           env=env()).stdout.strip().splitlines()[-1]
    start = time.time()
    procs = [subprocess.Popen([MPCID, "join", token, "--home", str(root / name), "--as", name,
                               "--program", str(SALARY), "--progress", "json", "--",
                               "--salaries", "50000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env()) for name in names]
    started = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"a party failed: {err.strip().splitlines()[-1]}")
        events = [json.loads(line) for line in err.splitlines() if line.startswith('{"event"')]
        started += [e["t"] for e in events if e["event"] == "started"]
    return max(started) - start


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_BOOTSTRAP")}


def whole_sessions(reps: int, n: int = 3) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        org = Keystore(root / "org").create_identity("org")
        for i in range(n):
            key = Keystore(root / f"p{i}").create_identity(f"p{i}")
            Keystore(root / f"p{i}").put_document("credentials", "m", vc.sign_credential(
                vc.build_credential(issuer=org.did.did, subject=key.did.did,
                                    credential_type="MembershipCredential", valid_from=NOW),
                org, now=NOW))
        node = subprocess.Popen([MPCID, "node", "--home", str(root / "node"), "--listen",
                                 "/ip4/127.0.0.1/tcp/0"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env())
        try:
            assert node.stdout is not None
            address = node.stdout.readline().strip()
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(reps):
                for requirement in (False, True):
                    times[requirement].append(session_start(requirement, root, address, n))
        finally:
            node.terminate()
            node.wait(timeout=15)
    plain, gated = (statistics.median(times[k]) for k in (False, True))
    print(f"\n2. {n} `mpcid join` processes, launch to MPyC start, {reps} sessions each "
          "(medians, ranges)")
    print("| invitation | s |")
    print("|---|---|")
    print(f"| no requirement | {plain:.2f} ({min(times[False]):.2f}–{max(times[False]):.2f}) |")
    print(f"| one credential required | {gated:.2f} ({min(times[True]):.2f}–"
          f"{max(times[True]):.2f}) |")
    print(f"gated / plain: {gated / plain:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    per_channel(args.reps)
    if args.sessions:
        whole_sessions(args.sessions)


if __name__ == "__main__":
    main()
