"""Serving under uvicorn: `python -m chatbot serve [--port P] [--workers N]` (and `python app.py`).

With one worker, one process serves the API (/api/v1) and the chat UI (/) on P. With N > 1, that
process still serves both on P, and N more processes serve the API on the API port (P + 1 unless
set). Gradio's queue keeps each chat's events in the process that started it, so the UI must not be
spread over processes that a balancer picks at random; the API keeps nothing between requests
(sessions and rate counters are in the accounts database), so it spreads over any number of them.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import uvicorn
from fastapi import FastAPI

from chatbot.config import PROJECT_ROOT, Settings
from chatbot.index import IndexUnavailable
from chatbot.service import App, create_service


def ready_service(settings: Settings) -> App:
    """The engine with its model and index loaded (one warm-up question), before any caller comes."""
    service = create_service(settings)
    try:
        service.engine.ask("What is TRK fusion cancer?")
    except IndexUnavailable:
        pass  # served anyway: /api/v1/health and every answer say 503 until an index is built
    return service


def frozen(app: FastAPI) -> FastAPI:
    """Everything built so far (model session, Gradio blocks, Chroma client) lives as long as the
    process: kept out of the collector's full passes, whose pauses stall every request at once
    (measured: 32 clients' p95 600-690 ms without, 450-510 ms with)."""
    gc.collect()
    gc.freeze()
    return app


def ui_app() -> FastAPI:
    """The API and the chat UI (uvicorn factory)."""
    from chatbot.api import create_app

    return frozen(create_app(ready_service(Settings()), with_ui=True))


def api_app() -> FastAPI:
    """The API alone, for the worker processes (uvicorn factory; Gradio is not imported)."""
    from chatbot.api import create_app

    return frozen(create_app(ready_service(Settings()), with_ui=False))


def prepare_accounts(settings: Settings) -> None:
    """Create or upgrade the accounts schema once, before several processes open the database."""
    from chatbot.accounts import Accounts, StorageUnavailable

    try:
        Accounts(settings.db_url).engine.dispose()
    except StorageUnavailable:
        pass  # each process runs without accounts (public only) until the database is back


def serve(settings: Settings, workers: int = 1) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM stops every process started here)."""
    common = dict(host=settings.host, access_log=False, timeout_graceful_shutdown=2)
    if workers <= 1:
        uvicorn.run(ui_app(), port=settings.port, **common)
        return
    prepare_accounts(settings)
    # the cores are shared by the processes: one embedding thread each (and one model session each,
    # 150 MB less per process) unless TRK_EMBED_THREADS says otherwise
    os.environ.setdefault("TRK_EMBED_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    # and one BLAS thread each: a worker answers many questions at once in threads, and the small
    # matrix products of the reply-kind model then fought over a multi-threaded BLAS (measured with
    # `load`, 32 clients: 33 answers/s and p95 2.4 s with the default, 243 answers/s and 215 ms with one)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    # and few malloc arenas: glibc gives each of the many answering threads its own arena, whose
    # freed memory is not returned, so a process's peak memory grew with its concurrency
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    ui = subprocess.Popen([sys.executable, "-m", "chatbot", "serve", "--workers", "1",
                           "--host", settings.host, "--port", str(settings.port)], cwd=PROJECT_ROOT)
    try:
        uvicorn.run("chatbot.server:api_app", factory=True, workers=workers,
                    port=settings.api_port or settings.port + 1, **common)
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def main() -> None:
    settings = Settings()
    serve(settings, settings.workers)
