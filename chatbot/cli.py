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
    from chatbot.embedding import load_embedder

    return load_embedder(settings)


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
            from chatbot.knowledge import load_knowledge
            from chatbot.policy import load_glossary

            docs = load_corpus(settings.corpus_dir)
            knowledge = load_knowledge(settings.corpus_dir, docs)
            load_glossary(settings.corpus_dir)
            from chatbot.cases import load_case_terms

            load_case_terms(settings.corpus_dir)
            typer.echo(f"corpus OK: {len(docs)} documents, {len(knowledge.questions)} passage questions and "
                       f"{len(knowledge.utterances)} labelled messages in {settings.corpus_dir}")
            return
        if if_missing and Store(settings).current():
            typer.echo("index present; nothing to do")
            return
        summary = _run_index(settings, rebuild)
    except (CorpusError, IndexUnavailable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the previous index is still in place", 130)
    _audit_reindex(settings, summary)
    typer.echo(json.dumps(summary.as_dict()) if as_json else summary.line())


def _audit_reindex(settings: Settings, summary) -> None:
    """Re-index runs belong in the audit log; a missing accounts database must not fail the run."""
    from chatbot.accounts import AccountError, Accounts

    try:
        Accounts(settings.db_url).record("reindex", "cli", summary=summary.line())
    except AccountError as exc:
        typer.echo(f"warning: re-index not written to the audit log ({exc})", err=True)


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
def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Index status for maintainers: documents and chunks by audience/language, last re-index, errors."""
    from chatbot.index import index_status

    st = index_status(Settings())
    if as_json:
        typer.echo(json.dumps(st))
    else:
        typer.echo(f"generation {st['generation']}, last re-index {st['updated']}")
        for key in sorted(st["chunks"]):
            typer.echo(f"  {key}: {st['documents'].get(key, 0)} documents, {st['chunks'][key]} chunks")
        for err in st["errors"]:
            typer.echo(f"error: {err}", err=True)
    if st["errors"]:
        raise typer.Exit(1)


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
    file: Path | None = typer.Argument(None, exists=True, dir_okay=False, help="Gold JSONL file."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every failing case."),
    cv: bool = typer.Option(False, "--cv", help="Reply kinds of the labelled messages on held-out families."),
    folds: int = typer.Option(5, "--folds", help="With --cv: how many folds."),
    limit: int | None = typer.Option(None, "--limit", help="With --cv: at most this many messages per fold."),
) -> None:
    """Score a gold question file (behaviour, key facts, leaks, latency), or with --cv the labelled
    messages of corpus/utterances on held-out families (grouped 5-fold)."""
    from chatbot.evaluation import EvalFileError, evaluate, load_gold

    settings = Settings()
    if cv:
        _eval_cv(settings, as_json, verbose, folds, limit)
        return
    if file is None:
        fail("give a gold file, or --cv")
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


def _eval_cv(settings: Settings, as_json: bool, verbose: bool, folds: int = 5, limit: int | None = None) -> None:
    from chatbot.evaluation import cross_validate

    try:
        result = cross_validate(_engine(settings), folds, limit)
    except IndexUnavailable as exc:
        fail(str(exc))
    table = result.table()
    if as_json:
        typer.echo(json.dumps(table))
        return
    typer.echo(f"{table['messages']} replies to {table['families']} held-out families (grouped {folds}-fold)")
    typer.echo(f"{'kind':<15}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>7}")
    for kind, row in table["per_kind"].items():
        typer.echo(f"{kind:<15}{row['precision']:>10}{row['recall']:>8}{row['f1']:>8}{row['n']:>7}")
    for key in ("macro_f1", "adverse_event_recall", "hcp_refusal_precision", "answerable_public_answered"):
        typer.echo(f"{key}: {table[key]}")
    typer.echo(f"correct by language: {table['by_language']}")
    typer.echo("confusion (rows: expected, columns: given): " + " ".join(k[:8] for k in table["kinds"]))
    for kind, row in zip(table["kinds"], table["confusion"]):
        typer.echo(f"  {kind:<15}" + "".join(f"{n:>9}" for n in row))
    if verbose:
        for r in result.rows:
            if r["kind"] != r["expected"]:
                typer.echo(f"  {r['family']}: {r['role']} expected {r['expected']}, got {r['kind']}: {r['text']}")


@app.command()
def bench(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    repeat: int = typer.Option(5, "--repeat", help="Times the dev set is asked per measurement."),
    sizes: str = typer.Option("1000,10000,100000", "--sizes", help="Padded corpus sizes for growth ('' to skip)."),
    no_baseline: bool = typer.Option(False, "--no-baseline", help="Skip the plain LangChain baseline."),
    builds: int = typer.Option(3, "--builds", min=1, help="Full builds of each pipeline, in turn (the median is reported)."),
) -> None:
    """Measure cold start, per-stage latency, index build, memory, the baseline and growth."""
    from chatbot import bench as b

    sizes_t = tuple(int(x) for x in sizes.split(",") if x.strip())
    result = b.run(Settings(), repeat=repeat, sizes=sizes_t, with_baseline=not no_baseline, builds=builds,
                   log=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps(result, indent=2) if as_json else b.table(result))


@app.command()
def load(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    clients: str = typer.Option("1,8,32", "--clients", help="Concurrency levels."),
    requests: int = typer.Option(500, "--requests", help="Answers per level at most."),
    seconds: float = typer.Option(60.0, "--seconds", help="Seconds per level at most."),
    workers: int = typer.Option(2, "--workers", min=1, help="API worker processes to start."),
) -> None:
    """Start `serve --workers N` and drive the REST API and the Gradio `ask` endpoint in turn with
    concurrent clients at each level (loopback only); prints both and their throughput ratio."""
    from chatbot import bench as b

    settings = Settings()
    result = b.load_test(settings, tuple(int(x) for x in clients.split(",")), requests, seconds, workers,
                         log=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps(result, indent=2) if as_json else b.load_table(result))


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default TRK_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port of the chat UI and the API (default TRK_PORT, 7860)."),
    workers: int | None = typer.Option(None, "--workers", min=1,
                                       help="API worker processes; above 1 they listen on --api-port."),
    api_port: int | None = typer.Option(None, "--api-port", help="Port of the API workers (default port + 1)."),
) -> None:
    """Serve the chat UI and the REST API (/api/v1) under uvicorn, the API over N worker processes."""
    from chatbot.server import serve as run

    given = {"host": host, "port": port, "workers": workers, "api_port": api_port}
    settings = Settings().model_copy(update={k: v for k, v in given.items() if v is not None})
    run(settings, settings.workers)


hcp_app = typer.Typer(help="Healthcare-professional accounts: verification and erasure.", no_args_is_help=True)
maintainer_app = typer.Typer(help="Maintainer accounts.", no_args_is_help=True)
app.add_typer(hcp_app, name="hcp")
app.add_typer(maintainer_app, name="maintainer")


def _accounts():
    from chatbot.accounts import Accounts

    return Accounts(Settings().db_url)


def _account_errors(fn):
    import functools

    from chatbot.accounts import AccountError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (AccountError, OSError) as exc:
            fail(str(exc))

    return wrapper


@hcp_app.command("import-register")
@_account_errors
def hcp_import_register(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Register extract CSV.")):
    """Import a register extract (CSV columns: country, registration_number, surname[, profession])."""
    rows, verified = _accounts().import_register(file)
    typer.echo(f"{rows} register rows imported; {verified} pending accounts verified")


@hcp_app.command("list")
@_account_errors
def hcp_list(pending: bool = typer.Option(False, "--pending", help="Only accounts awaiting verification.")):
    """List HCP registrations."""
    accounts = _accounts()
    rows = accounts.pending() if pending else accounts.all()
    for a in rows:
        typer.echo(f"{a.email}	{a.name}	{a.profession}	{a.country}	{a.status}" + ("	maintainer" if a.is_maintainer else ""))
    if not rows:
        typer.echo("no accounts" + (" awaiting verification" if pending else ""))


@hcp_app.command("approve")
@_account_errors
def hcp_approve(email: str = typer.Argument(..., help="The account's email.")):
    """Verify a pending HCP registration."""
    typer.echo(f"{_accounts().approve(email, actor='cli').email} verified")


@hcp_app.command("reject")
@_account_errors
def hcp_reject(email: str = typer.Argument(..., help="The account's email."),
               reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log).")):
    """Reject an HCP registration."""
    typer.echo(f"{_accounts().reject(email, reason, actor='cli').email} rejected")


@hcp_app.command("delete")
@_account_errors
def hcp_delete(email: str = typer.Argument(..., help="The account's email."),
               yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")):
    """Erase an account and its personal data (GDPR); the audit trail keeps an anonymous id."""
    if not yes:
        typer.confirm(f"Erase {email} and its personal data?", abort=True)
    _accounts().delete(email, actor="cli")
    typer.echo(f"{email} erased")


@maintainer_app.command("add")
@_account_errors
def maintainer_add(email: str = typer.Argument(..., help="The maintainer's email."),
                   password: str | None = typer.Option(None, "--password", envvar="TRK_MAINTAINER_PASSWORD",
                                                          help="Password for a new account (prompted if omitted).")):
    """Make an account a maintainer (creates a non-HCP account if there is none)."""
    accounts = _accounts()
    if not accounts.exists(email) and password is None:
        password = typer.prompt("Password (at least 15 characters)", hide_input=True, confirmation_prompt=True)
    typer.echo(f"{accounts.add_maintainer(email, password).email} is a maintainer")


@hcp_app.command("unlock")
@_account_errors
def hcp_unlock(email: str = typer.Argument(..., help="The account's email.")):
    """Lift the lock after repeated failed sign-ins (needed after 100 in a row)."""
    _accounts().unlock(email, actor="cli")
    typer.echo(f"{email} unlocked")


@hcp_app.command("locked")
@_account_errors
def hcp_locked():
    """Accounts whose sign-in is delayed or locked after failed attempts."""
    rows = _accounts().locked()
    for account, failures in rows:
        typer.echo(f"{account.email}\t{failures} failed sign-ins in a row")
    if not rows:
        typer.echo("no locked accounts")


cases_app = typer.Typer(help="Side-effect cases (pharmacovigilance): list, export, mark.", no_args_is_help=True)
app.add_typer(cases_app, name="cases")


def _cases():
    from chatbot.cases import Cases

    return Cases(_accounts())


def _fallback_warning() -> None:
    path = Settings().data_dir / "adverse_events.jsonl"
    if path.exists() and path.read_text(encoding="utf-8").strip():
        lines = path.read_text(encoding="utf-8").count("\n")
        typer.echo(f"warning: {path} holds {lines} report line(s) not in the database: "
                   "run `python -m chatbot cases import-fallback`", err=True)


@cases_app.command("list")
@_account_errors
def cases_list(as_json: bool = typer.Option(False, "--json", help="Print the cases as JSON."),
               status: str | None = typer.Option(None, "--status", help="Only cases with this status (new, forwarded, closed).")):
    """The cases, open ones first, with their age in days and a flag when not forwarded after 10 days."""
    rows = _cases().list(actor="cli", status=status)
    _fallback_warning()
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        missing = [k.replace("_", " ") for k in ("patient", "suspect_medicine", "suspected_reaction") if not r[k]]
        typer.echo(f"#{r['id']}\t{r['received_at']}\t{r['age_days']} d\t{r['status']}"
                   + (f"\t⚑ {r['flag']}" if r["flag"] else "")
                   + f"\t{r['language']}/{r['audience']}\tmedicines: {', '.join(r['medicines']) or '-'}"
                   + f"\treactions: {', '.join(r['reactions']) or '-'}"
                   + (f"\tmissing: {', '.join(missing)}" if missing else "")
                   + ("\tcontact left" if r["contact"] else "") + f"\t{r['message'][:120]}")
    if not rows:
        typer.echo("no cases" + (f" with status {status}" if status else ""))


@cases_app.command("export")
@_account_errors
def cases_export(fmt: str = typer.Option("csv", "--format", help="csv or json."),
                 output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout.")):
    """Every case with its contact details, for the safety team (CSV cells are spreadsheet-safe)."""
    text = _cases().export(fmt, actor="cli")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"cases written to {output}")


@cases_app.command("mark")
@_account_errors
def cases_mark(case_id: str = typer.Argument(..., metavar="ID", help="The case number (cases list shows it)."),
               status: str = typer.Argument(..., metavar="STATUS", help="forwarded or closed.")):
    """Move a case on: new -> forwarded -> closed (a case that is not valid may be closed from new)."""
    row = _cases().mark(case_id, status, actor="cli")
    typer.echo(f"case {row['id']} is {row['status']}")


@cases_app.command("import-fallback")
@_account_errors
def cases_import_fallback():
    """Bring the reports kept in data/adverse_events.jsonl (while the database was away) into the cases."""
    path = Settings().data_dir / "adverse_events.jsonl"
    if not path.exists():
        typer.echo(f"nothing to import ({path} does not exist)")
        return
    added = _cases().import_fallback(path, actor="cli")
    typer.echo(f"{added} case(s) imported from {path}; the file is kept beside it as .imported-<time>")


@app.command()
@_account_errors
def audit(since: str | None = typer.Option(None, "--since", help="YYYY-MM-DD: only entries from then on.")):
    """Print the audit log."""
    import datetime as dt

    start = None
    if since:
        try:
            start = dt.datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since: '{since}' is not a date (YYYY-MM-DD)")
    for e in _accounts().audit(start):
        typer.echo(f"{e.at.isoformat(timespec='seconds')}\t{e.event}\tactor={e.actor}\tsubject={e.subject}\t{e.detail}")


@app.command()
def review(days: int = typer.Option(30, "--days", help="How many days back."),
           as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON.")) -> None:
    """Questions that got "I don't know", "out of scope" or a thumbs-down, most frequent first, with the
    reply kind and the nearest passage: what to fix with a passage question or a labelled message."""
    from chatbot.accounts import AccountError

    try:
        rows = _accounts().review(days)
    except AccountError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    typer.echo(f"{len(rows)} questions to review from the last {days} days")
    for r in rows:
        near = f"  (nearest: {r['nearest']})" if r["nearest"] else ""
        typer.echo(f"{r['times'] + r['thumbs_down']:>4}x [{r['kind']}] {r['question']}{near}")


def main() -> None:
    app()
