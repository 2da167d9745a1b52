"""LLM mode plumbing with langchain's fake chat model (no LLM service exists here)."""

import pytest
from langchain_core.language_models import FakeListChatModel

from chatbot.answer import Engine
from chatbot.llm import cited_everywhere, numbers, unsupported_numbers

DOSE = "What dose of larotrectinib should adults take?"


def test_cited_everywhere():
    assert cited_everywhere("It is rare [1]. It can occur anywhere [2].", {1, 2})
    assert not cited_everywhere("It is rare [1]. It can occur anywhere.", {1, 2})
    assert not cited_everywhere("It is rare [3].", {1, 2})


def test_llm_rewrite_is_used_when_every_sentence_cites(built, embedder):
    settings, _ = built
    llm = FakeListChatModel(responses=["TRK fusion cancer is a rare cancer caused by a gene fusion [1]."])
    reply = Engine(settings, embedder, llm=llm).ask("What is TRK fusion cancer?")
    assert reply.kind == "answer" and reply.answer == "TRK fusion cancer is a rare cancer caused by a gene fusion [1]."


def test_llm_reply_without_citations_falls_back_to_extractive(built, embedder, engine):
    settings, _ = built
    llm = FakeListChatModel(responses=["TRK fusion cancer is caused by eating too much sugar."])
    reply = Engine(settings, embedder, llm=llm).ask("What is TRK fusion cancer?")
    assert reply.answer == engine.ask("What is TRK fusion cancer?").answer
    assert "sugar" not in reply.answer


# numbers: a rewrite may only give the numbers its cited passages give ---------------------------------
def _citation(n: int, text: str, language: str = "en"):
    from chatbot.answer import Citation

    return Citation(n, f"doc-{n}", "Title", "Heading", "hcp", language, [], text, [text], f"doc-{n}#0")


PASSAGES = [_citation(1, "Adults take 100 mg twice daily; 79% responded among 1,000 patients; children take 0.5 mg/kg."),
            _citation(2, "De dosis is 2,5 mg per dag bij 1.200 patiënten; 40% had grade 2.", "nl")]


@pytest.mark.parametrize("rewritten, language", [
    ("Adults take 100mg twice a day [1].", "en"),  # "100 mg" / "100mg"
    ("Of 1000 patients, 79 % responded [1].", "en"),  # "1,000" / "1000", "79%" / "79 %"
    ("Kinderen krijgen 0,5 mg/kg [1].", "nl"),  # an English passage's 0.5, written the Dutch way
    ("Children take 0.5 mg/kg [1]. The dose is 2.5 mg a day in 1,200 patients [2].", "en"),
    ("De dosis is 2,5 mg per dag; 40 procent had graad 2 [2].", "nl"),
    ("79 percent responded [1] [2].", "en"),  # a sentence citing two passages may use either
])
def test_numbers_the_cited_passages_give_are_supported(rewritten, language):
    assert unsupported_numbers(rewritten, PASSAGES, language) == []


@pytest.mark.parametrize("rewritten, language, invented", [
    ("Adults take 150 mg twice daily [1].", "en", ["150"]),  # a changed dose
    ("80% responded [1].", "en", ["80%"]),  # a changed percentage
    ("Adults take 100% of the dose [1].", "en", ["100%"]),  # a plain number made a percentage
    ("Children take 0,05 mg/kg [1].", "nl", ["0,05"]),
    ("Bij 1.000 patiënten [1].", "nl", []),  # 1.000 in Dutch is the thousand of "1,000"
    ("Bij 1,000 patiënten [1].", "nl", ["1,000"]),  # ... and 1,000 in Dutch is one
    ("Adults take 100 mg twice daily [2].", "en", ["100"]),  # a number from a passage this sentence does not cite
    ("The dose is 2.5 mg [2]. 40% had grade 3 [2].", "en", ["3"]),
])
def test_numbers_the_cited_passages_do_not_give_are_found(rewritten, language, invented):
    assert unsupported_numbers(rewritten, PASSAGES, language) == invented


def test_a_rewrite_that_keeps_the_passages_numbers_is_used(built, embedder, engine):
    settings, _ = built
    dose = ("For adults and children of at least 1.0 m², larotrectinib is 100mg by mouth twice a day [1]. "
            "Below 1.0 m² it is 100 mg/m² twice a day [1].")  # "1.0": a decimal point, not a sentence's end
    reply = Engine(settings, embedder, llm=FakeListChatModel(responses=[dose])).ask(DOSE, role="hcp")
    assert reply.kind == "answer" and reply.answer == dose
    common = "TRK fusion cancer is rare: about 0.3 % of solid tumours, some 3 in 1000, carry an NTRK fusion [1]."
    reply = Engine(settings, embedder, llm=FakeListChatModel(responses=[common])).ask("How common is TRK fusion cancer?")
    assert reply.answer == common
    dutch = "Ongeveer 0,3 procent van de solide tumoren heeft een NTRK-genfusie: zo'n 3 op de 1000 [1]."
    reply = Engine(settings, embedder, llm=FakeListChatModel(responses=[dutch])).ask("Hoe vaak komt TRK-fusiekanker voor?")
    assert reply.answer == dutch


@pytest.mark.parametrize("question, role, rewritten", [
    (DOSE, "hcp", "Adults take 150 mg of larotrectinib by mouth twice a day [1]."),  # a changed dose
    (DOSE, "hcp", "Adults take 100 mg of larotrectinib by mouth three times a day, 300 mg in all [1]."),
    ("What is the response rate of larotrectinib?", "hcp", "The overall response rate was 79% by independent review [1]."),
    ("What is the response rate of larotrectinib?", "hcp", "Grade 1 adverse events were seen in 1% of patients [1]."),
    ("Hoe vaak komt TRK-fusiekanker voor?", "public", "Ongeveer 3 procent van de solide tumoren heeft een NTRK-genfusie [1]."),
])
def test_a_rewrite_with_an_invented_number_falls_back_to_the_extractive_answer(built, embedder, engine, question,
                                                                                role, rewritten):
    settings, _ = built
    extractive = engine.ask(question, role=role)
    assert extractive.kind == "answer" and extractive.citations
    reply = Engine(settings, embedder, llm=FakeListChatModel(responses=[rewritten])).ask(question, role=role)
    assert reply.kind == "answer" and reply.answer == extractive.answer
    assert cited_everywhere(rewritten, {c.n for c in extractive.citations})  # refused for its number alone


def test_every_number_of_the_extractive_answers_passes_the_check(engine):
    """The check reads numbers as the texts write them: the extractive answers of the dev set and
    of the corpus's passage questions, given back word for word as a rewrite, would all be accepted
    (doses, percentages, confidence intervals, "1.0 m²", "3 in every 1,000", Dutch decimal commas)."""
    import json

    from tests.conftest import DATA

    questions = [(json.loads(line)["question"], role) for line in (DATA / "dev.jsonl").read_text().splitlines()
                 if line.strip() for role in ("public", "hcp")]
    checked = 0
    for question, role in questions:
        reply = engine.ask(question, role=role)
        if reply.kind != "answer" or not reply.citations:
            continue
        sentences = [s for c in reply.citations for s in c.sentences]
        assert unsupported_numbers(reply.answer, reply.citations, reply.language) == [], (question, sentences)
        checked += any(numbers(s, c.language) for c in reply.citations for s in c.sentences)
    assert checked >= 10  # answers with numbers in them were among those checked
