"""HCP accounts against a real SQLite file, with an injected clock (no sleeping)."""

import datetime as dt
import re
import sqlite3

import pytest
from argon2 import PasswordHasher

from chatbot.accounts import (
    AccountError,
    Accounts,
    AuthError,
    ValidationError,
    validate_registration_number,
)
from tests.conftest import DATA

PASSWORD = "correct horse battery staple"
# argon2id with lighter parameters than the library's defaults (one pass, 8 MiB) keeps the account
# suite fast; the timing test below and every other suite use the defaults
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
LONGEST = " ".join(f"word{i}" for i in range(50))[:255] + "!"  # 256 characters, all of them count


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
    acc = Accounts(url, clock=clock, hasher=FAST)
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


def test_growing_delays_that_an_attacker_cannot_renew(accounts, clock):
    register(accounts)
    accounts.approve("anna@example.org")
    accounts.sign_in("anna@example.org", PASSWORD, client="10.1.1.1")  # Anna's own connection
    for _ in range(5):  # five free failures
        with pytest.raises(AuthError, match="incorrect"):
            accounts.sign_in("anna@example.org", "wrong password here", client="203.0.113.5")
    waits = []
    for _ in range(4):  # then each failure doubles the wait: 1, 2, 4, 8 s
        with pytest.raises(AuthError, match=r"Too many failed sign-ins for this account. Try again in (\d+) seconds") as e:
            accounts.sign_in("anna@example.org", PASSWORD, client="203.0.113.6")  # even the right password
        waits.append(int(re.search(r"in (\d+) seconds", str(e.value)).group(1)))
        for _ in range(3):  # attempts during the wait neither count nor extend it
            with pytest.raises(AuthError, match="Try again in"):
                accounts.sign_in("anna@example.org", "wrong password here", client="203.0.113.5")
        clock.advance(seconds=waits[-1])
        with pytest.raises(AuthError, match="incorrect"):
            accounts.sign_in("anna@example.org", "wrong password here", client="203.0.113.5")
    assert waits == [1, 2, 4, 8]
    # Anna, from where she signed in before, is not held by the delay the attacker caused
    token, _ = accounts.sign_in("anna@example.org", PASSWORD, client="10.1.1.1")
    assert accounts.role(token) == "hcp"
    clock.advance(seconds=1)  # the success reset the count
    with pytest.raises(AuthError, match="incorrect"):
        accounts.sign_in("anna@example.org", "wrong password here", client="203.0.113.5")
    trail = [e.event for e in accounts.audit()]
    assert trail.count("signin.failure") == 10 and trail.count("signin.throttled") == 16


def test_a_hundred_failures_need_a_maintainer_and_unknown_emails_behave_alike(accounts, clock):
    fast = accounts
    register(fast)
    fast.approve("anna@example.org")
    for email in ("anna@example.org", "nobody@example.org"):
        for n in range(100):
            clock.advance(minutes=16)  # past any delay
            with pytest.raises(AuthError, match="incorrect") as e:
                fast.sign_in(email, f"wrong password {n}")
            assert str(e.value) == "Email or password is incorrect."
        for _ in range(2):
            clock.advance(days=30)
            with pytest.raises(AuthError, match="locked after too many failed sign-ins. Contact"):
                fast.sign_in(email, PASSWORD, client="10.1.1.1")
    assert [a.email for a, n in fast.locked()] == ["anna@example.org"]
    fast.unlock("anna@example.org", actor="account:9")
    assert fast.role(fast.sign_in("anna@example.org", PASSWORD)[0]) == "hcp"
    with pytest.raises(AccountError, match="is not locked"):
        fast.unlock("anna@example.org")
    with pytest.raises(AccountError, match="no account for ghost@example.org"):
        fast.unlock("ghost@example.org")
    trail = [(e.event, e.actor) for e in fast.audit()]
    assert trail.count(("signin.lockout", "-")) == 2 and ("account.unlock", "account:9") in trail
    assert sum(ev == "signin.failure" for ev, _ in trail) == 200  # every failure audited


def test_per_client_growing_delays(accounts, clock):
    for i in range(10):
        with pytest.raises(AuthError, match="incorrect"):
            accounts.sign_in(f"user{i}@example.org", "whatever password", client="10.0.0.9")
    with pytest.raises(AuthError, match="Too many sign-in attempts from your connection. Try again in 1 seconds"):
        accounts.sign_in("user0@example.org", "whatever password", client="10.0.0.9")
    with pytest.raises(AuthError, match="incorrect"):  # another client is not affected
        accounts.sign_in("user0@example.org", "whatever password", client="10.0.0.10")
    clock.advance(seconds=1)
    with pytest.raises(AuthError, match="incorrect"):
        accounts.sign_in("user11@example.org", "whatever password", client="10.0.0.9")
    with pytest.raises(AuthError, match="Try again in 2 seconds"):
        accounts.sign_in("user12@example.org", "whatever password", client="10.0.0.9")
    clock.advance(minutes=16)  # the window has passed
    with pytest.raises(AuthError, match="incorrect"):
        accounts.sign_in("user12@example.org", "whatever password", client="10.0.0.9")


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
    assert t1 != t2  # a new token at every sign-in
    with pytest.raises(AuthError, match="current password is incorrect"):
        accounts.change_password(t1, "not my password", "a brand new long passphrase")
    assert accounts.role(t1) == "hcp"  # nothing changed
    t3 = accounts.change_password(t1, PASSWORD, "a brand new long passphrase")
    assert accounts.role(t1) == accounts.role(t2) == "public" and accounts.role(t3) == "hcp"
    assert accounts.role(accounts.sign_in("anna@example.org", "a brand new long passphrase")[0]) == "hcp"
    with pytest.raises(AuthError, match="session has ended"):
        accounts.change_password(t1, "a brand new long passphrase", "another long passphrase here")


def test_reauthentication_and_email_change_need_the_password_and_renew_the_token(accounts):
    token = verified_token(accounts)
    other = accounts.sign_in("anna@example.org", PASSWORD)[0]
    with pytest.raises(AuthError, match="incorrect"):
        accounts.reauthenticate(token, "wrong password here")
    fresh = accounts.reauthenticate(token, PASSWORD)
    assert fresh != token and accounts.role(token) == "public" and accounts.role(fresh) == "hcp"
    register(accounts, email="bob@example.org", name="Bob Smit", number="11111111111")
    with pytest.raises(ValidationError, match="cannot be used"):
        accounts.change_email(fresh, PASSWORD, "bob@example.org")
    with pytest.raises(AuthError, match="incorrect"):
        accounts.change_email(fresh, "wrong password here", "anna.devries@example.org")
    newest = accounts.change_email(fresh, PASSWORD, "Anna.deVries@example.org")
    assert accounts.session(newest).email == "anna.devries@example.org"
    assert accounts.role(fresh) == accounts.role(other) == "public"  # every other session ended
    trail = [e.event for e in accounts.audit()]
    assert {"reauth.success", "email.change"} <= set(trail) and trail.count("signin.failure") == 2


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
    ("password", "short", "at least 15 characters (it has 5)"),
    ("password", "fourteen chars", "at least 15 characters (it has 14)"),
    ("password", "x" * 257, "too long (257 characters; at most 256)"),
    ("password", "password12345678", "most common passwords"),
    ("password", "1qaz2wsx3edc4rfv", "most common passwords"),  # in the list as it is
    ("password", "Dragon2024!!!!!!!", "most common passwords"),  # a common one dressed up
    ("password", "monkeymonkeymonkey", "most common passwords"),
    ("password", "aaaaaaaaaaaaaaaa", "most common passwords"),
    ("password", "my TRK assistant secret", "must not contain 'trk'"),
    ("password", "devries forever and ever", "must not contain 'vries'"),
    ("password", "anna likes long walks", "must not contain 'anna'"),
    ("password", "my example password!!", "must not contain 'example'"),
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


def test_registering_an_existing_email_answers_as_for_a_new_one(accounts):
    register(accounts)
    accounts.approve("anna@example.org")
    again = register(accounts, email="Anna@Example.org", name="Mallory", password="another long passphrase")
    assert again is None  # no error: the screen answers as for a new registration
    assert accounts.sign_in("anna@example.org", PASSWORD)[1].name == "Anna de Vries"  # untouched
    assert "register.existing_email" in [e.event for e in accounts.audit()]


def test_long_passwords_any_characters_no_rules_no_truncation(accounts):
    for n, password in enumerate(["ünïcödé pässwörd", "zebra " * 10 + "abcd", "🧬 drie woorden ongeveer ok", LONGEST]):
        email = f"user{n}@example.org"
        register(accounts, email=email, number=f"1111111111{n}", password=password)
        accounts.approve(email)
        assert accounts.sign_in(email, password)[1].email == email
    with pytest.raises(AuthError):  # the 256th character counts: nothing is cut off
        accounts.sign_in("user3@example.org", LONGEST[:255])
    register(accounts, email="nfkc@example.org", number="22222222222", password="ｆｕｌｌｗｉｄｔｈ ｐａｓｓｐｈｒａｓｅ")
    accounts.approve("nfkc@example.org")
    assert accounts.sign_in("nfkc@example.org", "fullwidth passphrase")  # NFKC: the same password


def test_unknown_email_and_wrong_password_cost_the_same(tmp_path):
    """The same message and the same work (one argon2id check) for an unknown email and a wrong
    password, at sign-in and at registration (one hash). Timed too, interleaved, medians: the
    difference must be small against the cost of one hash (robust on a loaded machine)."""
    import time

    calls = {"verify": 0, "hash": 0}

    class Counting(PasswordHasher):  # argon2id with the library's default (production) parameters
        def verify(self, *a):
            calls["verify"] += 1
            return super().verify(*a)

        def hash(self, *a, **kw):
            calls["hash"] += 1
            return super().hash(*a, **kw)

    accounts = Accounts(f"sqlite:///{tmp_path / 'timing.sqlite3'}", hasher=Counting())
    register(accounts)
    accounts.approve("anna@example.org")

    def attempt(email):
        before = dict(calls)
        t = time.perf_counter()
        with pytest.raises(AuthError) as e:
            accounts.sign_in(email, "not the password at all")
        return time.perf_counter() - t, str(e.value), {k: calls[k] - before[k] for k in calls}

    known, unknown = [], []
    for i in range(5):
        known.append(attempt("anna@example.org"))
        unknown.append(attempt(f"nobody{i}@example.org"))
    assert {k[1] for k in known} == {u[1] for u in unknown} == {"Email or password is incorrect."}
    assert all(k[2] == u[2] == {"verify": 1, "hash": 0} for k, u in zip(known, unknown))

    def registration(email):
        before = dict(calls)
        t = time.perf_counter()
        out = register(accounts, email=email, number="29012345602", password="yet another long passphrase")
        return time.perf_counter() - t, out, {k: calls[k] - before[k] for k in calls}

    again, new = [], []
    for i in range(3):
        again.append(registration("anna@example.org"))
        new.append(registration(f"new{i}@example.org"))
    assert all(a[2] == n[2] == {"verify": 0, "hash": 1} for a, n in zip(again, new))
    one_hash = sorted(x[0] for x in known)[2]
    for a, b in ((known, unknown), (again, new)):
        diff = abs(sorted(x[0] for x in a)[len(a) // 2] - sorted(x[0] for x in b)[len(b) // 2])
        assert diff < 0.5 * one_hash, (diff, one_hash)


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


def test_unlock_commands(tmp_path):
    """`python -m chatbot hcp locked` and `hcp unlock EMAIL` (in-process), with errors that say why."""
    from typer.testing import CliRunner

    from chatbot.cli import app

    accounts = Accounts(f"sqlite:///{tmp_path / 'data' / 'accounts.sqlite3'}", hasher=FAST)
    register(accounts)
    for n in range(5):  # five in a row: from now on, sign-in waits
        with pytest.raises(AuthError, match="incorrect"):
            accounts.sign_in("anna@example.org", f"wrong password {n}")
    runner = CliRunner()
    env = {"TRK_DATA_DIR": str(tmp_path / "data"), "TRK_DATABASE_URL": ""}
    listed = runner.invoke(app, ["hcp", "locked"], env=env)
    assert listed.exit_code == 0 and "anna@example.org\t" in listed.output and "failed sign-ins in a row" in listed.output
    assert runner.invoke(app, ["hcp", "unlock", "anna@example.org"], env=env).output == "anna@example.org unlocked\n"
    again = runner.invoke(app, ["hcp", "unlock", "anna@example.org"], env=env)
    assert again.exit_code == 1 and "anna@example.org is not locked" in again.output
    assert "no locked accounts" in runner.invoke(app, ["hcp", "locked"], env=env).output
    assert ("account.unlock", "cli") in [(e.event, e.actor) for e in accounts.audit()]


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
