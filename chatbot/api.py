"""The REST API under /api/v1: ask, sign in and out, health; OpenAPI at /api/v1/openapi.json.

Who may read what is decided here, server-side, from the bearer token alone: no token, or a forged,
expired or revoked one, is the public caller, never an error. Errors are JSON bodies
`{"error": code, "detail": what went wrong}` with the matching status code.
"""

from __future__ import annotations

import os
from typing import Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from chatbot import policy
from chatbot.accounts import AccountError, StorageUnavailable
from chatbot.headers import SecurityHeaders
from chatbot.index import IndexUnavailable
from chatbot.messages import msg
from chatbot.service import App

PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


class AskRequest(BaseModel):
    question: str = Field(description="The question, in English or Dutch.", examples=["What is TRK fusion cancer?"])
    history: list[str] = Field(default_factory=list, max_length=50,
                               description="Earlier questions of this conversation, oldest first (for follow-ups).")
    language: Literal["en", "nl"] | None = Field(
        None, description="Your page's language: the language of the messages about the request itself "
                          "(an empty or too long question). Replies follow the question's own language.")


class Citation(BaseModel):
    n: int
    doc_id: str
    title: str
    heading: str
    audience: Literal["public", "hcp"]
    sources: list[dict]
    quote: str
    sentences: list[str]
    chunk_id: str


class AskReply(BaseModel):
    """The JSON of `python -m chatbot ask --json`."""

    kind: str = Field(description="answer, hcp_only, adverse_event, advice, out_of_scope, no_answer, small_talk "
                                  "or invalid")
    answer: str
    language: Literal["en", "nl"]
    citations: list[Citation]
    suggestions: list[str] = Field(description="Questions to ask next: passage questions of the sections "
                                               "nearest the passage the reply used (empty without citations)")
    ms: float
    generation: str


class SignIn(BaseModel):
    email: str = Field(max_length=1000)
    password: str = Field(max_length=1000)


class SessionToken(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    role: Literal["hcp", "maintainer", "public"]


class ErrorBody(BaseModel):
    error: str
    detail: str


ERRORS = {code: {"model": ErrorBody, "description": text} for code, text in {
    400: "The request is not valid JSON of this shape, or the question is empty.",
    413: "The question or the request body is too long.",
    429: "Too many requests from this client; wait the Retry-After seconds.",
    503: "No index has been built yet, or the accounts database is unavailable.",
}.items()}
bearer = HTTPBearer(auto_error=False, description="A session token from POST /api/v1/session (HCPs).")


def bearer_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    return credentials.credentials if credentials else ""


def client_address(request: Request) -> str:
    """The caller's address (uvicorn takes it from X-Forwarded-For when a trusted proxy sent it)."""
    return request.client.host if request.client else ""


def service_of(request: Request) -> App:
    return request.app.state.service


def refuse_if_waiting(wait: int, what: str, client: str) -> None:
    if wait:
        raise ApiError(429, "rate_limited", f"too many {what} a minute from {client}; try again in {wait} s",
                       {"Retry-After": str(wait)})


def check_question(body: AskRequest, max_chars: int) -> None:
    """400 for an empty question, 413 for one over the limit (as the engine counts: cleaned text)."""
    question = policy.clean(body.question)
    lang = body.language or policy.detect_language(question[:500])
    if not question:
        raise ApiError(400, "empty_question", msg(lang, "empty"))
    if len(question) > max_chars:
        raise ApiError(413, "question_too_long", msg(lang, "too_long", n=len(question), limit=max_chars))


def ask(body: AskRequest, request: Request, token: str = Depends(bearer_token)):
    """Answer a question: the public role without a valid bearer token, the HCP role with a verified
    HCP's token. The reply is the JSON of `python -m chatbot ask --json`."""
    service = service_of(request)
    client = client_address(request)
    refuse_if_waiting(service.wait_to_ask(client), f"questions (limit {service.settings.api_asks_per_minute})", client)
    check_question(body, service.settings.max_question_chars)
    reply = service.ask(body.question, body.history, token)
    if reply.kind == "unavailable":
        raise ApiError(503, "no_index", index_problem(service) or reply.answer, {"Retry-After": "30"})
    return JSONResponse(reply.to_json())  # already the documented shape: not validated again


def sign_in(body: SignIn, request: Request) -> SessionToken:
    """Sign in with an account's email and password; the token goes in `Authorization: Bearer`."""
    service = service_of(request)
    client = client_address(request)
    refuse_if_waiting(service.wait_to_sign_in(client), f"sign-in attempts (limit {service.settings.sign_ins_per_minute})",
                      client)
    if service.accounts is None:
        raise ApiError(503, "accounts_unavailable", "Sign-in is unavailable right now; please try again later.")
    try:
        token, account = service.accounts.sign_in(body.email, body.password, client=client)
    except StorageUnavailable as exc:
        raise ApiError(503, "accounts_unavailable", str(exc)) from None
    except AccountError as exc:
        raise ApiError(401, "sign_in_refused", str(exc)) from None
    role = "hcp" if account.is_hcp else "maintainer" if account.is_maintainer else "public"
    return SessionToken(token=token, role=role)


def sign_out(request: Request, token: str = Depends(bearer_token)) -> Response:
    """End the session of the bearer token (any token is accepted: nothing tells whether it was live)."""
    service = service_of(request)
    if not token:
        raise ApiError(401, "no_token", "send the session token as `Authorization: Bearer <token>`")
    if service.accounts is not None:
        try:
            service.accounts.sign_out(token)
        except StorageUnavailable as exc:
            raise ApiError(503, "accounts_unavailable", str(exc)) from None
    return Response(status_code=204)


def index_problem(service: App) -> str | None:
    """What keeps the index from answering ("no index has been built yet: ..."), None if nothing."""
    try:
        service.engine.snapshot()
    except IndexUnavailable as exc:
        return str(exc)
    return None


def health(request: Request) -> dict:
    """Ready to answer: the index generation served, and which process answered."""
    service = service_of(request)
    problem = index_problem(service)
    if problem:
        raise ApiError(503, "no_index", problem)
    return {"status": "ok", "generation": service.engine.snapshot().name, "pid": os.getpid()}


def error_response(status: int, error: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def on_api_error(_request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.detail, exc.headers)


async def on_invalid_request(_request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            problems.append(f"body: not valid JSON ({err.get('ctx', {}).get('error', 'cannot be parsed')})")
            continue
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(400, "invalid_request", "; ".join(problems))


async def on_http_error(_request, exc: HTTPException) -> JSONResponse:
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, error, str(exc.detail), getattr(exc, "headers", None))


async def on_unexpected_error(_request, _exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", "the server could not answer this request")


class BodyLimit:
    """413 for a request body announced larger than MAX_BODY_BYTES, before it is read."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                response = error_response(413, "body_too_large", f"the request body is {int(length)} bytes; "
                                                                 f"at most {MAX_BODY_BYTES}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_api(service: App) -> FastAPI:
    """The API as its own application, to be mounted at /api/v1 (its errors stay JSON there)."""
    api = FastAPI(title="TRK Assistant API", version="1", docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json", description=__doc__)
    api.state.service = service
    api.post("/ask", response_model=AskReply, responses=ERRORS, tags=["answers"])(ask)
    api.post("/session", response_model=SessionToken, responses={401: {"model": ErrorBody}, **ERRORS},
             tags=["sessions"])(sign_in)
    api.delete("/session", status_code=204, responses={401: {"model": ErrorBody}}, tags=["sessions"])(sign_out)
    api.get("/health", responses={503: ERRORS[503]}, tags=["operations"])(health)
    api.add_exception_handler(ApiError, on_api_error)
    api.add_exception_handler(RequestValidationError, on_invalid_request)
    api.add_exception_handler(HTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected_error)
    api.add_middleware(BodyLimit)
    return api


def create_app(service: App, with_ui: bool = True) -> FastAPI:
    """One FastAPI application: the API at /api/v1 and, with `with_ui`, the Gradio chat at /."""
    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root.mount(PREFIX, create_api(service))
    if with_ui:
        from chatbot.ui import mount_ui

        mount_ui(root, service)
    # outermost: every response of both, the streamed ones too (chatbot/headers.py)
    root.add_middleware(SecurityHeaders, https=service.settings.https)
    return root
