"""The REST API (/api/v1): its contract in process over the real engine, index and accounts database,
and `chatbot serve --workers 2` as real uvicorn processes (sessions and rate limits shared)."""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from chatbot.accounts import Accounts, utcnow
from chatbot.answer import Engine
from chatbot.api import MAX_BODY_BYTES, create_app
from chatbot.bench import ServeProcess
from chatbot.service import App
from tests.conftest import make_settings

PASSWORD = "correct horse battery staple"
DOSE = "What dose of larotrectinib should adults take?"


def register_hcp(accounts: Accounts, email: str = "anna@example.org") -> None:
    accounts.register(name="Anna de Vries", email=email, profession="physician", country="NL",
                      registration_number="19012345601", password=PASSWORD)
    accounts.approve(email)


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-accounts")
    accounts = Accounts(f"sqlite:///{root / 'accounts.sqlite3'}")
    register_hcp(accounts)
    yield accounts
    accounts.engine.dispose()


@pytest.fixture(scope="module")
def client(engine, accounts):
    """The API over the session's engine (real model, real Chroma index) and a real accounts database."""
    settings = engine.settings.model_copy(update={"sign_ins_per_minute": 3, "api_asks_per_minute": 1000})
    with TestClient(create_app(App(settings, engine, accounts), with_ui=False)) as c:
        yield c


def ask(client, question: str, token: str | None = None, **body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/api/v1/ask", json={"question": question, **body}, headers=headers)


def hcp_sentences(engine) -> list[str]:
    """The HCP passage sentences that answer the dose question for a verified HCP."""
    reply = engine.ask(DOSE, role="hcp")
    assert reply.kind == "answer"
    return [s for c in reply.citations if c.audience == "hcp" for s in c.sentences]


def test_public_question_gets_the_json_of_ask_json_with_citations(client, engine):
    resp = ask(client, "What is TRK fusion cancer?")
    assert resp.status_code == 200
    reply = resp.json()
    assert reply["kind"] == "answer" and "[1]" in reply["answer"] and reply["language"] == "en"
    assert reply["citations"] and {c["audience"] for c in reply["citations"]} == {"public"}
    assert set(reply) == set(engine.ask("What is TRK fusion cancer?").to_json())
    follow = ask(client, "And how is it found?", history=["What is TRK fusion cancer?"])
    assert follow.json()["kind"] == "answer" and "test" in follow.json()["answer"].lower()


def test_hcp_question_without_a_token_is_refused_with_no_hcp_text(client, engine):
    reply = ask(client, DOSE).json()
    assert reply["kind"] == "hcp_only"
    assert all(c["audience"] == "public" for c in reply["citations"])
    text = json.dumps(reply, ensure_ascii=False)
    assert "100 mg" not in text
    assert not [s for s in hcp_sentences(engine) if s in text]


def test_hcp_answer_with_a_bearer_token_until_sign_out(client):
    session = client.post("/api/v1/session", json={"email": "anna@example.org", "password": PASSWORD})
    assert session.status_code == 200 and session.json()["role"] == "hcp"
    token = session.json()["token"]
    reply = ask(client, DOSE, token).json()
    assert reply["kind"] == "answer" and "100 mg" in reply["answer"]
    assert any(c["audience"] == "hcp" for c in reply["citations"])
    assert client.delete("/api/v1/session", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    assert ask(client, DOSE, token).json()["kind"] == "hcp_only"


def test_forged_expired_and_malformed_tokens_are_the_public(client, accounts):
    past = Accounts(str(accounts.engine.url), clock=lambda: utcnow() - dt.timedelta(days=8))
    expired, _ = past.sign_in("anna@example.org", PASSWORD)
    past.engine.dispose()
    for headers in ({"Authorization": "Bearer forged-token"}, {"Authorization": f"Bearer {expired}"},
                    {"Authorization": "Bearer " + "x" * 5000}, {"Authorization": "Basic YW5uYTpwdw=="},
                    {"Authorization": "Bearer"}):
        resp = client.post("/api/v1/ask", json={"question": DOSE}, headers=headers)
        assert resp.status_code == 200, headers
        assert resp.json()["kind"] == "hcp_only" and "100 mg" not in resp.text, headers


@pytest.mark.parametrize("body, status, error, named", [
    ({"history": []}, 400, "invalid_request", "question"),
    ({"question": 42}, 400, "invalid_request", "question"),
    ({"question": "What is TRK?", "history": "not a list"}, 400, "invalid_request", "history"),
    ({"question": "What is TRK?", "language": "fr"}, 400, "invalid_request", "language"),
    ({"question": "   "}, 400, "empty_question", "question"),
    ({"question": "Wat is TRK? " * 200, "language": "nl"}, 413, "question_too_long", "te lang"),
    ({"question": "What is TRK?", "history": ["x" * 1000] * 50 * 2}, 413, "body_too_large", "bytes"),
])
def test_a_bad_request_gets_a_json_error_that_names_the_problem(client, body, status, error, named):
    resp = client.post("/api/v1/ask", json=body)
    assert resp.status_code == status
    assert resp.json()["error"] == error and named in resp.json()["detail"].lower()
    if error == "body_too_large":
        assert len(resp.request.content) > MAX_BODY_BYTES


def test_other_errors_are_json_too(client):
    garbled = client.post("/api/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400 and "json" in garbled.json()["detail"].lower()
    assert client.get("/api/v1/nowhere").json()["error"] == "not_found"
    signed_out = client.delete("/api/v1/session")
    assert signed_out.status_code == 401 and "Bearer" in signed_out.json()["detail"]


def in_one_minute(run):
    """run(attempt) again, as a new client, if the rate limit's fixed one-minute window turned over."""
    for attempt in range(2):
        minute = int(time.time() // 60)
        result = run(attempt)
        if int(time.time() // 60) == minute:
            return result
    return result


def test_sign_in_is_refused_as_json_then_rate_limited(client):
    def attempts(n: int) -> list[httpx.Response]:
        with TestClient(client.app, client=(f"198.51.100.{n + 1}", 50000)) as other:
            return [other.post("/api/v1/session", json={"email": "anna@example.org", "password": "wrong password 1"})
                    for _ in range(4)]

    tried = in_one_minute(attempts)
    assert [r.status_code for r in tried] == [401, 401, 401, 429]
    assert tried[0].json()["error"] == "sign_in_refused" and "incorrect" in tried[0].json()["detail"]
    assert tried[-1].json()["error"] == "rate_limited" and "198.51.100." in tried[-1].json()["detail"]
    assert 1 <= int(tried[-1].headers["Retry-After"]) <= 60


def test_no_index_is_503(tmp_path, embedder):
    settings = make_settings(tmp_path)
    app = App(settings, Engine(settings, embedder), None)
    with TestClient(create_app(app, with_ui=False)) as c:
        resp = ask(c, "What is TRK fusion cancer?")
        assert resp.status_code == 503 and resp.json()["error"] == "no_index"
        assert "index" in resp.json()["detail"].lower() and resp.headers["Retry-After"]
        assert c.get("/api/v1/health").status_code == 503


def test_openapi_describes_ask_sessions_and_the_bearer_token(client):
    spec = client.get("/api/v1/openapi.json").json()
    documented = spec["components"]["schemas"]["AskReply"]["properties"]
    assert set(documented) == set(ask(client, "What is TRK fusion cancer?").json())  # suggestions too
    assert {"/ask", "/session", "/health"} <= set(spec["paths"]) and spec["servers"] == [{"url": "/api/v1"}]
    assert {"400", "413", "429", "503"} <= set(spec["paths"]["/ask"]["post"]["responses"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# two API worker processes and the UI process: real uvicorn, one accounts database ----------------------
@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    settings, _ = built
    root = tmp_path_factory.mktemp("workers")
    settings = make_settings(root, corpus=settings.corpus_dir).model_copy(update={"index_dir": settings.index_dir})
    accounts = Accounts(settings.db_url)
    register_hcp(accounts)
    accounts.engine.dispose()
    server = ServeProcess(settings, workers=2, env={"TRK_API_ASKS_PER_MINUTE": "4"}, log_path=root / "serve.log")
    try:
        server.wait_for_workers()
        server.wait_for_ui()
        yield server
    finally:
        server.stop()


def worker_connections(api_url: str, client_ip: str) -> list[httpx.Client]:
    """Two keep-alive connections held by two different worker processes (one each)."""
    by_pid: dict[int, httpx.Client] = {}
    for _ in range(50):
        conn = httpx.Client(base_url=api_url, timeout=60, headers={"X-Forwarded-For": client_ip})
        pid = conn.get("api/v1/health").json()["pid"]
        if pid in by_pid:
            conn.close()
        else:
            by_pid[pid] = conn
        if len(by_pid) == 2:
            return list(by_pid.values())
    raise AssertionError("the kernel never handed a connection to the second worker")


def test_a_sign_in_through_one_worker_is_honoured_by_the_other_and_by_the_ui(served):
    from gradio_client import Client

    a, b = worker_connections(served.api_url, "192.0.2.10")
    token = a.post("api/v1/session", json={"email": "anna@example.org", "password": PASSWORD}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert "100 mg" in b.post("api/v1/ask", json={"question": DOSE}, headers=bearer).json()["answer"]
    ui = Client(served.ui_url, verbose=False)  # the chat UI's process, through its Gradio queue
    assert ui.predict(DOSE, [], token, api_name="/ask")["kind"] == "answer"
    assert b.delete("api/v1/session", headers=bearer).status_code == 204
    assert a.post("api/v1/ask", json={"question": DOSE}, headers=bearer).json()["kind"] == "hcp_only"
    assert ui.predict(DOSE, [], token, api_name="/ask")["kind"] == "hcp_only"
    ui.close()
    for conn in (a, b):
        conn.close()


def test_the_rate_limit_holds_across_workers_and_the_ui(served):
    """4 questions a minute per client: two on each worker, and the fifth is refused by either, and by
    the chat UI's process."""
    from gradio_client import Client

    def five_questions(attempt: int) -> list[httpx.Response]:
        address = f"203.0.113.{attempt + 1}"
        a, b = worker_connections(served.api_url, address)
        replies = [conn.post("api/v1/ask", json={"question": "What is TRK fusion cancer?"}) for conn in (a, b, a, b, a)]
        for conn in (a, b):
            conn.close()
        ui = Client(served.ui_url, verbose=False, headers={"X-Forwarded-For": address})
        try:
            ui.predict("What is TRK fusion cancer?", [], "", api_name="/ask")
            replies.append(None)
        except Exception as exc:  # gradio_client raises the app's gr.Error
            replies.append(str(exc))
        ui.close()
        return replies

    replies = in_one_minute(five_questions)
    assert [r.status_code for r in replies[:5]] == [200, 200, 200, 200, 429]
    refused = replies[4]
    assert refused.json()["error"] == "rate_limited" and "203.0.113." in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert replies[5] is not None and "Too many questions" in replies[5]
