"""The scale-out path: a Chroma server instead of the embedded store, PostgreSQL for accounts, and
two app replicas sharing both."""

from __future__ import annotations

import shutil

import pytest

from chatbot.answer import Engine
from chatbot.index import Store, build_index
from tests.appserver import AppServer
from tests.conftest import CORPUS, corpus_size, make_settings
from tests.services import ChromaServer, RecordingProxy

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


def vectors_sent(embeddings) -> list:
    """The vectors of an add/upsert body as numbers (chromadb sends them as base64 float32 when the
    server supports it, else as lists)."""
    import base64

    import numpy as np

    return [np.frombuffer(base64.b64decode(e), dtype="<f4") if isinstance(e, str) else np.asarray(e, dtype="<f4")
            for e in embeddings]


def test_the_app_sends_the_chroma_server_vectors_never_an_embedding_function(chroma, tmp_path, embedder,
                                                                               monkeypatch):
    """Every request the app makes of a Chroma server, recorded on the wire (a proxy in front of
    `chroma run`) through a full index build and questions answered by HNSW queries to the server:
    collections are created with no embedding function (chromadb 1.5.9 sends `{"type": "legacy"}`
    for `embedding_function=None`: nothing for the server to load, so nothing of the configuration
    that CVE-2026-45829 abuses), never changed, and every add and query carries the app's own vectors."""
    import json
    import re

    import numpy as np

    import chatbot.retrieval as retrieval

    monkeypatch.setattr(retrieval, "BRUTE_FORCE_LIMIT", 0)  # every search a query to the server
    proxy = RecordingProxy(chroma.url)
    try:
        settings = make_settings(tmp_path, corpus=CORPUS, chroma_url=proxy.url, collection_prefix="wire")
        build_index(settings, embedder)
        engine = Engine(settings, embedder)
        questions = {"What is TRK fusion cancer?": "public", DOSE: "hcp"}
        for question, role in questions.items():
            assert engine.ask(question, role=role).kind == "answer"
        snapshot = engine.snapshot()
    finally:
        proxy.stop()

    def calls(method: str, pattern: str) -> list[dict]:
        return [json.loads(body) for m, path, body in proxy.requests
                if m == method and re.search(pattern, path.split("?")[0])]

    assert not any(re.search(rb"trust_remote_code|model_name|\"known\"|query_texts", body)
                   for _, _, body in proxy.requests)
    created = calls("POST", r"/collections$")
    assert len(created) >= 8  # the pointer, then 4 chunk partitions, sentences, questions, messages
    for body in created:
        assert body["schema"] is None, body
        if body["name"] == "wire_pointer":
            assert body["configuration"] is None and body["get_or_create"] is True
        else:
            assert body["configuration"] == {"hnsw": {"space": "cosine"}, "spann": None,
                                             "embedding_function": {"type": "legacy"}}, body
    for body in calls("PUT", r"/collections/[^/]+$"):  # the pointer's metadata, nothing else
        assert set(body) <= {"new_metadata", "new_configuration", "new_name"} and body.get("new_configuration") is None
    assert not calls("POST", r"/(upsert|update)$")

    added = calls("POST", r"/collections/[^/]+/add$")
    assert added and all(len(b["embeddings"]) == len(b["ids"]) for b in added)
    own = {c.id: snapshot.chunk_emb[i] for i, c in enumerate(snapshot.chunks)}
    matched = 0
    for body in added:
        for id_, vector in zip(body["ids"], vectors_sent(body["embeddings"])):
            assert vector.shape == (384,) and np.linalg.norm(vector) > 0.5, id_
            if id_ in own:  # a chunk: the very vector the app made
                assert np.allclose(vector, own[id_], atol=1e-6), id_
                matched += 1
    assert matched == len(own)

    queried = calls("POST", r"/collections/[^/]+/query$")
    assert queried and all(b["query_embeddings"] and "query_texts" not in b for b in queried)
    sent = [np.asarray(v, dtype=np.float32) for b in queried for v in b["query_embeddings"]]
    for question in questions:  # the question's vector as the app's own model made it
        mine = np.asarray(embedder.encode_query(question), dtype=np.float32)
        assert any(np.allclose(v, mine, atol=1e-5) for v in sent), question


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
