"""Transport and protocol errors of the channel layer (part of the one mpcid hierarchy)."""

from __future__ import annotations

from mpcid.identity.errors import MpcidError


class TransportError(MpcidError):
    """The network did not carry us: refused, unreachable, port in use, connection lost."""


class ConnectFailed(TransportError):
    hint = "check that the party is running and its host and port are reachable"


class ListenFailed(TransportError):
    hint = "choose another port in the session file, or stop the program using it"


class ConnectionLost(TransportError):
    """The peer's connection ended without the channel's authenticated close: the peer
    process died, or the network (or an attacker) cut or truncated the stream."""

    hint = "the other party stopped or the network failed; the computation cannot continue"


class PeerTimeout(TransportError):
    """Nothing, not even a keepalive, arrived from the peer for too long."""

    hint = "the other party is hung or unreachable; the computation cannot continue"


class ProtocolError(MpcidError):
    """A protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """We used a protocol object in a way its state does not allow (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow: wrong version, oversized or
    corrupted frame, data after close."""

    hint = "the peer runs an incompatible version, or the stream was tampered with"


class HandshakeFailed(RemoteProtocolError):
    """The Noise handshake did not prove the identity we expected. Either the peer is not
    the party it should be (wrong key), or it belongs to another session (different session
    id, party list, program or protocol version), or a man in the middle tried to step in."""

    hint = "check that every party joined the same session with the right identity"
