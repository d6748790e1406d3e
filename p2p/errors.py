"""Transport, protocol and record errors of mpcid.p2p (part of the one mpcid hierarchy).

Every class derives from :class:`mpcid.identity.errors.MpcidError`, so it carries a message
and a hint and the CLI prints it on one line. Errors split as in h11 and trio: the network
failed us (transport), we misused a protocol object (local), or the peer broke a rule
(remote); a record from the DHT that is not accepted is a protocol error too. This
package's part of the tree::

    MpcidError                        (mpcid.identity.errors)
    ├── TransportError                the network did not carry us
    │   ├── ConnectFailed
    │   ├── ListenFailed
    │   ├── ConnectionLost            the peer's stream ended without the channel's close
    │   └── PeerTimeout
    └── ProtocolError                 a protocol rule was broken
        ├── LocalProtocolError        we misused a protocol object (a bug in the caller)
        ├── RemoteProtocolError       the peer sent what the protocol does not allow
        │   └── HandshakeFailed       the Noise handshake did not prove the expected peer
        └── RecordError               a record from the DHT is not accepted
            ├── InvalidRecord
            ├── RecordExpired
            ├── RecordNotYetValid
            └── StoreRefused          a DHT node's limits leave no room for the record

``tests/test_error_trees.py`` checks that this drawing is the real hierarchy.
"""

from __future__ import annotations

from mpcid.identity.errors import MpcidError

# --- transport ----------------------------------------------------------------------------


class TransportError(MpcidError):
    """The network did not carry us: refused, unreachable, port in use, connection lost."""


class ConnectFailed(TransportError):
    """A party, a relay, a bootstrap node or the DHT could not be reached, or refused what
    we asked of it."""

    hint = "check that the party is running and its host and port are reachable"


class ListenFailed(TransportError):
    """This party could not listen on its address: the port is taken, or the address is
    not one of this machine's."""

    hint = "choose another port in the session file, or stop the program using it"


class ConnectionLost(TransportError):
    """The peer's connection ended without the channel's authenticated close: the peer
    process died, or the network (or an attacker) cut or truncated the stream."""

    hint = "the other party stopped or the network failed; the computation cannot continue"


class PeerTimeout(TransportError):
    """Nothing, not even a keepalive, arrived from the peer for too long."""

    hint = "the other party is hung or unreachable; the computation cannot continue"


# --- protocol -----------------------------------------------------------------------------


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


# --- records (mpcid.p2p.records, specs/discovery.md section 2) ------------------------------


class RecordError(ProtocolError):
    """A record from the DHT (an endpoint record, or one of a kind registered by its
    user) was not accepted."""

    hint = "the party's published record is unusable; it will be ignored"


class InvalidRecord(RecordError):
    """The record is malformed: not canonical JSON, a wrong field or type, a broken limit,
    or stored under the key of another DID."""


class RecordExpired(RecordError):
    """The record's ``expires`` time has passed: the party stopped refreshing it."""

    hint = "the party is probably offline; ask it to start again, or wait for a new record"


class RecordNotYetValid(RecordError):
    """The record was issued more than :data:`mpcid.p2p.records.MAX_CLOCK_SKEW` seconds in
    the future."""

    hint = "check this machine's clock (and the publisher's)"


class StoreRefused(RecordError):
    """A DHT node refused to hold a valid record: the sending peer used up its quota, the
    record's kind is at its cap (count or size), or the node holds as many bytes as its
    limits allow (``specs/discovery.md`` 7). The node keeps the records it holds."""

    hint = "publish again later; other nodes among the closest peers hold the record too"
