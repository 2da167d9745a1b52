"""Suggested next questions: passage questions of the sections nearest the one an answer used.

Every section of every text has questions it answers (``corpus/questions/``), indexed with its
passages. After a reply that quotes a passage, the sections nearest that passage by meaning each
offer their most typical question in the user's language: one per section, never one of a section
the reply already quoted, never the question just asked (or one that means the same), and for the
public never a question of a text for professionals.
"""

from __future__ import annotations

import re
import weakref
from collections import Counter

import numpy as np

from chatbot.retrieval import HCP, PUBLIC, Snapshot

SUGGESTIONS = 3
SAME_QUESTION = 0.8  # a passage question this close to the asked one asks the same (Dutch pairs: ~0.8)
TYPO = 0.1  # how much less typical a question with a misspelt word is taken to be

_WORD = re.compile(r"[^\W_]+")


class Words:
    """What the texts of a generation say about their words: how they write those in capitals,
    and which words are theirs (a question word one letter off one of them is misspelt)."""

    _cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, snap: Snapshot):
        forms: dict[str, Counter] = {}
        for chunk in snap.chunks:
            for word in _WORD.findall(f"{chunk.title} {chunk.heading} {chunk.text}"):
                forms.setdefault(word.lower(), Counter())[word] += 1
        # an acronym ("TRK", "NGS") as most of its uses write it, a name ("Vitrakvi") when nearly
        # all do (not "How", which opens sentences)
        self.casing = {}
        for low, counts in forms.items():
            form, times = counts.most_common(1)[0]
            if form != low and times / sum(counts.values()) > (0.5 if form[1:] != low[1:] else 0.9):
                self.casing[low] = form
        self.known = frozenset(forms)
        self.near = frozenset(d for w in self.known if len(w) >= 4 for d in _deletions(w)) | self.known

    @classmethod
    def of(cls, snap: Snapshot) -> Words:
        words = cls._cache.get(snap)
        if words is None:
            words = cls._cache[snap] = cls(snap)
        return words

    def misspelt(self, text: str) -> bool:
        """A word of 5 letters or more that the texts do not have, one letter off one they have
        ("whats", "larotrectnib")."""
        return any(len(w) >= 5 and w not in self.known and ({w} | _deletions(w)) & self.near
                   for w in _WORD.findall(text.lower()))

    def shown(self, question: str) -> str:
        """A passage question as a button reads it (they are written as users type): words cased
        as the texts write them ("trk" -> "TRK"), a capital first letter and a question mark."""
        text = _WORD.sub(lambda m: self.casing.get(m.group(0).lower(), m.group(0)), question.strip())
        text = text[:1].upper() + text[1:]
        return text if text.endswith(("?", ".", "!")) else text.rstrip(" ,;:") + "?"


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def suggest(snap: Snapshot, chunk_ids: list[str], language: str, role: str, asked: list[str],
            asked_vectors: list[np.ndarray] = (), n: int = SUGGESTIONS) -> list[str]:
    """Up to ``n`` questions to ask next, after a reply that quoted ``chunk_ids`` (first: the one
    used first). ``asked``: the question just asked and the ones before it."""
    rows = [snap.by_id[c] for c in chunk_ids if c in snap.by_id]
    if not rows:
        return []
    audiences = {PUBLIC, HCP} if role == HCP else {PUBLIC}
    used = snap.chunks[rows[0]]
    done = {(snap.chunks[r].doc_id, snap.chunks[r].heading) for r in rows}
    skip = {_plain(q) for q in asked}
    vectors = [np.asarray(v) for v in asked_vectors]
    words = Words.of(snap)
    nearness = snap.chunk_emb @ snap.chunk_emb[rows[0]]
    out: list[str] = []
    for row in np.argsort(-nearness, kind="stable"):
        chunk = snap.chunks[int(row)]
        section = (chunk.doc_id, chunk.heading)
        # a text in the other language of the same topic is a translation of one just read
        if chunk.audience not in audiences or chunk.language != used.language or section in done:
            continue
        question = _typical(snap, int(row), language, skip, vectors, snap.chunk_emb[rows], words)
        if question is None:
            continue
        done.add(section)
        skip.add(_plain(question))
        out.append(words.shown(question))
        if len(out) == n:
            break
    return out


def _typical(snap: Snapshot, row: int, language: str, skip: set[str], asked: list[np.ndarray],
             read: np.ndarray, words: Words) -> str | None:
    """The passage's question (in ``language``) closest to the passage itself, rather one that is
    spelt right; not one already asked (or one that means the same),
    nor one nearer a passage just read than its own (that passage has answered it)."""
    best, best_sim = None, -2.0
    for i in np.flatnonzero(snap.q_rows == row):
        _, lang, text = snap.questions[i]
        if lang != language or _plain(text) in skip:
            continue
        vec = snap.q_emb[i]
        own = float(vec @ snap.chunk_emb[row])
        if any(float(vec @ v) >= SAME_QUESTION for v in asked) or float((read @ vec).max()) > own:
            continue
        sim = own - (TYPO if words.misspelt(text) else 0.0)
        if sim > best_sim:
            best, best_sim = text, sim
    return best


def _plain(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))
