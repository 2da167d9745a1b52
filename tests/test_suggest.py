"""Suggested next questions, on the real index: from passages near the one used, in the user's
language, never from texts for professionals for the public, never the question just asked."""

from __future__ import annotations

import pytest

from chatbot.suggest import _plain, suggest

PUBLIC_QUESTIONS = [
    ("What is TRK fusion cancer?", "en"), ("How is TRK fusion cancer diagnosed?", "en"),
    ("Can children get TRK fusion cancer?", "en"), ("What are the side effects of larotrectinib?", "en"),
    ("How does larotrectinib work?", "en"), ("Wat is TRK-fusiekanker?", "nl"),
    ("Is TRK-fusiekanker erfelijk?", "nl"), ("Welke bijwerkingen heeft entrectinib?", "nl"),
]


def sources(engine, shown: str, language: str) -> list:
    """The chunks whose passage question (in ``language``) a suggestion shows."""
    snap = engine.snapshot()
    return [snap.chunks[row] for row, lang, text in snap.questions
            if lang == language and _plain(text) == _plain(shown)]


def test_public_suggestions_are_public_passage_questions_in_the_users_language(engine):
    offered = 0
    for question, lang in PUBLIC_QUESTIONS:
        reply = engine.ask(question, [], "public")
        assert reply.language == lang
        assert reply.to_json()["suggestions"] == reply.suggestions
        if reply.kind == "answer":
            assert 2 <= len(reply.suggestions) <= 3, (question, reply.suggestions)
        assert _plain(question) not in {_plain(s) for s in reply.suggestions}
        cited = {(c.doc_id, c.heading) for c in reply.citations}
        for shown in reply.suggestions:
            chunks = sources(engine, shown, lang)
            assert chunks, f"{shown!r} is not a passage question in {lang}"
            assert {c.audience for c in chunks} == {"public"}, (question, shown)
            assert not cited & {(c.doc_id, c.heading) for c in chunks}  # not what was just read
        offered += len(reply.suggestions)
    assert offered >= 2 * len(PUBLIC_QUESTIONS) - 4  # nearly every reply with sources offers some


def test_a_verified_hcp_is_offered_questions_of_the_clinical_texts(engine):
    question = "What dose of larotrectinib should adults take?"
    public = engine.ask(question, [], "public")
    assert public.kind == "hcp_only"
    assert all(c.audience == "public" for s in public.suggestions for c in sources(engine, s, "en"))
    hcp = engine.ask(question, [], "hcp")
    assert hcp.kind == "answer" and len(hcp.suggestions) == 3
    assert any(c.audience == "hcp" for s in hcp.suggestions for c in sources(engine, s, "en"))


def test_never_the_question_just_asked_nor_one_of_the_passage_just_read(engine):
    snap = engine.snapshot()
    reply = engine.ask("How is TRK fusion cancer diagnosed?", [], "public")
    first = reply.suggestions[0]
    # asking the first suggestion itself: it is not offered again, and the next ones differ
    again = suggest(snap, [c.chunk_id for c in reply.citations], "en", "public", [first])
    assert _plain(first) not in {_plain(s) for s in again} and len(again) == 3
    # from the passage a suggestion came from, its own questions are not offered
    row = next(i for i, lang, text in snap.questions if lang == "en" and _plain(text) == _plain(first))
    chunk = snap.chunks[row]
    after = suggest(snap, [chunk.id], "en", "public", [first])
    own = {_plain(text) for i, lang, text in snap.questions
           if snap.chunks[i].doc_id == chunk.doc_id and snap.chunks[i].heading == chunk.heading}
    assert after and not own & {_plain(s) for s in after}


@pytest.mark.parametrize("question", ["Hello!", "Who won the world cup?", "What are my chances?"])
def test_no_suggestions_without_a_passage(engine, question):
    reply = engine.ask(question, [], "public")
    assert not reply.citations and reply.suggestions == []


def test_suggestions_read_as_questions(engine):
    snap = engine.snapshot()
    chunk = next(c for c in snap.chunks if c.doc_id == "how-is-it-diagnosed")
    shown = suggest(snap, [chunk.id], "en", "public", [])
    assert shown and all(s[0].isupper() and s.endswith("?") for s in shown)
    assert "trk" not in " ".join(shown).replace("TRK", "")  # acronyms written as the texts write them
