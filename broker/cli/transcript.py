"""``mpcid transcript verify``: check and show a party's signed session transcript.

A transcript (``specs/session.md`` section 9) is what one party signed about a session it
took part in. Verifying it proves who made the statement, not that the statement is true.
"""

from __future__ import annotations

import datetime as dt
import json

import click

from mpcid.identity.errors import UsageError

from mpcid.broker.errors import InvalidTranscript
from mpcid.broker.transcript import MAX_TRANSCRIPT_BYTES, Transcript

from .options import home_option, keystore


@click.group("transcript")
def transcript_group() -> None:
    """Signed session transcripts written by `mpcid join`."""


@transcript_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True,
              help="Print the verified transcript as JSON instead of a summary.")
@home_option
def verify(file: str, as_json: bool, home: str | None) -> None:
    """Check FILE's signature and form, and summarise it (`-` reads stdin).

    Exit 1 if the signature does not match, 2 if FILE is not a transcript.
    """
    transcript = Transcript.verify(_read(file))
    if as_json:
        click.echo(json.dumps(json.loads(transcript.encode()), indent=2, sort_keys=True,
                              ensure_ascii=False))
    else:
        from mpcid.broker.join import people_names

        click.echo(summary(transcript, people_names(keystore(home, prompt=False))))


def summary(t: Transcript, names: dict[str, str] | None = None) -> str:
    """A few lines for people: who signed what about which session, and each party
    (``names``: DID -> the reader's name for it, shown beside the DID)."""
    names = names or {}

    def who(did: str) -> str:
        return f"{names[did]} {did}" if did in names else did

    lines = [f"session   {t.session_id}  (signature valid)",
             f"signer    party {t.index}  {who(t.signer)}",
             f"program   {t.program_name}  sha256 {t.program_sha256.hex()}",
             f"invite    sha256 {t.invitation_sha256.hex()}"]
    outcome = t.outcome + (f": {t.error}" if t.error else "")
    lines.append(f"outcome   {outcome}")
    if t.duration is None:
        lines.append(f"ended     {_time(t.ended_ms)}  (MPyC never started)")
    else:
        lines.append(f"ran       {_time(t.started_ms or 0)} .. {_time(t.ended_ms)}  "
                     f"({t.duration:.3f} s)")
    lines.append("parties")
    for party in t.parties:
        me = "  (signer)" if party.index == t.index else ""
        admitted = "yes" if party.admitted else "no"
        via = f"  via {party.path}" if party.path else ""
        lines.append(f"  {party.index:>2}  {who(party.did)}  admitted: {admitted}{via}{me}")
        for cred in party.credentials:
            kinds = ", ".join(x for x in cred.types if x != "VerifiableCredential") or \
                ", ".join(cred.types)
            lines.append(f"        {cred.id or '(no id)'}  {kinds}  issuer "
                         f"{who(cred.issuer)}")
    return "\n".join(_printable(line) for line in lines)


def _printable(text: str) -> str:
    """The signer chose every string in a transcript; escape what a terminal would obey
    (C1 controls, bidi overrides) rather than print it."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _time(ms: int) -> str:
    try:
        stamp = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    except (ValueError, OverflowError, OSError):  # valid up to 2^53 ms, past year 9999
        return f"{ms} ms"
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _read(file: str) -> bytes:
    """At most one byte more than a transcript may hold, so a huge file is never read
    whole; :meth:`Transcript.verify` reports the size."""
    try:
        with click.open_file(file, "rb") as fh:
            data = fh.read(MAX_TRANSCRIPT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read transcript {file}: {exc.strerror}",
                         hint="give the path of a transcript file") from None
    if not isinstance(data, bytes):  # pragma: no cover - "rb" always gives bytes
        raise InvalidTranscript(f"{file} did not read as bytes")
    return data


COMMANDS = (transcript_group,)
