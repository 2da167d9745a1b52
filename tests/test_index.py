import dataclasses
import shutil

import numpy as np
import pytest

from chatbot.chunking import split_sentences
from chatbot.corpus import CorpusError
from chatbot.index import VECTORS, IndexUnavailable, Store, build_index, chunk_vectors
from tests.conftest import CORPUS, make_settings

SMALL = [
    "public-en/what-is-trk-fusion-cancer.md", "public-en/how-is-it-diagnosed.md",
    "public-en/inherited-or-acquired.md", "public-nl/diagnose.md", "hcp/resistance-mechanisms.md",
]


@pytest.fixture
def small(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    for rel in SMALL:
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / rel, corpus / rel)
    # the reply-kind model learns from labelled messages: one file of every kind keeps training short
    (corpus / "utterances").mkdir()
    shutil.copy(CORPUS / "utterances" / "kinds.jsonl", corpus / "utterances" / "kinds.jsonl")
    settings = make_settings(tmp_path)
    first = build_index(settings, embedder)
    return settings, corpus, first


def chunk_ids(settings) -> dict[str, set[str]]:
    gen = Store(settings).read_current()
    out: dict[str, set[str]] = {}
    for c in gen.chunks:
        out.setdefault(c.doc_id, set()).add(c.id)
    return out


def test_first_build_and_noop(small, embedder):
    settings, _, first = small
    assert (first.added, first.updated, first.removed) == (5, 0, 0)
    assert first.chunks_embedded == first.chunks_total > 5
    again = build_index(settings, embedder)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 5)
    assert again.chunks_embedded == 0 and not again.changed
    assert again.generation == first.generation


def test_index_leaves_the_serving_model_for_serving_processes(small, monkeypatch):
    """index fits the serving model beside its held-out fits and keeps it on disk: a new serving
    process loads it and fits nothing."""
    from chatbot import intent

    settings, _, _ = small
    generation = Store(settings).read_current()
    monkeypatch.setattr(intent, "_FITTED", {})  # a new process
    monkeypatch.setattr(intent, "fit", lambda *a, **k: pytest.fail("a serving process fitted the model"))
    model = intent.fit_generation(generation, generation.meta["ae_threshold"], settings.model_cache_dir)
    assert model.ae_threshold == generation.meta["ae_threshold"]


def test_noop_run_never_loads_the_model(small):
    settings, _, _ = small

    def factory():
        raise AssertionError("model loaded for a no-op re-index")

    assert build_index(settings, factory).chunks_embedded == 0


def test_correcting_whether_a_question_is_answerable_retrains(small, embedder):
    """A maintainer's label fix (`answerable`, or a message moved to another family) is a change."""
    settings, corpus, first = small
    path = corpus / "utterances" / "kinds.jsonl"
    lines = path.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if '"label": "question"' in line and "answerable" not in line)
    lines[i] = lines[i][:-1] + ', "answerable": false}'
    path.write_text("\n".join(lines) + "\n")
    summary = build_index(settings, embedder)
    assert summary.changed and summary.generation != first.generation
    gen = Store(settings).read_current()
    assert sum(not u.answerable for u in gen.utterances) == 1 + sum(
        '"answerable": false' in line for n, line in enumerate(lines) if n != i)


def test_a_change_of_the_training_code_retrains(small, embedder, monkeypatch):
    """Nobody has to remember to bump a version: the generation records the training code it was
    trained by, and other code trains again."""
    settings, _, first = small
    monkeypatch.setattr("chatbot.index._training_code", lambda: "changed training code")
    summary = build_index(settings, embedder)
    assert summary.changed and summary.generation != first.generation and summary.chunks_embedded == 0
    assert build_index(settings, embedder).generation == summary.generation  # and then it is a no-op


def test_edit_one_document_changes_only_its_chunks(small, embedder):
    settings, corpus, _ = small
    before = chunk_ids(settings)
    path = corpus / "public-en/inherited-or-acquired.md"
    path.write_text(path.read_text().replace(
        "talk to your doctor or a genetic counsellor.", "talk to your doctor or a genetic counsellor today."))
    summary = build_index(settings, embedder)
    after = chunk_ids(settings)
    assert (summary.added, summary.updated, summary.removed, summary.unchanged) == (0, 1, 0, 4)
    for doc, ids in before.items():
        if doc != "inherited-or-acquired":
            assert after[doc] == ids
    changed = after["inherited-or-acquired"] - before["inherited-or-acquired"]
    assert len(changed) == 1 and summary.chunks_embedded == 1
    assert len(before["inherited-or-acquired"] - after["inherited-or-acquired"]) == 1


def test_delete_and_add_documents(small, embedder):
    settings, corpus, _ = small
    (corpus / "hcp/resistance-mechanisms.md").unlink()
    shutil.copy(CORPUS / "public-en/treatment-options.md", corpus / "public-en/treatment-options.md")
    summary = build_index(settings, embedder)
    after = chunk_ids(settings)
    assert (summary.added, summary.removed) == (1, 1)
    assert "hcp-resistance-mechanisms" not in after and "treatment-options" in after
    store = Store(settings)
    assert len(store.generations()) == 2  # current + previous kept for readers still on it


@pytest.mark.parametrize("bad", ["missing-field", "bad-audience", "empty", "binary", "duplicate"])
def test_bad_file_leaves_index_untouched(small, embedder, bad):
    settings, corpus, first = small
    before = chunk_ids(settings)
    text = (corpus / SMALL[0]).read_text()
    target = corpus / "public-en/zz-bad.md"
    if bad == "missing-field":
        target.write_text(text.replace("title: What is TRK fusion cancer?\n", "").replace("id: what-is", "id: zz-what-is"))
    elif bad == "bad-audience":
        target.write_text(text.replace("audience: public", "audience: everyone").replace("id: what-is", "id: zz"))
    elif bad == "empty":
        target.write_text("")
    elif bad == "binary":
        target.write_bytes(b"\x89PNG\x00\x00binary")
    else:
        target.write_text(text)
    with pytest.raises(CorpusError) as err:
        build_index(settings, embedder)
    assert "zz-bad.md" in str(err.value)
    assert Store(settings).current() == first.generation
    assert chunk_ids(settings) == before


class ExplodingEmbedder:
    def __init__(self, real):
        self.real = real

    def encode(self, texts):
        raise RuntimeError("embedding step crashed")


def test_interrupted_reindex_keeps_serving_the_old_index(small, embedder):
    from chatbot.answer import Engine

    settings, corpus, first = small
    engine = Engine(settings, embedder)
    before = engine.ask("How is TRK fusion cancer diagnosed?")
    assert before.kind == "answer"
    path = corpus / "public-en/what-is-trk-fusion-cancer.md"
    path.write_text(path.read_text() + "\n## New section\nA brand new paragraph about genes.\n")
    with pytest.raises(RuntimeError, match="embedding step crashed"):
        build_index(settings, ExplodingEmbedder(embedder))
    store = Store(settings)
    assert store.current() == first.generation
    assert store.generations() == {first.generation}  # the half-built generation was removed
    after = Engine(settings, embedder).ask("How is TRK fusion cancer diagnosed?")
    assert after.kind == "answer" and after.answer == before.answer
    assert build_index(settings, embedder).updated == 1


def test_leftovers_of_a_killed_run_are_cleaned(small, embedder):
    settings, _, first = small
    store = Store(settings)
    orphan = "19990101000000dead00"
    store.chunk_collections(orphan, create=True)
    store.collection(store.sentence_collection_name(orphan), create=True)
    summary = build_index(settings, embedder)
    assert orphan in summary.cleaned
    assert store.generations() == {first.generation}


def test_rebuild_embeds_everything(small, embedder):
    settings, _, first = small
    summary = build_index(settings, embedder, rebuild=True)
    assert summary.chunks_embedded == first.chunks_total and summary.generation != first.generation


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexUnavailable, match="no index has been built"):
        Store(make_settings(tmp_path)).read_current()


@pytest.mark.parametrize("question,doc", [
    ("What is TRK fusion cancer?", "what-is-trk-fusion-cancer"),
    ("Is TRK fusion cancer passed on in families?", "inherited-or-acquired"),
    ("How do doctors find an NTRK gene fusion?", "how-is-it-diagnosed"),
    ("Where in the body can it occur?", "where-in-the-body"),
    ("How do I report a side effect?", "side-effects-and-help"),
])
def test_public_query_finds_the_right_document_in_top3(engine, question, doc):
    snap = engine.snapshot()
    qv = engine.embedder.encode_query(question)
    hits = engine.retriever.search(snap, question, qv, "public", "en")
    assert doc in [h.chunk.doc_id for h in hits[:3]]
    assert all(h.chunk.audience == "public" for h in hits)


def test_chunks_carry_their_metadata(built):
    settings, _ = built
    gen = Store(settings).read_current()
    c = next(c for c in gen.chunks if c.doc_id == "hcp-larotrectinib-indication-and-dosing")
    assert c.audience == "hcp" and c.language == "en" and c.title.startswith("Larotrectinib")
    assert c.heading and "VITRAKVI" in c.sources_json
    assert len(gen.sentences) == len(gen.sentence_embeddings) > len(gen.chunks)


def test_vectors_of_another_model_are_never_reused(small, embedder, monkeypatch):
    """An index made by another model (or one that does not record its model) is embedded again,
    whole, instead of mixing two models' vectors; the same model's index is reused as before."""
    settings, _, first = small
    store = Store(settings)
    assert store.pointer_info()["embedder"] == embedder.identity
    monkeypatch.setattr(embedder, "identity", "another-model:0123456789ab")
    summary = build_index(settings, embedder)
    assert summary.model_changed and summary.changed
    assert summary.chunks_embedded == summary.chunks_total == first.chunks_total
    assert (summary.added, summary.updated, summary.removed, summary.unchanged) == (0, 0, 0, 5)
    assert "the embedding model or how vectors are made changed" in summary.line()
    assert Store(settings).pointer_info()["embedder"] == "another-model:0123456789ab"
    again = build_index(settings, embedder)
    assert not again.changed and again.chunks_embedded == 0


def test_an_index_whose_vectors_were_made_another_way_is_embedded_again(small, embedder):
    """Chunk vectors once came from embedding each chunk whole; such an index (same model, its
    pointer records no recipe or another one) is embedded again, not mixed with mean vectors."""
    settings, _, first = small
    store = Store(settings)
    assert store.pointer_info()["vectors"] == VECTORS
    meta = store.pointer_info()
    store._pointer().modify(metadata={**meta, "vectors": "chunks-whole"})
    summary = build_index(settings, embedder)
    assert summary.model_changed and summary.chunks_embedded == first.chunks_total
    assert Store(settings).pointer_info()["vectors"] == VECTORS
    assert not build_index(settings, embedder).changed


def test_a_chunk_vector_is_the_mean_of_its_sentence_vectors(small, embedder):
    """Recomputed with the real model: each stored chunk vector is the unit-length mean of its
    sentences, each embedded with title and section; a chunk without sentences (a table) is
    embedded whole."""
    settings, _, _ = small
    gen = Store(settings).read_current()
    rows = gen.sentence_rows()
    for i, c in enumerate(gen.chunks[:6]):
        sents = [gen.sentences[j][2] for j in rows[c.id]]
        mean = embedder.encode([c.sentence_embed_text(s) for s in sents]).mean(axis=0)
        assert np.allclose(gen.chunk_embeddings[i], mean / np.linalg.norm(mean), atol=1e-4)
        assert abs(float(np.linalg.norm(gen.chunk_embeddings[i])) - 1) < 1e-5
    c = gen.chunks[0]
    table = dataclasses.replace(c, id="table", text="| Gene | Partner |\n|---|---|\n| NTRK1 | TPM3 |")
    assert split_sentences(table.text) == []
    vectors = chunk_vectors([c, table], [(c, 0, "One sentence."), (c, 1, "Another.")],
                            embedder.encode(["One sentence.", "Another."]), embedder)
    assert np.allclose(vectors["table"], embedder.encode([table.embed_text()])[0], atol=1e-5)
    mean = embedder.encode(["One sentence.", "Another."]).mean(axis=0)
    assert np.allclose(vectors[c.id], mean / np.linalg.norm(mean), atol=1e-5)


def test_an_index_that_does_not_record_its_model_is_embedded_again(small, embedder):
    settings, _, first = small
    store = Store(settings)
    store.set_current(first.generation, "")  # as indexes made before the model was recorded
    summary = build_index(settings, embedder)
    assert summary.model_changed and summary.chunks_embedded == first.chunks_total
    assert Store(settings).pointer_info()["embedder"] == embedder.identity


def test_the_model_identity_follows_the_model_files(tmp_path, embedder):
    from chatbot.embedding import model_identity, settings_identity

    assert settings_identity(make_settings(tmp_path)) == embedder.identity == model_identity(embedder.model_path)
    other = tmp_path / "model"
    shutil.copytree(embedder.model_path, other)
    assert model_identity(other) == embedder.identity  # the same files on another path or machine
    with open(other / "config.json", "a") as fh:
        fh.write(" ")
    assert model_identity(other) != embedder.identity
