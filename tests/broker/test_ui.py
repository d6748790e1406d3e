"""``mpcid ui``: its JSON API over a real server on 127.0.0.1:0, the page in headless
Chromium, and a two-party session joined from the page.

One prepared world per module (a DHT node, alice inviting bob, a credential of bob's, one
ui server over bob's keystore, one browser), so the whole file stays well under a minute.
Every process started here is stopped here, each wait has a timeout.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from processes import stop

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SALARY = str(ROOT / "examples" / "salary_sum.py")
HEADER_RGB = (0x1D, 0x35, 0x57)  # --header in broker/ui_static/style.css


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("MPCID_HOME", "MPCID_PASSPHRASE", "MPCID_DEBUG", "MPCID_BOOTSTRAP")}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mpcid.broker", *args]


def mpcid(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cli(*args), capture_output=True, text=True, env=env(),
                          stdin=subprocess.DEVNULL, timeout=timeout)
    assert proc.returncode == 0, f"mpcid {' '.join(args)}: {proc.stderr}"
    return proc


def read_line(proc: subprocess.Popen[str], want: Callable[[str], bool], timeout: float) -> str:
    """The first stdout line of ``proc`` for which ``want`` holds, within ``timeout``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if want(line.strip()):
                return line.strip()
    raise AssertionError(f"{proc.args!r} printed no expected line in {timeout} s "
                         f"(exit {proc.poll()})")


@dataclass
class World:
    tmp: Path
    node: str
    alice: Path
    bob: Path
    dids: dict[str, str]
    credential_id: str
    tokens: dict[str, str]

    def session_of(self, token: str) -> str:
        from mpcid.broker.invitation import Invitation

        return Invitation.from_token(token, time.time()).session_id

    def invite(self, *dids: str, program: str = SALARY) -> str:
        args = [a for did in dids for a in ("--did", did)]
        out = mpcid("invite", "--as", "alice", *args, "--program", program,
                    "--bootstrap", self.node, "--home", str(self.alice))
        return out.stdout.strip().splitlines()[-1]

    def give_bob(self, token: str) -> None:
        """Put an invitation into bob's store, as receiving it by any means would."""
        from mpcid.broker.inbox import InvitationStore
        from mpcid.broker.invitation import Invitation, decode_token
        from mpcid.identity.keystore import Keystore

        InvitationStore(Keystore(self.bob)).add(
            Invitation.from_token(token, time.time()), decode_token(token), "token")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("ui")
    node = subprocess.Popen(cli("node", "--listen", "/ip4/127.0.0.1/tcp/0", "--home",
                                str(tmp / "node")), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env())
    try:
        address = read_line(node, lambda line: line.startswith("/ip4/"), 30)
        homes = {"alice": tmp / "alice", "bob": tmp / "bob", "spare": tmp / "bob",
                 "org": tmp / "org"}
        dids = {name: mpcid("create-did", "--name", name, "--home", str(home)
                            ).stdout.split()[-1] for name, home in homes.items()}
        issued = mpcid("credential", "issue", "--issuer", "org", "--subject", dids["bob"],
                       "--type", "MembershipCredential", "--claim", "organization=Acme",
                       "--expires", "2099-01-01T00:00:00Z", "--home", str(homes["org"]))
        (tmp / "membership.json").write_text(issued.stdout)
        credential_id = mpcid("credential", "import", str(tmp / "membership.json"),
                              "--home", str(homes["bob"])).stdout.strip().splitlines()[-1]
        world = World(tmp, address, homes["alice"], homes["bob"], dids, credential_id, {})
        for label in ("listed", "api_decline", "page_decline", "api_import", "page_import"):
            world.tokens[label] = world.invite(dids["bob"])
        world.tokens["not_mine"] = world.invite(dids["org"])
        for label in ("listed", "api_decline", "page_decline"):
            world.give_bob(world.tokens[label])
        yield world
    finally:
        stop(node)


@dataclass
class Server:
    url: str
    """http://127.0.0.1:PORT/TOKEN/"""
    proc: subprocess.Popen[str]

    @property
    def origin(self) -> str:
        return self.url.split("/", 3)[0] + "//" + self.url.split("/", 3)[2]

    @property
    def token(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[Server]:
    proc = subprocess.Popen(cli("ui", "--port", "0", "--home", str(world.bob)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), stdin=subprocess.DEVNULL)
    try:
        url = read_line(proc, lambda line: line.startswith("http://"), 30)
        yield Server(url, proc)
    finally:
        code, err = stop(proc)
    assert code == 0 and "Traceback" not in err, f"mpcid ui exited with {code}: {err}"


def request(url: str, body: Any = None, headers: dict[str, str] | None = None,
            method: str | None = None) -> tuple[int, dict[str, str], Any]:
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=90) as response:
            status, head, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, dict(exc.headers), exc.read()
    ctype = head.get("Content-Type", "")
    return status, head, json.loads(raw) if ctype.startswith("application/json") else raw


def post(server: Server, path: str, body: Any) -> tuple[int, Any]:
    status, _, value = request(server.url + path, body, {
        "Content-Type": "application/json", "X-Mpcid-Token": server.token,
        "Origin": server.origin})
    return status, value


# --- (a) the API ---------------------------------------------------------------------


def test_every_request_needs_the_token(server: Server) -> None:
    base = server.origin
    for url in (f"{base}/", f"{base}/api/identities", f"{base}/wrong-token/api/identities",
                f"{base}/api/identities?token=wrong", f"{base}/static/app.js",
                f"{base}/{server.token[:-1]}/api/identities"):
        status, head, _ = request(url)
        assert status == 403, url
        assert head["X-Frame-Options"] == "DENY"
    status, _, value = request(f"{base}/api/identities?token={server.token}")
    assert status == 200 and value["identities"]
    status, head, page = request(server.url)
    assert status == 200 and head["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in head["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in head["Content-Security-Policy"]
    assert head["X-Frame-Options"] == "DENY" and head["Cache-Control"] == "no-store"
    assert b'<script src="static/app.js"' in page
    assert page.count(b"<script") == 1, "no inline script"
    status, head, script = request(server.url + "static/app.js")
    assert status == 200 and head["Content-Type"].startswith("text/javascript")
    assert b"X-Mpcid-Token" in script
    # A page served under another name (DNS rebinding) gets nothing, token or not.
    status, _, _ = request(server.url + "api/identities", headers={"Host": "evil.example"})
    assert status == 403


def test_posts_from_other_pages_are_refused(server: Server) -> None:
    url = server.url + "api/invitations/import"
    body = {"token": "mpcid1:whatever"}
    good = {"Content-Type": "application/json", "X-Mpcid-Token": server.token}
    for headers in ({"Content-Type": "application/json"},  # a cross-site form cannot add it
                    {**good, "X-Mpcid-Token": "wrong"},
                    {**good, "Origin": "http://evil.example"},
                    {**good, "Sec-Fetch-Site": "cross-site"},
                    {**good, "Content-Type": "text/plain"}):
        status, _, value = request(url, body, headers)
        assert status == 403, headers
        assert "cross-site" in value["error"]
    status, _, value = request(url, body, good)
    assert status == 400 and "token" in value["error"]  # past the guard: a bad token


def test_lists_identities_credentials_and_invitations(world: World, server: Server) -> None:
    status, _, value = request(server.url + "api/identities")
    assert status == 200
    assert {(i["name"], i["did"]) for i in value["identities"]} == {
        ("bob", world.dids["bob"]), ("spare", world.dids["spare"])}
    status, _, value = request(server.url + "api/credentials")
    [credential] = value["credentials"]
    assert credential["id"] == world.credential_id
    assert credential["types"] == ["MembershipCredential"]
    assert credential["issuer"] == world.dids["org"]
    assert credential["holder"] == "bob" and credential["expires"].startswith("2099-01-01")
    status, _, value = request(server.url + "api/invitations")
    listed = {i["session"]: i for i in value["invitations"]}
    session = world.session_of(world.tokens["listed"])
    assert session in listed
    entry = listed[session]
    assert entry["inviter"] == world.dids["alice"] and entry["names"] == ["bob"]
    assert entry["my_indexes"] == {world.dids["bob"]: 1}
    assert entry["token"] == world.tokens["listed"] and entry["program"] == "salary_sum.py"
    assert world.session_of(world.tokens["not_mine"]) not in listed
    assert request(server.url + "api/sessions")[2] == {"sessions": []}
    assert request(server.url + "api/sessions/" + "0" * 32)[0] == 404


def test_import_through_the_api(world: World, server: Server) -> None:
    token = world.tokens["api_import"]
    status, value = post(server, "api/invitations/import", {"token": "  " + token + "\n"})
    assert status == 200, value
    assert value["session"] == world.session_of(token) and value["state"] == "received"
    sessions = {i["session"] for i in request(server.url + "api/invitations")[2]["invitations"]}
    assert world.session_of(token) in sessions
    status, value = post(server, "api/invitations/import", {"token": world.tokens["not_mine"]})
    assert status == 422 and "not addressed to any of your identities" in value["error"]
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    status, value = post(server, "api/invitations/import", {"token": tampered})
    assert status == 400 and "\n" not in value["error"]
    status, value = post(server, "api/invitations/import", {"nothing": 1})
    assert status == 400 and '"token"' in value["error"]


def test_decline_and_join_refusals_through_the_api(world: World, server: Server) -> None:
    session = world.session_of(world.tokens["api_decline"])
    status, value = post(server, f"api/invitations/{session}/decline",
                         {"reason": "busy that day"})
    assert status == 200, value
    assert value["state"] == "declined" and value["reason"] == "busy that day"
    assert value["warning"] == ""  # published through the node
    listed = {i["session"]: i for i in request(server.url + "api/invitations")[2]["invitations"]}
    assert listed[session]["state"] == "declined"
    status, value = post(server, f"api/invitations/{'f' * 32}/decline", {})
    assert status == 404
    status, value = post(server, f"api/invitations/{session}/decline", {"as": "spare"})
    assert status == 400 and "not a party" in value["error"]
    listed_session = world.session_of(world.tokens["listed"])
    status, value = post(server, f"api/invitations/{listed_session}/join",
                         {"program": str(world.tmp / "missing.py")})
    assert status == 400 and "no program file" in value["error"]
    status, value = post(server, f"api/invitations/{listed_session}/join",
                         {"program": SALARY, "args": "--salaries 5"})
    assert status == 400 and "list of strings" in value["error"]


def test_role_requests_are_checked_before_any_command(world: World, server: Server) -> None:
    listed = world.session_of(world.tokens["listed"])
    cases = [
        ("api/identities", {"name": "../x"}, 400, '"name" is not'),
        ("api/credentials/issue", {"issuer": "bob", "subject": world.dids["alice"],
                                   "type": "T", "claims": {"a b": "c"}}, 400, '"claims"'),
        ("api/credentials/issue", {"issuer": "bob", "subject": world.dids["alice"],
                                   "type": "x;y"}, 400, '"type" is not'),
        ("api/credentials/issue", {"issuer": "bob", "subject": "did:key:nonsense",
                                   "type": "T"}, 422, "did:key"),
        ("api/issued/0123456789abcdef/revoke", {}, 404, "no credential"),
        ("api/status-lists/0123456789abcdef/publish", {}, 404, "no such status list"),
        ("api/invite", {"as": "bob", "dids": [], "program": SALARY}, 400,
         "at least one invited DID"),
        ("api/invite", {"as": "bob", "dids": [world.dids["alice"]],
                        "program": "/nonexistent/prog.py"}, 400, "no program file"),
        ("api/invite", {"as": "bob", "dids": ["a\nb"], "program": SALARY}, 400, '"dids"'),
        (f"api/invitations/{listed}/join", {}, 409, "review the program"),
        (f"api/invitations/{listed}/join", {"accept_program": True}, 409,
         "has not been fetched for review"),
        ("api/credentials/import", {"credential": "mpcidvc1:AAAA"}, 422, "damaged in copying"),
        ("api/credentials/import", {"credential": 5}, 400, '"credential"'),
    ]
    for path, body, status, text in cases:
        got, value = post(server, path, body)
        assert (got, text in value.get("error", "")) == (status, True), (path, value)
        assert "\n" not in value["error"] and "Traceback" not in value["error"]
    for path in (f"api/history/{'f' * 32}/0/transcript", "api/history/abc/0/transcript",
                 f"api/history/{listed}/99/transcript", "api/status-lists/zz/list.json"):
        assert request(server.url + path)[0] == 404, path
    # The organisation's way, through the same page: a credential issued and listed.
    status, value = post(server, "api/credentials/issue", {
        "issuer": "spare", "subject": world.dids["alice"], "type": "MembershipCredential",
        "claims": {"organization": "Spare"}})
    assert status == 201 and value["token"].startswith("mpcidvc1:"), value
    assert value["credential"]["credentialSubject"]["organization"] == "Spare"
    [issued] = request(server.url + "api/issued")[2]["issued"]
    assert (issued["subject"], issued["state"], issued["status"]) == (
        world.dids["alice"], "valid", None)
    assert request(server.url + "api/history")[2]["history"] is not None


def test_events_stream_the_sessions(server: Server) -> None:
    with urllib.request.urlopen(server.url + "api/events", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["X-Frame-Options"] == "DENY"
        assert stream.readline() == b"event: change\n"
        data = stream.readline()
        assert data.startswith(b"data: ") and "sessions" in json.loads(data[6:])
    status, _, _ = request(server.origin + "/api/events")
    assert status == 403  # the token is needed here too


def children_of_session(session: str) -> list[int]:
    """Processes whose command line names ``session`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and session.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_only_loopback_unless_public(world: World) -> None:
    refused = subprocess.run(cli("ui", "--host", "192.0.2.1", "--home", str(world.bob)),
                             capture_output=True, text=True, env=env(), timeout=30)
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert line.startswith("error: ") and "non-loopback" in line and "--public" in line


def test_stopping_the_ui_stops_its_sessions(world: World) -> None:
    proc = subprocess.Popen(cli("ui", "--home", str(world.bob)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(),
                            stdin=subprocess.DEVNULL)
    try:
        server = Server(read_line(proc, lambda line: line.startswith("http://"), 30), proc)
        session = world.session_of(world.tokens["listed"])
        status, value = post(server, f"api/invitations/{session}/join", {"program": SALARY})
        assert status == 202 and value["state"] == "running", value
        wait_for("the join child", lambda: children_of_session(session))
        assert request(server.url + f"api/sessions/{session}")[2]["state"] == "running"
    finally:
        code, err = stop(proc, signal.SIGTERM)
    assert code == 0 and "Traceback" not in err, err
    assert not children_of_session(session), "mpcid ui left its join child running"


# --- (b) and (c) the page in headless Chromium -----------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        # The page must be tested in a real browser: a missing one fails, as the network
        # namespace tests do without `ip`, rather than pass unseen.
        pytest.fail("chromium/chromedriver not installed (Debian: apt-get install chromium "
                    "chromium-driver; tests/run.sh does it when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - stale elements while the page re-renders
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def card(driver: Any, session: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'article.invitation[data-session="{session}"]')


def test_page_renders_declines_imports(world: World, server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server.url)
    text = lambda: browser.find_element(By.TAG_NAME, "main").text  # noqa: E731
    wait_for("identities", lambda: world.dids["bob"] in text() and world.dids["spare"] in text())
    wait_for("credential", lambda: world.credential_id in text())
    assert "MembershipCredential" in text()
    session = world.session_of(world.tokens["page_decline"])
    wait_for("invitation cards", lambda: card(browser, session).get_attribute("data-state")
             == "received")
    card(browser, session).find_element(By.CSS_SELECTOR, "button.decline").click()
    form = card(browser, session).find_element(By.CSS_SELECTOR, "form.decline-form")
    form.find_element(By.NAME, "reason").send_keys("not this week")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("declined", lambda: card(browser, session).get_attribute("data-state")
             == "declined", timeout=40)
    assert "not this week" in card(browser, session).text
    assert not card(browser, session).find_element(By.CSS_SELECTOR, "button.accept").is_enabled()

    imported = world.session_of(world.tokens["page_import"])
    browser.find_element(By.ID, "import-token").send_keys(world.tokens["page_import"])
    browser.find_element(By.ID, "import-button").click()
    wait_for("import result", lambda: f"imported session {imported}"
             in browser.find_element(By.ID, "import-result").text)
    wait_for("imported card", lambda: card(browser, imported).get_attribute("data-state")
             == "received")

    browser.execute_script("window.scrollTo(0, 0)")
    check_screenshot(browser)


def check_screenshot(driver: Any) -> None:
    """The screenshot is a PNG of the viewport's size, not one flat colour, whose top band
    (the header, measured in the page) is the header colour."""
    png = driver.get_screenshot_as_png()
    if os.environ.get("MPCID_UI_SCREENSHOT"):  # to look at it: a path to write the PNG to
        Path(os.environ["MPCID_UI_SCREENSHOT"]).write_bytes(png)
    width, height, dpr = driver.execute_script(
        "return [window.innerWidth, window.innerHeight, window.devicePixelRatio]")
    header = driver.execute_script(
        "const r = document.getElementById('top').getBoundingClientRect();"
        "return [r.left, r.top, r.right, r.bottom]")
    rows, (png_width, png_height) = decode_png(png, upto=int(header[3] * dpr) + 200)
    assert (png_width, png_height) == (round(width * dpr), round(height * dpr))
    colours = {row[i:i + 3] for row in rows for i in range(0, len(row), 3 * 7)}
    assert len(colours) > 8, "the page looks blank"
    band = [row[x * 3:x * 3 + 3] for row in rows[int(header[1] * dpr) + 2:int(header[3] * dpr) - 2]
            for x in range(int(header[0] * dpr) + 2, int(header[2] * dpr) - 2, 5)]
    same = sum(1 for px in band if all(abs(a - b) <= 6 for a, b in zip(px, HEADER_RGB)))
    assert band and same / len(band) > 0.6, f"header colour in {same}/{len(band)} samples"
    below = rows[int(header[3] * dpr) + 40]
    assert tuple(below[:3]) != HEADER_RGB


def decode_png(data: bytes, upto: int) -> tuple[list[bytes], tuple[int, int]]:
    """The first ``upto`` rows of an 8-bit RGB/RGBA PNG as RGB bytes, and its size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert depth == 8 and colour in (2, 6) and interlace == 0, ihdr
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(min(upto, height)):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc
                                      else corner)) & 255
        rows.append(bytes(b for i, b in enumerate(line) if i % bpp < 3))
        previous = line
    return rows, (width, height)


def test_session_joined_from_the_page(world: World, server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    token = world.invite(world.dids["bob"])
    session = world.session_of(token)
    status, value = post(server, "api/invitations/import", {"token": token})
    assert status == 200, value
    alice = subprocess.Popen(cli("join", token, "--program", SALARY, "--as", "alice",
                                 "--home", str(world.alice), "--connect-timeout", "45",
                                 "--progress", "none", "--", "--salaries", "1000,500"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env(), stdin=subprocess.DEVNULL)
    try:
        browser.get(server.url)
        wait_for("the new invitation", lambda: card(browser, session).get_attribute(
            "data-state") == "received")
        card(browser, session).find_element(By.CSS_SELECTOR, "button.accept").click()
        form = card(browser, session).find_element(By.CSS_SELECTOR, "form.join-form")
        # As a person does, read what the page says of the program before typing: the
        # text arrives a moment later and moves the Join button (a click sent while it
        # moves lands beside it).
        wait_for("the program state", lambda: "is not here" in form.text)
        form.find_element(By.NAME, "program").send_keys(SALARY)
        form.find_element(By.NAME, "args").send_keys("--salaries 2000")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        panel = f'article.session[data-session="{session}"]'
        try:
            wait_for("the session panel", lambda: browser.find_elements(By.CSS_SELECTOR, panel))
        except AssertionError as exc:
            shown = card(browser, session).find_element(By.CSS_SELECTOR, ".message").text
            raise AssertionError(f"{exc}; the card says {shown!r}; sessions "
                                 f"{request(server.url + 'api/sessions')[2]}") from None
        state = wait_for("the end of the session", lambda: browser.find_element(
            By.CSS_SELECTOR, panel).get_attribute("data-state") in ("completed", "failed")
            and browser.find_element(By.CSS_SELECTOR, panel).get_attribute("data-state"),
            timeout=50)
        detail = request(server.url + f"api/sessions/{session}")[2]
        assert state == "completed", detail
        shown = browser.find_element(By.CSS_SELECTOR, panel).text
        assert "total 3500" in shown and "count 3" in shown
        inviter = detail["parties"][0]
        assert inviter["did"] == world.dids["alice"] and inviter["connected"]
        assert {e["event"] for e in detail["events"]} >= {"session", "connected", "finished"}
        assert detail["exit_code"] == 0 and "total 3500" in detail["stdout"]
        out, err = alice.communicate(timeout=30)
        assert alice.returncode == 0, err
        assert "total 3500" in out
    finally:
        stop(alice, signal.SIGTERM)
