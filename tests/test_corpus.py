import datetime as dt
import re
from pathlib import Path

import pytest

from chatbot.corpus import CorpusError, load_corpus, parse_document
from tests.conftest import CORPUS

GOOD = """---
id: sample-doc
title: A sample
audience: public
language: en
sources:
  - title: A source
    url: https://example.org
reviewed: 2026-01-01
---
# Heading
Some text about TRK fusion cancer.
"""


def write(tmp_path: Path, text: str | bytes, name: str = "doc.md") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_good_document_parses(tmp_path):
    doc = parse_document(write(tmp_path, GOOD))
    assert (doc.id, doc.audience, doc.language, doc.reviewed) == ("sample-doc", "public", "en", "2026-01-01")
    assert doc.sources[0].ref == "https://example.org"


@pytest.mark.parametrize("field", ["id", "title", "audience", "language", "sources", "reviewed"])
def test_missing_field_is_named(tmp_path, field):
    text = "\n".join(l for l in GOOD.splitlines() if not l.startswith(f"{field}:"))
    if field == "sources":
        text = text.replace("  - title: A source\n    url: https://example.org\n", "")
    with pytest.raises(CorpusError) as err:
        parse_document(write(tmp_path, text))
    assert err.value.field == field
    assert "doc.md" in str(err.value) and field in str(err.value)


@pytest.mark.parametrize("field,bad", [("audience", "doctors"), ("language", "de")])
def test_unknown_audience_or_language(tmp_path, field, bad):
    text = re.sub(rf"^{field}: .*$", f"{field}: {bad}", GOOD, flags=re.MULTILINE)
    with pytest.raises(CorpusError) as err:
        parse_document(write(tmp_path, text))
    assert err.value.field == field and err.value.line == GOOD.splitlines().index(
        next(l for l in GOOD.splitlines() if l.startswith(field))) + 1
    assert bad in str(err.value)


@pytest.mark.parametrize("content,needle", [
    ("", "empty"),
    (b"\x00\x01\x02binary", "binary"),
    ("# No front matter\ntext", "missing front matter"),
    ("---\nid: [unclosed\n---\ntext", "malformed YAML"),
    ("---\nid: x-doc\n", "not closed"),
])
def test_bad_files(tmp_path, content, needle):
    with pytest.raises(CorpusError, match=needle) as err:
        parse_document(write(tmp_path, content))
    assert "doc.md" in str(err.value)


def test_duplicate_id_names_both_files(tmp_path):
    write(tmp_path, GOOD, "a.md")
    write(tmp_path, GOOD, "b.md")
    with pytest.raises(CorpusError, match="duplicate id 'sample-doc'") as err:
        load_corpus(tmp_path)
    assert "a.md" in str(err.value) and "b.md" in str(err.value)


def test_real_corpus_meets_the_brief():
    docs = load_corpus(CORPUS)
    count = lambda aud, lang: sum(d.audience == aud and d.language == lang for d in docs)
    assert count("public", "en") >= 10
    assert count("public", "nl") >= 5
    assert sum(d.audience == "hcp" for d in docs) >= 10
    for d in docs:
        assert d.sources, d.path
        assert dt.date.fromisoformat(d.reviewed)


SOURCE_YEAR = re.compile(r"\b(19|20)\d{2}\b")
# a url, a doi, or a journal reference with its volume ("Ann Oncol 2019;30(9):1417-1427", "2021;5:69")
SOURCE_FINDABLE = re.compile(r"https?://|\bdoi\b|\b10\.\d{4,9}/\S+|\b(19|20)\d{2}\s?;\s?\d+")


def traceable(source_text: str) -> bool:
    return bool(SOURCE_YEAR.search(source_text) and SOURCE_FINDABLE.search(source_text))


@pytest.mark.parametrize("text, ok", [
    ("Drilon A, et al. Efficacy of larotrectinib. N Engl J Med 2018;378(8):731-739", True),
    ("Marchio C, et al. ESMO recommendations (doi 10.1093/annonc/mdz204), 2019", True),
    ("Lareb: report a side effect (website, consulted 2026) (https://www.lareb.nl)", True),
    ("Laetsch TW, Hawkins DS. Review of TRK fusion cancer (Laetsch & Hawkins, 2018)", False),
    ("Canadian NTRK testing programme paper (Mol Diagn Ther 2022)", False),
    ("BIG-register (https://www.bigregister.nl)", False),
    ("TRK fusion cancer, the seed of this product (shared/seeds/000_74cf1089aa7caa72.txt)", False),
])
def test_what_makes_a_source_traceable(text, ok):
    assert traceable(text) is ok


def test_every_source_has_a_year_and_a_url_doi_or_journal_reference():
    """A reader can find every source: it names its year, and gives a url, a doi or a journal
    reference with volume (an untraceable "Laetsch & Hawkins, 2018" does not pass)."""
    untraceable = [(Path(d.path).name, s.as_text()) for d in load_corpus(CORPUS) for s in d.sources
                   if not traceable(s.as_text())]
    assert untraceable == []


FACT_NUMBERS = Path(__file__).resolve().parents[2] / "shared" / "facts" / "trk-facts.md"


def test_every_number_in_the_corpus_comes_from_the_facts_sheet():
    """No figure in our texts that the facts sheet (or seed page) does not hold."""
    if not FACT_NUMBERS.exists():
        pytest.skip("shared/facts not beside the project")
    facts = FACT_NUMBERS.read_text() + (FACT_NUMBERS.parents[1] / "seeds" / "000_74cf1089aa7caa72.txt").read_text()
    facts_norm = facts.replace(",", "")
    # 112: the EU emergency number; "3 in every 1,000" restates 0.3%; "1 in 100" restates "under 1%".
    allowed_extra = {"112", "3", "1000", "1", "100"}
    for doc in load_corpus(CORPUS):
        for num in re.findall(r"\d+(?:[.,]\d+)*", doc.body):
            forms = {num, num.replace(",", ""), num.replace(",", "."), num.replace(".", "")}
            assert forms & allowed_extra or any(f in facts_norm for f in forms), (doc.path, num)


def test_every_section_opens_on_its_own():
    """An answer may quote one section without the one before it, so none opens by leaning on it
    ("Other warnings include ...", "These include ...", "Daarnaast ...")."""
    from chatbot.chunking import chunk_corpus, split_sentences

    leaning = re.compile(r"(Other|Another|Also|These|They|It|Its|Such|However|In addition|Moreover|Furthermore|"
                         r"Ook|Daarnaast|Andere|Zo'n|Verder|Bovendien|Ze|Zij)\b")
    chunks = chunk_corpus(load_corpus(CORPUS), 900, 0)
    opening = {c.id: (split_sentences(c.text) or [""])[0] for c in chunks}
    leaning_sections = {cid: s for cid, s in opening.items() if leaning.match(s)}
    assert chunks and not leaning_sections, leaning_sections


def test_every_dose_names_its_medicine():
    """A dose is quoted sentence by sentence, next to doses of other medicines ("What is the dose?"):
    each sentence that gives one says which medicine it is for."""
    from chatbot.chunking import chunk_corpus, split_sentences
    from chatbot.policy import load_glossary

    drugs = load_glossary(CORPUS).pattern

    dose = re.compile(r"\bdos(e|es|ing|age|is|ering)\b.*\d\s?mg|\d\s?mg.*\bdos(e|es|ing|age|is|ering)\b", re.IGNORECASE)
    chunks = chunk_corpus(load_corpus(CORPUS), 900, 0)
    doses = [s for c in chunks for s in split_sentences(c.text) if dose.search(s)]
    assert len(doses) >= 4  # larotrectinib (adults, children, reductions), entrectinib, repotrectinib
    assert [s for s in doses if not drugs.search(s)] == []
