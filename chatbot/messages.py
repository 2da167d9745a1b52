"""Fixed reply texts in English and Dutch (everything else a user reads comes from the corpus)."""

MESSAGES = {
    "en": {
        "empty": "Please type a question about TRK fusion cancer.",
        "too_long": "Your question is too long ({n} characters). Please keep it under {limit} characters.",
        "adverse_event": (
            "Thank you for telling us. A side effect or other health problem while taking a medicine "
            "should be reported. Please contact your doctor or pharmacist about it, and do not stop or "
            "change your medicine on your own. This chat cannot handle urgent situations: if you feel very "
            "unwell, call your doctor or the emergency number now (112 in the EU; elsewhere your local "
            "emergency number)."
        ),
        "adverse_event_how": "How to report a side effect:",
        "out_of_scope": (
            "I can only help with questions about TRK fusion cancer: what it is, NTRK gene fusions, who "
            "can get it, how it is found and treated in general, and how to report a side effect. "
            "Please ask me about one of these topics."
        ),
        "hcp_only": (
            "This information is only for healthcare professionals. Details about prescription medicines "
            "and clinical data, such as doses, study results, safety data and testing algorithms, may only "
            "be shared with verified healthcare professionals under EU law. If you are a healthcare "
            "professional, please register and sign in with a verified account (in the Netherlands we "
            "check your BIG number). If you are a patient or carer, your doctor or care team can answer "
            "questions about your treatment. For your own medicine, read its package leaflet and ask your "
            "doctor or pharmacist."
        ),
        "hcp_related": "What our general information says:",
        "advice": (
            "I cannot give personal medical advice. Please talk to your doctor or care team: they know "
            "your situation and can help you decide."
        ),
        "advice_related": "General information that may help you prepare for that conversation:",
        "no_answer": (
            "I'm sorry, I don't know: our approved texts do not answer this question. Your doctor or "
            "care team may be able to help."
        ),
        "no_answer_hcp": (
            "I'm sorry, I don't know: our approved texts do not answer this question. The product "
            "information (SmPC) or the marketing authorisation holder's medical information service may."
        ),
        "greeting": (
            "Hello! I answer questions about TRK fusion cancer: what it is, NTRK gene fusions, who can get "
            "it, how it is found and treated in general, and how to report a side effect. What would you "
            "like to know?"
        ),
        "thanks": "You're welcome. If you have another question about TRK fusion cancer, just ask.",
        "fallback_language": "",
        "index_unavailable": "The assistant is being updated and cannot answer right now. Please try again shortly.",
        "adverse_event_answer": "About your question:",
        "other_language": (
            "Sorry, I can only answer in English and Dutch. Please ask your question in English or Dutch.\n\n"
            "Sorry, ik kan alleen in het Engels en het Nederlands antwoorden. Stel uw vraag in het Engels of "
            "het Nederlands."
        ),
    },
    "nl": {
        "empty": "Typ een vraag over TRK-fusiekanker.",
        "too_long": "Uw vraag is te lang ({n} tekens). Houd hem korter dan {limit} tekens.",
        "adverse_event": (
            "Dank u voor uw bericht. Een bijwerking of ander gezondheidsprobleem tijdens het gebruik van "
            "een geneesmiddel moet worden gemeld. Neem hierover contact op met uw arts of apotheker en stop "
            "of verander uw geneesmiddel niet zelf. Deze chat kan niet helpen bij spoed: voelt u zich erg "
            "ziek, bel dan nu uw arts of het alarmnummer (112 in de EU; elders het plaatselijke alarmnummer)."
        ),
        "adverse_event_how": "Zo meldt u een bijwerking:",
        "out_of_scope": (
            "Ik kan alleen vragen beantwoorden over TRK-fusiekanker: wat het is, NTRK-genfusies, bij wie "
            "het voorkomt, hoe het in het algemeen wordt vastgesteld en behandeld, en hoe u een bijwerking "
            "meldt. Stel gerust een vraag over een van deze onderwerpen."
        ),
        "hcp_only": (
            "Deze informatie is alleen bestemd voor zorgprofessionals. Details over receptgeneesmiddelen en "
            "klinische gegevens, zoals doseringen, onderzoeksresultaten, veiligheidsgegevens en "
            "testalgoritmen, mogen volgens Europese wetgeving alleen met geverifieerde zorgprofessionals "
            "worden gedeeld. Bent u zorgprofessional? Registreer u en log in met een geverifieerd account "
            "(in Nederland controleren wij uw BIG-nummer). Bent u patiënt of naaste? Uw arts of "
            "behandelteam kan uw vragen over uw behandeling beantwoorden. Over uw eigen geneesmiddel leest "
            "u meer in de bijsluiter, en uw arts of apotheker helpt u verder."
        ),
        "hcp_related": "Wat onze algemene informatie zegt:",
        "advice": (
            "Ik kan geen persoonlijk medisch advies geven. Bespreek dit met uw arts of behandelteam: zij "
            "kennen uw situatie en kunnen u helpen beslissen."
        ),
        "advice_related": "Algemene informatie die u kan helpen bij dat gesprek:",
        "no_answer": (
            "Het spijt me, dat weet ik niet: onze goedgekeurde teksten geven geen antwoord op deze vraag. "
            "Uw arts of behandelteam kan u misschien verder helpen."
        ),
        "no_answer_hcp": (
            "Het spijt me, dat weet ik niet: onze goedgekeurde teksten geven geen antwoord op deze vraag. "
            "De productinformatie (SmPC) of de medische informatiedienst van de registratiehouder misschien wel."
        ),
        "greeting": (
            "Hallo! Ik beantwoord vragen over TRK-fusiekanker: wat het is, NTRK-genfusies, bij wie het "
            "voorkomt, hoe het in het algemeen wordt vastgesteld en behandeld, en hoe u een bijwerking meldt. "
            "Wat wilt u weten?"
        ),
        "thanks": "Graag gedaan. Heeft u nog een vraag over TRK-fusiekanker? Stel hem gerust.",
        "fallback_language": "Dit antwoord komt uit onze Engelstalige teksten.",
        "index_unavailable": "De assistent wordt bijgewerkt en kan nu niet antwoorden. Probeer het zo opnieuw.",
        "adverse_event_answer": "Over uw vraag:",
        "other_language": (
            "Sorry, I can only answer in English and Dutch. Please ask your question in English or Dutch.\n\n"
            "Sorry, ik kan alleen in het Engels en het Nederlands antwoorden. Stel uw vraag in het Engels of "
            "het Nederlands."
        ),
    },
}

AE_QUERY = {
    "en": "how to report a side effect to your doctor, pharmacist, Lareb or the medical information service",
    "nl": "bijwerking melden bij arts, apotheker, Lareb of medische informatiedienst",
}


def msg(lang: str, key: str, **kw) -> str:
    text = MESSAGES.get(lang, MESSAGES["en"])[key]
    return text.format(**kw) if kw else text
