"""The reply-kind model: what a message asks for, learned from the labelled messages in corpus/.

Features: character n-grams of the message (TF-IDF; they carry Dutch word forms, compounds and
typos, which the English embedding model does not) beside its MiniLM sentence vector (paraphrase).
A multinomial logistic regression weighs them. Training is seeded and deterministic: examples are
sorted, lbfgs runs in one thread. Evaluation holds out whole paraphrase families
(StratifiedGroupKFold), so a family is never on both sides of a split.

A missed side-effect report is the worst error here, so `adverse_event` is not decided by the
argmax: it is flagged when its probability reaches a cut-off chosen on held-out families for a
recall of at least ``AE_RECALL`` (the highest cut-off that still reaches it).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import StratifiedGroupKFold

from chatbot.knowledge import ADVERSE_EVENT, CLINICAL, QUESTION, Utterance

AE_RECALL = 0.98
SEED = 0
C = 10.0
EMB_WEIGHT = 0.5  # on held-out families 0.5 beat 1 and 2 (macro-F1 0.843 vs 0.827, 0.788)
MIN_AE_THRESHOLD = 0.05  # never flag every message: a floor under the chosen cut-off


UNANSWERABLE = "unanswerable"  # a question marked `answerable: false`: in scope, and no text answers it


def target(u: Utterance) -> str:
    """What the model learns for a message: its label, or that no text answers it."""
    return UNANSWERABLE if not u.answerable and u.label in (QUESTION, CLINICAL) else u.label


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


@dataclass
class Prediction:
    label: str
    proba: dict[str, float]
    adverse_event: bool  # flagged as a side-effect report (by its own cut-off, whatever the argmax)
    dutch: float | None = None  # how likely the message is Dutch, as learned from the labelled messages

    @property
    def confidence(self) -> float:
        return self.proba[self.label]


@dataclass
class IntentModel:
    vectorizer: TfidfVectorizer
    clf: LogisticRegression
    ae_threshold: float = 0.5
    classes: list[str] = field(default_factory=list)
    language: LogisticRegression | None = None  # Dutch or English, from the same character n-grams

    def _features(self, texts: list[str], vectors: np.ndarray):
        chars = self.vectorizer.transform([normalise(t) for t in texts])
        return sparse.hstack([chars, sparse.csr_matrix(np.asarray(vectors, dtype=np.float64) * EMB_WEIGHT)],
                             format="csr")

    def proba(self, texts: list[str], vectors: np.ndarray) -> np.ndarray:
        return self.clf.predict_proba(self._features(texts, vectors))

    def combine(self, a: Prediction, b: Prediction) -> Prediction:
        """The mean of two readings of one message (alone, and with the message before it); a
        side-effect report flagged by either stays flagged."""
        proba = {c: (a.proba[c] + b.proba[c]) / 2 for c in self.classes}
        ae = a.adverse_event or b.adverse_event or proba.get(ADVERSE_EVENT, 0.0) >= self.ae_threshold
        label = ADVERSE_EVENT if ae else max(proba, key=proba.get)
        return Prediction(label, proba, ae, a.dutch)

    def predict(self, text: str, vector: np.ndarray) -> Prediction:
        x = self._features([text], np.asarray(vector).reshape(1, -1))
        p = self.clf.predict_proba(x)[0]
        proba = {c: float(v) for c, v in zip(self.classes, p)}
        ae = proba.get(ADVERSE_EVENT, 0.0) >= self.ae_threshold
        label = ADVERSE_EVENT if ae else self.classes[int(np.argmax(p))]
        dutch = None
        if self.language is not None:
            chars = x[:, : len(self.vectorizer.vocabulary_)]
            dutch = float(self.language.predict_proba(chars)[0][list(self.language.classes_).index("nl")])
        return Prediction(label, proba, ae, dutch)


_FITTED: dict[str, IntentModel] = {}
_FIT_LOCK = threading.Lock()


def fit_cached(utterances: list[Utterance], vectors: np.ndarray, ae_threshold: float,
               cache_dir: Path | None = None) -> IntentModel:
    """``fit``, once per process for the same data (engines over the same generation share it), and
    with `cache_dir` once per machine: fitting takes 6-20 s of one core, loading the fitted model a
    fraction of a second, so several serving processes start in seconds."""
    key = hashlib.sha1(json.dumps([sorted(u.key for u in utterances), ae_threshold]).encode()
                       + np.ascontiguousarray(vectors).tobytes()).hexdigest()
    with _FIT_LOCK:
        if key not in _FITTED:
            _FITTED.clear()  # only the newest generation's model is kept
            _FITTED[key] = _fit_on_disk(cache_dir, key, lambda: fit(utterances, vectors, ae_threshold))
        return _FITTED[key]


def _fit_on_disk(cache_dir: Path | None, key: str, fit_model) -> IntentModel:
    """The fitted model from `cache_dir` (made by this code and this scikit-learn from the same
    messages and vectors), else fitted now and kept there; written whole or not at all, so processes
    may race."""
    import joblib
    import sklearn

    if cache_dir is None:
        return fit_model()
    made_by = hashlib.sha1(Path(__file__).read_bytes() + sklearn.__version__.encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"{key}-{made_by}.joblib"
    if path.exists():
        return joblib.load(path)
    model = fit_model()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    joblib.dump(model, tmp)
    tmp.replace(path)
    return model


def _ordered(utterances: list[Utterance], vectors: np.ndarray):
    """Training order fixed by the examples' keys, so the same data always gives the same model."""
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].key)
    return [utterances[i] for i in order], np.asarray(vectors)[order]


def fit(utterances: list[Utterance], vectors: np.ndarray, ae_threshold: float = 0.5) -> IntentModel:
    utterances, vectors = _ordered(utterances, vectors)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                                 dtype=np.float64)
    vectorizer.fit([normalise(u.text) for u in utterances])
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=SEED)
    model = IntentModel(vectorizer, clf, ae_threshold)
    x = model._features([u.text for u in utterances], vectors)
    clf.fit(x, [target(u) for u in utterances])
    model.classes = [str(c) for c in clf.classes_]
    langs = [u.lang for u in utterances]
    if len(set(langs)) == 2:
        model.language = LogisticRegression(C=C, max_iter=3000, random_state=SEED)
        model.language.fit(x[:, : len(vectorizer.vocabulary_)], langs)
    return model


@dataclass
class HeldOut:
    """Out-of-fold predictions: each message scored by a model that never saw its family."""

    utterances: list[Utterance]
    classes: list[str]
    proba: np.ndarray
    folds: np.ndarray  # the fold each message was held out in

    def labels(self) -> np.ndarray:
        return np.asarray([target(u) for u in self.utterances])

    def predicted(self, ae_threshold: float) -> np.ndarray:
        pred = np.asarray(self.classes)[self.proba.argmax(axis=1)]
        if ADVERSE_EVENT in self.classes:
            pred[self.proba[:, self.classes.index(ADVERSE_EVENT)] >= ae_threshold] = ADVERSE_EVENT
        return pred


def split(utterances: list[Utterance], folds: int = 5, seed: int = SEED):
    """Grouped, stratified folds over whole families: (train rows, test rows) pairs."""
    y = [target(u) for u in utterances]
    groups = [u.family for u in utterances]
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y, groups))


def held_out(utterances: list[Utterance], vectors: np.ndarray, folds: int = 5, seed: int = SEED) -> HeldOut:
    utterances, vectors = _ordered(utterances, vectors)
    classes = sorted({target(u) for u in utterances})
    proba = np.zeros((len(utterances), len(classes)))
    fold_of = np.zeros(len(utterances), dtype=int)
    for k, (train, test) in enumerate(split(utterances, folds, seed)):
        model = fit([utterances[i] for i in train], vectors[train])
        cols = [classes.index(c) for c in model.classes]
        proba[np.ix_(test, cols)] = model.proba([utterances[i].text for i in test], vectors[test])
        fold_of[test] = k
    return HeldOut(utterances, classes, proba, fold_of)


def choose_ae_threshold(out: HeldOut, min_recall: float = AE_RECALL) -> float:
    """The highest cut-off on the held-out side-effect probability whose recall is still >= min_recall."""
    if ADVERSE_EVENT not in out.classes:
        return 0.5
    truth = out.labels() == ADVERSE_EVENT
    if not truth.any():
        return 0.5
    _, recall, thresholds = precision_recall_curve(truth, out.proba[:, out.classes.index(ADVERSE_EVENT)])
    ok = recall[:-1] >= min_recall  # thresholds ascend while recall descends
    cut = float(thresholds[ok].max()) if ok.any() else float(thresholds.min())
    return max(MIN_AE_THRESHOLD, min(cut, 0.5))


def train(utterances: list[Utterance], vectors: np.ndarray, folds: int = 5) -> tuple[IntentModel, HeldOut | None]:
    """The model for serving: its side-effect cut-off is chosen on held-out families, then it is fitted
    on everything."""
    out = None
    threshold = 0.5
    families = {u.family for u in utterances}
    if len(families) >= folds * 2 and len({u.label for u in utterances}) > 1:
        out = held_out(utterances, vectors, folds)
        threshold = choose_ae_threshold(out)
    return fit(utterances, vectors, threshold), out
