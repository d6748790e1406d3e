"""Every error of the broker: sessions, invitations, admission, declines, transcripts, the page.

They belong to the one mpcid hierarchy (:class:`mpcid.identity.errors.MpcidError`): each
says what happened and carries a ``hint`` saying what to do; the CLI prints both on one
line (:mod:`mpcid.broker.cli`). The broker's part of the tree::

    MpcidError
    ├── SessionError                  a session cannot be run as described
    │   ├── SessionFileInvalid        (also UsageError) the session file is unusable
    │   ├── NotAParty                 this identity is not one of the session's parties
    │   ├── ProgramMismatch           the local (or a fetched) program is not the session's
    │   ├── ProgramUnavailable        the session's program could not be had here
    │   │   ├── ProgramRefused        the inviter did not send it
    │   │   ├── ProgramNotAccepted    this party did not consent to run it
    │   │   └── ProgramStoreError     it cannot be kept in the keystore
    │   ├── PartiesMissing            parties without a channel (or admission) in time
    │   ├── PeerFailed                a channel failed while the computation ran
    │   ├── InvitationDeclined        an invited party declined
    │   ├── RequirementsUnmet         this party cannot meet the requirements itself
    │   ├── AdmissionRefused          a party was refused, or refused this one
    │   ├── SessionAborted            another party stopped the session before MPyC
    │   ├── InvitationError           an invitation cannot be used
    │   │   ├── InvalidInvitation     (also UsageError) malformed invitation or token
    │   │   ├── InvitationExpired
    │   │   ├── InvitationNotYetValid
    │   │   └── NoBootstrapNodes
    │   ├── InvitationNotFound        neither in the keystore nor in the DHT
    │   ├── InvitationConflict        the DHT holds another version of a held invitation
    │   ├── DeclineNotPublished       declined here, but the DHT could not be told
    │   ├── DeclineError              a decline from the DHT is not accepted
    │   │   ├── InvalidDecline
    │   │   ├── DeclineExpired
    │   │   └── DeclineNotYetValid
    │   ├── InvalidInboxPointer       an inbox pointer from the DHT is not accepted
    │   └── InvalidTranscript         (also UsageError) not a well-formed transcript
    └── UiError                       a request to the page's API cannot be carried out
        └── NotLoopback               (also UsageError) --host is public without --public

``tests/test_error_trees.py`` checks that this drawing is the real hierarchy.
"""

from __future__ import annotations

from mpcid.identity.errors import MpcidError, UsageError

# --- sessions ------------------------------------------------------------------------------


class SessionError(MpcidError):
    """A session cannot be run as described."""


class SessionFileInvalid(SessionError, UsageError):
    """A session file (or a program it names) cannot be read or is not valid."""

    exit_code = 2
    hint = "see specs/channel.md for the session file format"


class NotAParty(SessionError):
    """This identity is not one of the session's parties."""

    hint = "run with --as NAME for an identity that the session lists"


class ProgramMismatch(SessionError):
    """The local program is not the one every party agreed to run."""

    hint = "all parties must run byte-for-byte the same program file"


class ProgramUnavailable(SessionError):
    """The session's program is not here and could not be fetched from the inviter."""

    hint = ("check that the inviter has joined the session, or get the program from it "
            "and give it with --program FILE")


class ProgramRefused(ProgramUnavailable):
    """The inviter answered the request for the program with a refusal."""

    hint = "ask the inviter for the program and give it with --program FILE"


class ProgramNotAccepted(ProgramUnavailable):
    """This party did not consent to run the program it fetched (or could not be asked)."""

    hint = ("review it and join again; `mpcid join --accept-program` runs a fetched program "
            "without asking")


class ProgramStoreError(ProgramUnavailable):
    """A fetched program cannot be kept in the keystore's folder."""

    hint = "check free disk space and the permissions of the keystore folder (--home)"


class PartiesMissing(SessionError):
    """Some parties never completed a channel before the connect timeout."""

    hint = "check that every listed party has started and is reachable"


class PeerFailed(SessionError):
    """A channel to a party failed while the computation was running."""

    hint = "the computation cannot continue without every party; run it again"


class InvitationDeclined(SessionError):
    """An invited party declined the invitation, so the session cannot run."""

    hint = "ask the inviter for a new session without that party, or talk to it"


class RequirementsUnmet(SessionError):
    """This party's own credentials cannot meet the invitation's requirements, so it did
    not start (and declined, so that the others stop waiting)."""

    hint = ("get a credential that meets the requirement from an issuer it names, import it "
            "(`mpcid credential import`), and ask the inviter for a new invitation")


class AdmissionRefused(SessionError):
    """A party was refused admission: its credentials do not meet the session's policy,
    or it refused this party."""

    hint = ("the refused party needs a valid credential that meets every requirement of "
            "the invitation (see `mpcid credential list` and `mpcid credential import`)")


class SessionAborted(SessionError):
    """Another party stopped the session before MPyC started."""

    hint = "the message names who stopped it and why; fix that and start a new session"


# --- invitations ---------------------------------------------------------------------------


class InvitationError(SessionError):
    """An invitation cannot be used."""

    hint = "ask the inviter to send the invitation again"


class InvalidInvitation(InvitationError, UsageError):
    """The invitation or token is malformed: not an mpcid invitation, a wrong field or
    type, a broken limit, or damaged in copying."""

    exit_code = 2
    hint = "copy the whole invitation again, unchanged, or ask the inviter for a new one"


class InvitationExpired(InvitationError):
    """The invitation's ``expires`` time has passed."""

    hint = "ask the inviter for a new invitation"


class InvitationNotYetValid(InvitationError):
    """The invitation was issued more than ``MAX_CLOCK_SKEW`` seconds in the future."""

    hint = "check this machine's clock (and the inviter's)"


class NoBootstrapNodes(InvitationError):
    """The invitation names no bootstrap node, so parties cannot be found via the DHT."""

    hint = "ask the inviter for an invitation that lists bootstrap nodes (--bootstrap)"


class InvitationNotFound(SessionError):
    """No invitation of that session, neither in this keystore nor in the DHT."""


class InvitationConflict(SessionError):
    """The DHT returned an invitation of a session id already held here, by another
    inviter: someone published their own invitation under a copied session id."""


class DeclineNotPublished(SessionError):
    """The decline is kept here, but could not be published: the others do not know."""


# --- declines from the DHT -----------------------------------------------------------------


class DeclineError(SessionError):
    """A decline from the DHT was not accepted."""

    hint = "the decline is ignored; the party may still join"


class InvalidDecline(DeclineError):
    """The decline is malformed: not canonical JSON, a wrong field or type, a broken
    limit, or stored under the key of another session or party."""


class DeclineExpired(DeclineError):
    """The decline's ``expires`` time has passed."""


class DeclineNotYetValid(DeclineError):
    """The decline was issued more than ``MAX_CLOCK_SKEW`` seconds in the future."""

    hint = "check this machine's clock (and the declining party's)"


class InvalidInboxPointer(SessionError):
    """An inbox pointer is malformed, stored under another key, or not valid now."""

    hint = "the pointer is ignored; the invitation can still be handed over as a token"


# --- transcripts ---------------------------------------------------------------------------


class InvalidTranscript(SessionError, UsageError):
    """The transcript is malformed: not an mpcid transcript, a wrong member or type, a
    broken limit, or not in canonical form."""

    exit_code = 2
    hint = "a transcript is the exact file `mpcid join` wrote; copy it again, unchanged"


# --- the page ------------------------------------------------------------------------------


class UiError(MpcidError):
    """A request to the page's API cannot be carried out; ``status`` is its HTTP code."""

    status = 400

    def __init__(self, message: str, *, hint: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        if status is not None:
            self.status = status


class NotLoopback(UiError, UsageError):
    """``--host`` names a non-loopback address and ``--public`` was not given."""

    exit_code = 2
    hint = ("keep the default --host 127.0.0.1, or add --public to expose the page (and "
            "your keystore's invitations) to that network")
