"""Side-effect cases (GVP VI): written before the reply, never lost, worked through by the safety team.

The register runs on SQLite and on a real PostgreSQL server, with an injected clock (no sleeping)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging

import pytest
from typer.testing import CliRunner

from chatbot.accounts import AccountError, Accounts, ValidationError, utcnow
from chatbot.cases import CONSENT, CaseLog, Cases, assess, load_case_terms
from chatbot.config import Settings
from chatbot.policy import load_glossary
from tests import test_accounts, test_ui
from tests.conftest import CORPUS

# fixtures shared with the account and browser tests
clock, accounts, browser = test_accounts.clock, test_accounts.accounts, test_ui.browser
GLOSSARY = load_glossary(CORPUS)
TERMS = load_case_terms(CORPUS)


@pytest.fixture
def cases(accounts):  # SQLite and PostgreSQL, as for the account tests
    return Cases(accounts)


def add(cases, message, language="en", audience="public", model_says=True):
    return cases.add(message=message, reply="Thank you for telling us.", language=language, audience=audience,
                     assessed=assess(message, GLOSSARY, TERMS, model_says), flagged_by="model", probability=0.9)


def events(cases):
    return [(e.event, e.actor, e.subject) for e in cases.accounts.audit()]


@pytest.mark.parametrize("text,medicines,reactions,missing", [
    ("Since I started Vitrakvi I get dizzy every morning.", ["larotrectinib"], ["dizziness"], []),
    ("Sinds ik larotrectinib gebruik ben ik erg moe en misselijk.", ["larotrectinib"], ["fatigue", "nausea"], []),
    ("My son has had a rash since he began taking his TRK inhibitor.", ["(unnamed medicine)"], ["rash or itching"],
     ["suspect_medicine"]),
    ("Mijn moeder voelt zich zo raar sinds de pillen", ["(unnamed medicine)"], ["(stated in text)"],
     ["suspect_medicine"]),  # no listed word: the model's reading stands for the reaction
    ("Rozlytrek: weird feeling in the feet", ["entrectinib"], ["(stated in text)"], ["patient"]),
])
def test_what_a_report_shows(text, medicines, reactions, missing):
    found = assess(text, GLOSSARY, TERMS, model_says_report=True)
    assert found["medicines"] == medicines and found["reactions"] == reactions
    assert [k for k, v in found["criteria"].items() if not v] == missing
    assert found["criteria"]["reporter"]  # the chat user is the reporter
    cut_off_only = assess("Rozlytrek: weird feeling in the feet", GLOSSARY, TERMS, model_says_report=False)
    assert not cut_off_only["criteria"]["suspected_reaction"]  # flagged by the recall cut-off only: to check


def test_reports_become_cases_before_the_reply(engine):
    """The real engine: each report is in the register when ask() returns, with its reply."""
    asked = [("Since I started Vitrakvi I get dizzy every morning.", "public", "en"),
             ("Sinds ik larotrectinib gebruik ben ik erg moe en misselijk.", "public", "nl"),
             ("my patient on entrectinib gained 8 kg, is that known?", "hcp", "en")]
    replies = [engine.ask(q, [], role) for q, role, _ in asked]
    rows = {r["message"]: r for r in engine.cases.cases().list(actor="test")}
    for (q, role, lang), reply in zip(asked, replies):
        assert reply.kind == "adverse_event" and reply.case_ref
        row = rows[q]
        assert (row["language"], row["audience"], row["reply"], row["status"]) == (lang, role, reply.answer, "new")
        assert row["received_at"].endswith("Z") and row["age_days"] == 0 and not row["flag"]
        assert row["reporter"] and row["suspect_medicine"] and row["suspected_reaction"]
    assert "ref" not in replies[0].to_json() and "case_ref" not in replies[0].to_json()  # not in the API


def test_a_database_failure_falls_back_to_the_file_loudly_and_is_imported_later(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    down = Settings(corpus_dir=CORPUS, data_dir=tmp_path / "data", database_url=f"sqlite:///{blocker}/db.sqlite3")
    log = CaseLog(down)
    with caplog.at_level(logging.CRITICAL, logger="chatbot.cases"):
        ref = log.record(message="Since I started Vitrakvi I get dizzy.", reply="Thank you.", language="en",
                         audience="public", context=["What is Vitrakvi?"], probability=0.93, model_says_report=True)
        log.add_contact(ref, "anna@example.org", "Anna", consent=True)
    assert "SIDE-EFFECT REPORT NOT IN THE DATABASE" in caplog.text
    lines = [json.loads(x) for x in log.fallback_path.read_text().splitlines()]
    assert lines[0]["ref"] == ref and lines[0]["message"].startswith("Since I started") and lines[1]["kind"] == "contact"
    # a report from before cases existed (the old log line) comes in too
    with open(log.fallback_path, "a") as fh:
        fh.write(json.dumps({"ts": "2026-11-20T10:00:00+00:00", "language": "nl", "reporter": "public",
                             "text": "ik ben duizelig", "medicines": []}) + "\n")
    up = Cases(Accounts(f"sqlite:///{tmp_path / 'up.sqlite3'}"))
    assert up.import_fallback(log.fallback_path, actor="test") == 2
    rows = sorted(up.list(actor="test"), key=lambda r: r["received_at"])
    assert [r["message"] for r in rows] == ["ik ben duizelig", "Since I started Vitrakvi I get dizzy."]
    assert rows[0]["received_at"] == "2026-11-20T10:00:00Z" and rows[1]["contact"] == "anna@example.org"
    assert rows[1]["context"] == ["What is Vitrakvi?"] and rows[1]["medicines"] == ["larotrectinib"]
    assert not log.fallback_path.exists() and list(log.fallback_path.parent.glob("adverse_events.imported-*"))


def test_the_safety_teams_workflow(cases, clock):
    first = add(cases, "Since I started Vitrakvi I get dizzy every morning.")
    clock.advance(days=3)
    second = add(cases, "=HYPERLINK(\"http://evil\") my daughter has a rash on Rozlytrek", audience="hcp")
    clock.advance(days=8)  # the first is 11 days old, the second 8
    rows = {r["id"]: r for r in cases.list(actor="account:7")}
    assert (rows[first.id]["age_days"], rows[second.id]["age_days"]) == (11, 8)
    assert rows[first.id]["flag"] == "not forwarded after 10 days" and rows[second.id]["flag"] == ""
    assert rows[first.id]["deadline_serious"] == "2026-12-10"  # 15 days from receipt
    cases.mark(first.id, "forwarded", actor="account:7")
    assert not {r["id"]: r for r in cases.list(actor="account:7")}[first.id]["flag"]
    with pytest.raises(AccountError, match="case 1 is forwarded: it can become closed, not new"):
        cases.mark(first.id, "new", actor="account:7")
    with pytest.raises(AccountError, match="unknown status 'sent': use one of new, forwarded, closed"):
        cases.mark(first.id, "sent", actor="account:7")
    with pytest.raises(AccountError, match="there is no case 99"):
        cases.mark(99, "closed", actor="account:7")
    with pytest.raises(AccountError, match="'abc' is not a case number"):
        cases.mark("abc", "closed", actor="account:7")
    cases.mark(first.id, "closed", actor="account:7")
    with pytest.raises(AccountError, match="it can become nothing"):
        cases.mark(first.id, "forwarded", actor="account:7")

    with pytest.raises(ValidationError, match="consent"):
        cases.add_contact(second.ref, "anna@example.org", consent=False)
    with pytest.raises(ValidationError, match="email address or a phone number"):
        cases.add_contact(second.ref, "call me maybe", consent=True)
    with pytest.raises(AccountError, match="no report"):
        cases.add_contact("not-a-ref", "anna@example.org", consent=True)
    cases.add_contact(second.ref, "+31 6 1234 5678", "Anna", consent=True)

    exported = list(csv.DictReader(io.StringIO(cases.export("csv", actor="account:7"))))
    assert [r["status"] for r in exported] == ["closed", "new"]
    assert exported[1]["contact"] == "'+31 6 1234 5678" and exported[1]["contact_name"] == "Anna"
    assert exported[1]["message"].startswith("'=HYPERLINK")  # shown as text by a spreadsheet, never run
    assert exported[1]["medicines"] == "entrectinib" and exported[1]["patient"] == "True"
    as_json = json.loads(cases.export("json", actor="account:7"))
    assert as_json[1]["contact"] == "+31 6 1234 5678" and as_json[0]["forwarded_at"]
    with pytest.raises(AccountError, match="unknown export format 'xml'"):
        cases.export("xml", actor="account:7")
    stored = json.loads(cases.accounts.Session().get(type(second), second.id).contact)
    assert stored["consent_text"] == CONSENT["en"] and stored["consent_at"]

    trail = events(cases)
    assert trail.count(("cases.view", "account:7", "-")) == 2
    assert ("case.status", "account:7", f"case:{first.id}") in trail and ("cases.export", "account:7", "-") in trail
    assert ("case.contact", "reporter", f"case:{second.id}") in trail
    assert not any("+31" in e.detail or "Anna" in e.detail for e in cases.accounts.audit())  # no details in the log


def test_cases_commands(tmp_path, clock):
    """`python -m chatbot cases list [--json] | export [--format] | mark ID STATUS` (in-process)."""
    from chatbot.cli import app

    db = tmp_path / "data" / "accounts.sqlite3"
    clock.now = utcnow() - dt.timedelta(days=13)  # the commands run on the real clock
    cases = Cases(Accounts(f"sqlite:///{db}", clock=clock))
    add(cases, "Since I started Vitrakvi I get dizzy every morning.")
    clock.advance(days=12)
    add(cases, "Sinds ik larotrectinib gebruik ben ik erg moe.", language="nl")
    runner = CliRunner()
    env = {"TRK_DATA_DIR": str(tmp_path / "data"), "TRK_DATABASE_URL": ""}

    def run(*args, code=0):
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result.output

    listing = run("cases", "list")
    assert "#1\t" in listing and "⚑ not forwarded after 10 days" in listing and "medicines: larotrectinib" in listing
    assert json.loads(run("cases", "list", "--json"))[1]["language"] == "nl"
    assert "case 1 is forwarded" in run("cases", "mark", "1", "forwarded")
    assert "no case 42" in run("cases", "mark", "42", "closed", code=1)
    assert "case 1 is forwarded: it can become closed, not new" in run("cases", "mark", "1", "new", code=1)
    assert "unknown status 'done'" in run("cases", "mark", "2", "done", code=1)
    assert run("cases", "export").startswith("id,received_at,age_days,flag,status")
    assert len(json.loads(run("cases", "export", "--format", "json"))) == 2
    assert "unknown export format 'pdf': use csv or json" in run("cases", "export", "--format", "pdf", code=1)
    out = tmp_path / "cases.csv"
    run("cases", "export", "-o", str(out))
    assert out.read_text().count("\n") == 3
    trail = [(e.event, e.actor) for e in cases.accounts.audit()]
    assert trail.count(("cases.export", "cli")) == 3 and ("case.status", "cli") in trail
    assert trail.count(("cases.view", "cli")) == 2


# --- the case flow in the real app: a real browser, then a SIGKILL ----------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, built):
    """The real app over the session's index (nothing indexed again), with its own data folder."""
    from tests.appserver import AppServer

    settings, _ = built
    root = tmp_path_factory.mktemp("cases-app")
    srv = AppServer(root, {"TRK_CORPUS_DIR": str(CORPUS), "TRK_INDEX_DIR": str(settings.index_dir)}).wait()
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def audit_events(server) -> list[str]:
    return [line.split("\t")[1] for line in server.cli("audit").stdout.splitlines()]


@pytest.mark.browser
def test_report_contact_form_and_the_safety_teams_tab_in_the_browser(browser, server):
    from tests.test_ui import ask, fill, serious_violations, sign_in, wait_text, watch_csp

    context = browser.new_context(viewport={"width": 1200, "height": 1400}, locale="en-GB")
    csp_violations = watch_csp(context)  # the whole flow under the app's Content-Security-Policy
    page = context.new_page()
    try:
        page.goto(server.url)
        page.wait_for_selector("#question textarea", timeout=60000)
        assert not page.locator("#contact-form").is_visible()
        text = ask(page, "Since I started Vitrakvi I get dizzy every morning.")
        assert "Reporting a side effect" in text and "Lareb" in text  # the reply came first, whole
        assert page.locator("#contact-form").is_visible()
        assert "optional" in page.locator("#contact-consent").inner_text()
        fill(page, "contact-how", "anna@example.org")
        page.click("#contact-send")
        wait_text(page, "contact-message", "tick the box")  # no consent, nothing kept
        page.locator("#contact-ok input").check()
        page.click("#contact-send")
        wait_text(page, "contact-message", "stored with your report")
        problems = serious_violations(page, "contact form")
        ask(page, "Sinds ik larotrectinib gebruik ben ik erg moe en misselijk.")
        wait_text(page, "contact-consent", "vrijwillig")  # the consent text in the report's language

        server.cli("maintainer", "add", "safety@example.org", "--password", "maintainer passphrase 1")
        sign_in(page, "safety@example.org", "maintainer passphrase 1")
        accounts = Accounts(f"sqlite:///{server.root / 'data' / 'accounts.sqlite3'}")
        for n in range(5):  # someone else guesses at the account: it waits, and a maintainer sees it
            with pytest.raises(AccountError, match="incorrect"):
                accounts.sign_in("safety@example.org", f"wrong password {n}", client="203.0.113.9")
        page.get_by_role("tab", name="Maintainer").click()
        wait_text(page, "locked", "safety@example.org: 5 failed sign-ins in a row")
        fill(page, "unlock-email", "safety@example.org")
        page.click("#unlock")
        wait_text(page, "unlock-message", "unlocked")

        page.get_by_role("tab", name="Side-effect reports").click()
        wait_text(page, "cases-table", "anna@example.org")
        first = page.locator("#case-1").inner_text()
        assert "larotrectinib" in first and "dizziness" in first and "new" in first and "anna@example.org" in first
        assert "fatigue, nausea" in page.locator("#case-2").inner_text()
        problems += serious_violations(page, "side-effect reports tab")
        fill(page, "case-id", "1")
        page.click("#case-mark")
        wait_text(page, "case-message", "case 1: forwarded")
        assert "forwarded" in page.locator("#case-1").inner_text()
        fill(page, "case-id", "1")
        page.click("#case-mark")  # forwarded -> forwarded: refused, saying why
        wait_text(page, "case-message", "case 1 is forwarded: it can become closed, not forwarded")
        page.click("#export-csv")
        link = page.locator("#export-file a[href*='side-effect-cases-']").first
        link.wait_for(timeout=30000)
        exported = page.request.get(link.get_attribute("href")).text()
        assert exported.startswith("id,received_at") and "anna@example.org" in exported and "forwarded" in exported
        assert not problems, [(p["where"], p["id"], p["nodes"]) for p in problems]  # axe: none serious or critical
    finally:
        context.close()
    assert not csp_violations, csp_violations
    trail = audit_events(server)
    for event in ("case.received", "case.contact", "cases.view", "case.status", "cases.export", "account.unlock"):
        assert event in trail, event
    assert trail.count("case.received") == 2 and trail.count("signin.failure") == 5


def test_a_report_survives_a_sigkill_right_after_its_reply(server):
    """The case is committed before the reply leaves: kill -9 the app the moment the reply is in,
    and a new process (the command line, as after a restart) finds the case."""
    import os
    import signal

    from gradio_client import Client

    message = "My daughter got a rash and a fever after starting Rozlytrek last week."
    reply = Client(server.url, verbose=False).predict(message, [], "", api_name="/ask")
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)
    assert reply["kind"] == "adverse_event"
    found = [r for r in json.loads(server.cli("cases", "list", "--json").stdout) if r["message"] == message]
    assert len(found) == 1 and found[0]["reply"] == reply["answer"]
    assert found[0]["medicines"] == ["entrectinib"] and found[0]["reactions"] == ["fever", "rash or itching"]
    assert found[0]["patient"] and found[0]["suspect_medicine"] and found[0]["suspected_reaction"]
