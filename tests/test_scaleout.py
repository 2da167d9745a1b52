"""The scale-out path: a Chroma server instead of the embedded store, PostgreSQL for accounts, and
two app replicas sharing both."""

from __future__ import annotations

import shutil

import pytest

from chatbot.answer import Engine
from chatbot.index import Store, build_index
from tests.appserver import AppServer
from tests.conftest import CORPUS, corpus_size, make_settings
from tests.services import ChromaServer

PASSWORD = "correct horse battery staple"
DOSE = "What dose of larotrectinib should adults take?"


@pytest.fixture(scope="module")
def chroma(tmp_path_factory):
    server = ChromaServer(tmp_path_factory.mktemp("chroma"))
    yield server
    server.stop()


@pytest.mark.parametrize("search", ["exact", "hnsw"])
def test_index_and_ask_through_a_chroma_server(chroma, tmp_path, embedder, corpus_copy, monkeypatch, search):
    """Small corpora are searched in the vectors the app loaded from the server; past
    BRUTE_FORCE_LIMIT chunks every search is an HNSW query to the server ("hnsw" forces that here)."""
    import chatbot.retrieval as retrieval

    if search == "hnsw":
        monkeypatch.setattr(retrieval, "BRUTE_FORCE_LIMIT", 0)
    settings = make_settings(tmp_path, chroma_url=chroma.url, collection_prefix=f"srv1{search}")
    first = build_index(settings, embedder)
    assert first.added == corpus_size()[0] and first.chunks_embedded == first.chunks_total
    assert not (tmp_path / "index").exists() or not any((tmp_path / "index").iterdir())  # nothing embedded locally
    assert build_index(settings, embedder).chunks_embedded == 0
    doc = corpus_copy / "public-en/inherited-or-acquired.md"
    doc.write_text(doc.read_text() + "\n## Family\nFamily members are not tested as a rule.\n")
    assert build_index(settings, embedder).updated == 1

    engine = Engine(settings, embedder)
    public = engine.ask(DOSE)
    assert public.kind == "hcp_only" and not any(c.audience == "hcp" for c in public.citations)
    hcp = engine.ask(DOSE, role="hcp")
    assert hcp.kind == "answer" and "100 mg" in hcp.answer
    answer = engine.ask("What is TRK fusion cancer?")
    assert answer.kind == "answer" and answer.citations
    snap = engine.snapshot()
    qv = embedder.encode_query("larotrectinib dose 100 mg")
    ids = engine.retriever.dense(snap, qv, "public", None, 40)
    assert {snap.chunks[snap.by_id[c]].audience for c, _ in ids} == {"public"}
    assert Store(settings).current() == snap.name
    assert bool(engine.retriever._collections) == (search == "hnsw")  # the server's collections were queried


def test_two_replicas_share_sessions_through_postgres_and_chroma(tmp_path_factory, chroma, postgres, embedder):
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    from chatbot.accounts import Accounts

    root = tmp_path_factory.mktemp("replicas")
    shutil.copytree(CORPUS, root / "corpus")
    db = postgres.create_database("replicas")
    env = {"TRK_CHROMA_URL": chroma.url, "TRK_DATABASE_URL": db, "TRK_COLLECTION_PREFIX": "replicas"}
    build_index(make_settings(root, chroma_url=chroma.url, collection_prefix="replicas"), embedder)
    accounts = Accounts(db)
    accounts.register(name="Anna de Vries", email="anna@example.org", profession="physician", country="NL",
                      registration_number="19012345601", password=PASSWORD)
    accounts.approve("anna@example.org")
    a, b = AppServer(root, env), AppServer(root, env)
    try:
        a.wait(), b.wait()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        headless=True, args=["--no-sandbox", "--disable-gpu",
                                                             "--disable-background-networking"])
            page = browser.new_page()
            page.goto(a.url)
            page.wait_for_selector("#question textarea", timeout=60000)
            page.get_by_role("tab", name="Healthcare professionals").click()
            page.locator("#signin-email textarea, #signin-email input").first.fill("anna@example.org")
            page.locator("#signin-password input").first.fill(PASSWORD)
            page.click("#signin")
            page.wait_for_function("() => document.getElementById('status').innerText.includes('Verified')",
                                   timeout=30000)
            stored = page.evaluate("() => JSON.stringify(Object.assign({}, window.localStorage))")
            # behind a load balancer both replicas share one origin; here we carry the browser's storage over
            page.goto(b.url)
            page.evaluate("(s) => { for (const [k, v] of Object.entries(JSON.parse(s))) localStorage.setItem(k, v) }",
                          stored)
            page.reload()
            page.wait_for_selector("#question textarea", timeout=60000)
            page.wait_for_function("() => document.getElementById('status').innerText.includes('Verified')",
                                   timeout=30000)
            page.fill("#question textarea", DOSE)
            page.click("#send")
            page.wait_for_function("() => document.getElementById('chatbot').innerText.includes('100 mg')",
                                   timeout=60000)
            browser.close()
        # and through the API: a token issued by one replica is honoured by the other
        token, _ = accounts.sign_in("anna@example.org", PASSWORD)
        assert Client(b.url, verbose=False).predict(DOSE, [], token, api_name="/ask")["kind"] == "answer"
        accounts.sign_out(token)
        assert Client(a.url, verbose=False).predict(DOSE, [], token, api_name="/ask")["kind"] == "hcp_only"
    finally:
        a.stop()
        b.stop()
        accounts.engine.dispose()
