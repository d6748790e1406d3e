"""Every role on the page, end to end in headless Chromium on loopback: an organisation
issues and revokes from its page, an inviter invites with a requirement from hers, two
invitees join from their own pages (one reviews and accepts the program it did not have,
one gives its own copy), the revoked member is refused in the next session, and the
history shows both sessions with verified transcripts.

Each person has their own keystore and their own `mpcid ui`; one browser visits them in
turn. With ``MPCID_UI_SCREENSHOTS=DIR`` the page states are saved there as PNGs (how the
screenshots in ``docs/`` are made).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from processes import running_node, stop
from test_ui import SALARY, browser, cli, env, mpcid, read_line, wait_for  # noqa: F401

pytestmark = pytest.mark.integration

STATUS_URL = "https://acme.example/status/1"


@dataclass
class Page:
    url: str
    proc: subprocess.Popen[str]


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Keystores for acme, alice, bob and carol, a DHT node, and a page for each (the
    members' pages read Acme's published status list file, as a copy would be given)."""
    root = tmp_path_factory.mktemp("roles")
    dids = {}
    for name in ("alice", "bob", "carol"):
        dids[name] = mpcid("create-did", "--home", str(root / name), "--name",
                           name).stdout.split()[-1]
    for name in ("bob", "carol"):  # they know the inviter: her invitations reach their inbox
        mpcid("contacts", "add", "alice", dids["alice"], "--home", str(root / name))
    published = root / "acme-status.json"
    pages: dict[str, Page] = {}
    with running_node(root / "node") as node:
        try:
            pages["acme"] = start_page(root / "acme")
            yield {"root": root, "dids": dids, "node": node, "pages": pages,
                   "published": published,
                   "start": lambda name: pages.setdefault(name, start_page(
                       root / name, "--bootstrap", node, "--status-file",
                       f"{STATUS_URL}={published}"))}
        finally:
            for page in pages.values():
                code, err = stop(page.proc)
                assert code == 0 and "Traceback" not in err, err


def start_page(home: Path, *extra: str) -> Page:
    proc = subprocess.Popen(cli("ui", "--port", "0", "--home", str(home), *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), stdin=subprocess.DEVNULL)
    return Page(read_line(proc, lambda line: line.startswith("http://"), 30), proc)


def by_css(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def fill(driver: Any, form: str, **values: str) -> None:
    for name, value in values.items():
        field = by_css(driver, f"#{form} [name={name}]")
        if field.tag_name == "select":
            from selenium.webdriver.support.ui import Select

            wait_for(f"option {value}", lambda: any(
                o.get_attribute("value") == value for o in field.find_elements("tag name",
                                                                               "option")))
            Select(field).select_by_value(value)
        else:
            field.clear()
            field.send_keys(value)


def message(driver: Any, form: str) -> str:
    return str(by_css(driver, f"#{form} .message").text)


def shoot(driver: Any, name: str, section: str) -> None:
    """Save the page, scrolled to ``section``, when screenshots are asked for."""
    folder = os.environ.get("MPCID_UI_SCREENSHOTS")
    if not folder:
        return
    driver.execute_script("arguments[0].scrollIntoView()", by_css(
        driver, f'[data-section="{section}"]'))
    Path(folder).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(folder) / f"ui-{name}.png"))


def open_page(driver: Any, page: Page) -> None:
    driver.get(page.url)
    wait_for("the page", lambda: "updated" in by_css(driver, "#status").text)


def card(driver: Any, session: str) -> Any:
    return by_css(driver, f'article.invitation[data-session="{session}"]')


def session_panel_state(driver: Any, session: str) -> str | None:
    panels = driver.find_elements("css selector", f'article.session[data-session="{session}"]')
    return panels[0].get_attribute("data-state") if panels else None


def test_every_role_on_the_page(people: dict[str, Any], browser: Any) -> None:  # noqa: F811
    driver, dids, pages = browser, people["dids"], people["pages"]
    driver.set_window_size(1280, 1000)

    # -- the organisation: its identity, its status list, a credential per member ------
    open_page(driver, pages["acme"])
    fill(driver, "identity-form", name="acme")
    by_css(driver, '[data-action="create-identity"]').click()
    wait_for("acme's identity", lambda: "created acme: did:key:" in message(
        driver, "identity-form"))
    acme_did = message(driver, "identity-form").split(": ", 1)[1]
    wait_for("the issuer choice", lambda: by_css(driver, "#status-issuer option"))
    fill(driver, "status-list-form", url=STATUS_URL, publish=str(people["published"]))
    by_css(driver, '[data-action="create-status-list"]').click()
    wait_for("the status list", lambda: STATUS_URL in by_css(driver, "#status-lists").text)
    tokens = {}
    for member in ("alice", "bob", "carol"):
        fill(driver, "issue-form", subject=dids[member], type="MembershipCredential",
             claims="organization=Acme", status_list=STATUS_URL)
        by_css(driver, '[data-action="issue-credential"]').click()
        wait_for(f"{member}'s credential", lambda: message(driver, "issue-form") == "issued"
                 and by_css(driver, "#issued-token").get_attribute("value")
                 not in tokens.values())
        tokens[member] = by_css(driver, "#issued-token").get_attribute("value")
        assert tokens[member].startswith("mpcidvc1:")
        driver.execute_script("document.querySelector('#issue-form .message')"
                              ".textContent = ''")
    wait_for("three issued", lambda: len(driver.find_elements(
        "css selector", '#issued tr[data-state="valid"]')) == 3)
    shoot(driver, "organisation", "organisation")

    # -- each member imports its credential on its own page ----------------------------
    for member in ("alice", "bob", "carol"):
        open_page(driver, people["start"](member))
        fill(driver, "credential-import-form", credential=tokens[member])
        by_css(driver, '[data-action="import-credential"]').click()
        wait_for("the import", lambda: "imported" in message(driver,
                                                              "credential-import-form"))
        wait_for("the credential listed", lambda: "MembershipCredential" in by_css(
            driver, "#credentials").text)

    # -- alice invites bob and carol, with a requirement, and joins at once -------------
    requirement = f"MembershipCredential@{acme_did};organization=Acme"
    session1 = invite(driver, pages["alice"], dids, requirement, "--salaries 1000")
    token1 = by_css(driver, "#invite-token").get_attribute("value")
    shoot(driver, "inviter", "invite")

    # -- bob has no program: he reviews it on his page and accepts it ------------------
    open_page(driver, pages["bob"])
    import_invitation(driver, token1, session1)
    card(driver, session1).find_element("css selector", "button.accept").click()
    join = card(driver, session1).find_element("css selector", "form.join-form")
    wait_for("the program state", lambda: "is not here" in join.text)
    join.find_element("css selector", '[data-action="review-program"]').click()
    wait_for("the reviewed source", lambda: "async def main() -> None:" in join.find_element(
        "css selector", "pre.source").text, timeout=60)
    assert "sha256 " in join.text and "(the invitation's)" in join.text
    shoot(driver, "invitee-review", "invitations")
    join.find_element("name", "args").send_keys("--salaries 2000")
    join.find_element("css selector", '[data-action="join"]').click()
    wait_for("the consent asked", lambda: "I have read it" in card(driver, session1).text
             and "tick" in card(driver, session1).find_element("css selector",
                                                               ".message").text)
    join.find_element("name", "accept").click()
    join.find_element("css selector", '[data-action="join"]').click()
    wait_for("bob's session", lambda: session_panel_state(driver, session1) is not None)

    # -- carol joins with her own copy ------------------------------------------------
    open_page(driver, pages["carol"])
    import_invitation(driver, token1, session1)
    card(driver, session1).find_element("css selector", "button.accept").click()
    join = card(driver, session1).find_element("css selector", "form.join-form")
    wait_for("the program state", lambda: "is not here" in join.text)  # it moves the button
    join.find_element("name", "program").send_keys(SALARY)
    join.find_element("name", "args").send_keys("--salaries 3000")
    join.find_element("css selector", '[data-action="join"]').click()
    wait_for("carol's session to end", lambda: session_panel_state(driver, session1)
             in ("completed", "failed"), timeout=90)
    assert session_panel_state(driver, session1) == "completed", by_css(
        driver, "#sessions").text
    assert "total 6000" in by_css(driver, "#sessions").text
    for name in ("alice", "bob"):
        open_page(driver, pages[name])
        wait_for(f"{name}'s session to end", lambda: session_panel_state(driver, session1)
                 == "completed", timeout=60)
        assert "total 6000" in by_css(driver, "#sessions").text
        if name == "bob":
            shoot(driver, "sessions", "sessions")

    # -- acme revokes carol's credential ---------------------------------------------------
    open_page(driver, pages["acme"])

    def revoke_carol() -> bool:  # retried: the table is redrawn when the page refreshes
        [row] = [r for r in driver.find_elements("css selector", "#issued tbody tr")
                 if dids["carol"][-6:] in r.text]
        row.find_element("css selector", '[data-action="revoke-credential"]').click()
        return True

    wait_for("carol's revoke button", revoke_carol)
    driver.switch_to.alert.accept()
    wait_for("the revocation", lambda: len(driver.find_elements(
        "css selector", '#issued tr[data-state="revoked"]')) == 1)
    revoked = json.loads(people["published"].read_text())
    assert revoked["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    shoot(driver, "organisation-revoked", "organisation")

    # -- the next session: the revoked member is refused -------------------------------
    session2 = invite(driver, pages["alice"], dids, requirement, "--salaries 10",
                      kept=True)
    for name, amount in (("bob", "20"), ("carol", "30")):
        open_page(driver, pages[name])
        # No token this time: the invitation is in their inbox (alice is a contact).
        by_css(driver, '[data-action="check-inbox"]').click()
        wait_for("the inbox", lambda: "1 new invitation(s) in your inbox" in by_css(
            driver, "#inbox-result").text, timeout=60)
        wait_for("the card from the inbox", lambda: card(driver, session2).get_attribute(
            "data-state") == "received")
        card(driver, session2).find_element("css selector", "button.accept").click()
        join = card(driver, session2).find_element("css selector", "form.join-form")
        wait_for("the kept program", lambda: "is kept here" in join.text)
        join.find_element("name", "args").send_keys(f"--salaries {amount}")
        join.find_element("css selector", '[data-action="join"]').click()
        wait_for(f"{name}'s second session", lambda: session_panel_state(driver, session2)
                 is not None)
    # Carol's own join sees the revocation, does not start, and declines: the others
    # stop at once, told why.
    wait_for("carol's join to stop", lambda: session_panel_state(driver, session2)
             == "failed", timeout=90)
    shown = by_css(driver, "#sessions").text
    assert "you do not meet this session's requirements" in shown and "revoked" in shown
    by_css(driver, '[data-action="check-credentials"]').click()
    wait_for("her credential's state", lambda: "revoked (ask its issuer)" in by_css(
        driver, "#credentials").text)

    # -- alice's history: both sessions, transcripts verified --------------------------
    open_page(driver, pages["alice"])
    wait_for("the second session to end", lambda: session_panel_state(driver, session2)
             == "failed", timeout=60)
    history = wait_for("both sessions in the history", lambda: (rows := driver.find_elements(
        "css selector", '[data-section="history"] tbody tr')) and len(rows) == 2 and rows)
    outcomes = {r.get_attribute("data-session"): r.get_attribute("data-outcome")
                for r in history}
    # Alice learns it from Carol's decline ("failed") or from Bob's abort, which passes
    # the decline on ("refused"): whichever reaches her first.
    assert outcomes[session1] == "completed" and outcomes[session2] in ("failed", "refused")
    text = by_css(driver, '[data-section="history"]').text
    assert text.count("✓ signature verified") == 2 and "will not take part" in text
    assert "revoked" in text
    link = by_css(driver, f'tr[data-session="{session1}"] a[download]').get_attribute("href")
    assert link.endswith(f"api/history/{session1}/0/transcript")
    shoot(driver, "history", "history")
    # The downloaded transcript verifies with the CLI as well.
    kept = people["root"] / "alice" / "transcripts" / f"{session1}-0.json"
    out = mpcid("transcript", "verify", str(kept)).stdout
    assert "completed" in out


def invite(driver: Any, page: Page, dids: dict[str, str], requirement: str, args: str,
           kept: bool = False) -> str:
    open_page(driver, page)
    values = {"dids": f"{dids['bob']}\n{dids['carol']}", "requirements": requirement,
              "name": "salaries", "args": args}
    if kept:
        from selenium.webdriver.support.ui import Select

        def pick_kept() -> bool:  # retried: the list is redrawn when the page refreshes
            Select(by_css(driver, "#invite-kept")).select_by_index(1)
            return bool(by_css(driver, "#invite-kept").get_attribute("value"))

        wait_for("a kept program", pick_kept)
        by_css(driver, "#invite-program").clear()
    else:
        values["program"] = SALARY
    fill(driver, "invite-form", **values)
    by_css(driver, '[data-action="invite"]').click()
    wait_for("the invitation", lambda: "joined, see Sessions" in message(driver,
                                                                        "invite-form"),
             timeout=60)
    return str(by_css(driver, "#invite-session").text.split()[-1])


def import_invitation(driver: Any, token: str, session: str) -> None:
    by_css(driver, "#import-token").send_keys(token)
    by_css(driver, "#import-button").click()
    wait_for("the imported card", lambda: card(driver, session).get_attribute("data-state")
             == "received")
