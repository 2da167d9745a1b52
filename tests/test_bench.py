"""The benchmark and the load generator run end to end and report what they claim (figures are
printed by `make bench` / `make load`; no timing is asserted here)."""

from __future__ import annotations

import pytest

from chatbot import bench
from tests.conftest import CORPUS, corpus_size, make_settings


@pytest.mark.slow
def test_bench_reports_every_figure_and_the_baseline(tmp_path):
    settings = make_settings(tmp_path, corpus=CORPUS)
    result = bench.run(settings, repeat=1, sizes=(600,), builds=2, log=lambda *_: None)
    assert result["index"]["chunks"] == corpus_size()[1] and result["index"]["build_s"] > 0
    # both pipelines built in turn, the same number of times; the median is reported
    assert len(result["index"]["build_runs_s"]) == len(result["baseline"]["build_runs_s"]) == 2
    assert result["index"]["build_s"] in result["index"]["build_runs_s"]
    assert 0 < result["index"]["noop_reindex_s"] < result["index"]["build_s"]
    assert result["cold_start_s"] > 0 and result["peak_rss_mb"] > 0
    for stage in bench.STAGES:
        assert result["stages"][stage]["n"] > 0, stage
        assert result["stages"][stage]["p50"] <= result["stages"][stage]["p95"]
    # our retrieval finds the key facts and never shows a public caller an HCP passage
    assert result["retrieval"]["key_fact_hit_rate"] >= 0.9
    assert result["retrieval"]["public_hcp_leaks"] == 0
    base = result["baseline"]
    assert base["chunks"] > 0 and base["question_ms"]["n"] > 0
    assert base["public_hcp_leaks"] > 0  # the tutorial pipeline has no access boundary
    assert result["ratios"]["index_build"] == pytest.approx(result["index"]["build_s"] / base["build_s"], rel=0.01)
    # we embed every passage and every sentence: more tokens than the baseline's passages alone
    assert result["index"]["tokens_embedded"] > base["tokens_embedded"] > 0
    assert result["ratios"]["index_build_per_token"] == pytest.approx(
        base["tokens_per_s"] / result["index"]["tokens_per_s"], rel=0.02)
    assert result["growth"]["600"]["total_ms"]["n"] > 0
    text = bench.table(result)
    assert "baseline" in text and "growth     600 chunks" in text


@pytest.mark.slow
def test_load_drives_rest_and_gradio_in_the_same_run(built):
    settings, _ = built  # one process (the suite starts its one multi-worker server in test_api)
    result = bench.load_test(settings, clients=(1, 3), requests=12, seconds=60, workers=1, log=lambda *_: None)
    for path in ("rest", "gradio"):
        for level in ("1", "3"):
            assert result[path][level]["answers"] == 12 and result[path][level]["errors"] == 0, (path, level)
            assert 0 < result[path][level]["p50"] <= result[path][level]["p95"] <= result[path][level]["p99"]
    assert set(result["ratio"]) == {"1", "3"}
    assert result["ratio"]["3"] == round(result["rest"]["3"]["answers_per_s"] / result["gradio"]["3"]["answers_per_s"], 2)
    assert result["workers_ready_s"] > 0 and len(result["worker_peak_rss_mb"]) == 1
    assert result["worker_peak_rss_mb"][0] > 100 and result["ui_peak_rss_mb"] > 100
    text = bench.load_table(result)
    assert "REST/Gradio answers/s" in text and "3 clients" in text


def test_embedded_tokens_counts_what_the_model_reads(tmp_path):
    assert bench.embedded_tokens(["an example"]) == 4  # [CLS] an example [SEP]
    assert bench.embedded_tokens(["word " * 1000]) == 256  # the model's window
    texts = bench.our_embedded_texts(make_settings(tmp_path, corpus=CORPUS))
    assert len(texts) > corpus_size()[1]  # every passage, and every sentence of it
