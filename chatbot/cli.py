"""Command line: thin wrappers that parse arguments and call one library function each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from chatbot.config import Settings
from chatbot.corpus import CorpusError, load_corpus
from chatbot.index import IndexUnavailable

app = typer.Typer(help="TRK Assistant: cited answers about TRK fusion cancer.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _embedder(settings: Settings):
    from chatbot.embedding import MiniLMEmbeddings

    return MiniLMEmbeddings(settings.model_path, settings.embed_batch_size, settings.torch_threads)


def _engine(settings: Settings):
    from chatbot.answer import Engine
    from chatbot.llm import from_settings

    return Engine(settings, _embedder(settings), llm=from_settings(settings))


@app.command()
def index(
    rebuild: bool = typer.Option(False, "--rebuild", help="Build from scratch instead of incrementally."),
    check: bool = typer.Option(False, "--check", help="Validate the corpus only; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if an index exists."),
) -> None:
    """Bring the index in line with corpus/ (embeds only new or changed text)."""
    from chatbot.index import Store

    settings = Settings()
    try:
        if check:
            docs = load_corpus(settings.corpus_dir)
            typer.echo(f"corpus OK: {len(docs)} documents in {settings.corpus_dir}")
            return
        if if_missing and Store(settings).current():
            typer.echo("index present; nothing to do")
            return
        summary = _run_index(settings, rebuild)
    except (CorpusError, IndexUnavailable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the previous index is still in place", 130)
    typer.echo(json.dumps(summary.as_dict()) if as_json else summary.line())


def _run_index(settings: Settings, rebuild: bool):
    from chatbot.index import build_index

    def embedder():
        return _embedder(settings)

    if not sys.stderr.isatty():
        return build_index(settings, embedder, rebuild=rebuild)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("indexing", total=None)

        def report(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=message)

        return build_index(settings, embedder, rebuild=rebuild, progress=report)


@app.command()
def ask(
    question: str | None = typer.Argument(None, help="The question (omit with --jsonl)."),
    hcp: bool = typer.Option(False, "--hcp", help="Answer as for a verified HCP (trusted local use)."),
    as_json: bool = typer.Option(False, "--json", help="Print the reply as JSON."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Batch: read JSON lines on stdin, write one per line."),
    history: list[str] = typer.Option([], "--history", help="An earlier question (repeatable)."),
) -> None:
    """Answer one question, or a batch of JSON lines from stdin with --jsonl."""
    settings = Settings()
    try:
        engine = _engine(settings)
        if jsonl:
            for n, line in enumerate(sys.stdin, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    fail(f"stdin line {n}: not valid JSON ({exc.msg})")
                reply = engine.ask(str(row.get("question", "")), row.get("history") or [],
                                   "hcp" if row.get("role") == "hcp" else "public")
                out = {"id": row.get("id"), **reply.to_json()}
                typer.echo(json.dumps(out, ensure_ascii=False))
            return
        if question is None:
            fail("give a question, or --jsonl to read questions from stdin")
        reply = engine.ask(question, history, "hcp" if hcp else "public")
    except IndexUnavailable as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(reply.to_json(), ensure_ascii=False, indent=2))
        return
    typer.echo(f"[{reply.kind}] {reply.answer}")
    for c in reply.citations:
        src = "; ".join(s["title"] for s in c.sources)
        typer.echo(f"  [{c.n}] {c.title} > {c.heading} ({c.audience}) - {src}")


@app.command("eval")
def eval_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Gold JSONL file."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every failing case."),
) -> None:
    """Score a gold question file: behaviour, key facts, leaks, latency."""
    from chatbot.evaluation import EvalFileError, evaluate, load_gold

    settings = Settings()
    try:
        gold = load_gold(file)
        engine = _engine(settings)
        engine.ask("warm-up question about TRK fusion cancer")
        report = evaluate(engine, gold)
    except (EvalFileError, IndexUnavailable) as exc:
        fail(str(exc))
    summary = report.summary()
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            typer.echo(f"{key:>20}: {value}")
    if verbose:
        for c in report.cases:
            if not c.ok_kind or c.leak or c.facts_hit < c.facts_total or c.uncited:
                typer.echo(f"  {c.id}: kind={c.kind} facts={c.facts_hit}/{c.facts_total} leak={c.leak!r}")
    if report.leaks:
        raise typer.Exit(2)


def main() -> None:
    app()
