"""The real Gradio app in a real browser (Debian's chromium driven by Playwright), and its API.

Accessibility is checked with axe-core (the npm package; `make test` installs it into tests/axe/)
against WCAG 2.0/2.1/2.2 A and AA, at a phone's and a desktop's width."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import served_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa"]
PASSWORD = "correct horse battery staple"
DOSE = "What dose of larotrectinib should adults take?"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    srv = served_app(tmp_path_factory, embedder, "app")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def watch_csp(context) -> list[str]:
    """Every Content-Security-Policy violation in the context's pages, as it happens (through page
    loads and reloads): the `securitypolicyviolation` events, and console messages that name the
    policy (Chromium reports blocked loads and evaluations there too)."""
    found: list[str] = []
    context.expose_function("__trkCspViolation", lambda v: found.append(v))
    context.add_init_script("""document.addEventListener('securitypolicyviolation', (e) =>
        window.__trkCspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`));""")
    context.on("console", lambda m: found.append(f"console: {m.text}") if "Content Security Policy" in m.text else None)
    return found


@pytest.fixture
def page(browser, server, tmp_path, request):
    """A page of the chat, in English; every browser test runs under the app's CSP and fails on a
    violation of it."""
    context = browser.new_context(viewport={"width": 1200, "height": 1400}, locale="en-GB")
    violations = watch_csp(context)
    pg = context.new_page()
    pg.goto(server.url)
    pg.wait_for_selector("#question textarea", timeout=60000)
    yield pg
    shot = tmp_path / f"{request.node.name}.png"
    pg.screenshot(path=str(shot), full_page=True)
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"\nscreenshot of the failing flow: {shot}")
    context.close()
    if violations:
        pytest.fail(f"Content-Security-Policy violations: {violations}")


def ask(page, question: str | None = None, click: str | None = None) -> str:
    """Type a question and send it (or click a button that asks one); wait until the reply is
    complete: the live region announces it last, marked with its place in the chat."""
    turn = 2 * page.locator("#chatbot [data-testid='bot']").count() + 1
    if click:
        page.click(click)
    else:
        page.fill("#question textarea", question)
        page.click("#send")
    page.wait_for_selector(f"#live p.turn-{turn}", state="attached", timeout=60000)
    return page.locator("#chatbot").inner_text()


def click_where_it_is(page, locator) -> None:
    """A mouse click on an element in the chat as it stands: Playwright's own click scrolls first,
    and the chat scrolls smoothly, so its aim would land beside the element."""
    locator.evaluate("e => e.scrollIntoView({block: 'center', behavior: 'instant'})")
    box = locator.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(value)


def wait_text(page, elem_id: str, text: str, timeout: int = 30000) -> None:
    page.wait_for_function("([id, t]) => document.getElementById(id).innerText.includes(t)",
                           arg=[elem_id, text], timeout=timeout)


def sign_in(page, email: str, password: str = PASSWORD, expect: str = "Signed in.") -> None:
    page.get_by_role("tab", name="Healthcare professionals").click()
    fill(page, "signin-email", email)
    fill(page, "signin-password", password)
    page.click("#signin")
    wait_text(page, "auth-message", expect)
    page.get_by_role("tab", name="Chat").click()


def test_public_question_gets_an_answer_with_its_source_cards(page):
    text = ask(page, "What is TRK fusion cancer?")
    assert "NTRK" in text and "[1]" in text
    cards = page.locator("#chatbot details.citation")
    first = cards.first
    assert "aud-public" in first.get_attribute("class") and not first.evaluate("d => d.open")
    assert page.locator("#chatbot details.citation.aud-hcp").count() == 0
    click_where_it_is(page, page.locator("#chatbot a.cite").first)  # the marker opens its card
    assert first.evaluate("d => d.open")
    assert "TRK" in first.locator("blockquote").inner_text()
    assert first.locator("blockquote mark").count() >= 1
    assert "Public" in first.locator("summary").inner_text()
    assert first.locator(".refs a[href^='https://']").count() >= 1
    click_where_it_is(page, first.locator("summary"))  # and collapses
    assert not first.evaluate("d => d.open")


def test_hcp_question_is_refused_for_the_public(page):
    text = ask(page, DOSE)
    assert "For healthcare professionals only" in text and "100 mg" not in text
    assert page.locator("#chatbot details.citation.aud-hcp").count() == 0
    assert "HCP only" not in text


def test_a_thank_you_gets_a_friendly_reply_and_follow_ups_still_work(page):
    ask(page, "What is TRK fusion cancer?")
    assert "You're welcome" in ask(page, "Thank you, that helps.")
    text = ask(page, "And how is it found?")  # refers to the question before the thank-you
    assert text.count("[1]") >= 2 and "genomic test" in text.split("You're welcome")[-1]


def test_script_in_a_question_is_shown_as_text(page):
    page.evaluate("window.pwned = undefined")
    text = ask(page, "What is TRK fusion cancer? <script>window.pwned = 1</script><img src=x onerror='window.pwned=2'>")
    assert "<script>window.pwned = 1</script>" in text
    assert page.evaluate("window.pwned") is None


def test_dutch_switch_changes_the_ui_text(page):
    assert page.locator("#send").inner_text().strip() == "Send"
    page.get_by_label("Nederlands").check()
    page.wait_for_function("() => document.querySelector('#send').innerText.trim() === 'Versturen'", timeout=30000)
    assert "Algemene informatie, geen medisch advies" in page.locator("#disclaimer").inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[role=tab]')].some(t => t.innerText.includes('Zorgprofessionals'))",
        timeout=30000)
    text = ask(page, "Wat is TRK-fusiekanker?")
    assert "TRK-fusiekanker" in text


def test_register_approve_sign_in_answer_sign_out(page, server):
    page.get_by_role("tab", name="Healthcare professionals").click()
    fill(page, "reg-name", "Anna de Vries")
    fill(page, "reg-email", "anna@example.org")
    fill(page, "reg-number", "19012345601")
    fill(page, "reg-password", PASSWORD)
    page.click("#register")
    page.wait_for_function("() => document.querySelector('#register-message').innerText.includes('received')",
                           timeout=30000)
    sign_in(page, "anna@example.org", expect="waiting for verification")
    assert "Public" in page.locator("#status").inner_text()

    server.cli("hcp", "approve", "anna@example.org")
    sign_in(page, "anna@example.org")
    assert "Verified healthcare professional" in page.locator("#status").inner_text()
    text = ask(page, DOSE)
    assert "100 mg" in text and "twice daily" in text
    assert page.locator("#chatbot details.citation.aud-hcp").count() >= 1
    assert "HCP only" in page.locator("#chatbot details.citation.aud-hcp").first.inner_text()

    page.reload()  # the token lives in the browser session and is re-checked by the server
    page.wait_for_selector("#question textarea", timeout=60000)
    wait_text(page, "status", "Verified")

    page.get_by_role("tab", name="Healthcare professionals").click()
    page.click("#signout")
    wait_text(page, "status", "Public")
    page.get_by_role("tab", name="Chat").click()
    last = ask(page, DOSE).split(DOSE)[-1]  # the reply to the question asked after signing out
    assert "For healthcare professionals only" in last and "100 mg" not in last


def test_maintainer_reindex_shows_progress_and_finishes(page, server):
    server.cli("maintainer", "add", "ops@example.org", "--password", "maintainer passphrase 1")
    assert not page.get_by_role("tab", name="Maintainer").is_visible()
    sign_in(page, "ops@example.org", "maintainer passphrase 1")
    page.get_by_role("tab", name="Maintainer").click()
    page.wait_for_function("() => document.querySelector('#index-status').innerText.includes('public/en')",
                           timeout=30000)
    doc = server.root / "corpus" / "public-en" / "questions-for-your-doctor.md"
    doc.write_text(doc.read_text() + "\n## About support\n- Is there a patient support group near me?\n")
    page.click("#reindex")
    page.wait_for_selector("#reindex-message .progress-text, #reindex-message .eta-bar, .progress-level",
                           timeout=30000, state="attached")
    page.wait_for_function("() => document.querySelector('#reindex-message').innerText.includes('1 updated')",
                           timeout=120000)
    assert "✅" in page.locator("#reindex-message").inner_text()
    page.get_by_role("tab", name="Chat").click()
    assert "NTRK" in ask(page, "What is TRK fusion cancer?")


def test_api_public_hcp_and_invalid_tokens(server):
    from gradio_client import Client

    from chatbot.accounts import Accounts

    client = Client(server.url, verbose=False)
    public = client.predict("What is TRK fusion cancer?", [], "", api_name="/ask")
    assert public["kind"] == "answer" and public["citations"][0]["audience"] == "public"
    forged = client.predict(DOSE, [], "forged-token", api_name="/ask")
    assert forged["kind"] == "hcp_only" and "100 mg" not in forged["answer"]
    accounts = Accounts(f"sqlite:///{server.root / 'data' / 'accounts.sqlite3'}")
    accounts.register(name="Jan Jansen", email="jan@example.org", profession="pharmacist", country="NL",
                      registration_number="29012345602", password=PASSWORD)
    accounts.approve("jan@example.org")
    token, _ = accounts.sign_in("jan@example.org", PASSWORD)
    hcp = client.predict(DOSE, [], token, api_name="/ask")
    assert hcp["kind"] == "answer" and "100 mg" in hcp["answer"]
    assert any(c["audience"] == "hcp" for c in hcp["citations"])
    follow = client.predict("And how is it found?", ["What is TRK fusion cancer?"], "", api_name="/ask")
    assert follow["kind"] == "answer" and "test" in follow["answer"].lower()
    accounts.sign_out(token)
    assert client.predict(DOSE, [], token, api_name="/ask")["kind"] == "hcp_only"


# --- security: the page under its Content-Security-Policy, the UI's own events and their sessions ------
def csp_of(headers: dict) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in headers["content-security-policy"].split("; ")}


def test_the_chat_works_under_the_csp_with_no_violation(browser, server):
    """The page as a Dutch browser gets it: the enforced policy on the document (scripts from this
    origin and the page's own inline scripts by hash; no 'unsafe-eval'), the Dutch screen from the
    browser's language, a cited answer with its source card, and not one violation. Then an inline
    script injected into the page is refused and reported: the watcher sees a violation when there
    is one."""
    context = browser.new_context(viewport={"width": 1200, "height": 1400}, locale="nl-NL")
    violations = watch_csp(context)
    page = context.new_page()
    try:
        document = page.goto(server.url).all_headers()
        csp = csp_of(document)
        assert csp["script-src"][0] == "'self'" and all(s.startswith("'sha256-") for s in csp["script-src"][1:])
        assert csp["frame-ancestors"] == ["'none'"] and csp["connect-src"] == ["'self'"]
        assert document["x-frame-options"] == "DENY" and document["x-content-type-options"] == "nosniff"
        assert "strict-transport-security" not in document  # not behind TLS here
        page.wait_for_selector("#question textarea", timeout=60000)
        page.wait_for_function("() => document.querySelector('#send').innerText.trim() === 'Versturen'",
                               timeout=30000)
        text = ask(page, "Wat is TRK-fusiekanker?")
        assert "TRK-fusiekanker" in text and "[1]" in text
        assert page.locator("#live").get_attribute("aria-live") == "polite"  # our script (ui.js) ran
        click_where_it_is(page, page.locator("#chatbot a.cite").first)
        card = page.locator("#chatbot details.citation").first
        assert card.evaluate("d => d.open") and card.locator("blockquote mark").count() >= 1
        assert not violations, violations
        with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
            page.evaluate("""() => { const s = document.createElement('script');
                s.textContent = 'window.injected = 1'; document.head.appendChild(s); }""")
        assert page.evaluate("() => window.injected") is None
        assert any("script-src" in v for v in violations), violations
    finally:
        context.close()


_CONFIGS: dict[str, dict] = {}


def ui_event(server, api_name: str, *data, session_hash: str | None = None) -> tuple[list, dict]:
    """Call one of the page's own events as the page calls it (over Gradio's queue: join, then read
    the event stream), without a browser: (the outputs, the stream's response headers)."""
    config = _CONFIGS.setdefault(server.url, httpx.get(f"{server.url}config", timeout=30).json())
    dep = next(d for d in config["dependencies"] if d["api_name"] == api_name)
    session = session_hash or secrets.token_hex(8)
    joined = httpx.post(f"{server.url}gradio_api/queue/join", timeout=30, json={
        "data": list(data), "fn_index": dep["id"], "session_hash": session, "event_data": None,
        "trigger_id": dep["targets"][0][0] if dep["targets"] else None})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{server.url}gradio_api/queue/data", params={"session_hash": session},
                      timeout=120) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                assert message.get("success"), message
                return message["output"]["data"], dict(stream.headers)
    raise AssertionError(f"{api_name}: the stream ended without a result")


# Every event of the page that calls the server, by what it may read or change. The test below fails
# when an event is added that is in none of these lists.
NO_STATE = {"browser_language"} | {f"next_{i}" for i in range(4)}  # the language; a button's text into the box
PUBLIC_BY_DESIGN = {  # what anyone may do, the same for every caller; nothing behind an account
    "sign_in", "register",  # (throttled, no enumeration: tests/test_accounts.py)
    "feedback",  # a thumb on this chat's own replies (held server-side in gr.State)
    "contact",  # contact details for this chat's own report (its case held server-side in gr.State)
}
SESSION_READ = {  # answers or shows by the session behind the token, checked server-side
    "chat_send", "chat_submit", *(f"next_{i}_answer" for i in range(4)),  # HCP texts for a verified HCP only
    "language", "status", "status_after_sign_in", "status_after_sign_out",  # the status line, the maintainer tab
    "sign_out",  # ends the token's own session
}
MAINTAINER_ONLY = ("maintainer_tab", "overview_tab", "reindex", "approve", "reject", "unlock", "cases",
                   "case_mark", "cases_export_csv", "cases_export_json")


def test_every_event_of_the_page_is_private_and_has_its_session_test(server):
    from gradio_client import Client

    config = httpx.get(f"{server.url}config", timeout=30).json()
    events = {d["api_name"]: d for d in config["dependencies"] if d["backend_fn"]}
    assert set(events) == NO_STATE | PUBLIC_BY_DESIGN | SESSION_READ | set(MAINTAINER_ONLY) | {"ask"}, \
        "an event was added or renamed: classify it here, and test its session if it reads or changes state"
    assert [name for name, d in events.items() if d["api_visibility"] != "private"] == ["ask"]
    described = Client(server.url, verbose=False).view_api(print_info=False, return_format="dict")
    assert list(described["named_endpoints"]) == ["/ask"] and not described["unnamed_endpoints"]


@pytest.fixture(scope="module")
def guarded(server):
    """For the session tests: the server's accounts database with a verified HCP, a maintainer (and a
    signed-out maintainer token), a pending registration, an account held back after failed
    sign-ins, and a side-effect case."""
    from gradio_client import Client

    from chatbot.accounts import Accounts

    accounts = Accounts(f"sqlite:///{server.root / 'data' / 'accounts.sqlite3'}")
    accounts.register(name="Henk Bakker", email="guard-hcp@example.org", profession="physician", country="NL",
                      registration_number="39012345603", password=PASSWORD)
    accounts.approve("guard-hcp@example.org")
    server.cli("maintainer", "add", "guard-ops@example.org", "--password", "maintainer passphrase 1")
    hcp, _ = accounts.sign_in("guard-hcp@example.org", PASSWORD)
    maintainer, _ = accounts.sign_in("guard-ops@example.org", "maintainer passphrase 1")
    revoked, _ = accounts.sign_in("guard-ops@example.org", "maintainer passphrase 1")
    accounts.sign_out(revoked)
    accounts.register(name="Piet Smit", email="guard-pending@example.org", profession="nurse_specialist", country="NL",
                      registration_number="49012345604", password=PASSWORD)
    accounts.register(name="Kees Visser", email="guard-locked@example.org", profession="pharmacist",
                      country="NL", registration_number="59012345605", password=PASSWORD)
    accounts.approve("guard-locked@example.org")
    for n in range(5):
        with pytest.raises(Exception, match="incorrect"):
            accounts.sign_in("guard-locked@example.org", f"wrong password {n}", client="198.51.100.7")
    reply = Client(server.url, verbose=False).predict(REPORT, [], "", api_name="/ask")
    assert reply["kind"] == "adverse_event"
    with accounts.engine.connect() as db:
        case_id, ref = db.exec_driver_sql("SELECT id, ref FROM cases WHERE message = ?", (REPORT,)).one()
    yield {"accounts": accounts, "hcp": hcp, "maintainer": maintainer, "revoked": revoked, "case": str(case_id),
           "ref": ref}
    accounts.engine.dispose()


REPORT = "Since I started Vitrakvi I get dizzy every morning."


def guarded_state(server, accounts) -> dict:
    """What a maintainer-only event could read or change, as the database and the index hold it
    (read without going through the audited paths)."""
    with accounts.engine.connect() as db:
        cases = db.exec_driver_sql("SELECT id, status, contact FROM cases ORDER BY id").all()
    return {
        "pending": sorted(a.email for a in accounts.pending()),
        "locked": sorted((a.email, n) for a, n in accounts.locked()),
        "cases": [tuple(c) for c in cases],
        "audit": [(e.event, e.actor) for e in accounts.audit()],
        "generation": httpx.get(f"{server.url}api/v1/health", timeout=30).json()["generation"],
    }


MAINTAINER_CALLS = {  # each maintainer-only event with the inputs a maintainer would send (token first)
    "maintainer_tab": lambda tok, g: (tok, "English"), "overview_tab": lambda tok, g: (tok, "English"),
    "reindex": lambda tok, g: (tok, "English"),
    "approve": lambda tok, g: (tok, "guard-pending@example.org", "", "English"),
    "reject": lambda tok, g: (tok, "guard-pending@example.org", "not on the register", "English"),
    "unlock": lambda tok, g: (tok, "guard-locked@example.org", "English"),
    "cases": lambda tok, g: (tok, "English"),
    "case_mark": lambda tok, g: (tok, g["case"], "forwarded", "English"),
    "cases_export_csv": lambda tok, g: (tok,), "cases_export_json": lambda tok, g: (tok,),
}


@pytest.mark.parametrize("who", ["no token", "forged", "verified HCP", "signed-out maintainer"])
def test_maintainer_events_refuse_without_a_maintainer_session(server, guarded, who):
    """Called as the page calls them, with no token, a made-up one, a verified HCP's or a maintainer's
    token whose session has ended: every maintainer-only event refuses, and reads and changes
    nothing (no pending registration, locked account, case or export shown; nothing approved,
    unlocked, marked, exported or re-indexed; nothing audited)."""
    assert set(MAINTAINER_CALLS) == set(MAINTAINER_ONLY)
    token = {"no token": "", "forged": "forged-" + secrets.token_hex(16), "verified HCP": guarded["hcp"],
             "signed-out maintainer": guarded["revoked"]}[who]
    before = guarded_state(server, guarded["accounts"])
    assert "guard-pending@example.org" in before["pending"] and before["cases"]
    assert "guard-locked@example.org" in [email for email, _ in before["locked"]]
    for name, inputs in MAINTAINER_CALLS.items():
        out, _ = ui_event(server, name, *inputs(token, guarded))
        shown = json.dumps(out, ensure_ascii=False)
        if name.startswith("cases_export"):
            assert out[0]["value"] is None and out[0]["visible"] is False, (name, out)
        else:
            assert "Only signed-in maintainers can do this." in shown, (name, out)
        for secret in ("guard-pending@example.org", "guard-locked@example.org", "dizzy", "Vitrakvi"):
            assert secret not in shown, (name, secret)
    assert guarded_state(server, guarded["accounts"]) == before


def test_maintainer_events_work_for_a_maintainer_session(server, guarded):
    """The same calls with a live maintainer session do read and change: the refusals above are the
    session check, not a broken call."""
    out, _ = ui_event(server, "overview_tab", guarded["maintainer"], "English")
    assert "guard-pending@example.org" in out[1] and "guard-locked@example.org" in out[2]
    assert "dizzy" in ui_event(server, "cases", guarded["maintainer"], "English")[0][0]
    marked = ui_event(server, "case_mark", guarded["maintainer"], guarded["case"], "forwarded", "English")[0][0]
    assert f"case {guarded['case']}: forwarded" in marked
    exported = ui_event(server, "cases_export_json", guarded["maintainer"])[0][0]
    assert exported["visible"] is True and exported["value"]["orig_name"].endswith(".json")
    assert "unlocked" in ui_event(server, "unlock", guarded["maintainer"], "guard-locked@example.org", "English")[0][0]
    assert "approved" in ui_event(server, "approve", guarded["maintainer"], "guard-pending@example.org", "",
                                  "English")[0][0]
    after = guarded_state(server, guarded["accounts"])
    assert "guard-pending@example.org" not in after["pending"]
    assert "guard-locked@example.org" not in [email for email, _ in after["locked"]]
    assert {"cases.view", "cases.export", "case.status", "account.unlock"} <= {event for event, _ in after["audit"]}


def test_session_events_read_by_the_server_side_session_only(server, guarded):
    """The status line and the maintainer tab, the chat's HCP answers and sign-out go by the session
    behind the token, never by what the page sends: a forged or ended token is the public, and
    sign-out with a forged token ends nothing."""
    for token in ("forged-" + secrets.token_hex(16), guarded["revoked"]):
        for name in ("status", "status_after_sign_in", "status_after_sign_out"):
            status, tab = ui_event(server, name, token, "English")[0]
            assert "Public" in status and "guard-ops" not in status and tab["visible"] is False, (name, status)
        assert "Public" in ui_event(server, "language", "English", token)[0][0]
        chat = json.dumps(ui_event(server, "chat_send", DOSE, [], None, None, token, "English")[0][0])
        assert "For healthcare professionals only" in chat and "100 mg" not in chat
        ui_event(server, "sign_out", token, "English")
        assert guarded["accounts"].session(guarded["maintainer"]) is not None  # ends no other session
    status, tab = ui_event(server, "status", guarded["maintainer"], "English")[0]
    assert "Maintainer" in status and tab["visible"] is True  # the live session is honoured
    chat = json.dumps(ui_event(server, "chat_send", DOSE, [], None, None, guarded["hcp"], "English")[0][0])
    assert "100 mg" in chat


def test_the_contact_form_reaches_only_this_chats_own_report(server, guarded):
    """The case a contact form adds to is held server-side (gr.State) by the chat that made the
    report: a reference sent in the request is ignored, so nobody adds details to another's case."""
    before = guarded_state(server, guarded["accounts"])["cases"]
    out, _ = ui_event(server, "contact", guarded["ref"], "Mallory", "mallory@example.org", True, "English")
    assert "could not be stored" in out[0]
    assert guarded_state(server, guarded["accounts"])["cases"] == before


def test_case_exports_are_not_kept_past_their_download():
    """An export (reporters' contact details) is written to a folder only the app's user can read,
    and is deleted EXPORT_MAX_AGE after it was made (Gradio's copy too: Blocks' delete_cache)."""
    import os
    import tempfile
    import time

    from chatbot import ui

    root = ui.export_folder()
    assert root.stat().st_mode & 0o777 == 0o700
    old, new = Path(tempfile.mkdtemp(dir=root)), Path(tempfile.mkdtemp(dir=root))
    (old / "side-effect-cases.csv").write_text("id,contact\n1,anna@example.org\n")
    made = time.time() - ui.EXPORT_MAX_AGE - 60
    os.utime(old, (made, made))
    assert ui.export_folder() == root
    assert not old.exists() and new.exists()


def test_the_event_stream_carries_the_security_headers(server):
    """Gradio's streamed results (server-sent events), through the real uvicorn server."""
    out, headers = ui_event(server, "chat_send", "What is TRK fusion cancer?", [], None, None, "", "English")
    assert "NTRK" in json.dumps(out[0])
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert csp_of(headers)["frame-ancestors"] == ["'none'"] and "referrer-policy" in headers


def test_gradio_events_do_not_search_for_a_missing_matplotlib(monkeypatch):
    """Gradio imports matplotlib around every event; once recorded as absent, that import fails at
    once instead of walking sys.path, and Gradio's event wrapper still runs."""
    import importlib.util
    import sys

    from gradio.utils import MatplotlibBackendMananger

    from chatbot.ui import skip_missing_matplotlib

    if importlib.util.find_spec("matplotlib") is not None:
        pytest.skip("matplotlib is installed here: nothing to record")
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    try:
        skip_missing_matplotlib()
        assert sys.modules["matplotlib"] is None
        with pytest.raises(ImportError):
            import matplotlib  # noqa: F401
        with MatplotlibBackendMananger():
            pass
    finally:
        sys.modules.pop("matplotlib", None)


# --- the screens at a phone's and a desktop's width: layout, accessibility, screenshots ----------
def serious_violations(page, where: str) -> list[dict]:
    """axe-core's serious and critical WCAG 2.2 A/AA violations on the page as it is now."""
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): `make test` installs it (npm ci in tests/axe)")
    # Gradio fades changed text in: measure contrast once finite transitions have ended
    page.wait_for_function("""() => document.getAnimations().every(a => a.playState !== 'running'
        || !isFinite(a.effect.getComputedTiming().endTime))""")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # evaluated through the DevTools protocol: a <script> tag (add_script_tag) would be inline
        # script, which the page's CSP rightly refuses
        page.evaluate(AXE.read_text())
    found = page.evaluate("""async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))
        .violations.map(v => ({id: v.id, impact: v.impact, help: v.help, why: v.nodes[0].failureSummary,
                               nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))""", WCAG)
    minor = [f"{v['id']} ({v['impact']})" for v in found if v["impact"] not in ("serious", "critical")]
    print(f"axe, {where}: {len(found)} violations" + (f"; below serious: {', '.join(minor)}" if minor else ""))
    return [dict(v, where=where) for v in found if v["impact"] in ("serious", "critical")]


def shoot(page, folder: Path, name: str, full_page: bool = False) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def fits(page) -> bool:
    """No horizontal scrolling: nothing is wider than the window."""
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def in_view(page, selector: str) -> bool:
    return page.locator(selector).evaluate(
        "e => { const r = e.getBoundingClientRect(); return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight }")


@pytest.mark.parametrize("width", [375, 1280])
def test_every_screen_at_phone_and_desktop_width(browser, server, tmp_path, width):
    """One page per width, several checks per screen: the layout (compact header, disclaimer in
    view, no horizontal scrolling), axe (0 serious or critical violations) on the empty chat, an
    answer with its source open, the HCP refusal, the sign-in tab and the maintainer tab; source
    cards by keyboard and for screen readers, suggested questions; a screenshot of each screen."""
    context = browser.new_context(viewport={"width": width, "height": 800 if width < 600 else 900},
                                  locale="en-GB")
    violations = watch_csp(context)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#question textarea", timeout=60000)
    page.wait_for_function("() => document.getElementById('live').getAttribute('aria-live') === 'polite'")
    problems: list[dict] = []
    try:
        # the empty chat: name, status and language in one compact header; example questions
        assert page.locator("#title h1").inner_text().strip() == "TRK Assistant"
        assert "Public" in page.locator("#status").inner_text()
        assert page.get_by_label("Nederlands").is_visible()
        header = page.locator("#header").bounding_box()
        assert header["height"] < (150 if width < 600 else 90), header
        assert in_view(page, "#disclaimer") and fits(page)
        assert page.locator("#next-head").inner_text().strip() == "Example questions"
        problems += serious_violations(page, "empty chat")
        shoot(page, tmp_path, f"empty-chat-{width}")
        # focus moves through the page in reading order: language, tabs, questions offered, the box
        order = page.evaluate("""() => ['#lang input', '[role=tab]', '#next-0', '#question textarea', '#send']
            .map(s => document.querySelector(s))""" + """.every((e, i, all) => i === 0 ||
            (all[i - 1].compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING))""")
        assert order

        # an answer: announced once complete, its markers open the source cards under it
        ask(page, "What is TRK fusion cancer?")
        live = page.locator("#live")
        assert live.get_attribute("role") == "status"
        spoken = live.inner_text()
        assert "NTRK" in spoken and "[1]" not in spoken and "<" not in spoken
        log = page.locator("#chatbot [role=log]")
        assert log.get_attribute("aria-live") == "off"  # the live region speaks, not every streamed step
        assert page.locator("#chatbot [data-testid=bot][aria-label]").count() == 0
        marker = page.locator("#chatbot a.cite").first
        assert "Source" in marker.inner_text()  # its name for a screen reader: "Source [1]"
        marker.focus()
        page.keyboard.press("Enter")
        card = page.locator("#chatbot details.citation").first
        assert card.evaluate("d => d.open")
        assert page.evaluate("() => document.activeElement.tagName") == "SUMMARY"
        assert card.locator("mark").count() >= 1 and "Public" in card.locator(".badge").inner_text()
        assert fits(page)
        problems += serious_violations(page, "answer with its sources open")
        page.locator("#chatbot [data-testid=bot]").last.evaluate(
            "e => e.scrollIntoView({block: 'start', behavior: 'instant'})")  # the answer, then its card
        shoot(page, tmp_path, f"answer-with-sources-{width}")
        page.keyboard.press("Enter")  # the focused summary collapses its card
        assert not card.evaluate("d => d.open")

        # two or three suggested questions; one click asks it
        assert page.locator("#next-head").inner_text().strip() == "You could also ask"
        offered = [page.locator(f"#next-{i}").inner_text().strip() for i in range(4)
                   if page.locator(f"#next-{i}").is_visible()]
        assert 2 <= len(offered) <= 3 and "What is TRK fusion cancer?" not in offered
        text = ask(page, click="#next-0")
        assert offered[0] in text and text.count("[1]") >= 2

        # the HCP refusal
        text = ask(page, DOSE)
        assert "For healthcare professionals only" in text.split(DOSE)[-1]
        assert page.locator("#chatbot details.citation.aud-hcp").count() == 0
        problems += serious_violations(page, "HCP refusal")
        shoot(page, tmp_path, f"hcp-refusal-{width}")

        # the sign-in tab, then the maintainer tab
        page.get_by_role("tab", name="Healthcare professionals").click()
        page.wait_for_selector("#signin-email input, #signin-email textarea")
        assert fits(page)
        problems += serious_violations(page, "sign-in tab")
        shoot(page, tmp_path, f"sign-in-{width}")
        email = f"ops{width}@example.org"
        server.cli("maintainer", "add", email, "--password", "maintainer passphrase 1")
        sign_in(page, email, "maintainer passphrase 1")
        page.get_by_role("tab", name="Maintainer").click()
        wait_text(page, "index-status", "public/en")
        assert fits(page)
        problems += serious_violations(page, "maintainer tab")
        shoot(page, tmp_path, f"maintainer-{width}")

        if width < 600:  # reflow (WCAG 1.4.10): still no horizontal scrolling at 320 px
            page.set_viewport_size({"width": 320, "height": 640})
            page.get_by_role("tab", name="Chat").click()
            assert fits(page)
        else:  # 200% zoom: the same page in half the CSS pixels
            page.set_viewport_size({"width": 640, "height": 450})
            page.get_by_role("tab", name="Chat").click()
            assert fits(page) and in_view(page, "#disclaimer")
        print(f"\nscreenshots at {width} px: {tmp_path}")
    finally:
        context.close()
    assert not problems, "\n".join(f"{p['where']}: {p['id']} ({p['impact']}) {p['nodes']}: {p['why']}"
                                    for p in problems)
    assert not violations, violations


def test_source_cards_escape_corpus_text_and_link_only_web_addresses():
    from chatbot.answer import Citation, Reply
    from chatbot.ui import render_reply, render_sources, spoken

    evil = '<img src=x onerror="alert(1)">'
    reply = Reply("answer", f"First {evil} sentence. [1] Second sentence. [2] Not ours [7]", [
        Citation(1, "doc", f"Title {evil}", "Heading <b>", "public", "en",
                 [{"title": "Site", "ref": "https://example.org/a?b=1&c=2"},
                  {"title": "Evil", "ref": "javascript:alert(1)"}, {"title": "Book", "ref": "Journal 12:3"}],
                 f"Before.\nFirst {evil} sentence.\nAfter.", [f"First {evil} sentence."], "doc#0"),
        Citation(2, "hcp-doc", "HCP text", "Doses", "hcp", "en", [], "Second sentence.", ["Second sentence."],
                 "hcp-doc#0"),
    ])
    body, cards = render_reply(reply, "en", turn=5), render_sources(reply, "en", turn=5)
    assert "<img" not in body + cards and "&lt;img" in body and "<b>" not in cards
    assert body.count('href="#src-5-1"') == 1 and 'href="#src-5-2"' in body and "#src-5-7" not in body
    assert 'id="src-5-1"' in cards and 'id="src-5-2"' in cards and "\n" not in cards
    assert "<mark>First &lt;img" in cards and "aud-hcp" in cards and "HCP only" in cards
    assert 'href="https://example.org/a?b=1&amp;c=2"' in cards and "javascript:" not in cards.split("Evil")[0]
    assert '<a href="javascript' not in cards and "Journal 12:3" in cards
    assert "[1]" not in spoken(reply, "en") and "&lt;img" in spoken(reply, "en")
