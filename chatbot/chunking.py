"""Split documents into heading-aware chunks with stable ids, and chunks into sentences."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from chatbot.corpus import Document

HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|et al|vs|approx|Dr|Fig|No|ca|bijv|o\.a|d\.w\.z|nl)\.)$", re.IGNORECASE)
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9À-Ý])")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


@dataclass(frozen=True)
class Chunk:
    id: str
    doc_id: str
    title: str
    heading: str
    audience: str
    language: str
    sources_json: str
    text: str
    position: int

    def metadata(self) -> dict:
        return {
            "doc_id": self.doc_id, "title": self.title, "heading": self.heading,
            "audience": self.audience, "language": self.language, "sources": self.sources_json,
            "position": self.position,
        }

    @classmethod
    def from_record(cls, chunk_id: str, text: str, meta: dict) -> Chunk:
        return cls(
            id=chunk_id, doc_id=meta["doc_id"], title=meta["title"], heading=meta["heading"],
            audience=meta["audience"], language=meta["language"], sources_json=meta["sources"],
            text=text, position=int(meta["position"]),
        )

    def sentence_embed_text(self, sentence: str) -> str:
        """A sentence is embedded with its title and section, so "Fusion partners" informs its meaning."""
        section = self.heading.split(" > ")[-1]
        return f"{self.title} - {section}: {sentence}"

    def embed_text(self) -> str:
        """What the dense index sees: the chunk with its title and heading for context."""
        return f"{self.title} - {self.heading}\n{self.text}"


def split_sentences(text: str) -> list[str]:
    """Sentences of a chunk, each an exact substring of it (list bullets dropped)."""
    out: list[str] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        if not line or line.startswith("#") or line.startswith("|"):
            continue
        parts = _SPLIT.split(line)
        merged: list[str] = []
        for part in parts:
            if merged and _ABBREV.search(merged[-1]):
                start = line.find(merged[-1])
                end = line.find(part, start + len(merged[-1])) + len(part)
                merged[-1] = line[start:end]
            else:
                merged.append(part)
        out.extend(s.strip() for s in merged if len(s.strip()) > 2)
    return out


def _split_sections(doc: Document) -> list[tuple[str, str]]:
    """(heading, text) of each section: "H2", "H2 > H3", or the title for text before the first H2."""
    out = []
    for section in MarkdownHeaderTextSplitter(HEADERS, strip_headers=True).split_text(doc.body):
        path = [section.metadata[k] for _, k in HEADERS if k in section.metadata]
        heading = " > ".join(path[1:] if len(path) > 1 else path)
        out.append((heading or doc.title, section.page_content))
    return out


def section_headings(doc: Document) -> list[str]:
    return [heading for heading, _ in _split_sections(doc)]


def chunk_document(doc: Document, chunk_size: int, chunk_overlap: int = 0) -> list[Chunk]:
    """Chunks of one document, split at Markdown headings and then by size."""
    sizer = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size, chunk_overlap=chunk_overlap, separators=["\n\n", "\n", ". ", " "],
        keep_separator="end",
    )
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for heading, text in _split_sections(doc):
        for piece in sizer.split_text(text):
            piece = piece.strip()
            if not piece:
                continue
            digest = hashlib.sha1(f"{doc.title}\n{heading}\n{piece}".encode()).hexdigest()[:12]
            n = seen.get(digest, 0)
            seen[digest] = n + 1
            chunk_id = f"{doc.id}:{digest}" + (f"-{n}" if n else "")
            chunks.append(Chunk(
                id=chunk_id, doc_id=doc.id, title=doc.title, heading=heading,
                audience=doc.audience, language=doc.language, sources_json=doc.sources_json(),
                text=piece, position=len(chunks),
            ))
    return chunks


def chunk_corpus(docs: list[Document], chunk_size: int, chunk_overlap: int = 0) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d, chunk_size, chunk_overlap)]
