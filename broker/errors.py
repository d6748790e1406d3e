"""Session errors (part of the one mpcid hierarchy)."""

from __future__ import annotations

from mpcid.identity.errors import MpcidError, UsageError


class SessionError(MpcidError):
    """A session cannot be run as described."""


class SessionFileInvalid(SessionError, UsageError):
    exit_code = 2
    hint = "see specs/channel.md for the session file format"


class NotAParty(SessionError):
    hint = "run with --as NAME for an identity that the session lists"


class ProgramMismatch(SessionError):
    """The local program is not the one every party agreed to run."""

    hint = "all parties must run byte-for-byte the same program file"


class PartiesMissing(SessionError):
    """Some parties never completed a channel before the connect timeout."""

    hint = "check that every listed party has started and is reachable"


class PeerFailed(SessionError):
    """A channel to a party failed while the computation was running."""

    hint = "the computation cannot continue without every party; run it again"


class InvitationDeclined(SessionError):
    """An invited party declined the invitation, so the session cannot run."""

    hint = "ask the inviter for a new session without that party, or talk to it"
