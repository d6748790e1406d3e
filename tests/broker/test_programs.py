"""The sans-IO side of fetching a program (``specs/session.md`` 10) and the kept programs."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from mpcid.broker.errors import ProgramMismatch, ProgramRefused
from mpcid.broker.programs import (MAX_HEADER, MAX_PROGRAM, ProgramReceiver, ProgramStore,
                                   answer, file_name, is_request, listing, refusal,
                                   request)
from mpcid.p2p.errors import RemoteProtocolError

PROGRAM = b"from mpyc.runtime import mpc\nmpc.run(mpc.start())\nmpc.run(mpc.shutdown())\n"
SHA = hashlib.sha256(PROGRAM).digest()


def receiver() -> ProgramReceiver:
    return ProgramReceiver(SHA, "the inviter")


def header(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def test_request_is_one_fixed_message() -> None:
    assert request() == b'\x00\x00\x00\x17{"t":"program-request"}'
    assert is_request(request())
    assert not is_request(request() + b"x") and not is_request(b"") and \
        not is_request(request()[:-1])


@pytest.mark.parametrize("split", [1, 3, 4, 5, 17, 1000])
def test_the_program_arrives_in_any_pieces(split: int) -> None:
    r = receiver()
    data = answer(PROGRAM)
    for i in range(0, len(data), split):
        r.feed(data[i:i + split])
    assert r.complete and r.result() == PROGRAM


def test_other_bytes_are_refused_by_hash() -> None:
    r = receiver()
    r.feed(answer(PROGRAM.replace(b"start", b"stArt")))
    with pytest.raises(ProgramMismatch, match="SHA-256 .* but the invitation names " +
                       SHA.hex()):
        r.result()


def test_refusal_is_reported_with_its_reason_on_one_line() -> None:
    r = receiver()
    with pytest.raises(ProgramRefused, match="the inviter did not send the program: no "
                       "copy here$"):
        r.feed(refusal("no\ncopy   here"))


@pytest.mark.parametrize("data, match", [
    (struct.pack(">I", MAX_HEADER + 1), "header of 1025 bytes"),
    (header({"t": "program", "size": MAX_PROGRAM + 1}), "1 to 1048576 are fetched"),
    (header({"t": "program", "size": 0}), "1 to 1048576"),
    (header({"t": "program", "size": True}), "1 to 1048576"),
    (header({"t": "program", "size": "12"}), "1 to 1048576"),
    (header({"t": "program"}), "1 to 1048576"),
    (header({"t": "presentation"}), "something other than a program"),
    (header([1, 2]), "something other than a program"),
    (struct.pack(">I", 3) + b"\xff\xfe{", "something other than a program"),
    (header({"t": "abort", "reason": 5}), "something other than a program"),
    (answer(PROGRAM) + b"#", "more than the 74 bytes it announced"),
])
def test_what_no_honest_inviter_sends(data: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        receiver().feed(data)


@pytest.mark.parametrize("data, match", [
    (b"", "ended the fetch early \\(no program\\)"),
    (answer(PROGRAM)[:50], "ended the fetch early \\(\\d+ of 74 bytes\\)"),
])
def test_an_early_end_is_not_a_program(data: bytes, match: str) -> None:
    r = receiver()
    r.feed(data)
    with pytest.raises(RemoteProtocolError, match=match):
        r.result()


def test_a_huge_announcement_allocates_nothing_before_the_bytes_come() -> None:
    r = receiver()
    r.feed(header({"t": "program", "size": MAX_PROGRAM}))
    r.feed(b"x" * 10)
    assert not r.complete and len(r._buffer) == 10


@pytest.mark.parametrize("name, safe", [
    ("secretsanta.py", "secretsanta.py"),
    ("../../etc/passwd", "passwd"),
    ("..", "program.py"),
    ("/", "program.py"),
    (".bashrc", "bashrc"),
    ("C:\\Users\\x\\prog.py", "prog.py"),
    ("my program (v2).py", "my_program_v2_.py"),
    ("ü" * 300, "_"),
    ("a" * 300 + ".py", "a" * 100),
])
def test_file_names_stay_in_their_folder(name: str, safe: str) -> None:
    assert file_name(name) == safe


def test_kept_programs_by_hash(tmp_path: Path) -> None:
    store = ProgramStore(tmp_path / "home")
    assert store.find(SHA) is None and store.all() == []
    kept = store.keep("../demo.py", PROGRAM)
    assert kept.path == tmp_path / "home" / "programs" / SHA.hex() / "demo.py"
    assert kept.path.read_bytes() == PROGRAM and kept.size == len(PROGRAM)
    assert oct(kept.path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "home" / "programs").stat().st_mode & 0o777) == "0o700"
    assert store.keep("other-name.py", PROGRAM) == kept  # kept once, under its first name
    assert store.find(SHA) == kept and store.all() == [kept]
    assert kept.to_json()["sha256"] == SHA.hex()
    # A kept file whose bytes changed is no longer that program.
    kept.path.write_bytes(PROGRAM + b"# edited\n")
    assert store.find(SHA) is None and store.all() == []
    # Nor does a file under a wrong folder count.
    wrong = tmp_path / "home" / "programs" / ("0" * 64)
    wrong.mkdir()
    (wrong / "x.py").write_bytes(PROGRAM)
    assert store.all() == []


def test_keep_file_is_best_effort(tmp_path: Path) -> None:
    store = ProgramStore(tmp_path / "home")
    assert store.keep_file(tmp_path / "missing.py") is None
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * (MAX_PROGRAM + 1))
    assert store.keep_file(big) is None
    small = tmp_path / "small.py"
    small.write_bytes(PROGRAM)
    kept = store.keep_file(small)
    assert kept is not None and kept.name == "small.py"
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        assert ProgramStore(tmp_path / "ro" / "home").keep_file(small) is None


def test_the_listing_shows_every_control_character() -> None:
    source = "x = 1\n\x1b[2Ky = 2\t# tab\nz = '\u202e' \r\n".encode()
    shown = listing(source)
    assert shown.splitlines() == ["1  x = 1", "2  \\x1b[2Ky = 2    # tab",
                                  "3  z = '\\u202e' \\x0d"]
    assert "\x1b" not in shown and "\u202e" not in shown and "\r" not in shown
    assert listing(b"\xff\xfeok") == "1  \ufffd\ufffdok"


def test_the_inviter_serves_a_party_a_few_times_only() -> None:
    import asyncio

    from mpcid.broker.program_fetch import MAX_SERVES, ProgramServer

    class Transport(asyncio.WriteTransport):
        def __init__(self) -> None:
            super().__init__()
            self.data = b""
            self.closed = False

        def write(self, data: bytes) -> None:  # type: ignore[override]
            self.data += data

        def close(self) -> None:
            self.closed = True

    def served(server: ProgramServer, peer: int) -> bytes:
        transport = Transport()
        app = server.app(peer)
        app.connection_made(transport)
        assert transport.closed and isinstance(app, asyncio.Protocol)
        return transport.data

    server = ProgramServer(PROGRAM)
    for _ in range(MAX_SERVES):
        assert served(server, 1) == answer(PROGRAM)
    assert served(server, 1) == refusal(f"it asked for the program more than {MAX_SERVES} "
                                        "times")
    assert served(server, 2) == answer(PROGRAM)
    assert served(ProgramServer(None, "the inviter's program changed"), 1) == \
        refusal("the inviter's program changed")
