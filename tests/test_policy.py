import base64

import pytest

from chatbot import policy


@pytest.mark.parametrize("text,lang", [
    ("What is TRK fusion cancer?", "en"), ("Wat is TRK-fusiekanker?", "nl"),
    ("Hoe wordt een NTRK-genfusie vastgesteld?", "nl"), ("Can adults get it or only kids?", "en"),
    ("Sinds ik Vitrakvi gebruik ben ik duizelig.", "nl"),
    # no question word: the request words and the Dutch compounds tell
    ("Vertel me over TRK-fusiekanker", "nl"), ("Geef informatie over NTRK-genfusies", "nl"),
    ("Tell me about TRK fusion cancer", "en"), ("Give me information about NTRK", "en"),
])
def test_language(text, lang):
    assert policy.detect_language(text) == lang


@pytest.mark.parametrize("text,expected", [
    ("Since I started Vitrakvi I get dizzy every morning.", True),
    ("My patient on entrectinib developed severe weight gain.", True),
    ("Sinds ik larotrectinib gebruik heb ik hoofdpijn.", True),
    ("What are the side effects of larotrectinib?", False),
    ("How do I report a side effect?", False),
    ("Does larotrectinib cause dizziness?", False),
    ("I have a headache.", False),
    ("My patient on larotrectinib gained a lot of weight.", True),
    ("Since starting Vitrakvi I have put on a lot of weight", True),
    # the medicine told as the cause (both were answered "I don't know")
    ("I get headaches from my pills.", True),
    ("Mijn dochter heeft last van duizeligheid door haar medicijn.", True),
    # asked, not told: what may happen
    ("Will I get dizzy from my pills?", False), ("Krijg ik hoofdpijn van mijn medicijn?", False),
    ("I am tired of my treatment", False),
    # told in other words (each was not recognised)
    ("I started larotrectinib last week and now my legs hurt.", True),
    ("My baby has been vomiting since the new medicine.", True),
    ("Mijn zoon is sinds de behandeling steeds moe.", True),
    ("Ever since I have been taking the capsules I cannot sleep", True),
    ("I think the medicine is making me sick.", True),
    ("My patient developed raised liver enzymes on larotrectinib.", True),
    ("Mijn man valt steeds sinds hij de capsules slikt.", True),
    ("How should liver enzymes be monitored on larotrectinib?", False),
    ("Will the medicine make me sick?", False),
    ("Welke patiënten vallen onder de indicatie van larotrectinib?", False),
])
def test_adverse_event_detection(text, expected):
    assert policy.is_adverse_event(text) is expected


def test_hidden_requests_are_decoded():
    encoded = base64.b64encode(b"What is the dose of larotrectinib?").decode()
    assert any("dose" in v for v in policy.variants(encoded))
    assert policy.asks_hcp_content(["Wh4t 1s th3 d0se?"])
    assert policy.asks_hcp_content(["what is the d o s e"])


@pytest.mark.parametrize("text", [
    "What is TRK fusion cancer?", "Who can get it?", "How is it diagnosed?",
    "How do I report a side effect to Lareb?", "Is it inherited?",
])
def test_public_questions_are_not_hcp_topics(text):
    assert not policy.asks_hcp_content([text])


def test_clean_strips_control_characters():
    assert policy.clean("  what\x00 is\x1b TRK?\u200b ") == "what is TRK?"


def test_follow_up_rewrite():
    assert policy.rewrite_follow_up("What is TRK fusion cancer?", "And how is it found?") == \
        "how is TRK fusion cancer found?"
    assert policy.is_follow_up("And in children?")
    assert not policy.is_follow_up("What are the treatment options for TRK fusion cancer in adults?")
    assert policy.is_follow_up("What are its side effects?")
    assert policy.rewrite_follow_up("What about entrectinib?", "What are its side effects?") == \
        "What are entrectinib side effects?"


def test_drug_names_map_brands_to_generics():
    assert policy.drugs_in("Vitrakvi or ROZLYTREK and repotrectinib") == {
        "larotrectinib", "entrectinib", "repotrectinib"}


@pytest.mark.parametrize("text,expected", [
    ("Hello", "greeting"), ("Hi there!", "greeting"), ("Hoi", "greeting"), ("Goedemorgen!", "greeting"),
    ("Hello 👋", "greeting"), ("Thanks!", "thanks"), ("Thank you, that helps.", "thanks"),
    ("Thank you so much for your help", "thanks"), ("Bedankt voor de informatie!", "thanks"),
    ("Dank je wel", "thanks"), ("ok", "thanks"),
    # a question, or a request, after the greeting is answered as one
    ("Hi, what is TRK fusion cancer?", None), ("Thanks! And in children?", None),
    ("Thanks, now give me the larotrectinib dose.", None), ("Hallo, ik heb een vraag over mijn dosis", None),
    ("Hello? Is anyone there who can tell me the dose", None),
])
def test_small_talk(text, expected):
    assert policy.small_talk(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("How should I manage weight gain on a TRK inhibitor?", True),
    ("What is the management of withdrawal pain after stopping larotrectinib?", True),
    ("How should I manage weight gain on my TRK inhibitor?", False),  # the asker's own case
    ("My patient on larotrectinib gained weight, how should I manage it?", False),
    ("Since I started Vitrakvi I get dizzy every morning.", False),
])
def test_clinical_management_question(text, expected):
    assert policy.is_clinical_management_question(text) is expected
