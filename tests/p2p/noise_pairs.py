"""Driving sans-IO channels in memory (imported by the noise tests: ``from noise_pairs
import ...``, this folder).

:func:`establish_pair` runs a handshake between two fresh channels. The ``*_out`` helpers
call one method of a channel and return what it queued, i.e. the bytes an adapter would
write after that call (:meth:`NoiseChannel.data_to_send`), as ``bytes``.
"""

from __future__ import annotations

from mpcid.p2p.noise import Event, NoiseChannel


def establish_pair(a: NoiseChannel, b: NoiseChannel, now: float = 0.0
                   ) -> tuple[list[Event], list[Event]]:
    """Start initiator ``a`` and responder ``b`` and exchange their handshake; return
    (a's events, b's events)."""
    a.start()
    b.start()
    events_b = b.receive_data(a.data_to_send(), now)
    events_a = a.receive_data(b.data_to_send(), now)  # b's preamble and handshake reply
    return events_a, events_b


def start_out(channel: NoiseChannel) -> bytes:
    channel.start()
    return bytes(channel.data_to_send())


def send_out(channel: NoiseChannel, data: bytes | bytearray | memoryview, now: float
             ) -> bytes:
    channel.send(data, now)
    return bytes(channel.data_to_send())


def close_out(channel: NoiseChannel, now: float) -> bytes:
    channel.close(now)
    return bytes(channel.data_to_send())


def timer_out(channel: NoiseChannel, now: float) -> bytes:
    channel.handle_timer(now)
    return bytes(channel.data_to_send())
