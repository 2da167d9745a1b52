"""Optional LLM rewriting of the extractive answer (off unless TRK_LLM is set).

The LLM only rephrases the selected passages; every sentence it writes must cite one of them, and
every number in a sentence must be one that the passages it cites give, or the extractive answer is
kept.
"""

from __future__ import annotations

import re
from decimal import Decimal

from chatbot.config import Settings

# a sentence ends at . ! or ? (and the markers right after it), not at a decimal point ("0.5 mg")
_SENTENCE = re.compile(r"(?:[^.!?]|[.!?](?=\d))+(?:[.!?]+(?:\s*\[\d+\])*|$)")
_MARK = re.compile(r"\[(\d+)\]")
_MARKERS = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")  # [1], [1, 2]: citation markers, not numbers
# a number written in digits, with its grouping and decimal marks ("1,000", "1.000", "0,5", "12.5"),
# and whether it is a percentage ("79%", "79 %", "79 procent", "79 per cent")
_NUMBER = re.compile(r"(\d+(?:[.,]\d+)*)(\s?%|\s(?:procent|percent|per cent)\b)?", re.IGNORECASE)
_THOUSANDS = {"en": ",", "nl": "."}  # the grouping mark where "1,000" or "1.000" could be either


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


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def cited_everywhere(text: str, allowed: set[int]) -> bool:
    found = sentences(text)
    if not found:
        return False
    for s in found:
        marks = {int(m) for m in _MARK.findall(s)}
        if not marks or not marks <= allowed:
            return False
    return True


def number_value(digits: str, language: str) -> list[Decimal]:
    """The value(s) a number written in digits stands for, read as a text in `language` writes
    numbers: "1,000" is a thousand in English and one in Dutch, "1.000" the other way round; "0,5"
    and "0.5" are a half in both; "12,345.6" and "12.345,6" are the same. Marks that group no
    thousands ("1,2,3") separate numbers."""
    commas, dots = digits.count(","), digits.count(".")
    if commas and dots:  # both: the last one is the decimal mark
        decimal = "," if digits.rfind(",") > digits.rfind(".") else "."
        head, _, fraction = digits.rpartition(decimal)
        groups = head.split("." if decimal == "," else ",")
        if all(len(g) == 3 for g in groups[1:]) and "," not in fraction and "." not in fraction:
            return [Decimal("".join(groups) + "." + fraction)]
        return [Decimal(p) for p in re.split(r"[.,]", digits)]
    if not commas and not dots:
        return [Decimal(digits)]
    mark = "," if commas else "."
    parts = digits.split(mark)
    grouped = 1 <= len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:])
    if len(parts) > 2:
        return [Decimal("".join(parts))] if grouped else [Decimal(p) for p in parts]
    if grouped and mark == _THOUSANDS.get(language, ","):
        return [Decimal("".join(parts))]
    return [Decimal(f"{parts[0]}.{parts[1]}")]


def numbers(text: str, language: str) -> list[tuple[str, Decimal, bool]]:
    """Each number written in digits in `text` (citation markers left out): (as written, value,
    whether it is a percentage). Digits inside names count too ("G595R", "NTRK1")."""
    found = []
    for m in _NUMBER.finditer(_MARKERS.sub(" ", text)):
        for value in number_value(m.group(1), language):
            found.append((m.group(0).strip(), value, m.group(2) is not None))
    return found


def unsupported_numbers(text: str, citations, language: str | None = None) -> list[str]:
    """The numbers of a rewritten answer that the passages its sentence cites do not give (as
    written). A percentage must be a percentage there; "100 mg" and "100mg", "1,000" and "1000",
    "0.5" and "0,5" are the same number. `language` is the rewrite's (detected when not given);
    each passage is read in its own."""
    from chatbot.policy import detect_language

    language = language or detect_language(text)
    given = {c.n: numbers(" ".join(c.sentences), c.language) for c in citations}
    out, waiting = [], []
    for sentence in sentences(text):
        waiting.append(sentence)
        marks = _MARK.findall(sentence)
        if not marks:  # cited by the next marker, as the extractive answer cites a run of sentences
            continue
        cited = [given.get(int(m), []) for m in marks]
        values = {v for found in cited for _, v, _ in found}
        percentages = {v for found in cited for _, v, pct in found if pct}
        out += [written for s in waiting for written, value, pct in numbers(s, language)
                if value not in (percentages if pct else values)]
        waiting = []
    return out + [written for s in waiting for written, _, _ in numbers(s, language)]  # cited by none


def rewrite(llm, question: str, citations, fallback: str) -> str:
    """The LLM's rewrite if every sentence cites a given passage and every number in it is one the
    passages it cites give; otherwise the extractive answer."""
    try:
        out = llm.invoke(prompt(question, citations))
    except Exception:
        return fallback
    text = str(getattr(out, "content", out)).strip()
    if not cited_everywhere(text, {c.n for c in citations}) or unsupported_numbers(text, citations):
        return fallback
    return text
