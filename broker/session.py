"""The session file: who takes part, in which order, running which program.

``SESSION.json`` (``specs/channel.md`` section 6)::

    {"session": "ID", "program_sha256": "HEX",
     "parties": [{"did": "did:key:...", "host": "H", "port": P}, ...],
     "mpyc": {"threshold": 1, "no_prss": false},
     "bootstrap": ["/ip4/.../tcp/4001/p2p/12D3KooW..."], "relays": [...]}

With ``bootstrap``, a party's ``host`` and ``port`` may be left out: it is then found
through its DHT endpoint record, and reached through a relay circuit when no direct path
works (``specs/discovery.md``).

The order of ``parties`` is the MPyC index. The broker issue produces these files from
invitations and discovery; written by hand they serve scripting and tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpcid.identity.did_key import DIDKey
from mpcid.identity.errors import InvalidDID

from .errors import NotAParty, ProgramMismatch, SessionFileInvalid
from .session_id import is_session_label

MAX_PARTIES = 64
MAX_SESSION_FILE = 1024 * 1024


@dataclass(frozen=True)
class PartyEndpoint:
    index: int
    did: str
    host: str | None
    port: int | None

    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.host and self.port else "(found via the DHT)"


@dataclass(frozen=True)
class MpycOptions:
    threshold: int | None = None
    """Corruption threshold t (MPyC -T); default (m-1)//2."""
    no_prss: bool = False
    """Disable pseudorandom secret sharing (MPyC --no-prss)."""

    def argv(self) -> list[str]:
        out = []
        if self.threshold is not None:
            out += ["-T", str(self.threshold)]
        if self.no_prss:
            out.append("--no-prss")
        return out


@dataclass(frozen=True)
class SessionSpec:
    session_id: str
    program_sha256: bytes
    parties: tuple[PartyEndpoint, ...]
    mpyc: MpycOptions = MpycOptions()
    bootstrap: tuple[str, ...] = ()
    relays: tuple[str, ...] = ()

    @property
    def dids(self) -> list[str]:
        return [p.did for p in self.parties]

    def index_of(self, did: str) -> int:
        for party in self.parties:
            if party.did == did:
                return party.index
        raise NotAParty(f"{did} is not a party of session {self.session_id}")

    def check_program(self, program: Path) -> None:
        try:
            digest = hashlib.sha256(program.read_bytes()).digest()
        except OSError as exc:
            raise SessionFileInvalid(f"cannot read program {program}: {exc.strerror}",
                                     hint="give the path of the MPyC program") from None
        if digest != self.program_sha256:
            raise ProgramMismatch(
                f"{program} has SHA-256 {digest.hex()}, but session {self.session_id} runs "
                f"{self.program_sha256.hex()}")

    @classmethod
    def load(cls, path: Path) -> SessionSpec:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SessionFileInvalid(f"cannot read session file {path}: {exc.strerror}"
                                     ) from None
        if len(raw) > MAX_SESSION_FILE:
            raise SessionFileInvalid(f"session file {path} is larger than 1 MiB")
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SessionFileInvalid(f"session file {path} is not valid JSON ({exc})") from None
        return cls.from_json(value, str(path))

    @classmethod
    def from_json(cls, value: Any, where: str = "session") -> SessionSpec:
        def bad(what: str) -> SessionFileInvalid:
            return SessionFileInvalid(f"{where}: {what}")

        if not isinstance(value, dict):
            raise bad("must be a JSON object")
        sid = value.get("session")
        if not is_session_label(sid):
            raise bad("'session' must be 1-128 characters of [A-Za-z0-9._:-]")
        digest = value.get("program_sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise bad("'program_sha256' must be 64 hex digits")
        lists = {}
        for name in ("bootstrap", "relays"):
            raw = value.get(name, [])
            if not isinstance(raw, list) or not all(
                    isinstance(a, str) and a.startswith("/") and len(a) < 512 for a in raw):
                raise bad(f"'{name}' must be a list of multiaddrs")
            lists[name] = tuple(raw)
        parties_raw = value.get("parties")
        if not isinstance(parties_raw, list) or not 1 <= len(parties_raw) <= MAX_PARTIES:
            raise bad(f"'parties' must be a list of 1 to {MAX_PARTIES} parties")
        parties = []
        for i, entry in enumerate(parties_raw):
            if not isinstance(entry, dict):
                raise bad(f"party {i} must be an object with did, host and port")
            did, host, port = entry.get("did"), entry.get("host"), entry.get("port")
            try:
                DIDKey.parse(did) if isinstance(did, str) else None
            except InvalidDID as exc:
                raise bad(f"party {i}: {exc}") from None
            if not isinstance(did, str):
                raise bad(f"party {i}: 'did' must be a did:key")
            if host is None and port is None and lists["bootstrap"]:
                parties.append(PartyEndpoint(i, did, None, None))  # found via the DHT
                continue
            if not isinstance(host, str) or not host or len(host) > 253:
                raise bad(f"party {i}: 'host' must be a host name or address (or leave host "
                          "and port out and give 'bootstrap' nodes)")
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise bad(f"party {i}: 'port' must be a number from 1 to 65535")
            parties.append(PartyEndpoint(i, did, host, port))
        if len({p.did for p in parties}) != len(parties):
            raise bad("a DID appears twice in 'parties'")
        options = value.get("mpyc", {})
        if not isinstance(options, dict):
            raise bad("'mpyc' must be an object")
        threshold = options.get("threshold")
        if threshold is not None and (not isinstance(threshold, int) or isinstance(
                threshold, bool) or not 0 <= 2 * threshold < len(parties)):
            raise bad(f"'mpyc.threshold' must be an integer t with 0 <= 2t < {len(parties)}")
        no_prss = options.get("no_prss", False)
        if not isinstance(no_prss, bool):
            raise bad("'mpyc.no_prss' must be true or false")
        return cls(sid, bytes.fromhex(digest), tuple(parties), MpycOptions(threshold, no_prss),
                   lists["bootstrap"], lists["relays"])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session": self.session_id, "program_sha256": self.program_sha256.hex(),
            "parties": [{"did": p.did, "host": p.host, "port": p.port} if p.host else
                        {"did": p.did} for p in self.parties]}
        if self.bootstrap:
            out["bootstrap"] = list(self.bootstrap)
        if self.relays:
            out["relays"] = list(self.relays)
        options: dict[str, Any] = {}
        if self.mpyc.threshold is not None:
            options["threshold"] = self.mpyc.threshold
        if self.mpyc.no_prss:
            options["no_prss"] = True
        if options:
            out["mpyc"] = options
        return out
