"""Load and validate the Markdown corpus (YAML front matter + body)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

AUDIENCES = ("public", "hcp")
LANGUAGES = ("en", "nl")
REQUIRED = ("id", "title", "audience", "language", "sources", "reviewed")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,80}$")


class CorpusError(Exception):
    """A corpus file is unusable; the message names the file, and the line and field where known."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        where = self.path + (f":{line}" if line else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


@dataclass(frozen=True)
class Source:
    title: str
    ref: str  # URL or citation

    def as_text(self) -> str:
        return f"{self.title} ({self.ref})" if self.ref else self.title


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    audience: str
    language: str
    sources: tuple[Source, ...]
    reviewed: str
    body: str
    path: str
    body_line: int = 1  # line number of the first body line in the file
    content_hash: str = field(default="")

    def sources_json(self) -> str:
        return json.dumps([{"title": s.title, "ref": s.ref} for s in self.sources], ensure_ascii=False)


# libyaml's loader when PyYAML has it (same results as safe_load, a tenth of the time: the pure-Python
# parser was 0.19 s of a 2.6 s index build)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> dict:
    """A data file under corpus/ (glossary.yaml, safety.yaml): its mapping, {} when the file is
    absent or empty; malformed YAML is a CorpusError naming the line."""
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CorpusError(path, f"malformed YAML ({getattr(exc, 'problem', exc)})",
                          line=mark.line + 1 if mark else None) from None


def _front_matter(path: Path, text: str) -> tuple[dict, str, int]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise CorpusError(path, "missing front matter: the file must start with a '---' line", line=1)
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            break
    else:
        raise CorpusError(path, "front matter is not closed by a '---' line", line=1)
    try:
        meta = yaml.load("\n".join(lines[1:i]), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        raise CorpusError(path, f"malformed YAML front matter ({getattr(exc, 'problem', exc)})", line=line) from None
    if not isinstance(meta, dict):
        raise CorpusError(path, "front matter must be a mapping of fields", line=2)
    return meta, "\n".join(lines[i + 1 :]), i + 2


def _field_line(text: str, name: str) -> int | None:
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{name}:"):
            return n
    return None


def _sources(path: Path, text: str, raw) -> tuple[Source, ...]:
    line = _field_line(text, "sources")
    if not isinstance(raw, list) or not raw:
        raise CorpusError(path, "must be a non-empty list of sources", line=line, field="sources")
    out = []
    for n, item in enumerate(raw, 1):
        if isinstance(item, str) and item.strip():
            out.append(Source(item.strip(), ""))
            continue
        if not isinstance(item, dict) or not str(item.get("title", "")).strip():
            raise CorpusError(path, f"source {n} needs a 'title'", line=line, field="sources")
        ref = str(item.get("url") or item.get("citation") or "").strip()
        if not ref:
            raise CorpusError(path, f"source {n} needs a 'url' or 'citation'", line=line, field="sources")
        out.append(Source(str(item["title"]).strip(), ref))
    return tuple(out)


def parse_document(path: Path) -> Document:
    """Parse one corpus file, raising CorpusError naming the file, line and field on any problem."""
    raw = path.read_bytes()
    if not raw.strip():
        raise CorpusError(path, "file is empty")
    if b"\x00" in raw:
        raise CorpusError(path, "file is binary, not UTF-8 Markdown")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(path, f"file is not valid UTF-8 text (byte {exc.start})") from None
    meta, body, body_line = _front_matter(path, text)
    for name in REQUIRED:
        if meta.get(name) in (None, "", []):
            raise CorpusError(path, "missing required field", line=1, field=name)
    doc_id = str(meta["id"]).strip()
    if not ID_RE.match(doc_id):
        raise CorpusError(
            path, f"'{doc_id}' is not a slug (lower-case letters, digits, '-')",
            line=_field_line(text, "id"), field="id",
        )
    for name, allowed in (("audience", AUDIENCES), ("language", LANGUAGES)):
        if meta[name] not in allowed:
            raise CorpusError(
                path, f"'{meta[name]}' is not one of {', '.join(allowed)}",
                line=_field_line(text, name), field=name,
            )
    reviewed = meta["reviewed"]
    if isinstance(reviewed, str):
        try:
            reviewed = dt.date.fromisoformat(reviewed)
        except ValueError:
            raise CorpusError(path, f"'{reviewed}' is not a date (YYYY-MM-DD)",
                              line=_field_line(text, "reviewed"), field="reviewed") from None
    if not isinstance(reviewed, dt.date):
        raise CorpusError(path, "must be a date (YYYY-MM-DD)", line=_field_line(text, "reviewed"), field="reviewed")
    if not body.strip():
        raise CorpusError(path, "document has front matter but no text", line=body_line)
    sources = _sources(path, text, meta["sources"])
    title = str(meta["title"]).strip()
    digest = hashlib.sha256(
        json.dumps([doc_id, title, meta["audience"], meta["language"], [s.as_text() for s in sources], body])
        .encode()
    ).hexdigest()[:16]
    return Document(
        id=doc_id, title=title, audience=meta["audience"], language=meta["language"],
        sources=sources, reviewed=reviewed.isoformat(), body=body.strip("\n"), path=str(path),
        body_line=body_line, content_hash=digest,
    )


def load_corpus(corpus_dir: Path) -> list[Document]:
    """Load every ``*.md`` file below corpus_dir; any bad file or duplicate id raises CorpusError."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusError(corpus_dir, "corpus directory does not exist")
    docs: list[Document] = []
    seen: dict[str, str] = {}
    for path in sorted(corpus_dir.rglob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        doc = parse_document(path)
        if doc.id in seen:
            raise CorpusError(path, f"duplicate id '{doc.id}' (also used by {seen[doc.id]})", field="id")
        seen[doc.id] = str(path)
        docs.append(doc)
    if not docs:
        raise CorpusError(corpus_dir, "no Markdown documents found")
    return docs
