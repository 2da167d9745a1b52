"""Side-effect cases (pharmacovigilance, EMA GVP Module VI).

A company that runs a chat on its own site must screen it for reports of side effects and forward
valid cases within fixed deadlines (serious 15 days, non-serious 90 days from receipt). Every message
the engine treats as a side-effect report becomes a *case* in the accounts database before the reply
is returned; if the database cannot take it, the case goes to ``data/adverse_events.jsonl`` and the
log says so loudly (``cases import-fallback`` brings those lines in later). Nothing is dropped.

What the case notes about the text (medicines, reactions, who had it) comes from data:
corpus/glossary.yaml (medicine names) and corpus/safety.yaml (words for the patient, unnamed
medicines and reactions, in English and Dutch). The whole message is kept, so a reaction that the
list does not know is not lost: the "suspected reaction" criterion is also met when the reply-kind
model itself (probability 0.5 or more, not just the recall cut-off) read the message as a report.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import DateTime, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from chatbot.accounts import (
    EMAIL_RE,
    AccountError,
    Accounts,
    Base,
    StorageUnavailable,
    ValidationError,
    utcnow,
)
from chatbot.policy import SUPPORTED, Glossary, load_glossary

log = logging.getLogger("chatbot.cases")

STATUSES = ("new", "forwarded", "closed")
# new -> forwarded -> closed; a case may also be closed unforwarded (not valid, a duplicate)
MOVES = {"new": ("forwarded", "closed"), "forwarded": ("closed",), "closed": ()}
FORWARD_FLAG = dt.timedelta(days=10)  # flagged when still new after this: 5 days left for a serious case
DEADLINES = {"serious": 15, "non_serious": 90}  # days from receipt (GVP VI; trk-facts.md)
CRITERIA = ("reporter", "patient", "suspect_medicine", "suspected_reaction")
CONTACT_LIMIT = 200
CONSENT = {
    "en": ("If you wish, leave your contact details so that our drug safety team can ask you about this "
           "side effect. They are stored with your report, seen only by the safety team, and used for "
           "nothing else. This is optional: your report has been received either way."),
    "nl": ("Als u wilt, laat dan uw contactgegevens achter, zodat ons team voor geneesmiddelenbewaking u "
           "over deze bijwerking kan benaderen. Ze worden bij uw melding bewaard, alleen door dat team "
           "gezien en nergens anders voor gebruikt. Dit is vrijwillig: uw melding is hoe dan ook ontvangen."),
}
EXPORT_FIELDS = (
    "id", "received_at", "age_days", "flag", "status", "language", "audience", "message", "context", "reply",
    "medicines", "reactions", *CRITERIA, "flagged_by", "probability", "deadline_serious",
    "deadline_non_serious", "forwarded_at", "closed_at", "contact_name", "contact", "contact_consent_at",
)


class Case(Base):
    """One side-effect report, from its receipt (the clock's start) to its closing."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True, index=True)  # random: for the contact form
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)  # UTC
    language: Mapped[str] = mapped_column(String(8))
    audience: Mapped[str] = mapped_column(String(16))  # public | hcp: who sent it
    message: Mapped[str] = mapped_column(Text)
    context: Mapped[str] = mapped_column(Text, default="[]")  # the chat's earlier messages (JSON list)
    reply: Mapped[str] = mapped_column(Text, default="")
    medicines: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    reactions: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    criteria: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the four minimum criteria
    flagged_by: Mapped[str] = mapped_column(String(16), default="model")  # model | cut-off | import
    probability: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    forwarded_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    contact: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON; maintainers only


# -- what the text shows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseTerms:
    """corpus/safety.yaml, compiled: words for the patient and unnamed medicines per language, and
    reaction words mapped to an English term."""

    patient: re.Pattern
    unnamed_medicine: re.Pattern
    reactions: dict[str, str]  # word -> term
    reaction_pattern: re.Pattern


def _words(terms) -> re.Pattern:
    terms = sorted({str(t).lower() for t in terms}, key=len, reverse=True)
    if not terms:
        return re.compile(r"(?!x)x")
    return re.compile(r"(?<![\w'])(" + "|".join(re.escape(t) for t in terms) + r")(?![\w'])", re.IGNORECASE)


def load_case_terms(corpus_dir: Path) -> CaseTerms:
    from chatbot.corpus import CorpusError, load_yaml

    path = Path(corpus_dir) / "safety.yaml"
    data = load_yaml(path)
    by_lang = {}
    for key in ("patient", "unnamed_medicine"):
        value = data.get(key) or {}
        if not isinstance(value, dict) or set(value) - set(SUPPORTED) or \
                not all(isinstance(v, list) for v in value.values()):
            raise CorpusError(path, "must give a list of words for en and nl", field=key)
        by_lang[key] = [w for words in value.values() for w in words]
    reactions = data.get("reactions") or {}
    if not isinstance(reactions, dict) or not all(isinstance(v, list) for v in reactions.values()):
        raise CorpusError(path, "must map each reaction term to a list of words", field="reactions")
    word_to_term = {str(w).lower(): str(term) for term, words in reactions.items() for w in words}
    return CaseTerms(_words(by_lang["patient"]), _words(by_lang["unnamed_medicine"]), word_to_term,
                     _words(word_to_term))


def assess(text: str, glossary: Glossary, terms: CaseTerms, model_says_report: bool) -> dict:
    """Medicines and reactions found in a report, and which of the four minimum criteria of a valid
    case (GVP VI.B.2) it shows. The chat user counts as an identifiable reporter."""
    medicines = sorted(glossary.drugs_in(text))
    unnamed = not medicines and bool(terms.unnamed_medicine.search(text))
    reactions = sorted({terms.reactions[m.group(1).lower()] for m in terms.reaction_pattern.finditer(text)})
    stated = not reactions and model_says_report
    criteria = {"reporter": True, "patient": bool(terms.patient.search(text)),
                "suspect_medicine": bool(medicines), "suspected_reaction": bool(reactions) or stated}
    return {"medicines": medicines + (["(unnamed medicine)"] if unnamed else []),
            "reactions": reactions + (["(stated in text)"] if stated else []), "criteria": criteria}


# -- the cases in the database ------------------------------------------------------------------------
def _loads(text: str | None, default):
    try:
        return json.loads(text) if text else default
    except json.JSONDecodeError:
        return default


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") + "Z" if value else ""


class Cases:
    """The case register, in the accounts database (SQLite or PostgreSQL) beside the audit log."""

    def __init__(self, accounts: Accounts):
        self.accounts = accounts

    @property
    def clock(self):
        return self.accounts.clock

    def add(self, *, message: str, reply: str, language: str, audience: str, context: list[str] = (),
            assessed: dict, flagged_by: str, probability: float, ref: str | None = None,
            received_at: dt.datetime | None = None) -> Case:
        """Write a case (one committed transaction, audited)."""
        with self.accounts._tx() as s:
            case = Case(ref=ref or secrets.token_urlsafe(18), received_at=received_at or self.clock(),
                        language=language[:8], audience=audience[:16], message=message, reply=reply,
                        context=json.dumps(list(context), ensure_ascii=False),
                        medicines=json.dumps(assessed["medicines"]), reactions=json.dumps(assessed["reactions"]),
                        criteria=json.dumps(assessed["criteria"], sort_keys=True), flagged_by=flagged_by[:16],
                        probability=float(probability), status="new")
            s.add(case)
            s.flush()
            self.accounts._audit(s, "case.received", "-", f"case:{case.id}", flagged_by=flagged_by)
            return case

    def _get(self, s: Session, case_id) -> Case:
        try:
            number = int(str(case_id).strip().lstrip("#"))
        except ValueError:
            raise AccountError(f"'{case_id}' is not a case number (the list shows them, e.g. 12)") from None
        case = s.get(Case, number)
        if case is None:
            raise AccountError(f"there is no case {number}")
        return case

    def row(self, case: Case, now: dt.datetime | None = None, contact: bool = True) -> dict:
        """A case as the maintainers see it (also the export's row)."""
        now = now or self.clock()
        criteria = _loads(case.criteria, {})
        details = _loads(case.contact, None) or {}
        row = {
            "id": case.id, "received_at": _iso(case.received_at), "age_days": (now - case.received_at).days,
            "flag": "not forwarded after 10 days" if case.status == "new" and now - case.received_at > FORWARD_FLAG
            else "", "status": case.status, "language": case.language, "audience": case.audience,
            "message": case.message, "context": _loads(case.context, []), "reply": case.reply,
            "medicines": _loads(case.medicines, []), "reactions": _loads(case.reactions, []),
            **{k: bool(criteria.get(k)) for k in CRITERIA}, "flagged_by": case.flagged_by,
            "probability": round(case.probability, 3),
            "deadline_serious": (case.received_at + dt.timedelta(days=DEADLINES["serious"])).date().isoformat(),
            "deadline_non_serious": (case.received_at + dt.timedelta(days=DEADLINES["non_serious"])).date().isoformat(),
            "forwarded_at": _iso(case.forwarded_at), "closed_at": _iso(case.closed_at),
        }
        if contact:
            row.update(contact_name=details.get("name", ""), contact=details.get("contact", ""),
                       contact_consent_at=details.get("consent_at", ""))
        return row

    def list(self, actor: str, status: str | None = None) -> list[dict]:
        """All cases, oldest open ones first (a view, audited)."""
        if status is not None and status not in STATUSES:
            raise AccountError(f"unknown status '{status}': use one of {', '.join(STATUSES)}")
        now = self.clock()
        with self.accounts._tx() as s:
            q = select(Case).order_by(Case.id)
            if status:
                q = q.where(Case.status == status)
            rows = [self.row(c, now) for c in s.scalars(q)]
            self.accounts._audit(s, "cases.view", actor, "-", count=len(rows), status=status or "all")
        order = {"new": 0, "forwarded": 1, "closed": 2}
        return sorted(rows, key=lambda r: (order[r["status"]], r["received_at"], r["id"]))

    def mark(self, case_id, status: str, actor: str) -> dict:
        """Move a case on: new -> forwarded -> closed (or new -> closed); audited."""
        status = (status or "").strip().lower()
        if status not in STATUSES:
            raise AccountError(f"unknown status '{status}': use one of {', '.join(STATUSES)}")
        with self.accounts._tx() as s:
            case = self._get(s, case_id)
            if status not in MOVES[case.status]:
                allowed = " or ".join(MOVES[case.status]) or "nothing (it is closed)"
                raise AccountError(f"case {case.id} is {case.status}: it can become {allowed}, not {status}")
            now = self.clock()
            self.accounts._audit(s, "case.status", actor, f"case:{case.id}", before=case.status, after=status)
            case.status = status
            if status == "forwarded":
                case.forwarded_at = now
            else:
                case.closed_at = now
            return self.row(case, now, contact=False)

    def add_contact(self, ref: str, contact: str, name: str = "", consent: bool = False) -> None:
        """Contact details the reporter chose to leave after the reply, with their consent; audited
        (without the details themselves)."""
        contact, name = check_contact(contact, name, consent)
        if not isinstance(ref, str) or not ref:
            raise AccountError("there is no report to add contact details to")
        with self.accounts._tx() as s:
            case = s.scalar(select(Case).where(Case.ref == ref))
            if case is None:
                raise AccountError("there is no report to add contact details to")
            case.contact = json.dumps({"name": name, "contact": contact, "consent_at": _iso(self.clock()),
                                       "consent_text": CONSENT.get(case.language, CONSENT["en"])},
                                      ensure_ascii=False)
            self.accounts._audit(s, "case.contact", "reporter", f"case:{case.id}")

    def export(self, fmt: str, actor: str) -> str:
        """Every case with its contact details, as CSV (spreadsheet-safe) or JSON; audited."""
        fmt = (fmt or "").lower()
        if fmt not in ("csv", "json"):
            raise AccountError(f"unknown export format '{fmt}': use csv or json")
        now = self.clock()
        with self.accounts._tx() as s:
            rows = [self.row(c, now) for c in s.scalars(select(Case).order_by(Case.id))]
            self.accounts._audit(s, "cases.export", actor, "-", format=fmt, count=len(rows))
        if fmt == "json":
            return json.dumps(rows, ensure_ascii=False, indent=2)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _cell(r[k]) for k in EXPORT_FIELDS})
        return out.getvalue()

    def import_fallback(self, path: Path, actor: str) -> int:
        """Bring the reports written to the JSONL file while the database was unavailable (and those
        logged there before cases existed) into the register; the file is then renamed. Returns how
        many cases were added (a report already in the register by its reference is skipped)."""
        if not path.exists():
            return 0
        added = 0
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AccountError(f"{path}:{n}: not valid JSON ({exc.msg}); nothing imported") from None
        with self.accounts.Session() as s:
            known = set(s.scalars(select(Case.ref)))
        for r in records:
            if r.get("kind") == "contact" or r.get("ref") in known:
                continue
            received = dt.datetime.fromisoformat(str(r.get("received_at") or r.get("ts")).replace("Z", "+00:00"))
            received = received.astimezone(dt.timezone.utc).replace(tzinfo=None) if received.tzinfo else received
            self.add(message=r.get("message") or r.get("text", ""), reply=r.get("reply", ""),
                     language=r.get("language", "en"), audience=r.get("audience") or r.get("reporter", "public"),
                     context=r.get("context", []), assessed=r.get("assessed") or {
                         "medicines": r.get("medicines", []), "reactions": [], "criteria": {"reporter": True}},
                     flagged_by=r.get("flagged_by", "import"), probability=r.get("probability", 0.0),
                     ref=r.get("ref"), received_at=received)
            added += 1
        for r in records:  # contact details left while the database was away
            if r.get("kind") == "contact":
                try:
                    self.add_contact(r["ref"], r.get("contact", ""), r.get("name", ""), consent=True)
                except AccountError as exc:
                    log.error("contact details in %s not imported: %s", path, exc)
        path.rename(path.with_name(f"{path.stem}.imported-{self.clock():%Y%m%dT%H%M%S}{path.suffix}"))
        self.accounts.record("cases.import", actor, count=added)
        return added


def check_contact(contact, name, consent: bool) -> tuple[str, str]:
    """The contact details as they will be kept; ValidationError naming the field otherwise."""
    if not consent:
        raise ValidationError("consent", "is needed to keep your contact details")
    contact = contact.strip() if isinstance(contact, str) else ""
    name = name.strip() if isinstance(name, str) else ""
    if not contact:
        raise ValidationError("contact", "is required (an email address or a phone number)")
    if len(contact) > CONTACT_LIMIT or len(name) > CONTACT_LIMIT:
        raise ValidationError("contact", f"is too long (at most {CONTACT_LIMIT} characters)")
    digits = sum(c.isdigit() for c in contact)
    if not EMAIL_RE.match(contact) and not (digits >= 6 and re.fullmatch(r"[\d\s()+./-]+", contact)):
        raise ValidationError("contact", "must be an email address or a phone number")
    return contact, name


def _cell(value) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (OWASP CSV injection)."""
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# -- the engine's side: record every report, whatever happens -----------------------------------------
class CaseLog:
    """What the answer engine writes a report to: the case register, or, when the database cannot
    take it, the JSONL file, with a loud log line. A report is never dropped: if the file cannot be
    written either, the whole case is logged at CRITICAL level."""

    def __init__(self, settings, accounts: Accounts | None = None):
        self.settings = settings
        self._cases = Cases(accounts) if accounts is not None else None
        self.glossary = load_glossary(settings.corpus_dir)
        self.terms = load_case_terms(settings.corpus_dir)

    @property
    def fallback_path(self) -> Path:
        return Path(self.settings.data_dir) / "adverse_events.jsonl"

    def cases(self) -> Cases:
        if self._cases is None:
            self._cases = Cases(Accounts(self.settings.db_url))
        return self._cases

    def record(self, *, message: str, reply: str, language: str, audience: str, context: list[str],
               probability: float, model_says_report: bool) -> str:
        """Write the case; returns its reference (for the optional contact form)."""
        assessed = assess(message, self.glossary, self.terms, model_says_report)
        ref = secrets.token_urlsafe(18)
        case = dict(message=message, reply=reply, language=language, audience=audience, context=list(context),
                    assessed=assessed, flagged_by="model" if model_says_report else "cut-off",
                    probability=round(float(probability), 3), ref=ref)
        try:
            self.cases().add(**case)
        except Exception as exc:  # noqa: BLE001 - any failure: the report must still be kept
            self._fallback({**case, "received_at": _iso(utcnow())}, exc)
        return ref

    def add_contact(self, ref: str, contact: str, name: str = "", consent: bool = False) -> None:
        """Contact details for a case; kept in the JSONL file beside the case when that is where the
        case went, or when the database is unavailable now."""
        contact, name = check_contact(contact, name, consent)
        record = {"kind": "contact", "ref": ref, "contact": contact, "name": name}
        try:
            self.cases().add_contact(ref, contact, name, consent)
        except StorageUnavailable as exc:
            self._fallback(record, exc)
        except AccountError as exc:
            if not self._in_fallback(ref):
                raise
            self._fallback(record, exc)
        except Exception as exc:  # noqa: BLE001 - the database is away: keep them with the case
            self._fallback(record, exc)

    def _in_fallback(self, ref: str) -> bool:
        path = self.fallback_path
        return bool(ref) and path.exists() and f'"ref": "{ref}"' in path.read_text(encoding="utf-8")

    def _fallback(self, record: dict, exc: BaseException) -> None:
        line = json.dumps({**record, "fallback": f"{type(exc).__name__}: {exc}"[:500]}, ensure_ascii=False)
        try:
            self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.fallback_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as file_exc:
            log.critical("SIDE-EFFECT REPORT NOT STORED: database (%s) and %s (%s) both failed; the case "
                         "follows, enter it by hand: %s", exc, self.fallback_path, file_exc, line)
            return
        log.critical("SIDE-EFFECT REPORT NOT IN THE DATABASE (%s): written to %s; run "
                     "`python -m chatbot cases import-fallback` once the database is back", exc, self.fallback_path)
