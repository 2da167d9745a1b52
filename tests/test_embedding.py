"""The two embedding backends compute the same vectors; the ONNX export is cached and safe to share."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from chatbot.chunking import chunk_corpus, split_sentences
from chatbot.corpus import load_corpus
from chatbot.embedding import MiniLMEmbeddings, export_onnx
from tests.conftest import CORPUS


@pytest.fixture(scope="module")
def torch_embedder():
    return MiniLMEmbeddings(backend="torch")


def _corpus_texts() -> list[str]:
    chunks = chunk_corpus(load_corpus(CORPUS), 900)
    return [c.embed_text() for c in chunks] + [c.sentence_embed_text(s) for c in chunks[:20]
                                               for s in split_sentences(c.text)]


def test_onnx_and_torch_give_the_same_vectors(embedder, torch_embedder):
    assert embedder.backend == "onnx"  # what the app and the index use by default
    texts = _corpus_texts() + ["", "x", "Wat is NTRK-fusiekanker?", "word " * 600]  # empty, tiny, Dutch, truncated
    a, b = embedder.encode(texts), torch_embedder.encode(texts)
    assert a.shape == b.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) > 0.9999
    # a single query takes the direct path in both backends, and matches batch encoding
    q = "How is larotrectinib dosed in children?"
    assert float(embedder.encode_query(q) @ torch_embedder.encode_query(q)) > 0.9999
    assert float(embedder.encode_query(q) @ embedder.encode([q])[0]) > 0.9999
    # order is kept although the ONNX path batches by length
    assert np.allclose(embedder.encode(texts[::-1])[::-1], a, atol=1e-5)


def test_export_is_cached_and_keyed_by_the_model(tmp_path, embedder):
    first = export_onnx(embedder.model_path, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert export_onnx(embedder.model_path, tmp_path) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not exported again
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial files left
    import onnx

    ops = {node.op_type for node in onnx.load(str(first)).graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= ops  # fused: one op per attention
    fresh = MiniLMEmbeddings(cache_dir=tmp_path)
    q = "What is TRK fusion cancer?"
    assert float(fresh.encode_query(q) @ embedder.encode_query(q)) > 0.99999


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="TRK_EMBED_BACKEND.*'tensorflow'"):
        MiniLMEmbeddings(backend="tensorflow")


def test_serving_with_onnx_does_not_load_torch(embedder):
    code = ("import sys; from chatbot.embedding import MiniLMEmbeddings; "
            "e = MiniLMEmbeddings(); e.encode_query('hello'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
