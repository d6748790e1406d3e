"""Programs kept by hash, and the sans-IO messages that carry a program to a party.

An invitation names its program by SHA-256 (``specs/session.md`` 2). A party that does not
have it asks the inviter for it over a channel of the session (``specs/session.md`` 10):
the request is the early data of Noise message 1, the answer one header message and the
program's bytes. The hash in the signed invitation authenticates what arrives; nothing
else about the sender is trusted (a size over :data:`MAX_PROGRAM`, more bytes than
announced, or other bytes than the hash names end the fetch).

:class:`ProgramStore` keeps every program this keystore ran, under
``programs/<sha256 hex>/<file name>`` in the keystore's folder, so that a later session
of the same program needs neither the file nor a fetch. A kept file is trusted only while
its bytes still have its folder's hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpcid.identity.errors import MpcidError
from mpcid.identity.keystore import atomic_write
from mpcid.p2p.errors import RemoteProtocolError

from .errors import ProgramMismatch, ProgramRefused, ProgramStoreError

MAX_PROGRAM = 1024 * 1024
"""Largest program a party fetches or serves (MPyC programs are a few kilobytes; data
files are not part of the program and do not travel)."""

MAX_HEADER = 1024
"""Largest header message of a fetch (a JSON object of two or three short members)."""

REQUEST_TYPE = "program-request"
_LENGTH = struct.Struct(">I")
_HEX = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


# --- the wire ---------------------------------------------------------------------------


def request() -> bytes:
    """The early data of a channel opened to fetch the session's program."""
    return _frame({"t": REQUEST_TYPE})


def is_request(early_data: bytes) -> bool:
    """Whether a channel's early data asks for the program (cheap: no JSON parsing of
    anything longer than a request can be)."""
    return early_data == request()


def answer(program: bytes) -> bytes:
    """What the inviter sends on a fetch channel: the header, then the program."""
    return _frame({"t": "program", "size": len(program)}) + program


def refusal(reason: str) -> bytes:
    """What the inviter sends when it cannot serve the program."""
    return _frame({"t": "abort", "reason": reason[:500]})


class ProgramReceiver:
    """The fetching side's parser: fed the channel's bytes, it ends with the program whose
    SHA-256 is ``sha256``, or raises. Bounded: the header is at most :data:`MAX_HEADER`
    bytes and the program at most :data:`MAX_PROGRAM`."""

    def __init__(self, sha256: bytes, sender: str) -> None:
        self.sha256 = sha256
        self.sender = sender
        self._buffer = bytearray()
        self._size: int | None = None
        self._hash = hashlib.sha256()

    @property
    def complete(self) -> bool:
        return self._size is not None and len(self._buffer) == self._size

    def feed(self, data: bytes) -> None:
        """Take bytes from the channel; raises :class:`RemoteProtocolError` for bytes no
        honest inviter sends, and :class:`ProgramRefused` for its refusal."""
        if self._size is None:
            self._buffer += data
            if len(self._buffer) < 4:
                return
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > MAX_HEADER:
                raise RemoteProtocolError(f"{self.sender} sent a program header of {length}"
                                          f" bytes (at most {MAX_HEADER})")
            if len(self._buffer) < 4 + length:
                return
            header = _header(bytes(self._buffer[4:4 + length]), self.sender)
            rest = bytes(self._buffer[4 + length:])
            self._buffer.clear()
            self._size = header
            data = rest
        if len(self._buffer) + len(data) > self._size:
            raise RemoteProtocolError(f"{self.sender} sent more than the {self._size} bytes "
                                      "it announced")
        self._buffer += data
        self._hash.update(data)

    def result(self) -> bytes:
        """The program, once the channel has ended cleanly; raises if it is incomplete or
        not the session's."""
        if self._size is None or len(self._buffer) != self._size:
            got = "no program" if self._size is None else \
                f"{len(self._buffer)} of {self._size} bytes"
            raise RemoteProtocolError(f"{self.sender} ended the fetch early ({got})")
        if self._hash.digest() != self.sha256:
            raise ProgramMismatch(
                f"the program {self.sender} sent has SHA-256 {self._hash.hexdigest()}, but "
                f"the invitation names {self.sha256.hex()}; it was not kept or run",
                hint="the inviter's copy is not the invited program: tell the inviter, and "
                     "do not run it")
        return bytes(self._buffer)


def _header(body: bytes, sender: str) -> int:
    """The announced size, from a header; a refusal raises :class:`ProgramRefused`."""
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        header = None
    if isinstance(header, dict) and header.get("t") == "abort" and isinstance(
            header.get("reason"), str):
        reason = " ".join(header["reason"].split())[:500] or "no reason given"
        raise ProgramRefused(f"{sender} did not send the program: {reason}")
    if not isinstance(header, dict) or header.get("t") != "program":
        raise RemoteProtocolError(f"{sender} answered the program request with something "
                                  "other than a program")
    size = header.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_PROGRAM:
        raise RemoteProtocolError(f"{sender} announced a program of {str(size)[:20]} bytes "
                                  f"(1 to {MAX_PROGRAM} are fetched)")
    return size


# --- kept programs ----------------------------------------------------------------------


def file_name(program_name: str) -> str:
    """A safe file name for an invitation's program name (which is any printable text:
    it may hold ``/`` or ``..``): letters, digits, ``.``, ``_`` and ``-``, not hidden."""
    name = _UNSAFE.sub("_", program_name.replace("\\", "/").rsplit("/", 1)[-1])
    name = name.lstrip(".")[:100]
    return name or "program.py"


@dataclass(frozen=True)
class KeptProgram:
    sha256: str
    """64 hex digits: the folder's name, and the file's hash."""
    path: Path
    size: int
    kept: float
    """When it was kept (Unix seconds)."""

    @property
    def name(self) -> str:
        return self.path.name

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size,
                "path": str(self.path),
                "kept": dt.datetime.fromtimestamp(self.kept, dt.timezone.utc).isoformat()}


class ProgramStore:
    """Programs kept by hash in a keystore folder."""

    def __init__(self, home: Path) -> None:
        self.folder = Path(home) / "programs"

    def find(self, sha256: bytes) -> KeptProgram | None:
        """The kept program with this hash, if its bytes still have it."""
        folder = self.folder / sha256.hex()
        try:
            files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        except OSError:
            return None
        for path in files:
            kept = _check(path, sha256.hex())
            if kept is not None:
                return kept
        return None

    def keep(self, program_name: str, data: bytes) -> KeptProgram:
        """Keep ``data`` (any size the caller accepted) under its hash; returns where. A
        program kept before under another name stays where it is."""
        digest = hashlib.sha256(data).digest()
        found = self.find(digest)
        if found is not None:
            return found
        path = self._write(self.folder / digest.hex(), program_name, data)
        kept = _check(path, digest.hex())
        assert kept is not None
        return kept

    def hold_for_review(self, program_name: str, data: bytes) -> Path:
        """Write a fetched program where a person can read it before deciding (not kept:
        :meth:`find` does not return it, so nothing runs it without ``--program``)."""
        return self._write(self.folder / "review" / hashlib.sha256(data).hexdigest(),
                           program_name, data)

    def _write(self, folder: Path, program_name: str, data: bytes) -> Path:
        """``data`` as ``folder/<safe file name>``, folders private (0700), file 0600."""
        try:
            where = self.folder.parent  # the keystore, then each folder down to ``folder``
            where.mkdir(mode=0o700, exist_ok=True)
            for part in folder.relative_to(where).parts:
                where = where / part
                where.mkdir(mode=0o700, exist_ok=True)
            path = folder / file_name(program_name)
            atomic_write(path, data, mode=0o600)
        except OSError as exc:
            raise ProgramStoreError(f"cannot write the program in {folder}: "
                                    f"{exc.strerror or exc}") from None
        return path

    def held_for_review(self, sha256: bytes) -> Path | None:
        """The program fetched for review with this hash, if its bytes still have it."""
        folder = self.folder / "review" / sha256.hex()
        try:
            files = [p for p in folder.iterdir() if p.is_file()]
        except OSError:
            return None
        return next((p for p in files if _check(p, sha256.hex()) is not None), None)

    def keep_file(self, path: Path) -> KeptProgram | None:
        """Keep a copy of the local program ``path`` (best effort: a program that cannot
        be read or kept is simply not kept, the session does not depend on it)."""
        try:
            data = path.read_bytes()
            if len(data) > MAX_PROGRAM:
                return None
            return self.keep(path.name, data)
        except (OSError, MpcidError):
            return None

    def all(self) -> list[KeptProgram]:
        """Every kept program whose bytes still have their hash, newest first."""
        out = []
        try:
            folders = [p for p in self.folder.iterdir() if _HEX.fullmatch(p.name)]
        except OSError:
            return []
        for folder in folders:
            found = self.find(bytes.fromhex(folder.name))
            if found is not None:
                out.append(found)
        return sorted(out, key=lambda k: (-k.kept, k.name))


def _check(path: Path, sha256_hex: str) -> KeptProgram | None:
    try:
        stat = path.stat()
        if stat.st_size > MAX_PROGRAM:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256_hex:
        return None
    return KeptProgram(sha256_hex, path, len(data), stat.st_mtime)


def listing(data: bytes) -> str:
    """The source for a terminal, numbered, with every control character shown as an
    escape (a program must not be able to hide lines or rewrite the screen)."""
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}}  {_visible(line)}" for i, line in enumerate(lines, 1))


def _visible(line: str) -> str:
    out = []
    for ch in line:
        if ch == "\t":
            out.append("    ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(ascii(ch)[1:-1] if ord(ch) > 0x7f else f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)
