"""The answer / "I don't know" gate: whether the picked sentences answer the question.

A logistic regression over a few signals of one (question, picked passage) pair, trained by
`index` (``chatbot.training``) on labelled pairs: passage questions held out from the index (does
the passage found for them belong to their section?) and in-scope questions the texts cannot
answer or off-topic messages (nothing answers them). Its cut-off is chosen on held-out pairs for
the precision of answered questions.

What the reply-kind model thinks weighs in too: for a user's question, the gate's probability and
the model's probability that no text answers such a question ("doubt") are combined by a second
logistic regression, fitted by `index` on the labelled users' questions (both probabilities held
out), with the cut-off that answers at least ``ANSWERED`` of the answerable ones and otherwise
tells the two apart best (macro-F1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from chatbot.retrieval import HCP, Snapshot, words

FEATURES = ("best_sentence", "passage", "passage_question", "coverage", "unknown_words", "found_by_words",
            "same_language", "length")


def features(snap: Snapshot, query: str, lang: str, qv, picked) -> np.ndarray:
    """The signals of one (question, picked sentences) pair, in FEATURES order."""
    top = picked[0].hit
    row = snap.by_id[top.chunk.id]
    asked = words(query, lang)
    weight = [snap.weight(forms[0], lang) for forms in asked]
    total = sum(weight) or 1.0
    have: set[str] = set()
    for p in picked:
        c = p.hit.chunk
        have.update(snap.tokens_of(p.text, c.language))
        have.update(snap.tokens_of(f"{c.title} {c.heading}", c.language))
        have.update(snap.q_tokens.get(snap.by_id[c.id], []))
    coverage = sum(w for w, forms in zip(weight, asked) if set(forms) & have) / total
    vocabulary = snap.vocabulary[HCP]
    unknown = sum(not set(forms) & vocabulary for forms in asked) / max(1, len(asked))
    return np.asarray([
        max(p.sim for p in picked), float(top.dense), snap.question_similarity(qv, row), coverage, unknown,
        float(top.lexical), float(top.chunk.language == lang), min(len(asked), 12) / 12,
    ])


def _logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def doubt_features(gate_probability, doubt) -> np.ndarray:
    """The second stage's inputs: the gate's log-odds and the model's doubt, both ways (rows)."""
    g = np.atleast_1d(np.asarray(gate_probability, dtype=float))
    d = np.atleast_1d(np.asarray(doubt, dtype=float))
    return np.column_stack([_logit(g), np.log(d + 1e-4), np.log(1 - d + 1e-4)])


@dataclass
class Gate:
    coef: list[float] = field(default_factory=list)
    intercept: float = 0.0
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    threshold: float = 0.5
    doubt: dict = field(default_factory=dict)  # the second stage: coef, intercept, threshold

    @classmethod
    def from_meta(cls, meta: dict | None) -> Gate:
        if not meta:
            return cls()
        return cls(meta["coef"], meta["intercept"], meta["mean"], meta["scale"], meta["threshold"],
                   meta.get("doubt") or {})

    def with_doubt(self, probability: float, doubt: float) -> float:
        """The second stage: the gate's probability weighed against the model's doubt."""
        z = float(doubt_features(probability, doubt)[0] @ np.asarray(self.doubt["coef"])) + self.doubt["intercept"]
        return 1.0 / (1.0 + math.exp(-z))

    def probability(self, f: np.ndarray) -> float:
        if not self.coef:  # an index trained before the gate: the best sentence's similarity alone
            return float(f[0])
        z = float(((f - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef)) + self.intercept
        return 1.0 / (1.0 + math.exp(-z))

    def answers(self, snap: Snapshot, query: str, lang: str, qv, picked, doubt: float | None = None) -> bool:
        """Whether the picked sentences answer the question; ``doubt``: the reply-kind model's
        probability that no text answers such a question (None: not asked, as for a report)."""
        if not picked:
            return False
        p = self.probability(features(snap, query, lang, qv, picked))
        if doubt is not None and self.doubt:
            return p >= self.doubt.get("floor", 0.0) and self.with_doubt(p, doubt) >= self.doubt["threshold"]
        return p >= self.threshold


class Recorder(Gate):
    """A gate that lets every pick through and keeps its features (for training)."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[np.ndarray, list]] = []

    def answers(self, snap, query, lang, qv, picked, doubt=None) -> bool:
        if picked:
            self.seen.append((features(snap, query, lang, qv, picked), picked))
        return bool(picked)
