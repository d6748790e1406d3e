"""The session-id grammar, defined once for every format and command.

Two kinds of name identify a session:

* A **session id** is what an invitation fixes (``specs/session.md`` 2): the first 32
  lowercase hex digits (128 bits) of ``SHA-256("mpcid-session/1\\n" || inviter || "\\n" ||
  nonce)``. Invitations, declines, transcripts, DHT keys and the commands that take a
  SESSION_ID all use this grammar.
* A **session label** is the ``session`` member of a hand-written session file
  (``specs/channel.md`` 6): 1-128 characters of ``[A-Za-z0-9._:-]``. Every session id is
  also a valid label, so a session file made from an invitation carries its id unchanged.

Both end up in the Noise prologue, which binds every channel to its session.
"""

from __future__ import annotations

import hashlib
import re
from typing import TypeGuard

#: Hex digits in a session id.
LENGTH = 32

_SESSION_ID = re.compile(r"[0-9a-f]{%d}" % LENGTH)
_SESSION_LABEL = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def session_id_for(inviter: str, nonce: bytes) -> str:
    """``hex(SHA-256("mpcid-session/1\\n" || inviter || "\\n" || nonce))[:32]``: a session
    id names its inviter, so an invitation published under it by anyone else is refused
    (second preimages of 128 bits are out of reach)."""
    digest = hashlib.sha256(b"mpcid-session/1\n" + inviter.encode() + b"\n" + nonce)
    return digest.hexdigest()[:LENGTH]


def is_session_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a session id: 32 lowercase hex digits."""
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def is_session_label(value: object) -> TypeGuard[str]:
    """Whether ``value`` may name a session in a session file (ids included)."""
    return isinstance(value, str) and _SESSION_LABEL.fullmatch(value) is not None
