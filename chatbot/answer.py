"""The answer engine: one call turns (question, history, role) into a typed, cited Reply."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chatbot import policy
from chatbot.config import Settings
from chatbot.index import IndexUnavailable, Store
from chatbot.messages import AE_QUERY, msg
from chatbot.retrieval import (
    HCP,
    PUBLIC,
    Hit,
    Retriever,
    Snapshot,
    expand,
    glossed,
    tokenize,
    words,
)

ROLES = (PUBLIC, HCP)
# words that say nothing about what is asked, so an answer need not share them: the topic's own words,
# words of asking, and words any question may have ("everyone", the Dutch preposition "bij")
GENERIC = set("""trk ntrk fusion cancer kanker tumour tumor gene gen fusiekanker trk-fusiekanker ntrk-gene
ntrk-genfusie get only tell know please explain mean means kind type people someone thing about
give information info informatie geef geeft geven weten vertel uitleg iemand mensen soort graag
does happen treat behandel diagnos test doctor arts patient patiënt body lichaam
everyone everybody anyone anybody iedereen bij often usually commonly mostly generally typically frequently normally actually exactly meestal gewoonlijk whether show shows showed""".split())
# words an answer must share with the question when it has them: who it is about (adults, children),
# which result, whether it can be cured, resistance (word forms as `tokenize` gives them)
_MUST_MATCH = [
    {"child", "kind", "paediatric", "pediatric", "infant", "infantile", "baby", "babie", "adolescent",
     "zuigeling", "zuigelingen"},
    {"adult", "volwassen", "volwassene"},
    # what a positive result means is not what a negative one means
    {"positive", "positief", "positieve"},
    {"negative", "negatief", "negatieve"},
    # nor is whether it can be cured answered by the list of treatments
    {"cure", "cured", "cures", "curable", "genezen", "geneesbaar", "genezing"},
    # nor whether it can be prevented by how it is treated
    {"prevent", "prevented", "preventing", "prevention", "preventable"},
    # nor how long something takes by what it is ("How long is larotrectinib taken?" got its dose
    # reductions; it is taken until disease progression)
    {"long", "lang", "duur", "duurt", "duren", "until"},
    # nor how resistance arises by a medicine's interactions with CYP3A4 inhibitors
    {"resistance", "resistant", "resistentie", "resistent"},
]
# nor survival by response rates and warnings (the larotrectinib texts give no survival figure);
# "progression-free" is how the texts give the share of patients without progression, so a PFS
# question is also answered by that word
_SURVIVAL = {"survival", "survive", "survived", "surviving", "overleving", "overleven", "overlevingskan"}
_PROGRESSION_FREE = {"progression-free", "pfs", "progressievrij", "progressievrije"}
# nor what happens when a medicine is stopped by what happens while it is taken; but "Should I stop
# my chemotherapy?" is a request for advice, whose general information need not speak of stopping
_STOPPING = {"stop", "stops", "stopped", "stopping", "discontinue", "discontinued", "discontinuation", "withdrawal"}
_DIGIT = re.compile(r"\d")
CLASS_NAME = {"en": "TRK inhibitors", "nl": "TRK-remmers"}  # the medicines as a class, for a second search
_ASKING = re.compile(r"\b(ask|questions?|vragen|vraag)\b", re.IGNORECASE)
# a sentence that opens like this leans on the one before it ("It can include surgery ...")
_REFERS = re.compile(r"(It|Its|They|Their|These|This|Those|That|Such|Both|Het|Dit|Deze|Die|Dat|Ze|Zij|Hun|Zo'n|Beide)\b"
                     r"|(\S+ ){1,4}then\b")  # "The fused gene then makes ...": the step before it


@dataclass
class Citation:
    n: int
    doc_id: str
    title: str
    heading: str
    audience: str
    language: str
    sources: list[dict]
    quote: str  # the passage (chunk text) the sentences were taken from, verbatim
    sentences: list[str]  # the exact sentences used in the answer
    chunk_id: str


@dataclass
class Reply:
    kind: str
    answer: str
    citations: list[Citation] = field(default_factory=list)
    language: str = "en"
    ms: float = 0.0
    timings: dict = field(default_factory=dict)
    generation: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> dict:
        """The public JSON shape shared by the CLI (--json/--jsonl) and the app's API."""
        return {
            "kind": self.kind, "answer": self.answer, "language": self.language,
            "citations": [
                {"n": c.n, "doc_id": c.doc_id, "title": c.title, "heading": c.heading,
                 "audience": c.audience, "sources": c.sources, "quote": c.quote,
                 "sentences": c.sentences, "chunk_id": c.chunk_id}
                for c in self.citations
            ],
            "ms": round(self.ms, 2),
            "generation": self.generation,
        }


@dataclass
class Picked:
    hit: Hit
    row: int  # sentence row in the snapshot
    order: int  # index of the sentence within its chunk
    text: str
    sim: float
    score: float


class Engine:
    """Loads the model and the current index generation once; answers many questions."""

    def __init__(self, settings: Settings, embedder, store: Store | None = None, llm=None,
                 refresh_seconds: float = 1.0):
        self.settings = settings
        self.embedder = embedder
        self.store = store or Store(settings)
        self.retriever = Retriever(self.store, settings.top_k, settings.rrf_k)
        self.llm = llm
        self.refresh_seconds = refresh_seconds
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._fixed: dict[str, object] = {}

    # index generations ---------------------------------------------------------------------
    def snapshot(self, force: bool = False) -> Snapshot:
        """The current generation; re-read only when the pointer moved (checked at most once a second)."""
        now = time.monotonic()
        snap = self._snapshot
        if snap is not None and not force and now - self._checked < self.refresh_seconds:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is not None and not force and now - self._checked < self.refresh_seconds:
                return snap
            try:
                self.store.check_files()
                current = self.store.current()
            except Exception as exc:
                self._snapshot = None
                if isinstance(exc, IndexUnavailable):
                    raise
                raise IndexUnavailable(f"index cannot be opened ({exc})") from exc
            if not current:
                raise IndexUnavailable("no index has been built yet: run `python -m chatbot index`")
            if snap is None or snap.name != current:
                self._snapshot = Snapshot(self.store.read(current))
            self._checked = time.monotonic()
            return self._snapshot

    # the one entry point ------------------------------------------------------------------
    def ask(self, question: str, history: list[str] | tuple = (), role: str = PUBLIC) -> Reply:
        t0 = time.perf_counter()
        role = HCP if role == HCP else PUBLIC
        timings: dict = {}
        reply = self._ask(question, [h for h in history or [] if isinstance(h, str)], role, timings)
        reply.ms = (time.perf_counter() - t0) * 1000
        timings["total_ms"] = reply.ms
        reply.timings = {k: round(v, 3) for k, v in timings.items()}
        return reply

    def _ask(self, question, history: list[str], role: str, timings: dict) -> Reply:
        if not isinstance(question, str):
            return Reply(policy.INVALID, msg("en", "empty"))
        q = policy.clean(question)
        if not q:
            return Reply(policy.INVALID, msg(policy.detect_language(question or ""), "empty"))
        lang = policy.detect_language(q)
        if len(q) > self.settings.max_question_chars:
            return Reply(policy.INVALID, msg(lang, "too_long", n=len(q), limit=self.settings.max_question_chars),
                         language=lang)
        history = [policy.clean(h) for h in history][-4:]
        # a greeting or a thank-you in between is not what a follow-up refers to
        history = [h for h in history if h and len(h) <= self.settings.max_question_chars
                   and policy.small_talk(h) is None]

        if policy.is_adverse_event(q) and not (role == HCP and policy.is_clinical_management_question(q)):
            return self._adverse_event(q, lang, role, timings)
        if (chat := policy.small_talk(q)) is not None:
            return Reply(policy.SMALL_TALK, msg(lang, chat), language=lang)

        follow = bool(history) and policy.is_follow_up(q)
        context = [q] + (history[-2:] if follow else [])
        query = expand(policy.rewrite_follow_up(history[-1], q) if follow else q)
        snap = self.snapshot()

        def out_of_scope() -> Reply:
            return Reply(policy.OUT_OF_SCOPE, msg(lang, "out_of_scope"), language=lang, generation=snap.name)

        t = time.perf_counter()
        qv = self.embedder.encode_query(query)
        timings["embed_ms"] = (time.perf_counter() - t) * 1000
        sims = self.retriever.best_similarity(snap, qv)

        # an HCP's clinical question is in scope by its words ("What does the Japanese guideline
        # recommend?" was out of scope by its similarity)
        clinical_words = role == HCP and policy.asks_hcp_content(context)
        off_topic_words = not policy.in_domain(context) and not clinical_words
        if off_topic_words and max(sims.values()) < self.settings.out_of_scope_score:
            return out_of_scope()

        if role != HCP:
            if policy.asks_hcp_content(context):
                return self._refusal(snap, query, qv, lang, timings)
            # a request for personal advice gets the advice reply (public texts and "ask your
            # doctor") unless its words ask for HCP content; its closeness to HCP texts alone
            # does not make it a request for them ("What should I do if I get side effects?")
            if policy.wants_advice(q):
                return self._advice(snap, query, qv, lang, timings)
            if sims[HCP] >= 0.55 and sims[HCP] - sims[PUBLIC] >= 0.15:
                return self._refusal(snap, query, qv, lang, timings)

        # a question without the topic's words, half of whose words are in none of the texts, is
        # out of scope even when a word it shares with them finds a passage ("Wat is het recept
        # voor appeltaart?" got "TRK-remmers zijn alleen op recept verkrijgbaar")
        if off_topic_words and _unfamiliar(q, snap.vocabulary[role]):
            return out_of_scope()

        # the clinical texts are English only: a verified HCP's clinical question in Dutch is looked up
        # there first ("Wat is de dosering?" found the public text on who may read doses)
        clinical = role == HCP and lang != "en" and policy.asks_clinical_data(context)
        picked, used_lang = self._retrieve_and_pick(snap, query, qv, role, lang, timings, english_first=clinical)
        if not picked and follow and (alone := expand(q)) != query:
            # read as a follow-up it found nothing; it may stand on its own ("And what does ESMO
            # recommend?" after "Which is most sensitive?")
            picked, used_lang = self._retrieve_and_pick(snap, alone, self.embedder.encode_query(alone), role,
                                                        lang, timings, english_first=clinical)
        if not picked:
            # nothing answers it and it has none of the topic's words: out of scope. Similarity
            # alone cannot tell that of a Dutch question (the model is English: "Wie wint de Tour
            # de France?" is as close to the Dutch texts as "Is het erfelijk?")
            if off_topic_words:
                return out_of_scope()
            # a verified HCP is not sent to "your doctor"
            unknown = msg(lang, "no_answer_hcp" if role == HCP else "no_answer")
            return Reply(policy.NO_ANSWER, unknown, language=lang, generation=snap.name)
        text, citations = self._render(picked)
        if self.llm is not None:
            from chatbot.llm import rewrite

            text = rewrite(self.llm, q, citations, fallback=text)
        if used_lang != lang:
            text = f"{msg(lang, 'fallback_language')}\n\n{text}".strip()
        return Reply(policy.ANSWER, text, citations, language=lang, generation=snap.name)

    # reply kinds ----------------------------------------------------------------------------
    def _adverse_event(self, q: str, lang: str, role: str, timings: dict) -> Reply:
        self._log_adverse_event(q, lang, role)
        text = msg(lang, "adverse_event")
        citations: list[Citation] = []
        try:
            snap = self.snapshot()
            query = AE_QUERY[lang]
            qv = self._fixed.get(query)
            if qv is None:  # a fixed query: embed it once, not on every report
                qv = self._fixed[query] = self.embedder.encode_query(query)
            hits = self.retriever.search(snap, query, qv, PUBLIC, lang, timings)
            picked = self._pick(snap, hits, query, qv, limit=3)
            if picked:
                how, citations = self._render(picked)
                text = f"{text}\n\n{msg(lang, 'adverse_event_how')} {how}"
        except IndexUnavailable:
            pass  # the fixed message still tells the user what to do
        return Reply(policy.ADVERSE_EVENT, text, citations, language=lang)

    def _refusal(self, snap: Snapshot, query: str, qv, lang: str, timings: dict) -> Reply:
        text = msg(lang, "hcp_only")
        hits = self.retriever.search(snap, query, qv, PUBLIC, lang, timings)
        picked = [p for p in self._pick(snap, hits, query, qv, limit=2) if not _DIGIT.search(p.text)]
        picked = [p for p in picked if p.sim >= self.settings.answer_score]
        citations: list[Citation] = []
        if picked:
            related, citations = self._render(picked)
            text = f"{text}\n\n{msg(lang, 'hcp_related')} {related}"
        return Reply(policy.HCP_ONLY, text, citations, language=lang, generation=snap.name)

    def _advice(self, snap: Snapshot, query: str, qv, lang: str, timings: dict) -> Reply:
        text = msg(lang, "advice")
        picked, used_lang = self._retrieve_and_pick(snap, query, qv, PUBLIC, lang, timings, limit=3)
        citations: list[Citation] = []
        if picked:
            related, citations = self._render(picked)
            if used_lang != lang:  # said, as for any answer from texts in another language
                related = f"{msg(lang, 'fallback_language')} {related}"
            text = f"{text}\n\n{msg(lang, 'advice_related')} {related}"
        return Reply(policy.ADVICE, text, citations, language=lang, generation=snap.name)

    # retrieval and composition ----------------------------------------------------------------
    def _retrieve_and_pick(self, snap, query, qv, role, lang, timings, limit=None, english_first=False):
        languages = [lang] + (["en"] if lang != "en" else [])
        if english_first:
            languages.reverse()
        drugs = policy.drugs_in(query)
        # a question about a medicine is first looked up in that medicine's passages, in either
        # language; then in what holds for TRK inhibitors as a class ("How does resistance to
        # larotrectinib develop?": the class passages were crowded out), still never in passages
        # about another medicine
        for as_class in ([False, True] if drugs else [False]):
            for language in languages:
                q, v = query, qv
                if as_class:
                    q = policy.DRUGS.sub(CLASS_NAME[lang], q)
                if language != lang:  # English texts for a Dutch question: search with English terms
                    q = glossed(q)
                if q != query:
                    v = self.embedder.encode_query(q)
                # what the passages must answer is the question as asked, medicines named: the class
                # name alone is in every class passage ("What is the half-life of larotrectinib?"
                # got the off-target resistance text, which shares only "TRK inhibitors")
                asked = glossed(query) if language != lang else query
                # the medicines asked about, also once the class name stands in for them
                picked = self._search_and_pick(snap, q, v, role, language, timings, limit, drugs, asked)
                if picked:
                    return picked, language
        return [], lang

    def _search_and_pick(self, snap, q, v, role, language, timings, limit, drugs=None,
                         asked: str | None = None) -> list[Picked]:
        hits = self.retriever.search(snap, q, v, role, language, timings)
        t = time.perf_counter()
        picked = self._pick(snap, hits, q, v, limit=limit, drugs=drugs)
        picked = picked if self._answers(asked or q, picked) else []
        timings["compose_ms"] = timings.get("compose_ms", 0) + (time.perf_counter() - t) * 1000
        return picked

    def _pick(self, snap: Snapshot, hits: list[Hit], query: str, qv, limit: int | None = None,
              drugs: set[str] | None = None) -> list[Picked]:
        """The sentences that best answer the query, from the one to three most relevant passages."""
        limit = limit or self.settings.max_sentences
        asked = {forms[0]: set(forms) for forms in words(query)}
        if not asked or not hits:
            return []  # no word to match ("กก'", punctuation) or no passage: nothing answers it
        # the words that say what is asked; the topic words of every text only if there are no others
        specific = {w: forms for w, forms in asked.items() if forms - GENERIC} or asked
        lang = hits[0].chunk.language  # one search, one language
        weight = {w: snap.weight(w, lang) for w in specific}
        total = sum(weight.values())

        def share(text: str) -> float:
            """How much of the question a text holds: each asked word counted once, by how telling it
            is ("TRK-fusiekanker" is in most Dutch texts, "behandeld" in few), in part for a compound
            of which only some parts occur."""
            toks = set(tokenize(text))
            return sum(weight[w] * len(forms & toks) / len(forms) for w, forms in specific.items()) / total

        wants_questions = bool(_ASKING.search(query))
        asked_drugs = policy.drugs_in(query) if drugs is None else drugs
        # dense similarity is weaker outside English, so lexical evidence weighs more there
        lex_w, head_w = (0.4, 0.2) if policy.detect_language(query) == "nl" else (0.15, 0.1)
        cands: list[Picked] = []
        for hit in hits:
            rows = snap.sentences_of(hit.chunk.id)
            if not rows:
                continue
            chunk_drugs = policy.drugs_in(f"{hit.chunk.title} {hit.chunk.text}")
            if asked_drugs and chunk_drugs and not asked_drugs & chunk_drugs:
                continue  # a passage about another medicine does not answer it (one about none may:
                # what holds for TRK inhibitors as a class, such as how resistance to them arises)
            sims = snap.sent_emb[rows] @ qv
            heading = share(f"{hit.chunk.title} {hit.chunk.heading}")
            prior = 0.04 * (len(hits) - hit.rank) / max(1, len(hits)) + head_w * heading
            for order, (row, sim) in enumerate(zip(rows, sims)):
                text = snap.sentences[row]
                overlap = share(text)
                score = 0.6 * float(sim) + 0.4 * hit.dense + lex_w * overlap + prior
                if text.endswith("?") and not wants_questions:
                    score -= 0.25  # a question from a checklist is not an answer
                cands.append(Picked(hit, row, order, text, float(sim), score))
        if not cands:
            return []
        best = max(p.score for p in cands)
        chunk_best: dict[str, float] = {}
        for p in cands:
            chunk_best[p.hit.chunk.id] = max(chunk_best.get(p.hit.chunk.id, -1.0), p.score)
        focus = {cid for cid, sc in sorted(chunk_best.items(), key=lambda kv: -kv[1])[:3] if sc >= best - 0.08}
        floor = max(self.settings.min_sentence_score, best - 0.15)
        top = max(focus, key=lambda cid: chunk_best[cid])
        # the best passage is kept whole where it stays on topic; other passages add their best lines
        pool = sorted((p for p in cands if (p.hit.chunk.id == top and p.sim >= self.settings.min_sentence_score)
                       or (p.hit.chunk.id in focus and p.score >= floor)), key=lambda p: -p.score)
        chosen: list[Picked] = []
        said: set[str] = set()
        for p in pool:  # the same sentence in two passages is said once, from the better one
            if _said(p.text) not in said and len(chosen) < limit:
                said.add(_said(p.text))
                chosen.append(p)
        # a sentence that leans on the one before it comes with it (same passage, same citation)
        position = {(p.hit.chunk.id, p.order): p for p in cands}
        for p in chosen:  # grows while it runs: an added sentence may lean on its own predecessor
            before = position.get((p.hit.chunk.id, p.order - 1))
            if before is not None and _REFERS.match(p.text) and _said(before.text) not in said:
                said.add(_said(before.text))
                chosen.append(before)
        first = {cid: -chunk_best[cid] for cid in focus}
        chosen.sort(key=lambda p: (first[p.hit.chunk.id], p.order))
        return chosen

    def _answers(self, query: str, picked: list[Picked]) -> bool:
        """Whether the picked sentences answer the question, not just share its topic."""
        if not picked:
            return False
        best = max(p.sim for p in picked)
        q_tokens = tokenize(query)
        specific = [t for t in q_tokens if t not in GENERIC and len(t) > 2]
        if not specific:
            return best >= self.settings.min_sentence_score + 0.05
        text_tokens = set()
        for p in picked:
            text_tokens.update(tokenize(f"{p.text} {p.hit.chunk.title} {p.hit.chunk.heading}"))
        asked = set(q_tokens)
        survival = _SURVIVAL | _PROGRESSION_FREE if asked & _PROGRESSION_FREE else _SURVIVAL
        groups = [*_MUST_MATCH, survival] + ([] if policy.wants_advice(query) else [_STOPPING])
        for group in groups:  # "for children?" is not answered by what holds for adults
            if asked & group and not text_tokens & group:
                return False

        def found(tok: str) -> bool:
            # a long word keeps more of itself: "fusiepartners" is not found in "fusiekanker"
            stem = tok[:max(5, len(tok) - 4)]
            return any(t == tok or (len(stem) >= 4 and t.startswith(stem)) for t in text_tokens)

        coverage = sum(found(t) for t in specific) / len(specific)
        if coverage == 0:
            return best >= 0.8
        return coverage >= 0.5 or best >= 0.65 or (coverage >= 0.25 and best >= 0.55)

    @staticmethod
    def _render(picked: list[Picked]) -> tuple[str, list[Citation]]:
        numbers: dict[str, int] = {}
        by_chunk: dict[str, list[Picked]] = {}
        parts = []
        for p in picked:
            n = numbers.setdefault(p.hit.chunk.id, len(numbers) + 1)
            by_chunk.setdefault(p.hit.chunk.id, []).append(p)
            parts.append(f"{p.text} [{n}]")
        citations = []
        for cid, n in numbers.items():
            chunk = by_chunk[cid][0].hit.chunk
            citations.append(Citation(
                n=n, doc_id=chunk.doc_id, title=chunk.title, heading=chunk.heading,
                audience=chunk.audience, language=chunk.language, sources=json.loads(chunk.sources_json),
                quote=chunk.text, sentences=[p.text for p in by_chunk[cid]], chunk_id=chunk.id,
            ))
        return " ".join(parts), citations

    def _log_adverse_event(self, q: str, lang: str, role: str) -> None:
        """Record the report for pharmacovigilance follow-up, without who sent it."""
        path = Path(self.settings.data_dir) / "adverse_events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "language": lang, "reporter": "hcp" if role == HCP else "public", "text": q}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _unfamiliar(question: str, vocabulary: frozenset[str]) -> bool:
    """Whether at least half of the question's words (stop words aside) are in none of the texts."""
    ws = words(question)
    unknown = sum(not any(form in vocabulary for form in forms) for forms in ws)
    return bool(ws) and 2 * unknown >= len(ws)


def _said(sentence: str) -> str:
    """A sentence as said: case, spacing and end punctuation do not make it a different one."""
    return " ".join(sentence.lower().split()).rstrip(".!?")


def reply_error(lang: str = "en") -> Reply:
    return Reply("unavailable", msg(lang, "index_unavailable"), language=lang)



