"""The persisted vector index: generations of Chroma collections behind an atomically swapped pointer.

Each re-index that changes anything writes a new generation (a chunk collection and a sentence
collection), copying the embeddings of unchanged chunks and embedding only new text, then swaps the
pointer. Readers always see one complete generation; a failed run leaves the pointer untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
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

Progress = Callable[[int, int, str], None]
PARTITIONS = [(a, lang) for a in AUDIENCES for lang in LANGUAGES]
PAGE = 2000
# how the vectors are made from the model's output (recorded beside the model; a change re-embeds
# everything, like a change of model): sentences with title and section, chunks as their mean
VECTORS = "sentences-titled/chunk-mean"


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

    def _pointer(self):
        return self.client.get_or_create_collection(
            f"{self.prefix}_pointer", embedding_function=None, metadata={"current": "", "previous": ""}
        )

    def current(self) -> str | None:
        meta = self._pointer().metadata or {}
        return meta.get("current") or None

    def pointer_info(self) -> dict:
        return dict(self._pointer().metadata or {})

    def set_current(self, gen: str, embedder: str) -> None:
        """Point readers at ``gen``; ``embedder`` is the identity of the model that made its vectors."""
        pointer = self._pointer()
        meta = dict(pointer.metadata or {})
        pointer.modify(metadata={
            "current": gen, "previous": meta.get("current") or "",
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "embedder": embedder,
            "vectors": VECTORS,
        })

    def generations(self) -> set[str]:
        heads = (f"{self.prefix}_chunks_", f"{self.prefix}_sents_")
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
        for name in [*names, self.sentence_collection_name(gen)]:
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
        return Generation(gen, chunks, chunk_emb, sentences, sent_emb)

    def read_current(self) -> Generation:
        gen = self.current()
        if not gen:
            raise IndexUnavailable("no index has been built yet: run `python -m chatbot index`")
        return self.read(gen)


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
    chunks = chunk_corpus(docs, settings.chunk_size, settings.chunk_overlap)
    store = store or _open_for_writing(settings, rebuild)
    with _writer_lock(settings):
        pointer = store.pointer_info()
        current = pointer.get("current") or None
        summary = IndexSummary(previous=current or "")
        identity = getattr(embedder, "identity", None) or settings_identity(settings)
        summary.embedder = identity
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
        keep = {current, pointer.get("previous")}
        summary.cleaned = sorted(g for g in store.generations() - keep if g)
        for gen in summary.cleaned:
            store.drop(gen)
        same = reusable is not None and {c.id: c for c in chunks} == old
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
            store.set_current(gen, identity)
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
