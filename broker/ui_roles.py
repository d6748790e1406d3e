"""The page's handlers for every role beyond joining: the organisation, the inviter, the
invitee's program review, the history, and the live event stream.

As in :mod:`mpcid.broker.ui`, everything that changes the keystore runs the command a
person would type (``mpcid credential issue``, ``mpcid credential revoke``,
``mpcid status-list create|refresh``, ``mpcid invite``, ``mpcid programs fetch``,
``mpcid credential import``, ``mpcid create-did``) as a child with the same ``--home``;
the views read the keystore. Inputs are checked for shape here (so that a bad request is
a clear 400, not a confusing CLI error) and again by the command.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpcid.identity.errors import MpcidError

from .errors import UiError

if TYPE_CHECKING:
    from aiohttp import web

    from .ui import Handler, Ui

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CLAIM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_TRANSCRIPT = re.compile(r"([0-9a-f]{32})-(\d{1,2})\.json")
FETCH_TIMEOUT = 130.0
"""Seconds the page waits for ``mpcid programs fetch`` (its own wait is 120 s)."""
KEEPALIVE = 15.0
"""Seconds between comments on an idle event stream (proxies and browsers keep it open)."""


def _text(body: dict[str, Any], key: str, *, required: bool = True, limit: int = 2000,
          pattern: re.Pattern[str] | None = None, what: str = "") -> str:
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > limit or "\n" in value or \
            (required and not value.strip()):
        raise UiError(f"\"{key}\" must be {what or 'one line of text'}",
                      hint=f"send {{\"{key}\": \"...\"}}")
    value = value.strip()
    if value and pattern is not None and not pattern.fullmatch(value):
        raise UiError(f"\"{key}\" is not {what}", hint=f"fix {key!r} and send it again")
    return value


def _texts(body: dict[str, Any], key: str, limit: int = 64) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or len(value) > limit or not all(
            isinstance(v, str) and v.strip() and len(v) < 2000 and "\n" not in v
            for v in value):
        raise UiError(f"\"{key}\" must be a list of at most {limit} one-line strings",
                      hint=f"send {{\"{key}\": [\"...\"]}}")
    return [v.strip() for v in value]


class RoleHandlers:
    """Request handlers of the organisation, inviter, review, history and events."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/api/identities", self.create_identity),
            ("POST", "/api/credentials/import", self.import_credential),
            ("POST", "/api/credentials/issue", self.issue),
            ("GET", "/api/issued", self.issued),
            ("POST", "/api/issued/{id}/revoke", self.revoke),
            ("GET", "/api/status-lists", self.status_lists),
            ("POST", "/api/status-lists", self.create_status_list),
            ("POST", "/api/status-lists/{id}/publish", self.publish_status_list),
            ("GET", "/api/status-lists/{id}/list.json", self.download_status_list),
            ("POST", "/api/invitations/check", self.check_inbox),
            ("GET", "/api/programs", self.programs),
            ("POST", "/api/invite", self.invite),
            ("GET", "/api/invitations/{id}/program", self.program),
            ("POST", "/api/invitations/{id}/program/fetch", self.fetch_program),
            ("GET", "/api/history", self.history),
            ("GET", "/api/history/{session}/{index}/transcript", self.transcript),
            ("GET", "/api/events", self.events),
        ]

    async def run_cli(self, *argv: str, timeout: float | None = None) -> str:
        """Run a command with this keystore; its stdout, or its error line as a 422."""
        from .ui import _error_line

        code, out, err = await self.ui.cli_command(*argv, "--home", str(self.ui.settings.home),
                                                   timeout=timeout)
        if code != 0:
            raise UiError(_error_line(err) or f"mpcid {argv[0]} exited with code {code}",
                          status=422)
        self.ui.changed()
        return out

    # -- organisation ---------------------------------------------------------------------

    async def create_identity(self, request: web.Request) -> web.StreamResponse:
        from .ui import _body, _json

        name = _text(await _body(request), "name", pattern=_NAME,
                     what="a name of letters, digits, '.', '_' or '-'")
        out = await self.run_cli("create-did", "--name", name)
        return _json({"name": name, "did": out.split()[-1]}, status=201)

    async def import_credential(self, request: web.Request) -> web.StreamResponse:
        from .ui import _body, _json

        body = await _body(request)
        text = body.get("credential")
        if not isinstance(text, str) or not text.strip() or len(text) > 400_000:
            raise UiError("\"credential\" must be the pasted credential (its mpcidvc1: line "
                          "or its JSON)", hint="paste what the issuer sent")
        argv = ["credential", "import", "-", "--home", str(self.ui.settings.home)]
        for status_file in self.ui.settings.status_files:
            argv += ["--status-file", status_file]
        proc = await self.ui.spawn(*argv, stdin=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode()), 60)
        finally:
            self.ui._children.pop(proc.pid, None)
        if proc.returncode != 0:
            from .ui import _error_line

            raise UiError(_error_line(err.decode(errors="replace")) or "import failed",
                          status=422)
        self.ui.changed()
        return _json({"id": out.decode().split()[-1] if out.strip() else ""}, status=201)

    async def issue(self, request: web.Request) -> web.StreamResponse:
        from .ui import _body, _json

        body = await _body(request)
        issuer = _text(body, "issuer", pattern=_NAME, what="the name of one of your "
                       "identities")
        subject = _text(body, "subject", what="the member's DID (did:key:...)")
        ctype = _text(body, "type", pattern=_TYPE, what="a credential type such as "
                      "MembershipCredential")
        claims = body.get("claims") or {}
        if not isinstance(claims, dict) or len(claims) > 32 or not all(
                isinstance(k, str) and _CLAIM_KEY.fullmatch(k) and isinstance(v, str)
                and len(v) < 1000 and "\n" not in v for k, v in claims.items()):
            raise UiError("\"claims\" must map names (letters, digits, _) to one-line "
                          "values", hint='e.g. {"organization": "Acme"}')
        argv = ["credential", "issue", "--issuer", issuer, "--subject", subject, "--type",
                ctype, "--token"]
        for key, value in claims.items():
            argv += ["--claim", f"{key}={value}"]
        expires = _text(body, "expires", required=False, what="an ISO 8601 date-time")
        if expires:
            argv += ["--expires", expires]
        status_list = _text(body, "status_list", required=False, what="a status list URL")
        if status_list:
            argv += ["--status-list", status_list]
        token = (await self.run_cli(*argv)).strip().splitlines()[-1]
        from mpcid.identity.credentials import read_credential_text

        credential = read_credential_text(token, "issued")
        return _json({"token": token, "credential": credential}, status=201)

    async def issued(self, request: web.Request) -> web.StreamResponse:
        from mpcid.identity.issued import issued

        from .ui import _json

        kept = issued(self.ui.keystore, dt.datetime.now(dt.timezone.utc))
        return _json({"issued": [c.to_json() for c in kept]})

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        from mpcid.identity.issued import KIND

        from .ui import _json

        doc_id = request.match_info["id"]
        if not re.fullmatch(r"[0-9a-f]{16}", doc_id) or \
                self.ui.keystore.get_document(KIND, doc_id) is None:
            raise UiError(f"no credential {doc_id[:40]!r} was issued here", status=404,
                          hint="see the list of issued credentials")
        out = await self.run_cli("credential", "revoke", doc_id)
        return _json({"id": doc_id, "result": out.strip()})

    async def status_lists(self, request: web.Request) -> web.StreamResponse:
        from .ui import _json

        lists = []
        for doc_id, record in self.ui.keystore.documents("statuslists"):
            credential = record.get("credential") if isinstance(record, dict) else None
            if not isinstance(credential, dict):
                continue
            lists.append({"id": doc_id, "url": record.get("url"),
                          "issuer": record.get("issuer"), "purpose": record.get("purpose"),
                          "publish": record.get("publish"),
                          "used": record.get("next_index", 0),
                          "valid_until": credential.get("validUntil"),
                          "stale": _past(credential.get("validUntil"))})
        return _json({"status_lists": lists})

    async def create_status_list(self, request: web.Request) -> web.StreamResponse:
        from .ui import _body, _json

        body = await _body(request)
        issuer = _text(body, "issuer", pattern=_NAME, what="the name of one of your "
                       "identities")
        url = _text(body, "url", what="the https URL where the list will be served")
        argv = ["status-list", "create", "--issuer", issuer, "--url", url]
        publish = _text(body, "publish", required=False, what="a file path")
        if publish:
            argv += ["--publish", str(Path(publish).expanduser())]
        await self.run_cli(*argv)
        return _json({"url": url}, status=201)

    async def publish_status_list(self, request: web.Request) -> web.StreamResponse:
        from .ui import _json

        record = self._status_list(request.match_info["id"])
        out = await self.run_cli("status-list", "refresh", "--url", str(record["url"]))
        return _json({"url": record["url"], "result": out.strip()})

    async def download_status_list(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        record = self._status_list(request.match_info["id"])
        return web.Response(body=json.dumps(record["credential"], indent=2).encode(),
                            content_type="application/json", headers={
                                "Content-Disposition": "attachment; filename=status-list.json"})

    def _status_list(self, doc_id: str) -> dict[str, Any]:
        record = None
        if re.fullmatch(r"[0-9a-f]{16}", doc_id):
            record = self.ui.keystore.get_document("statuslists", doc_id)
        if not isinstance(record, dict) or not isinstance(record.get("credential"), dict):
            raise UiError("no such status list is hosted here", status=404,
                          hint="see the list of status lists")
        return record

    # -- inviter --------------------------------------------------------------------------

    async def programs(self, request: web.Request) -> web.StreamResponse:
        from .programs import ProgramStore
        from .ui import _json

        return _json({"programs": [k.to_json() for k in
                                   ProgramStore(self.ui.settings.home).all()]})

    async def invite(self, request: web.Request) -> web.StreamResponse:
        from .invitation import Invitation
        from .programs import ProgramStore
        from .ui import _body, _json

        body = await _body(request)
        name = _text(body, "as", pattern=_NAME, what="the name of one of your identities")
        dids = _texts(body, "dids", limit=63)
        if not dids:
            raise UiError("an invitation needs at least one invited DID",
                          hint="add the DIDs of the other parties")
        program = _text(body, "program", what="a program file's path or a kept program's "
                        "SHA-256")
        if re.fullmatch(r"[0-9a-f]{64}", program):
            kept = ProgramStore(self.ui.settings.home).find(bytes.fromhex(program))
            if kept is None:
                raise UiError("that program is not kept here", hint="pick a kept program")
            program = str(kept.path)
        elif not Path(program).expanduser().is_file():
            raise UiError(f"no program file {program[:200]!r} on this machine",
                          hint="give the full path of the program, or pick a kept one")
        argv = ["invite", "--as", name, "--program", str(Path(program).expanduser())]
        for did in dids:
            argv += ["--did", did]
        for requirement in _texts(body, "requirements", limit=16):
            argv += ["--require", requirement]
        for node in _texts(body, "bootstrap", limit=16) or list(self.ui.settings.bootstrap):
            argv += ["--bootstrap", node]
        session_name = _text(body, "name", required=False, limit=128)
        if session_name:
            argv += ["--name", session_name]
        expires = _text(body, "expires", required=False, limit=16)
        if expires:
            argv += ["--expires", expires]
        token = (await self.run_cli(*argv)).strip().splitlines()[-1]
        invitation = Invitation.from_token(token, time.time())
        out: dict[str, Any] = {"token": token, "session": invitation.session_id}
        if body.get("join"):
            stored = self.ui.stored(invitation.session_id)
            args = body.get("args") or []
            run = await self.ui.start_join(stored, name, Path(program), args)
            out["run"] = run.to_json()
        return _json(out, status=201)

    async def check_inbox(self, request: web.Request) -> web.StreamResponse:
        """New invitations from contacts, through the DHT (``mpcid invitations``)."""
        from .ui import _json

        nodes = self.ui.settings.bootstrap
        if not nodes:
            raise UiError("no DHT node to look in the inbox through",
                          hint="start the page with --bootstrap MULTIADDR (or MPCID_BOOTSTRAP)")
        argv = ["invitations"]
        for node in nodes:
            argv += ["--bootstrap", node]
        code, _, err = await self.ui.cli_command(*argv, "--home", str(self.ui.settings.home),
                                                 timeout=FETCH_TIMEOUT)
        lines = [line for line in err.splitlines() if "inbox" in line or "contacts" in line]
        self.ui.changed()
        if code != 0:
            from .ui import _error_line

            raise UiError(_error_line(err) or "looking in the inbox failed", status=422)
        return _json({"result": lines[-1] if lines else "looked in the inbox"})

    # -- the invitee's review of the program ----------------------------------------------

    def program_json(self, session_id: str) -> dict[str, Any]:
        from .programs import ProgramStore, listing

        invitation = self.ui.stored(session_id).invitation
        store = ProgramStore(self.ui.settings.home)
        kept = store.find(invitation.program_sha256)
        review = store.held_for_review(invitation.program_sha256)
        out: dict[str, Any] = {"name": invitation.program_name,
                               "sha256": invitation.program_sha256.hex(),
                               "kept": str(kept.path) if kept else None, "review": None}
        if review is not None:
            data = review.read_bytes()
            out["review"] = {"path": str(review), "size": len(data),
                             "lines": data.count(b"\n") + (0 if data.endswith(b"\n") else 1),
                             "source": listing(data)}
        return out

    async def program(self, request: web.Request) -> web.StreamResponse:
        from .ui import _json

        return _json(self.program_json(request.match_info["id"]))

    async def fetch_program(self, request: web.Request) -> web.StreamResponse:
        from .ui import _body, _json

        body = await _body(request)
        stored = self.ui.stored(request.match_info["id"])
        name = self.ui.party_name(stored, body.get("as"))
        await self.run_cli("programs", "fetch", stored.session_id, "--as", name,
                           timeout=FETCH_TIMEOUT)
        return _json(self.program_json(stored.session_id))

    # -- history --------------------------------------------------------------------------

    async def history(self, request: web.Request) -> web.StreamResponse:
        from .transcript import Transcript
        from .ui import _json

        entries: dict[str, dict[str, Any]] = {}
        mine = self.ui.my_dids()
        for stored in self.ui.store().addressed_to(mine):
            if stored.state in ("received", "created"):
                continue
            inv = stored.invitation
            entries[stored.session_id] = {
                "session": stored.session_id, "name": inv.name, "program": inv.program_name,
                "program_sha256": inv.program_sha256.hex(), "parties": list(inv.parties),
                "state": stored.state, "reason": stored.reason, "when": stored.updated,
                "transcripts": []}
        folder = self.ui.settings.home / "transcripts"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            match = _TRANSCRIPT.fullmatch(path.name)
            if match is None or match.group(1) not in entries:
                continue
            item: dict[str, Any] = {"index": int(match.group(2))}
            try:
                t = Transcript.verify(path.read_bytes())
                item.update(verified=True, outcome=t.outcome, error=t.error,
                            started=t.started, ended=t.ended, signer=t.signer,
                            parties=[p.to_json() for p in t.parties])
            except (MpcidError, OSError) as exc:
                item.update(verified=False, problem=str(exc)[:300])
            entries[match.group(1)]["transcripts"].append(item)
        history = sorted(entries.values(), key=lambda e: -float(e["when"] or 0))
        return _json({"history": history})

    async def transcript(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        from .join import transcript_path

        session, index = request.match_info["session"], request.match_info["index"]
        if not re.fullmatch(r"[0-9a-f]{32}", session) or not re.fullmatch(r"\d{1,2}", index):
            raise UiError("no such transcript", status=404)
        self.ui.stored(session)  # one of my sessions
        path = transcript_path(self.ui.settings.home, session, int(index))
        try:
            data = path.read_bytes()
        except OSError:
            raise UiError("no transcript of that session is kept here", status=404) from None
        return web.Response(body=data, content_type="application/json", headers={
            "Content-Disposition": f"attachment; filename=transcript-{session}-{index}.json"})

    # -- live events ----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``change`` with the sessions' state whenever something
        changed (a progress event, a session ending, a command run from the page)."""
        from aiohttp import web

        from .ui import SECURITY_HEADERS

        response = web.StreamResponse(headers={
            **SECURITY_HEADERS, "Content-Type": "text/event-stream",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        seen = -1
        try:
            while not self.ui.closing:
                version = await self.ui.wait_for_change(seen, KEEPALIVE)
                if self.ui.closing:
                    break
                if version == seen:
                    await response.write(b": keepalive\n\n")
                    continue
                seen = version
                runs = sorted(self.ui.runs.values(), key=lambda r: -r.started)
                data = json.dumps({"version": version,
                                   "sessions": [r.to_json() for r in runs]})
                await response.write(f"event: change\ndata: {data}\n\n".encode())
        except ConnectionError:  # the page was closed or reloaded
            pass
        return response


def _past(value: object) -> bool:
    from mpcid.identity.issued import parse_time

    when = parse_time(value)
    return when is not None and when <= dt.datetime.now(dt.timezone.utc)
