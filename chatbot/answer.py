"""The answer engine: one call turns (question, history, role) into a typed, cited Reply."""

from __future__ import annotations

import json
import re
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from chatbot import policy
from chatbot.cases import CaseLog
from chatbot.config import Settings
from chatbot.index import IndexUnavailable, Store
from chatbot.intent import UNANSWERED, Prediction, unanswerable
from chatbot.knowledge import (
    ADVERSE_EVENT,
    ADVICE,
    CLINICAL,
    OUT_OF_SCOPE,
    OUTLOOK,
    QUESTION,
    SMALL_TALK,
)
from chatbot.messages import AE_QUERY, msg
from chatbot.retrieval import HCP, PUBLIC, Hit, Retriever, Snapshot, words
from chatbot.suggest import suggest

ROLES = (PUBLIC, HCP)
# policy: the public information shown beside a refusal carries no figures (doses, rates are HCP-only)
_DIGIT = re.compile(r"\d")
# a sentence that opens like this leans on the one before it ("It can include surgery ...")
_REFERS = re.compile(r"(It|Its|They|Their|These|This|Those|That|Such|Both|Het|Dit|Deze|Die|Dat|Ze|Zij|Hun|Zo'n|Beide)\b"
                     r"|(\S+ ){1,4}then\b")  # "The fused gene then makes ...": the step before it
FOLLOW_UP_WEIGHT = 2.0  # the follow-up's own vector against the previous message's
FOLLOW_UP_WORDS = 6  # a message with at most this many content words after an earlier one leans on it
SAME_SENTENCE = 0.85  # two sentences this similar say the same thing: the answer keeps one
MAX_SENTENCES = 4  # unless a list is asked for
ALSO_ASKS = 0.15  # a side-effect report that is this likely a question too gets an answer as well


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
    nearest: str = ""  # for "I don't know" and "out of scope": the closest passage (for maintainers' review)
    suggestions: list[str] = field(default_factory=list)  # questions to ask next (chatbot.suggest)
    case_ref: str = ""  # a side-effect report's case (for the optional contact form; not in the API's JSON)

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
            "suggestions": self.suggestions,
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
                 refresh_seconds: float = 1.0, cases: CaseLog | None = None):
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
        self._vectors: dict[str, np.ndarray] = {}
        self._lock_vectors = threading.Lock()
        self.glossary = policy.load_glossary(settings.corpus_dir)
        self.cases = cases if cases is not None else CaseLog(settings)  # side-effect reports

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
                self._snapshot = self._load(current)
            self._checked = time.monotonic()
            return self._snapshot

    def _load(self, name: str) -> Snapshot:
        """A generation with what serving learns from it: the reply-kind model (fitted here from the
        generation's labelled messages, with the cut-off training chose; the same data gives the same
        model in every process) and the answer gate."""
        from chatbot.gate import Gate
        from chatbot.intent import fit_generation

        generation = self.store.read(name)
        snap = Snapshot(generation)
        snap.intent = None
        if generation.utterances:
            snap.intent = fit_generation(generation, generation.meta.get("ae_threshold", 0.5),
                                         self.settings.model_cache_dir)
        snap.gate = Gate.from_meta(generation.meta.get("gate"))
        # the words of our English and Dutch texts and, from the labelled messages, those that more
        # than one message uses (to tell another language apart; one message may quote another
        # language, as in "in french please: quelle est la dose")
        texts = [c.text for c in generation.chunks] + [t for _, _, t in generation.questions]
        seen = Counter(w for u in generation.utterances for w in set(policy.letter_words(u.text)))
        snap.words = frozenset(w for t in texts for w in policy.letter_words(t)) | {w for w, n in seen.items() if n > 1}
        return snap

    def embed(self, text: str) -> np.ndarray:
        """The query vector, cached: history messages and repeated questions are embedded once."""
        vec = self._vectors.get(text)
        if vec is None:
            vec = self.embedder.encode_query(text)
            with self._lock_vectors:
                self._vectors[text] = vec
                while len(self._vectors) > 4096:
                    self._vectors.pop(next(iter(self._vectors)))
        return vec

    # the one entry point ------------------------------------------------------------------
    def ask(self, question: str, history: list[str] | tuple = (), role: str = PUBLIC) -> Reply:
        t0 = time.perf_counter()
        role = HCP if role == HCP else PUBLIC
        timings: dict = {}
        history = [h for h in history or [] if isinstance(h, str)]
        reply = self._ask(question, history, role, timings)
        if reply.citations:
            reply.suggestions = self._suggest(reply, question, history, role)
        reply.ms = (time.perf_counter() - t0) * 1000
        timings["total_ms"] = reply.ms
        reply.timings = {k: round(v, 3) for k, v in timings.items()}
        return reply

    def _suggest(self, reply: Reply, question: str, history: list[str], role: str) -> list[str]:
        """Questions to ask next, from the passage questions near the passage the reply used."""
        snap = self._snapshot
        if snap is None or snap.name != reply.generation:
            return []  # a new generation came in meanwhile: its passages may differ
        asked = [policy.clean(question)] + [policy.clean(h) for h in history]
        return suggest(snap, [c.chunk_id for c in reply.citations], reply.language, role, asked,
                       [self.embed(asked[0])] if asked[0] else [])

    def understand(self, snap: Snapshot, text: str, vector) -> Prediction:
        """What the message asks for; a request hidden in leetspeak or base64 is read as decoded too."""
        if snap.intent is None:
            raise IndexUnavailable("the index has no reply-kind model: run `python -m chatbot index`")
        pred = snap.intent.predict(text, vector)
        for hidden in sorted(set(policy.variants(text)[1:]) - {text}):
            other = snap.intent.predict(hidden, vector)  # its characters tell: the vector stays the message's
            if other.label == CLINICAL and pred.label != CLINICAL and not pred.adverse_event:
                pred = other  # the decoded form asks for HCP content
        return pred

    def _language(self, text: str, pred: Prediction | None, history: list[str]) -> str:
        """English or Dutch: lingua and what the model learned from the labelled messages, averaged;
        a message too short to tell follows the one before it."""
        p = policy.dutch_probability(text)
        if pred is not None and pred.dutch is not None:
            p = (p + pred.dutch) / 2
        if abs(p - 0.5) < 0.15 and history:
            return policy.detect_language(history[-1])
        return "nl" if p > 0.5 else "en"

    def _ask(self, question, history: list[str], role: str, timings: dict) -> Reply:
        # input rules: exact by policy
        if not isinstance(question, str):
            return Reply(policy.INVALID, msg("en", "empty"))
        q = policy.clean(question)
        if not q:
            return Reply(policy.INVALID, msg(policy.detect_language(question or ""), "empty"))
        letters = re.search(r"[^\W\d_]", q)
        if not letters and all(unicodedata.category(ch)[0] in "PNZ" for ch in q):
            # policy: punctuation and digits alone ("???", "…") are not a message to understand: the user
            # is asked to type a question, in the language of the chat so far (an emoji such as a thumbs-up
            # is a message: the model reads it)
            lang = policy.detect_language(history[-1]) if history and isinstance(history[-1], str) else "en"
            return Reply(policy.INVALID, msg(lang, "empty"), language=lang)
        if letters and not re.search(r"[a-zA-Z\u00c0-\u024f]", q):  # letters, none of the Latin script: another language
            return Reply(policy.INVALID, msg("en", "other_language"), language="en")
        if len(q) > self.settings.max_question_chars:
            lang = policy.detect_language(q[:500])
            return Reply(policy.INVALID, msg(lang, "too_long", n=len(q), limit=self.settings.max_question_chars),
                         language=lang)
        snap = self.snapshot()
        # (a request hidden in base64 is no language: it is read as decoded, see ``understand``)
        if policy.other_language(q, snap.words) and not policy.decoded(q):
            return Reply(policy.INVALID, msg("en", "other_language"), language="en")
        history = [policy.clean(h) for h in history][-4:]
        history = [h for h in history if h and len(h) <= self.settings.max_question_chars]
        t = time.perf_counter()
        qv = self.embed(q)
        timings["embed_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        pred = self.understand(snap, q, qv)
        timings["intent_ms"] = (time.perf_counter() - t) * 1000
        # a greeting or a thank-you in between is not what a follow-up refers to
        history = [h for h in history if snap.intent.predict(h, self.embed(h)).label != SMALL_TALK]
        query, query_vector = self._query(q, qv, history)
        if query != q and pred.label != SMALL_TALK:
            # a short follow-up is read with what came before it too ("ok and how much should she get?")
            pred = snap.intent.combine(pred, snap.intent.predict(query, query_vector))
        lang = self._language(q, pred, history)
        label = pred.label

        if pred.adverse_event:
            return self._adverse_event(snap, q, qv, pred, history, lang, role, timings)
        if label == SMALL_TALK:
            thanks = bool(history)  # after an exchange it is a thank-you or a goodbye, before it a greeting
            return Reply(policy.SMALL_TALK, msg(lang, "thanks" if thanks else "greeting"), language=lang)
        if label == OUT_OF_SCOPE:
            return Reply(policy.OUT_OF_SCOPE, msg(lang, "out_of_scope"), language=lang, generation=snap.name,
                         nearest=self._nearest(snap, q, qv, role, lang))
        qv = query_vector  # from here on the message is searched as read with its context
        if label == OUTLOOK:  # a verified professional is pointed to the product information, not to a doctor
            return Reply(policy.NO_ANSWER, msg(lang, "no_answer_hcp" if role == HCP else "no_answer"),
                         language=lang, generation=snap.name)
        # how sure the model is that no text answers it: the gate weighs that against what it finds
        doubt = unanswerable(pred.proba)
        if label in UNANSWERED:
            # like questions the texts are known not to answer: answered only if a passage clearly does
            label = UNANSWERED[label]
        if label == ADVICE:
            return self._advice(snap, query, qv, lang, timings)
        if label == CLINICAL and role != HCP:
            return self._refusal(snap, query, qv, lang, timings)
        return self._answer(snap, q, query, qv, lang, role, timings, clinical=label == CLINICAL, doubt=doubt)

    def _query(self, q: str, qv, history: list[str]):
        """The text to search with: a short message after an earlier one is read with it ("and in
        kids?"); a medicine it names replaces the one asked about before."""
        if not history or len(words(q)) > FOLLOW_UP_WORDS:
            return q, qv
        before = history[-1]
        if self.glossary.drugs_in(q):
            before = self.glossary.without_drugs(before)
        query = f"{before} {q}"
        # by meaning, the message itself leads and the one before gives the topic ("And how is it
        # found?" asks how, of what was asked before); by words, both count
        vec = FOLLOW_UP_WEIGHT * np.asarray(qv) + self.embed(before)
        return query, (vec / np.linalg.norm(vec)).astype(np.float32)

    def _answer(self, snap: Snapshot, q: str, query: str, qv, lang: str, role: str, timings: dict,
                clinical: bool = False, doubt: float | None = None) -> Reply:
        # most clinical texts are in English (some in Dutch): a verified HCP's clinical question in
        # Dutch is looked up in both, the English texts first, the Dutch ones when they answer as well
        english_first = clinical and lang != "en"
        picked, used_lang = self._retrieve_and_pick(snap, query, qv, role, lang, timings, english_first=english_first,
                                                    doubt=doubt)
        if not picked and query != q:
            # read as a follow-up it found nothing; it may stand on its own
            picked, used_lang = self._retrieve_and_pick(snap, q, self.embed(q), role, lang, timings,
                                                        english_first=english_first, doubt=doubt)
        if not picked:
            if role != HCP and self._hcp_would_answer(snap, query, qv, lang, doubt):
                # only the texts for professionals answer it: the refusal, not "I don't know"
                return self._refusal(snap, query, qv, lang, timings)
            unknown = msg(lang, "no_answer_hcp" if role == HCP else "no_answer")
            return Reply(policy.NO_ANSWER, unknown, language=lang, generation=snap.name,
                         nearest=self._nearest(snap, query, qv, role, lang))
        text, citations = self._render(picked)
        if self.llm is not None:
            from chatbot.llm import rewrite

            text = rewrite(self.llm, q, citations, fallback=text)
        if used_lang != lang:
            text = f"{msg(lang, 'fallback_language')}\n\n{text}".strip()
        return Reply(policy.ANSWER, text, citations, language=lang, generation=snap.name)

    def _nearest(self, snap: Snapshot, query: str, qv, role: str, lang: str) -> str:
        """The passage closest to a question nothing answered, as "doc id > heading" (for review)."""
        hits = self.retriever.search(snap, query, qv, role, lang, {}, query_lang=lang)
        return f"{hits[0].chunk.doc_id} > {hits[0].chunk.heading}" if hits else ""

    def _hcp_would_answer(self, snap: Snapshot, query: str, qv, lang: str, doubt: float | None) -> bool:
        """Whether a passage for professionals answers what the public texts do not (for the policy
        decision only: nothing of it is shown)."""
        picked, _ = self._retrieve_and_pick(snap, query, qv, HCP, lang, {}, doubt=doubt)
        return bool(picked) and any(p.hit.chunk.audience == HCP for p in picked)

    # reply kinds ----------------------------------------------------------------------------
    def _adverse_event(self, snap: Snapshot, q: str, qv, pred: Prediction, history: list[str], lang: str,
                       role: str, timings: dict) -> Reply:
        """How to report a side effect and, when the message also asks something ("... is that
        known?"), the answer to that; the case is written before the reply is returned (and written
        with what was composed, should composing fail)."""
        reply = Reply(policy.ADVERSE_EVENT, msg(lang, "adverse_event"), language=lang, generation=snap.name)
        try:
            reply.answer, reply.citations = self._compose_adverse_event(snap, q, qv, pred, history, lang, role,
                                                                        timings)
        finally:
            model_says = pred.label == ADVERSE_EVENT and pred.proba.get(ADVERSE_EVENT, 0.0) >= 0.5
            reply.case_ref = self.cases.record(
                message=q, reply=reply.answer, language=lang, audience=HCP if role == HCP else PUBLIC,
                context=history, probability=pred.proba.get(ADVERSE_EVENT, 0.0), model_says_report=model_says)
        return reply

    def _compose_adverse_event(self, snap: Snapshot, q: str, qv, pred: Prediction, history: list[str], lang: str,
                               role: str, timings: dict) -> tuple[str, list[Citation]]:
        text = msg(lang, "adverse_event")
        citations: list[Citation] = []
        query = AE_QUERY[lang]
        qv_how = self._fixed.get(query)
        if qv_how is None:  # a fixed query: embed it once, not on every report
            qv_how = self._fixed[query] = self.embedder.encode_query(query)
        hits = self.retriever.search(snap, query, qv_how, PUBLIC, lang, timings)
        picked = self._pick(snap, hits, query, qv_how, limit=3, lang=lang)
        if picked:
            how, citations = self._render(picked)
            text = f"{text}\n\n{msg(lang, 'adverse_event_how')} {how}"
        asks = max((QUESTION, CLINICAL), key=lambda k: pred.proba.get(k, 0.0))
        if role == HCP:
            asks = QUESTION  # a verified HCP's question is answered from every text
        if ("?" in q or pred.proba.get(asks, 0.0) >= ALSO_ASKS) and asks == QUESTION:
            query, qv = self._query(q, qv, history)
            found, _ = self._retrieve_and_pick(snap, query, qv, role, lang, timings, english_first=asks == CLINICAL
                                               and lang != "en")
            if found:
                answer, more = self._render(found, first=len(citations) + 1)
                text = f"{text}\n\n{msg(lang, 'adverse_event_answer')} {answer}"
                citations += more
        return text, citations

    def _refusal(self, snap: Snapshot, query: str, qv, lang: str, timings: dict) -> Reply:
        text = msg(lang, "hcp_only")
        hits = self.retriever.search(snap, query, qv, PUBLIC, lang, timings)
        picked = [p for p in self._pick(snap, hits, query, qv, limit=2, lang=lang) if not _DIGIT.search(p.text)]
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
    def _retrieve_and_pick(self, snap, query, qv, role, lang, timings, limit=None, english_first=False, doubt=None):
        languages = [lang] + (["en"] if lang != "en" else [])
        if english_first:
            languages.reverse()
        drugs = self.glossary.drugs_in(query)
        if english_first and role == HCP:
            # a clinical text in the question's own language answers first where there is one (the
            # public texts of that language do not: they say less than the clinical ones)
            own = self._search_and_pick(snap, query, qv, role, lang, lang, timings, limit, drugs, query, doubt)
            if own and own[0].hit.chunk.audience == HCP:
                return own, lang
        # a question about a medicine is first looked up in that medicine's passages, in either
        # language; then in what holds for TRK inhibitors as a class, still never in passages about
        # another medicine
        for as_class in ([False, True] if drugs else [False]):
            for language in languages:
                q, v = query, qv
                if as_class:
                    q = self.glossary.without_drugs(q, self.glossary.class_name[lang])
                    v = self.embed(q)
                picked = self._search_and_pick(snap, q, v, role, language, lang, timings, limit, drugs, query, doubt)
                if picked:
                    return picked, language
        return [], lang

    def _search_and_pick(self, snap, q, v, role, language, query_lang, timings, limit, drugs=None,
                         asked: str | None = None, doubt: float | None = None) -> list[Picked]:
        hits = self.retriever.search(snap, q, v, role, language, timings, query_lang=query_lang)
        t = time.perf_counter()
        picked = self._pick(snap, hits, q, v, limit=limit, drugs=drugs, lang=query_lang)
        # what the passages must answer is the question as asked, medicines named
        picked = picked if snap.gate.answers(snap, asked or q, query_lang, v, picked, doubt=doubt) else []
        timings["compose_ms"] = timings.get("compose_ms", 0) + (time.perf_counter() - t) * 1000
        return picked

    def _pick(self, snap: Snapshot, hits: list[Hit], query: str, qv, limit: int | None = None,
              drugs: set[str] | None = None, lang: str = "en") -> list[Picked]:
        """The sentences that best answer the query, from the one to three most relevant passages."""
        limit = limit or min(self.settings.max_sentences, MAX_SENTENCES)
        asked = {forms[0]: set(forms) for forms in words(query, lang)}
        if not asked or not hits:
            return []  # no word to match ("กก'", punctuation) or no passage: nothing answers it
        text_lang = hits[0].chunk.language  # one search, one language
        # each asked word counts by how telling it is in the texts ("TRK-fusiekanker" is in most
        # Dutch texts, "behandeld" in few)
        weight = {w: snap.weight(w, text_lang) for w in asked}
        total = sum(weight.values())

        def share(text: str) -> float:
            toks = snap.tokens_of(text, text_lang)
            return sum(weight[w] * len(forms & toks) / len(forms) for w, forms in asked.items()) / total

        # a question in a checklist is not an answer, unless the passage found first is such a list
        # ("What should I ask my doctor?")
        first = snap.sentences_of(hits[0].chunk.id)
        wants_questions = bool(first) and sum(snap.sentences[r].endswith("?") for r in first) * 2 >= len(first)
        asked_drugs = self.glossary.drugs_in(query) if drugs is None else drugs
        # dense similarity is weaker outside English, so lexical evidence weighs more there
        lex_w, head_w = (0.4, 0.2) if lang == "nl" else (0.15, 0.1)
        cands: list[Picked] = []
        for hit in hits:
            rows = snap.sentences_of(hit.chunk.id)
            if not rows:
                continue
            chunk_drugs = snap.drugs.get(hit.chunk.id)
            if chunk_drugs is None:
                chunk_drugs = snap.drugs[hit.chunk.id] = self.glossary.drugs_in(f"{hit.chunk.title} {hit.chunk.text}")
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
        for p in pool:  # a sentence that says what a chosen one says is left out (same words or meaning)
            if _said(p.text) in said or len(chosen) >= limit:
                continue
            # (within one passage the sentences say different things; its sentences' vectors share its
            # title and section, so they are compared only with other passages' sentences)
            others = [c.row for c in chosen if c.hit.chunk.id != p.hit.chunk.id]
            if others and float((snap.sent_emb[others] @ snap.sent_emb[p.row]).max()) >= SAME_SENTENCE:
                continue
            said.add(_said(p.text))
            chosen.append(p)
        # a sentence that leans on the one before it comes with it (same passage, same citation)
        position = {(p.hit.chunk.id, p.order): p for p in cands}
        # and the best sentence's next one, when that goes on about the same thing ("Larotrectinib is a
        # TRK inhibitor. It blocks ..."), in place of the weakest sentence from another passage
        best_p = chosen[0] if chosen else None
        after = position.get((best_p.hit.chunk.id, best_p.order + 1)) if best_p else None
        if after is not None and _REFERS.match(after.text) and _said(after.text) not in said:
            if len(chosen) >= limit:
                others = [c for c in chosen if c.hit.chunk.id != best_p.hit.chunk.id]
                if others:
                    weakest = min(others, key=lambda c: c.score)
                    chosen.remove(weakest)
                    said.discard(_said(weakest.text))
            if len(chosen) < limit:
                said.add(_said(after.text))
                chosen.append(after)
        for p in chosen:  # grows while it runs: an added sentence may lean on its own predecessor
            before = position.get((p.hit.chunk.id, p.order - 1))
            if before is not None and _REFERS.match(p.text) and _said(before.text) not in said:
                said.add(_said(before.text))
                chosen.append(before)
        first = {cid: -chunk_best[cid] for cid in focus}
        chosen.sort(key=lambda p: (first[p.hit.chunk.id], p.order))
        return chosen

    @staticmethod
    def _render(picked: list[Picked], first: int = 1) -> tuple[str, list[Citation]]:
        numbers: dict[str, int] = {}
        by_chunk: dict[str, list[Picked]] = {}
        parts = []
        for p in picked:
            n = numbers.setdefault(p.hit.chunk.id, len(numbers) + first)
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


def _said(sentence: str) -> str:
    """A sentence as said: case, spacing and end punctuation do not make it a different one."""
    return " ".join(sentence.lower().split()).rstrip(".!?")


def reply_error(lang: str = "en") -> Reply:
    return Reply("unavailable", msg(lang, "index_unavailable"), language=lang)



