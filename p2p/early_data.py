"""Early data in Noise message 1 (``specs/channel.md`` 4.2): what it is bound to, how
large it may be, and the responder's guard against a replayed message 1. Sans-IO; used by
:mod:`mpcid.p2p.noise`."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

EARLY_LABEL = b"mpcid-channel/2 early data"
#: Largest early data: Noise's 65535-byte message limit minus message 1's e (32),
#: encrypted s (48) and the payload's tag (16).
MAX_EARLY_DATA = 65535 - 32 - 48 - 16


def early_binding(prologue: bytes, responder_static: bytes, initiator_ephemeral: bytes
                  ) -> bytes:
    """What early data is made for (``specs/channel.md`` 4.2): SHA-256 over the label, the
    session's prologue hash, the responder's static and the initiator's ephemeral public
    key. Unique to one connection attempt (a fresh ephemeral key each), one responder and
    one session; both sides compute it before message 1's payload is read."""
    return hashlib.sha256(EARLY_LABEL + hashlib.sha256(prologue).digest()
                          + responder_static + initiator_ephemeral).digest()


class ReplayGuard:
    """The initiator ephemeral keys of the message 1s a responder accepted (the newest
    ``limit``): a message 1 seen before is a replay. Only messages that decrypted, i.e.
    were made with a party's static key, are remembered, so nobody else can fill it."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def first_time(self, ephemeral: bytes) -> bool:
        """Remember ``ephemeral``; False if it was seen before."""
        if ephemeral in self._seen:
            return False
        self._seen[ephemeral] = None
        if len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return True
