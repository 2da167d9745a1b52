"""Word forms (Snowball stemming), word weights and passage-question keys, on the real corpus index."""

from chatbot.index import Store
from chatbot.retrieval import Snapshot, tokenize, words


def test_word_forms_come_from_the_stemmers():
    assert words("Hoe wordt TRK-fusiekanker behandeld?", "nl") == [["trk-fusiekanker", "trk", "fusiekanker"],
                                                                  ["behandeld"]]
    assert tokenize("tumoren tumor", "nl") == ["tumor", "tumor"]  # the Porter variant keeps them together
    assert tokenize("inherited inheritance", "en") == ["inherit", "inherit"]
    assert tokenize("What is the dose?", "en") == ["dose"]  # stop words from scikit-learn's list


def test_topic_words_weigh_less_than_what_is_asked(built):
    settings, _ = built
    snap = Snapshot(Store(settings).read_current())
    assert snap.weight("trk-fusiekanker", "nl") < snap.weight("erfelijk", "nl")
    assert snap.weight("trk", "en") < snap.weight("inherit", "en")
    unseen = snap.weight("no-such-word", "nl")
    assert unseen == max(snap.idf["nl"].values())


def test_passage_questions_are_keys_of_their_sections(built, embedder):
    """A question stored for a section finds it by meaning and by words, in either language."""
    settings, _ = built
    snap = Snapshot(Store(settings).read_current())
    assert len(snap.questions) >= 3 * 2 * len({(c.doc_id, c.heading) for c in snap.chunks})
    row = snap.by_id[next(c.id for c in snap.chunks if c.doc_id == "inherited-or-acquired")]
    q = embedder.encode_query("kunnen mijn kinderen dit van mij erven")
    assert snap.question_similarity(q, row) > float(snap.chunk_emb[row] @ q)
    assert "erfelijk" in snap.q_tokens[row]  # Dutch keys of an English text, stemmed as Dutch


def test_lexical_search_runs_in_the_callers_thread(engine, monkeypatch):
    """bm25s starts a thread pool per query unless told not to: a thread per question under load."""
    import bm25s

    def no_pool(*_a, **_k):
        raise AssertionError("bm25s started a thread pool for one query")

    monkeypatch.setattr(bm25s, "ThreadPoolExecutor", no_pool)
    found = engine.retriever.lexical(engine.snapshot(), "How is TRK fusion cancer diagnosed?", "public", "en", 5)
    assert found and all(score > 0 for _, score in found)
