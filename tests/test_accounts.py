"""HCP accounts against a real SQLite file, with an injected clock (no sleeping)."""

import datetime as dt
import sqlite3

import pytest

from chatbot.accounts import (
    AccountError,
    Accounts,
    AuthError,
    ValidationError,
    validate_registration_number,
)
from tests.conftest import DATA

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self):
        self.now = dt.datetime(2026, 11, 25, 9, 0, 0)

    def __call__(self):
        return self.now

    def advance(self, **kw):
        self.now += dt.timedelta(**kw)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def accounts(request, tmp_path, clock):
    """The same account tests run against an SQLite file and a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    else:
        server = request.getfixturevalue("postgres")
        url = server.create_database(f"t{abs(hash(request.node.nodeid)) % 10**12}")
    acc = Accounts(url, clock=clock)
    yield acc
    acc.engine.dispose()


@pytest.fixture
def sqlite_accounts(tmp_path, clock):
    return Accounts(f"sqlite:///{tmp_path / 'accounts.sqlite3'}", clock=clock)


def register(accounts, email="anna@example.org", name="Anna de Vries", number="19012345601", country="NL", **kw):
    return accounts.register(name=name, email=email, profession=kw.pop("profession", "physician"),
                             country=country, registration_number=number, password=kw.pop("password", PASSWORD))


def verified_token(accounts, email="anna@example.org"):
    register(accounts, email=email)
    accounts.approve(email)
    return accounts.sign_in(email, PASSWORD)[0]


def test_register_starts_pending_and_cannot_get_hcp_access(accounts):
    acc = register(accounts)
    assert acc.status == "pending" and not acc.is_hcp
    with pytest.raises(AuthError, match="waiting for verification"):
        accounts.sign_in("anna@example.org", PASSWORD)
    assert [a.email for a in accounts.pending()] == ["anna@example.org"]


def test_import_register_verifies_pending_and_later_registrations(accounts):
    register(accounts)  # before import: pending
    rows, verified = accounts.import_register(DATA / "register_extract.csv")
    assert (rows, verified) == (3, 1)
    later = register(accounts, email="jan@example.org", name="Piet Jansen", number="290 1234 5602")
    assert later.status == "verified"
    mismatch = register(accounts, email="x@example.org", name="Someone Else", number="12345678901", country="BE")
    assert mismatch.status == "pending"  # number on the register, surname does not match
    token, acc = accounts.sign_in("ANNA@example.org ", PASSWORD)
    assert acc.is_hcp and accounts.role(token) == "hcp"


def test_import_stops_at_a_bad_row_and_imports_nothing(accounts, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("country,registration_number,surname\nNL,19012345601,de Vries\nNL,123,Short\n")
    with pytest.raises(ValidationError, match=r"bad.csv:3: .*11 digits; you entered 3 digits"):
        accounts.import_register(bad)
    assert register(accounts).status == "pending"


def test_approve_and_reject(accounts):
    register(accounts)
    register(accounts, email="bob@example.org", name="Bob Smit", number="11111111111")
    accounts.approve("anna@example.org")
    accounts.reject("bob@example.org", reason="not on the BIG-register")
    assert accounts.sign_in("anna@example.org", PASSWORD)[1].is_hcp
    with pytest.raises(AuthError, match="not approved"):
        accounts.sign_in("bob@example.org", PASSWORD)
    events = [e.event for e in accounts.audit()]
    assert "verification.verified" in events and "verification.rejected" in events


def test_wrong_password_and_unknown_email_get_the_same_message(accounts):
    register(accounts)
    accounts.approve("anna@example.org")
    with pytest.raises(AuthError) as wrong:
        accounts.sign_in("anna@example.org", "not the password at all")
    with pytest.raises(AuthError) as unknown:
        accounts.sign_in("nobody@example.org", "not the password at all")
    assert str(wrong.value) == str(unknown.value) == "Email or password is incorrect."


def test_lockout_after_five_failures_and_unlock_after_the_window(accounts, clock):
    register(accounts)
    accounts.approve("anna@example.org")
    for _ in range(5):
        with pytest.raises(AuthError, match="incorrect"):
            accounts.sign_in("anna@example.org", "wrong password here")
    with pytest.raises(AuthError, match="locked"):
        accounts.sign_in("anna@example.org", PASSWORD)  # even the right password
    clock.advance(minutes=14)
    with pytest.raises(AuthError, match="locked"):
        accounts.sign_in("anna@example.org", PASSWORD)
    clock.advance(minutes=2)
    token, _ = accounts.sign_in("anna@example.org", PASSWORD)
    assert accounts.role(token) == "hcp"
    assert "signin.lockout" in [e.event for e in accounts.audit()]


def test_per_client_throttle(accounts):
    for i in range(30):
        with pytest.raises(AuthError, match="incorrect"):
            accounts.sign_in(f"user{i}@example.org", "whatever password", client="10.0.0.9")
    with pytest.raises(AuthError, match="Too many sign-in attempts"):
        accounts.sign_in("user0@example.org", "whatever password", client="10.0.0.9")
    with pytest.raises(AuthError, match="incorrect"):  # another client is not affected
        accounts.sign_in("user0@example.org", "whatever password", client="10.0.0.10")


def test_idle_and_absolute_expiry(accounts, clock):
    token = verified_token(accounts)
    clock.advance(hours=11)
    assert accounts.role(token) == "hcp"  # refreshes the idle timer
    clock.advance(hours=11)
    assert accounts.role(token) == "hcp"
    clock.advance(hours=12, seconds=1)
    assert accounts.role(token) == "public"  # idle for more than 12 h
    token = accounts.sign_in("anna@example.org", PASSWORD)[0]
    for _ in range(16):
        clock.advance(hours=11)
        accounts.session(token)
    assert accounts.role(token) == "public"  # absolute expiry (7 days) despite activity


def test_sign_out_and_password_change_revoke_sessions(accounts):
    token = verified_token(accounts)
    accounts.sign_out(token)
    assert accounts.role(token) == "public"
    t1 = accounts.sign_in("anna@example.org", PASSWORD)[0]
    t2 = accounts.sign_in("anna@example.org", PASSWORD)[0]
    accounts.change_password("anna@example.org", PASSWORD, "a brand new long passphrase")
    assert accounts.role(t1) == accounts.role(t2) == "public"
    assert accounts.role(accounts.sign_in("anna@example.org", "a brand new long passphrase")[0]) == "hcp"


@pytest.mark.parametrize("token", ["", None, "forged-token", "x" * 5000, 12345, "' OR 1=1 --"])
def test_forged_tokens_are_public(accounts, token):
    verified_token(accounts)
    assert accounts.role(token) == "public" and accounts.session(token) is None


def test_tokens_are_stored_only_as_hashes(sqlite_accounts, tmp_path):
    token = verified_token(sqlite_accounts)
    raw = (tmp_path / "accounts.sqlite3").read_bytes()
    con = sqlite3.connect(tmp_path / "accounts.sqlite3")
    stored = [r[0] for r in con.execute("select token_hash from sessions")]
    assert token not in stored and token.encode() not in raw
    hashes = [r[0] for r in con.execute("select password_hash from users")]
    assert hashes[0].startswith("$argon2id$") and PASSWORD.encode() not in raw


def test_rejected_and_disabled_accounts_lose_access(accounts):
    token = verified_token(accounts)
    accounts.disable("anna@example.org")
    assert accounts.role(token) == "public"


@pytest.mark.parametrize("field,value,message", [
    ("registration_number", "1234567890", "a BIG number is 11 digits; you entered 10 digits"),
    ("registration_number", "1234567890A", "you entered 10 digits and 1 other characters"),
    ("password", "short", "at least 12 characters"),
    ("password", "password1234", "too common"),
    ("password", "aaaaaaaaaaaaaaaa", "too common"),
    ("email", "not-an-email", "not a valid email"),
    ("name", "", "is required"),
    ("name", "x" * 201, "too long"),
    ("name", "Anna\x00Drop", "control characters"),
    ("profession", "wizard", "must be one of"),
    ("country", "Netherlands", "two-letter"),
])
def test_registration_validation_names_the_field(accounts, field, value, message):
    kw = {"name": "Anna de Vries", "email": "anna@example.org", "profession": "physician", "country": "NL",
          "registration_number": "19012345601", "password": PASSWORD, field: value}
    with pytest.raises(ValidationError) as err:
        accounts.register(**kw)
    assert err.value.field == field and message in str(err.value)
    assert accounts.all() == []  # nothing stored half


INJECTIONS = ["'; DROP TABLE users; --", "\" OR \"1\"=\"1", "Robert'); DELETE FROM sessions;--"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_sql_injection_strings_are_stored_inert(accounts, evil):
    acc = accounts.register(name=f"Anna {evil}", email="anna@example.org", profession="physician",
                            country="DE", registration_number="123456789", password=PASSWORD)
    assert acc.name == f"Anna {evil}"
    with pytest.raises(AuthError):
        accounts.sign_in(evil, evil)
    with pytest.raises(ValidationError):
        accounts.register(name="X", email=evil, profession="physician", country="NL",
                          registration_number="19012345601", password=PASSWORD)
    assert len(accounts.all()) == 1


def test_duplicate_email_is_refused(accounts):
    register(accounts)
    with pytest.raises(ValidationError, match="already registered"):
        register(accounts, email="Anna@Example.org")


def test_delete_erases_personal_data_but_keeps_anonymous_audit(sqlite_accounts, tmp_path):
    accounts = sqlite_accounts
    token = verified_token(accounts)
    accounts.delete("anna@example.org")
    assert accounts.role(token) == "public" and not accounts.exists("anna@example.org")
    raw = (tmp_path / "accounts.sqlite3").read_bytes()
    con = sqlite3.connect(tmp_path / "accounts.sqlite3")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    dump = "\n".join(con.iterdump())
    assert "anna@example.org" not in dump and "Anna de Vries" not in dump and "19012345601" not in dump
    events = [(e.event, e.subject) for e in accounts.audit()]
    assert ("account.delete", "account:1") in events and ("register", "account:1") in events
    assert raw is not None


def test_audit_log_is_append_only_and_filterable(accounts, clock):
    register(accounts)
    clock.advance(days=2)
    accounts.approve("anna@example.org")
    since = accounts.audit(dt.datetime(2026, 11, 26))
    assert [e.event for e in since] == ["verification.verified"]
    entry = accounts.audit()[0]
    with accounts.Session() as s:
        row = s.merge(entry)
        row.event = "tampered"
        with pytest.raises(AccountError, match="append-only"):
            s.commit()


def test_maintainer_is_not_an_hcp(accounts):
    acc = accounts.add_maintainer("ops@example.org", "maintainer passphrase 1")
    assert acc.is_maintainer and not acc.is_hcp
    token, signed = accounts.sign_in("ops@example.org", "maintainer passphrase 1")
    assert accounts.session(token).is_maintainer and accounts.role(token) == "public"
    hcp = verified_token(accounts)
    accounts.add_maintainer("anna@example.org")
    assert accounts.session(hcp).is_maintainer and accounts.role(hcp) == "hcp"


def test_registration_number_formats():
    assert validate_registration_number("NL", "190 123 456 01") == "19012345601"
    assert validate_registration_number("XX", "ABC123") == "ABC123"
    with pytest.raises(ValidationError, match="LANR is 9 digits"):
        validate_registration_number("DE", "12345")


def test_database_unavailable_is_a_clear_error(tmp_path):
    from chatbot.accounts import StorageUnavailable

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageUnavailable, match="unavailable"):
        Accounts(f"sqlite:///{blocker}/accounts.sqlite3")


def test_feedback_is_anonymous_and_summarised(accounts):
    accounts.add_feedback("What is TRK fusion cancer?", "answer", True)
    accounts.add_feedback("Is it contagious?", "no_answer", False)
    accounts.add_feedback("Is it contagious?", "no_answer", False)
    summary = accounts.feedback_summary()
    assert summary["by_kind"] == {"answer": {"likes": 1, "dislikes": 0}, "no_answer": {"likes": 0, "dislikes": 2}}
    assert summary["most_disliked"] == [("Is it contagious?", 2)]


def test_unanswered_questions_and_thumbs_down_are_listed_for_review(accounts, clock):
    accounts.add_unanswered("is it contagious", "no_answer", "en", "what-is-trk-fusion-cancer > What it is")
    accounts.add_unanswered("Is it contagious", "no_answer", "en", "what-is-trk-fusion-cancer > What it is")
    accounts.add_unanswered("wie wint de tour", "out_of_scope", "nl", "")
    accounts.add_feedback("What does it cost?", "answer", False)
    rows = accounts.review(30)
    assert [(r["question"].lower(), r["kind"], r["times"] + r["thumbs_down"]) for r in rows] == [
        ("is it contagious", "no_answer", 2), ("what does it cost?", "answer", 1), ("wie wint de tour", "out_of_scope", 1)]
    assert rows[0]["nearest"].startswith("what-is-trk-fusion-cancer")
    assert not set(rows[0]) & {"email", "user", "session", "ip"}  # anonymous


def test_rate_counters_are_shared_by_processes_and_start_again_each_window(accounts, clock):
    from sqlalchemy import func, select

    from chatbot.accounts import RateCounter

    other = Accounts(accounts.engine.url.render_as_string(hide_password=False), clock=clock)  # another process
    minute = dt.timedelta(minutes=1)
    clock.now = dt.datetime(2026, 11, 25, 9, 0, 10)
    assert [a.count_request("ask:192.0.2.1", 3, minute) for a in (accounts, other, accounts)] == [0, 0, 0]
    assert other.count_request("ask:192.0.2.1", 3, minute) == 50.0  # the fourth: 50 s until 9:01
    assert accounts.count_request("ask:192.0.2.2", 3, minute) == 0  # another client counts apart
    clock.advance(seconds=50)
    assert accounts.count_request("ask:192.0.2.1", 3, minute) == 0  # a new window
    with accounts.Session() as s:  # the windows that are over were removed
        assert s.scalar(select(func.count()).select_from(RateCounter)) == 1
    other.engine.dispose()
