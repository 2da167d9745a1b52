"""The REST API (/api/v1): its contract in process over the real engine, index and accounts database,
and `chatbot serve --workers 2` as real uvicorn processes (sessions and rate limits shared)."""

from __future__ import annotations

import datetime as dt
import json
import re
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


# security headers on every response: the API, the chat page, Gradio's files and routes (in process) ---
@pytest.fixture(scope="module")
def whole_app(engine, accounts):
    """The one application as `python app.py` serves it: the API and the Gradio chat mounted."""
    with TestClient(create_app(App(engine.settings, engine, accounts), with_ui=True)) as c:
        yield c


def assert_security_headers(resp: httpx.Response, hsts: bool = False) -> dict[str, list[str]]:
    """The headers every response carries; the CSP's directives, parsed."""
    where = f"{resp.request.method} {resp.request.url.path} ({resp.status_code})"
    assert resp.headers.get("x-content-type-options") == "nosniff", where
    assert resp.headers.get("x-frame-options") == "DENY", where
    assert resp.headers.get("referrer-policy") == "strict-origin-when-cross-origin", where
    assert ("strict-transport-security" in resp.headers) == hsts, where
    assert len(resp.headers.get_list("content-security-policy")) == 1, where
    csp = {d.split()[0]: d.split()[1:] for d in resp.headers["content-security-policy"].split("; ")}
    assert csp["frame-ancestors"] == ["'none'"] and csp["default-src"] == ["'none'"], where
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], where  # ASVS 5.0 3.4.3
    assert "'unsafe-eval'" not in csp["script-src"] and "'unsafe-inline'" not in csp["script-src"], where
    return csp


def page_assets(page_html: str) -> list[str]:
    """The script and stylesheet the chat page loads first (Gradio's build, hashed names)."""
    return re.findall(r'(?:src|href)="\./(assets/[^"]+\.(?:js|css))"', page_html)


def test_every_kind_of_response_carries_the_security_headers(whole_app):
    page = whole_app.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assets = page_assets(page.text)
    assert assets, "the page names no assets"
    responses = [
        page,
        whole_app.get("/api/v1/health"),  # API JSON
        whole_app.post("/api/v1/ask", json={"question": "What is TRK fusion cancer?"}),
        whole_app.post("/api/v1/ask", json={}),  # API error (400)
        whole_app.get("/api/v1/nowhere"),  # API 404
        whole_app.post("/api/v1/ask", content=b"x" * (MAX_BODY_BYTES + 1),
                       headers={"Content-Type": "application/json"}),  # refused by the body limit (413)
        whole_app.get("/api/v1/openapi.json"),
        whole_app.get("/api/v1/docs"),  # HTML (its own CSP, below)
        whole_app.get("/config"),  # Gradio's JSON
        whole_app.get("/gradio_api/info"),
        whole_app.get("/theme.css"),
        whole_app.get("/static/js/iframeResizer.contentWindow.min.js"),
        whole_app.get("/trk-static/ui.js"),
        whole_app.get("/manifest.json"),
        whole_app.get("/favicon.ico"),
        whole_app.get("/gradio_api/nowhere"),  # Gradio's 404
        whole_app.get("/gradio_api/file=/etc/passwd"),  # Gradio's 403
        whole_app.post("/gradio_api/upload", files={"files": ("a.html", b"<script>alert(1)</script>")}),
    ] + [whole_app.get(f"/{asset}") for asset in assets]
    for resp in responses:
        assert_security_headers(resp)
    codes = [r.status_code for r in responses]
    assert {200, 400, 403, 404, 413} <= set(codes), codes


def script_hash(body: bytes) -> str:
    import base64
    import hashlib

    return f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"


def test_the_pages_inline_scripts_and_no_others_are_allowed_by_hash(whole_app):
    """Gradio's page carries its configuration in inline scripts built per request: each is allowed by
    its sha256 in that page's CSP; nothing else inline runs, and other responses name no hashes."""
    resp = whole_app.get("/")
    csp = assert_security_headers(resp)
    assert b"<base" not in resp.content  # Gradio's no-op <base href="./"> is taken out (base-uri 'none')
    assert int(resp.headers["content-length"]) == len(resp.content)
    scripts = re.findall(rb"<script\b([^>]*)>(.*?)</script>", resp.content, re.DOTALL)
    inline = [body for attrs, body in scripts if b"src=" not in attrs]
    assert len(inline) >= 4  # gradio_config, gradio_api_info, the mode, the resizer loader
    assert set(csp["script-src"]) == {"'self'"} | {script_hash(b) for b in inline}
    docs = assert_security_headers(whole_app.get("/api/v1/docs"))
    assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/" in docs["script-src"]
    assert any(s.startswith("'sha256-") for s in docs["script-src"])  # its inline set-up script
    for other in (whole_app.get("/api/v1/openapi.json"), whole_app.get("/config")):
        assert assert_security_headers(other)["script-src"] == ["'self'"]


@pytest.mark.parametrize("encoding", ["br", "gzip", "identity"])
def test_a_compressed_page_is_hashed_as_the_browser_reads_it(encoding):
    """Gradio compresses .html/.js/.css files (not its page at / today): a page that comes compressed
    is hashed after decompressing, as the browser hashes it."""
    import gzip

    import anyio
    import brotli

    from chatbot.headers import SecurityHeaders

    page = b"<html><head><script>window.x = 1;</script><script src='a.js'></script></head>" + b"<p>x</p>" * 100
    body = {"br": brotli.compress, "gzip": gzip.compress, "identity": bytes}[encoding](page)
    seen: list[dict] = []

    async def app(scope, receive, send):
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        if encoding != "identity":
            headers.append((b"content-encoding", encoding.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        half = len(body) // 2
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": body[half:], "more_body": False})

    async def run():
        async def send(message):
            seen.append(message)

        async def receive():
            return {"type": "http.disconnect"}

        await SecurityHeaders(app)({"type": "http", "path": "/", "method": "GET", "headers": []}, receive, send)

    anyio.run(run)
    csp = dict(seen[0]["headers"])[b"content-security-policy"].decode()
    assert f"script-src 'self' {script_hash(b'window.x = 1;')};" in csp
    assert b"".join(m.get("body", b"") for m in seen[1:]) == body  # the body itself untouched


def test_hsts_only_when_served_behind_tls(engine, accounts, monkeypatch):
    from chatbot.config import Settings

    assert Settings().https is False
    monkeypatch.setenv("TRK_HTTPS", "1")
    assert Settings().https is True
    settings = engine.settings.model_copy(update={"https": True})
    for with_ui in (False, True):
        with TestClient(create_app(App(settings, engine, accounts), with_ui=with_ui)) as c:
            for resp in (c.get("/api/v1/health"), c.get("/api/v1/nowhere")) + ((c.get("/"),) if with_ui else ()):
                assert_security_headers(resp, hsts=True)
                assert resp.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    with TestClient(create_app(App(engine.settings, engine, accounts), with_ui=False)) as c:
        assert_security_headers(c.get("/api/v1/health"), hsts=False)  # the API workers' app, without TLS


def test_streamed_responses_pass_through_the_headers_middleware_chunk_by_chunk():
    """A streamed body (Gradio's SSE results) is forwarded as each chunk comes, never held; only our
    own pages are held to hash their scripts, and other HTML gets no hashes."""
    import anyio

    from chatbot.headers import SecurityHeaders

    seen: list[dict] = []
    forwarded_before_next_chunk: list[int] = []

    async def streaming_app(scope, receive, send):
        kind = b"text/html" if scope["path"].endswith(".html") else b"text/event-stream"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
        for chunk in (b"data: 1\n\n<script>alert(1)</script>", b"data: 2\n\n", b"data: 3\n\n"):
            forwarded_before_next_chunk.append(len(seen))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def run(path: str) -> None:
        async def send(message):
            seen.append(message)

        async def receive():
            return {"type": "http.disconnect"}

        await SecurityHeaders(streaming_app)({"type": "http", "path": path, "method": "GET", "headers": []},
                                             receive, send)

    anyio.run(run, "/gradio_api/queue/data")
    assert forwarded_before_next_chunk == [1, 2, 3]  # the start, then each chunk as it came
    headers = dict(seen[0]["headers"])
    assert headers[b"x-content-type-options"] == b"nosniff" and b"content-security-policy" in headers
    seen.clear()
    anyio.run(run, "/gradio_api/file=upload.html")  # HTML that is not one of our pages
    assert b"sha256-" not in dict(seen[0]["headers"])[b"content-security-policy"]


def test_gradio_extras_that_the_app_does_not_use_are_off(whole_app):
    """No uploads (the chat takes no files), no run history (it would keep `ask` calls, session token
    included, and can copy them to a Hugging Face bucket), no vibe editor, no MCP server."""
    upload = whole_app.post("/gradio_api/upload", files={"files": ("a.txt", b"hello")})
    assert upload.status_code == 404 and upload.json()["error"] == "not_found"
    assert whole_app.get("/gradio_api/runs").status_code == 404
    assert whole_app.get("/gradio_api/run-history/records").status_code in (404, 405)
    assert whole_app.get("/gradio_api/vibe-code").status_code >= 400
    assert whole_app.get("/gradio_api/mcp/schema").status_code == 404
    assert whole_app.get("/config").json()["footer_links"] == ["api"]


def test_the_api_description_lists_ask_only(whole_app):
    """The UI's own events are private: Gradio's API page, its info and its OpenAPI list `ask` alone."""
    info = whole_app.get("/gradio_api/info").json()
    assert list(info["named_endpoints"]) == ["/ask"] and not info["unnamed_endpoints"]
    assert [p["parameter_name"] for p in info["named_endpoints"]["/ask"]["parameters"]] == [
        "question", "history", "session_token"]
    deps = whole_app.get("/config").json()["dependencies"]
    public = [d["api_name"] for d in deps if d["api_visibility"] != "private"]
    assert public == ["ask"]
    assert len(deps) > 20  # the UI's events are there, for the page, just not described
    paths = set(whole_app.get("/gradio_api/openapi.json").json()["paths"])  # upload is refused (above)
    assert paths - {"/gradio_api/upload"} == {"/gradio_api/call/v2/ask", "/gradio_api/call/ask/{event_id}"}
