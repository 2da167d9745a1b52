"""LLM mode plumbing with langchain's fake chat model (no LLM service exists here)."""

from langchain_core.language_models import FakeListChatModel

from chatbot.answer import Engine
from chatbot.llm import cited_everywhere


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
