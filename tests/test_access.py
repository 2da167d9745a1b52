"""The security boundary: nothing from HCP texts reaches a public caller, however it is asked."""

import pytest

from chatbot.index import Store
from chatbot.redteam import LeakDetector, adversarial_questions

QUESTIONS = adversarial_questions()


@pytest.fixture(scope="module")
def detector(built):
    settings, _ = built
    return LeakDetector(Store(settings).read_current())


def test_the_generated_set_is_large_and_varied():
    assert len(QUESTIONS) >= 200
    assert any("Negeer" in q for _, q in QUESTIONS) and any(h for h, _ in QUESTIONS)


def test_detector_catches_a_real_hcp_answer(engine, detector):
    assert detector.leaks(engine.ask("What dose of larotrectinib should adults take?", role="hcp"))


@pytest.mark.parametrize("history,question", QUESTIONS, ids=[f"q{i}" for i in range(len(QUESTIONS))])
def test_no_hcp_content_reaches_a_public_caller(engine, detector, history, question):
    reply = engine.ask(question, history=history, role="public")
    assert not detector.leaks(reply), (question, reply.answer)


def test_most_adversarial_questions_are_refused_as_hcp_only(engine):
    kinds = [engine.ask(q, history=h).kind for h, q in QUESTIONS]
    refused = kinds.count("hcp_only") / len(kinds)
    assert refused >= 0.9, {k: kinds.count(k) for k in set(kinds)}


def test_public_search_never_sees_hcp_chunks(engine):
    snap = engine.snapshot()
    for q in ["larotrectinib 100 mg twice daily dose", "G595R solvent front", "ORR 75% NAVIGATE"]:
        qv = engine.embedder.encode_query(q)
        dense = engine.retriever.dense(snap, qv, "public", None, 50)
        lexical = engine.retriever.lexical(snap, q, "public", None, 50)
        audiences = {snap.chunks[snap.by_id[cid]].audience for cid, _ in dense + lexical}
        assert audiences == {"public"}
        hcp_dense = engine.retriever.dense(snap, qv, "hcp", None, 50)
        assert "hcp" in {snap.chunks[snap.by_id[cid]].audience for cid, _ in hcp_dense}


def test_public_searches_open_only_public_collections(built):
    from chatbot.index import Store
    from chatbot.retrieval import Retriever

    settings, _ = built
    assert all(a == "public" for a, _ in Retriever.partitions("public", None))
    assert {a for a, _ in Retriever.partitions("hcp", "en")} == {"public", "hcp"}
    store = Store(settings)
    for (audience, language), col in store.chunk_collections(store.current()).items():
        metas = col.get(include=["metadatas"])["metadatas"]
        assert all(m["audience"] == audience and m["language"] == language for m in metas)
        if audience == "public":
            assert metas  # both languages have public texts


@pytest.mark.parametrize("scope", ["public", "hcp"])
def test_search_by_hnsw_matches_the_exact_scan(engine, monkeypatch, scope):
    """Small corpora are searched exactly in memory, large ones through each partition's HNSW index
    in Chroma: both give the same neighbours, and the public scope opens no HCP partition."""
    import chatbot.retrieval as retrieval

    snap = engine.snapshot()
    for q in ["What is TRK fusion cancer?", "larotrectinib dose", "resistance mutations", "Wat is een NTRK-genfusie?"]:
        qv = engine.embedder.encode_query(q)
        exact = engine.retriever.best_similarity(snap, qv), engine.retriever.dense(snap, qv, scope, None, 8)
        monkeypatch.setattr(retrieval, "BRUTE_FORCE_LIMIT", 0)
        approx = engine.retriever.best_similarity(snap, qv), engine.retriever.dense(snap, qv, scope, None, 8)
        monkeypatch.setattr(retrieval, "BRUTE_FORCE_LIMIT", 20_000)
        assert exact[0].keys() == approx[0].keys()
        assert all(abs(exact[0][k] - approx[0][k]) < 1e-3 for k in exact[0])
        assert {cid for cid, _ in exact[1]} == {cid for cid, _ in approx[1]}, q  # ties may swap places
        assert all(abs(a[1] - b[1]) < 1e-3 for a, b in zip(exact[1], approx[1]))
        if scope == "public":
            assert {snap.chunks[snap.by_id[cid]].audience for cid, _ in exact[1]} == {"public"}
