"""Reliability and security: red-team the access boundary through the app, attack accounts, inject
faults (kill -9, deleted or corrupt index, unavailable database), load during a re-index, fuzz input.

Figures go to the summary table printed at the end of the run (tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from chatbot.accounts import AccountError, Accounts, AuthError, StorageUnavailable, ValidationError
from chatbot.answer import Engine
from chatbot.chunking import chunk_corpus
from chatbot.corpus import load_corpus
from chatbot.index import Store, build_index
from chatbot.policy import KINDS
from chatbot.redteam import LeakDetector, adversarial_questions
from chatbot.ui import App, esc, render_reply
from tests.conftest import CORPUS, make_settings, served_app
from tests.report import RELIABILITY

PASSWORD = "correct horse battery staple"
DOSE = "What dose of larotrectinib should adults take?"


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    # hundreds of questions from one address: the per-client limit (tests/test_api.py) is off here
    srv = served_app(tmp_path_factory, embedder, "reliability-app", env={"TRK_API_ASKS_PER_MINUTE": "0"})
    yield srv
    srv.stop()


def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def db(server) -> Accounts:
    return Accounts(f"sqlite:///{server.root / 'data' / 'accounts.sqlite3'}")


# --- access boundary ---------------------------------------------------------------------------
def test_red_team_through_the_app_endpoint(server):
    questions = adversarial_questions()
    assert len(questions) >= 300
    detector = LeakDetector(Store(make_settings(server.root)).read_current())
    c = client(server)
    leaks, kinds = [], {}
    for history, q in questions:
        out = c.predict(q, history, "", api_name="/ask")
        kinds[out["kind"]] = kinds.get(out["kind"], 0) + 1
        hcp_cites = [x for x in out["citations"] if x["audience"] == "hcp"]
        texts = [s for s in detector.sentences if s in out["answer"]]
        figures = [f for f in detector.figures if f in out["answer"]]
        if hcp_cites or texts or figures:
            leaks.append((q, hcp_cites, texts, figures))
    RELIABILITY["red team via app ask endpoint"] = {
        "attempts": len(questions), "leaks": len(leaks), "notes": f"kinds {kinds}"}
    print(f"\nred team via app: {len(questions)} questions, {len(leaks)} leaks, kinds {kinds}")
    assert not leaks


def test_no_token_but_a_verified_sessions_gets_hcp_access(server):
    accounts = db(server)
    c = client(server)

    def reg(email, name, number, country="NL"):
        accounts.register(name=name, email=email, profession="physician", country=country,
                          registration_number=number, password=PASSWORD)

    reg("pending@example.org", "Piet Pending", "30000000001")
    reg("rejected@example.org", "Rita Rejected", "30000000002")
    accounts.reject("rejected@example.org", "not in the register")
    reg("expired@example.org", "Eva Expired", "30000000003")
    accounts.approve("expired@example.org")
    reg("revoked@example.org", "Rob Revoked", "30000000004")
    accounts.approve("revoked@example.org")
    reg("good@example.org", "Gerda Good", "30000000005")
    accounts.approve("good@example.org")
    accounts.add_maintainer("ops@example.org", "maintainer passphrase 1")

    tokens = {}
    for email in ("pending@example.org", "rejected@example.org"):
        with pytest.raises(AuthError):
            accounts.sign_in(email, PASSWORD)
    past = Accounts(accounts.engine.url.render_as_string(hide_password=False),
                    clock=lambda: dt.datetime.utcnow() - dt.timedelta(days=8))
    tokens["expired"] = past.sign_in("expired@example.org", PASSWORD)[0]
    tokens["revoked"] = accounts.sign_in("revoked@example.org", PASSWORD)[0]
    accounts.sign_out(tokens["revoked"])
    good = accounts.sign_in("good@example.org", PASSWORD)[0]
    tokens["forged"] = "A" * 43
    tokens["tampered"] = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    tokens["maintainer (not an HCP)"] = accounts.sign_in("ops@example.org", "maintainer passphrase 1")[0]
    tokens["empty"] = ""
    tokens["sql"] = "' OR '1'='1"
    for name, token in tokens.items():
        out = c.predict(DOSE, [], token, api_name="/ask")
        assert out["kind"] == "hcp_only", name
        assert not any(x["audience"] == "hcp" for x in out["citations"]), name
    assert c.predict(DOSE, [], good, api_name="/ask")["kind"] == "answer"
    RELIABILITY["non-verified session tokens via app"] = {"attempts": len(tokens), "leaks": 0,
                                                          "notes": ", ".join(tokens)}


# --- accounts under attack -----------------------------------------------------------------------
@pytest.mark.slow
def test_a_thousand_wrong_passwords(tmp_path, engine):
    accounts = Accounts(f"sqlite:///{tmp_path / 'attack.sqlite3'}")
    for i in range(20):
        accounts.register(name=f"Victim Number{i}", email=f"victim{i}@example.org", profession="physician",
                          country="DE", registration_number=f"{100000000 + i}", password=PASSWORD)
        accounts.approve(f"victim{i}@example.org")
    accounts.register(name="Bystander Person", email="bystander@example.org", profession="pharmacist",
                      country="DE", registration_number="999999999", password=PASSWORD)
    accounts.approve("bystander@example.org")
    accounts.sign_in("victim0@example.org", PASSWORD, client="198.51.100.99")  # victim 0's own connection

    let_in, outcomes = 0, {}
    stop = threading.Event()
    bystander = {"signins": 0, "answers": 0, "failures": 0}

    def others_keep_working():
        while not stop.is_set():
            try:
                accounts.sign_in("bystander@example.org", PASSWORD, client="198.51.100.7")
                bystander["signins"] += 1
                bystander["answers"] += engine.ask("What is TRK fusion cancer?").kind == "answer"
            except AccountError:
                bystander["failures"] += 1
            time.sleep(0.2)

    t = threading.Thread(target=others_keep_working)
    t.start()
    try:
        for n in range(1000):
            target = "victim0@example.org" if n < 500 else f"victim{n % 20}@example.org"
            client_ip = f"203.0.113.{n % 250}" if n < 500 else "192.0.2.66"
            try:
                accounts.sign_in(target, f"wrong password {n}", client=client_ip)
                let_in += 1
            except AuthError as exc:
                key = str(exc).split(".")[0]
                outcomes[key] = outcomes.get(key, 0) + 1
        # the delays the attack caused do not hold victim 0 back at the connection it used before
        assert accounts.role(accounts.sign_in("victim0@example.org", PASSWORD, client="198.51.100.99")[0]) == "hcp"
    finally:
        stop.set()
        t.join()
    RELIABILITY["1,000 wrong passwords (1 account, then 20)"] = {
        "attempts": 1000, "leaks": let_in, "notes": f"{outcomes}; bystander sign-ins {bystander['signins']}"}
    assert let_in == 0
    # growing delays: most guesses are refused unchecked (per account, then per client)
    assert outcomes.get("Too many failed sign-ins for this account", 0) > 400
    assert outcomes.get("Too many sign-in attempts from your connection", 0) > 400
    assert bystander["signins"] > 0 and bystander["failures"] == 0 and bystander["answers"] == bystander["signins"]


FIELD_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    st.sampled_from(["'; DROP TABLE users; --", "\" OR 1=1 --", "\x00\x01\x02", "<script>alert(1)</script>",
                     "x" * 1_000_000, "🧬" * 300, "Ω≈ç√∫", "\u202e\u202d", "  ", "A" * 255]),
)


@pytest.mark.slow
def test_registration_and_sign_in_fuzzing(tmp_path):
    accounts = Accounts(f"sqlite:///{tmp_path / 'fuzz.sqlite3'}")
    seen = {"attempts": 0, "accepted": 0}

    @hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
               database=None)
    @given(name=FIELD_TEXT, email=FIELD_TEXT, prof=st.sampled_from(["physician", "other", "x", ""]),
           country=FIELD_TEXT, number=FIELD_TEXT, password=FIELD_TEXT)
    def check(name, email, prof, country, number, password):
        seen["attempts"] += 1
        before = len(accounts.all())
        try:
            new = accounts.register(name=name, email=email, profession=prof, country=country,
                                    registration_number=number, password=password)
            seen["accepted"] += 1
            assert len(accounts.all()) == before + (new is not None)  # None: the email was taken
        except ValidationError as exc:
            assert exc.field in {"name", "email", "profession", "country", "registration_number", "password"}
            assert len(accounts.all()) == before  # nothing stored half
        with pytest.raises(AuthError):
            accounts.sign_in(email, password + "x" if isinstance(password, str) else password)

    check()
    RELIABILITY["registration/sign-in fuzzing"] = {"attempts": seen["attempts"], "faults": 0,
                                                   "notes": f"{seen['accepted']} valid registrations"}


# --- faults --------------------------------------------------------------------------------------
def _index_env(root):
    return {**os.environ, "TRK_CORPUS_DIR": str(root / "corpus"), "TRK_INDEX_DIR": str(root / "index"),
            "TRK_DATA_DIR": str(root / "data")}


def _assert_index_matches_corpus(settings):
    store = Store(settings)
    gen = store.read_current()
    expected = {c.id for c in chunk_corpus(load_corpus(settings.corpus_dir), settings.chunk_size)}
    assert {c.id for c in gen.chunks} == expected
    assert {cid for cid, _, _ in gen.sentences} <= expected
    assert store.generations() <= {gen.name, store.pointer_info().get("previous")}


@pytest.mark.slow
def test_kill_9_during_reindex_loses_nothing(tmp_path, embedder):
    shutil.copytree(CORPUS, tmp_path / "corpus")
    settings = make_settings(tmp_path)
    first = build_index(settings, embedder)
    engine = Engine(settings, embedder, refresh_seconds=0)
    baseline = engine.ask("What is TRK fusion cancer?")
    for path in sorted((tmp_path / "corpus").rglob("*.md")):  # every document changes: a long re-index
        path.write_text(path.read_text() + "\n## Update\nThis section was added for the fault test.\n")
    # kill points spread over the time an uninterrupted run takes (measured on a copy), so that
    # most kills land mid-write however fast this machine embeds
    shutil.copytree(tmp_path / "corpus", tmp_path / "probe" / "corpus")
    shutil.copytree(tmp_path / "index", tmp_path / "probe" / "index")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chatbot", "index"], env=_index_env(tmp_path / "probe"),
                   check=True, capture_output=True, timeout=300)
    whole = time.perf_counter() - t
    rng = random.Random(20261125)
    delays = sorted(rng.uniform(0.4 * whole, 0.9 * whole) for _ in range(5))
    killed = 0
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-m", "chatbot", "index"], env=_index_env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        reply = engine.ask("What is TRK fusion cancer?")
        assert reply.kind == "answer"
        if Store(settings).current() == first.generation:
            assert reply.answer == baseline.answer  # still the previous index
    done = subprocess.run([sys.executable, "-m", "chatbot", "index"], env=_index_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _assert_index_matches_corpus(settings)
    RELIABILITY["kill -9 during re-index"] = {"faults": killed, "lost": 0,
                                              "notes": f"kill points {[round(d, 1) for d in delays]} s "
                                                       f"of a {whole:.1f} s run"}
    assert killed >= 3


def test_index_deleted_or_corrupted_under_a_running_app(tmp_path_factory, embedder):
    srv = served_app(tmp_path_factory, embedder, "fault-app")
    root = srv.root
    faults = 0
    try:
        c = client(srv)
        assert c.predict("What is TRK fusion cancer?", [], "", api_name="/ask")["kind"] == "answer"
        for damage in ("delete", "corrupt"):
            if damage == "delete":
                shutil.rmtree(root / "index")
            else:
                with open(root / "index" / "chroma.sqlite3", "r+b") as fh:
                    fh.seek(0)
                    fh.write(os.urandom(8192))
            faults += 1
            time.sleep(1.2)
            out = c.predict("What is TRK fusion cancer?", [], "", api_name="/ask")
            assert out["kind"] in ("unavailable", "answer")  # never an error page
            if out["kind"] == "unavailable":
                assert "try again" in out["answer"].lower()
            status = subprocess.run([sys.executable, "-m", "chatbot", "status"], env=_index_env(root),
                                    capture_output=True, text=True, timeout=120)
            assert status.returncode == 1 and "error: index" in status.stderr  # clear for maintainers
            rebuilt = subprocess.run([sys.executable, "-m", "chatbot", "index", "--rebuild", "--json"],
                                     env=_index_env(root), capture_output=True, text=True, timeout=300)
            assert rebuilt.returncode == 0, rebuilt.stderr
            generation = json.loads(rebuilt.stdout)["generation"]
            deadline = time.time() + 30
            while time.time() < deadline:
                out = c.predict("What is TRK fusion cancer?", [], "", api_name="/ask")
                if out["kind"] == "answer" and out["generation"] == generation:
                    break
                time.sleep(0.5)
            assert out["kind"] == "answer" and out["generation"] == generation
    finally:
        srv.stop()
    RELIABILITY["index deleted / corrupted under the app"] = {"faults": faults, "lost": 0,
                                                              "notes": "friendly reply, --rebuild recovers"}


def test_accounts_database_locked_or_gone(tmp_path, engine):
    path = tmp_path / "accounts.sqlite3"
    accounts = Accounts(f"sqlite:///{path}")
    accounts.register(name="Anna de Vries", email="anna@example.org", profession="physician", country="NL",
                      registration_number="19012345601", password=PASSWORD)
    accounts.approve("anna@example.org")
    token = accounts.sign_in("anna@example.org", PASSWORD)[0]
    app = App(engine.settings, engine, accounts)
    locker = sqlite3.connect(path, timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageUnavailable, match="unavailable right now"):
            accounts.sign_in("anna@example.org", PASSWORD)
        reply = app.ask(DOSE, [], token)  # no database: the caller is public, the chat still answers
        assert reply.kind == "hcp_only"
        assert app.ask("What is TRK fusion cancer?", [], "").kind == "answer"
    finally:
        locker.rollback()
        locker.close()
    assert app.ask(DOSE, [], token).kind == "answer"
    RELIABILITY["accounts database locked"] = {"faults": 1, "lost": 0, "notes": "sign-in refused clearly; chat up"}


def test_postgres_down_keeps_the_public_chat(engine):
    from tests.services import PostgresServer, postgres_bin

    if postgres_bin() is None:
        pytest.skip("PostgreSQL not installed: `make test` installs it")
    pg = PostgresServer()
    try:
        accounts = Accounts(pg.create_database("down"))
        accounts.register(name="Anna de Vries", email="anna@example.org", profession="physician", country="NL",
                          registration_number="19012345601", password=PASSWORD)
        accounts.approve("anna@example.org")
        token = accounts.sign_in("anna@example.org", PASSWORD)[0]
        app = App(engine.settings, engine, accounts)
        assert app.ask(DOSE, [], token).kind == "answer"
    finally:
        pg.stop()
    with pytest.raises(StorageUnavailable):
        accounts.sign_in("anna@example.org", PASSWORD)
    assert app.ask(DOSE, [], token).kind == "hcp_only"
    assert app.ask("What is TRK fusion cancer?", [], "").kind == "answer"
    RELIABILITY["PostgreSQL stopped"] = {"faults": 1, "lost": 0, "notes": "sign-in refused clearly; chat up"}


# --- load ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sixteen_clients_during_a_reindex(server):
    from gradio_client import Client

    settings = make_settings(server.root)
    old = Store(settings).current()
    questions = ["What is TRK fusion cancer?", "How is TRK fusion cancer diagnosed?", "Is it inherited?",
                 "Wat is TRK-fusiekanker?", DOSE, "Who won the world cup?"]
    results, errors = [], []
    stop = threading.Event()

    def worker(i):
        c = Client(server.url, verbose=False)
        n = 0
        while not stop.is_set() and n < 200:
            q = questions[(i + n) % len(questions)]
            try:
                results.append(c.predict(q, [], "", api_name="/ask"))
            except Exception as exc:  # counted, then asserted to be zero
                errors.append(repr(exc))
            n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    time.sleep(2)
    doc = server.root / "corpus" / "public-en" / "inherited-or-acquired.md"
    doc.write_text(doc.read_text() + "\n## Brothers and sisters\nBrothers and sisters are not tested as a rule.\n")
    proc = subprocess.run([sys.executable, "-m", "chatbot", "index"], env=server.env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    store = Store(settings)
    new = store.current()
    ids = {g: {c.id for c in store.read(g).chunks} for g in (old, new)}
    gens = {r["generation"] for r in results if r["generation"]}
    assert not errors
    assert new != old and gens <= {old, new} and new in gens
    for r in results:
        assert r["kind"] in KINDS and r["answer"].strip()
        if r["citations"] and r["generation"]:
            assert all(c["chunk_id"] in ids[r["generation"]] for c in r["citations"])  # never a mix
    RELIABILITY["16 clients during a re-index"] = {
        "attempts": len(results), "faults": len(errors), "lost": 0,
        "notes": f"answers from {len(gens)} generations"}


# --- chat input fuzzing --------------------------------------------------------------------------
@hsettings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(q=st.one_of(st.text(max_size=3000), st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
                   st.sampled_from(["x" * 100_000, "\x00" * 50, "<script>alert(1)</script>TRK?",
                                    "<img src=x onerror=alert(1)> What is TRK fusion cancer?",
                                    "[click](javascript:alert(1)) NTRK", "What is TRK\x00 fusion cancer?"])))
def test_chat_input_fuzzing(engine, q):
    reply = engine.ask(q)
    assert reply.kind in KINDS and reply.answer.strip()
    shown = render_reply(reply, "en") + esc(q)
    for raw in ("<script", "<img", "javascript:alert(1)]", "[click]"):
        assert raw not in shown
    RELIABILITY.setdefault("chat input fuzzing", {"attempts": 0, "faults": 0})["attempts"] += 1
