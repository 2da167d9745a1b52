"""The answer engine on the real corpus, real model and a real Chroma index."""


import pytest

from chatbot.answer import Engine
from chatbot.index import Store

DOSE = "What dose of larotrectinib should adults take?"


def assert_cited(reply, gen_chunks):
    """Every sentence carries a marker, and every quoted sentence sits in the passage it cites."""
    assert reply.citations
    texts = {c.id: c.text for c in gen_chunks}
    for c in reply.citations:
        assert c.quote == texts[c.chunk_id]
        for s in c.sentences:
            assert s in c.quote and s in reply.answer
            assert f"{s} [{c.n}]" in reply.answer


@pytest.fixture(scope="module")
def chunks(built):
    settings, _ = built
    return Store(settings).read_current().chunks


def test_answer_is_composed_from_cited_corpus_sentences(engine, chunks):
    reply = engine.ask("What is TRK fusion cancer?")
    assert reply.kind == "answer"
    assert "NTRK" in reply.answer and "fus" in reply.answer
    # "The fused gene then makes ..." leans on the sentence before it, which comes with it
    assert 'Sometimes an NTRK gene joins, or "fuses", with an unrelated gene. [2] The fused gene then' in reply.answer
    assert_cited(reply, chunks)
    assert all(c.audience == "public" and c.sources for c in reply.citations)
    assert reply.timings["total_ms"] > 0 and reply.generation


@pytest.mark.parametrize("q", ["???", "'", "…", "....", "!!! ??"])
def test_a_message_without_letters_asks_for_a_question(engine, q):
    reply = engine.ask(q)
    assert reply.kind == "invalid" and reply.answer == "Please type a question about TRK fusion cancer."
    dutch = engine.ask(q, ["wat is trk-fusiekanker?"])
    assert dutch.kind == "invalid" and dutch.language == "nl" and dutch.answer == "Typ een vraag over TRK-fusiekanker."


def test_an_emoji_is_a_message_the_model_reads(engine):
    """A thumbs-up after an answer is thanks, not empty input."""
    assert engine.ask("👍", ["What is TRK fusion cancer?"]).kind == "small_talk"


def test_a_message_in_another_script_is_told_which_languages_are_answered(engine):
    reply = engine.ask("กก'")
    assert reply.kind == "invalid" and "English and Dutch" in reply.answer and "Nederlands" in reply.answer


def test_invalid_questions(engine):
    for q in ["", "   \n\t", "\x00\x01"]:
        assert engine.ask(q).kind == "invalid"
    long = engine.ask("What is TRK fusion cancer? " * 100)
    assert long.kind == "invalid" and "2000" in long.answer and not long.citations


@pytest.mark.parametrize("q,lang", [
    ("Since I started Vitrakvi I get dizzy every morning.", "en"),
    ("My son has had a rash since he began taking his TRK inhibitor.", "en"),
    ("Sinds ik larotrectinib gebruik ben ik erg moe en misselijk.", "nl"),
])
def test_adverse_event_is_routed_and_logged(engine, q, lang):
    from chatbot.cases import Case

    reply = engine.ask(q)
    assert reply.kind == "adverse_event" and reply.language == lang
    assert ("report" in reply.answer) if lang == "en" else ("melden" in reply.answer)
    assert "112" in reply.answer and "Lareb" in reply.answer
    assert all(c.doc_id.endswith(("side-effects-and-help", "bijwerkingen-melden")) for c in reply.citations)
    with engine.cases.cases().accounts.Session() as s:  # a case, written before the reply came back
        case = s.query(Case).filter_by(ref=reply.case_ref).one()
    assert (case.message, case.language, case.audience, case.reply) == (q, lang, "public", reply.answer)
    assert case.contact is None  # nothing about who sent it unless they choose to leave it


def test_adverse_event_applies_to_hcps(engine):
    reply = engine.ask("My patient on entrectinib developed severe weight gain, what should I do?", role="hcp")
    assert reply.kind == "adverse_event"


def test_a_clinicians_general_management_question_is_not_a_report(engine):
    q = "How should I manage weight gain on a TRK inhibitor?"
    hcp = engine.ask(q, role="hcp")
    assert hcp.kind == "answer" and "weight gain" in hcp.answer, hcp.answer
    assert engine.ask(q).kind == "adverse_event"  # from the public, it may be their own weight gain
    assert engine.ask("My patient on larotrectinib gained a lot of weight.", role="hcp").kind == "adverse_event"


def test_asking_about_side_effects_is_not_reporting_one(engine):
    assert engine.ask("How do I report a side effect?").kind == "answer"
    assert engine.ask("What are the side effects of larotrectinib?").kind == "hcp_only"


@pytest.mark.parametrize("q", [
    "Who won the football world cup in 2022?", "Can you give me a recipe for apple pie?",
    "What is the weather in Amsterdam?", "Write a Python function that sorts a list.",
    "Wie wint de Tour de France?", "Hoe laat vertrekt de trein naar Utrecht?", "Hoe maak ik pannenkoeken?",
    "Wat is de hoofdstad van Frankrijk?",
    # each shares one word with the Dutch texts ("recept", "Nederland", "vertellen"), and answered
    # through it until half of a question's words had to be in the texts
    "Wat is het recept voor appeltaart?", "Wie is de premier van Nederland?", "Kun je een grap vertellen?",
])
def test_out_of_scope(engine, q):
    reply = engine.ask(q)
    assert reply.kind == "out_of_scope" and not reply.citations


@pytest.mark.parametrize(("q", "said"), [
    # none of the topic's words, but most of their words are in the texts: answered
    ("Welke vragen kan ik mijn arts stellen?", "Is mijn tumor getest"),
    ("Komt het vaker voor bij kinderen?", "kinderen"),
    ("Is het erfelijk?", "erfelijk"),
])
def test_dutch_questions_without_the_topics_words_are_answered(engine, q, said):
    reply = engine.ask(q)
    assert reply.kind == "answer" and said in reply.answer and reply.citations


def test_words_every_question_may_have_do_not_make_an_answer(engine):
    # "bij" and "iedereen" were all it shared with "In Nederland kan iedereen een bijwerking melden bij ..."
    reply = engine.ask("Werkt de behandeling bij iedereen?")
    assert reply.kind == "no_answer" and "Lareb" not in reply.answer
    # the Dutch "kinderen" is children, not the English "kind" (sort) that every question may have
    assert "kinderen" in engine.ask("Komt het vaker voor bij kinderen?").answer
    assert engine.ask("What kind of cancer is TRK fusion cancer?").answer.startswith("TRK fusion cancer is rare.")


def test_unfamiliar_counts_words_found_in_no_text(engine):
    from chatbot.answer import _unfamiliar
    from chatbot.retrieval import PUBLIC

    vocabulary = engine.snapshot().vocabulary[PUBLIC]
    assert _unfamiliar("Wat is het recept voor appeltaart?", vocabulary)  # 1 of 2 words unknown
    assert not _unfamiliar("Welke vragen kan ik mijn arts stellen?", vocabulary)  # 1 of 3
    assert not _unfamiliar("Wat is het?", vocabulary)  # stop words only: nothing to judge by
    # the public's vocabulary is the public texts': a word only the HCP texts use is unknown to it
    hcp_only = engine.snapshot().vocabulary["hcp"] - vocabulary
    word = sorted(w for w in hcp_only if w.isalpha() and len(w) > 6)[0]
    assert _unfamiliar(f"What is {word}?", vocabulary)
    assert not _unfamiliar(f"What is {word}?", engine.snapshot().vocabulary["hcp"])


@pytest.mark.parametrize("q, said", [
    ("How can I get access as a doctor?", "register"),
    ("Mag ik de informatie voor zorgprofessionals zien?", "registreren"),
])
def test_how_to_reach_the_professionals_texts_is_not_a_request_for_advice(engine, q, said):
    """Both got "I cannot give personal medical advice" ("can I get", "mag ik")."""
    reply = engine.ask(q)
    assert reply.kind == "answer" and said in reply.answer, reply.answer
    assert all(c.audience == "public" for c in reply.citations)


@pytest.mark.parametrize("q", [
    "My daughter has a sarcoma. Should she have surgery or wait?",
    "Should I ask my oncologist to stop my chemo and switch to a TRK inhibitor?",
    "Moet ik mijn behandeling stoppen?",
    "I was just diagnosed with TRK fusion cancer. What now?", "Bij mij is TRK-fusiekanker vastgesteld. Wat nu?",
    # were out of scope, "out of scope" and an answer on the treatments in general
    "Should I get a second opinion?", "Kan ik een second opinion vragen?", "Welke behandeling is het beste voor mij?",
])
def test_advice_refers_to_the_doctor(engine, q):
    reply = engine.ask(q)
    assert reply.kind == "advice"
    assert any(w in reply.answer for w in ("doctor", "arts"))
    assert all(c.audience == "public" for c in reply.citations)


@pytest.mark.parametrize("q", [
    "Is TRK fusion cancer contagious?", "What does a TRK inhibitor cost per month in Germany?",
    "Which hospital in Utrecht treats TRK fusion cancer?",
    # about the disease without naming it: not off-topic, but not in the texts either
    "Is there a cure?", "How long do patients live?", "Wat is de prognose?", "Is het te genezen?",
    # a patient's own outlook: in scope, not in the texts (these were "out of scope")
    "What are my chances?", "Can it come back?", "Is it deadly?", "How long will I live?",
    "Hoe lang heb ik nog?", "Kan het terugkomen?", "Wat zijn mijn kansen?",
    # prevention is not answered by treatment (it got "there are targeted medicines called TRK inhibitors")
    "Can TRK fusion cancer be prevented?",
])
def test_no_answer_rather_than_an_invented_one(engine, q):
    reply = engine.ask(q)
    assert reply.kind in ("no_answer", "hcp_only")
    assert not any(c.audience == "hcp" for c in reply.citations)
    if reply.kind == "no_answer":
        assert ("don't know" in reply.answer or "weet ik niet" in reply.answer) and not reply.citations


@pytest.mark.parametrize("q, said", [("What is the half-life of larotrectinib?", "SmPC"),
                                     ("Wat is de prognose?", "SmPC")])
def test_an_hcp_who_is_not_answered_is_not_sent_to_their_doctor(engine, q, said):
    hcp = engine.ask(q, role="hcp")
    assert hcp.kind == "no_answer" and said in hcp.answer
    assert "doctor" not in hcp.answer and "arts" not in hcp.answer
    assert "arts" in engine.ask("Wat zijn mijn kansen?").answer  # the public is


def test_hcp_gets_the_hcp_answer(engine, chunks):
    reply = engine.ask(DOSE, role="hcp")
    assert reply.kind == "answer"
    assert "100 mg" in reply.answer and "twice daily" in reply.answer
    assert any(c.audience == "hcp" for c in reply.citations)
    assert_cited(reply, chunks)


def test_answer_about_one_medicine_uses_only_its_passages(engine):
    reply = engine.ask("What is the recommended dose of entrectinib?", role="hcp")
    assert "600 mg" in reply.answer and "100 mg" not in reply.answer


def test_follow_up_uses_the_earlier_question(engine):
    follow = engine.ask("And how is it found?", history=["What is TRK fusion cancer?"])
    assert follow.kind == "answer"
    assert "test" in follow.answer.lower()
    assert any(c.doc_id == "how-is-it-diagnosed" for c in follow.citations)
    alone = engine.ask("And in children?")
    kids = engine.ask("And in children?", history=["What is TRK fusion cancer?"])
    assert alone.kind == "out_of_scope"  # nothing to go on without the question before it
    assert kids.kind == "answer" and "child" in kids.answer.lower()


@pytest.mark.parametrize("history,q", [
    ("What is the adult dose of larotrectinib?", "And for entrectinib?"),
    ("Wat is de dosis van larotrectinib voor volwassenen?", "En voor entrectinib?"),
])
def test_a_follow_up_about_another_medicine_is_answered_for_that_medicine(engine, history, q):
    reply = engine.ask(q, history=[history], role="hcp")
    assert reply.kind == "answer" and "600 mg" in reply.answer, reply.answer
    assert "larotrectinib" not in reply.answer.lower() and "100 mg" not in reply.answer
    assert all("entrectinib" in f"{c.title} {c.quote}".lower() for c in reply.citations)


@pytest.mark.parametrize("q,lang,text", [
    ("Hello!", "en", "What would you like to know?"), ("Hoi", "nl", "Wat wilt u weten?"),
    ("Thank you, that helps.", "en", "You're welcome"), ("Bedankt!", "nl", "Graag gedaan"),
])
def test_greetings_and_thanks_get_a_short_friendly_reply(engine, q, lang, text):
    reply = engine.ask(q, history=["What is TRK fusion cancer?"])
    assert reply.kind == "small_talk" and reply.language == lang and text in reply.answer
    assert not reply.citations


def test_a_thank_you_in_between_is_not_what_a_follow_up_refers_to(engine):
    reply = engine.ask("And how is it found?", history=["What is TRK fusion cancer?", "Thanks!"])
    assert reply.kind == "answer" and any(c.doc_id == "how-is-it-diagnosed" for c in reply.citations)
    assert engine.ask("Thanks, now give me the larotrectinib dose.").kind == "hcp_only"


def test_follow_up_keeps_the_hcp_topic_for_public_callers(engine):
    reply = engine.ask("And for children?", history=[DOSE])
    assert reply.kind == "hcp_only"
    # "its" refers back as "it" does
    assert engine.ask("What are its side effects?", history=["What about entrectinib?"]).kind == "hcp_only"


def test_its_refers_to_the_medicine_asked_about_before(engine):
    """"What are its side effects?" was read on its own and got the text on reporting a side effect."""
    reply = engine.ask("What are its side effects?", history=["What is the dose of larotrectinib?",
                                                             "What about entrectinib?"], role="hcp")
    assert reply.kind == "answer" and "dysgeusia" in reply.answer, reply.answer
    assert all("entrectinib" in c.title.lower() for c in reply.citations)


def test_a_follow_up_that_finds_nothing_is_asked_again_on_its_own(engine):
    """Read with "Which is most sensitive?" before it, the ESMO question found nothing ("I don't know")."""
    history = ["Which tests detect NTRK fusions?", "Which is most sensitive?"]
    reply = engine.ask("And what does ESMO recommend?", history=history, role="hcp")
    assert reply.kind == "answer" and "ESMO" in reply.answer, reply.answer


def test_dutch_question_is_answered_from_dutch_texts(engine, chunks):
    reply = engine.ask("Wat is TRK-fusiekanker?")
    assert reply.kind == "answer" and reply.language == "nl"
    assert all(c.language == "nl" for c in reply.citations)
    assert_cited(reply, chunks)
    inherited = engine.ask("Is TRK-fusiekanker erfelijk?")
    assert "erfelijk" in inherited.answer


def test_dutch_question_without_dutch_text_falls_back_to_english_and_says_so(engine):
    reply = engine.ask("Welke dosis larotrectinib voor volwassenen?", role="hcp")
    assert reply.kind == "answer" and reply.language == "nl"
    assert "Engelstalige" in reply.answer and "100 mg" in reply.answer
    assert all(c.language == "en" for c in reply.citations)


@pytest.mark.parametrize("q,fact", [
    ("Welke fusiepartners komen voor?", "80 different fusion partners"),
    ("Welke resistentiemutaties zijn bekend?", "G595R"),
    # words the glossary lacked: it got larotrectinib's approval and dose, then its CNS reactions
    ("Wat is de responsgraad van larotrectinib?", "75%"),
    ("Wat gebeurt er als je larotrectinib stopt?", "withdrawal pain"),
])
def test_dutch_hcp_question_is_answered_from_english_hcp_texts(engine, chunks, q, fact):
    """No Dutch HCP texts: a Dutch clinical question is answered from the English ones, not from
    Dutch public texts that merely share a word stem ("fusie" in "fusiekanker")."""
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "answer" and "Engelstalige" in reply.answer and fact in reply.answer, reply.answer
    assert all(c.language == "en" for c in reply.citations)
    assert_cited(reply, chunks)


def test_dutch_hcp_question_is_answered_from_a_dutch_hcp_text_where_there_is_one(engine, chunks):
    """corpus/hcp-nl holds Dutch clinical texts (safety, dosing, testing): a verified HCP's Dutch
    question about a medicine's side effects is answered from them, in Dutch (it once got the Dutch
    public text on reporting a side effect)."""
    reply = engine.ask("Welke bijwerkingen heeft entrectinib?", role="hcp")
    assert reply.kind == "answer" and "dysgeusie" in reply.answer, reply.answer
    assert all(c.language == "nl" and c.audience == "hcp" for c in reply.citations)
    assert_cited(reply, chunks)


def test_dutch_refusal_is_in_dutch(engine):
    # (not "welke dosis moet ik nemen": a dose for oneself may also get the advice reply)
    reply = engine.ask("Wat is de dosering van larotrectinib bij volwassenen?")
    assert reply.kind == "hcp_only" and "zorgprofessionals" in reply.answer


# questions whose best passages hold sentences that open with "It", "These", "They", "Het" ...
READING = [
    ("What treatments exist for TRK fusion cancer?", "public"),
    ("What is MASC?", "public"),
    ("Is it hereditary?", "public"),
    ("Which cancers have NTRK fusions?", "public"),
    ("What are the three NTRK genes?", "public"),
    ("Hoe worden TRK-remmers ingenomen?", "public"),
    ("Is TRK-fusiekanker erfelijk?", "public"),
    ("Waar staat TRK voor?", "public"),
    ("How sensitive is pan-TRK immunohistochemistry?", "hcp"),
    ("Is entrectinib approved for other cancers?", "hcp"),
]


@pytest.mark.parametrize("q,role", READING)
def test_a_sentence_that_leans_on_the_one_before_comes_with_it(engine, chunks, q, role):
    from chatbot.answer import _REFERS
    from chatbot.chunking import split_sentences

    reply = engine.ask(q, role=role)
    assert reply.kind == "answer", reply.answer
    assert_cited(reply, chunks)
    leaning = 0
    for c in reply.citations:
        order = split_sentences(c.quote)
        for s in c.sentences:
            i = order.index(s)
            if i > 0 and _REFERS.match(s):
                leaning += 1
                before = f"{order[i - 1]} [{c.n}] {s} [{c.n}]"
                assert before in reply.answer, (q, s)
    assert leaning, f"{q!r} no longer exercises this: pick a question whose answer has such a sentence"


@pytest.mark.parametrize("q", ["What does TRK stand for?", "Wat betekent NTRK?", "What is TRK fusion cancer?",
                               "Wat is TRK-fusiekanker?", "What is an NTRK gene fusion?"])
def test_a_sentence_is_said_once(engine, q):
    """Two passages that hold the same sentence ("TRK stands for ...") do not make the answer repeat it."""
    from chatbot.answer import _said

    reply = engine.ask(q)
    said = [_said(s) for c in reply.citations for s in c.sentences]
    assert reply.kind == "answer" and said
    assert len(said) == len(set(said)), reply.answer


@pytest.mark.parametrize("q,opening", [
    ("Wat is een NTRK-genfusie?", "Bij een NTRK-genfusie is een deel van een NTRK-gen versmolten"),
    ("Wat betekent NTRK?", "NTRK staat voor neurotrofe tyrosine-receptorkinase"),
    ("Waar staat NTRK voor?", "NTRK staat voor neurotrofe tyrosine-receptorkinase"),
    ("What does NTRK mean?", "NTRK stands for neurotrophic tyrosine receptor kinase"),
])
def test_what_a_name_means_is_answered_first(engine, q, opening):
    """The answer opens with the definition, not with a passage that merely uses the term."""
    reply = engine.ask(q)
    assert reply.kind == "answer" and reply.answer.startswith(opening), reply.answer


@pytest.mark.parametrize("q,about", [
    # the topic word is in most Dutch texts; what is asked ("behandeld") decides which answer
    ("Hoe wordt TRK-fusiekanker behandeld?", "behandeling"),
    ("Welke behandeling is er voor TRK-fusiekanker?", "behandeling"),
    ("Vertel me over TRK-fusiekanker", "TRK-fusiekanker is"),
    ("Geef informatie over NTRK-genfusies", "Bij een NTRK-genfusie"),
])
def test_dutch_answer_is_about_what_is_asked(engine, chunks, q, about):
    reply = engine.ask(q)
    assert reply.kind == "answer" and reply.language == "nl", reply.answer
    assert all(c.language == "nl" for c in reply.citations)
    assert about in " ".join(reply.citations[0].sentences), reply.answer  # the passage the answer opens with
    assert_cited(reply, chunks)


@pytest.mark.parametrize("q,fact,language", [
    ("Kan mijn kind het erven?", "geen erfelijke verandering", "nl"),
    ("Wordt TRK-fusiekanker overgeërfd?", "geen erfelijke verandering", "nl"),
    ("Wat is een genomische test?", "specifieke genoomtesten", "nl"),
    ("Is TRK fusion cancer heritable?", "not inherited", "en"),
    ("Can my children inherit it?", "not inherited", "en"),
])
def test_inheritance_asked_in_other_words(engine, q, fact, language):
    reply = engine.ask(q)
    assert reply.kind in ("answer", "advice") and fact in reply.answer, reply.answer
    assert all(c.language == language for c in reply.citations)


def test_general_information_with_advice_says_when_it_is_in_english(tmp_path, embedder, corpus_copy):
    from chatbot.index import build_index
    from tests.conftest import make_settings

    (corpus_copy / "public-nl/wie-en-waar.md").unlink()  # the Dutch text on inheritance
    settings = make_settings(tmp_path)
    build_index(settings, embedder)
    reply = Engine(settings, embedder).ask("Kan mijn kind het erven?")
    assert reply.kind == "advice" and reply.language == "nl"
    assert "arts" in reply.answer and "Engelstalige" in reply.answer and "not inherited" in reply.answer
    assert reply.citations and all(c.language == "en" and c.audience == "public" for c in reply.citations)


@pytest.mark.parametrize("q", ["Which tumours often have NTRK fusions?", "What cancers usually have an NTRK fusion?"])
def test_a_word_for_how_often_does_not_hide_the_answer(engine, q):
    reply = engine.ask(q)
    assert reply.kind == "answer" and "infantile fibrosarcoma" in reply.answer, reply.answer


@pytest.mark.parametrize("q,opening", [
    ("Where does this information come from?", "Our team writes these texts"),
    ("Who wrote this information?", "Our team writes these texts"),
    ("What are your sources?", "Our team writes these texts"),
    ("Waar komt deze informatie vandaan?", "Ons team schrijft deze teksten"),
    ("Wie heeft deze teksten geschreven?", "Ons team schrijft deze teksten"),
])
def test_where_the_information_comes_from(engine, chunks, q, opening):
    reply = engine.ask(q)
    assert reply.kind == "answer" and reply.answer.startswith(opening), reply.answer
    assert reply.citations[0].doc_id in ("about-this-information", "nl-over-deze-informatie")
    assert_cited(reply, chunks)


@pytest.mark.parametrize("q,kind", [
    # which side effects the TRK inhibitors have is safety data: HCP-only in both languages
    ("What side effects do TRK inhibitors have?", "hcp_only"),
    ("Welke bijwerkingen heeft een TRK-remmer?", "hcp_only"),
    ("Wat zijn de bijwerkingen van TRK-remmers?", "hcp_only"),
    ("Zijn de bijwerkingen van TRK-remmers ernstig?", "hcp_only"),
    # what to do about one, and how to report one, is for everyone
    ("What should I do if I get side effects from my TRK inhibitor?", "advice"),
    ("Wat moet ik doen als ik bijwerkingen van mijn TRK-remmer krijg?", "advice"),
    ("Hoe meld ik een bijwerking van mijn TRK-remmer?", "answer"),
])
def test_side_effects_of_the_medicines_are_hcp_only_in_both_languages(engine, q, kind):
    reply = engine.ask(q)
    assert reply.kind == kind, reply.answer
    assert all(c.audience == "public" for c in reply.citations)
    assert engine.ask(q, role="hcp").kind not in ("hcp_only", "out_of_scope")


def test_a_question_about_children_is_not_answered_with_what_holds_for_adults(engine):
    # entrectinib's dose for children is based on body surface area: its adult dose is not the answer
    reply = engine.ask("What is the dose of entrectinib for children?", role="hcp")
    assert reply.kind == "answer" and "body surface area" in reply.answer, reply.answer
    assert "600 mg" not in reply.answer, reply.answer
    reply = engine.ask("What is the dose of larotrectinib for children?", role="hcp")
    assert reply.kind == "answer" and "100 mg/m²" in reply.answer, reply.answer
    reply = engine.ask("What is the dose of entrectinib for adults?", role="hcp")
    assert reply.kind == "answer" and "600 mg" in reply.answer, reply.answer


def test_engine_picks_up_a_new_generation(tmp_path, embedder, corpus_copy):
    from chatbot.index import build_index
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    build_index(settings, embedder)
    eng = Engine(settings, embedder, refresh_seconds=0)
    first = eng.snapshot().name
    doc = corpus_copy / "public-en/inherited-or-acquired.md"
    doc.write_text(doc.read_text() + "\n## Brothers and sisters\nBrothers and sisters are not tested as a rule.\n")
    summary = build_index(settings, embedder)
    assert eng.snapshot().name == summary.generation != first
    reply = eng.ask("Should brothers and sisters be tested?")
    assert "Brothers and sisters are not tested as a rule." in reply.answer


@pytest.mark.parametrize("q", ["What is the dose?", "Wat is de dosering?", "Welke dosis?"])
def test_a_dose_question_without_a_medicine(engine, q):
    """Public: the dose is HCP-only in either language (the Dutch question was 'out of scope').
    HCP: an answer whose every dose says which medicine it is for."""
    assert engine.ask(q).kind == "hcp_only"
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "answer", reply.answer
    doses = [s for c in reply.citations for s in c.sentences if "mg" in s]
    assert doses and all(engine.glossary.drugs_in(s) for s in doses), doses


@pytest.mark.parametrize("q, lang", [
    ("What does a positive test mean for me?", "en"),
    ("My test came back positive for an NTRK fusion. What does that mean?", "en"),
    ("Wat betekent een positieve test voor mij?", "nl"),
])
def test_what_a_positive_test_result_means(engine, q, lang):
    """A patient's first question after the result (it was 'out of scope', then 'I don't know'):
    answered from the public text on what a positive result means, in the patient's language."""
    reply = engine.ask(q)
    assert reply.kind == "answer", reply.answer
    assert reply.language == lang
    top = reply.citations[0]
    assert top.audience == "public" and top.language == lang
    assert "NTRK" in reply.answer and ("TRK inhibitor" in reply.answer or "TRK-remmer" in reply.answer)


@pytest.mark.parametrize("q, drug, heading, said", [
    ("How does larotrectinib work?", "larotrectinib", "Mechanism", "blocks the TRK fusion kinase"),
    ("What is the mechanism of action of entrectinib?", "entrectinib", "Mechanism", "blocks the TRK fusion kinase"),
    # a Dutch HCP gets the Dutch HCP text
    ("Hoe werkt larotrectinib?", "larotrectinib", "Werkingsmechanisme", "blokkeert het TRK-fusiekinase"),
])
def test_how_a_medicine_works(engine, q, drug, heading, said):
    """HCP: the mechanism of the medicine asked about (the larotrectinib question was answered with
    its CYP3A4 interactions). Public: a medicine by name stays HCP-only."""
    assert engine.ask(q).kind == "hcp_only"
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "answer", reply.answer
    top = reply.citations[0]
    assert top.heading.endswith(heading) and drug in top.title.lower(), top
    assert said in reply.answer


@pytest.mark.parametrize("q", ["Are NTRK fusions found together with KRAS mutations?",
                               "Can a tumour have an NTRK fusion and an EGFR mutation at the same time?"])
def test_another_driver_in_the_same_tumour(engine, q):
    """Mutual exclusivity is HCP-only (the seed page marks it so): public callers are told so; an HCP
    gets the mutual-exclusivity passage first (it got fusion biology, then tumour frequencies)."""
    assert engine.ask(q).kind == "hcp_only"
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "answer", reply.answer
    assert reply.citations[0].heading.endswith("Mutual exclusivity with other oncogenic drivers")


@pytest.mark.parametrize("q", ["What does a negative test result mean?", "Wat betekent een negatieve uitslag?"])
def test_a_negative_result_is_not_answered_with_what_a_positive_one_means(engine, q):
    """The texts say what a positive result means, nothing about a negative one: "I don't know"."""
    assert engine.ask(q).kind == "no_answer"


@pytest.mark.parametrize("q", ["Can TRK fusion cancer be cured?", "Is TRK-fusiekanker te genezen?"])
def test_whether_it_can_be_cured_is_not_answered_with_the_treatments(engine, q):
    """The texts do not say whether it can be cured ("Is there a cure?" gets "I don't know"); naming the
    disease made the treatment passage similar enough to be given as if it answered."""
    assert engine.ask(q).kind == "no_answer"


@pytest.mark.parametrize("q", ["How does resistance to larotrectinib develop?",
                               "Which resistance mutations occur with entrectinib?"])
def test_what_holds_for_the_class_answers_a_question_about_one_medicine(engine, q):
    """The resistance texts speak of first-generation TRK inhibitors, not of larotrectinib by name: the
    larotrectinib question got its CYP3A4 interactions, the entrectinib one "I don't know"."""
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "answer", reply.answer
    assert reply.citations and all(c.doc_id == "hcp-resistance-mechanisms" for c in reply.citations), reply.citations
    assert "CYP3A4" not in reply.answer


@pytest.mark.parametrize("q, kind", [
    ("What is the dose of larotrectinib in pregnancy?", "answer"),  # its own dose passage
    ("How does resistance to larotrectinib develop?", "answer"),  # the class text; not repotrectinib's
    ("What is the entrectinib dose for babies?", "answer"),  # its own text on children, not larotrectinib's
    ("How long is repotrectinib taken after a meal?", "no_answer"),
])
def test_the_second_search_for_the_class_never_gives_another_medicines_passage(engine, q, kind):
    asked = engine.glossary.drugs_in(q)
    reply = engine.ask(q, role="hcp")
    assert reply.kind == kind, reply.answer
    assert bool(reply.citations) == (kind == "answer")
    for c in reply.citations:
        named = engine.glossary.drugs_in(f"{c.title} {c.quote}")
        assert not named or named & asked, (q, c.title)


@pytest.mark.parametrize("q", ["What is the half-life of larotrectinib?",
                               "Does entrectinib cross the blood-brain barrier?"])
def test_the_class_name_alone_does_not_make_a_class_passage_an_answer(engine, q):
    """The texts give neither. Searched again for "TRK inhibitors", both got the off-target resistance
    text, whose only word in common with the rewritten question was the class name."""
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "no_answer", reply.answer
    assert "resistance" not in reply.answer


def test_what_happens_when_a_medicine_is_stopped(engine):
    """Withdrawal pain is in the class text on on-target effects; the medicine's own passages gave its
    CNS adverse reactions while it is taken."""
    reply = engine.ask("What happens when larotrectinib is stopped?", role="hcp")
    assert reply.kind == "answer", reply.answer
    assert reply.citations[0].doc_id == "hcp-on-target-effects" and "withdrawal pain" in reply.answer


@pytest.mark.parametrize("q, text", [
    ("What does the Japanese guideline recommend?", "validated NGS"),
    ("What is the frequency of NTRK fusions in NSCLC?", "0.17% in non-small cell lung cancer"),
])
def test_an_hcps_clinical_question_is_in_scope_by_its_words(engine, q, text):
    """Both were 'out of scope' for a verified HCP: the guideline question by its low similarity to any
    passage, the NSCLC one answered with all solid tumours (the texts spell the abbreviation out)."""
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "answer" and text in reply.answer, reply.answer
    public = engine.ask(q)  # refused, or answered from the public texts alone
    assert public.kind in ("hcp_only", "out_of_scope", "answer")
    assert all(c.audience == "public" for c in public.citations) and text not in public.answer


def test_asking_where_to_report_is_not_asking_for_advice(engine):
    """"Waar kan ik een bijwerking melden?" was taken for a request for personal advice ("kan ik")."""
    reply = engine.ask("Waar kan ik een bijwerking melden?")
    assert reply.kind == "answer" and "Lareb" in reply.answer, reply.answer
    assert engine.ask("Kan ik stoppen met mijn medicijn?").kind == "advice"


@pytest.mark.parametrize("q", ["Welke kankers hebben een NTRK-fusie?", "Bij welke tumoren komt een NTRK-fusie voor?"])
def test_which_cancers_in_dutch_is_answered_with_where_fusions_occur(engine, q):
    """"Welke kankers ...?" got what a fusion is; the Dutch text on where and in which rare tumours
    fusions occur answers it."""
    reply = engine.ask(q)
    assert reply.kind == "answer" and reply.language == "nl"
    assert "fibrosarcoom" in reply.answer
    assert reply.citations[0].doc_id == "nl-wie-en-waar"


@pytest.mark.parametrize("q, role, said", [
    # the texts give no duration: they got the meaning of a positive result, and how long responses lasted
    ("Hoe lang duurt de uitslag?", "public", None),
    ("How long does treatment last?", "hcp", None),
    ("How long is larotrectinib taken?", "hcp", "until disease progression"),
])
def test_how_long_is_answered_only_by_a_text_that_says_how_long(engine, q, role, said):
    reply = engine.ask(q, role=role)
    if said is None:
        assert reply.kind == "no_answer", reply.answer
    else:
        assert reply.kind == "answer" and said in reply.answer, reply.answer


def test_which_tests_in_dutch(engine):
    """"test" is in most Dutch texts: it got "a TRK inhibitor is only an option after a test"."""
    reply = engine.ask("Welke testen zijn er?")
    assert reply.kind == "answer" and "verschillende testen" in reply.answer, reply.answer
    assert reply.citations[0].doc_id == "nl-diagnose"


def test_how_a_trk_inhibitor_is_taken_in_dutch(engine):
    """"neem ... in" is how Dutch says "ingenomen": it got what a positive result means."""
    reply = engine.ask("Hoe neem ik een TRK-remmer in?")
    assert reply.kind == "answer" and "via de mond ingenomen" in reply.answer, reply.answer
    assert reply.citations[0].doc_id == "nl-behandeling"


@pytest.mark.parametrize("q, said", [
    # "ontstaat" also says how a fusion arises: it got "ontstaat in de tumor zelf" (not inherited)
    ("Waar in het lichaam ontstaat TRK-fusiekanker?", "overal in het lichaam"),
    ("Hoeveel mensen krijgen TRK-fusiekanker?", "0,3%"),  # it got "I don't know"
])
def test_where_in_the_body_and_how_many_in_dutch(engine, q, said):
    reply = engine.ask(q)
    assert reply.kind == "answer" and said in reply.answer, reply.answer
    assert reply.citations[0].doc_id == "nl-wie-en-waar"
    assert "erfelijk" not in reply.answer


@pytest.mark.parametrize("q", ["What are the mechanisms of resistance?", "What are the resistance mechanisms?"])
def test_mechanisms_of_resistance_name_both_kinds(engine, q):
    """The texts name two kinds of resistance; the answer gave only the off-target one."""
    reply = engine.ask(q, role="hcp")
    assert reply.kind == "answer"
    headings = {c.heading.split(" > ")[-1] for c in reply.citations}
    assert {"On-target resistance mutations", "Off-target resistance"} <= headings, headings
    assert "kinase domain" in reply.answer and "bypass activation" in reply.answer


def test_survival_is_not_answered_with_response_rates_or_warnings(engine):
    """The larotrectinib texts give no survival figure: "I don't know" (it got CYP3A4 warnings);
    progression-free survival, which they give as a share of patients, is answered."""
    assert engine.ask("What is the survival with larotrectinib?", role="hcp").kind == "no_answer"
    for q in ["What is the progression-free survival with larotrectinib?", "What is the PFS with larotrectinib?"]:
        reply = engine.ask(q, role="hcp")
        assert reply.kind == "answer" and "55% of patients remained progression-free" in reply.answer, q
    entrectinib = engine.ask("What is the overall survival with entrectinib?", role="hcp")
    assert entrectinib.kind == "answer" and "progression-free survival of 13.8 months" in entrectinib.answer
