"""The reply kinds, and the few rules that state a policy exactly.

What a message asks for is learned from data (``chatbot.intent``, trained on corpus/utterances/);
what is left here is what must be exact: cleaning and validating input, reading hidden forms of
a request (leetspeak, base64), the message's language (a library for short texts), and the names
of the medicines (a data file, corpus/glossary.yaml). None of this is the security boundary:
whatever is decided, a public caller's search only ever sees public chunks.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

INVALID = "invalid"
ADVERSE_EVENT = "adverse_event"
OUT_OF_SCOPE = "out_of_scope"
HCP_ONLY = "hcp_only"
ADVICE = "advice"
NO_ANSWER = "no_answer"
ANSWER = "answer"
SMALL_TALK = "small_talk"  # a greeting or a thank-you: a short friendly reply, nothing searched
KINDS = (INVALID, ADVERSE_EVENT, OUT_OF_SCOPE, HCP_ONLY, ADVICE, NO_ANSWER, ANSWER, SMALL_TALK)


_DELEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_B64 = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}")


_SCRIPT = re.compile(r"<(script|style)\b.*?(</\1\s*>|$)", re.I | re.S)
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,300}>")


def clean(text: str) -> str:
    """The question as words: Unicode normalised, control characters and markup removed."""
    text = unicodedata.normalize("NFKC", text)
    text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
    text = re.sub(r"[ \t]{2,}", " ", text)
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C").strip()


def variants(text: str) -> list[str]:
    """The text plus decoded forms a user might hide a request in (leetspeak, base64, spacing)."""
    out = [text, text.translate(_DELEET)]
    spaced = re.sub(r"\b(\w) (?=\w\b)", r"\1", text)  # "d o s e" -> "dose"
    if spaced != text:
        out.append(spaced)
    out.append(re.sub(r"[._*\-]+(?=\w)", "", text))  # "d.o.s.e", "d-o-s-e"
    return out + decoded(text)


def decoded(text: str) -> list[str]:
    """The printable texts that base64 in the message decodes to."""
    out = []
    for token in _B64.findall(text):
        try:
            found = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if found.isprintable():
            out.append(found)
    return out



# -- language ---------------------------------------------------------------------------------------
# lingua, limited to the two languages answered and the neighbours most often confused with them.
# Policy: a message clearly in another language is told which languages are supported; a short or
# mixed one ("whats ntrk", "ok") is read as English or Dutch, whichever is likelier.
SUPPORTED = ("en", "nl")
OTHER_MIN_WORDS = 3  # shorter messages are too short to tell another language reliably
OTHER_MIN_CONFIDENCE = 0.4
OTHER_MIN_UNKNOWN = 0.3  # share of its words in none of our texts and labelled messages


@functools.cache
def _detectors():
    from lingua import Language, LanguageDetectorBuilder

    broad = [Language.ENGLISH, Language.DUTCH, Language.GERMAN, Language.FRENCH, Language.SPANISH,
             Language.ITALIAN, Language.PORTUGUESE]
    return (LanguageDetectorBuilder.from_languages(*broad).with_preloaded_language_models().build(),
            LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.DUTCH)
            .with_preloaded_language_models().build())


def preload_language_models() -> None:
    _detectors()


def dutch_probability(text: str) -> float:
    """How likely the message is Dutch rather than English (lingua, the two languages only)."""
    for c in _detectors()[1].compute_language_confidence_values(text):
        if c.language.iso_code_639_1.name == "NL":
            return float(c.value)
    return 0.0


def letter_words(text: str) -> list[str]:
    """The words of two letters or more, lowercased: what ``other_language`` compares with the words
    it knows (which must be read the same way)."""
    return re.findall(r"[^\W\d_]{2,}", text.lower())


def other_language(text: str, known: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether a message is clearly written in a language other than English and Dutch: lingua says so,
    and a good part of its words are in none of our English and Dutch texts and messages (clinical
    jargon such as "QTc prolongation entrectinib" fools lingua, not the vocabulary)."""
    tokens = letter_words(text)
    if len(tokens) < OTHER_MIN_WORDS:
        return False
    values = {c.language.iso_code_639_1.name.lower(): c.value
              for c in _detectors()[0].compute_language_confidence_values(text)}
    if not values:
        return False
    top = max(values, key=values.get)
    unknown = sum(t not in known for t in tokens) / len(tokens) if known else 1.0
    return (top not in SUPPORTED and values[top] >= OTHER_MIN_CONFIDENCE and unknown >= OTHER_MIN_UNKNOWN
            and values.get("en", 0.0) + values.get("nl", 0.0) < values[top])


def detect_language(text: str) -> str:
    """'en' or 'nl' by lingua alone (the engine also weighs what it learned from corpus/utterances)."""
    return "nl" if text.strip() and dutch_probability(text) > 0.5 else "en"


# -- medicines ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Glossary:
    """corpus/glossary.yaml: the medicines' names (generic first) and the class name per language."""

    medicines: dict[str, tuple[str, ...]]
    class_name: dict[str, str]

    @functools.cached_property
    def pattern(self) -> re.Pattern:
        names = sorted({n for g, others in self.medicines.items() for n in (g, *others)}, key=len, reverse=True)
        body = "|".join(re.escape(n).replace("\\-", "-?\\s?") for n in names)
        return re.compile(rf"\b({body})\w*", re.IGNORECASE) if names else re.compile(r"(?!x)x")

    def drugs_in(self, text: str) -> set[str]:
        """Generic names of the medicines a text mentions (brand names and codes mapped to generic)."""
        found = set()
        for m in self.pattern.finditer(text):
            name = re.sub(r"[\s-]", "", m.group(1).lower())
            for generic, others in self.medicines.items():
                if name == generic or name in {re.sub(r"[\s-]", "", o.lower()) for o in others}:
                    found.add(generic)
        return found

    def without_drugs(self, text: str, replacement: str = "") -> str:
        return re.sub(r"\s{2,}", " ", self.pattern.sub(replacement, text)).strip()


def load_glossary(corpus_dir: Path) -> Glossary:
    from chatbot.corpus import CorpusError, load_yaml

    path = Path(corpus_dir) / "glossary.yaml"
    if not path.exists():
        return Glossary({}, {"en": "TRK inhibitors", "nl": "TRK-remmers"})
    data = load_yaml(path)
    meds = data.get("medicines") or {}
    if not isinstance(meds, dict) or not all(isinstance(v, list | type(None)) for v in meds.values()):
        raise CorpusError(path, "must map each generic name to a list of other names", field="medicines")
    names = data.get("class_name") or {}
    if not isinstance(names, dict) or set(names) - set(SUPPORTED):
        raise CorpusError(path, "must give the class name for en and nl", field="class_name")
    return Glossary({str(k).lower(): tuple(str(n).lower() for n in v or []) for k, v in meds.items()},
                    {"en": names.get("en", "TRK inhibitors"), "nl": names.get("nl", "TRK-remmers")})
