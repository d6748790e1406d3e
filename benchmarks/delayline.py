"""A user-space delay line: every packet of a TUN device comes back out after a one-way
delay chosen by its (source, destination) IPv4 addresses.

The kernel of the machines this project benchmarks on has no netem, so ``tc`` cannot delay
packets; this process does it instead. wan_topology.py routes every packet that crosses
its core router into the TUN device (policy routing by input interface); this process
reads it, holds it until ``arrival + delay(src, dst)`` and writes it back into the same
device, from where the core's main routing table forwards it to its destination.

Theory of operation:

* One thread, one ``select`` loop over the TUN descriptor and the control pipe (stdin),
  with the time to the earliest held packet as its timeout. Held packets sit in one heap
  ordered by (release time, arrival number): packets of one pair have one delay, so each
  pair's packets leave in arrival order (a flow is never reordered). When the delays
  change while packets are held, a pair's new packets are never released before its
  previous ones (``release = max(arrival + delay, last release of the pair)``).
* Offloads (TUNSETOFFLOAD with IFF_VNET_HDR): the device accepts TCP segmentation offload
  packets, so bulk TCP arrives as GSO packets of up to 64 KiB, each carrying a 10-byte
  virtio-net header that this process passes back unchanged. TCP still segments with the
  links' 1500-byte MTU when the packet leaves the core (the header carries the MSS), so
  congestion control sees an ordinary 1500-byte path, but Python touches ~40 times fewer
  packets. UDP segmentation offload is asked for too, and dropped where the kernel
  lacks it. Measured on a 2-core VM, bulk TCP between two namespaces at delay 0: 12
  Gbit/s with 63% of a core (1 Gbit/s at 100% without offloads); at 45 ms each way the
  sender's window limits TCP (236 Mbit/s with Linux's default buffers, 7 Gbit/s with
  128 MiB ones) long before the delay line does.
* On time: select is asked to wake up a little before a packet is due, by the median
  lateness of its past wake-ups (~70 us on a VM), and packets due within
  ``RELEASE_SLACK`` leave at once. The process runs in the SCHED_FIFO class (where
  allowed), so that CPU-bound programs in the namespaces (MPC parties on two cores) do
  not delay the network: under three busy loops on two cores the jitter of a 20 ms
  round trip was 1.6 ms in the normal class and 0.2 ms with SCHED_FIFO.
* Reads are non-blocking and batched (at most ``READ_BATCH`` per wake-up) so that a burst
  cannot hold back packets already due. Held bytes are bounded (``--limit-mb``); beyond
  that new packets are dropped and counted, as a router's full queue would.
* Lifetime: the process exits when its stdin reaches end of file, which happens when the
  parent closes the pipe or dies by any means (a kill -9 included), and on SIGTERM/SIGINT.
  The TUN device is persistent (created by the topology with ``ip tuntap``): without this
  process attached, the kernel drops what is routed into it, so a dead delay line shows
  as a dead network, never as a network without delay.

Control protocol, one JSON object per line on stdin, one JSON reply per line on stdout::

    {"delays": [["10.1.1.2", "10.1.2.2", 0.045], ...], "default": 0.0}  -> {"ok": true}
    {"stats": true}   -> {"ok": true, "packets": ..., "bytes": ..., "dropped": ..., ...}

Delays are in seconds, per direction (source address, destination address); pairs not
listed get ``default``. A first line ``{"ready": true, ...}`` is printed once the device is
attached. Standard library only (fcntl/ioctl, select), Linux only.

    ip netns exec CORE python delayline.py --tun NAME [--no-offload] [--no-realtime]
        [--limit-mb 256]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import heapq
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["DelayLine", "DelayLineError", "VNET_HDR_LEN", "main"]

# <linux/if_tun.h>
_TUNSETIFF = 0x400454CA
_TUNSETOFFLOAD = 0x400454D0
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_TUN_F_CSUM, _TUN_F_TSO4, _TUN_F_TSO6, _TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
_TUN_F_USO4, _TUN_F_USO6 = 0x20, 0x40
_PR_SET_TIMERSLACK = 29
#: sizeof(struct virtio_net_hdr): the default header length of an IFF_VNET_HDR device.
VNET_HDR_LEN = 10
#: Largest packet read: a 64 KiB GSO packet plus its header (tun's gso_max_size is 64 KiB).
_READ_SIZE = 65536 + 256
#: Packets read per wake-up before the due ones are written: bounds the extra delay a
#: burst can add to packets already due.
READ_BATCH = 64
#: A packet due within this many seconds leaves now: waiting again costs a wake-up, which
#: on a VM comes ~70 us late.
RELEASE_SLACK = 20e-6
#: The most the loop asks to be woken before a packet is due (it learns how late wake-ups
#: come, see ``_Line.learn``), and the step of that estimate.
MAX_EARLY = 300e-6
EARLY_STEP = 2e-6
#: SCHED_FIFO priority of the process (1-99; threaded interrupt handlers run at 50).
RT_PRIORITY = 10
#: Seconds the client waits for the process to attach or to answer a control line.
CONTROL_TIMEOUT = 10.0


class DelayLineError(RuntimeError):
    """The delay line could not start, or stopped answering."""


# -- the process ---------------------------------------------------------------------------


@dataclass
class _Counters:
    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    write_errors: int = 0
    held_max: int = 0
    held_bytes_max: int = 0
    late_max: float = 0.0     # seconds a packet left after its release time, at most
    late_sum: float = 0.0     # signed: a packet may leave up to RELEASE_SLACK early

    def as_dict(self) -> dict[str, Any]:
        mean = self.late_sum / self.packets if self.packets else 0.0
        return {"packets": self.packets, "bytes": self.bytes, "dropped": self.dropped,
                "write_errors": self.write_errors, "held_max": self.held_max,
                "held_bytes_max": self.held_bytes_max,
                "late_max_us": round(self.late_max * 1e6, 1),
                "late_mean_us": round(mean * 1e6, 1)}


@dataclass
class _Line:
    """The state of the loop: delays, held packets, counters."""

    offset: int                          # where the IP header starts in a read packet
    limit: int                           # bytes that may be held at once
    delays: dict[bytes, float] = field(default_factory=dict)  # src+dst (8 bytes) -> s
    default: float = 0.0
    heap: list[tuple[float, int, bytes]] = field(default_factory=list)
    tails: dict[bytes, float] = field(default_factory=dict)   # pair -> last release
    held_bytes: int = 0
    seq: int = 0
    early: float = 0.0        # how much earlier than due to ask select to wake up
    counters: _Counters = field(default_factory=_Counters)

    def hold(self, packet: bytes, now: float) -> None:
        size = len(packet)
        if self.held_bytes + size > self.limit:
            self.counters.dropped += 1
            return
        key = packet[self.offset + 12:self.offset + 20]   # IPv4 source and destination
        release = now + self.delays.get(key, self.default)
        tail = self.tails.get(key)
        if tail is not None and tail > release:
            release = tail
        self.tails[key] = release
        self.held_bytes += size
        self.seq += 1
        heapq.heappush(self.heap, (release, self.seq, packet))

    def release_due(self, fd: int) -> None:
        heap, counters = self.heap, self.counters
        if len(heap) > counters.held_max:
            counters.held_max = len(heap)
        if self.held_bytes > counters.held_bytes_max:
            counters.held_bytes_max = self.held_bytes
        now = time.monotonic()
        while heap and heap[0][0] <= now + RELEASE_SLACK:
            release, _, packet = heapq.heappop(heap)
            self.held_bytes -= len(packet)
            try:
                os.write(fd, packet)
            except OSError:
                counters.write_errors += 1
                continue
            late = now - release
            counters.packets += 1
            counters.bytes += len(packet) - self.offset
            counters.late_sum += late
            if late > counters.late_max:
                counters.late_max = late
            if not heap or heap[0][0] > now + RELEASE_SLACK:
                now = time.monotonic()

    def learn(self, overshoot: float) -> None:
        """A timer wake-up came ``overshoot`` seconds after the time asked for. Track the
        median of these (a step towards each sample: VM hiccups of milliseconds must not
        pull it up) and ask to be woken that much before a packet is due."""
        step = EARLY_STEP if overshoot > self.early else -EARLY_STEP
        self.early = min(max(0.0, self.early + step), MAX_EARLY)

    def configure(self, request: dict[str, Any]) -> dict[str, Any]:
        if "delays" in request:
            delays: dict[bytes, float] = {}
            for src, dst, seconds in request["delays"]:
                if not 0 <= float(seconds) < 60:
                    raise ValueError(f"delay out of range: {seconds!r}")
                delays[socket.inet_aton(src) + socket.inet_aton(dst)] = float(seconds)
            self.delays = delays
            self.default = float(request.get("default", 0.0))
        reply: dict[str, Any] = {"ok": True}
        if request.get("stats"):
            reply.update(self.counters.as_dict(), held=len(self.heap),
                         held_bytes=self.held_bytes, early_us=round(self.early * 1e6, 1))
        return reply


def open_tun(name: str, offload: bool) -> tuple[int, str]:
    """Attach to the TUN device ``name``: (descriptor, offloads granted)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = _IFF_TUN | _IFF_NO_PI | (_IFF_VNET_HDR if offload else 0)
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        granted = "none"
        if not offload:   # a persistent device keeps the offloads an earlier user set
            fcntl.ioctl(fd, _TUNSETOFFLOAD, 0)
        else:
            tcp = _TUN_F_CSUM | _TUN_F_TSO4 | _TUN_F_TSO6 | _TUN_F_TSO_ECN
            try:
                fcntl.ioctl(fd, _TUNSETOFFLOAD, tcp | _TUN_F_USO4 | _TUN_F_USO6)
                granted = "csum,tso,uso"
            except OSError:   # kernels before 6.2 know no UDP segmentation offload
                fcntl.ioctl(fd, _TUNSETOFFLOAD, tcp)
                granted = "csum,tso"
        return fd, granted
    except BaseException:
        os.close(fd)
        raise


def _on_time(realtime: bool) -> str:
    """Wake up on time: 1 ns timer slack (default 50 us) and, if ``realtime``, the
    SCHED_FIFO class, so that CPU-bound processes (MPC parties on a small machine) do
    not delay the network; the kernel's real-time throttling still leaves them 5% of a
    core should this process ever spin. Returns the scheduling class it got."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    if realtime:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
            return "fifo"
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)
            return "nice -10"
    return "normal"


def _read_batch(fd: int, line: _Line) -> None:
    for _ in range(READ_BATCH):
        try:
            packet = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EINTR, errno.EAGAIN):
                return
            raise
        line.hold(packet, time.monotonic())


def _control(fd: int, pending: bytearray, line: _Line, out: IO[str]) -> bool:
    """Answer the complete control lines waiting on stdin; False at end of file."""
    data = os.read(fd, 1 << 20)
    if not data:
        return False
    pending += data
    *lines, rest = bytes(pending).split(b"\n")
    pending[:] = rest
    for raw in lines:
        if not raw.strip():
            continue
        try:
            reply = line.configure(json.loads(raw))
        except (ValueError, TypeError, OSError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return True


def serve(fd: int, line: _Line, control: IO[bytes], out: IO[str]) -> None:
    """The loop (see the module doc); returns when the control pipe closes."""
    readers = [fd, control.fileno()]
    pending = bytearray()
    while True:
        line.release_due(fd)
        wake = timeout = None
        if line.heap:
            wake = line.heap[0][0] - line.early
            timeout = max(0.0, wake - time.monotonic())
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except InterruptedError:
            continue
        if not ready and wake is not None and timeout:
            line.learn(time.monotonic() - wake)
        if fd in ready:
            _read_batch(fd, line)
        if readers[1] in ready and not _control(readers[1], pending, line, out):
            return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tun", required=True, help="the persistent TUN device to attach")
    parser.add_argument("--no-offload", dest="offload", action="store_false",
                        help="no IFF_VNET_HDR / TSO: every 1500-byte packet separately")
    parser.add_argument("--limit-mb", type=float, default=256.0,
                        help="MiB of packets held at most (default 256)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="normal scheduling instead of SCHED_FIFO")
    args = parser.parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduling = _on_time(args.realtime)
    try:
        fd, granted = open_tun(args.tun, args.offload)
    except OSError as exc:
        print(json.dumps({"ready": False, "error": f"cannot attach to {args.tun}: {exc}"}),
              flush=True)
        return 1
    line = _Line(offset=VNET_HDR_LEN if args.offload else 0,
                 limit=int(args.limit_mb * (1 << 20)))
    print(json.dumps({"ready": True, "pid": os.getpid(), "offload": granted,
                      "scheduling": scheduling}), flush=True)
    try:
        serve(fd, line, sys.stdin.buffer, sys.stdout)
    finally:
        os.close(fd)
    return 0


# -- the client ----------------------------------------------------------------------------


class DelayLine:
    """The parent's handle on a running delay line (started by ``start``).

    Holds the write end of the process's stdin: closing it (``stop``), or the parent
    dying, ends the process.
    """

    def __init__(self, proc: subprocess.Popen[str], ready: dict[str, Any]) -> None:
        self.proc = proc
        #: What the process said when it had attached ({"ready": true, "offload": ...,
        #: "scheduling": "fifo"}).
        self.ready = ready
        self._lock = threading.Lock()   # one request and its answer at a time

    @classmethod
    def start(cls, exec_prefix: Sequence[str], tun: str, *, offload: bool = True,
              realtime: bool = True, limit_mb: float = 256.0,
              popen: Any = subprocess.Popen) -> DelayLine:
        """Start ``[*exec_prefix, python, delayline.py, --tun, tun]`` (e.g. with an
        ``ip netns exec NS`` prefix, or through a topology's ``popen``) and wait until it
        has attached to the device. Raises DelayLineError with its output if it fails."""
        argv = [*exec_prefix, sys.executable, os.path.abspath(__file__), "--tun", tun,
                "--limit-mb", str(limit_mb), *([] if offload else ["--no-offload"]),
                *([] if realtime else ["--no-realtime"])]
        proc = popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, bufsize=1)
        first = _read_line(proc, CONTROL_TIMEOUT)
        ready = json.loads(first) if first.startswith("{") else {}
        if not ready.get("ready"):
            with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=5)
            raise DelayLineError(f"the delay line did not start: {first.strip()!r} "
                                 f"{ready.get('error', '')} {_stderr(proc)}")
        return cls(proc, ready)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._exchange(request)

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.proc.poll() is not None or self.proc.stdin is None:
            raise DelayLineError(f"the delay line has exited ({self.proc.returncode}): "
                                 f"{_stderr(self.proc)}")
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise DelayLineError(f"the delay line does not listen: {exc}") from exc
        answer = _read_line(self.proc, CONTROL_TIMEOUT)
        reply: dict[str, Any] = json.loads(answer) if answer.startswith("{") else {}
        if not reply.get("ok"):
            raise DelayLineError(f"the delay line refused {request}: "
                                 f"{reply.get('error', answer.strip())!r}")
        return reply

    def set_delays(self, delays: Iterable[tuple[str, str, float]],
                   default: float = 0.0) -> None:
        """Replace the table: (source IPv4, destination IPv4, one-way seconds) triples;
        every other pair gets ``default`` seconds."""
        self._ask({"delays": [[s, d, float(t)] for s, d, t in delays],
                   "default": float(default)})

    def stats(self) -> dict[str, Any]:
        """Packets and bytes forwarded, dropped, the most held, how late they left."""
        return self._ask({"stats": True})

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the process has used so far (nan once gone)."""
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """Close its stdin (it exits by itself) and wait; SIGKILL after 2 s."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (nan if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of the process's stdout within timeout ("" on timeout or end of file)."""
    stream = proc.stdout
    if stream is None:
        return ""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def _stderr(proc: subprocess.Popen[str]) -> str:
    if proc.stderr is None or proc.poll() is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        return proc.stderr.read()[-2000:].strip()
    return ""


if __name__ == "__main__":
    sys.exit(main())
