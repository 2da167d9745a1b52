"""Score the engine on a gold file (the format of shared/eval/dev.jsonl)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

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
