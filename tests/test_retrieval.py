"""Words, query expansion and word weights, on the real corpus index."""

import pytest

from chatbot.index import Store
from chatbot.retrieval import Snapshot, expand, glossed, tokenize, words


def test_a_compound_is_one_word_with_its_parts():
    q = "Hoe wordt TRK-fusiekanker behandeld?"
    assert words(q) == [["trk-fusiekanker", "trk", "fusiekanker"], ["behandel"]]
    assert tokenize(q) == ["trk-fusiekanker", "trk", "fusiekanker", "behandel"]


@pytest.mark.parametrize("q,expanded", [
    ("What does NTRK mean?", True),
    ("What does TRK stand for?", True),
    ("Wat betekent NTRK?", True),
    ("Waar staat TRK voor?", True),
    ("What does a positive test mean for me?", False),  # not a name: no "stands for" search
    ("Wat betekent een NTRK-fusie voor mijn behandeling?", False),
])
def test_what_a_name_means_searches_for_what_it_stands_for(q, expanded):
    assert (expand(q) != q) == expanded


def test_topic_words_weigh_less_than_what_is_asked(built):
    settings, _ = built
    snap = Snapshot(Store(settings).read_current())
    assert snap.weight("trk-fusiekanker", "nl") < snap.weight("behandel", "nl")
    assert snap.weight("trk", "en") < snap.weight("inherit", "en")
    unseen = snap.weight("no-such-word", "nl")
    assert unseen > snap.weight("behandel", "nl") and unseen == max(snap.idf["nl"].values())


@pytest.mark.parametrize("dutch,english", [
    ("Welke resistentiemutaties zijn bekend?", "resistance mutations"),  # a compound of two known terms
    ("Welke fusiepartners komen voor?", "fusion partners"),
    ("Wat is de dosering?", "dose"),
])
def test_dutch_terms_are_glossed_for_english_texts(dutch, english):
    assert glossed(dutch).endswith(english)


def test_lexical_search_runs_in_the_callers_thread(engine, monkeypatch):
    """bm25s starts a thread pool per query unless told not to: a thread per question under load."""
    import bm25s

    def no_pool(*_a, **_k):
        raise AssertionError("bm25s started a thread pool for one query")

    monkeypatch.setattr(bm25s, "ThreadPoolExecutor", no_pool)
    found = engine.retriever.lexical(engine.snapshot(), "How is TRK fusion cancer diagnosed?", "public", "en", 5)
    assert found and all(score > 0 for _, score in found)
