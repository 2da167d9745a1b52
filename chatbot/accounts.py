"""HCP accounts: registration, verification, sign-in, server-side sessions and an append-only audit log.

Roles are decided here from a verified session only; nothing a user types in the chat changes them.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import json
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

SCHEMA_VERSION = 4  # 2: unanswered questions; 3: rate-limit counters; 4: side-effect cases, sign-in throttling by email
PROFESSIONS = ("physician", "pharmacist", "nurse_specialist", "other")
STATUSES = ("pending", "verified", "rejected", "disabled", "maintainer")
IDLE_EXPIRY = dt.timedelta(hours=12)
ABSOLUTE_EXPIRY = dt.timedelta(days=7)
# Throttling (ASVS 5.0 6.3.1, NIST SP 800-63B-4 3.2.2): growing delays, never a lock that another
# person's attempts keep renewing. Per email address (whether or not it has an account, so the
# delays tell nothing about who is registered): the first FREE_FAILURES consecutive failures cost
# nothing, then each one makes the next attempt wait 1, 2, 4 ... seconds, at most MAX_DELAY;
# attempts during a wait are refused unchecked and neither count nor extend it; a client that has
# signed in to the account before is not held by its delay. After HARD_LOCK_AFTER consecutive
# failures only a maintainer can unlock it. Per client (address): FREE_CLIENT_FAILURES failures
# within CLIENT_WINDOW are free, then the same growing delays.
FREE_FAILURES = 5
FREE_CLIENT_FAILURES = 10
MAX_DELAY = dt.timedelta(minutes=15)
HARD_LOCK_AFTER = 100
CLIENT_WINDOW = dt.timedelta(minutes=15)
MIN_PASSWORD = 15  # NIST SP 800-63B-4 3.1.1.2: at least 15 characters for a password-only account
LIMITS = {"name": 200, "email": 254, "registration_number": 32, "password": 256, "reason": 500}
MAX_SIGN_IN_INPUT = 4096  # longer input is refused unchecked (never truncated and compared)
PRODUCT_WORDS = ("trk", "trkassistant", "trkassistent")  # context words: the service's name
# Registration number formats per country, with the wording a user sees when it does not fit.
REG_FORMATS = {
    "NL": (r"\d{11}", "a BIG number is 11 digits"),
    "BE": (r"\d{11}", "a RIZIV/INAMI number is 11 digits"),
    "DE": (r"\d{9}", "a LANR is 9 digits"),
    "GB": (r"\d{7}", "a GMC/GPhC number is 7 digits"),
    "FR": (r"\d{11}", "an RPPS number is 11 digits"),
}
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class AccountError(Exception):
    """A request about an account that cannot be done; the message is safe to show."""


class ValidationError(AccountError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class AuthError(AccountError):
    """Sign-in refused; the message never tells whether an email is registered."""


class StorageUnavailable(AccountError):
    """The accounts database cannot be reached."""


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    profession: Mapped[str] = mapped_column(String(32))
    country: Mapped[str] = mapped_column(String(2))
    registration_number: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    is_maintainer: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)


class SessionRow(Base):
    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class RegisterEntry(Base):
    __tablename__ = "register_entries"
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    registration_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    surname: Mapped[str] = mapped_column(String(200))
    profession: Mapped[str | None] = mapped_column(String(32), nullable=True)


class SignInThrottle(Base):
    """Consecutive sign-in failures per email address (by hash, with or without an account)."""

    __tablename__ = "signin_throttle"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    locked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class KnownClient(Base):
    """A client (address) that has signed in to an account: not held by that account's delay."""

    __tablename__ = "known_clients"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class ClientFailure(Base):
    __tablename__ = "client_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class RateCounter(Base):
    """Requests of one client in one fixed window; shared by every process that uses the database."""

    __tablename__ = "rate_counters"
    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True, index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(Base):
    """Append-only: who (an opaque account id, never an email) did what, when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="{}")


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    question: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(32))
    liked: Mapped[bool] = mapped_column(Boolean)


class Unanswered(Base):
    """A question that got "I don't know" or "out of scope", without who asked it."""

    __tablename__ = "unanswered"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    question: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    nearest: Mapped[str] = mapped_column(String(400))


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _append_only(mapper, connection, target):
    raise AccountError("the audit log is append-only")


@dataclass(frozen=True)
class Account:
    """What the app may know about a signed-in user (no password material)."""

    id: int
    email: str
    name: str
    profession: str
    country: str
    status: str
    is_maintainer: bool

    @property
    def is_hcp(self) -> bool:
        return self.status == "verified"


def _account(u: User) -> Account:
    return Account(u.id, u.email, u.name, u.profession, u.country, u.status, u.is_maintainer)


def normalise_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email or "").strip().lower()


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text or "")
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).lower().split())


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _email_key(email: str) -> str:
    """The throttling key of an email address (a hash: an erased account leaves no address behind)."""
    return hashlib.sha256(b"signin:" + normalise_email(email).encode()).hexdigest()


def _known_key(email_key: str, client: str) -> str:
    return hashlib.sha256(f"{email_key}:{client}".encode()).hexdigest()


def _seconds(wait: dt.timedelta) -> int:
    return max(1, int(wait.total_seconds() + 0.999))


class _Refused(Exception):
    """Carries an AuthError out of a transaction that must still be committed (its failure counts)."""

    def __init__(self, error: AuthError):
        self.error = error


def _subject(user_id: int | None) -> str:
    return f"account:{user_id}" if user_id else "-"


def _text(field: str, value, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "is required")
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        raise ValidationError(field, "is required")
    limit = limit or LIMITS[field]
    if len(value) > limit:
        raise ValidationError(field, f"is too long ({len(value)} characters; at most {limit})")
    if any(unicodedata.category(c)[0] == "C" for c in value):
        raise ValidationError(field, "contains control characters")
    return value


def validate_registration_number(country: str, number: str) -> str:
    number = _text("registration_number", number)
    compact = re.sub(r"[\s.-]", "", number)
    pattern, rule = REG_FORMATS.get(country, (r"[A-Za-z0-9]{4,20}", "use 4 to 20 letters or digits"))
    if not re.fullmatch(pattern, compact):
        digits = sum(c.isdigit() for c in compact)
        others = len(compact) - digits
        got = f"{digits} digits" + (f" and {others} other characters" if others else "")
        raise ValidationError("registration_number", f"{rule}; you entered {got}")
    return compact


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's list (the PyPI package ``zxcvbn``, shipped with
    it: nothing is downloaded)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _compact(text: str) -> str:
    return re.sub(r"[\W_]+", "", _fold(text))


def context_words(email: str = "", name: str | None = None) -> set[str]:
    """Words a password must not contain: the service's name, and the parts of the user's name and
    email address (of 4 letters or more; the email's top-level domain is left out)."""
    local, _, domain = normalise_email(email).partition("@")
    parts = re.split(r"[\W_]+", _fold(local)) + re.split(r"[\W_]+", _fold(domain))[:-1]
    parts += re.split(r"[\W_]+", _fold(name or ""))
    return set(PRODUCT_WORDS) | {w for w in parts if len(w) >= 4}


def _is_common(password: str) -> bool:
    common = common_passwords()
    low, compact = password.lower(), _compact(password)
    core = re.sub(r"^[\d\W_]+|[\d\W_]+$", "", low)  # "Password2024!!!" -> "password"
    repeated = re.fullmatch(r"(.+?)\1+", compact)  # "qwertyqwertyqwerty"
    return (low in common or compact in common or core in common or len(set(compact or low)) <= 2
            or (repeated is not None and (repeated.group(1) in common or len(repeated.group(1)) <= 3)))


def validate_password(password, email: str = "", name: str | None = None) -> str:
    """A new password: 15 to 256 characters (counted after Unicode NFKC normalisation, as stored),
    any characters, no composition rules; not one of the most common passwords, and without the
    service's name or the user's name or email in it. Returns the normalised password."""
    if not isinstance(password, str) or not password:
        raise ValidationError("password", "is required")
    password = unicodedata.normalize("NFKC", password)
    if len(password) > LIMITS["password"]:
        raise ValidationError("password", f"is too long ({len(password)} characters; at most {LIMITS['password']})")
    if len(password) < MIN_PASSWORD:
        raise ValidationError("password", f"must be at least {MIN_PASSWORD} characters (it has {len(password)}); "
                                          "a few unrelated words make a good one")
    if _is_common(password):
        raise ValidationError("password", "is one of the most common passwords, or made from one; choose another")
    compact = _compact(password)
    found = sorted(w for w in context_words(email, name) if w in compact)
    if found:
        raise ValidationError("password", f"must not contain '{found[0]}' (the service's name or part of your "
                                          "name or email address); choose another")
    return password


class Accounts:
    """The account service over one database (SQLite file by default, PostgreSQL by URL)."""

    def __init__(self, url: str, clock: Callable[[], dt.datetime] = utcnow, hasher: PasswordHasher | None = None):
        if url.startswith("sqlite:///"):
            try:
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageUnavailable(f"accounts database unavailable ({exc})") from exc
        connect_args = {"timeout": 5} if url.startswith("sqlite") else {"connect_timeout": 5}
        self.engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self.CounterSession = sessionmaker(self._counter_engine(url, connect_args), expire_on_commit=False)
        self.clock = clock
        self.hasher = hasher or PasswordHasher()  # argon2id with the library's recommended parameters
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        self.migrate()

    def _counter_engine(self, url: str, connect_args: dict):
        """Rate counters may be lost in a power cut, so their commits need not wait for the disk (an
        fsync per answer took the 32-client p95 past 300 ms): on SQLite a second engine on the same
        file with synchronous=NORMAL, on PostgreSQL synchronous_commit=off per transaction."""
        if not url.startswith("sqlite"):
            return self.engine
        engine = create_engine(url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", _sqlite_commits_without_fsync)
        return engine

    # schema ----------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade the schema; records the version so later releases can migrate."""
        import chatbot.cases  # noqa: F401  (its tables live in this database too)

        try:
            Base.metadata.create_all(self.engine)
            with self.Session.begin() as s:
                current = s.scalar(select(func.max(SchemaVersion.version))) or 0
                if current < SCHEMA_VERSION:
                    s.add(SchemaVersion(version=SCHEMA_VERSION))
        except IntegrityError:
            pass  # another process starting at the same time recorded the version first
        except OperationalError as exc:
            raise StorageUnavailable(f"accounts database unavailable ({exc.orig})") from exc

    def _tx(self) -> Session:
        return self.Session.begin()

    def _audit(self, s: Session, event_name: str, actor: str, subject: str, **detail) -> None:
        s.add(AuditEntry(at=self.clock(), event=event_name, actor=actor, subject=subject,
                         detail=json.dumps(detail, sort_keys=True)))

    # registration and verification ----------------------------------------------------------
    def register(self, *, name: str, email: str, profession: str, country: str,
                 registration_number: str, password: str) -> Account | None:
        """A new, pending (or, when the register extract matches, verified) account.

        An email that is already registered gets no error: the caller answers as for a new
        registration (no account enumeration, ASVS 5.0 6.3.8), the same work is done (the password
        is hashed), the existing account is left as it was, and None is returned.
        """
        name = _text("name", name)
        email_n = normalise_email(_text("email", email))
        if not EMAIL_RE.match(email_n):
            raise ValidationError("email", "is not a valid email address")
        if profession not in PROFESSIONS:
            raise ValidationError("profession", f"must be one of {', '.join(PROFESSIONS)}")
        country = country.strip().upper() if isinstance(country, str) else ""
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise ValidationError("country", "must be a two-letter country code, e.g. NL")
        number = validate_registration_number(country, registration_number)
        pw_hash = self.hasher.hash(validate_password(password, email_n, name))
        try:
            with self._tx() as s:
                existing = s.scalar(select(User.id).where(User.email == email_n))
                if existing:
                    self._audit(s, "register.existing_email", "-", _subject(existing))
                    return None
                user = User(email=email_n, name=name, profession=profession, country=country,
                            registration_number=number, password_hash=pw_hash, status="pending",
                            created_at=self.clock())
                s.add(user)
                s.flush()
                self._audit(s, "register", _subject(user.id), _subject(user.id), country=country)
                entry = s.get(RegisterEntry, (country, number))
                if entry is not None and self._surname_matches(name, entry.surname):
                    self._decide(s, user, "verified", "register-import")
                return _account(user)
        except IntegrityError:
            return None  # registered at the same moment by another request: answered alike
        except OperationalError as exc:
            raise StorageUnavailable("accounts database unavailable; please try again later") from exc

    @staticmethod
    def _surname_matches(name: str, surname: str) -> bool:
        full, last = _fold(name), _fold(surname)
        return bool(last) and (full == last or full.endswith(" " + last))

    def _decide(self, s: Session, user: User, status: str, actor: str, reason: str | None = None) -> None:
        user.status = status
        user.decided_at = self.clock()
        user.decided_by = actor
        user.reject_reason = reason
        self._audit(s, f"verification.{status}", actor, _subject(user.id), reason=reason or "")

    def import_register(self, path: Path, actor: str = "cli") -> tuple[int, int]:
        """Load a register extract (CSV: country, registration_number, surname[, profession]).

        Returns (rows imported, pending accounts verified by it). A bad row stops the import with
        its line number, and nothing is imported.
        """
        rows = []
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"country", "registration_number", "surname"} - set(reader.fieldnames or [])
            if missing:
                raise ValidationError("columns", f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for n, row in enumerate(reader, 2):
                try:
                    country = (row["country"] or "").strip().upper()
                    number = validate_registration_number(country, row["registration_number"] or "")
                    surname = _text("name", row["surname"] or "")
                except ValidationError as exc:
                    raise ValidationError(exc.field, f"{path}:{n}: {exc}") from None
                rows.append((country, number, surname, (row.get("profession") or "").strip() or None))
        verified = 0
        with self._tx() as s:
            for country, number, surname, profession in rows:
                entry = s.get(RegisterEntry, (country, number))
                if entry is None:
                    s.add(RegisterEntry(country=country, registration_number=number, surname=surname,
                                        profession=profession))
                else:
                    entry.surname, entry.profession = surname, profession
            s.flush()
            for user in s.scalars(select(User).where(User.status == "pending")):
                entry = s.get(RegisterEntry, (user.country, user.registration_number))
                if entry is not None and self._surname_matches(user.name, entry.surname):
                    self._decide(s, user, "verified", "register-import")
                    verified += 1
            self._audit(s, "register.import", actor, "-", rows=len(rows), verified=verified)
        return len(rows), verified

    def pending(self) -> list[Account]:
        with self.Session() as s:
            return [_account(u) for u in s.scalars(select(User).where(User.status == "pending").order_by(User.id))]

    def all(self) -> list[Account]:
        with self.Session() as s:
            return [_account(u) for u in s.scalars(select(User).order_by(User.id))]

    def exists(self, email: str) -> bool:
        with self.Session() as s:
            return s.scalar(select(User.id).where(User.email == normalise_email(email))) is not None

    def _user(self, s: Session, email: str) -> User:
        user = s.scalar(select(User).where(User.email == normalise_email(email)))
        if user is None:
            raise AccountError(f"no account for {normalise_email(email)}")
        return user

    def approve(self, email: str, actor: str = "cli") -> Account:
        with self._tx() as s:
            user = self._user(s, email)
            self._decide(s, user, "verified", actor)
            return _account(user)

    def reject(self, email: str, reason: str, actor: str = "cli") -> Account:
        reason = _text("reason", reason)
        with self._tx() as s:
            user = self._user(s, email)
            self._decide(s, user, "rejected", actor, reason)
            self._revoke_all(s, user.id)
            return _account(user)

    def disable(self, email: str, actor: str = "cli") -> Account:
        with self._tx() as s:
            user = self._user(s, email)
            user.status = "disabled"
            self._revoke_all(s, user.id)
            self._audit(s, "account.disable", actor, _subject(user.id))
            return _account(user)

    def add_maintainer(self, email: str, password: str | None = None, name: str = "Maintainer",
                       actor: str = "cli") -> Account:
        """Grant the maintainer role to an account, creating a non-HCP account if there is none."""
        email_n = normalise_email(email)
        with self._tx() as s:
            user = s.scalar(select(User).where(User.email == email_n))
            if user is None:
                if not EMAIL_RE.match(email_n):
                    raise ValidationError("email", "is not a valid email address")
                password = validate_password(password, email_n)  # the name is a placeholder here
                # a maintainer-only account can sign in and re-index, but is not an HCP
                user = User(email=email_n, name=_text("name", name), profession="other", country="NL",
                            registration_number="-", password_hash=self.hasher.hash(password),
                            status="maintainer", created_at=self.clock())
                s.add(user)
                s.flush()
            user.is_maintainer = True
            self._audit(s, "maintainer.add", actor, _subject(user.id))
            return _account(user)

    # sign-in and sessions ---------------------------------------------------------------------
    @staticmethod
    def _delay(failures: int, free: int) -> dt.timedelta:
        """The wait after this many failures: none for the first `free`, then 1, 2, 4 ... seconds."""
        if failures < free:
            return dt.timedelta(0)
        return min(MAX_DELAY, dt.timedelta(seconds=2 ** min(failures - free, 20)))

    def _client_wait(self, s: Session, client: str, now: dt.datetime) -> dt.timedelta:
        if not client:
            return dt.timedelta(0)
        recent = s.execute(select(func.count(ClientFailure.id), func.max(ClientFailure.at)).where(
            ClientFailure.client == client, ClientFailure.at > now - CLIENT_WINDOW)).one()
        count, last = recent
        if not count:
            return dt.timedelta(0)
        return max(dt.timedelta(0), last + self._delay(count, FREE_CLIENT_FAILURES) - now)

    def sign_in(self, email: str, password: str, client: str = "") -> tuple[str, Account]:
        """A new session token for correct credentials; AuthError with a safe message otherwise.

        Failures are committed (throttling, audit) before the error is raised. An unknown email and
        a wrong password get the same message after the same work (one password hash checked).
        """
        generic = AuthError("Email or password is incorrect.")
        if not isinstance(email, str) or not isinstance(password, str):
            raise generic
        if len(email) > MAX_SIGN_IN_INPUT or len(password) > MAX_SIGN_IN_INPUT:
            self._verify(self._dummy_hash, "")  # the same work; never truncated and compared
            raise generic
        email_n = normalise_email(email)
        client = (client or "")[:64]
        now = self.clock()
        for attempt in (1, 2):
            try:
                with self._tx() as s:
                    outcome = self._sign_in(s, email_n, password, client, now, generic)
                break
            except IntegrityError:  # two first failures for one address at once: count it again
                if attempt == 2:
                    raise StorageUnavailable("Sign-in is unavailable right now; please try again later.") from None
            except OperationalError as exc:
                raise StorageUnavailable("Sign-in is unavailable right now; please try again later.") from exc
        if isinstance(outcome, AuthError):
            raise outcome
        return outcome

    def _sign_in(self, s: Session, email: str, password: str, client: str, now: dt.datetime,
                 generic: AuthError):
        wait = self._client_wait(s, client, now)
        if wait:
            self._audit(s, "signin.throttled", "-", "-", by="client", seconds=_seconds(wait))
            return AuthError(f"Too many sign-in attempts from your connection. Try again in {_seconds(wait)} seconds.")
        key = _email_key(email)
        throttle = s.get(SignInThrottle, key)
        user = s.scalar(select(User).where(User.email == email))
        subject = _subject(user.id if user else None)
        if throttle is not None and throttle.locked_at is not None:
            self._audit(s, "signin.locked", "-", subject)
            return AuthError("This account is locked after too many failed sign-ins. "
                             "Contact the medical information service to have it unlocked.")
        if throttle is not None and throttle.last_failure_at is not None:
            wait = throttle.last_failure_at + self._delay(throttle.failures, FREE_FAILURES) - now
            known = bool(client) and s.get(KnownClient, _known_key(key, client)) is not None
            if wait > dt.timedelta(0) and not known:
                self._audit(s, "signin.throttled", "-", subject, by="account", seconds=_seconds(wait))
                return AuthError(f"Too many failed sign-ins for this account. Try again in {_seconds(wait)} seconds.")
        if user is None:
            self._verify(self._dummy_hash, password)  # the same work as for a real account
            self._fail(s, key, None, client, now)
            return generic
        if not self._verify(user.password_hash, password):
            self._fail(s, key, user, client, now)
            return generic
        if throttle is not None:
            s.delete(throttle)
        if user.status in ("pending", "rejected", "disabled"):
            self._audit(s, "signin.refused", _subject(user.id), _subject(user.id), status=user.status)
            return AuthError({
                "pending": "Your registration is waiting for verification. You will be able to sign in once it is approved.",
                "rejected": "Your registration was not approved. Contact the medical information service if you think this is a mistake.",
                "disabled": "This account is disabled.",
            }[user.status])
        if client:
            known = s.get(KnownClient, _known_key(key, client))
            if known is None:
                s.add(KnownClient(key=_known_key(key, client), at=now))
            else:
                known.at = now
        token = self._new_session(s, user, now)
        self._audit(s, "signin.success", _subject(user.id), _subject(user.id))
        return token, _account(user)

    def _new_session(self, s: Session, user: User, now: dt.datetime) -> str:
        """A fresh random token (ASVS 5.0 7.2.4: a new token at every authentication)."""
        token = secrets.token_urlsafe(32)
        s.add(SessionRow(token_hash=_hash_token(token), user_id=user.id, created_at=now,
                         last_seen_at=now, expires_at=now + ABSOLUTE_EXPIRY))
        return token

    def _verify(self, pw_hash: str, password: str) -> bool:
        """Whether the password matches, as typed after Unicode NFKC normalisation (NIST SP 800-63B-4);
        a hash made before normalisation was introduced is checked against the raw text as well,
        for every input that normalisation changes (known account or not: the same work)."""
        normalised = unicodedata.normalize("NFKC", password)
        ok = self._check(pw_hash, normalised)
        if normalised != password:
            ok = self._check(pw_hash, password) or ok
        return ok

    def _check(self, pw_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(pw_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _fail(self, s: Session, key: str, user: User | None, client: str, now: dt.datetime) -> None:
        """A failed password check: counted per email address and per client, and audited."""
        if client:
            s.add(ClientFailure(client=client, at=now))
        throttle = s.get(SignInThrottle, key)
        if throttle is None:
            throttle = SignInThrottle(key=key, failures=0)
            s.add(throttle)
        throttle.failures += 1
        throttle.last_failure_at = now
        subject = _subject(user.id if user else None)
        self._audit(s, "signin.failure", "-", subject, failures=throttle.failures,
                    **({} if user else {"reason": "unknown account"}))
        if throttle.failures >= HARD_LOCK_AFTER:
            throttle.locked_at = now
            self._audit(s, "signin.lockout", "-", subject, failures=throttle.failures)

    def unlock(self, email: str, actor: str = "cli") -> None:
        """A maintainer lifts the lock (or the delays) after repeated failed sign-ins."""
        email_n = normalise_email(email)
        with self._tx() as s:
            user = s.scalar(select(User).where(User.email == email_n))
            throttle = s.get(SignInThrottle, _email_key(email_n))
            if user is None and throttle is None:
                raise AccountError(f"no account for {email_n}")
            if throttle is None or not throttle.failures:
                raise AccountError(f"{email_n} is not locked")
            s.delete(throttle)
            self._audit(s, "account.unlock", actor, _subject(user.id if user else None))

    def locked(self) -> list[tuple[Account, int]]:
        """Accounts whose sign-in is locked (needs a maintainer) or delayed, with their failure count."""
        with self.Session() as s:
            rows = {t.key: t for t in s.scalars(select(SignInThrottle).where(SignInThrottle.failures >= FREE_FAILURES))}
            if not rows:
                return []
            out = [(u, rows[_email_key(u.email)]) for u in s.scalars(select(User).order_by(User.id))
                   if _email_key(u.email) in rows]
            return [(_account(u), t.failures) for u, t in sorted(out, key=lambda r: -r[1].failures)]

    def session(self, token) -> Account | None:
        """The account behind a live session token, or None; refreshes the idle timer."""
        if not isinstance(token, str) or not token or len(token) > 128:
            return None
        now = self.clock()
        try:
            with self._tx() as s:
                row = self._live(s, token, now)
                if row is None:
                    return None
                user = s.get(User, row.user_id)
                if user is None or user.status not in ("verified", "maintainer"):
                    return None
                row.last_seen_at = now
                return _account(user)
        except OperationalError:
            return None  # no database, no session: the caller is treated as public

    @staticmethod
    def _live(s: Session, token, now: dt.datetime) -> SessionRow | None:
        if not isinstance(token, str) or not token or len(token) > 128:
            return None
        row = s.get(SessionRow, _hash_token(token))
        if row is None or row.revoked_at is not None or row.expires_at <= now \
                or row.last_seen_at + IDLE_EXPIRY <= now:
            return None
        return row

    def role(self, token) -> str:
        """"hcp" only for a live session of a verified account; "public" for anything else."""
        account = self.session(token)
        return "hcp" if account is not None and account.is_hcp else "public"

    def sign_out(self, token) -> None:
        if not isinstance(token, str) or not token:
            return
        try:
            with self._tx() as s:
                row = s.get(SessionRow, _hash_token(token))
                if row is not None and row.revoked_at is None:
                    row.revoked_at = self.clock()
                    self._audit(s, "signout", _subject(row.user_id), _subject(row.user_id))
        except OperationalError as exc:
            raise StorageUnavailable("Sign-out is unavailable right now; please try again later.") from exc

    def _revoke_all(self, s: Session, user_id: int) -> None:
        for row in s.scalars(select(SessionRow).where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))):
            row.revoked_at = self.clock()

    def _reauthenticated(self, s: Session, token, password) -> User:
        """The signed-in user, once the current password is given again (failures are throttled and
        audited like sign-in failures: AuthError then, committed by the caller's `_reauth`)."""
        now = self.clock()
        row = self._live(s, token, now)
        user = s.get(User, row.user_id) if row is not None else None
        if user is None or user.status not in ("verified", "maintainer"):
            raise AuthError("Your session has ended; please sign in again.")
        key = _email_key(user.email)
        throttle = s.get(SignInThrottle, key)
        if throttle is not None and (throttle.locked_at is not None or (
                throttle.last_failure_at is not None
                and throttle.last_failure_at + self._delay(throttle.failures, FREE_FAILURES) > now)):
            self._audit(s, "reauth.throttled", _subject(user.id), _subject(user.id))
            raise _Refused(AuthError("Too many failed attempts; please try again later."))
        if not isinstance(password, str) or len(password) > MAX_SIGN_IN_INPUT \
                or not self._verify(user.password_hash, password):
            self._fail(s, key, user, "", now)
            raise _Refused(AuthError("The current password is incorrect."))
        if throttle is not None:
            s.delete(throttle)
        return user

    def _reauth(self, token, password, change: Callable[[Session, User], None], event_name: str) -> str:
        """Re-authenticate, apply `change`, end every session of the account and return a new token
        for this one (ASVS 5.0 7.2.4, 7.4.3; NIST SP 800-63B-4 7.1)."""
        with self._tx() as s:
            try:
                user = self._reauthenticated(s, token, password)
            except _Refused as refused:
                error = refused.error  # raised once the failure's counters and audit entry are committed
            else:
                change(s, user)
                self._revoke_all(s, user.id)
                new = self._new_session(s, user, self.clock())
                self._audit(s, event_name, _subject(user.id), _subject(user.id))
                return new
        raise error

    def reauthenticate(self, token, password) -> str:
        """Confirm the password for a sensitive step: the old token ends, a new one is returned."""
        return self._reauth(token, password, lambda s, u: None, "reauth.success")

    def change_password(self, token, current, new) -> str:
        """Needs the current password; ends every other session; returns this session's new token."""
        def change(s: Session, user: User) -> None:
            user.password_hash = self.hasher.hash(validate_password(new, user.email, user.name))

        return self._reauth(token, current, change, "password.change")

    def change_email(self, token, current, new_email) -> str:
        """Needs the current password; ends every other session; returns this session's new token."""
        email_n = normalise_email(_text("email", new_email))
        if not EMAIL_RE.match(email_n):
            raise ValidationError("email", "is not a valid email address")

        def change(s: Session, user: User) -> None:
            if s.scalar(select(User.id).where(User.email == email_n, User.id != user.id)):
                raise ValidationError("email", "cannot be used for this account; choose another")
            user.email = email_n

        try:
            return self._reauth(token, current, change, "email.change")
        except IntegrityError:
            raise ValidationError("email", "cannot be used for this account; choose another") from None

    # erasure and audit ------------------------------------------------------------------------
    def delete(self, email: str, actor: str = "cli") -> None:
        """GDPR erasure: the account and its sessions go; audit rows keep only an opaque id."""
        with self._tx() as s:
            user = self._user(s, email)
            uid = user.id
            for row in s.scalars(select(SessionRow).where(SessionRow.user_id == uid)):
                s.delete(row)
            throttle = s.get(SignInThrottle, _email_key(user.email))
            if throttle is not None:
                s.delete(throttle)
            s.delete(user)
            self._audit(s, "account.delete", actor, _subject(uid))

    def audit(self, since: dt.datetime | None = None) -> list[AuditEntry]:
        with self.Session() as s:
            q = select(AuditEntry).order_by(AuditEntry.id)
            if since is not None:
                q = q.where(AuditEntry.at >= since)
            return list(s.scalars(q))

    def record(self, event_name: str, actor: str, **detail) -> None:
        """An audit entry for actions outside this module (maintainer re-index runs)."""
        with self._tx() as s:
            self._audit(s, event_name, actor, "-", **detail)

    # rate limits ------------------------------------------------------------------------------
    def count_request(self, key: str, limit: int, window: dt.timedelta) -> float:
        """Count one request of `key` in the current fixed window, in this database, so that every
        process and replica shares the count. Returns 0 while the count is within `limit`, else the
        seconds until the window ends."""
        now = self.clock()
        start = window_start(now, window)
        count = self.add_requests(key, start, 1)
        return 0.0 if count <= limit else (start + window - now).total_seconds()

    def add_requests(self, key: str, start: dt.datetime, n: int) -> int:
        """Add `n` requests of `key` to the window that begins at `start`; returns the window's count,
        every process's requests included. One atomic statement: INSERT ... ON CONFLICT DO UPDATE
        count = count + n RETURNING count."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(RateCounter).values(key=key[:96], window_start=start, count=n)
        stmt = stmt.on_conflict_do_update(index_elements=[RateCounter.key, RateCounter.window_start],
                                          set_={"count": RateCounter.count + n}).returning(RateCounter.count)
        try:
            with self.CounterSession.begin() as s:
                if s.bind.dialect.name == "postgresql":
                    s.execute(text("SET LOCAL synchronous_commit TO OFF"))
                count = s.execute(stmt).scalar_one()
                if count == n:  # the first requests of a new window: windows that are over go
                    s.execute(delete(RateCounter).where(RateCounter.window_start < start))
        except OperationalError as exc:
            raise StorageUnavailable("accounts database unavailable") from exc
        return count

    # feedback (anonymous) ---------------------------------------------------------------------
    def add_feedback(self, question: str, kind: str, liked: bool) -> None:
        with self._tx() as s:
            s.add(Feedback(at=self.clock(), question=(question or "")[:2000], kind=kind[:32], liked=bool(liked)))

    def add_unanswered(self, question: str, kind: str, language: str, nearest: str) -> None:
        with self._tx() as s:
            s.add(Unanswered(at=self.clock(), question=(question or "")[:2000], kind=kind[:32],
                             language=language[:8], nearest=(nearest or "")[:400]))

    def review(self, days: int = 30) -> list[dict]:
        """The questions of the last `days` days that got "I don't know", "out of scope" or a thumbs-down,
        most frequent first, with the reply kind and the nearest passage (for maintainers; anonymous)."""
        since = self.clock() - dt.timedelta(days=days)
        out: dict[tuple[str, str], dict] = {}
        with self.Session() as s:
            for u in s.scalars(select(Unanswered).where(Unanswered.at >= since)):
                row = out.setdefault((u.question.strip().lower(), u.kind), {
                    "question": u.question, "kind": u.kind, "language": u.language, "nearest": u.nearest,
                    "times": 0, "thumbs_down": 0, "last": u.at.isoformat(timespec="seconds")})
                row["times"] += 1
            for f in s.scalars(select(Feedback).where(Feedback.at >= since, Feedback.liked.is_(False))):
                row = out.setdefault((f.question.strip().lower(), f.kind), {
                    "question": f.question, "kind": f.kind, "language": "", "nearest": "", "times": 0,
                    "thumbs_down": 0, "last": f.at.isoformat(timespec="seconds")})
                row["thumbs_down"] += 1
        return sorted(out.values(), key=lambda r: (-(r["times"] + r["thumbs_down"]), r["question"]))

    def feedback_summary(self, top: int = 5) -> dict:
        with self.Session() as s:
            rows = s.execute(select(Feedback.kind, Feedback.liked, func.count()).group_by(Feedback.kind, Feedback.liked)).all()
            by_kind: dict[str, dict[str, int]] = {}
            for kind, liked, n in rows:
                by_kind.setdefault(kind, {"likes": 0, "dislikes": 0})["likes" if liked else "dislikes"] += n
            worst = s.execute(select(Feedback.question, func.count()).where(Feedback.liked.is_(False))
                              .group_by(Feedback.question).order_by(func.count().desc()).limit(top)).all()
            return {"by_kind": by_kind, "most_disliked": [(q, n) for q, n in worst]}


def _sqlite_commits_without_fsync(dbapi_conn, _record):
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: no fsync at commit, never corrupt


def window_start(now: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """The start of the fixed window of length `window` that holds `now` (windows count from the epoch)."""
    epoch = dt.datetime(1970, 1, 1)
    return now - (now - epoch) % window


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
