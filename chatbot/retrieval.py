"""Hybrid retrieval over one index generation: dense (Chroma, filtered in the query) + BM25, fused by RRF.

Access control lives here: a public search passes ``audience = public`` to Chroma's ``where`` and
uses a BM25 index built from public chunks only, so HCP text cannot reach a public caller.
"""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
from dataclasses import dataclass

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_DUTCH
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from chatbot.chunking import Chunk
from chatbot.corpus import LANGUAGES
from chatbot.index import Generation, IndexUnavailable, Store

PUBLIC = "public"
HCP = "hcp"
BRUTE_FORCE_LIMIT = 20_000

# Word forms come from the Snowball stemmers (PyStemmer): English, and for Dutch the Porter variant,
# which keeps "tumor"/"tumoren" and "gebruik"/"gebruikt" together (the newer "dutch" algorithm stems
# "tumoren" to "tumoor" but "tumor" to "tumor"). Stop words: scikit-learn's English list and the
# Dutch list bm25s ships (NLTK's).
STEMMER_ALGORITHMS = {"en": "english", "nl": "dutch_porter"}
STOPWORDS = {"en": frozenset(ENGLISH_STOP_WORDS), "nl": frozenset(STOPWORDS_DUTCH)}
_local = threading.local()  # a Stemmer object is not thread-safe: one per thread


def _stemmer(lang: str) -> Stemmer.Stemmer:
    stemmers = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {k: Stemmer.Stemmer(a) for k, a in STEMMER_ALGORITHMS.items()}
    return stemmers[lang if lang in stemmers else "en"]


_TOKEN = re.compile(r"[0-9a-zà-ÿ][0-9a-zà-ÿ'/-]*[0-9a-zà-ÿ]|[0-9a-zà-ÿ]")


def words(text: str, lang: str = "en") -> list[list[str]]:
    """The words of a text without stop words, each as its stemmed forms: for a hyphenated compound
    its parts too ("TRK-fusiekanker" also matches "fusiekanker")."""
    text = unicodedata.normalize("NFKC", text).lower()
    stop = STOPWORDS.get(lang, STOPWORDS["en"])
    stemmer = _stemmer(lang)
    out = []
    for tok in _TOKEN.findall(text):
        tok = tok.strip("'-/")
        if not tok or tok in stop:
            continue
        parts = [tok] + ([p for p in tok.split("-") if p and p not in stop] if "-" in tok else [])
        forms = list(dict.fromkeys(stemmer.stemWords(parts)))
        out.append(forms)
    return out


def tokenize(text: str, lang: str = "en") -> list[str]:
    """Every form of every word (see ``words``), for BM25 and overlap counts."""
    return [form for forms in words(text, lang) for form in forms]


@dataclass
class Hit:
    chunk: Chunk
    score: float  # fused (RRF) score
    dense: float  # cosine similarity of query and chunk (or its best passage question)
    rank: int
    lexical: bool = False  # found by words (BM25) too


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
        self._tokens: dict[tuple[str, str], frozenset[str]] = {}  # see ``tokens_of``
        self.drugs: dict[str, set[str]] = {}  # chunk id -> the medicines it names (filled by the engine)
        tokens = [tokenize(c.embed_text(), c.language) for c in self.chunks]
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
        # the passage questions: extra keys of their chunks, by meaning and by words
        self.questions = [(self.by_id[cid], lang, text) for cid, lang, text in generation.questions
                          if cid in self.by_id]
        keep = [i for i, (cid, _, _) in enumerate(generation.questions) if cid in self.by_id]
        self.q_emb = generation.question_embeddings[keep] if keep else np.zeros((0, self.chunk_emb.shape[1] if
                                                                                 len(self.chunk_emb) else 384))
        self.q_rows = np.asarray([row for row, _, _ in self.questions], dtype=int)
        self.q_tokens: dict[int, list[str]] = {}
        for row, lang, text in self.questions:
            self.q_tokens.setdefault(row, []).extend(tokenize(text, lang))
        # each partition's questions: (their rows in q_emb, the partition-local index of their chunk)
        local = {int(r): j for key, (rs, _) in self.partitions.items() for j, r in enumerate(rs)}
        part_of = {int(r): key for key, (rs, _) in self.partitions.items() for r in rs}
        self.q_partitions: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for key in self.partitions:
            qs = [i for i, r in enumerate(self.q_rows) if part_of[int(r)] == key]
            self.q_partitions[key] = (np.asarray(qs, dtype=int), np.asarray([local[int(self.q_rows[i])] for i in qs],
                                                                            dtype=int))
        # every word form in the texts of each scope (public texts; all texts for HCPs)
        self.vocabulary: dict[str, frozenset[str]] = {}
        for scope in (PUBLIC, HCP):
            rows = [i for i, c in enumerate(self.chunks) if scope == HCP or c.audience == PUBLIC]
            corpus = [tokens[i] + self.q_tokens.get(i, []) for i in rows]
            self.vocabulary[scope] = frozenset(t for toks in corpus for t in toks)
            model = None
            if rows:
                model = bm25s.BM25()
                model.index(corpus, show_progress=False)
            self.bm25[scope] = (model, rows)

    def question_keys(self, q: np.ndarray, key) -> np.ndarray:
        """The best cosine of the query with any passage question of each chunk of a partition."""
        rows, _ = self.partitions[key]
        best_q = np.full(len(rows), -1.0, dtype=np.float32)
        qs, local = self.q_partitions.get(key, (np.zeros(0, int), np.zeros(0, int)))
        if len(qs):
            np.maximum.at(best_q, local, self.q_emb[qs] @ q)
        return best_q

    def key_similarities(self, q: np.ndarray, key) -> tuple[np.ndarray, np.ndarray]:
        """(cosine with each chunk of a partition, best cosine with any of its passage questions)."""
        _, emb = self.partitions[key]
        return emb @ q, self.question_keys(q, key)

    def nearest(self, q: np.ndarray, keys, n: int) -> list[tuple[tuple, str, float]]:
        """(partition, chunk id, score) of the n nearest chunks in each of the given partitions, by
        exact search over the vectors in memory; a chunk's score is its cosine with the query or, if
        higher, the cosine of the best of its passage questions."""
        found = []
        for key in keys:
            if key not in self.partitions:
                continue
            rows, _ = self.partitions[key]
            sims, best_q = self.key_similarities(q, key)
            sims = np.maximum(sims, best_q)
            k = min(n, len(sims))
            for i in np.argpartition(-sims, k - 1)[:k]:
                found.append((key, self.chunks[rows[i]].id, float(sims[i])))
        return found

    def question_similarity(self, q: np.ndarray, row: int) -> float:
        """The best cosine of the query with a chunk's passage questions (0 if it has none)."""
        mask = self.q_rows == row
        return float((self.q_emb[mask] @ q).max()) if mask.any() else 0.0

    def weight(self, word: str, language: str) -> float:
        """How telling a word is in the texts of a language (a word none of them has: the most)."""
        idf = self.idf.get(language, {})
        return idf.get(word, idf.get("", 1.0))

    def sentences_of(self, chunk_id: str) -> list[int]:
        return self.sent_rows.get(chunk_id, [])

    def tokens_of(self, text: str, language: str) -> frozenset[str]:
        """The word forms of one of this generation's texts (a sentence, a title and heading),
        stemmed once and kept: every question compares its words with the same few thousand."""
        key = (text, language)
        found = self._tokens.get(key)
        if found is None:
            found = self._tokens[key] = frozenset(tokenize(text, language))
        return found


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
                scores = {cid: 1.0 - float(d) for cid, d in zip(res["ids"][0], res["distances"][0])}
                # the passage questions are searched in memory, as for a small corpus
                rows, _ = snapshot.partitions[key]
                best_q = snapshot.question_keys(q, key)
                for i in np.argsort(-best_q)[:n]:
                    if best_q[i] > -1.0:
                        cid = snapshot.chunks[rows[i]].id
                        scores[cid] = max(scores.get(cid, float(snapshot.chunk_emb[rows[i]] @ q)), float(best_q[i]))
                top = sorted(scores.items(), key=lambda kv: -kv[1])[:n]
                found += [(key, cid, s) for cid, s in top]
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

    def lexical(self, snapshot: Snapshot, query: str, scope: str, language: str | None, n: int,
                query_lang: str = "en"):
        model, rows = snapshot.bm25[scope]
        tokens = tokenize(query, query_lang)
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
               language: str | None = None, timings: dict | None = None, query_lang: str | None = None) -> list[Hit]:
        timings = timings if timings is not None else {}
        n = self.top_k * 2
        t = time.perf_counter()
        dense = self.dense(snapshot, q, scope, language, n)
        timings["vector_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        lexical = self.lexical(snapshot, query, scope, language, n, query_lang or language or "en")
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
            hits.append(Hit(chunk, score, sim, rank, cid in dict(lexical)))
        timings["fusion_ms"] = (time.perf_counter() - t) * 1000
        return hits
