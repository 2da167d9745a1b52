"""Shared fixtures: the real packaged model and real Chroma stores in temporary directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chatbot.config import PROJECT_ROOT, Settings

CORPUS = PROJECT_ROOT / "corpus"
DATA = Path(__file__).parent / "data"


def corpus_size() -> tuple[int, int]:
    """(documents, chunks) of the real corpus, split as the indexer splits it."""
    from chatbot.chunking import chunk_corpus
    from chatbot.corpus import load_corpus

    docs, settings = load_corpus(CORPUS), Settings()
    return len(docs), len(chunk_corpus(docs, settings.chunk_size, settings.chunk_overlap))


def make_settings(root: Path, corpus: Path | None = None, **kw) -> Settings:
    return Settings(
        corpus_dir=corpus or root / "corpus", index_dir=root / "index", data_dir=root / "data",
        database_url=f"sqlite:///{root / 'data' / 'accounts.sqlite3'}", **kw,
    )


@pytest.fixture(scope="session")
def embedder():
    from chatbot.embedding import MiniLMEmbeddings

    return MiniLMEmbeddings()


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    dest = tmp_path / "corpus"
    shutil.copytree(CORPUS, dest)
    return dest


@pytest.fixture(scope="session")
def built(tmp_path_factory, embedder):
    """The real corpus indexed once in a temporary directory: (settings, summary)."""
    from chatbot.index import build_index

    root = tmp_path_factory.mktemp("built")
    settings = make_settings(root, corpus=CORPUS)
    summary = build_index(settings, embedder)
    return settings, summary


@pytest.fixture(scope="session")
def postgres():
    """One throw-away PostgreSQL server for the run (Debian's packages; `make test` installs them)."""
    from tests.services import PostgresServer, postgres_bin

    if postgres_bin() is None:
        pytest.skip("PostgreSQL not installed: `make test` installs it")
    server = PostgresServer()
    yield server
    server.stop()


def served_app(tmp_path_factory, embedder, name: str, env: dict | None = None):
    """The real app (`python app.py`) over a fresh copy of the corpus, indexed and started."""
    from chatbot.index import build_index
    from tests.appserver import AppServer

    root = tmp_path_factory.mktemp(name)
    shutil.copytree(CORPUS, root / "corpus")
    build_index(make_settings(root), embedder)
    return AppServer(root, env).wait()


@pytest.fixture(scope="session")
def engine(built, embedder):
    from chatbot.answer import Engine

    settings, _ = built
    eng = Engine(settings, embedder)
    eng.ask("warm-up: what is TRK fusion cancer?")
    return eng


KNOWN_GAPS = {line.strip() for line in (Path(__file__).parent / "known_gaps.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}


def pytest_collection_modifyitems(items):
    """Probes of the old phrase rules that the learned understanding does not meet yet (issue 17):
    listed in tests/known_gaps.txt, run, and reported as xfail/xpass, so the list only shrinks."""
    for item in items:
        if item.nodeid in KNOWN_GAPS:
            item.add_marker(pytest.mark.xfail(reason="known gap of the learned understanding (tests/known_gaps.txt)",
                                              strict=False))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the item, so fixtures can tell a failed test (for screenshots)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def pytest_terminal_summary(terminalreporter):
    """The reliability suite's figures as one table at the end of the run."""
    from tests.report import RELIABILITY

    if not RELIABILITY:
        return
    terminalreporter.section("reliability and security summary")
    terminalreporter.write_line(f"{'check':<44}{'attempts':>10}{'leaks':>8}{'faults':>8}{'data lost':>11}  notes")
    for name, row in RELIABILITY.items():
        terminalreporter.write_line(
            f"{name:<44}{row.get('attempts', ''):>10}{row.get('leaks', ''):>8}{row.get('faults', ''):>8}"
            f"{row.get('lost', ''):>11}  {row.get('notes', '')}")
