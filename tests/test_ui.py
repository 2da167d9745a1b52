"""The real Gradio app in a real browser (Debian's chromium driven by Playwright), and its API."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import served_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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


@pytest.fixture
def page(browser, server, tmp_path, request):
    context = browser.new_context(viewport={"width": 1200, "height": 1400}, locale="en-GB")
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


def ask(page, question: str) -> str:
    count = page.locator("#chatbot .message-row, #chatbot [data-testid='bot']").count()
    page.fill("#question textarea", question)
    page.click("#send")
    page.wait_for_function(
        """(n) => document.querySelectorAll('#chatbot .message-row, #chatbot [data-testid="bot"]').length >= n + 2""",
        arg=count, timeout=60000)
    page.wait_for_timeout(800)  # let the streamed reply finish
    return page.locator("#chatbot").inner_text()


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


def test_public_question_gets_an_answer_with_visible_citations(page):
    text = ask(page, "What is TRK fusion cancer?")
    assert "NTRK" in text and "[1]" in text
    page.wait_for_selector("#sources details.citation", timeout=30000)
    first = page.locator("#sources details.citation").first
    assert first.get_attribute("data-audience") == "public"
    first.locator("summary").click()
    assert "TRK" in first.locator("blockquote").inner_text()
    assert first.locator("blockquote mark").count() >= 1
    assert "Public" in first.locator("summary").inner_text()


def test_hcp_question_is_refused_for_the_public(page):
    text = ask(page, DOSE)
    assert "For healthcare professionals only" in text and "100 mg" not in text
    assert "HCP only" not in page.locator("#sources").inner_text()


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
    page.wait_for_function("() => document.querySelector('#register-message').innerText.includes('pending')",
                           timeout=30000)
    sign_in(page, "anna@example.org", expect="waiting for verification")
    assert "Public" in page.locator("#status").inner_text()

    server.cli("hcp", "approve", "anna@example.org")
    sign_in(page, "anna@example.org")
    assert "Verified healthcare professional" in page.locator("#status").inner_text()
    text = ask(page, DOSE)
    assert "100 mg" in text and "twice daily" in text
    page.wait_for_selector("#sources details[data-audience='hcp']", timeout=30000)
    assert "HCP only" in page.locator("#sources").inner_text()

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
