"""The rules that state a policy exactly: input cleaning, hidden requests, language, medicine names."""

import base64

import pytest

from chatbot import policy
from chatbot.config import PROJECT_ROOT
from chatbot.corpus import CorpusError


@pytest.mark.parametrize("text,lang", [
    ("What is TRK fusion cancer?", "en"), ("Wat is TRK-fusiekanker?", "nl"),
    ("Hoe wordt een NTRK-genfusie vastgesteld?", "nl"), ("Can adults get it or only kids?", "en"),
    ("Sinds ik Vitrakvi gebruik ben ik duizelig.", "nl"),
    ("Vertel me over TRK-fusiekanker", "nl"), ("Tell me about TRK fusion cancer", "en"),
])
def test_language_by_lingua(text, lang):
    assert policy.detect_language(text) == lang


@pytest.mark.parametrize("text,other", [
    ("Quelle est la dose de larotrectinib pour un enfant?", True),
    ("Was ist TRK-Fusionskrebs und wie wird er behandelt?", True),
    ("¿Qué es el cáncer con fusión de TRK?", True),
    ("whats ntrk", False), ("ok", False), ("larotrectinib dose", False),
    ("wat is het verschil tussen NTRK en TRK?", False), ("my son is 4 and has a tumour", False),
])
def test_another_language_is_told_apart_only_when_clear(text, other):
    known = frozenset("whats ntrk ok larotrectinib dose wat is het verschil tussen en trk my son has tumour dosis de la".split())
    assert policy.other_language(text, known) is other


def test_hidden_requests_are_decoded():
    encoded = base64.b64encode(b"What is the dose of larotrectinib?").decode()
    assert any("dose" in v for v in policy.variants(encoded))
    assert "What is the dose?" in policy.variants("Wh4t 1s th3 d0se?")
    assert any("dose" in v for v in policy.variants("what is the d o s e"))


def test_clean_strips_control_characters_and_markup():
    assert policy.clean("  what\x00 is\x1b TRK?\u200b ") == "what is TRK?"
    assert policy.clean("<script>alert(1)</script><b>dose</b>") == "dose"


def test_medicine_names_come_from_the_glossary():
    glossary = policy.load_glossary(PROJECT_ROOT / "corpus")
    assert glossary.drugs_in("Vitrakvi or ROZLYTREK and repotrectinib's dose, LOXO-195") == {
        "larotrectinib", "entrectinib", "repotrectinib", "selitrectinib"}
    assert glossary.without_drugs("the dose of larotrectinib for kids", "TRK inhibitors") == \
        "the dose of TRK inhibitors for kids"


def test_a_bad_glossary_names_the_file_and_field(tmp_path):
    (tmp_path / "glossary.yaml").write_text("medicines: [larotrectinib]\n")
    with pytest.raises(CorpusError, match=r"glossary.yaml.*field 'medicines'"):
        policy.load_glossary(tmp_path)
