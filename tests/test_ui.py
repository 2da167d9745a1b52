"""The real Gradio app in a real browser (Debian's chromium driven by Playwright), and its API.

Accessibility is checked with axe-core (the npm package; `make test` installs it into tests/axe/)
against WCAG 2.0/2.1/2.2 A and AA, at a phone's and a desktop's width."""

from __future__ import annotations

import shutil
from pathlib import Path

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
        page.add_script_tag(path=str(AXE))
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
