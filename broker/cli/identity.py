"""``mpcid`` commands for identities, credentials, presentations and status lists."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from mpcid.broker.verifier import held_state, verify_config, web_resolver
from mpcid.identity import credentials as vc
from mpcid.identity.dataintegrity import isoformat, parse_datetime
from mpcid.identity.did_key import KEY_FORMATS, DIDKey, parse_did
from mpcid.identity.errors import (CredentialError, KeystoreError, MalformedCredential,
                                   MpcidError, StatusCheckFailed, UsageError)
from mpcid.identity.issued import KIND as ISSUED
from mpcid.identity.issued import document_id, issued, keep_issued, status_list_id
from mpcid.identity.keystore import Keystore
from mpcid.identity.policy import Policy, Presented
from mpcid.identity.statuslist import Bitstring, parse_status_reference, read_index

from .options import (ca_file_option, files, home_option, identity_name, json_option,
                      keystore, pairs, trust_options, wraps_async)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def read_text(path: str, what: str, hint: str = "") -> str:
    """The text of file ``path`` (``-``: standard input), or a one-line error."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}", hint=hint or None) \
            from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None


def read_json_file(path: str, what: str) -> dict[str, Any]:
    text = read_text(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedCredential(f"{what} {path} is not valid JSON (line {exc.lineno}: "
                                  f"{exc.msg})") from None
    if not isinstance(value, dict):
        raise MalformedCredential(f"{what} {path} is not a JSON object")
    return value


def credential_source(arg: str) -> tuple[str, str]:
    """(text, where it came from) of a credential given on the command line: pasted (a
    token or JSON), ``-`` for standard input, else a file's path."""
    pasted = arg.strip()
    if not pasted:
        raise UsageError("no credential given", hint="paste the mpcidvc1: line its issuer "
                         "sent, give its file, or - for standard input")
    if pasted.startswith("{") or re.match(r"mpcid[a-z]*[0-9]+:", pasted):
        return arg, "as given"
    text = read_text(arg, "credential", hint="give the file, - for standard input, or "
                     "paste the mpcidvc1: line itself")
    return text, "from standard input" if arg == "-" else arg


def write_output(value: dict[str, Any], out: str | None, as_token: bool = False) -> None:
    """``value`` as JSON, or as its one-line token (a credential), to ``out`` or stdout."""
    if as_token and not out:
        click.echo(vc.credential_token(value))
        return
    if out:
        from mpcid.identity.keystore import atomic_write

        text = (vc.credential_token(value) if as_token else json.dumps(value, indent=2))
        try:
            atomic_write(Path(out), (text + "\n").encode(), mode=0o644)
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror or exc}",
                             hint="check that the folder exists and is writable") from None
        click.echo(f"wrote {out}", err=True)
    else:
        emit_json(value)


def cli_datetime(value: str, option: str) -> dt.datetime:
    try:
        return parse_datetime(value, option)
    except MalformedCredential:
        raise UsageError(f"{option} {value!r} is not an ISO 8601 date-time",
                         hint="e.g. 2027-01-31T12:00:00Z") from None


# --- options shared by the verifying commands ---------------------------------------------


def verify_options(func: Any) -> Any:
    for option in reversed([
        trust_options,
        click.option("--no-status", is_flag=True,
                     help="Do not check revocation status (not recommended)."),
        ca_file_option(help="Extra CA certificates (PEM) for did:web and status list HTTPS."),
        click.option("--at", "at", metavar="ISO8601",
                     help="Check validity at this time instead of now."),
        json_option(),
    ]):
        func = option(func)
    return func


def make_verify_config(ks: Keystore, contexts: tuple[str, ...], status_files: tuple[str, ...],
                       status_max_age: dt.timedelta, no_status: bool, ca_file: str | None,
                       at: str | None) -> vc.VerifyConfig:
    """The options of the verifying commands, as the domain's verify configuration."""
    return verify_config(ks, contexts=files(contexts, "--context"),
                         status_files=files(status_files, "--status-file"),
                         status_max_age=status_max_age, check_status=not no_status,
                         ca_file=ca_file, now=cli_datetime(at, "--at") if at else now_utc())


def credential_summary(cred: vc.VerifiedCredential) -> dict[str, Any]:
    return {"id": cred.id, "type": list(cred.types), "issuer": cred.issuer,
            "subject": cred.subject, "claims": cred.claims,
            "validFrom": isoformat(cred.valid_from) if cred.valid_from else None,
            "validUntil": isoformat(cred.valid_until) if cred.valid_until else None,
            "proof": cred.proof.suite}


def report_failure(exc: MpcidError, as_json: bool) -> None:
    if as_json:
        emit_json({"valid": False, "error": type(exc).__name__, "reason": str(exc)})
    raise exc


# --- DIDs ---------------------------------------------------------------------------------


@click.command("create-did")
@click.option("--name", default="default", show_default=True, help="Local label of the DID.")
@click.option("--force", is_flag=True, help="Replace an existing identity of that name.")
@home_option
def create_did(name: str, force: bool, home: str | None) -> None:
    """Create an Ed25519 did:key and store its key; print the DID (last line)."""
    ks = keystore(home)
    key = ks.create_identity(name, force=force)
    info = ks.identity(name)
    click.echo(f"created identity {name!r} in {ks.home}"
               f"{' (encrypted)' if info.encrypted else ''}", err=True)
    click.echo(key.did.did)


@click.group("did")
def did_group() -> None:
    """List, show and resolve DIDs."""


@did_group.command("list")
@home_option
def did_list(home: str | None) -> None:
    """List the identities in the keystore."""
    from rich.console import Console
    from rich.table import Table

    identities = keystore(home).identities()
    if not identities:
        click.echo("no identities yet: create one with `mpcid create-did`", err=True)
        return
    table = Table("name", "DID", "created", "encrypted")
    for info in identities:
        table.add_row(info.name, info.did, info.created, "yes" if info.encrypted else "no")
    Console(width=200, emoji=False).print(table)


_format_option = click.option("--format", "key_format", type=click.Choice(KEY_FORMATS),
                              default="Multikey", show_default=True,
                              help="Verification method form of the DID document.")


@did_group.command("show")
@click.argument("name", default="default")
@_format_option
@home_option
def did_show(name: str, key_format: str, home: str | None) -> None:
    """Print the DID document of a local identity."""
    info = keystore(home).identity(name)
    emit_json(DIDKey.parse(info.did).document(key_format))


@did_group.command("resolve")
@click.argument("did")
@_format_option
@ca_file_option(help="Extra CA certificates (PEM) for did:web.")
@home_option
@wraps_async
async def did_resolve(did: str, key_format: str, ca_file: str | None,
                      home: str | None) -> None:
    """Resolve a did:key (offline) or did:web (HTTPS) and print its DID document."""
    if did.startswith("did:key:"):
        emit_json(DIDKey.parse(did).document(key_format))
        return
    parse_did(did)
    emit_json(await web_resolver(ca_file).resolve(did))


# --- credentials --------------------------------------------------------------------------


@click.group("credential")
def credential_group() -> None:
    """Issue, verify, store and revoke verifiable credentials."""


@credential_group.command("issue")
@click.option("--issuer", required=True, metavar="NAME", help="Local identity that signs.")
@click.option("--subject", required=True, metavar="DID|CONTACT",
              help="DID the credential is about (or a contact's name).")
@click.option("--type", "ctype", required=True, metavar="TYPE",
              help="Credential type, e.g. MembershipCredential.")
@click.option("--claim", "claims", multiple=True, metavar="KEY=VALUE",
              help="A claim about the subject (repeatable).")
@click.option("--valid-from", metavar="ISO8601", help="Start of validity [default: now].")
@click.option("--expires", metavar="ISO8601", help="End of validity (validUntil).")
@click.option("--status-list", metavar="URL[#INDEX]",
              help="Make it revocable through this status list (INDEX is allocated when "
                   "the list is hosted here).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@click.option("--token", "as_token", is_flag=True,
              help="Write the credential as one line (mpcidvc1:...) that its holder can "
                   "paste into `mpcid credential import`, instead of JSON.")
@home_option
def credential_issue(issuer: str, subject: str, ctype: str, claims: tuple[str, ...],
                     valid_from: str | None, expires: str | None, status_list: str | None,
                     out: str | None, as_token: bool, home: str | None) -> None:
    """Issue a VC 2.0 credential signed with eddsa-rdfc-2022."""
    ks = keystore(home)
    from mpcid.identity.contacts import Contacts

    subject = Contacts(ks.home).did_of(subject)  # a contact's name is its DID
    parse_did(subject)
    if subject.startswith("did:key:"):
        DIDKey.parse(subject)  # a mistyped member DID would make a credential nobody holds
    start = cli_datetime(valid_from, "--valid-from") if valid_from else now_utc()
    end = cli_datetime(expires, "--expires") if expires else None
    claim_values = pairs(claims, "--claim")
    if "id" in claim_values:
        raise UsageError("a claim may not be named 'id': the subject is given with --subject")
    if end is not None and end <= start:
        raise UsageError(f"--expires {expires} is not after the start of validity")
    key = ks.load_identity(issuer)
    status = allocate_status(ks, status_list, key.did.did) if status_list else None
    document = vc.build_credential(issuer=key.did.did, subject=subject, credential_type=ctype,
                                   claims=claim_values, valid_from=start,
                                   valid_until=end, status=status)
    signed = vc.sign_credential(document, key, now=now_utc())
    keep_issued(ks, signed)  # for `mpcid credential issued` and revoking it by id
    write_output(signed, out, as_token)


def allocate_status(ks: Keystore, reference: str, issuer_did: str) -> tuple[str, int]:
    url, _, index_text = reference.rpartition("#") if "#" in reference else (reference, "", "")
    record = ks.get_document("statuslists", status_list_id(url))
    if record is None:
        if not index_text:
            raise UsageError(f"status list {url} is not hosted here, so give its index as "
                             "URL#INDEX", hint="or create it with `mpcid status-list create`")
        try:
            return parse_status_reference(reference)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if record.get("issuer_did") != issuer_did:
        raise UsageError(f"status list {url} belongs to {record.get('issuer_did')}, not to "
                         f"the issuer {issuer_did}")
    size = len(Bitstring.decode(record["credential"]["credentialSubject"]["encodedList"]))
    index = int(index_text) if index_text.isdigit() else int(record.get("next_index", 0))
    if index_text and not index_text.isdigit():
        raise UsageError(f"{reference!r} is not URL#INDEX")
    if index >= size:
        raise UsageError(f"status list {url} is full ({size} entries)",
                         hint="create another list with `mpcid status-list create`")
    record["next_index"] = max(int(record.get("next_index", 0)), index + 1)
    ks.put_document("statuslists", status_list_id(url), record)
    return url, index


@credential_group.command("verify")
@click.argument("file")
@verify_options
@home_option
@wraps_async
async def credential_verify(file: str, contexts: tuple[str, ...], status_files: tuple[str, ...],
                            status_max_age: dt.timedelta, no_status: bool,
                            ca_file: str | None, at: str | None, as_json: bool,
                            home: str | None) -> None:
    """Verify a credential FILE ('-' for stdin, or its pasted mpcidvc1: line): exit 0 if
    valid, else 1 and the reason."""
    ks = keystore(home, prompt=False)
    config = make_verify_config(ks, contexts, status_files, status_max_age, no_status, ca_file,
                                at)
    try:
        document = vc.read_credential_text(*credential_source(file))
        result = await vc.verify_credential(document, config)
    except CredentialError as exc:
        report_failure(exc, as_json)
        return
    summary = {"valid": True, **credential_summary(result),
               "status": "not checked" if no_status else "checked"}
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"valid: {', '.join(result.types)} issued by {result.issuer} to "
                   f"{result.subject} ({result.proof.suite})")


@credential_group.command("import")
@click.argument("credential", metavar="CREDENTIAL")
@verify_options
@home_option
@wraps_async
async def credential_import(credential: str, contexts: tuple[str, ...],
                            status_files: tuple[str, ...], status_max_age: dt.timedelta,
                            no_status: bool, ca_file: str | None, at: str | None,
                            as_json: bool, home: str | None) -> None:
    """Verify a credential and keep it in the keystore; print its local ID.

    CREDENTIAL is the line its issuer sent (mpcidvc1:..., from `credential issue --token`)
    pasted as it is, its JSON text, a file holding either, or - for standard input.
    """
    ks = keystore(home, prompt=False)
    document = vc.read_credential_text(*credential_source(credential))
    config = make_verify_config(ks, contexts, status_files, status_max_age, no_status, ca_file,
                                at)
    result = await vc.verify_credential(document, config)
    subject_ids = [s.id for s in result.subjects if s.id is not None]
    mine = [did for did in subject_ids if ks.find_identity_by_did(did) is not None]
    doc_id = document_id(document)
    ks.put_document("credentials", doc_id, document)
    if not mine:
        click.echo(f"note: the subject {', '.join(subject_ids) or '(none named)'} is none of "
                   "your identities", err=True)
    if as_json:
        emit_json({**credential_summary(result), "localId": doc_id})
    else:
        types = ", ".join(t for t in result.types if t != "VerifiableCredential")
        claims = ", ".join(f"{k}={v}" for k, v in result.claims.items() if k != "id")
        until = isoformat(result.valid_until) if result.valid_until else "no end"
        revocable = "revocable" if document.get("credentialStatus") else "not revocable"
        click.echo(f"imported {types or 'VerifiableCredential'} from "
                   f"{issuer_name(ks, document, result.issuer)}"
                   + (f" ({claims})" if claims else "")
                   + f", valid until {until}, {revocable}; its id (last line):", err=True)
        click.echo(doc_id)


def issuer_name(ks: Keystore, document: dict[str, Any], did: str) -> str:
    """``acme (did:...)`` by the contact name, else the name the issuer gives itself in
    the credential (``issuer.name``), else the DID."""
    from mpcid.identity.contacts import Contacts

    try:
        name = Contacts(ks.home).names().get(did)
    except MpcidError:
        name = None
    issuer = document.get("issuer")
    if name is None and isinstance(issuer, dict) and isinstance(issuer.get("name"), str):
        import unicodedata

        # The issuer's own words: one line, nothing that could steer the terminal.
        name = "".join(c for c in " ".join(issuer["name"].split())
                       if unicodedata.category(c) not in ("Cc", "Cf"))[:60] or None
    return f"{name} ({did})" if name else did


@credential_group.command("list")
@click.option("--status", "check", is_flag=True,
              help="Also verify each credential now: valid, expired, revoked, or unknown "
                   "(its status list could not be read: give a copy with --status-file).")
@trust_options
@ca_file_option()
@home_option
@wraps_async
async def credential_list(check: bool, contexts: tuple[str, ...],
                          status_files: tuple[str, ...], status_max_age: dt.timedelta,
                          ca_file: str | None, home: str | None) -> None:
    """List the credentials held in the keystore."""
    from rich.console import Console
    from rich.table import Table

    ks = keystore(home, prompt=False)
    config = make_verify_config(ks, contexts, status_files, status_max_age, False, ca_file,
                                None) if check else None
    table = Table("id", "type", "issuer", "subject", "valid until",
                  *(("status",) if check else ()))
    count = 0
    for doc_id, document in ks.documents("credentials"):
        shape = Presented.read(document)
        types = [t for t in shape.types if t != "VerifiableCredential"]
        state = [await held_state(document, config)] if config is not None else []
        table.add_row(doc_id, ", ".join(types) or "VerifiableCredential", shape.issuer,
                      ", ".join(str(s.id) for s in shape.subjects),
                      str(document.get("validUntil") or document.get("expirationDate") or "-"),
                      *state)
        count += 1
    if count:
        Console(width=250, emoji=False).print(table)
    else:
        click.echo("no credentials yet: import one with `mpcid credential import FILE`",
                   err=True)


@credential_group.command("issued")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for programs.")
@home_option
def credential_issued(as_json: bool, home: str | None) -> None:
    """List the credentials this keystore issued, with their state (valid, expired,
    revoked, suspended; unknown when their status list is not hosted here)."""
    kept = issued(keystore(home, prompt=False), now_utc())
    if as_json:
        emit_json([c.to_json() for c in kept])
        return
    if not kept:
        click.echo("no credentials issued here yet: `mpcid credential issue` keeps a copy "
                   "of each", err=True)
        return
    for c in kept:
        claims = ", ".join(f"{k}={v}" for k, v in c.claims.items())
        click.echo(f"{c.doc_id}  {c.state:<9} {', '.join(c.types) or '-'}  {c.subject}"
                   + (f"  {claims}" if claims else "")
                   + f"  until {c.document.get('validUntil') or 'no end'}")


@credential_group.command("show")
@click.argument("doc_id", metavar="ID")
@home_option
def credential_show(doc_id: str, home: str | None) -> None:
    """Print a stored credential."""
    emit_json(load_stored_credential(keystore(home, prompt=False), doc_id))


def load_stored_credential(ks: Keystore, doc_id: str, kinds: tuple[str, ...] = (
        "credentials",)) -> dict[str, Any]:
    for kind in kinds:
        try:
            document = ks.get_document(kind, doc_id)
        except UsageError:
            document = None
        if document is not None:
            return document
    raise KeystoreError(f"no stored credential with id {doc_id!r}",
                        hint="see `mpcid credential list`" + (
                            " and `mpcid credential issued`" if len(kinds) > 1 else ""))


def load_credential(ks: Keystore, value: str, issued_too: bool = False) -> dict[str, Any]:
    """A credential given as a FILE path or a stored ID (held, or also issued here)."""
    if Path(value).exists() or value == "-":
        return read_json_file(value, "credential")
    return load_stored_credential(ks, value, ("credentials", ISSUED) if issued_too
                                  else ("credentials",))


@credential_group.command("revoke")
@click.argument("credential", required=False, metavar="[FILE_OR_ID]")
@click.option("--status-list", "reference", metavar="URL#INDEX",
              help="Revoke by status list entry instead of by credential.")
@click.option("--undo", is_flag=True, help="Clear the bit again (for suspension lists).")
@home_option
def credential_revoke(credential: str | None, reference: str | None, undo: bool,
                      home: str | None) -> None:
    """Flip a credential's bit in a status list this keystore hosts and republish it."""
    ks = keystore(home)
    if (credential is None) == (reference is None):
        raise UsageError("give either a credential (FILE or ID) or --status-list URL#INDEX")
    if credential is not None:
        entry = load_credential(ks, credential, issued_too=True).get("credentialStatus")
        if isinstance(entry, list):
            entry = entry[0] if entry else None
        if not isinstance(entry, dict) or "statusListCredential" not in entry:
            raise UsageError(f"{credential} has no credentialStatus: it cannot be revoked")
        try:
            index = read_index(entry)
        except StatusCheckFailed as exc:
            raise UsageError(f"{credential} has a malformed credentialStatus: {exc}") from None
        url = str(entry["statusListCredential"])
    else:
        try:
            url, index = parse_status_reference(str(reference))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    record = ks.get_document("statuslists", status_list_id(url))
    if record is None:
        raise UsageError(f"status list {url} is not hosted in this keystore",
                         hint="revoke from the issuer's keystore")
    subject = record["credential"]["credentialSubject"]
    bits = Bitstring.decode(subject["encodedList"])
    if index >= len(bits):
        raise UsageError(f"index {index} is outside status list {url}")
    bits.set(index, not undo)
    publish_status_list(ks, record, bits)
    state = "cleared" if undo else ("revoked" if subject["statusPurpose"] == "revocation"
                                    else "suspended")
    click.echo(f"{state}: {url}#{index}")


def publish_status_list(ks: Keystore, record: dict[str, Any], bits: Bitstring) -> None:
    """Sign ``bits`` as the list of ``record`` now, valid for the record's ``valid_for``
    seconds (lists hosted before that setting existed get no validUntil), and publish."""
    key = ks.load_identity(str(record["issuer"]))
    now = now_utc()
    valid_for = record.get("valid_for")
    until = now + dt.timedelta(seconds=int(valid_for)) if valid_for else None
    document = vc.status_list_credential(issuer=key.did.did, url=str(record["url"]), bits=bits,
                                         purpose=str(record["purpose"]), valid_from=now,
                                         valid_until=until)
    record["credential"] = vc.sign_credential(document, key, now=now)
    if record.get("publish"):  # first, so a failure leaves the keystore unchanged
        write_output(record["credential"], str(record["publish"]))
    ks.put_document("statuslists", status_list_id(str(record["url"])), record)


# --- presentations ------------------------------------------------------------------------


@click.command("present")
@click.option("--as", "name", default=None, metavar="NAME",
              help="Local identity that presents (the holder).")
@click.option("--credential", "creds", multiple=True, required=True, metavar="FILE_OR_ID",
              help="Credential to include (repeatable).")
@click.option("--challenge", required=True, help="The verifier's challenge.")
@click.option("--domain", required=True, help="The verifier's domain (e.g. session id).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@home_option
def present(name: str | None, creds: tuple[str, ...], challenge: str, domain: str,
            out: str | None, home: str | None) -> None:
    """Sign a verifiable presentation of credentials for one challenge and domain."""
    ks = keystore(home)
    documents = [load_credential(ks, c) for c in creds]
    name = identity_name(ks, name)
    holder = ks.load_identity(name)
    for document, given in zip(documents, creds):
        shape = Presented.read(document)
        if shape.about(holder.did.did) is None:
            raise UsageError(f"credential {given} was issued to {shape.subject}, not to "
                             f"{name} ({holder.did.did})")
    write_output(vc.create_presentation(holder, documents, challenge=challenge, domain=domain,
                                        now=now_utc()), out)


@click.group("presentation")
def presentation_group() -> None:
    """Verify verifiable presentations."""


@presentation_group.command("verify")
@click.argument("file")
@click.option("--challenge", required=True, help="The challenge you issued.")
@click.option("--domain", required=True, help="Your domain.")
@click.option("--require", "requirements", multiple=True,
              metavar="TYPE@ISSUER_DID[;KEY=VALUE]",
              help="A credential the holder must present (repeatable).")
@verify_options
@home_option
@wraps_async
async def presentation_verify(file: str, challenge: str, domain: str,
                              requirements: tuple[str, ...], contexts: tuple[str, ...],
                              status_files: tuple[str, ...], status_max_age: dt.timedelta,
                              no_status: bool, ca_file: str | None, at: str | None,
                              as_json: bool, home: str | None) -> None:
    """Verify a presentation FILE: the holder's proof, challenge, domain, every credential
    and, with --require, the credential policy."""
    policy = Policy.parse(requirements)
    ks = keystore(home, prompt=False)
    config = make_verify_config(ks, contexts, status_files, status_max_age, no_status, ca_file,
                                at)
    try:
        document = read_json_file(file, "presentation")
        result = await vc.verify_presentation(document, config, challenge=challenge,
                                              domain=domain)
        policy.evaluate(result)
    except CredentialError as exc:
        report_failure(exc, as_json)
        return
    if as_json:
        emit_json({"valid": True, "holder": result.holder, "challenge": result.challenge,
                   "domain": result.domain,
                   "credentials": [credential_summary(c) for c in result.credentials]})
    else:
        click.echo(f"valid: presentation by {result.holder} with "
                   f"{len(result.credentials)} credential(s)")


COMMANDS = (create_did, did_group, credential_group, present, presentation_group)
