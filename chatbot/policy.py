"""Decide what kind of reply a question deserves, before any text is composed.

These rules steer the conversation (refuse, route a side effect, suggest a doctor); they are not
the security boundary. Whatever they decide, a public caller's search only ever sees public chunks.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

INVALID = "invalid"
ADVERSE_EVENT = "adverse_event"
OUT_OF_SCOPE = "out_of_scope"
HCP_ONLY = "hcp_only"
ADVICE = "advice"
NO_ANSWER = "no_answer"
ANSWER = "answer"
SMALL_TALK = "small_talk"  # a greeting or a thank-you: a short friendly reply, nothing searched
KINDS = (INVALID, ADVERSE_EVENT, OUT_OF_SCOPE, HCP_ONLY, ADVICE, NO_ANSWER, ANSWER, SMALL_TALK)


def _rx(*parts: str) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE)


DRUGS = _rx(r"\blarotrectinib\w*", r"\bvitrakvi\b", r"\bentrectinib\w*", r"\brozlytrek\b",
            r"\brepotrectinib\w*", r"\baugtyro\b", r"\bselitrectinib\b", r"\bloxo-?\s?(101|195)\b",
            r"\btaletrectinib\b", r"\bcrizotinib\b")
MEDICINE = _rx(DRUGS.pattern, r"\btrk[- ]?(inhibitor|remmer)s?\b", r"\binhibitor", r"\bremmer",
               r"\bmedicine", r"\bmedication", r"\bdrugs?\b", r"\bpills?\b", r"\bcapsules?\b", r"\btablets?\b",
               r"\btreatment\b", r"\btherapy\b", r"\bchemo", r"\bgeneesmiddel", r"\bmedicijn", r"\bmedicatie",
               r"\bbehandeling\b", r"\bpil(len)?\b", r"\bcapsule", r"\bdrank\b", r"\bkuur\b")

# a patient's question about their care, in scope (DOMAIN) and a request for advice (ADVICE_RX)
_SECOND_OPINION = r"\bsecond opinion\b|\btweede (mening|opinie)\b"

DOMAIN = _rx(
    r"\bn?trk", r"ntrk", r"\bfusi", r"fusion", r"fusie", r"cancer", r"kanker", r"\btumou?r", r"\btumor",
    r"oncolog", r"carcino", r"sarcom", r"nephrom", r"melanom", r"\bgenes?\b", r"\bgen(en)?\b", r"genom",
    r"genetic", r"genetisch", r"mutation", r"mutatie", r"biops", r"diagnos", r"sequenc", r"\bngs\b",
    r"\bihc\b", r"immunohisto", r"\bfish\b", r"\bpcr\b", r"precision medicine", r"precisiegenees",
    r"kinase", r"\bprotein", r"\beiwit", r"\breceptor", r"metasta", r"uitzaai", r"\bmasc\b", r"\besmo\b",
    r"side[- ]effect", r"bijwerking", r"adverse", r"\bhcp\b", r"healthcare professional", r"zorgprofessional",
    r"big[- ]?(register|nummer|number)", r"\blareb\b", r"oncologist", r"\bdose\b", r"\bdosis\b", r"\bdosering(en)?\b",
    r"\bdosing\b", r"\bdosage\b", MEDICINE.pattern,
    # testing for the fusion: "What does a negative test result mean?", "Wat betekent de uitslag?"
    r"\btest(s|ed|ing|en|uitslag(en)?|resultaa?t(en)?)?\b", r"\buitslag(en)?\b",
    # what patients ask about the disease itself, even without naming it
    r"\bcur(e|es|ed|able|ing)\b", r"\bgene(zen|est|zing|esbaar)\b", r"prognos", r"life expectancy",
    r"levensverwachting", r"\bsurviv", r"\boverlev", r"\bpatients?\b", r"\bpatiënt",
    # a patient's own outlook, also without naming the disease: "What are my chances?", "Can it come back?"
    r"\b(my|our|mijn|onze) (chances?|kansen?|outlook|vooruitzichten)\b", r"\bhow long (will|do|would|can) (i|we|he|she|they|my \w+) live\b",
    r"\bhoe lang (heb|leef|hebben|leven|heeft|leeft) (ik|we|wij|hij|zij|ze|mijn \w+)\b",
    r"\b(comes?|coming) back\b", r"\bterug(komen|komt|keren|keert)\b", r"\brecurr?(ence|ent|ing|s|ed)?\b",
    r"\brelaps", r"\brecidie?f", r"\bdeadly\b", r"\bfatal\b", r"\bdodelijk\b",
    r"\bwill (i|we|he|she|they|my \w+) die\b", r"\b(ga|gaat|gaan) (ik|hij|zij|ze|mijn \w+) dood\b",
    _SECOND_OPINION,
    # about this assistant's texts: where they come from, who wrote and reviewed them
    r"\b(this|your|these|deze|dit|uw|jouw|je)\s+(information|informatie|info|texts?|teksten|answers?|antwoorden|assistant|assistent|chat)\b",
    r"\b(sources?|bronnen|bron)\b",
)

HCP_TOPIC = _rx(
    # dosing
    r"\bdos(e|es|ing|age|is|ering|eringen|eren)\b", r"\bmg\b", r"\d\s?mg", r"mg/m", r"twice (a )?da(il)?y",
    r"once (a )?da(il)?y", r"how (much|many) .{0,40}\b(take|give|prescribe|capsules|mg)\b",
    r"\bhoeveel\b.{0,40}\b(innemen|slikken|geven|nemen)\b", r"\b(bid|qd)\b", r"body surface|\bbsa\b",
    # efficacy and trials
    r"efficac", r"effective(ness)?\b", r"response rate", r"\borr\b", r"\brespons", r"remission",
    r"survival", r"\bpfs\b", r"duration of response", r"how well .{0,40}\bwork", r"\bwerkzaam",
    r"(trial|study|studie|onderzoek)\w* (data|result|resultat|uitkomst)", r"clinical (data|evidence)",
    r"\bnavigate\b", r"\bscout\b", r"startrk", r"\btrident", r"alka-?372", r"\bnct\d", r"\bpooled\b",
    r"complete respon", r"partial respon", r"\bconfidence interval\b", r"\b95\s?% ?ci\b",
    # safety and interactions
    r"toxicit", r"hepatotox", r"contraindicat", r"\bwarnings?\b", r"precaution", r"\bqt\b",
    r"interact", r"cyp\s?3a", r"\bcyp\b", r"inducer", r"grapefruit", r"wisselwerking",
    r"\binteractie", r"(combine|combined|combining|samen)\b.{0,30}\b(with|met)\b.{0,30}(drug|medic|middel)",
    # testing methods and algorithms
    r"immunohisto", r"\bihc\b", r"\bfish\b", r"in situ hybrid", r"rt-?pcr", r"\bpcr\b", r"sensitiv",
    r"specificity", r"algorithm", r"algoritme", r"\besmo\b", r"guideline", r"richtlijn",
    r"(rna|dna)[- ]based", r"\bassay", r"\bbreakpoint",
    # resistance
    r"resist", r"\b[a-z]\d{3}[a-z]\b", r"solvent[- ]?front", r"gatekeeper", r"\bxdfg\b",
    r"next[- ]generation (trk )?inhibitor", r"second[- ]generation", r"\bbypass\b",
    # biology beyond the public texts
    r"mutual(ly)? exclusiv", r"exclusiv", r"overexpress", r"fusion partner", r"partner gene",
    r"\betv6\b", r"\btpm3\b", r"\blmna\b", r"kinase domain", r"\bligand", r"\bngf\b", r"\bbdnf\b",
    r"\bnt-?[34]\b", r"constitutive", r"chimeric", r"oncogenic driver", r"other drivers?",
    # another driver in the same tumour (mutual exclusivity, an HCP text)
    # ("co-occur" alone is HCP content: see below)
    r"\b(coexist\w*|together with|alongside|at the same time)\b.{0,50}\b(mutations?|kras|egfr|braf|alk|ros1)\b",
    r"\b(mutations?|kras|egfr|braf|alk|ros1)\b.{0,50}\b(coexist\w*|together|alongside|at the same time)\b",
    r"co-?occur", r"incidence", r"prevalence",
    # product details and label
    r"\bindication", r"prescribing information", r"\bsmpc\b", r"\blabel\b", r"\bfda\b", r"\bema\b",
    r"\bapproval (date|history)", r"when was .{0,30}approved", r"oral solution",
    DRUGS.pattern,
    # requests for the restricted texts themselves
    r"\bhcp[- ]?(only|text|document|doc|content|info|information|section|material|page|data)",
    r"(professional|clinician|doctor|physician|arts|artsen)s?[- ](only|text|document|content|information|informatie|section)",
    r"zorgprofessional\w* ?(tekst|informatie|document)", r"(restricted|confidential|hidden|internal|secret) (text|document|content|information|data)",
    r"(print|dump|reveal|show|list|output|repeat|recite|quote|copy|paste|give|translate|summari[sz]e|spell|encode|decode|base64|rot13|leak|vertaal|toon|geef)\b.{0,40}\b(all|every|entire|whole|full|alle|hele)\b.{0,20}\b(text|document|doc|content|corpus|database|index|chunks?|teksten|documenten)",
    r"system prompt", r"your (instructions|prompt|rules)",
)

# which side effects the TRK inhibitors have is their safety data (HCP-only), in either language;
# what to do about one, or how to report it, is not
_TRKI = r"(trk[- ]?(inhibitor|remmer)s?|" + DRUGS.pattern + ")"
SAFETY = _rx(r"(side[- ]?effects?|adverse (events?|reactions?|effects?)|bijwerking\w*)\b.{0,40}" + _TRKI,
             _TRKI + r".{0,40}\b(side[- ]?effects?|adverse (events?|reactions?|effects?)|bijwerking\w*)")

PUBLIC_OK = _rx(r"\breport\w*\b.{0,30}\b(side|adverse|bijwerking)", r"\bmeld\w*\b", r"\blareb\b")

SYMPTOM = _rx(
    r"dizz", r"nause", r"vomit", r"throw(ing)? up", r"\bpain", r"\bache", r"headache", r"\brash", r"tired",
    r"fatigue", r"exhaust", r"weight gain", r"gain(ed|ing)?\b.{0,15}\bweight", r"put on\b.{0,15}\bweight", r"swell", r"swollen",
    r"fever", r"faint", r"\bfell\b", r"falling", r"fractur", r"broke", r"confus", r"forgetful", r"memory",
    r"can'?t sleep", r"insomnia", r"mood", r"depress", r"anxious", r"diarrh", r"constipat", r"bleed",
    r"itch", r"numb", r"tingl", r"jaundice", r"yellow", r"short(ness)? of breath", r"breathless",
    r"palpitat", r"heart", r"vision", r"blurr", r"taste", r"unsteady", r"wobbly", r"ataxia", r"sick",
    r"unwell", r"ill\b", r"weak", r"(have|having|had|get|getting|got|experienc\w*|develop\w*|suffer\w*|notic\w*)\b.{0,25}\b(side[- ]effects?|reaction|problem|adverse)",
    r"duizel", r"misselijk", r"overgeven", r"\bbraken", r"pijn", r"uitslag", r"\bmoe\b", r"vermoeid",
    r"aangekomen", r"gewichtstoename", r"zwel", r"opgezet", r"koorts", r"flauw", r"gevallen", r"breuk",
    r"verward", r"vergeetachtig", r"slapeloos", r"slecht slapen", r"somber", r"diarree", r"verstop",
    r"bloed", r"jeuk", r"tintel", r"hartklop", r"benauwd", r"wazig", r"\bziek\b", r"onwel",
    r"(heb|had|krijg|kreeg|ervaar|last van)\b.{0,25}\bbijwerking",
    r"\bhurts?\b", r"\bhurting\b", r"\bsore\b", r"\b(cannot|can not|unable to) sleep", r"liver (enzymes?|values|tests?)",
    r"\b(alt|ast)\b", r"leverwaarden", r"leverenzym", r"\b(valt|viel)\b",
)
SUBJECT = _rx(
    r"\b(i|i'm|im|i've|ive|i am|me|my)\b",
    r"\bmy (son|daughter|child|kid|baby|husband|wife|partner|mother|mum|mom|father|dad|patient|friend)\b",
    r"\b(patient|he|she)\b.{0,40}\b(developed|has|had|gets|got|is|was|experienc\w*|report\w*|complain\w*)\b",
    r"\b(ik|mij|me|mijn)\b", r"\bmijn (zoon|dochter|kind|man|vrouw|partner|moeder|vader|patiënt|patient)\b",
    r"\b(patiënt|hij|zij)\b.{0,40}\b(kreeg|heeft|had|krijgt|is)\b",
)
ONSET = _rx(
    r"\b(since|after|while|ever since|when)\b.{0,40}\b(start\w*|began|begun|taking|using|on)\b",
    r"\b(taking|using|started|start|began|on)\b.{0,30}(" + MEDICINE.pattern + ")",
    r"\b(sinds|nadat|na|tijdens)\b.{0,40}\b(gebruik|slik|neem|begonnen|gestart|start)",
    r"\b(gebruik|slik|neem)\b.{0,30}(" + MEDICINE.pattern + ")",
    # "since the new medicine", "sinds de behandeling"
    r"\b(since|after|ever since|sinds|na)\s+(\w+\s+){0,3}(" + MEDICINE.pattern + ")",
    # "the medicine is making me sick"
    r"(" + MEDICINE.pattern + r")\w*\s+(is\s+|are\s+|was\s+)?(making|made|gives?|gave|giving)\s+(me|him|her|them|my)\b",
    DRUGS.pattern,
)
# the medicine told as the cause, in a statement: "I get headaches from my pills", "door haar medicijn"
# ("Will I get dizzy from my pills?" asks what may happen)
CAUSE = _rx(
    r"\b(from|because of|due to|caused by)\s+(my|his|her|their|the|this|these)\s+(\w+\s+)?(" + MEDICINE.pattern + ")",
    r"\b(door|van|vanwege)\s+(mijn|zijn|haar|hun|het|de|dit|deze)\s+(\w+\s+)?(" + MEDICINE.pattern + ")",
)

ADVICE_RX = _rx(
    r"\bshould (i|we|he|she|they|my|our)\b", r"\bshall (i|we)\b",
    r"\b(can|could|may) (i|we|he|she|my \w+)\b.{0,20}\b(stop|lower|reduce|increase|skip|change|switch|take|double|halve|quit|refuse|avoid|try|get)\b",
    r"\bis it (safe|ok|okay|wise|better) (for (me|my|him|her|us)|to)\b", r"\bwhat should (i|we)\b",
    r"\bdo (i|we) need\b", r"\bwould you recommend\b", r"\brecommend\b.{0,20}\b(me|my|for)\b",
    r"\b(right|best|suitable) (choice |option |treatment )?for (me|my|him|her|us)\b",
    r"\b(moet|zou|mag) (ik|wij|we|mijn)\b", r"\bkan mijn\b",
    # "kan ik ... stoppen?" asks for advice; "Waar kan ik een bijwerking melden?" asks where
    r"\bkan (ik|wij|we)\b.{0,30}\b(stoppen|minderen|verminderen|verlagen|verhogen|overslaan|"
    r"veranderen|wisselen|overstappen|innemen|nemen|verdubbelen|halveren|weigeren|vermijden|proberen|krijgen)\b",
    r"\bwat moet ik\b", r"\braad\w*\b.{0,20}\baan\b",
    r"\bgeschikt voor (mij|mijn|ons)\b", r"\b(beste|juiste|goede) (\w+ )?(voor|bij) (mij|mijn|ons)\b",
    _SECOND_OPINION, r"\bin my (case|situation)\b", r"\bmijn situatie\b",
    r"\bwhat (now|next)\b", r"\bwhat happens (to me )?now\b", r"\bwhat do (i|we) do now\b", r"\bwat nu\b",
    r"\bhoe (gaat het )?nu verder\b", r"\bwat moet(en)? (ik|we) nu\b",
)

NL_WORDS = set("""de het een en is van wat hoe wordt worden ik mijn bij voor niet zijn kan welke waarom wanneer
waar ook met op die dat er heb heeft kinderen volwassenen behandeling kanker ziekte arts
geneesmiddel bijwerking sinds gebruik moet zou mag u uw je jij erfelijk vastgesteld komt vertel vertellen
meer iets graag uitleg leg zeg geef informatie alstublieft alsjeblieft bedankt dank deze dit hoi hallo
goedemorgen goedemiddag goedenavond dankjewel dankuwel fijn duidelijk hulp""".split())
EN_WORDS = set("""the a an and is of what how does do i my for not are can which why when where also with on that
there have has children adults treatment cancer disease doctor medicine side effect since taking
should could you your it is inherited diagnosed""".split())

_DELEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_B64 = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}")


_SCRIPT = re.compile(r"<(script|style)\b.*?(</\1\s*>|$)", re.I | re.S)
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,300}>")


def clean(text: str) -> str:
    """The question as words: Unicode normalised, control characters and markup removed."""
    text = unicodedata.normalize("NFKC", text)
    text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
    text = re.sub(r"[ \t]{2,}", " ", text)
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C").strip()


def detect_language(text: str) -> str:
    words = re.findall(r"[a-zà-ÿ']+", text.lower())
    nl = sum(w in NL_WORDS for w in words) + sum(w.endswith(("ij", "ijk", "lijk")) for w in words) * 0.5
    en = sum(w in EN_WORDS for w in words)
    if re.search(r"\b(ik|mijn|wat|hoe|welke|wordt|kinderen|kanker|sinds)\b|fusiekanker|genfusie", text.lower()):
        nl += 1
    return "nl" if nl > en else "en"


def variants(text: str) -> list[str]:
    """The text plus decoded forms a user might hide a request in (leetspeak, base64, spacing)."""
    out = [text, text.translate(_DELEET)]
    spaced = re.sub(r"\b(\w) (?=\w\b)", r"\1", text)  # "d o s e" -> "dose"
    if spaced != text:
        out.append(spaced)
    out.append(re.sub(r"[._*\-]+(?=\w)", "", text))  # "d.o.s.e", "d-o-s-e"
    for token in _B64.findall(text):
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable():
            out.append(decoded)
    return out


_BRANDS = {"vitrakvi": "larotrectinib", "rozlytrek": "entrectinib", "augtyro": "repotrectinib",
           "loxo-195": "selitrectinib", "loxo195": "selitrectinib", "loxo-101": "larotrectinib"}


def drugs_in(text: str) -> set[str]:
    """Generic names of the TRK inhibitors a text mentions (brand names mapped to generic)."""
    found = set()
    for m in DRUGS.finditer(text):
        name = re.sub(r"\s", "", m.group(0).lower())
        for generic in ("larotrectinib", "entrectinib", "repotrectinib", "selitrectinib"):
            if name.startswith(generic):
                name = generic
        found.add(_BRANDS.get(name, name))
    return found


def _any(pattern: re.Pattern, texts: list[str]) -> bool:
    return any(pattern.search(t) for t in texts)


_MANAGEMENT = re.compile(r"^\s*(how|what|which|hoe|wat|welke)\b.{0,40}\b(manag\w*|handle|prevent\w*|monitor\w*|mitigat\w*|"
                         r"aanpak\w*|voorkom\w*|behandel\w*)\b", re.IGNORECASE)
_OWN_CASE = re.compile(r"\b(my|mine|me|i have|i've|i'm|i am|i get|i got|i feel|i felt|he|she|his|her|mijn|"
                       r"ik heb|ik ben|ik krijg|ik voel|hij|zij)\b", re.IGNORECASE)


def is_clinical_management_question(text: str) -> bool:
    """"How should I manage weight gain on a TRK inhibitor?": a clinician's general question, not a
    report about a patient (which names the patient: "my patient", "she", "I have")."""
    return bool(_MANAGEMENT.search(text)) and not _OWN_CASE.search(text)


def is_adverse_event(text: str) -> bool:
    told = ONSET.search(text) or (CAUSE.search(text) and not text.rstrip().endswith("?"))
    return bool(SYMPTOM.search(text) and SUBJECT.search(text) and told)


# "What are its side effects?" after "What about entrectinib?" leans on it as much as "it" does
_PRONOUN = re.compile(r"\b(it|its|this|that|they|them|their|het|dit|dat|ze)\b", re.IGNORECASE)


def is_follow_up(question: str) -> bool:
    """Short or pronoun-led questions that lean on the previous turn ("And in children?")."""
    q = question.lower().strip()
    if re.match(r"^(and|also|what about|how about|but|so|en|ook|maar|wat als|hoe zit het)\b", q):
        return True
    words = re.findall(r"\w+", q)
    return len(words) <= 5 and not DOMAIN.search(q) or bool(_PRONOUN.search(q) and len(words) <= 9)


_LEAD = re.compile(
    r"^\s*(what|which|who|how|why|when|where|is|are|can|does|do|tell me|wat|welke|wie|hoe|waarom|wanneer|waar|is|zijn|kan)"
    r"(\s+(is|are|was|were|do|does|can|causes?|gets?|about|is het|zijn|wordt|worden|kan|krijgt))*\s+", re.IGNORECASE)


def rewrite_follow_up(previous: str, question: str) -> str:
    """"And how is it found?" after "What is TRK fusion cancer?" -> "how is TRK fusion cancer found?"."""
    topic = _LEAD.sub("", previous.strip()).rstrip("?.! ").strip()
    q = re.sub(r"^\s*(and|also|but|so|en|ook|maar)\b[\s,]*", "", question.strip(), flags=re.IGNORECASE)
    if drugs_in(q):  # "And for entrectinib?" after a larotrectinib question: the new medicine replaces the old
        topic = re.sub(r"\s{2,}", " ", DRUGS.sub("", topic)).strip()
        topic = re.sub(r"\s+(of|for|with|van|voor|bij|met)$", "", topic, flags=re.IGNORECASE)
    if topic and _PRONOUN.search(q):
        return _PRONOUN.sub(topic, q, count=1)
    return f"{q.rstrip('?')} ({topic})?" if topic else q


def asks_hcp_content(texts: list[str]) -> bool:
    all_variants = [v for t in texts for v in variants(t)]
    if _any(PUBLIC_OK, texts) and not _any(_rx(r"\b(dose|dosis|efficac|response rate|mg)\b"), texts):
        return False
    if _any(SAFETY, all_variants) and not any(wants_advice(t) for t in texts):
        return True
    return _any(HCP_TOPIC, all_variants)


def asks_clinical_data(texts: list[str]) -> bool:
    """Doses, efficacy, safety, testing algorithms, resistance ...: what only the (English) HCP texts
    hold, and a medicine's side effects. Naming a medicine alone is not enough ("Hoe werkt
    larotrectinib?")."""
    return _any(HCP_TOPIC, [DRUGS.sub(" ", t) for t in texts]) or _any(SAFETY, texts)


def in_domain(texts: list[str]) -> bool:
    return _any(DOMAIN, [v for t in texts for v in variants(t)])


_POLITE = r"(so|very|much|a|lot|for|your|the|help|answers?|info|information|that|this|it|helps|helped|was|is|" \
          r"useful|helpful|great|clear|ok|okay|veel|voor|de|het|je|jullie|uw|hulp|informatie|antwoord|antwoorden|" \
          r"dat|dit|helpt|hielp|duidelijk|fijn|super|top|heel|erg|wel|u|there|daar|allemaal|iedereen)"
_GREETING = re.compile(r"^(hi|hello|hey|hallo|hoi|goedemorgen|goedemiddag|goedenavond|good (morning|afternoon|evening))"
                       r"([\s,!.]+(there|daar|allemaal))?[\s,!.]*$", re.IGNORECASE)
_THANKS = re.compile(r"^(thanks?|thank you|thx|cheers|bedankt|dank( je| u)?( wel)?|dankjewel|dankuwel|merci|"
                     r"ok(ay)?|great|super|top|fijn|prima|duidelijk|got it|understood)"
                     r"([\s,!.]+" + _POLITE + r")*[\s,!.]*$", re.IGNORECASE)


def small_talk(text: str) -> str | None:
    """"greeting" or "thanks" when the message is only that ("Hello!", "Thank you, that helps."), else None."""
    t = re.sub(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]", " ", text).strip()  # emoji
    if _GREETING.match(t):
        return "greeting"
    if _THANKS.match(t):
        return "thanks"
    return None


# how to reach the texts for professionals is not a request for medical advice ("How can I get
# access as a doctor?", "Mag ik de informatie voor zorgprofessionals zien?")
_ACCESS = _rx(r"\b(access|toegang|regist\w*|sign(ed)? in|log(ged)? in|inloggen|verif\w*)\b",
              r"\b(informat\w+|texts?|teksten)\s+(voor|for)\s+(zorgprofessionals|(healthcare )?professionals|hcps?)\b")


def wants_advice(text: str) -> bool:
    return bool(ADVICE_RX.search(text)) and not _ACCESS.search(text)

