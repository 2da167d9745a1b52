"""Optional LLM rewriting of the extractive answer (off unless TRK_LLM is set).

The LLM only rephrases the selected passages; every sentence it writes must cite one of them, or
the extractive answer is kept.
"""

from __future__ import annotations

import re

from chatbot.config import Settings

_SENTENCE = re.compile(r"[^.!?]+[.!?]+(?:\s*\[\d+\])*|[^.!?]+$")
_MARK = re.compile(r"\[(\d+)\]")


def from_settings(settings: Settings):
    """A langchain chat model for TRK_LLM ("ollama:MODEL" or "openai:MODEL"), or None."""
    if not settings.llm:
        return None
    provider, _, model = settings.llm.partition(":")
    if provider == "ollama":
        from langchain_ollama import ChatOllama  # optional dependency

        return ChatOllama(model=model)
    if provider == "openai":
        from langchain_openai import ChatOpenAI  # optional dependency, honours OPENAI_BASE_URL

        return ChatOpenAI(model=model)
    raise ValueError(f"TRK_LLM: unknown provider '{provider}' (use ollama:MODEL or openai:MODEL)")


def prompt(question: str, citations) -> str:
    passages = "\n".join(f"[{c.n}] " + " ".join(c.sentences) for c in citations)
    return (
        "Rewrite these approved passages into a short, plain answer to the question. Use only facts "
        "from the passages. End every sentence with the marker of the passage it comes from, like [1].\n"
        f"Question: {question}\nPassages:\n{passages}\nAnswer:"
    )


def cited_everywhere(text: str, allowed: set[int]) -> bool:
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    if not sentences:
        return False
    for s in sentences:
        marks = {int(m) for m in _MARK.findall(s)}
        if not marks or not marks <= allowed:
            return False
    return True


def rewrite(llm, question: str, citations, fallback: str) -> str:
    """The LLM's rewrite if every sentence cites a given passage; otherwise the extractive answer."""
    try:
        out = llm.invoke(prompt(question, citations))
    except Exception:
        return fallback
    text = str(getattr(out, "content", out)).strip()
    return text if cited_everywhere(text, {c.n for c in citations}) else fallback
