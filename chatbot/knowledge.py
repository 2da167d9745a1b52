"""What the assistant knows about how people ask, kept as data under ``corpus/``.

- ``corpus/utterances/*.jsonl``: labelled messages (what kind of reply each one needs), from which
  the reply-kind model is learned (``chatbot.intent``).
- ``corpus/questions/<doc id>.yaml``: the questions each section of a text answers, indexed as extra
  search keys for that section's passages.

Both are validated like the texts: an error names the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from chatbot.corpus import LANGUAGES, CorpusError, Document

# the reply-kind model's labels (corpus/utterances/README.md says what each one means)
QUESTION = "question"
CLINICAL = "clinical"
ADVERSE_EVENT = "adverse_event"
ADVICE = "advice"
OUTLOOK = "outlook"
OUT_OF_SCOPE = "out_of_scope"
SMALL_TALK = "small_talk"
LABELS = (QUESTION, CLINICAL, ADVERSE_EVENT, ADVICE, OUTLOOK, OUT_OF_SCOPE, SMALL_TALK)
UTTERANCE_FIELDS = {"text", "label", "lang", "family", "history", "answerable", "source"}
MIN_PASSAGE_QUESTIONS = 3  # per section and language


@dataclass(frozen=True)
class Utterance:
    text: str
    label: str
    lang: str
    family: str
    history: tuple[str, ...] = ()
    answerable: bool = True
    where: str = ""  # file:line, for messages about it

    @property
    def key(self) -> str:
        """A stable id: the same message with the same label, history, answerability and family is the
        same example (each of them changes what the model learns: a corrected `answerable` must
        retrain it)."""
        raw = json.dumps([self.text, self.label, self.lang, list(self.history), self.answerable, self.family],
                         ensure_ascii=False)
        return hashlib.sha1(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PassageQuestion:
    text: str
    lang: str  # the question's language (not necessarily the passage's)
    doc_id: str
    heading: str

    @property
    def key(self) -> str:
        raw = json.dumps([self.doc_id, self.heading, self.lang, self.text], ensure_ascii=False)
        return hashlib.sha1(raw.encode()).hexdigest()[:16]


@dataclass
class Knowledge:
    """Everything under corpus/ besides the texts themselves."""

    utterances: list[Utterance] = field(default_factory=list)
    questions: list[PassageQuestion] = field(default_factory=list)


def load_utterances(folder: Path) -> list[Utterance]:
    """Every labelled message in ``folder/*.jsonl``; a bad line raises CorpusError (file, line, field)."""
    folder = Path(folder)
    out: list[Utterance] = []
    seen: dict[tuple, str] = {}
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(path, f"not valid JSON ({exc.msg})", line=n) from None
            if not isinstance(row, dict):
                raise CorpusError(path, "each line must be a JSON object", line=n)
            for name in ("text", "label", "lang", "family"):
                if not isinstance(row.get(name), str) or not row[name].strip():
                    raise CorpusError(path, "missing or empty", line=n, field=name)
            unknown = set(row) - UTTERANCE_FIELDS
            if unknown:
                raise CorpusError(path, f"unknown field (allowed: {', '.join(sorted(UTTERANCE_FIELDS))})",
                                  line=n, field=sorted(unknown)[0])
            if row["label"] not in LABELS:
                raise CorpusError(path, f"'{row['label']}' is not one of {', '.join(LABELS)}", line=n, field="label")
            if row["lang"] not in LANGUAGES:
                raise CorpusError(path, f"'{row['lang']}' is not one of {', '.join(LANGUAGES)}", line=n, field="lang")
            history = row.get("history", [])
            if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
                raise CorpusError(path, "must be a list of earlier messages", line=n, field="history")
            answerable = row.get("answerable", True)
            if not isinstance(answerable, bool):
                raise CorpusError(path, "must be true or false", line=n, field="answerable")
            text = " ".join(row["text"].split())
            # the same message may not need two kinds of reply (as `rasa data validate` checks)
            same = (text.lower(), tuple(history))
            if same in seen and seen[same] != row["label"]:
                raise CorpusError(path, f"the same message is also labelled '{seen[same]}'", line=n, field="label")
            seen[same] = row["label"]
            out.append(Utterance(text, row["label"], row["lang"], row["family"].strip(), tuple(history),
                                 answerable, f"{path.name}:{n}"))
    return out


def _sections(doc: Document) -> list[str]:
    """The headings of a text's sections, as the index names them (see chatbot.chunking)."""
    from chatbot.chunking import section_headings

    return section_headings(doc)


def load_passage_questions(folder: Path, docs: list[Document]) -> list[PassageQuestion]:
    """The questions of ``folder/<doc id>.yaml``, checked against the texts' sections."""
    folder = Path(folder)
    by_id = {d.id: d for d in docs}
    out: list[PassageQuestion] = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise CorpusError(path, f"malformed YAML ({getattr(exc, 'problem', exc)})",
                              line=mark.line + 1 if mark else None) from None
        if not isinstance(data, dict):
            raise CorpusError(path, "must be a mapping with 'doc' and 'sections'", line=1)
        doc = by_id.get(str(data.get("doc", "")))
        if doc is None:
            raise CorpusError(path, f"'{data.get('doc')}' is not the id of a text in corpus/", line=1, field="doc")
        if path.stem != doc.id:
            raise CorpusError(path, f"the file must be named {doc.id}.yaml", line=1, field="doc")
        headings = _sections(doc)
        sections = data.get("sections")
        if not isinstance(sections, list):
            raise CorpusError(path, "must be a list of sections", field="sections")
        for i, section in enumerate(sections, 1):
            heading = section.get("heading") if isinstance(section, dict) else None
            if heading not in headings:
                raise CorpusError(path, f"section {i}: heading '{heading}' is not a section of {doc.path} "
                                  f"(its sections: {'; '.join(headings)})", field="heading")
            for lang in LANGUAGES:
                qs = section.get(lang) or []
                if not isinstance(qs, list) or not all(isinstance(q, str) and q.strip() for q in qs):
                    raise CorpusError(path, f"section '{heading}': must be a list of questions", field=lang)
                out.extend(PassageQuestion(" ".join(q.split()), lang, doc.id, heading) for q in qs)
    return out


def load_knowledge(corpus_dir: Path, docs: list[Document]) -> Knowledge:
    corpus_dir = Path(corpus_dir)
    return Knowledge(load_utterances(corpus_dir / "utterances"),
                     load_passage_questions(corpus_dir / "questions", docs))
