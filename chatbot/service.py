"""The objects behind the chat UI and the REST API, shared by all requests of one process.

No per-user state lives here: sessions are in the accounts database, the index on disk or in Chroma,
so any number of processes can serve side by side. Gradio is not imported here, so API workers do
without it.
"""

from __future__ import annotations

import math
import threading

from chatbot.accounts import AccountError, Accounts, StorageUnavailable
from chatbot.answer import Engine, Reply, reply_error
from chatbot.cases import CaseLog
from chatbot.config import Settings
from chatbot.index import IndexUnavailable
from chatbot.policy import detect_language
from chatbot.ratelimit import WINDOW, RequestCounter


class App:
    """The engine and the account service; every request re-checks its session token here."""

    def __init__(self, settings: Settings, engine: Engine, accounts: Accounts | None):
        self.settings = settings
        self.engine = engine
        self.accounts = accounts
        self._reindex_lock = threading.Lock()
        self._asks = RequestCounter(accounts) if accounts is not None else None

    def account(self, token):
        if self.accounts is None or not token:
            return None
        try:
            return self.accounts.session(token)
        except AccountError:
            return None

    def role(self, token) -> str:
        account = self.account(token)
        return "hcp" if account is not None and account.is_hcp else "public"

    def wait_to_ask(self, client: str) -> int:
        """Seconds `client` (an address) must wait before asking again, 0 if it may ask now. Counted
        by every process together (chatbot.ratelimit); without the accounts database, nobody waits."""
        limit = self.settings.api_asks_per_minute
        if limit <= 0 or self._asks is None:
            return 0
        try:
            return math.ceil(self._asks.wait_before(f"ask:{client}", limit))
        except AccountError:
            return 0

    def wait_to_sign_in(self, client: str) -> int:
        """The same for sign-in attempts, each counted in the database at once (they are rare)."""
        limit = self.settings.sign_ins_per_minute
        if limit <= 0 or self.accounts is None:
            return 0
        try:
            return math.ceil(self.accounts.count_request(f"sign-in:{client}", limit, WINDOW))
        except AccountError:
            return 0

    def ask(self, question: str, history: list[str], token) -> Reply:
        role = self.role(token)  # re-checked on every question
        try:
            reply = self.engine.ask(question, history, role)
        except IndexUnavailable:
            return reply_error(detect_language(question or ""))
        if reply.kind in ("no_answer", "out_of_scope") and self.accounts is not None:
            try:  # kept for the maintainers' review, without who asked; never fails the answer
                self.accounts.add_unanswered(question, reply.kind, reply.language, reply.nearest)
            except AccountError:
                pass
        return reply


def create_service(settings: Settings | None = None, embedder=None) -> App:
    """The engine over the current index and the accounts database; without that database the
    public chat keeps working (everyone is public)."""
    from chatbot.embedding import load_embedder

    settings = settings or Settings()
    try:
        accounts = Accounts(settings.db_url)
    except StorageUnavailable:
        accounts = None
    # side-effect reports become cases in the same database (or, while it is away, in the JSONL file)
    engine = Engine(settings, embedder or load_embedder(settings), cases=CaseLog(settings, accounts))
    return App(settings, engine, accounts)
