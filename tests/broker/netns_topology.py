"""Emulated NAT topologies made of Linux network namespaces, for integration tests.

``nat_topology(prefix, parties, public, nat_modes=..., stateful=True)`` builds, and always
tears down again::

                       public namespace  "<base>-net"
                 bridge <base>br, 10.X.0.1/24 = the relay / bootstrap node
           +--------------------+------------------------------+
           |                    |                              |
    public party c        router of a  "<base>-r1"        router of b ...
    "<base>-p3"           10.X.0.2 (uplink: MASQUERADE,
    10.X.0.4                        drops unsolicited inbound)
                          192.168.1.1 (lan)
                                |
                          host a  "<base>-h1"
                          192.168.1.2, default route via 192.168.1.1

* The relay lives in the public namespace itself, on the bridge address 10.X.0.1.
* A public party gets its own namespace with a public address on the bridge.
* A NATed party gets a router namespace (ip_forward=1, ``iptables -t nat -A POSTROUTING
  -o <uplink> -j MASQUERADE``, no port forwarding) and a host namespace behind it. The host
  can connect out to every public address; nothing outside can open a connection to it.
* Routers are stateful firewalls, as real NATs are: in their INPUT and FORWARD chains a
  packet coming in on the uplink passes only if conntrack has it as ESTABLISHED or RELATED
  (the reply direction of a flow that went out); anything else is dropped silently, with
  no RST and no ICMP, so an unsolicited connection to a router's public address times out.
  A SYN that arrives while the host's own SYN to the same address and port has gone out
  is the reply direction of that flow and passes: this is what TCP hole punching
  (simultaneous open) relies on. ``stateful=False`` leaves the routers open instead: the
  router's own stack then answers an unsolicited TCP connection with RST ("refused").
* Routers have no default route, so traffic to another party's private network fails at
  once ("network unreachable", an ICMP error from the host's own router) instead of timing
  out; the public namespace has no route to any 192.168 network either.

NAT mapping mode, per NATed party (``nat_modes={"a": "random"}``; default "preserve"):

* ``"preserve"`` (PRESERVE): plain MASQUERADE, which keeps the host's source port when that
  port is free on the uplink, so the mapped port is predictable (hole punching works).
* ``"random"`` (RANDOM): ``MASQUERADE --random-fully``: every new flow gets a random source
  port, like a symmetric NAT; a peer cannot predict it, so hole punching fails.

Byte counters: ``topo.count_tcp(name, port)`` appends accounting rules (no target, so they
change nothing) to the INPUT and OUTPUT chains of the party's namespace (the public one for
RELAY); ``topo.tcp_bytes(name, port)`` then gives the bytes of the TCP packets, IP and TCP
headers included, that the namespace received on local port ``port`` plus those it sent
from it since ``count_tcp``. Bridged traffic between other parties is not counted, only
what the namespace's own sockets send and receive.

Party ``i`` (1-based position in ``parties``) gets 10.X.0.(i+1) (its own address if public,
its router's uplink otherwise: ``public_ip``) and, when NATed, the network 192.168.i.0/24
(``ip`` is then 192.168.i.2).

Every name (namespaces, interfaces) starts with ``<prefix><4 hex digits>``; nothing is ever
created in the caller's own namespace. On exit, also through an exception or Ctrl-C, every
process started through the topology and every other process still inside one of its
namespaces is killed, and the namespaces are deleted (which deletes their interfaces,
firewall rules and counters).

Needs root, iproute2 (``ip``) and an iptables that works inside a namespace
(``iptables``, ``iptables-nft`` or ``iptables-legacy``: the first that works is used).
``netns_available()`` says why not, or None. No sysctl outside the namespaces is changed.

Import from a test in tests/broker (pytest puts this folder on ``sys.path``; the insertion
makes it independent of the import mode)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from netns_topology import nat_topology, netns_available
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["RELAY", "PRESERVE", "RANDOM", "NAT_MODES", "Topology", "TopologyError",
           "nat_topology", "netns_available", "require_netns", "list_namespaces"]

RELAY = "relay"
#: NAT mapping modes of a router (see the module doc): the MASQUERADE options of each.
PRESERVE = "preserve"
RANDOM = "random"
NAT_MODES: dict[str, tuple[str, ...]] = {PRESERVE: (), RANDOM: ("--random-fully",)}
#: Seconds any one setup or teardown command may take.
COMMAND_TIMEOUT = 15.0
#: Default timeout of ``Topology.run``.
RUN_TIMEOUT = 30.0
#: Seconds between SIGTERM and SIGKILL for processes started with ``Topology.popen``.
TERM_GRACE = 1.0

_IFNAMSIZ = 15
_SUFFIX_HEX = 4
_MAX_PARTIES = 99
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# The longest names built from the base: "<base>-p99" (namespaces) and "<base>u99" (links).
_MAX_BASE = _IFNAMSIZ - 4
_MAX_PREFIX = _MAX_BASE - _SUFFIX_HEX


class TopologyError(RuntimeError):
    """A namespace command failed, or the topology was asked for something it lacks."""


def _command(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
             what: str = "") -> subprocess.CompletedProcess[str]:
    """Run one setup/teardown command with check=True, raising a readable TopologyError."""
    try:
        return subprocess.run(list(argv), check=True, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip() or "no output"
        raise TopologyError(f"{what + ': ' if what else ''}`{' '.join(argv)}` exited "
                            f"{exc.returncode}: {detail}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TopologyError(f"{what + ': ' if what else ''}`{' '.join(argv)}` did not finish "
                            f"within {timeout:g} s") from exc
    except OSError as exc:
        raise TopologyError(f"{what + ': ' if what else ''}cannot run `{argv[0]}`: {exc}") \
            from exc


def list_namespaces() -> list[str]:
    """Names in ``ip netns list`` (without the "(id: N)" tails)."""
    out = _command(["ip", "netns", "list"], what="listing namespaces").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str | None, str | None]:
    """(reason it cannot work or None, the iptables binary that works in a namespace)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (this process is not uid 0)", None
    if shutil.which("ip") is None:
        return "the `ip` binary (iproute2) is not on PATH", None
    candidates = [name for name in ("iptables", "iptables-nft", "iptables-legacy")
                  if shutil.which(name)]
    if not candidates:
        return ("no iptables binary (iptables, iptables-nft or iptables-legacy) is on PATH; "
                "install it, e.g. `apt-get install -y iptables`"), None
    ns = "nsprobe" + secrets.token_hex(3)
    try:
        _command(["ip", "netns", "add", ns], what="creating a probe namespace")
        _command(["ip", "-n", ns, "link", "add", ns[:12] + "br", "type", "bridge"],
                 what="creating a bridge")
        _command(["ip", "-n", ns, "link", "add", ns[:12] + "v0", "type", "veth", "peer",
                  "name", ns[:12] + "v1"], what="creating a veth pair")
        errors = []
        for binary in candidates:
            try:
                _command(["ip", "netns", "exec", ns, binary, "-w", "5", "-t", "nat", "-L",
                          "-n"], what=binary)
                # Every match and option the build and the counters use.
                _command(["ip", "netns", "exec", ns, binary, "-w", "5", "-t", "nat", "-A",
                          "POSTROUTING", "-o", ns[:12] + "v0", "-j", "MASQUERADE",
                          "--random-fully"], what=binary)
                _command(["ip", "netns", "exec", ns, binary, "-w", "5", "-A", "INPUT",
                          "-i", ns[:12] + "v0", "-m", "conntrack", "--ctstate",
                          "ESTABLISHED,RELATED", "-m", "comment", "--comment", "probe",
                          "-j", "ACCEPT"], what=binary)
            except TopologyError as exc:
                errors.append(str(exc))
                continue
            return None, binary
        return "no iptables works inside a namespace: " + "; ".join(errors), None
    except TopologyError as exc:
        return f"network namespaces are not usable here: {exc}", None
    finally:
        with contextlib.suppress(TopologyError):
            _command(["ip", "netns", "delete", ns], what="deleting the probe namespace")


def netns_available() -> str | None:
    """None if NAT topologies can be built here, else the reason why not (cached)."""
    return _probe()[0]


def require_netns() -> None:
    """In a test: pytest.fail (not skip) with the reason if namespaces cannot be used."""
    reason = netns_available()
    if reason is not None:
        import pytest
        pytest.fail(f"netns topology unavailable: {reason}", pytrace=False)


class Topology:
    """A built topology: names and addresses of parties, and processes run inside it."""

    def __init__(self, base: str, subnet: int, parties: Sequence[str],
                 public: Sequence[str], *, nat_modes: Mapping[str, str] | None = None,
                 stateful: bool = True, iptables: str = "iptables") -> None:
        self.base = base
        self.stateful = stateful
        self.iptables = iptables
        self.subnet = subnet
        self.parties = list(parties)
        self.public = [p for p in self.parties if p in set(public)]
        self.public_ns = f"{base}-net"
        self.bridge = f"{base}br"
        self._ns: dict[str, str] = {RELAY: self.public_ns}
        self._ip: dict[str, str] = {RELAY: f"10.{subnet}.0.1"}
        self._public_ip: dict[str, str] = {RELAY: f"10.{subnet}.0.1"}
        self._router_ns: dict[str, str] = {}
        self._index: dict[str, int] = {}
        for i, party in enumerate(self.parties, start=1):
            self._index[party] = i
            self._public_ip[party] = f"10.{subnet}.0.{i + 1}"
            if party in self.public:
                self._ns[party] = f"{base}-p{i}"
                self._ip[party] = self._public_ip[party]
            else:
                self._router_ns[party] = f"{base}-r{i}"
                self._ns[party] = f"{base}-h{i}"
                self._ip[party] = f"192.168.{i}.2"
        #: The NAT mapping mode of every NATed party.
        self.nat_modes = {party: (nat_modes or {}).get(party, PRESERVE)
                          for party in self._router_ns}
        self._counted: set[tuple[str, int]] = set()
        #: Every namespace, in creation order (the public one first).
        self.namespaces: list[str] = [self.public_ns]
        for party in self.parties:
            if party in self._router_ns:
                self.namespaces.append(self._router_ns[party])
            self.namespaces.append(self._ns[party])
        self.processes: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    # -- names and addresses -------------------------------------------------------------

    def _known(self, name: str) -> None:
        if name not in self._ns:
            raise TopologyError(f"unknown party {name!r}; known: {[RELAY, *self.parties]}")

    def ns(self, name: str) -> str:
        """Namespace of a party, or of the relay ("relay": the public namespace)."""
        self._known(name)
        return self._ns[name]

    def ip(self, name: str) -> str:
        """The party's own address: public for public parties and the relay, else 192.168."""
        self._known(name)
        return self._ip[name]

    def public_ip(self, name: str) -> str:
        """The address others see: the router's uplink for a NATed party, else ``ip``."""
        self._known(name)
        return self._public_ip[name]

    def router_ns(self, name: str) -> str:
        """Namespace of a NATed party's router."""
        self._known(name)
        if name not in self._router_ns:
            raise TopologyError(f"{name!r} is public and has no router")
        return self._router_ns[name]

    def is_public(self, name: str) -> bool:
        self._known(name)
        return name == RELAY or name in self.public

    def nat_mode(self, name: str) -> str:
        """PRESERVE or RANDOM: how the router of a NATed party maps source ports."""
        self.router_ns(name)
        return self.nat_modes[name]

    def exec_args(self, name: str) -> list[str]:
        """``["ip", "netns", "exec", NS]``: prefix argv with it to run inside the party."""
        return ["ip", "netns", "exec", self.ns(name)]

    # -- processes ---------------------------------------------------------------------

    def popen(self, name: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the party's namespace; killed at the latest on exit.

        Defaults: stdin=DEVNULL and start_new_session=True (so its whole process group can
        be signalled). Other keywords go to subprocess.Popen unchanged.
        """
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        args = [*self.exec_args(name), *argv]
        with self._lock:
            if self._closed:
                raise TopologyError("the topology has already been torn down")
            proc = subprocess.Popen(args, **kw)
            self.processes.append(proc)
        return proc

    def run(self, name: str, argv: Sequence[str], *, timeout: float | None = RUN_TIMEOUT,
            check: bool = True, input: str | bytes | None = None,
            capture_output: bool = True, text: bool = True,
            **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Like subprocess.run inside the party's namespace (check=True, captured text,
        timeout RUN_TIMEOUT by default); on timeout the whole process group is killed."""
        if capture_output:
            kw.setdefault("stdout", subprocess.PIPE)
            kw.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            kw["stdin"] = subprocess.PIPE
        proc = self.popen(name, argv, text=text, **kw)
        try:
            stdout, stderr = proc.communicate(input=input, timeout=timeout)
        except BaseException:
            _kill_group(proc, grace=0.0)
            raise
        result: subprocess.CompletedProcess[Any] = subprocess.CompletedProcess(
            proc.args, proc.returncode, stdout, stderr)
        if check:
            result.check_returncode()
        return result

    # -- byte counters -----------------------------------------------------------------

    def _tag(self, port: int, direction: str) -> str:
        return f"{self.base}:tcp:{port}:{direction}"

    def count_tcp(self, name: str, port: int) -> None:
        """Start counting the TCP bytes the party's namespace (the public one for RELAY)
        receives on local port ``port`` and sends from it; read them with ``tcp_bytes``."""
        self._known(name)
        if (name, port) in self._counted:
            raise TopologyError(f"TCP port {port} of {name!r} is already counted")
        for chain, match, direction in (("INPUT", "--dport", "in"),
                                        ("OUTPUT", "--sport", "out")):
            _command([*self.exec_args(name), self.iptables, "-w", "5", "-A", chain,
                      "-p", "tcp", match, str(port), "-m", "comment", "--comment",
                      self._tag(port, direction)], what=f"counting TCP port {port} of {name}")
        self._counted.add((name, port))

    def tcp_bytes(self, name: str, port: int) -> int:
        """Bytes (IP packets, headers included) received on plus sent from TCP port
        ``port`` in the party's namespace since ``count_tcp(name, port)``."""
        self._known(name)
        if (name, port) not in self._counted:
            raise TopologyError(f"TCP port {port} of {name!r} is not counted; "
                                f"call count_tcp first")
        total = 0
        for chain, direction in (("INPUT", "in"), ("OUTPUT", "out")):
            out = _command([*self.exec_args(name), self.iptables, "-w", "5", "-nvx", "-L",
                            chain], what=f"reading the counters of {name}").stdout
            tag = f"/* {self._tag(port, direction)} */"
            rows = [line for line in out.splitlines() if tag in line]
            if len(rows) != 1:
                raise TopologyError(f"expected one counter {tag} in {chain} of {name}: "
                                    f"{out}")
            total += int(rows[0].split()[1])
        return total

    # -- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process, delete every namespace. Idempotent; raises TopologyError
        after doing all it can if something remains."""
        with self._lock:
            self._closed = True
            processes = list(self.processes)
        for proc in processes:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE
        for proc in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in processes:
            _kill_group(proc, grace=0.0)
        problems: list[str] = []
        existing = set(list_namespaces())
        ours = [ns for ns in existing if ns.startswith(self.base)]
        for ns in [*self.namespaces, *sorted(ours)]:
            if ns in existing:
                problems += _empty_namespace(ns)
        for ns in [*self.namespaces, *sorted(ours)]:
            if ns in existing:
                existing.discard(ns)
                try:
                    _command(["ip", "netns", "delete", ns], what="deleting a namespace")
                except TopologyError as exc:
                    problems.append(str(exc))
        left = [ns for ns in list_namespaces() if ns.startswith(self.base)]
        if left:
            problems.append(f"namespaces left behind: {left}")
        links = _command(["ip", "-o", "link", "show"], what="listing links").stdout
        stray = [line.split(":")[1].strip() for line in links.splitlines()
                 if self.base in line]
        if stray:
            problems.append(f"links left behind in the root namespace: {stray}")
        if problems:
            raise TopologyError(f"teardown of {self.base} incomplete: " + "; ".join(problems))


def _kill_group(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGKILL the process group of proc (its own session) and reap proc."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(grace, 5.0))
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _empty_namespace(ns: str) -> list[str]:
    """SIGKILL every process still inside ns (e.g. daemons that left their session)."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            out = _command(["ip", "netns", "pids", ns], what="listing processes").stdout
        except TopologyError as exc:
            return [str(exc)]
        pids = [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]
        if not pids:
            return []
        if time.monotonic() > deadline:
            return [f"processes {pids} would not die in namespace {ns}"]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:   # reap our own zombies so that they vanish from /proc
            with contextlib.suppress(OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def _build(topo: Topology, iptables: str) -> None:
    base = topo.base

    def sh(what: str, *argv: str) -> None:
        _command(argv, what=what)

    def in_ns(ns: str, what: str, *argv: str) -> None:
        _command(["ip", "netns", "exec", ns, *argv], what=what)

    for ns in topo.namespaces:
        sh(f"creating namespace {ns}", "ip", "netns", "add", ns)
        sh(f"bringing up lo in {ns}", "ip", "-n", ns, "link", "set", "lo", "up")

    pub = topo.public_ns
    sh("creating the public bridge", "ip", "-n", pub, "link", "add", topo.bridge,
       "type", "bridge")
    sh("addressing the public bridge", "ip", "-n", pub, "addr", "add",
       f"{topo.ip(RELAY)}/24", "dev", topo.bridge)
    sh("bringing up the public bridge", "ip", "-n", pub, "link", "set", topo.bridge, "up")

    for party in topo.parties:
        i = topo._index[party]
        outer = topo.ns(party) if topo.is_public(party) else topo.router_ns(party)
        uplink, port = f"{base}u{i}", f"{base}b{i}"
        sh(f"creating the uplink of {party}", "ip", "-n", outer, "link", "add", uplink,
           "type", "veth", "peer", "name", port, "netns", pub)
        sh(f"attaching {party} to the bridge", "ip", "-n", pub, "link", "set", port,
           "master", topo.bridge)
        sh(f"bringing up the bridge port of {party}", "ip", "-n", pub, "link", "set", port,
           "up")
        sh(f"addressing the uplink of {party}", "ip", "-n", outer, "addr", "add",
           f"{topo.public_ip(party)}/24", "dev", uplink)
        sh(f"bringing up the uplink of {party}", "ip", "-n", outer, "link", "set", uplink,
           "up")
        if topo.is_public(party):
            continue
        host = topo.ns(party)
        lan, eth = f"{base}l{i}", f"{base}e{i}"
        sh(f"creating the LAN of {party}", "ip", "-n", outer, "link", "add", lan,
           "type", "veth", "peer", "name", eth, "netns", host)
        sh(f"addressing the router LAN of {party}", "ip", "-n", outer, "addr", "add",
           f"192.168.{i}.1/24", "dev", lan)
        sh(f"bringing up the router LAN of {party}", "ip", "-n", outer, "link", "set", lan,
           "up")
        sh(f"addressing host {party}", "ip", "-n", host, "addr", "add",
           f"{topo.ip(party)}/24", "dev", eth)
        sh(f"bringing up host {party}", "ip", "-n", host, "link", "set", eth, "up")
        sh(f"default route of host {party}", "ip", "-n", host, "route", "add", "default",
           "via", f"192.168.{i}.1")
        in_ns(outer, f"enabling forwarding in the router of {party}", "sh", "-c",
              "echo 1 > /proc/sys/net/ipv4/ip_forward")
        in_ns(outer, f"MASQUERADE in the router of {party}", iptables, "-w", "5",
              "-t", "nat", "-A", "POSTROUTING", "-o", uplink, "-j", "MASQUERADE",
              *NAT_MODES[topo.nat_mode(party)])
        if not topo.stateful:
            continue
        for chain in ("FORWARD", "INPUT"):   # replies pass; the rest is dropped silently
            in_ns(outer, f"stateful {chain} in the router of {party}", iptables, "-w", "5",
                  "-A", chain, "-i", uplink, "-m", "conntrack", "--ctstate",
                  "ESTABLISHED,RELATED", "-j", "ACCEPT")
            in_ns(outer, f"stateful {chain} in the router of {party}", iptables, "-w", "5",
                  "-A", chain, "-i", uplink, "-j", "DROP")


@contextlib.contextmanager
def nat_topology(prefix: str, parties: Sequence[str], public: Sequence[str] = (),
                 *, subnet: int | None = None, nat_modes: Mapping[str, str] | None = None,
                 stateful: bool = True) -> Iterator[Topology]:
    """Build the topology, yield it, and tear it all down on exit (see the module doc).

    ``prefix``: 1-7 characters [A-Za-z0-9_] starting with a letter; a random 4-hex suffix
    is added. ``public``: the parties with a public address. ``subnet``: X in 10.X.0.0/24
    (random 1-254 by default). ``nat_modes``: NATed party -> PRESERVE ("preserve", the
    default) or RANDOM ("random"). ``stateful``: routers drop unsolicited inbound packets
    silently (default) or, if False, let them reach their own stack. Raises TopologyError
    if it cannot be built, with the reason.
    """
    if not _PREFIX_RE.match(prefix) or len(prefix) > _MAX_PREFIX:
        raise ValueError(f"prefix must match {_PREFIX_RE.pattern} and have at most "
                         f"{_MAX_PREFIX} characters (interface names are <= 15): {prefix!r}")
    parties = list(parties)
    if len(set(parties)) != len(parties) or RELAY in parties:
        raise ValueError(f"party names must be distinct and not {RELAY!r}: {parties}")
    if not 1 <= len(parties) <= _MAX_PARTIES:
        raise ValueError(f"between 1 and {_MAX_PARTIES} parties, not {len(parties)}")
    unknown = set(public) - set(parties)
    if unknown:
        raise ValueError(f"public parties not in parties: {sorted(unknown)}")
    nat_modes = dict(nat_modes or {})
    not_nated = set(nat_modes) - (set(parties) - set(public))
    if not_nated:
        raise ValueError(f"nat_modes names parties that are not NATed: {sorted(not_nated)}")
    bad = {p: m for p, m in nat_modes.items() if m not in NAT_MODES}
    if bad:
        raise ValueError(f"NAT modes must be one of {sorted(NAT_MODES)}: {bad}")
    if subnet is None:
        subnet = 1 + secrets.randbelow(254)
    if not 0 <= subnet <= 255:
        raise ValueError(f"subnet must be 0-255, not {subnet}")
    reason, iptables = _probe()
    if reason is not None or iptables is None:
        raise TopologyError(f"netns topology unavailable: {reason}")
    existing = set(list_namespaces())
    while True:
        base = prefix + secrets.token_hex(_SUFFIX_HEX // 2)
        if not any(ns.startswith(base) for ns in existing):
            break
    topo = Topology(base, subnet, parties, public, nat_modes=nat_modes, stateful=stateful,
                    iptables=iptables)
    try:
        _build(topo, iptables)
        yield topo
    finally:
        _close_shielded(topo)


def _close_shielded(topo: Topology) -> None:
    """topo.close() with SIGINT held off (main thread only), re-raised afterwards."""
    interrupted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        topo.close()
        return
    previous = signal.getsignal(signal.SIGINT)

    def hold(signum: int, frame: object) -> None:
        interrupted.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        topo.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt
