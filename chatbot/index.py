"""The persisted vector index: generations of Chroma collections behind an atomically swapped pointer.

Each re-index that changes anything writes a new generation (a chunk collection and a sentence
collection), copying the embeddings of unchanged chunks and embedding only new text, then swaps the
pointer. Readers always see one complete generation; a failed run leaves the pointer untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import chromadb
import numpy as np

from chatbot.chunking import Chunk, chunk_corpus, split_sentences
from chatbot.config import Settings
from chatbot.corpus import AUDIENCES, LANGUAGES, load_corpus
from chatbot.knowledge import Knowledge, PassageQuestion, Utterance, load_knowledge

Progress = Callable[[int, int, str], None]
PARTITIONS = [(a, lang) for a in AUDIENCES for lang in LANGUAGES]
PAGE = 2000
# how the vectors are made from the model's output (recorded beside the model; a change re-embeds
# everything, like a change of model): sentences with title and section, chunks as their mean
VECTORS = "sentences-titled/chunk-mean"
# how the reply-kind model and the answer gate are trained (a change retrains on the next run; so
# does any change of the training code itself, which the generation records: ``_training_code``)
TRAINING = "intent-lr-char+minilm+nearest+passages/gate-lr+doubt+floor/v6"


class IndexUnavailable(Exception):
    """The index is missing, unreadable or locked; the message says what to do."""


def open_client(settings: Settings):
    """A Chroma client: the server at TRK_CHROMA_URL if set, else the embedded store under index/."""
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1", port=url.port or 8000, ssl=url.scheme == "https",
            settings=chromadb.Settings(anonymized_telemetry=False),
        )
    Path(settings.index_dir).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(settings.index_dir), settings=chromadb.Settings(anonymized_telemetry=False)
    )


@dataclass
class Generation:
    """One complete, immutable index state read back from the store."""

    name: str
    chunks: list[Chunk]
    chunk_embeddings: np.ndarray
    sentences: list[tuple[str, int, str]]  # (chunk_id, index in chunk, sentence text)
    sentence_embeddings: np.ndarray
    # the passage questions: (chunk id, question language, question), and their vectors
    questions: list[tuple[str, str, str]] = field(default_factory=list)
    question_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), dtype=np.float32))
    # the labelled messages the reply-kind model learns from, and their vectors
    utterances: list[Utterance] = field(default_factory=list)
    utterance_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), dtype=np.float32))
    meta: dict = field(default_factory=dict)  # what training chose (the side-effect cut-off, the gate)

    def sentence_rows(self) -> dict[str, list[int]]:
        """Row numbers of each chunk's sentences, in order."""
        rows: dict[str, list[int]] = {}
        for row, (cid, _, _) in enumerate(self.sentences):
            rows.setdefault(cid, []).append(row)
        return rows


class Store:
    """Access to the generations and the pointer in one Chroma client."""

    def __init__(self, settings: Settings, client=None):
        self.settings = settings
        self.client = client if client is not None else open_client(settings)
        self.prefix = settings.collection_prefix
        self._identity = self._files_identity()

    # the embedded store's files --------------------------------------------------------------
    def _files_identity(self) -> int | None:
        if self.settings.chroma_url:
            return None
        try:
            return os.stat(Path(self.settings.index_dir) / "chroma.sqlite3").st_ino
        except FileNotFoundError:
            return None

    def check_files(self) -> bool:
        """Raise IndexUnavailable if the embedded store's files are gone; reopen them if they were
        replaced (e.g. by `index --rebuild` after a crash). Returns True when the client was reopened."""
        if self.settings.chroma_url:
            return False
        identity = self._files_identity()
        if identity is None:
            raise IndexUnavailable(
                f"the index in {self.settings.index_dir} is missing: run `python -m chatbot index --rebuild`")
        if identity == self._identity:
            return False
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
        self.client = open_client(self.settings)
        self._identity = identity
        return True

    # names -----------------------------------------------------------------------------------
    # Chunks are partitioned by audience and language into separate collections: a public search
    # only ever opens public collections, and no metadata filter slows the vector search (Chroma's
    # filtered query costs ~125 ms at 100,000 chunks against ~2 ms unfiltered, measured here).
    def chunk_collection_name(self, gen: str, audience: str, language: str) -> str:
        return f"{self.prefix}_chunks_{gen}_{audience}_{language}"

    def chunk_collections(self, gen: str, create: bool = False) -> dict[tuple[str, str], object]:
        return {(a, lang): self.collection(self.chunk_collection_name(gen, a, lang), create=create)
                for a, lang in PARTITIONS}

    def add_chunks(self, cols: dict, chunks: list[Chunk], embeddings) -> None:
        groups: dict[tuple[str, str], list[int]] = {}
        for i, c in enumerate(chunks):
            groups.setdefault((c.audience, c.language), []).append(i)
        for key, rows in groups.items():
            part = [chunks[i] for i in rows]
            cols[key].add(ids=[c.id for c in part], documents=[c.text for c in part],
                          metadatas=[c.metadata() for c in part],
                          embeddings=np.asarray([embeddings[i] for i in rows], dtype=np.float32))

    @staticmethod
    def add_sentences(col, rows: list[tuple[Chunk, int, str, object]]) -> None:
        """Store (chunk, index in chunk, sentence, vector) rows; ids are ``chunk_id#index``."""
        if not rows:
            return
        col.add(ids=[f"{c.id}#{i}" for c, i, _, _ in rows], documents=[s for _, _, s, _ in rows],
                metadatas=[{"chunk_id": c.id, "i": i, "audience": c.audience, "language": c.language}
                           for c, i, _, _ in rows],
                embeddings=np.asarray([e for _, _, _, e in rows], dtype=np.float32))

    def sentence_collection_name(self, gen: str) -> str:
        return f"{self.prefix}_sents_{gen}"

    def question_collection_name(self, gen: str) -> str:
        return f"{self.prefix}_pq_{gen}"

    def utterance_collection_name(self, gen: str) -> str:
        return f"{self.prefix}_utt_{gen}"

    def _extra_names(self, gen: str) -> list[str]:
        return [self.sentence_collection_name(gen), self.question_collection_name(gen),
                self.utterance_collection_name(gen)]

    def _pointer(self):
        return self.client.get_or_create_collection(
            f"{self.prefix}_pointer", embedding_function=None, metadata={"current": "", "previous": ""}
        )

    def current(self) -> str | None:
        meta = self._pointer().metadata or {}
        return meta.get("current") or None

    def pointer_info(self) -> dict:
        return dict(self._pointer().metadata or {})

    def set_current(self, gen: str, embedder: str, content: str = "") -> None:
        """Point readers at ``gen``; ``embedder`` is the identity of the model that made its vectors,
        ``content`` a digest of what it was built from (a run with the same digest has nothing to do)."""
        pointer = self._pointer()
        meta = dict(pointer.metadata or {})
        pointer.modify(metadata={
            "current": gen, "previous": meta.get("current") or "",
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "embedder": embedder,
            "vectors": VECTORS, "content": content,
        })

    def generations(self) -> set[str]:
        heads = (f"{self.prefix}_chunks_", f"{self.prefix}_sents_", f"{self.prefix}_pq_", f"{self.prefix}_utt_")
        names = [c if isinstance(c, str) else c.name for c in self.client.list_collections()]
        return {n[len(h):].split("_")[0] for n in names for h in heads if n.startswith(h)}

    def collection(self, name: str, create: bool = False):
        if create:
            return self.client.create_collection(
                name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
        return self.client.get_collection(name, embedding_function=None)

    def drop(self, gen: str) -> None:
        names = [self.chunk_collection_name(gen, a, lang) for a, lang in PARTITIONS]
        for name in [*names, *self._extra_names(gen)]:
            with contextlib.suppress(Exception):
                self.client.delete_collection(name)

    # reading -----------------------------------------------------------------------------------
    @staticmethod
    def _read_all(col, include: list[str]) -> dict:
        out: dict = {"ids": [], **{k: [] for k in include}}
        offset = 0
        while True:
            page = col.get(include=include, limit=PAGE, offset=offset)
            if not page["ids"]:
                break
            out["ids"].extend(page["ids"])
            for k in include:
                out[k].extend(page[k])
            offset += len(page["ids"])
        return out

    def read(self, gen: str) -> Generation:
        try:
            c: dict = {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
            for col in self.chunk_collections(gen).values():
                part = self._read_all(col, ["documents", "metadatas", "embeddings"])
                for k in c:
                    c[k].extend(part[k])
            s = self._read_all(self.collection(self.sentence_collection_name(gen)),
                               ["documents", "metadatas", "embeddings"])
            q, u, meta = self._read_knowledge(gen)
        except Exception as exc:  # chromadb raises several types for a missing/corrupt store
            raise IndexUnavailable(f"index generation '{gen}' cannot be read ({exc})") from exc
        chunks = [Chunk.from_record(i, d, m) for i, d, m in zip(c["ids"], c["documents"], c["metadatas"])]
        order = sorted(range(len(chunks)), key=lambda i: (chunks[i].doc_id, chunks[i].position))
        chunks = [chunks[i] for i in order]
        dim = len(c["embeddings"][0]) if len(c["embeddings"]) else 384
        chunk_emb = np.asarray(c["embeddings"], dtype=np.float32).reshape(-1, dim)[order]
        sentences = [(m["chunk_id"], int(m["i"]), d) for d, m in zip(s["documents"], s["metadatas"])]
        sent_order = sorted(range(len(sentences)), key=lambda i: sentences[i][:2])
        sentences = [sentences[i] for i in sent_order]
        sent_emb = np.asarray(s["embeddings"], dtype=np.float32).reshape(-1, dim)[sent_order]
        q_order = sorted(range(len(q["ids"])), key=lambda i: q["ids"][i])
        questions = [(q["metadatas"][i]["chunk_id"], q["metadatas"][i]["lang"], q["documents"][i]) for i in q_order]
        q_emb = np.asarray(q["embeddings"], dtype=np.float32).reshape(-1, dim)[q_order]
        u_order = sorted(range(len(u["ids"])), key=lambda i: u["ids"][i])
        utterances = [_utterance(u["documents"][i], u["metadatas"][i]) for i in u_order]
        u_emb = np.asarray(u["embeddings"], dtype=np.float32).reshape(-1, dim)[u_order]
        return Generation(gen, chunks, chunk_emb, sentences, sent_emb, questions, q_emb, utterances, u_emb, meta)

    def _read_knowledge(self, gen: str) -> tuple[dict, dict, dict]:
        """Passage questions, labelled messages and what training chose; empty for a generation made
        before they were indexed (the next `index` run makes a new one)."""
        include = ["documents", "metadatas", "embeddings"]
        empty = {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
        names = {c if isinstance(c, str) else c.name for c in self.client.list_collections()}
        q = u = empty
        meta: dict = {}
        if self.question_collection_name(gen) in names:
            q = self._read_all(self.collection(self.question_collection_name(gen)), include)
        if self.utterance_collection_name(gen) in names:
            u_col = self.collection(self.utterance_collection_name(gen))
            u = self._read_all(u_col, include)
            meta = json.loads((u_col.metadata or {}).get("trained", "{}"))
        return q, u, meta

    def copy_knowledge(self, source: str, target: str) -> None:
        """Copy a generation's passage questions and labelled messages (with what training chose)."""
        include = ["documents", "metadatas", "embeddings"]
        for name in (self.question_collection_name, self.utterance_collection_name):
            src = self.collection(name(source))
            rows = self._read_all(src, include)
            dst = self.collection(name(target), create=True)
            for start in range(0, len(rows["ids"]), PAGE):
                end = start + PAGE
                dst.add(ids=rows["ids"][start:end], documents=rows["documents"][start:end],
                        metadatas=rows["metadatas"][start:end], embeddings=rows["embeddings"][start:end])
            if src.metadata and "trained" in src.metadata:
                dst.modify(metadata={"trained": src.metadata["trained"]})

    def read_current(self) -> Generation:
        gen = self.current()
        if not gen:
            raise IndexUnavailable("no index has been built yet: run `python -m chatbot index`")
        return self.read(gen)


def _utterance(text: str, meta: dict) -> Utterance:
    return Utterance(text, meta["label"], meta["lang"], meta["family"], tuple(json.loads(meta["history"])),
                     bool(meta["answerable"]), meta.get("where", ""))


@dataclass
class IndexSummary:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_total: int = 0
    chunks_embedded: int = 0
    chunks_copied: int = 0
    chunks_removed: int = 0
    generation: str = ""
    previous: str = ""
    seconds: float = 0.0
    changed: bool = False
    embedder: str = ""  # identity of the model that made the vectors
    model_changed: bool = False  # made by another model or recipe (VECTORS): everything embedded again
    cleaned: list[str] = field(default_factory=list)
    questions: int = 0  # passage-question keys in the index
    utterances: int = 0  # labelled messages the reply-kind model learned from
    training: dict = field(default_factory=dict)

    def line(self) -> str:
        why = ("; the embedding model or how vectors are made changed, so every chunk was embedded again"
               if self.model_changed else "")
        return (f"{self.added} added, {self.updated} updated, {self.removed} removed, "
                f"{self.unchanged} unchanged ({self.chunks_embedded} chunks embedded, "
                f"{self.chunks_total} in index, {self.seconds:.1f}s{why})")

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _writer_lock(settings: Settings) -> Iterator[None]:
    """One indexer at a time on an embedded store (a Chroma server serialises writes itself)."""
    if settings.chroma_url:
        yield
        return
    Path(settings.index_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(settings.index_dir) / ".indexer.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexUnavailable("another re-index is running on this index; try again when it ends") from None
        yield


def _diff_documents(new: list[Chunk], old: dict[str, Chunk]) -> tuple[int, int, int, int]:
    def per_doc(chunks) -> dict[str, set]:
        out: dict[str, set] = {}
        for c in chunks:
            out.setdefault(c.doc_id, set()).add((c.id, tuple(sorted(c.metadata().items()))))
        return out

    n, o = per_doc(new), per_doc(old.values())
    added = len(n.keys() - o.keys())
    removed = len(o.keys() - n.keys())
    updated = sum(1 for d in n.keys() & o.keys() if n[d] != o[d])
    unchanged = len(n.keys() & o.keys()) - updated
    return added, updated, removed, unchanged


def build_index(settings: Settings, embedder, *, rebuild: bool = False, progress: Progress | None = None,
                store: Store | None = None) -> IndexSummary:
    """Bring the index in line with the corpus; embeds only new text. Raises CorpusError before writing.

    ``embedder`` is an embedder or a zero-argument factory for one (so a no-op run loads no model).
    Vectors are reused only from an index made by the same model (an index that does not record its
    model counts as another); otherwise every chunk is embedded again, so one index never mixes the
    vectors of two models.
    """
    from chatbot.embedding import settings_identity

    t0 = time.perf_counter()
    report = progress or (lambda done, total, msg: None)
    docs = load_corpus(settings.corpus_dir)  # validation happens before anything is touched
    knowledge = load_knowledge(settings.corpus_dir, docs)
    chunks = chunk_corpus(docs, settings.chunk_size, settings.chunk_overlap)
    questions = question_rows(chunks, knowledge.questions)
    store = store or _open_for_writing(settings, rebuild)
    with _writer_lock(settings):
        pointer = store.pointer_info()
        current = pointer.get("current") or None
        summary = IndexSummary(previous=current or "")
        identity = getattr(embedder, "identity", None) or settings_identity(settings)
        summary.embedder = identity
        content = _content_digest(chunks, questions, knowledge, identity)
        if current and not rebuild and pointer.get("content") == content \
                and (pointer.get("embedder"), pointer.get("vectors")) == (identity, VECTORS):
            # built from exactly this: nothing to read or embed (leftovers of a killed run still go)
            summary.cleaned = sorted(g for g in store.generations() - {current, pointer.get("previous")} if g)
            for gen in summary.cleaned:
                store.drop(gen)
            summary.generation = current
            summary.unchanged = len({c.doc_id for c in chunks})
            summary.chunks_total = len(chunks)
            summary.questions, summary.utterances = len(questions), len(knowledge.utterances)
            summary.seconds = time.perf_counter() - t0
            report(len(chunks), len(chunks), "index is up to date")
            return summary
        old_gen = None
        if current and not rebuild:
            try:
                old_gen = store.read(current)
            except IndexUnavailable:
                old_gen = None  # unreadable: rebuild from scratch
        summary.model_changed = old_gen is not None and (pointer.get("embedder"), pointer.get("vectors")) \
            != (identity, VECTORS)
        reusable = None if summary.model_changed else old_gen  # whose vectors may be copied
        old = {c.id: c for c in old_gen.chunks} if old_gen else {}
        summary.added, summary.updated, summary.removed, summary.unchanged = _diff_documents(chunks, old)
        summary.chunks_total = len(chunks)
        summary.questions = len(questions)
        summary.utterances = len(knowledge.utterances)
        keep = {current, pointer.get("previous")}
        summary.cleaned = sorted(g for g in store.generations() - keep if g)
        for gen in summary.cleaned:
            store.drop(gen)
        same = reusable is not None and {c.id: c for c in chunks} == old \
            and sorted(r[:3] for r in questions) == sorted(old_gen.questions) \
            and sorted(u.key for u in knowledge.utterances) == sorted(u.key for u in old_gen.utterances) \
            and old_gen.meta.get("recipe") == TRAINING and old_gen.meta.get("code") == _training_code()
        if same:
            summary.generation = current
            summary.unchanged = len({c.doc_id for c in chunks})
            summary.seconds = time.perf_counter() - t0
            report(len(chunks), len(chunks), "index is up to date")
            return summary

        if callable(embedder) and not hasattr(embedder, "encode"):
            embedder = embedder()  # a factory: the model is loaded only when there is text to embed
        gen = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)
        try:
            _write_generation(store, gen, chunks, reusable, embedder, report, summary)
            _write_knowledge(settings, store, gen, questions, knowledge, reusable, embedder, report)
            report(0, 1, "training")
            summary.training = _train(settings, store, gen, embedder)
            store.set_current(gen, identity, content)
        except BaseException:
            store.drop(gen)
            raise
        # keep the previous generation for readers still on it; older ones go
        for g in store.generations() - {gen, current}:
            store.drop(g)
        summary.generation = gen
        summary.changed = True
        summary.chunks_removed = len(old.keys() - {c.id for c in chunks})
        summary.seconds = time.perf_counter() - t0
        return summary


def _content_digest(chunks: list[Chunk], questions, knowledge: Knowledge, identity: str) -> str:
    return hashlib.sha1(json.dumps([
        VECTORS, TRAINING, _training_code(), identity, sorted((c.id, sorted(c.metadata().items())) for c in chunks),
        sorted(r[:3] for r in questions), sorted(u.key for u in knowledge.utterances)]).encode()).hexdigest()


def question_rows(chunks: list[Chunk], questions: list[PassageQuestion]) -> list[tuple[str, str, str, str]]:
    """(chunk id, question language, question, row id) for each passage question and each chunk of
    its section (a long section is split into several chunks; each is found by the section's questions)."""
    by_section: dict[tuple[str, str], list[Chunk]] = {}
    for c in chunks:
        by_section.setdefault((c.doc_id, c.heading), []).append(c)
    rows = []
    for q in questions:
        for c in by_section.get((q.doc_id, q.heading), []):
            rows.append((c.id, q.lang, q.text, f"{c.id}?{q.key}"))
    return rows


def _text_vectors(cache_dir: Path, embedder, texts: list[str]) -> dict[str, np.ndarray]:
    """Vectors of short texts (passage questions, labelled messages), kept on disk by model and text:
    a fresh index of the same data embeds none of them again."""
    ident = "".join(ch if ch.isalnum() else "-" for ch in str(getattr(embedder, "identity", "model")))
    path = Path(cache_dir) / "vectors" / f"{ident}.npz"
    digest = {t: hashlib.sha1(t.encode()).hexdigest() for t in texts}
    known: dict[str, np.ndarray] = {}
    with contextlib.suppress(OSError, ValueError, KeyError):
        with np.load(path) as data:
            known = dict(zip(data["keys"].tolist(), data["vectors"]))
    fresh = sorted({t for t in texts if digest[t] not in known})
    if fresh:
        known.update(zip((digest[t] for t in fresh), embedder.encode(fresh)))
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, keys=np.asarray(list(known)), vectors=np.asarray(list(known.values()), dtype=np.float32))
            tmp.replace(path)
    return {t: known[digest[t]] for t in texts}


def _reuse(old_texts: list[str], old_emb: np.ndarray, texts: list[str], embedder, cache_dir: Path) -> np.ndarray:
    """Vectors for texts: copied where the old generation has the same text, embedded otherwise."""
    known = {t: i for i, t in enumerate(old_texts)}
    out = np.zeros((len(texts), old_emb.shape[1] if len(old_emb) else 384), dtype=np.float32)
    fresh = sorted({t for t in texts if t not in known})
    vecs = _text_vectors(cache_dir, embedder, fresh) if fresh else {}
    for i, t in enumerate(texts):
        out[i] = old_emb[known[t]] if t in known else vecs[t]
    return out


def _write_knowledge(settings: Settings, store: Store, gen: str, questions, knowledge: Knowledge, old_gen: Generation | None,
                     embedder, report: Progress) -> None:
    """The passage questions and the labelled messages, with their vectors, into the new generation."""
    report(0, 1, "passage questions and labelled messages")
    q_col = store.collection(store.question_collection_name(gen), create=True)
    u_col = store.collection(store.utterance_collection_name(gen), create=True)
    old_q = ([t for _, _, t in old_gen.questions], old_gen.question_embeddings) if old_gen else ([], np.zeros((0, 384)))
    old_u = ([u.text for u in old_gen.utterances], old_gen.utterance_embeddings) if old_gen else ([], np.zeros((0, 384)))
    cache = Path(settings.embed_cache_dir).parent
    q_emb = _reuse(*old_q, [t for _, _, t, _ in questions], embedder, cache)
    u_emb = _reuse(*old_u, [u.text for u in knowledge.utterances], embedder, cache)
    batch = min(2000, store.client.get_max_batch_size())
    for start in range(0, len(questions), batch):
        part = questions[start:start + batch]
        q_col.add(ids=[r for _, _, _, r in part], documents=[t for _, _, t, _ in part],
                  metadatas=[{"chunk_id": c, "lang": lang} for c, lang, _, _ in part],
                  embeddings=q_emb[start:start + batch])
    seen: set[str] = set()
    rows = []
    for i, u in enumerate(knowledge.utterances):
        if u.key not in seen:  # the same example twice is one example
            seen.add(u.key)
            rows.append(i)
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        us = [knowledge.utterances[i] for i in part]
        u_col.add(ids=[u.key for u in us], documents=[u.text for u in us],
                  metadatas=[{"label": u.label, "lang": u.lang, "family": u.family, "where": u.where,
                              "history": json.dumps(list(u.history), ensure_ascii=False),
                              "answerable": u.answerable} for u in us],
                  embeddings=u_emb[part])
    if q_col.count() != len(questions) or u_col.count() != len(rows):
        raise IndexUnavailable("new index generation is incomplete (passage questions or labelled messages)")


def _training_code() -> str:
    """The training code itself is part of what a cached result was made from."""
    here = Path(__file__).parent
    return hashlib.sha1(b"".join((here / f).read_bytes() for f in ("intent.py", "gate.py", "training.py",
                                                                    "retrieval.py", "answer.py"))).hexdigest()


def _cached(settings: Settings, key: list, train: Callable[[], dict]) -> dict:
    digest = hashlib.sha1(json.dumps([key, _training_code()]).encode()).hexdigest()
    cache = Path(settings.embed_cache_dir).parent / "training" / f"{digest}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    out = train()
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(out))
        tmp.replace(cache)
    return out


def _train(settings: Settings, store: Store, gen: str, embedder) -> dict:
    """Learn from the new generation what serving needs (the side-effect cut-off, the answer gate) and
    keep it with the generation."""
    from chatbot import intent
    from chatbot.training import train_gate, train_intent

    generation = store.read(gen)
    # training is deterministic, so its result is kept by what it learned from: the same messages (and,
    # for the gate, texts and questions) with the same model give the same result; a fresh index of an
    # unchanged corpus, as tests and new replicas build, does not train again
    ident = getattr(embedder, "identity", "")
    messages = sorted(u.key for u in generation.utterances)
    fitted: dict = {}  # the serving model, when train_intent fits it beside the folds' models
    trained = _cached(settings, [TRAINING, ident, messages, sorted(generation.questions)],
                      lambda: train_intent(generation, fitted))  # the passage questions are examples too
    trained.update(_cached(settings, [TRAINING, VECTORS, ident, messages, sorted(c.id for c in generation.chunks),
                                      sorted(generation.questions)],
                           lambda: train_gate(settings, generation, embedder, trained.get("doubt"))))
    trained.pop("doubt", None)  # a value per message: what the gate learned from it is kept instead
    trained["recipe"] = TRAINING
    trained["code"] = _training_code()
    # the serving model itself, so that serving processes load it rather than fit it
    intent.fit_generation(generation, trained.get("ae_threshold", 0.5), settings.model_cache_dir,
                          fitted.get("model"))
    col = store.collection(store.utterance_collection_name(gen))
    col.modify(metadata={"trained": json.dumps(trained)})
    return trained


def _open_for_writing(settings: Settings, rebuild: bool) -> Store:
    """The store; with --rebuild, a damaged embedded store is moved aside (kept, not deleted)."""
    try:
        store = Store(settings)
        store.current()
        return store
    except Exception as exc:
        if not rebuild or settings.chroma_url:
            raise IndexUnavailable(f"the index cannot be opened ({exc}); run `python -m chatbot index --rebuild`") from exc
    from chromadb.api.client import SharedSystemClient

    index_dir = Path(settings.index_dir)
    aside = index_dir.with_name(f"{index_dir.name}.damaged-{dt.datetime.now():%Y%m%d%H%M%S}")
    index_dir.rename(aside)
    SharedSystemClient.clear_system_cache()
    return Store(settings)


def chunk_vectors(chunks: list[Chunk], sentences: list[tuple[Chunk, int, str]], sentence_vectors,
                  embedder) -> dict[str, np.ndarray]:
    """Each chunk's vector: the normalised mean of its sentences' vectors (every sentence is embedded
    with the chunk's title and section). The text is read by the model once, not twice: embedding
    each chunk whole as well was 42% of a full build's tokens, and on the dev sets and 90 questions
    of our own the answers were as good (10 of the 90 changed; README). A chunk without sentences
    is embedded whole."""
    grouped: dict[str, list[int]] = {}
    for row, (c, _, _) in enumerate(sentences):
        grouped.setdefault(c.id, []).append(row)
    out = {}
    for cid, rows in grouped.items():
        mean = np.asarray(sentence_vectors[rows], dtype=np.float32).mean(axis=0)
        out[cid] = mean / np.linalg.norm(mean)
    whole = [c for c in chunks if c.id not in out]
    if whole:
        out.update(zip([c.id for c in whole], embedder.encode([c.embed_text() for c in whole])))
    return out


def _sentences(chunks: list[Chunk]) -> list[tuple[Chunk, int, str]]:
    """(chunk, index in chunk, sentence) for every sentence of these chunks."""
    return [(c, i, s) for c in chunks for i, s in enumerate(split_sentences(c.text))]


def embedded_texts(chunks: list[Chunk]) -> list[str]:
    """What a full build gives the model to read for these chunks (as `_write_generation` does)."""
    rows = _sentences(chunks)
    have = {c.id for c, _, _ in rows}
    return [c.sentence_embed_text(s) for c, _, s in rows] + [c.embed_text() for c in chunks if c.id not in have]


def _write_generation(store: Store, gen: str, chunks: list[Chunk], old_gen: Generation | None,
                      embedder, report: Progress, summary: IndexSummary) -> None:
    old_rows = {c.id: i for i, c in enumerate(old_gen.chunks)} if old_gen else {}
    old_sents = old_gen.sentence_rows() if old_gen else {}
    chunk_cols = store.chunk_collections(gen, create=True)
    sent_col = store.collection(store.sentence_collection_name(gen), create=True)
    batch = min(256, store.client.get_max_batch_size())
    total = len(chunks)
    done = 0
    report(0, total, "embedding")
    for start in range(0, total, batch):
        part = chunks[start:start + batch]
        fresh = [c for c in part if c.id not in old_rows]
        fresh_sents = _sentences(fresh)
        fresh_sent_emb = embedder.encode([c.sentence_embed_text(s) for c, _, s in fresh_sents])
        emb_by_id = chunk_vectors(fresh, fresh_sents, fresh_sent_emb, embedder)
        sent_rows = [(c, i, s, fresh_sent_emb[n]) for n, (c, i, s) in enumerate(fresh_sents)]
        for c in part:
            if c.id in old_rows:
                emb_by_id[c.id] = old_gen.chunk_embeddings[old_rows[c.id]]
                for j in old_sents.get(c.id, []):
                    _, i, s = old_gen.sentences[j]
                    sent_rows.append((c, i, s, old_gen.sentence_embeddings[j]))
        store.add_chunks(chunk_cols, part, [emb_by_id[c.id] for c in part])
        store.add_sentences(sent_col, sent_rows)
        summary.chunks_embedded += len(fresh)
        summary.chunks_copied += len(part) - len(fresh)
        done += len(part)
        report(done, total, "embedding")
    written = sum(col.count() for col in chunk_cols.values())
    if written != total:
        raise IndexUnavailable(f"new index generation is incomplete ({written} of {total} chunks)")


def index_status(settings: Settings, store: Store | None = None) -> dict:
    """What maintainers see: documents and chunks by audience and language, last re-index, errors."""
    from chatbot.corpus import CorpusError

    out: dict = {"generation": None, "updated": None, "documents": {}, "chunks": {}, "errors": []}
    try:
        store = store or Store(settings)
        store.check_files()
        info = store.pointer_info()
        out["generation"], out["updated"] = info.get("current") or None, info.get("updated")
        if out["generation"]:
            metas = [m for col in store.chunk_collections(out["generation"]).values()
                     for m in store._read_all(col, ["metadatas"])["metadatas"]]
            docs: dict[str, set] = {}
            for m in metas:
                key = f"{m['audience']}/{m['language']}"
                out["chunks"][key] = out["chunks"].get(key, 0) + 1
                docs.setdefault(key, set()).add(m["doc_id"])
            out["documents"] = {k: len(v) for k, v in docs.items()}
        else:
            out["errors"].append("index: none has been built (run `python -m chatbot index --rebuild`)")
    except Exception as exc:  # a broken store is reported, not raised, on the status page
        out["errors"].append(f"index: {exc}")
    try:
        load_corpus(settings.corpus_dir)
    except CorpusError as exc:
        out["errors"].append(str(exc))
    return out
