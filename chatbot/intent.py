"""The reply-kind model: what a message asks for, learned from the labelled messages in corpus/.

Features: character n-grams of the message (TF-IDF; they carry Dutch word forms, compounds and
typos, which the English embedding model does not) beside its MiniLM sentence vector (paraphrase),
and, for each reply kind, how close the nearest example of that kind is (cosine of the vectors; in
training an example's own family is left out, as it is for a new message). A multinomial logistic
regression weighs them.

The examples are the labelled messages and the passage questions of the texts (``corpus/questions``):
a question a public section answers is a `question`, one an HCP section answers is `clinical`. They
tell the model which topics the texts cover, so a question about one of them is not taken for one
that no text answers. Training is seeded and deterministic: examples are
sorted, lbfgs runs in one thread. Evaluation holds out whole paraphrase families
(StratifiedGroupKFold), so a family is never on both sides of a split.

A missed side-effect report is the worst error here, so `adverse_event` is not decided by the
argmax: it is flagged when its probability reaches a cut-off chosen on held-out families for a
recall of at least ``AE_RECALL`` (the highest cut-off that still reaches it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import sklearn
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import StratifiedGroupKFold

from chatbot.knowledge import ADVERSE_EVENT, CLINICAL, QUESTION, Utterance
from chatbot.retrieval import HCP as HCP_AUDIENCE

AE_RECALL = 0.98
SEED = 0
C = 10.0
# lbfgs stops sooner than at scikit-learn's 1e-4, for `index` to train in under a minute: 3e-4 took a
# third fewer iterations (held-out macro-F1 of the model alone 0.8303 -> 0.8295), 5e-4 15% less time
# again (0.8465 -> 0.8457 on 9,688 messages)
TOL = 5e-4
EMB_WEIGHT = 0.5  # on held-out families 0.5 beat 1 and 2 (macro-F1 0.843 vs 0.827, 0.788)
NEAREST_WEIGHT = 1.0  # the nearest example of each kind (held out: macro-F1 0.820 with, 0.816 without)
MIN_AE_THRESHOLD = 0.05  # never flag every message: a floor under the chosen cut-off


UNANSWERABLE = "unanswerable"  # a `question` marked `answerable: false`: in scope, and no text answers it
UNANSWERABLE_CLINICAL = "unanswerable_clinical"  # a `clinical` one (for the public still HCP-only)
# each of them, and the question it is otherwise (two kinds, not one: with one, whether an unanswerable
# question was clinical was read from two probabilities that were both near zero)
UNANSWERED = {UNANSWERABLE: QUESTION, UNANSWERABLE_CLINICAL: CLINICAL}


def target(u: Utterance) -> str:
    """What the model learns for a message: its label, or that no text answers it."""
    if not u.answerable and u.label in (QUESTION, CLINICAL):
        return UNANSWERABLE if u.label == QUESTION else UNANSWERABLE_CLINICAL
    return u.label


def unanswerable(proba: dict[str, float]) -> float | None:
    """The model's probability that no text answers the message (None for a model without such examples)."""
    found = [proba[c] for c in UNANSWERED if c in proba]
    return sum(found) if found else None


def passage_examples(generation) -> tuple[list[Utterance], np.ndarray]:
    """The passage questions as labelled examples: `clinical` for an HCP section, `question` otherwise
    (one per text; a section's questions are one family)."""
    chunks = {c.id: c for c in generation.chunks}
    examples, rows, seen = [], [], set()
    for i, (cid, lang, text) in enumerate(generation.questions):
        chunk = chunks.get(cid)
        if chunk is None or text in seen:
            continue
        seen.add(text)
        label = CLINICAL if chunk.audience == HCP_AUDIENCE else QUESTION
        examples.append(Utterance(text, label, lang, f"passage:{chunk.doc_id}#{chunk.heading}"))
        rows.append(i)
    vectors = np.asarray(generation.question_embeddings)[rows] if rows else np.zeros((0, 384), np.float32)
    return examples, vectors


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
    memory: np.ndarray | None = None  # the training examples' vectors (for the nearest of each kind)
    memory_labels: np.ndarray | None = None  # their targets
    memory_families: np.ndarray | None = None  # while fitting only

    def nearest(self, vectors: np.ndarray, families: np.ndarray | None = None) -> np.ndarray:
        """For each vector and each kind, the cosine of the nearest example of that kind; with
        ``families`` (in training: integer codes, as ``memory_families``), examples of the vector's
        own family do not count. The memory is ordered by kind, so each kind is one slice."""
        vectors = np.asarray(vectors, dtype=np.float32)
        out = np.zeros((len(vectors), len(self.classes)), dtype=np.float32)
        labels = np.asarray(self.memory_labels)
        spans = [(k, int(np.searchsorted(labels, c, "left")), int(np.searchsorted(labels, c, "right")))
                 for k, c in enumerate(self.classes)]
        for start in range(0, len(vectors), 1024):  # in blocks: a full similarity matrix is large
            sims = vectors[start:start + 1024] @ self.memory.T
            if families is not None:
                sims[families[start:start + 1024, None] == self.memory_families[None, :]] = -1.0
            for k, lo, hi in spans:
                if hi > lo:
                    out[start:start + 1024, k] = sims[:, lo:hi].max(axis=1)
        return out

    def _features(self, texts: list[str], vectors: np.ndarray, families: np.ndarray | None = None, chars=None):
        if chars is None:
            chars = self.vectorizer.transform([normalise(t) for t in texts])
        vectors = np.asarray(vectors, dtype=np.float32)
        return sparse.hstack([chars, sparse.csr_matrix(vectors * EMB_WEIGHT),
                              sparse.csr_matrix(self.nearest(vectors, families) * NEAREST_WEIGHT)], format="csr",
                             dtype=np.float32)

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


def _model_key(utterances: list[Utterance], vectors: np.ndarray, ae_threshold: float) -> str:
    """What a fitted model is made from: the examples, their vectors, the cut-off, this code and
    scikit-learn's version."""
    code = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()
    utterances, vectors = _ordered(utterances, vectors)  # the same examples read in another order
    digest = hashlib.sha1(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()
    return hashlib.sha1(json.dumps([[u.key for u in utterances], ae_threshold, digest, code,
                                    sklearn.__version__]).encode()).hexdigest()


def fit_cached(utterances: list[Utterance], vectors: np.ndarray, ae_threshold: float,
               cache_dir: Path | None = None, fitted: IntentModel | None = None) -> IntentModel:
    """``fit``, once per process for the same data (engines over the same generation share it) and,
    with ``cache_dir``, once per machine: `index` fits the serving model and keeps it there, so a
    new serving process loads it instead of fitting it again. The file is written by this program
    into its own cache folder (joblib, as scikit-learn documents for model persistence). ``fitted``:
    the model of these examples when it was already fitted (by ``held_out(full=True)``)."""
    key = _model_key(utterances, vectors, ae_threshold)
    with _FIT_LOCK:
        if key not in _FITTED:
            _FITTED.clear()  # only the newest generation's model is kept
            path = cache_dir / f"{key}.joblib" if cache_dir else None
            model = None
            if path is not None and path.exists():
                with contextlib.suppress(Exception):  # unreadable or from another version: fit anew
                    model = joblib.load(path)
            if not isinstance(model, IntentModel):
                if fitted is not None:
                    model = fitted
                    model.ae_threshold = ae_threshold
                else:
                    model = fit(utterances, vectors, ae_threshold)
                if path is not None:  # kept, however it was fitted: serving processes load it
                    with contextlib.suppress(OSError):
                        path.parent.mkdir(parents=True, exist_ok=True)
                        tmp = path.with_suffix(f".{os.getpid()}.tmp")
                        joblib.dump(model, tmp)
                        tmp.replace(path)
            _FITTED[key] = model
        return _FITTED[key]


def _ordered(utterances: list[Utterance], vectors: np.ndarray):
    """Training order fixed by the examples' keys, so the same data always gives the same model."""
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].key)
    return [utterances[i] for i in order], np.asarray(vectors)[order]


def fit(utterances: list[Utterance], vectors: np.ndarray, ae_threshold: float = 0.5) -> IntentModel:
    utterances, vectors = _ordered(utterances, vectors)
    # single precision throughout: the fit reads the features some 200 times, and float32 halves
    # that (measured: 15.0 s -> 7.0 s for 8,260 examples, the same number of iterations)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                                 dtype=np.float32)
    chars = vectorizer.fit_transform([normalise(u.text) for u in utterances])  # one pass over the texts
    clf = LogisticRegression(C=C, tol=TOL, class_weight="balanced", max_iter=3000, random_state=SEED)
    model = IntentModel(vectorizer, clf, ae_threshold)
    y = np.asarray([target(u) for u in utterances])
    families = np.unique([u.family for u in utterances], return_inverse=True)[1]  # integer codes: fast to compare
    model.classes = sorted(set(y.tolist()))
    by_kind = np.argsort(y, kind="stable")  # the memory ordered by kind (see ``nearest``)
    model.memory = np.asarray(vectors, dtype=np.float32)[by_kind]
    model.memory_labels, model.memory_families = y[by_kind], families[by_kind]
    x = model._features([u.text for u in utterances], vectors, families, chars)
    clf.fit(x, y)
    langs = [u.lang for u in utterances]
    if len(set(langs)) == 2:
        model.language = LogisticRegression(C=C, max_iter=3000, random_state=SEED)
        model.language.fit(x[:, : len(vectorizer.vocabulary_)], langs)
    model.memory_families = None  # needed only to fit (a new message belongs to no family): 3.9 MB less
    return model


@dataclass
class HeldOut:
    """Out-of-fold predictions: each message scored by a model that never saw its family."""

    utterances: list[Utterance]
    classes: list[str]
    proba: np.ndarray
    folds: np.ndarray  # the fold each message was held out in
    models: list[IntentModel] = field(default_factory=list)  # fold k's model (fitted without fold k)
    full: IntentModel | None = None  # with ``full=True``: the model of all the examples

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


def _fit_and_score(examples, vectors, texts, test_vectors):
    model = fit(examples, vectors)
    return model, (model.proba(texts, test_vectors) if texts else None)


def held_out(utterances: list[Utterance], vectors: np.ndarray, folds: int = 5, seed: int = SEED,
             passages: tuple[list[Utterance], np.ndarray] = ([], np.zeros((0, 384))),
             full: bool = False) -> HeldOut:
    """Each labelled message scored by a model fitted without its family (the passage questions are
    always among the examples: they are part of the texts, not of what is tested). With ``full``, the
    model of all the examples is fitted beside the folds' (``HeldOut.full``).

    The fits are independent and each runs in one thread, so they run side by side, one process per
    core (joblib); each result is the same as fitted alone."""
    utterances, vectors = _ordered(utterances, vectors)
    classes = sorted({target(u) for u in utterances})
    proba = np.zeros((len(utterances), len(classes)))
    fold_of = np.zeros(len(utterances), dtype=int)
    extra, extra_vectors = passages
    extra_vectors = np.asarray(extra_vectors).reshape(-1, vectors.shape[1])
    parts = split(utterances, folds, seed)
    jobs = [([utterances[i] for i in train] + list(extra), np.vstack([vectors[train], extra_vectors]),
             [utterances[i].text for i in test], vectors[test]) for train, test in parts]
    if full:
        jobs.append((list(utterances) + list(extra), np.vstack([vectors, extra_vectors]), [], None))
    n_jobs = max(1, min(len(jobs), os.cpu_count() or 1))
    fitted = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_fit_and_score)(*job) for job in jobs)
    for k, ((_, test), (model, p)) in enumerate(zip(parts, fitted)):
        cols = [classes.index(c) for c in model.classes]
        proba[np.ix_(test, cols)] = p
        fold_of[test] = k
    return HeldOut(utterances, classes, proba, fold_of, [m for m, _ in fitted[:len(parts)]],
                   fitted[-1][0] if full else None)


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


def fit_generation(generation, ae_threshold: float, cache_dir: Path | None = None,
                   fitted: IntentModel | None = None) -> IntentModel:
    """The serving model of a generation: its labelled messages and its passage questions."""
    extra, extra_vectors = passage_examples(generation)
    utterances = list(generation.utterances) + extra
    vectors = np.vstack([np.asarray(generation.utterance_embeddings).reshape(-1, extra_vectors.shape[1]),
                         extra_vectors])
    return fit_cached(utterances, vectors, ae_threshold, cache_dir, fitted)
