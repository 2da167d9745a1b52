"""What `index` learns from a new generation before readers switch to it.

- The reply-kind model's side-effect cut-off, chosen on held-out families (``chatbot.intent``); the
  model itself is refitted from the generation's labelled messages by every serving process (the
  same data gives the same model, in seconds).
- The answer gate (``chatbot.gate``), fitted on labelled (question, passage) pairs:
  - passage questions, each asked of an index that does not hold it: right when the passage found
    belongs to its own section (or to one whose questions say the same); a question for which another
    section was found gives no pair (that section may answer it too, or not);
  - the labelled users' questions: right unless marked `answerable: false`; off-topic messages are
    wrong whatever is found.
  Its cut-off is the lowest at which the answered questions are right at least ``GATE_PRECISION``
  of the time, at that cut-off and every higher one that answers at least ``MIN_SUPPORT`` pairs
  (a precision over fewer pairs is noise).
- The gate's second stage (``chatbot.gate``): on the users' questions, the gate's held-out
  probability and the reply-kind model's held-out probability that no text answers the question.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_curve
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from chatbot import intent
from chatbot.config import Settings
from chatbot.gate import Recorder, doubt_features
from chatbot.index import Generation
from chatbot.knowledge import CLINICAL, OUT_OF_SCOPE, QUESTION
from chatbot.retrieval import HCP, PUBLIC, Snapshot

FOLDS = 5
GATE_PRECISION = 0.9
MAX_NEGATIVES = 600
MIN_SUPPORT = 100  # the gate's precision counts at a cut-off that answers at least this many pairs held out
# the second stage answers at least this share of the answerable questions held out (0.95 -> 0.97:
# eval --cv answered 0.865 -> 0.885, macro-F1 0.842 -> 0.841)
ANSWERED = 0.97
FLOOR_KEEPS = 0.99  # the evidence floor under the second stage keeps this share of the right pairs held out
SAME_QUESTION = 0.8


def _engine(settings: Settings, embedder):
    from chatbot.answer import Engine

    return Engine(settings, embedder, store=_NoStore())


class _NoStore:
    """Training reads the generation it is given; nothing else."""

    client = None

    def check_files(self):
        return False


def _snapshot(generation: Generation, keep: np.ndarray | None = None) -> Snapshot:
    if keep is not None:
        generation = dataclasses.replace(
            generation, questions=[q for q, k in zip(generation.questions, keep) if k],
            question_embeddings=generation.question_embeddings[keep])
    snap = Snapshot(generation)
    snap.gate = Recorder()
    snap.intent = None
    return snap


def _first_pick(engine, snap: Snapshot, text: str, vector, lang: str, role: str, english_first: bool = False):
    """Features and picked sentences of the first passage the engine would answer from, or None."""
    snap.gate.seen.clear()
    engine._retrieve_and_pick(snap, text, vector, role, lang, {}, english_first=english_first)
    return snap.gate.seen[0] if snap.gate.seen else None


def gate_pairs(settings: Settings, embedder, generation: Generation, doubt: dict | None = None):
    """(features, right?, group, doubt) for every labelled pair (see the module's docstring); doubt:
    the reply-kind model's held-out probability that no text answers a user's question, by the
    message's key (NaN for passage questions)."""
    engine = _engine(settings, embedder)
    chunks = {c.id: c for c in generation.chunks}
    X, y, groups, doubts = [], [], [], []
    doubt = doubt or {}
    qs = generation.questions
    sections = [(chunks[cid].doc_id, chunks[cid].heading) for cid, _, _ in qs]
    # a section answers a question when it is the question's own or has a question that says the same
    # (the English and Dutch texts answer the same questions)
    same = generation.question_embeddings @ generation.question_embeddings.T >= SAME_QUESTION
    answers = {}
    for i in range(len(qs)):
        answers[i] = {sections[j] for j in np.flatnonzero(same[i]) if qs[j][1] == qs[i][1]} | {sections[i]}
    # each question is asked of an index without it (and without a fifth of the other questions); its
    # section's other questions stay, as users' questions resemble stored ones without being them
    texts = sorted({t for _, _, t in qs})
    fold_of_text = {t: i % FOLDS for i, t in enumerate(texts)}
    for k in range(FOLDS):
        keep = np.asarray([fold_of_text[t] != k for _, _, t in qs], dtype=bool)
        if keep.all():
            continue
        snap = _snapshot(generation, keep)
        seen_texts = set()
        for i in np.flatnonzero(~keep):
            cid, lang, text = qs[i]
            if (text, sections[i]) in seen_texts:
                continue  # a long section's chunks share its questions: one pair per question
            seen_texts.add((text, sections[i]))
            english_first = lang != "en" and chunks[cid].language == "en"
            found = _first_pick(engine, snap, text, generation.question_embeddings[i], lang, HCP, english_first)
            if found is None:
                continue
            f, picked = found
            if (picked[0].hit.chunk.doc_id, picked[0].hit.chunk.heading) not in answers[i]:
                continue  # another section found: it may answer too, or not (a retrieval miss, no label)
            X.append(f)
            y.append(1)
            groups.append(f"{sections[i][0]}#{sections[i][1]}")
            doubts.append(np.nan)
    snap = _snapshot(generation)
    # users' own questions: answerable unless marked otherwise; off-topic messages never are
    asked = [(u, v) for u, v in zip(generation.utterances, generation.utterance_embeddings)
             if not u.history and (u.label in (QUESTION, CLINICAL) or u.label == OUT_OF_SCOPE)]
    off_topic = sorted([uv for uv in asked if uv[0].label == OUT_OF_SCOPE], key=lambda uv: uv[0].key)
    asked = [uv for uv in asked if uv[0].label != OUT_OF_SCOPE] + off_topic[:MAX_NEGATIVES]
    for u, v in asked:
        found = _first_pick(engine, snap, u.text, v, u.lang, HCP if u.label == CLINICAL else PUBLIC,
                            u.label == CLINICAL and u.lang != "en")
        if found is not None:
            X.append(found[0])
            y.append(int(u.answerable and u.label != OUT_OF_SCOPE))
            groups.append(u.family)
            doubts.append(doubt.get(u.key, np.nan))
    return np.asarray(X), np.asarray(y), np.asarray(groups), np.asarray(doubts, dtype=float)


def _held_out_proba(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each pair scored by a logistic regression fitted without its group."""
    oof = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=FOLDS).split(X, y, groups):
        oof[test] = LogisticRegression(C=1.0, max_iter=2000).fit(X[train], y[train]).predict_proba(X[test])[:, 1]
    return oof


def fit_doubt(gate_oof: np.ndarray, doubt: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """The second stage, on the users' questions: weights, and the cut-off that answers at least
    ``ANSWERED`` of the answerable ones and, among those, tells them apart best."""
    X = doubt_features(gate_oof, doubt)
    oof = _held_out_proba(X, y, groups)
    cuts = np.unique(np.round(oof, 3))
    reach = [c for c in cuts if (oof[y == 1] >= c).mean() >= ANSWERED] or [float(cuts.min())]
    threshold = max(reach, key=lambda c: (f1_score(y, (oof >= c).astype(int), average="macro"), -c))
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)
    answered = oof >= threshold
    return {"coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]), "threshold": float(threshold),
            "held_out": {"questions": int(len(y)), "answerable": int(y.sum()),
                         "answerable_answered": round(float(answered[y == 1].mean()), 3),
                         "unanswerable_refused": round(float((~answered[y == 0]).mean()), 3)
                         if (y == 0).any() else None}}


def fit_gate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, doubt: np.ndarray | None = None) -> dict:
    scaler = StandardScaler().fit(X)
    Z = scaler.transform(X)
    oof = _held_out_proba(Z, y, groups)
    precision, recall, thr = precision_recall_curve(y, oof)
    # a precision measured on a handful of answered pairs is noise: with the 8 most confident pairs
    # held out 1 wrong, the cut-off rose to answer 8 pairs of 7,193
    support = len(oof) - np.searchsorted(np.sort(oof), thr)
    bad = np.flatnonzero((precision[:-1] < GATE_PRECISION) & (support >= MIN_SUPPORT))
    threshold = float(thr[bad[-1] + 1]) if bad.size and bad[-1] + 1 < len(thr) else float(thr[0]) if not bad.size else 1.01
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(Z, y)
    answered = oof >= threshold
    second = {}
    asked = ~np.isnan(doubt) if doubt is not None else np.zeros(len(y), dtype=bool)
    if asked.sum() >= FOLDS * 4 and len(set(y[asked].tolist())) == 2:
        second = fit_doubt(oof[asked], doubt[asked], y[asked], groups[asked])
        # however little the model doubts, the passage must show the evidence that nearly every
        # right pair held out shows (a question and a passage that answers it)
        second["floor"] = float(np.quantile(oof[y == 1], 1 - FLOOR_KEEPS))
    return {
        "doubt": second,
        "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]),
        "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "threshold": threshold,
        "held_out": {"pairs": int(len(y)), "right": int(y.sum()), "answered": int(answered.sum()),
                     "answered_precision": round(float(y[answered].mean()) if answered.any() else 0.0, 3),
                     "right_answered": round(float(answered[y == 1].mean()) if (y == 1).any() else 0.0, 3)},
    }


def train_intent(generation: Generation, keep: dict | None = None) -> dict:
    """The side-effect cut-off and the model's held-out doubt; with ``keep``, the serving model,
    fitted beside the folds' models, is left in it (``keep["model"]``)."""
    out: dict = {}
    if generation.utterances:
        held = intent.held_out(generation.utterances, generation.utterance_embeddings,
                               passages=intent.passage_examples(generation), full=keep is not None)
        if keep is not None:
            keep["model"] = held.full
        out["ae_threshold"] = intent.choose_ae_threshold(held)
        labels = held.labels()
        pred = held.predicted(out["ae_threshold"])
        ae = labels == intent.ADVERSE_EVENT
        out["intent_held_out"] = {"accuracy": round(float((pred == labels).mean()), 3),
                                  "ae_recall": round(float((pred[ae] == labels[ae]).mean()) if ae.any() else 0.0, 3)}
        out["doubt"] = held_doubt(held)
    return out


def held_doubt(held: intent.HeldOut) -> dict:
    """Each user's question (no history) -> the held-out probability that no text answers it."""
    cols = [held.classes.index(c) for c in intent.UNANSWERED if c in held.classes]
    if not cols:
        return {}
    return {u.key: float(p) for u, p in zip(held.utterances, held.proba[:, cols].sum(axis=1))
            if not u.history and u.label in (QUESTION, CLINICAL)}


def train_gate(settings: Settings, generation: Generation, embedder, doubt: dict | None = None) -> dict:
    out: dict = {}
    if generation.questions and generation.utterances:
        X, y, groups, doubts = gate_pairs(settings, embedder, generation, doubt)
        if len(set(y.tolist())) == 2:
            out["gate"] = fit_gate(X, y, groups, doubts)
    return out
