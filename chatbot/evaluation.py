"""Score the engine on a gold file (the format of shared/eval/dev.jsonl)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chatbot.answer import Engine, Reply
from chatbot.retrieval import HCP


class EvalFileError(Exception):
    pass


def load_gold(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalFileError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        for key in ("question", "expect"):
            if key not in row:
                raise EvalFileError(f"{path}:{n}: field '{key}' is missing")
        rows.append(row)
    return rows


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


@dataclass
class CaseResult:
    id: str
    kind: str
    ok_kind: bool
    facts_hit: int
    facts_total: int
    leak: str
    uncited: bool
    ms: float


@dataclass
class EvalReport:
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def behaviour_accuracy(self) -> float:
        return sum(c.ok_kind for c in self.cases) / max(1, len(self.cases))

    @property
    def facts(self) -> tuple[int, int]:
        return sum(c.facts_hit for c in self.cases), sum(c.facts_total for c in self.cases)

    @property
    def leaks(self) -> list[CaseResult]:
        return [c for c in self.cases if c.leak]

    @property
    def uncited(self) -> list[CaseResult]:
        return [c for c in self.cases if c.uncited]

    def summary(self) -> dict:
        hit, total = self.facts
        times = [c.ms for c in self.cases]
        return {
            "questions": len(self.cases), "behaviour_accuracy": round(self.behaviour_accuracy, 4),
            "key_facts": f"{hit}/{total}", "leaks": len(self.leaks), "uncited_answers": len(self.uncited),
            "p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2),
        }


def leak_of(reply: Reply, forbidden: list[str]) -> str:
    """Why a public reply leaks: an HCP citation or a forbidden string; empty if it does not."""
    if any(c.audience == HCP for c in reply.citations):
        return "HCP citation"
    low = reply.answer.lower()
    for s in forbidden:
        if s.lower() in low:
            return f"contains {s!r}"
    return ""


def evaluate(engine: Engine, gold: list[dict], repeat: int = 1) -> EvalReport:
    report = EvalReport()
    for _ in range(repeat):
        for row in gold:
            role = row.get("role", "public")
            reply = engine.ask(row["question"], row.get("history") or [], role)
            low = reply.answer.lower()
            groups = row.get("must_include") or []
            hit = sum(any(alt.lower() in low for alt in group) for group in groups)
            leak = leak_of(reply, row.get("must_not_include") or []) if role != HCP else ""
            uncited = reply.kind == "answer" and (not reply.citations or "[1]" not in reply.answer)
            report.cases.append(CaseResult(
                row.get("id", ""), reply.kind, reply.kind in row["expect"], hit, len(groups), leak,
                uncited, reply.ms,
            ))
    return report


# -- held-out families ------------------------------------------------------------------------------
# the reply each label needs, for the public and for a verified HCP (corpus/utterances/README.md)
EXPECTED = {
    "question": ("answer", "answer"), "clinical": ("hcp_only", "answer"), "adverse_event": ("adverse_event",) * 2,
    "advice": ("advice",) * 2, "outlook": ("no_answer",) * 2, "out_of_scope": ("out_of_scope",) * 2,
    "small_talk": ("small_talk",) * 2,
}


@dataclass
class CrossValidation:
    """End-to-end reply kinds of the labelled messages, each answered by an engine whose reply-kind
    model never saw the message's family (grouped, stratified k-fold)."""

    rows: list[dict] = field(default_factory=list)  # label, lang, family, role, expected, kind

    def table(self) -> dict:
        from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

        kinds = sorted({r["expected"] for r in self.rows} | {r["kind"] for r in self.rows})
        y = [r["expected"] for r in self.rows]
        p = [r["kind"] for r in self.rows]
        prec, rec, f1, n = precision_recall_fscore_support(y, p, labels=kinds, zero_division=0)
        per_kind = {k: {"precision": round(float(a), 3), "recall": round(float(b), 3), "f1": round(float(c), 3),
                        "n": int(d)} for k, a, b, c, d in zip(kinds, prec, rec, f1, n)}
        present = [k for k in kinds if per_kind[k]["n"]]
        ae = [r for r in self.rows if r["label"] == "adverse_event"]
        refused = [r for r in self.rows if r["role"] == "public" and r["kind"] == "hcp_only"]
        answerable = [r for r in self.rows if r["role"] == "public" and r["label"] == "question" and r["answerable"]]
        return {
            "messages": len(self.rows), "families": len({r["family"] for r in self.rows}),
            "per_kind": per_kind,
            "macro_f1": round(float(np.mean([per_kind[k]["f1"] for k in present])), 3),
            "adverse_event_recall": round(sum(r["kind"] == "adverse_event" for r in ae) / max(1, len(ae)), 3),
            "hcp_refusal_precision": round(sum(r["expected"] == "hcp_only" for r in refused) / max(1, len(refused)), 3),
            "answerable_public_answered": round(sum(r["kind"] == "answer" for r in answerable) / max(1, len(answerable)), 3),
            "by_language": {lang: round(sum(r["kind"] == r["expected"] for r in rs) / max(1, len(rs)), 3)
                            for lang in ("en", "nl") if (rs := [r for r in self.rows if r["lang"] == lang])},
            "kinds": kinds,
            "confusion": confusion_matrix(y, p, labels=kinds).tolist(),
        }


def cross_validate(engine: Engine, folds: int = 5, limit: int | None = None) -> CrossValidation:
    """Both learned parts are refitted for each fold without its families: the reply-kind model and
    the answer gate (whose pairs include the labelled users' questions)."""
    from chatbot import intent, training
    from chatbot.gate import Gate

    snap = engine.snapshot()
    gen = snap.generation
    utts, vecs = intent._ordered(gen.utterances, gen.utterance_embeddings)
    threshold = gen.meta.get("ae_threshold", 0.5)
    extra, extra_vectors = intent.passage_examples(gen)  # part of the texts: in every fold's training
    # the model's held-out doubt for each user's question, as index computes it for the gate's second stage
    held_out = intent.held_out(utts, vecs, folds, passages=(extra, extra_vectors))
    doubt = training.held_doubt(held_out)
    X, y, groups, doubts = training.gate_pairs(engine.settings, engine.embedder, gen, doubt)
    out = CrossValidation()
    served = snap.intent, snap.gate
    try:
        for (_, test), model in zip(intent.split(utts, folds), held_out.models):
            held = {utts[i].family for i in test}
            keep = np.asarray([g not in held for g in groups], dtype=bool)
            snap.gate = Gate.from_meta(training.fit_gate(X[keep], y[keep], groups[keep], doubts[keep]))
            snap.intent = model  # fitted by held_out without this fold's families
            model.ae_threshold = threshold
            for i in test[:limit]:  # a quick look: the first `limit` of each fold (the data's key order)
                u = utts[i]
                roles = ["public", "hcp"] if u.label == "clinical" else ["public"]
                for role in roles:
                    expected = EXPECTED[u.label][role == HCP]
                    if expected == "answer" and not u.answerable:
                        expected = "no_answer"
                    kind = engine.ask(u.text, list(u.history), role).kind
                    out.rows.append({"label": u.label, "lang": u.lang, "family": u.family, "role": role,
                                     "expected": expected, "kind": kind, "answerable": u.answerable,
                                     "text": u.text})
    finally:
        snap.intent, snap.gate = served
    return out
