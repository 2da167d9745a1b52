"""Benchmarks: figures printed, never asserted. `python -m chatbot bench` and `python -m chatbot load`."""

from __future__ import annotations

import functools
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from chatbot.answer import Engine
from chatbot.config import PROJECT_ROOT, Settings
from chatbot.corpus import load_corpus
from chatbot.evaluation import load_gold, percentile
from chatbot.index import Store, build_index
from chatbot.retrieval import HCP, PUBLIC

DEV = PROJECT_ROOT / "tests" / "data" / "dev.jsonl"
STAGES = ("embed_ms", "vector_ms", "bm25_ms", "fusion_ms", "compose_ms", "total_ms")


def _pct(values: list[float]) -> dict:
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
            "p99": round(percentile(values, 99), 2), "n": len(values)}


def embedded_tokens(texts: list[str]) -> int:
    """Tokens the model reads for these texts (its own tokenizer, cut at its 256-token window)."""
    from chatbot.embedding import model_tokenizer, packaged_model_path

    return sum(len(e.ids) for e in model_tokenizer(packaged_model_path()).encode_batch(texts))


def our_embedded_texts(settings: Settings) -> list[str]:
    """What a full build of ours embeds: every sentence with its title and section."""
    from chatbot.chunking import chunk_corpus
    from chatbot.index import embedded_texts

    chunks = chunk_corpus(load_corpus(settings.corpus_dir), settings.chunk_size, settings.chunk_overlap)
    return embedded_texts(chunks)


def _settings_in(settings: Settings, root: Path, **kw) -> Settings:
    return settings.model_copy(update={"index_dir": root / "index", "data_dir": root / "data", **kw})


def cold_start(settings: Settings) -> float:
    """Seconds from process start to the first answer printed (import, model load, index open)."""
    env = {**os.environ, "TRK_INDEX_DIR": str(settings.index_dir), "TRK_CORPUS_DIR": str(settings.corpus_dir),
           "TRK_DATA_DIR": str(settings.data_dir)}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chatbot", "ask", "What is TRK fusion cancer?"], env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - t


def stage_timings(engine: Engine, questions: list[dict], repeat: int) -> dict:
    for row in questions[:5]:
        engine.ask(row["question"], row.get("history") or [], row.get("role", "public"))
    per: dict[str, list[float]] = {k: [] for k in STAGES}
    for _ in range(repeat):
        for row in questions:
            reply = engine.ask(row["question"], row.get("history") or [], row.get("role", "public"))
            for k in STAGES:
                if k in reply.timings:
                    per[k].append(reply.timings[k])
    return {k: _pct(v) for k, v in per.items() if v}


def _facts_hit(text: str, groups: list[list[str]]) -> bool:
    low = text.lower()
    return all(any(a.lower() in low for a in g) for g in groups)


def our_retrieval_quality(engine: Engine, questions: list[dict], k: int = 4) -> tuple[float, int]:
    snap = engine.snapshot()
    hits_ok, leaks, n = 0, 0, 0
    for row in questions:
        if not row.get("must_include") or "answer" not in row["expect"]:
            continue
        role = HCP if row.get("role") == HCP else PUBLIC
        qv = engine.embedder.encode_query(row["question"])
        hits = engine.retriever.search(snap, row["question"], qv, role)[:k]
        n += 1
        hits_ok += _facts_hit(" ".join(h.chunk.text for h in hits), row["must_include"])
        leaks += role == PUBLIC and any(h.chunk.audience == HCP for h in hits)
    return hits_ok / max(1, n), leaks


class Baseline:
    """A plain LangChain RAG retriever as tutorials build it, timed the same way as ours."""

    def __init__(self, settings: Settings):
        from langchain_huggingface import HuggingFaceEmbeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from chatbot.embedding import packaged_model_path

        self.settings = settings
        self.emb = HuggingFaceEmbeddings(model_name=str(packaged_model_path()), model_kwargs={"device": "cpu"},
                                         encode_kwargs={"normalize_embeddings": True})
        self.splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        self.emb.embed_documents(["warm up"])  # torch's first call allocates; not part of a build
        self.store = None
        self.chunks: list = []

    def build(self, path: Path) -> float:
        """Seconds for a full build into ``path``: load and split the corpus, embed, write."""
        from langchain_chroma import Chroma
        from langchain_core.documents import Document

        t = time.perf_counter()
        docs = [Document(d.body, metadata={"doc_id": d.id, "audience": d.audience})
                for d in load_corpus(self.settings.corpus_dir)]
        self.chunks = self.splitter.split_documents(docs)
        self.store = Chroma.from_documents(self.chunks, self.emb, persist_directory=str(path),
                                           collection_name="baseline")
        return time.perf_counter() - t

    def measure(self, questions: list[dict], builds: list[float], repeat: int) -> dict:
        """Per-question time and retrieval quality of the last build; build figures from ``builds``
        (the tutorial pipeline has no incremental path: its re-index is a rebuild)."""
        store, chunks = self.store, self.chunks
        for row in questions[:5]:
            store.similarity_search(row["question"], k=4)
        times = []
        for _ in range(repeat):
            for row in questions:
                t = time.perf_counter()
                store.similarity_search(row["question"], k=4)
                times.append((time.perf_counter() - t) * 1000)
        ok, leaks, n = 0, 0, 0
        for row in questions:
            if not row.get("must_include") or "answer" not in row["expect"]:
                continue
            docs = store.similarity_search(row["question"], k=4)
            n += 1
            ok += _facts_hit(" ".join(d.page_content for d in docs), row["must_include"])
            leaks += row.get("role", "public") == PUBLIC and any(d.metadata.get("audience") == HCP for d in docs)
        build_s, tokens = _median(builds), embedded_tokens([c.page_content for c in chunks])
        return {"build_s": round(build_s, 2), "build_runs_s": [round(b, 2) for b in builds],
                "chunks": len(chunks), "chunks_per_s": round(len(chunks) / build_s, 1),
                "tokens_embedded": tokens, "tokens_per_s": round(tokens / build_s),
                "noop_reindex_s": round(build_s, 2), "question_ms": _pct(times),
                "key_fact_hit_rate": round(ok / max(1, n), 3), "public_hcp_leaks": leaks}


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def compare_builds(settings: Settings, embedder, baseline: Baseline | None, root: Path, runs: int = 3):
    """Full builds of ours and of the baseline, alternating, each into a fresh directory, after
    both pipelines and Chroma have run once (first-use costs belong to neither build: Chroma's first
    client in a process costs ~0.4 s, torch's and onnxruntime's first runs allocate).
    Returns (our summaries, the baseline's seconds)."""
    Store(_settings_in(settings, root / "warm"))
    embedder.encode(["warm up", "warm up again"])
    summaries, base = [], []
    for n in range(runs):
        summaries.append(build_index(_settings_in(settings, root / f"ours{n}"), embedder))
        if baseline is not None:
            base.append(baseline.build(root / f"base{n}"))
    return summaries, base


def pad_generation(store: Store, source_gen: str, target: int, seed: int = 7) -> str:
    """A copy of a generation padded with synthetic chunks (random text and vectors) to `target` chunks."""
    from chatbot.chunking import Chunk

    gen = store.read(source_gen)
    name = f"pad{target}"
    store.drop(name)
    chunk_cols = store.chunk_collections(name, create=True)
    sents_col = store.collection(store.sentence_collection_name(name), create=True)
    rng = np.random.default_rng(seed)
    vocab = sorted({w for c in gen.chunks for w in c.text.split() if w.isalpha()})
    real = [(c, gen.chunk_embeddings[i]) for i, c in enumerate(gen.chunks)]
    sent_rows = gen.sentence_rows()
    batch = 4000
    n_synth = max(0, target - len(real))
    for start in range(0, max(n_synth, len(real)), batch):
        part, embs, sents = [], [], []
        if start == 0:
            for c, e in real:
                part.append(c), embs.append(e)
                for j in sent_rows.get(c.id, []):
                    _, k, s = gen.sentences[j]
                    sents.append((c, k, s, gen.sentence_embeddings[j]))
        count = min(batch, n_synth - start)
        if count > 0:
            vecs = rng.normal(size=(count, gen.chunk_embeddings.shape[1])).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            for n in range(count):
                words = rng.choice(vocab, size=30)
                text = " ".join(words) + "."
                aud = PUBLIC if n % 2 else HCP
                c = Chunk(f"synthetic-{start + n}", f"synthetic-{(start + n) // 10}", "Synthetic", "Padding",
                          aud, "en", "[]", text, n % 10)
                part.append(c), embs.append(vecs[n])
                sents.append((c, 0, text, vecs[n]))
        if part:
            store.add_chunks(chunk_cols, part, embs)
            store.add_sentences(sents_col, sents)
    store.copy_knowledge(source_gen, name)  # the passage questions and the reply-kind model's data
    return name


class _FixedStore(Store):
    """A store whose pointer is pinned to one generation (for the growth measurements)."""

    def __init__(self, base: Store, gen: str):
        self.__dict__.update(base.__dict__)
        self._gen = gen

    def current(self) -> str | None:
        return self._gen


def run(settings: Settings, repeat: int = 5, sizes: tuple[int, ...] = (1_000, 10_000, 100_000),
        with_baseline: bool = True, builds: int = 3, log=print) -> dict:
    from chatbot.embedding import load_embedder

    questions = load_gold(DEV)
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    root = Path(tempfile.mkdtemp(prefix="trk-bench-"))
    try:
        t = time.perf_counter()
        embedder = load_embedder(settings)
        out["model_load_s"] = round(time.perf_counter() - t, 2)
        log("building the index ...")
        ours = _settings_in(settings, root / "serve")
        build_index(ours, embedder)  # the index the measurements below read
        log("cold start ...")
        out["cold_start_s"] = round(cold_start(ours), 2)
        engine = Engine(ours, embedder)
        log("per-stage timings ...")
        out["stages"] = stage_timings(engine, questions, repeat)
        hit, leaks = our_retrieval_quality(engine, questions)
        out["retrieval"] = {"key_fact_hit_rate": round(hit, 3), "public_hcp_leaks": leaks}
        # this process serves as the app does; measured before the baseline loads torch into it
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        base = Baseline(settings) if with_baseline else None
        log("full builds, ours and the baseline's in turn ...")
        summaries, base_builds = compare_builds(settings, embedder, base, root, runs=builds)
        seconds = [s.seconds for s in summaries]
        noop = build_index(ours, embedder)
        build_s = _median(seconds)
        tokens = embedded_tokens(our_embedded_texts(ours))
        out["index"] = {"build_s": round(build_s, 2), "build_runs_s": [round(x, 2) for x in seconds],
                        "chunks": summaries[0].chunks_total,
                        "chunks_per_s": round(summaries[0].chunks_total / build_s, 1),
                        "tokens_embedded": tokens, "tokens_per_s": round(tokens / build_s),
                        "noop_reindex_s": round(noop.seconds, 3)}
        if base is not None:
            log("baseline (plain LangChain RAG) ...")
            b = base.measure(questions, base_builds, repeat)
            out["baseline"] = b
            out["ratios"] = {
                "index_build": round(out["index"]["build_s"] / b["build_s"], 3),
                # the same work measured per token: we also embed every sentence, for sentence citations
                "index_build_per_token": round(b["tokens_per_s"] / out["index"]["tokens_per_s"], 3),
                "noop_reindex": round(out["index"]["noop_reindex_s"] / b["noop_reindex_s"], 4),
                "question_p50": round(out["stages"]["total_ms"]["p50"] / b["question_ms"]["p50"], 2),
            }
        out["growth"] = {}
        store = Store(ours)
        for size in sizes:
            log(f"growth: {size} chunks ...")
            gen = pad_generation(store, store.current(), size)
            t = time.perf_counter()
            padded = Engine(ours, embedder, store=_FixedStore(store, gen))
            padded.snapshot()
            load_s = time.perf_counter() - t
            timings = stage_timings(padded, questions, max(1, repeat // 2))
            out["growth"][str(size)] = {"load_s": round(load_s, 2), **{k: timings[k] for k in
                                                                       ("vector_ms", "bm25_ms", "total_ms")}}
            store.drop(gen)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def table(result: dict) -> str:
    lines = [f"machine: {result['machine']['cpus']} CPUs, Python {result['machine']['python']}",
             f"model load: {result['model_load_s']} s; cold start to first answer: {result['cold_start_s']} s",
             f"index: full build {result['index']['build_s']} s (median of {result['index']['build_runs_s']}; "
             f"{result['index']['chunks']} chunks, {result['index']['chunks_per_s']} chunks/s; "
             f"{result['index']['tokens_embedded']} tokens embedded, {result['index']['tokens_per_s']} tokens/s); "
             f"no-op re-index {result['index']['noop_reindex_s']} s",
             f"peak RSS (serving process): {result['peak_rss_mb']} MB", "", "stage            p50 ms   p95 ms"]
    for k, v in result["stages"].items():
        lines.append(f"{k:<15} {v['p50']:>7} {v['p95']:>8}")
    lines.append(f"retrieval key-fact hit rate (top 4): {result['retrieval']['key_fact_hit_rate']}, "
                 f"public HCP leaks: {result['retrieval']['public_hcp_leaks']}")
    if "baseline" in result:
        b = result["baseline"]
        lines += ["", "baseline (HuggingFaceEmbeddings + Chroma.from_documents + similarity_search k=4):",
                  f"  build {b['build_s']} s (median of {b['build_runs_s']}; {b['chunks']} chunks, "
                  f"{b['tokens_embedded']} tokens embedded, "
                  f"{b['tokens_per_s']} tokens/s), re-index {b['noop_reindex_s']} s, "
                  f"question p50 {b['question_ms']['p50']} ms / p95 {b['question_ms']['p95']} ms",
                  f"  key-fact hit rate {b['key_fact_hit_rate']}, public HCP leaks {b['public_hcp_leaks']}",
                  f"  ours/baseline: build {result['ratios']['index_build']} (per token embedded "
                  f"{result['ratios']['index_build_per_token']}), no-op re-index "
                  f"{result['ratios']['noop_reindex']}, whole ask vs retrieval only {result['ratios']['question_p50']}"]
    for size, g in result.get("growth", {}).items():
        lines.append(f"growth {size:>7} chunks: ask p50 {g['total_ms']['p50']} ms p95 {g['total_ms']['p95']} ms "
                     f"(vector {g['vector_ms']['p50']}, bm25 {g['bm25_ms']['p50']}), load {g['load_s']} s")
    return "\n".join(lines)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, and SIGKILL if it has not exited after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float, name: str) -> None:
    """Return once `url` answers; raise if `proc` exits first or `timeout` seconds pass."""
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited before answering on {url}") from None
            if time.time() > deadline:
                raise TimeoutError(f"{name} did not start on {url}") from None
            time.sleep(0.3)


def _vm_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _health_pid(api_url: str) -> int | None:
    """The pid of the process that answered /api/v1/health on a new connection, None if none did."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url}api/v1/health", timeout=2) as resp:
            return json.load(resp)["pid"]
    except (OSError, ValueError, KeyError):
        return None


class ServeProcess:
    """`python -m chatbot serve --workers N` on free loopback ports: the UI process on `ui_url`, the
    API workers on `api_url` (the same URL with one worker)."""

    def __init__(self, settings: Settings, workers: int, env: dict[str, str] | None = None, log_path=None):
        port = free_port()
        api_port = free_port() if workers > 1 else port
        self.workers = workers
        self.ui_url = f"http://127.0.0.1:{port}/"
        self.api_url = f"http://127.0.0.1:{api_port}/"
        env = {**os.environ, "TRK_HOST": "127.0.0.1", "TRK_PORT": str(port), "TRK_API_PORT": str(api_port),
               "TRK_WORKERS": str(workers), "TRK_INDEX_DIR": str(settings.index_dir),
               "TRK_CORPUS_DIR": str(settings.corpus_dir), "TRK_DATA_DIR": str(settings.data_dir),
               **({"TRK_DATABASE_URL": settings.database_url} if settings.database_url else {}), **(env or {})}
        self.log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "chatbot", "serve"], env=env, cwd=PROJECT_ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.worker_pids: set[int] = set()

    def wait_for_workers(self, timeout: float = 180) -> float:
        """Seconds from the start until every API worker has answered (each poll is a new connection,
        which the kernel hands to any worker that is listening, that is: ready)."""
        deadline = time.time() + timeout
        while len(self.worker_pids) < self.workers:
            if self.proc.poll() is not None:
                raise RuntimeError("`chatbot serve` exited before its workers were ready")
            if time.time() > deadline:
                raise TimeoutError(f"{len(self.worker_pids)} of {self.workers} workers ready after {timeout} s")
            pid = _health_pid(self.api_url)
            if pid is None:
                time.sleep(0.05)
            else:
                self.worker_pids.add(pid)
        return round(time.perf_counter() - self.started, 2)

    def wait_for_ui(self, timeout: float = 180) -> None:
        wait_for_http(self.ui_url, self.proc, timeout, "the chat UI")

    def ui_pid(self) -> int | None:
        return _health_pid(self.ui_url)

    def stop(self) -> None:
        """SIGTERM to `serve`, which stops its workers and its UI process."""
        stop_process(self.proc, 40)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def load_test(settings: Settings, clients: tuple[int, ...] = (1, 8, 32), requests: int = 500,
              seconds: float = 60.0, workers: int = 2, log=print) -> dict:
    """Start `chatbot serve --workers N`, then at each level drive the REST API (the workers) and the
    Gradio `ask` endpoint (the UI process), in turn, with concurrent clients on loopback.

    Each level of each path stops after `requests` answers or `seconds`, whichever comes first. The
    rate limit stays on, set out of reach, so its shared counter is part of what is measured.
    """
    questions = [r for r in load_gold(DEV) if r["question"]]
    server = ServeProcess(settings, workers, env={"TRK_API_ASKS_PER_MINUTE": str(10**9)})
    out: dict = {"workers": workers, "rest": {}, "gradio": {}, "ratio": {}}
    try:
        out["load_average_at_start"] = round(os.getloadavg()[0], 1)  # other work on the machine
        out["workers_ready_s"] = server.wait_for_workers()
        out["worker_start_cpu_s"] = sorted(_cpu_s(pid) for pid in server.worker_pids)
        server.wait_for_ui()
        rest, gradio = RestPath(server.api_url), GradioPath(server.ui_url)
        for path in (rest, gradio):
            path.ask(path.connect(), {"question": "warm-up about TRK fusion cancer"})
        for n in clients:
            log(f"load: {n} concurrent clients, REST then Gradio ...")
            out["rest"][str(n)] = _drive(rest, questions, n, requests, seconds)
            out["gradio"][str(n)] = _drive(gradio, questions, n, requests, seconds)
            out["ratio"][str(n)] = round(out["rest"][str(n)]["answers_per_s"]
                                         / max(out["gradio"][str(n)]["answers_per_s"], 0.1), 2)
        out["worker_peak_rss_mb"] = sorted(_vm_mb(pid) for pid in server.worker_pids)
        ui_pid = server.ui_pid()
        out["ui_peak_rss_mb"] = _vm_mb(ui_pid) if ui_pid else None
    finally:
        server.stop()
    return out


class RestPath:
    """POST /api/v1/ask over one keep-alive connection per client (httpx)."""

    name = "REST"

    def __init__(self, url: str):
        self.url = url

    def connect(self):
        import httpx

        return httpx.Client(base_url=self.url, timeout=120)

    def ask(self, client, row: dict) -> bool:
        """A reply, or the 400/413 that a blank or too long question gets by design (the dev set has a
        blank one; the Gradio path answers it with the kind "invalid")."""
        resp = client.post("api/v1/ask", json={"question": row["question"], "history": row.get("history") or []})
        if resp.status_code in (400, 413):
            return resp.json().get("error") in ("empty_question", "question_too_long")
        return resp.status_code == 200 and bool(resp.json().get("kind"))


class GradioPath:
    """The Gradio app's `ask` endpoint through gradio_client (join the queue, then stream the result)."""

    name = "Gradio"

    def __init__(self, url: str):
        self.url = url

    def connect(self):
        return _client(self.url)

    def ask(self, client, row: dict) -> bool:
        reply = client.predict(row["question"], row.get("history") or [], "", api_name="/ask")
        return isinstance(reply, dict) and bool(reply.get("kind"))


def _client(url: str):
    """A gradio client whose HTTP calls share one SSL context.

    gradio_client opens a fresh httpx client for every call, and each builds an SSL context from the
    CA bundle (~10 ms of CPU, measured with py-spy: a fifth of the load generator's time), even for
    plain http on loopback. The load generator shares the server's two cores, so that cost would be
    counted against the server.
    """
    from gradio_client import Client

    return Client(url, verbose=False, ssl_verify=_ssl_context())


@functools.cache
def _ssl_context():
    import ssl

    return ssl.create_default_context()


def _drive(path, questions: list[dict], n: int, requests: int, seconds: float) -> dict:
    """n client threads share a budget of `requests` answers and a deadline of `seconds`."""
    latencies: list[float] = []
    errors = [0]
    issued = [0]
    lock = threading.Lock()

    def worker(client, seed: int) -> None:
        rnd = random.Random(seed)
        start.wait()
        while time.time() < stop_at:
            with lock:
                if issued[0] >= requests:
                    return
                issued[0] += 1
            row = rnd.choice(questions)
            t = time.perf_counter()
            try:
                ok = path.ask(client, row)
            except Exception:
                ok = False
            with lock:
                if ok:
                    latencies.append((time.perf_counter() - t) * 1000)
                else:
                    errors[0] += 1

    # every client connects (a gradio client fetches the app's config) before the clock starts
    with ThreadPoolExecutor(min(n, 8)) as pool:
        clients = list(pool.map(lambda _: path.connect(), range(n)))
    start = threading.Event()
    threads = [threading.Thread(target=worker, args=(c, i)) for i, c in enumerate(clients)]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    stop_at = time.time() + seconds
    start.set()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    for client in clients:  # idle gradio clients keep a heartbeat stream open: not carried into the next level
        client.close()
    return {"answers": len(latencies), "answers_per_s": round(len(latencies) / wall, 1), **_pct(latencies),
            "errors": errors[0]}


def load_table(result: dict) -> str:
    lines = [f"{result['workers']} API worker process(es) ready {result['workers_ready_s']} s after the start "
             f"(load average {result['load_average_at_start']} then; CPU per worker until ready "
             f"{', '.join(str(c) for c in result['worker_start_cpu_s'])} s); peak RSS per worker "
             f"{', '.join(f'{m:.0f}' for m in result['worker_peak_rss_mb'])} MB, UI process {result['ui_peak_rss_mb']} MB",
             "path    clients  answers  answers/s   p50 ms   p95 ms   p99 ms  errors"]
    for name, key in (("REST", "rest"), ("Gradio", "gradio")):
        for k, v in result[key].items():
            lines.append(f"{name:<7}{k:>8} {v['answers']:>8} {v['answers_per_s']:>10} {v['p50']:>8} {v['p95']:>8} "
                         f"{v['p99']:>8} {v['errors']:>7}")
    lines.append("REST/Gradio answers/s: " + ", ".join(f"{k} clients {v}x" for k, v in result["ratio"].items()))
    return "\n".join(lines)
