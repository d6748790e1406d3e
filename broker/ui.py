"""The local web page of `mpcid ui`, and its JSON API, over one keystore (the command itself
is `mpcid.broker.cli.ui`).

Theory of operation. The page is a view of the keystore (identities, credentials, the
invitations addressed to my DIDs) and a launcher: accepting or declining an invitation
runs exactly the CLI a person would type (``mpcid join`` / ``mpcid invitations decline``)
as a child process with the same ``--home``, so the page can never do something the CLI
would refuse, and it learns a joined session's progress from the ``--progress json``
events that ``join`` writes to stderr (``broker/progress.py``).

The server is for the person at this machine only:

* it binds 127.0.0.1 unless ``--public`` (which warns), and refuses requests whose Host is
  not a loopback name (DNS rebinding);
* every request carries the random token printed in the URL, either as the first path
  segment (``/<token>/...``) or as ``?token=``; anything else gets 403;
* a POST must also carry the token in the ``X-Mpcid-Token`` header, as JSON, and with no
  foreign ``Origin``: another web page in the same browser can neither read the token nor
  send that header without a CORS preflight that this server never answers;
* responses forbid framing, caching, referrers and inline script (the JavaScript is a
  separate static file).

Children are started in their own process group and killed when the ui stops.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hmac
import ipaddress
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpcid.identity.errors import MpcidError, UsageError
from mpcid.identity.keystore import Keystore

from .errors import UiError

if TYPE_CHECKING:
    from aiohttp import web

    from .inbox import InvitationStore, StoredInvitation

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
TOKEN_HEADER = "X-Mpcid-Token"
MAX_BODY = 256 * 1024
MAX_STDOUT = 1 << 20
MAX_LOG_LINES = 400
CLI_TIMEOUT = 60.0
"""Seconds a short CLI command (decline, --help) may take."""


@dataclass(frozen=True)
class UiSettings:
    home: Path
    """The keystore folder the page shows and the children get as ``--home``."""
    host: str
    """Address to bind (loopback unless ``public``)."""
    port: int
    """Port to bind; 0 picks a free one."""
    token: str
    """The secret every request must carry."""
    public: bool = False
    """Accept any Host header (the server is reachable from a network)."""
    python: str = sys.executable
    """The interpreter that runs ``-m mpcid.broker`` for the children."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment of the children (the ui's own, without ``MPCID_HOME``)."""
    bootstrap: tuple[str, ...] = ()
    """DHT nodes offered for new invitations (``--bootstrap`` / ``MPCID_BOOTSTRAP``)."""
    status_files: tuple[str, ...] = ()
    """``URL=FILE`` copies of status lists, given to every join started from the page."""


# --- one joined session ----------------------------------------------------------------


@dataclass
class Run:
    """What the ui knows about one ``mpcid join`` child."""

    session: str
    name: str
    program: str
    args: list[str]
    parties: list[dict[str, Any]]
    started: float = field(default_factory=time.time)
    state: str = "running"
    events: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    log: list[str] = field(default_factory=list)
    error: str = ""
    exit_code: int | None = None
    finished: float | None = None

    @classmethod
    def new(cls, session: str, name: str, program: str, args: list[str],
            parties: list[str], mine: str) -> Run:
        rows = [_party_row(i, did, did == mine) for i, did in enumerate(parties)]
        return cls(session, name, program, args, rows)

    def on_stderr(self, line: str) -> None:
        event = _event(line)
        if event is not None:
            self.on_event(event)
        elif line.strip():
            self.log = (self.log + [line])[-MAX_LOG_LINES:]
            if line.startswith("error: "):
                self.error = line[len("error: "):]

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        kind = event["event"]
        if kind == "session" and isinstance(event.get("parties"), list):
            mine = event.get("index")
            self.parties = [_party_row(i, str(did), i == mine)
                            for i, did in enumerate(event["parties"])]
        elif kind == "finished" and event.get("error"):
            self.error = str(event["error"])
        party = event.get("party")
        if not isinstance(party, int) or not 0 <= party < len(self.parties):
            return
        row = self.parties[party]
        if kind == "found":
            row["found"] = True
        elif kind == "connected":
            row["connected"] = str(event.get("path") or "yes")
        elif kind == "admitted":
            row["admitted"] = True
        elif kind == "admitted_me":
            row["admitted_me"] = True
        elif kind == "refused":
            who = "refused me" if event.get("by") == "them" else "refused"
            row["refused"] = f"{who}: {event.get('reason') or 'no reason given'}"
        elif kind == "declined":
            row["declined"] = str(event.get("reason") or "no reason given")

    def on_exit(self, code: int, stopped: bool = False) -> None:
        self.exit_code, self.finished = code, time.time()
        self.state = "completed" if code == 0 and not stopped else "failed"
        if stopped:
            self.error = "stopped because the ui was closed"
        elif code != 0 and not self.error:
            self.error = self.log[-1] if self.log else f"mpcid join exited with code {code}"

    def to_json(self) -> dict[str, Any]:
        return {"session": self.session, "as": self.name, "program": self.program,
                "args": self.args, "state": self.state, "started": self.started,
                "finished": self.finished, "exit_code": self.exit_code,
                "parties": self.parties, "events": self.events, "stdout": self.stdout,
                "log": self.log, "error": self.error}


def _party_row(index: int, did: str, me: bool) -> dict[str, Any]:
    return {"index": index, "did": did, "me": me, "found": False, "connected": "",
            "admitted": False, "admitted_me": False, "refused": "", "declined": ""}


def _event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("event"), str) else None


# --- the application -------------------------------------------------------------------


class Ui:
    """State and request handlers of one ``mpcid ui`` server."""

    def __init__(self, settings: UiSettings) -> None:
        from .ui_roles import RoleHandlers

        self.settings = settings
        self.keystore = Keystore(settings.home)
        self.runs: dict[str, Run] = {}
        self.roles = RoleHandlers(self)
        self.version = 0
        """Counts changes the page should see (:meth:`changed`)."""
        self.closing = False
        self._change: asyncio.Event | None = None
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped: set[int] = set()

    # -- changes, for the event stream

    def changed(self) -> None:
        """Something the page shows changed: wake the event streams."""
        self.version += 1
        if self._change is not None:
            self._change.set()
            self._change = None

    async def wait_for_change(self, seen: int, timeout: float) -> int:
        """The version once it differs from ``seen`` (or after ``timeout``)."""
        if self.version == seen and not self.closing:
            if self._change is None:
                self._change = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._change.wait(), timeout)
        return self.version

    # -- keystore views

    def store(self) -> InvitationStore:
        from .inbox import InvitationStore

        return InvitationStore(self.keystore)

    def my_dids(self) -> dict[str, str]:
        """DID -> identity name."""
        return {info.did: info.name for info in self.keystore.identities()}

    def invitation_json(self, stored: StoredInvitation, mine: dict[str, str]
                        ) -> dict[str, Any]:
        out = stored.to_json(mine)
        out["names"] = [mine[did] for did in stored.invitation.parties if did in mine]
        run = self.runs.get(stored.session_id)
        out["run"] = run.state if run else None
        return out

    def stored(self, session_id: str) -> StoredInvitation:
        stored = self.store().get(session_id)
        if stored is None or not set(self.my_dids()) & set(stored.invitation.parties):
            raise UiError(f"no invitation {session_id!r} addressed to you", status=404,
                          hint="import it first (paste its token)")
        return stored

    def party_name(self, stored: StoredInvitation, wanted: object) -> str:
        names = [name for did, name in self.my_dids().items()
                 if stored.invitation.is_party(did)]
        if wanted not in (None, ""):
            if wanted not in names:
                raise UiError(f"identity {wanted!r} is not a party of session "
                              f"{stored.session_id}", hint="choose one of: " + ", ".join(names))
            return str(wanted)
        if len(names) != 1:
            raise UiError(f"several of your identities are parties of session "
                          f"{stored.session_id}", hint="say which one with \"as\": "
                          + ", ".join(sorted(names)))
        return names[0]

    # -- GET handlers

    async def identities(self, request: web.Request) -> web.StreamResponse:
        from .join import people_names

        return _json({"home": str(self.settings.home),
                      "bootstrap": list(self.settings.bootstrap),
                      "names": people_names(self.keystore), "identities": [
            {"name": i.name, "did": i.did, "created": i.created, "encrypted": i.encrypted}
            for i in self.keystore.identities()]})

    async def credentials(self, request: web.Request) -> web.StreamResponse:
        """My credentials; with ``?status=1`` each also verified now (its state)."""
        import datetime as dt

        from .verifier import held_state, verify_config

        mine = self.my_dids()
        out = [credential_json(doc_id, doc, mine)
               for doc_id, doc in self.keystore.documents("credentials")]
        if request.query.get("status"):
            copies = {url: Path(path) for url, _, path in
                      (item.partition("=") for item in self.settings.status_files)}
            config = verify_config(self.keystore, now=dt.datetime.now(dt.timezone.utc),
                                   status_files=copies)
            for entry, (_, doc) in zip(out, self.keystore.documents("credentials")):
                entry["state"] = await held_state(doc, config)
        return _json({"credentials": out})

    async def invitations(self, request: web.Request) -> web.StreamResponse:
        mine = self.my_dids()
        return _json({"invitations": [self.invitation_json(s, mine)
                                      for s in self.store().addressed_to(mine)]})

    async def sessions(self, request: web.Request) -> web.StreamResponse:
        runs = sorted(self.runs.values(), key=lambda r: -r.started)
        return _json({"sessions": [r.to_json() for r in runs]})

    async def session(self, request: web.Request) -> web.StreamResponse:
        run = self.runs.get(request.match_info["id"])
        if run is None:
            raise UiError("no session of that id was joined from this page", status=404,
                          hint="see /api/sessions")
        return _json(run.to_json())

    # -- POST handlers

    async def import_invitation(self, request: web.Request) -> web.StreamResponse:
        from .invitation import Invitation, decode_token

        text = _string(await _body(request), "token").strip()
        data = text.encode() if text.startswith("{") else decode_token(text)
        invitation = Invitation.verify(data, time.time())
        mine = self.my_dids()
        if not set(mine) & set(invitation.parties):
            raise UiError(f"invitation {invitation.session_id} is not addressed to any of "
                          "your identities", status=422,
                          hint="import it into the keystore of an invited party")
        stored = self.store().add(invitation, data, "token")
        self.changed()
        return _json(self.invitation_json(stored, mine))

    async def decline(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        stored = self.stored(request.match_info["id"])
        name = self.party_name(stored, body.get("as"))
        reason = _string(body, "reason", required=False)
        code, _, err = await self.cli_command(
            "invitations", "decline", stored.session_id, "--reason", reason, "--as", name,
            "--home", str(self.settings.home))
        after = self.stored(stored.session_id)
        self.changed()
        problem = _error_line(err) or f"mpcid invitations decline exited with {code}"
        if code != 0 and after.state != "declined":
            raise UiError(problem, status=422)
        # Declined here even if the CLI could not tell the others: show both.
        return _json({**self.invitation_json(after, self.my_dids()),
                      "warning": problem if code != 0 else ""})

    async def join(self, request: web.Request) -> web.StreamResponse:
        """Join with the program file given, the one reviewed and accepted on the page
        (``accept_program``), or the copy kept from an earlier session."""
        from .programs import ProgramStore

        body = await _body(request)
        stored = self.stored(request.match_info["id"])
        name = self.party_name(stored, body.get("as"))
        invitation = stored.invitation
        programs = ProgramStore(self.settings.home)
        program: Path | None = None
        if body.get("program"):
            program = Path(_string(body, "program")).expanduser()
            if not program.is_file():
                raise UiError(f"no program file {str(program)!r} on this machine",
                              hint="give the full path of your copy of "
                              f"{invitation.program_name}")
        elif body.get("accept_program") is True:
            program = programs.held_for_review(invitation.program_sha256)
            if program is None:
                raise UiError(f"{invitation.program_name} has not been fetched for review",
                              status=409, hint="review the program first")
        elif programs.find(invitation.program_sha256) is None:
            raise UiError(f"the session's program {invitation.program_name} is not here",
                          status=409, hint="review the program (it is fetched from the "
                                           "inviter) or give your copy's path")
        run = await self.start_join(stored, name, program, body.get("args") or [])
        return _json(run.to_json(), status=202)

    async def start_join(self, stored: StoredInvitation, name: str, program: Path | None,
                         args: object) -> Run:
        """Start ``mpcid join`` as ``name`` (``program``: its --program, None for the
        kept copy) and follow it."""
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise UiError("\"args\" must be a list of strings", hint='e.g. ["--salaries", "5"]')
        running = self.runs.get(stored.session_id)
        if running is not None and running.state == "running":
            raise UiError(f"session {stored.session_id} is running already", status=409,
                          hint="wait until it ends")
        argv = ["join", stored.session_id, "--as", name, "--home", str(self.settings.home),
                "--progress", "json"]
        if program is not None:
            argv += ["--program", str(program)]
        for status_file in self.settings.status_files:
            argv += ["--status-file", status_file]
        proc = await self.spawn(*argv, "--", *args)
        mine = self.keystore.identity(name).did
        run = Run.new(stored.session_id, name,
                      str(program) if program else stored.invitation.program_name,
                      list(args), list(stored.invitation.parties), mine)
        self.runs[stored.session_id] = run
        self.changed()
        task = asyncio.create_task(self.watch(run, proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    # -- children

    async def spawn(self, *argv: str, stdin: bool = False) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            self.settings.python, "-m", "mpcid.broker", *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=self.settings.env, start_new_session=True, limit=MAX_STDOUT)
        self._children[proc.pid] = proc
        return proc

    async def cli_command(self, *argv: str, timeout: float | None = None
                          ) -> tuple[int, str, str]:
        """Run a short CLI command; exit code, stdout and stderr."""
        proc = await self.spawn(*argv)
        timeout = timeout or CLI_TIMEOUT
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            await self.stop_child(proc)
            raise UiError(f"mpcid {argv[0]} did not finish in {timeout:.0f} s",
                          status=504, hint="run it in a terminal to see why") from None
        finally:
            self._children.pop(proc.pid, None)
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def watch(self, run: Run, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = proc.stdout, proc.stderr

        async def read_stderr() -> None:
            async for raw in stderr:
                run.on_stderr(raw.decode(errors="replace").rstrip("\r\n"))
                self.changed()

        async def read_stdout() -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while chunk := await stdout.read(4096):
                if len(run.stdout) < MAX_STDOUT:
                    run.stdout += decoder.decode(chunk)

        try:
            await asyncio.gather(read_stderr(), read_stdout())
            code = await proc.wait()
        finally:
            self._children.pop(proc.pid, None)
        run.on_exit(code, stopped=proc.pid in self._stopped)
        self.changed()

    async def stop_child(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM to the child's process group, SIGKILL if it lingers."""
        self._stopped.add(proc.pid)
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the child left in its group

    async def close(self) -> None:
        self.closing = True
        self.changed()  # ends the event streams
        await asyncio.gather(*(self.stop_child(p) for p in list(self._children.values())))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    # -- HTTP plumbing

    def app(self) -> web.Application:
        from aiohttp import web

        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guard(request, handler)

        app = web.Application(middlewares=[web.middleware(guard)], client_max_size=MAX_BODY)
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/", self.index), ("GET", "/static/{name}", self.static),
            ("GET", "/api/identities", self.identities),
            ("GET", "/api/credentials", self.credentials),
            ("GET", "/api/invitations", self.invitations),
            ("GET", "/api/sessions", self.sessions),
            ("GET", "/api/sessions/{id}", self.session),
            ("POST", "/api/invitations/import", self.import_invitation),
            ("POST", "/api/invitations/{id}/decline", self.decline),
            ("POST", "/api/invitations/{id}/join", self.join),
            *self.roles.routes(),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, f"/{self.settings.token}{path}", handler)
        return app

    async def index(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        if not self._token_in_path(request):
            # ?token= on the bare root: move to the tokened path, where the page's
            # relative links (static files, API) carry the token by themselves.
            return web.Response(status=302, headers={"Location": f"/{self.settings.token}/"})
        return _static("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC or name == "index.html":
            raise UiError(f"no static file {name!r}", status=404)
        return _static(name)

    def _token_in_path(self, request: web.Request) -> bool:
        first = request.raw_path.split("?", 1)[0].split("/", 2)[1]
        return hmac.compare_digest(first.encode(), self.settings.token.encode())

    def _token_ok(self, request: web.Request) -> bool:
        given = request.query.get("token", "")
        return self._token_in_path(request) or hmac.compare_digest(
            given.encode(), self.settings.token.encode())

    def _csrf_ok(self, request: web.Request) -> bool:
        header = request.headers.get(TOKEN_HEADER, "")
        origin = request.headers.get("Origin")
        site = request.headers.get("Sec-Fetch-Site", "same-origin")
        return (hmac.compare_digest(header.encode(), self.settings.token.encode())
                and (origin is None or origin == f"{request.scheme}://{request.host}")
                and site in ("same-origin", "none")
                and request.content_type == "application/json")

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        from aiohttp import web

        response: web.StreamResponse
        if not self.settings.public and not is_loopback_host(request.host):
            response = _error(403, "this page only answers requests for a loopback host",
                              "open the URL that `mpcid ui` printed")
        elif not self._token_ok(request):
            response = _error(403, "missing or wrong token",
                              "open the URL that `mpcid ui` printed, token included")
        elif request.method not in ("GET", "HEAD") and not self._csrf_ok(request):
            response = _error(403, "cross-site request refused",
                              f"send JSON with the {TOKEN_HEADER} header from the page itself")
        else:
            try:
                response = await handler(request)
            except UiError as exc:
                response = _error(exc.status, exc.message, exc.hint)
            except MpcidError as exc:
                response = _error(400, exc.message, exc.hint)
            except web.HTTPException as exc:
                response = _error(exc.status, exc.reason, "")
        if not response.prepared:  # an event stream sent its headers already
            response.headers.update(SECURITY_HEADERS)
        return response


def credential_json(doc_id: str, doc: dict[str, Any], mine: dict[str, str]) -> dict[str, Any]:
    types = doc.get("type", [])
    types = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    issuer = doc.get("issuer")
    raw = doc.get("credentialSubject")
    subject_ids = [s.get("id") for s in (raw if isinstance(raw, list) else [raw])
                   if isinstance(s, dict)]
    subject_id = next((i for i in subject_ids if str(i) in mine),
                      subject_ids[0] if subject_ids else None)
    expires = doc.get("validUntil") or doc.get("expirationDate")
    return {"id": doc_id, "types": [str(t) for t in types if t != "VerifiableCredential"],
            "issuer": str(issuer.get("id") if isinstance(issuer, dict) else issuer),
            "subject": subject_id, "holder": mine.get(str(subject_id)),
            "expires": expires, "expired": _expired(expires)}


def _expired(value: object) -> bool | None:
    import datetime as dt

    from mpcid.identity.issued import parse_time

    when = parse_time(value)
    return None if when is None else when <= dt.datetime.now(dt.timezone.utc)


def _json(value: Any, status: int = 200) -> web.StreamResponse:
    from aiohttp import web

    return web.json_response(value, status=status)


def _error(status: int, message: str, hint: str) -> web.StreamResponse:
    return _json({"error": f"{message} ({hint})" if hint else message, "message": message,
                  "hint": hint}, status=status)


def _static(name: str) -> web.StreamResponse:
    from aiohttp import web

    data = resources.files(__package__).joinpath("ui_static").joinpath(name).read_bytes()
    return web.Response(body=data, content_type=STATIC[name], charset="utf-8")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        value = await request.json()
    except ValueError:
        raise UiError("the request body is not JSON", hint="send a JSON object") from None
    if not isinstance(value, dict):
        raise UiError("the request body is not a JSON object", hint="send a JSON object")
    return value


def _string(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise UiError(f"\"{key}\" must be a non-empty string", hint=f"send {{\"{key}\": ...}}")
    return value


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return lines[-1][len("error: "):] if lines else ""


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a Host header or a --host value, port allowed) is loopback."""
    name = host.strip()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def page_url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/{token}/"


async def serve(settings: UiSettings, ready: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM, then stop every child and return."""
    from aiohttp import web

    ui = Ui(settings)
    runner = web.AppRunner(ui.app(), access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {settings.host}:{settings.port}: "
                             f"{exc.strerror or exc}", hint="choose another --port") from None
        port = runner.addresses[0][1]
        ready(page_url(settings.host, port, settings.token))
        await stop.wait()
    finally:
        await ui.close()
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
