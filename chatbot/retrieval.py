"""Hybrid retrieval over one index generation: dense (Chroma, filtered in the query) + BM25, fused by RRF.

Access control lives here: a public search passes ``audience = public`` to Chroma's ``where`` and
uses a BM25 index built from public chunks only, so HCP text cannot reach a public caller.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from dataclasses import dataclass

import bm25s
import numpy as np

from chatbot.chunking import Chunk
from chatbot.corpus import LANGUAGES
from chatbot.index import Generation, IndexUnavailable, Store

PUBLIC = "public"
HCP = "hcp"
BRUTE_FORCE_LIMIT = 20_000

STOPWORDS = set("""a an the and or of to in on at for with by from is are was were be been being it its this that
these those what which who whom whose how why when where do does did can could should would may
might will shall i me my we our you your he she they them their his her there here than then so
if not no yes as about into also any some all more most other such only own same too very just
over under again further once am has have had de het een en of van in op aan voor met door uit
is zijn was waren wordt worden werd ben bent dit dat deze die wat welke wie hoe waarom wanneer
waar doe doet kan kunnen zou zouden moet moeten mag ik mij mijn we wij ons onze u uw jij je jouw
hij zij ze hun haar er hier dan als niet geen ja ook nog al meer meest andere zo""".split())
STOPWORDS |= set("""krijgen krijgt hebben heeft gaan gaat komen komt willen wil weten zeggen maken doen vertel
gebeurt get gets getting got happen happens tell betekent betekenen betekenis mean means meaning""".split())
SYNONYMS = {
    "tumor": "tumour", "tumors": "tumour", "tumours": "tumour", "kids": "child", "kid": "child",
    "children": "child", "childhood": "child", "kinderen": "child", "tumoren": "tumor",
    "genen": "gen", "genes": "gene", "diagnosed": "diagnos", "diagnosis": "diagnos", "diagnose": "diagnos",
    "tested": "test", "testing": "test", "tests": "test", "testen": "test",
    "treated": "treat", "treatment": "treat", "treatments": "treat", "behandeling": "behandel",
    "behandeld": "behandel", "inherited": "inherit", "hereditary": "inherit",
    "fused": "fusion", "fuses": "fusion", "fusions": "fusion", "fusie": "fusion", "genfusie": "fusion",
    "ntrk-genfusie": "fusion", "bijwerkingen": "bijwerking", "doses": "dose", "dosing": "dose",
    "adults": "adult", "volwassenen": "volwassen", "proteins": "protein", "eiwitten": "eiwit",
    "mutations": "mutation", "inhibitors": "inhibitor", "remmers": "remmer", "reported": "report",
    "reporting": "report", "zeldzame": "zeldzaam", "typical": "characteristic",
    "typically": "characteristic", "detect": "diagnos", "detected": "diagnos", "identified": "diagnos",
    "vastgesteld": "diagnos", "vaststellen": "diagnos", "stopt": "stopped", "stoppen": "stopped", "gestopt": "stopped", "erfelijk": "inherit", "erfelijke": "inherit",
    "inheritance": "inherit", "inheritable": "inherit", "heritable": "inherit", "erven": "inherit",
    "overerven": "inherit", "geërfd": "inherit", "overgeërfd": "inherit", "erfelijkheid": "inherit",
    "wrote": "write", "written": "write", "writes": "write", "writing": "write", "geschreven": "schrijf",
    "schrijft": "schrijf", "schrijven": "schrijf",
    "genoomtesten": "genoomtest", "genomische": "genoomtest", "genomisch": "genoomtest",
}
# Questions whose key word is ambiguous in the texts ("found in lung cancer" vs "how is it found").
EXPANSIONS = [
    (re.compile(r"\bhow\b.{0,40}\b(found|find|detect\w*|identif\w*|spot\w*|discover\w*|know)\b", re.IGNORECASE),
     "diagnosed with genomic tests"),
    (re.compile(r"\bhoe\b.{0,40}\b(gevonden|vinden|ontdekt|opgespoord|weten)\b", re.IGNORECASE), "vastgesteld met een test"),
    # "found together with KRAS mutations?": the texts speak of other oncogenic drivers
    (re.compile(r"^(?=.*\b(?:together|alongside|co-?occur\w*|coexist\w*|concurrent\w*|at the same time)\b)"
                r"(?=.*\b(?:mutations?|drivers?|alterations?|KRAS|EGFR|BRAF|ALK|ROS1)\b)", re.IGNORECASE),
     "mutually exclusive of other oncogenic drivers"),
    # "Welke kankers hebben een NTRK-fusie?": the Dutch texts say where in the body and in which
    # rare tumours (the English question finds its passage as it is)
    (re.compile(r"\b(?:welke|wat voor)\s+(?:soorten?\s+)?(?:kankers?|kankersoorten|tumoren|tumors?)\b", re.IGNORECASE),
     "overal in het lichaam; bij enkele zeldzame tumoren"),
    # "Waar in het lichaam ontstaat het?": "ontstaat" also says how a fusion arises (in the tumour,
    # not inherited), and "lichaam" counts for little
    (re.compile(r"\bwaar\b.{0,30}\blichaam\b", re.IGNORECASE), "overal in het lichaam"),
    # "Welke testen zijn er?": "test" is in most Dutch texts; they name the kinds as the laboratory's
    (re.compile(r"\bwelke\s+(?:soorten\s+)?test(?:en|s)?\b", re.IGNORECASE), "het laboratorium kan verschillende testen gebruiken"),
    # "Hoe neem ik een TRK-remmer in?": the Dutch texts say "ingenomen" (a separable verb)
    (re.compile(r"\bhoe\s+(?:neem|neemt|nemen|slik|slikt|slikken)\b", re.IGNORECASE), "via de mond ingenomen"),
    # "Hoeveel mensen krijgen het?": the Dutch texts say how often (the English question finds its passage)
    (re.compile(r"\bhoeveel\s+(?:mensen|patiënten|personen)\b", re.IGNORECASE), "hoe vaak; zeldzaam"),
    # "What are the mechanisms of resistance?": the texts name two kinds, on target and off target
    (re.compile(r"\bmechanisms?\s+of\s+(?:\w+\s+)?resistance\b|\bresistance\s+mechanisms?\b", re.IGNORECASE),
     "on-target resistance mutations in the TRK kinase domain; off-target resistance through bypass activation"),
    # abbreviations the texts spell out
    (re.compile(r"\bNSCLC\b"), "non-small cell lung cancer"),
    (re.compile(r"\bCRC\b"), "colorectal cancer"),
    (re.compile(r"\bPFS\b"), "progression-free survival"),
    # "how does larotrectinib work?": the texts say what a medicine blocks, not how it "works"
    (re.compile(r"\bhow\s+(?:does|do|did)\b.{0,40}\bwork\b|\bmechanisms?\s+of\s+(?!resistance)\w|\bmode\s+of\s+action\b",
                re.IGNORECASE),
     "mechanism: blocks the TRK fusion kinase"),
    (re.compile(r"\bhoe\s+werk(?:t|en)\b|\bwerkingsmechanisme\b", re.IGNORECASE), "werkingsmechanisme: blokkeert"),
    # "what does NTRK mean?": the texts say what a name stands for (an abbreviation, in capitals)
    (re.compile(r"\b[Ww]hat\s+(?:does|do|is)\s+(?:the\s+)?[A-Z]{2,}[\w-]*\s+(?:mean|stand\s+for)\b"),
     "names stands for"),
    (re.compile(r"\b[Ww]at\s+(?:betekent|betekenen|is)\s+(?:de\s+naam\s+)?[A-Z]{2,}[\w-]*\s*\??$"
                r"|\b[Ww]aar\s+staa?t\s+(?:de\s+naam\s+)?[A-Z]{2,}[\w-]*\s+voor\b"), "namen staat voor"),
]


def expand(query: str) -> str:
    """The query with the plain meaning of a few ambiguous question forms spelled out."""
    extra = [words for rx, words in EXPANSIONS if rx.search(query)]
    return f"{query} {' '.join(extra)}" if extra else query


# Dutch clinical terms with their English equivalents, for searching English texts with a Dutch question.
NL_EN = {
    "dosis": "dose", "dosering": "dose", "volwassenen": "adults", "volwassene": "adult",
    "kinderen": "children", "kind": "child", "bijwerkingen": "side effects adverse reactions",
    "bijwerking": "side effect", "werkzaamheid": "efficacy response rate", "respons": "response",
    "resistentie": "resistance", "mutaties": "mutations", "erfelijk": "inherited", "behandeling": "treatment",
    "wisselwerking": "interaction", "interacties": "interactions", "veiligheid": "safety",
    "waarschuwingen": "warnings", "studie": "trial", "studies": "trials", "overleving": "survival",
    "algoritme": "algorithm", "richtlijn": "guideline", "testen": "testing", "test": "test",
    "fusiepartner": "fusion partner", "fusiepartners": "fusion partners", "goedkeuring": "approval",
    "goedgekeurd": "approved", "zwangerschap": "pregnancy", "lever": "liver", "kanker": "cancer",
    "genfusie": "gene fusion", "tumoren": "tumours", "tumor": "tumour", "eenmaal": "once",
    "tweemaal": "twice", "daags": "daily", "per": "per", "dag": "day", "remmer": "inhibitor",
    "remmers": "inhibitors", "volgende": "next", "generatie": "generation", "blokkeert": "blocks",
    "werkingsmechanisme": "mechanism", "responsgraad": "response rate", "responspercentage": "response rate",
    "stopt": "stopped", "stoppen": "stopped", "gestopt": "stopped",
}


def _gloss(word: str) -> str | None:
    """English for a Dutch term, also for a compound of two known terms ("resistentiemutaties")."""
    if word in NL_EN:
        return NL_EN[word]
    for i in range(3, len(word) - 2):
        head, tail = word[:i], word[i:]
        if head in NL_EN and tail in NL_EN:
            return f"{NL_EN[head]} {NL_EN[tail]}"
    return None


def glossed(text: str) -> str:
    """The text with English equivalents appended for the Dutch terms it contains."""
    extra = [g for w in re.findall(r"[a-zà-ÿ]+", text.lower()) if (g := _gloss(w))]
    return f"{text} {' '.join(extra)}" if extra else text


_TOKEN = re.compile(r"[0-9a-zà-ÿ][0-9a-zà-ÿ'/-]*[0-9a-zà-ÿ]|[0-9a-zà-ÿ]")


def words(text: str) -> list[list[str]]:
    """The words of a text without stop words, each as its forms: lower-cased, normalised, and for a
    compound its parts too ("TRK-fusiekanker" also matches "fusiekanker"). Keeps drug, gene and
    mutation names whole."""
    text = unicodedata.normalize("NFKC", text).lower()
    out = []
    for tok in _TOKEN.findall(text):
        tok = tok.strip("'-/")
        if not tok or tok in STOPWORDS:
            continue
        tok = SYNONYMS.get(tok, tok)
        if len(tok) > 4 and tok.endswith("s") and not tok.endswith(("ss", "us", "is", "ous")):
            tok = SYNONYMS.get(tok[:-1], tok[:-1])
        forms = [tok]
        if "-" in tok:
            forms.extend(p for p in tok.split("-") if p and p not in STOPWORDS)
        out.append(forms)
    return out


def tokenize(text: str) -> list[str]:
    """Every form of every word (see ``words``), for BM25 and overlap counts."""
    return [form for forms in words(text) for form in forms]


@dataclass
class Hit:
    chunk: Chunk
    score: float  # fused (RRF) score
    dense: float  # cosine similarity of query and chunk, 0 if only BM25 found it
    rank: int


class Snapshot:
    """Everything a query needs from one generation, loaded once and swapped whole."""

    def __init__(self, generation: Generation, loaded_at: float | None = None):
        self.generation = generation
        self.name = generation.name
        self.loaded_at = loaded_at or time.time()
        self.chunks = generation.chunks
        self.by_id = {c.id: i for i, c in enumerate(self.chunks)}
        self.chunk_emb = generation.chunk_embeddings
        rows: dict[tuple[str, str], list[int]] = {}
        for i, c in enumerate(self.chunks):
            rows.setdefault((c.audience, c.language), []).append(i)
        # each (audience, language) partition's rows and vectors, as in the store's collections
        self.partitions = {key: (np.asarray(r), self.chunk_emb[r]) for key, r in rows.items()}
        self.counts = {key: len(r) for key, r in rows.items()}
        self.sent_rows = generation.sentence_rows()
        self.sentences = [s for _, _, s in generation.sentences]
        self.sent_emb = generation.sentence_embeddings
        self.bm25: dict[str, tuple[bm25s.BM25 | None, list[int]]] = {}
        tokens = [tokenize(c.embed_text()) for c in self.chunks]
        # how telling a word is in the texts of one language: "TRK-fusiekanker" is in nearly every
        # Dutch passage, "erfelijk" in one
        self.idf: dict[str, dict[str, float]] = {}
        for lang in {c.language for c in self.chunks}:
            df: dict[str, int] = {}
            texts = [toks for toks, c in zip(tokens, self.chunks) if c.language == lang]
            for toks in texts:
                for t in set(toks):
                    df[t] = df.get(t, 0) + 1
            self.idf[lang] = {t: math.log(1 + len(texts) / n) for t, n in df.items()}
            self.idf[lang][""] = math.log(1 + len(texts))  # a word no text has
        # every word form in the texts of each scope (public texts; all texts for HCPs)
        self.vocabulary: dict[str, frozenset[str]] = {}
        for scope in (PUBLIC, HCP):
            rows = [i for i, c in enumerate(self.chunks) if scope == HCP or c.audience == PUBLIC]
            corpus = [tokens[i] for i in rows]
            self.vocabulary[scope] = frozenset(t for toks in corpus for t in toks)
            model = None
            if rows:
                model = bm25s.BM25()
                model.index(corpus, show_progress=False)
            self.bm25[scope] = (model, rows)

    def nearest(self, q: np.ndarray, keys, n: int) -> list[tuple[tuple, str, float]]:
        """(partition, chunk id, cosine) of the n nearest chunks in each of the given partitions, by
        exact search over the vectors in memory."""
        found = []
        for key in keys:
            if key not in self.partitions:
                continue
            rows, emb = self.partitions[key]
            sims = emb @ q
            k = min(n, len(sims))
            for i in np.argpartition(-sims, k - 1)[:k]:
                found.append((key, self.chunks[rows[i]].id, float(sims[i])))
        return found

    def weight(self, word: str, language: str) -> float:
        """How telling a word is in the texts of a language (a word none of them has: the most)."""
        idf = self.idf.get(language, {})
        return idf.get(word, idf.get("", 1.0))

    def sentences_of(self, chunk_id: str) -> list[int]:
        return self.sent_rows.get(chunk_id, [])


class Retriever:
    """Dense + lexical retrieval with reciprocal-rank fusion, filtered by audience and language."""

    def __init__(self, store: Store, top_k: int = 6, rrf_k: int = 60):
        self.store = store
        self.top_k = top_k
        self.rrf_k = rrf_k
        self._collections: dict[str, object] = {}

    def _partitions(self, snapshot: Snapshot) -> dict:
        key = (id(self.store.client), snapshot.name)  # a reopened client needs fresh handles
        cols = self._collections.get(key)
        if cols is None:
            cols = self.store.chunk_collections(snapshot.name)
            self._collections = {key: cols}
        return cols

    @staticmethod
    def partitions(scope: str, language: str | None) -> list[tuple[str, str]]:
        """The collections a search may open: public ones only, unless the caller is a verified HCP."""
        audiences = [PUBLIC, HCP] if scope == HCP else [PUBLIC]
        languages = [language] if language else list(LANGUAGES)
        return [(a, lang) for a in audiences for lang in languages]

    def _nearest(self, snapshot: Snapshot, q: np.ndarray, keys, n: int) -> list[tuple[tuple, str, float]]:
        """(partition, chunk id, cosine) of the n nearest chunks in each of the given partitions.

        Up to BRUTE_FORCE_LIMIT chunks an exact scan of the snapshot's vectors (which it holds
        anyway) costs less than one HNSW query through Chroma (0.05 ms against 1.5 ms here); past
        it, each partition's HNSW index in the store (embedded or server) is queried."""
        if len(snapshot.chunks) <= BRUTE_FORCE_LIMIT:
            return snapshot.nearest(q, keys, n)
        found = []
        try:
            cols = self._partitions(snapshot)
            for key in keys:
                if not snapshot.counts.get(key):
                    continue
                res = cols[key].query(query_embeddings=[q], n_results=min(n, snapshot.counts[key]),
                                      include=["distances"])
                found += [(key, cid, 1.0 - float(d)) for cid, d in zip(res["ids"][0], res["distances"][0])]
        except Exception as exc:  # a store that vanished or broke mid-flight
            self._collections = {}
            raise IndexUnavailable(f"vector search failed ({exc})") from exc
        return found

    def dense(self, snapshot: Snapshot, q: np.ndarray, scope: str, language: str | None, n: int):
        found = self._nearest(snapshot, q, self.partitions(scope, language), n)
        found.sort(key=lambda hit: -hit[2])
        return [(cid, sim) for _, cid, sim in found[:n]]

    def best_similarity(self, snapshot: Snapshot, q: np.ndarray) -> dict[str, float]:
        """Best cosine of the query against public and against HCP chunks (for policy only)."""
        out = {PUBLIC: 0.0, HCP: 0.0}
        for (audience, _), _, sim in self._nearest(snapshot, q, list(snapshot.counts), 1):
            out[audience] = max(out[audience], sim)
        return out

    def lexical(self, snapshot: Snapshot, query: str, scope: str, language: str | None, n: int):
        model, rows = snapshot.bm25[scope]
        tokens = tokenize(query)
        if model is None or not tokens:
            return []
        k = min(len(rows), n * 3)
        # n_threads=0: bm25s runs in this thread (with 1 it starts a thread pool for every query)
        docs, scores = model.retrieve([tokens], k=k, show_progress=False, n_threads=0)
        out = []
        for idx, score in zip(docs[0], scores[0]):
            chunk = snapshot.chunks[rows[int(idx)]]
            if score <= 0 or (language and chunk.language != language):
                continue
            if scope != HCP and chunk.audience != PUBLIC:  # defence in depth
                continue
            out.append((chunk.id, float(score)))
        return out[:n]

    def search(self, snapshot: Snapshot, query: str, q: np.ndarray, scope: str,
               language: str | None = None, timings: dict | None = None) -> list[Hit]:
        timings = timings if timings is not None else {}
        n = self.top_k * 2
        t = time.perf_counter()
        dense = self.dense(snapshot, q, scope, language, n)
        timings["vector_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        lexical = self.lexical(snapshot, query, scope, language, n)
        timings["bm25_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        fused: dict[str, float] = {}
        for ranking in (dense, lexical):
            for rank, (cid, _) in enumerate(ranking):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        dense_sim = dict(dense)
        hits = []
        for rank, (cid, score) in enumerate(sorted(fused.items(), key=lambda kv: -kv[1])[: self.top_k]):
            row = snapshot.by_id.get(cid)
            if row is None:
                continue
            chunk = snapshot.chunks[row]
            if scope != HCP and chunk.audience != PUBLIC:
                continue
            sim = dense_sim.get(cid, float(snapshot.chunk_emb[row] @ q))
            hits.append(Hit(chunk, score, sim, rank))
        timings["fusion_ms"] = (time.perf_counter() - t) * 1000
        return hits
