"""A party's session from its invitation: the one path from ``mpcid join`` to MPyC.

1. :meth:`SessionPlan.prepare` checks, before anything is published, that this identity
   is a party, that the program is byte for byte the session's and that the transcript
   can be written; then it builds how peers' credentials are verified and chooses the
   credentials to present. The plan is one frozen object: the session (parties, program,
   MPyC options, DHT nodes), the requirements and the chosen credentials.
2. :func:`run_join` runs the plan: the invitation's state in the keystore, progress
   events, :class:`~mpcid.broker.mpyc_runtime.PartyRun` (channels, admission, MPyC), and
   the signed transcript from the run's report. ``mpcid join``, ``mpcid invite --join``
   and (through ``mpcid join``) the page all take this path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mpcid.identity.did_key import Ed25519Key
from mpcid.identity.errors import MpcidError, UsageError
from mpcid.identity.jsonld import load_pyld
from mpcid.identity.keystore import Keystore, atomic_write

from .admission_channel import AdmissionSettings
from .agent import agent_socket
from .credential_choice import choose, describe_presented
from .errors import AdmissionRefused, SessionAborted
from .inbox import InvitationStore
from .invitation import Invitation
from .mpyc_runtime import PartyRun, RunReport, RunSettings
from .paths import PathSettings
from .progress import Progress
from .session import SessionSpec
from .transcript import CredentialRef, Outcome, PartyEntry, Transcript, write_transcript
from .verifier import DEFAULT_STATUS_MAX_AGE, verify_config


@dataclass(frozen=True)
class JoinSettings:
    """How this party joins; the CLI builds it from ``mpcid join``'s options."""

    connect_timeout: float = 120.0
    """Seconds to wait for every party's channel and admission."""
    transcript: Path | None = None
    """Where to write this party's signed transcript, if anywhere."""
    contexts: Mapping[str, Path] = field(default_factory=dict)
    """Extra JSON-LD context files trusted for verifying peers' credentials, by URL."""
    status_files: Mapping[str, Path] = field(default_factory=dict)
    """Local copies of status lists, by the URL they are published at."""
    ca_file: str | None = None
    """Extra CA certificates (PEM) for did:web and status lists over HTTPS."""
    status_max_age: dt.timedelta = DEFAULT_STATUS_MAX_AGE
    """How old a status list without ``validUntil`` may be."""


@dataclass(frozen=True)
class SessionPlan:
    """Everything one party's session needs, built once from the invitation."""

    invitation: Invitation
    key: Ed25519Key
    """This party's identity."""
    index: int
    """This party's MPyC index."""
    session: SessionSpec
    """Parties, program hash, MPyC options and DHT nodes, from the invitation."""
    admission: AdmissionSettings
    """The invitation's requirements, the chosen credentials, how peers are verified."""
    program: Path
    warnings: tuple[str, ...]
    """Requirements this party will probably fail, and why (it presents the closest
    credentials anyway, so that the others can say exactly why they refuse)."""
    unmet: tuple[str, ...] = ()
    """The warnings that are certain (no such credential, expired, revoked, another
    issuer's): ``mpcid join`` then declines instead of starting a session that every
    other party would refuse."""
    unmet_issuer: str | None = None
    """Who issued the credential behind the first of :attr:`unmet` (whom to ask)."""

    @classmethod
    def prepare(cls, keystore: Keystore, key: Ed25519Key, invitation: Invitation,
                program: Path, settings: JoinSettings) -> SessionPlan:
        """Check what can be checked locally, then choose the credentials. Blocking:
        choosing may fetch status lists, on its own event loop, before MPyC's exists."""
        index = invitation.index_of(key.did.did)  # NotAParty otherwise
        session = invitation.session_spec()
        session.check_program(program)
        if settings.transcript is not None:
            folder = settings.transcript.resolve().parent
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise UsageError(f"cannot write the transcript {settings.transcript}: "
                                 f"{folder} is not a writable folder",
                                 hint="give a path in an existing folder")
        config = verify_config(keystore, contexts=settings.contexts,
                               status_files=settings.status_files, ca_file=settings.ca_file,
                               now=dt.datetime.now(dt.timezone.utc), peers=True,
                               status_max_age=settings.status_max_age)
        if invitation.requirements.requirements:
            # Credentials will be checked: pyld is imported now, while this is the only
            # thread, which lets it leave out the HTTP clients it would not use.
            load_pyld()
        choice = asyncio.run(choose(keystore, key.did.did, invitation.requirements, config))
        return cls(invitation, key, index, session,
                   AdmissionSettings(invitation.requirements, choice.credentials, config,
                                     invitation), program, choice.warnings, choice.unmet,
                   choice.unmet_issuer)


def run_join(keystore: Keystore, plan: SessionPlan, program_args: list[str],
             settings: JoinSettings, progress: Progress,
             notify: Callable[[str], None] = lambda line: None) -> None:
    """Run ``plan`` as this party; raise the session's failure as an :class:`MpcidError`.
    ``notify`` gets the lines for people (where the transcript went, or why not)."""
    invitation = plan.invitation
    store = InvitationStore(keystore)
    names = people_names(keystore)
    progress.emit("session", session=invitation.session_id, index=plan.index,
                  parties=list(invitation.parties), program=invitation.program_name,
                  names=[names.get(did, "") for did in invitation.parties])
    store.set_state(invitation.session_id, "accepted")
    party = PartyRun(plan.session, plan.key, RunSettings(
        connect_timeout=settings.connect_timeout,
        paths=PathSettings(bootstrap=plan.session.bootstrap, relays=plan.session.relays,
                           agent=agent_socket(keystore.home, plan.key.did.did)),
        admission=plan.admission, progress=progress, names=names))
    outcome: Outcome = "failed"
    error = ""
    try:
        party.run(plan.program, program_args)
        outcome = "completed"
    except MpcidError as exc:
        error = exc.one_line()
        if isinstance(exc, (AdmissionRefused, SessionAborted)):
            outcome = "refused"
        raise
    finally:
        store.set_state(invitation.session_id,
                        "completed" if outcome == "completed" else "failed", error)
        progress.emit("finished", outcome=outcome, **({"error": error} if error else {}))
        progress.close()
        try:  # never hide how the session ended
            data = session_transcript(plan, party.report(), outcome, error)
            kept_transcript(keystore.home, invitation.session_id, plan.index, data)
        except (MpcidError, OSError) as exc:
            notify(f"warning: could not keep the session's transcript: {exc}")
            data = b""
        if settings.transcript is not None and data:
            try:
                write_transcript(settings.transcript, data)
                notify(f"wrote the signed transcript {settings.transcript}")
            except (MpcidError, OSError) as exc:
                notify(f"warning: could not write the transcript {settings.transcript}: "
                       f"{exc}")


def people_names(keystore: Keystore) -> dict[str, str]:
    """DID -> name for messages: this keystore's contacts, and its own identities."""
    from mpcid.identity.contacts import Contacts

    try:
        names = Contacts(keystore.home).names()
    except MpcidError:
        names = {}  # damaged contacts must not stop a session; DIDs are shown instead
    for info in keystore.identities():
        names.setdefault(info.did, info.name)
    return names


def transcript_path(home: Path, session_id: str, index: int) -> Path:
    """Where the keystore keeps this party's transcript of a session (the history)."""
    return home / "transcripts" / f"{session_id}-{index}.json"


def kept_transcript(home: Path, session_id: str, index: int, data: bytes) -> Path:
    """Keep ``data`` as the transcript of ``session_id`` (a later run of the same session
    replaces it: the newest account is the one that counts)."""
    path = transcript_path(home, session_id, index)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    Transcript.verify(data)
    atomic_write(path, data, mode=0o600)
    return path


def session_transcript(plan: SessionPlan, report: RunReport, outcome: Outcome,
                       error: str) -> bytes:
    """This party's signed account of the session (``specs/session.md`` 9)."""
    invitation = plan.invitation
    entries = []
    for i, did in enumerate(invitation.parties):
        if i == plan.index:
            refs = [CredentialRef(*c) for c in describe_presented(plan.admission.credentials)]
            entries.append(PartyEntry(i, did, report.started is not None, tuple(refs)))
            continue
        presented = report.presented.get(i)
        refs = [CredentialRef(*c) for c in presented.credentials] if presented else []
        entries.append(PartyEntry(i, did, presented is not None, tuple(refs),
                                  report.paths.get(i)))
    ended = time.time()
    started = min(report.started, ended) if report.started is not None else None
    _, data = Transcript.create(
        plan.key, session_id=invitation.session_id, invitation=invitation.encode(),
        program_name=invitation.program_name, program_sha256=invitation.program_sha256,
        index=plan.index, parties=entries, started=started, ended=ended, outcome=outcome,
        error=error)
    return data
