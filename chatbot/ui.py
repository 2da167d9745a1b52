"""The Gradio app: public chat with cited answers, HCP sign-in and registration, maintainer tab, API.

One builder per screen: ``chat_screen``, ``hcp_screen``, ``maintainer_screen``; ``build`` puts them
under a shared header.

Every request re-checks the session token server-side; the role never comes from the browser.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Gradio's queue rebuilds a pandas table of its last 10,000 events after every event, for its
# monitoring page (unused here): measured with py-spy, 7% of the server's time under load, and
# growing with uptime. Summarise rarely, over fewer events.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")

import gradio as gr  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from chatbot.accounts import HARD_LOCK_AFTER, PROFESSIONS, AccountError, ValidationError
from chatbot.answer import Reply
from chatbot.cases import CONSENT, Cases
from chatbot.index import build_index, index_status
from chatbot.service import App

LANGS = {"English": "en", "Nederlands": "nl"}
T = {
    "en": {
        "title": "TRK Assistant",
        "intro": ("**Questions and answers about TRK fusion cancer**, composed from approved texts. Every "
                  "sentence shows its source: select a number such as [1] to read it."),
        "disclaimer": ("**General information, not medical advice.** Emergency: call **112** (EU) or your "
                       "doctor. Report side effects to your doctor or pharmacist."),
        "lang_label": "Language / Taal", "chat_label": "Conversation",
        "chat_tab": "Chat", "hcp_tab": "Healthcare professionals", "maint_tab": "Maintainer",
        "question": "Your question", "placeholder": "Ask about TRK fusion cancer…", "send": "Send",
        "examples": "Example questions", "suggested": "You could also ask",
        "sources": "Sources", "source": "Source", "references": "References",
        "status": "Status", "public": "Public", "hcp": "Verified healthcare professional", "maint": "Maintainer",
        "signin_head": "### Sign in", "email": "Email", "password": "Password", "signin": "Sign in",
        "signout": "Sign out", "register_head": "### Register as a healthcare professional",
        "name": "Full name", "profession": "Profession", "country": "Country (two letters, e.g. NL)",
        "regnum": "Professional registration number (NL: BIG number, 11 digits)", "register": "Register",
        "registered": ("Thank you: your registration has been received. You can sign in as soon as it is verified "
                       "against the professional register (at once when your number is on the extract we hold)."),
        "signed_in": "Signed in.", "signed_out": "Signed out.",
        "reindex": "Re-index corpus", "approve": "Approve", "reject": "Reject", "reason": "Reason for rejection",
        "pending_head": "### Pending HCP registrations", "feedback_head": "### Feedback",
        "review_head": "### Questions to review (last 30 days: \"I don't know\", out of scope, thumbs-down)",
        "decide_email": "Email of the registration", "index_head": "### Index status",
        "not_allowed": "Only signed-in maintainers can do this.",
        "kinds": {"answer": "", "small_talk": "", "hcp_only": "🔒 **For healthcare professionals only**",
                  "adverse_event": "⚠️ **Reporting a side effect**", "advice": "🩺 **Please talk to your doctor**",
                  "out_of_scope": "ℹ️ **Outside what I can help with**", "no_answer": "❔ **I don't know**",
                  "invalid": "✏️ **Please check your question**", "unavailable": "⏳ **Please try again shortly**"},
        "audience": {"public": "Public", "hcp": "HCP only"},
        "example_qs": ["What is TRK fusion cancer?", "How is TRK fusion cancer diagnosed?",
                       "Can children get TRK fusion cancer?", "How do I report a side effect?"],
        "contact_head": "**Optional: may our safety team contact you about this side effect?**",
        "contact_name": "Your name (optional)", "contact_how": "Email address or phone number",
        "contact_ok": "I agree that the drug safety team may contact me about this report",
        "contact_send": "Send contact details",
        "contact_saved": "✅ Thank you. Your contact details are stored with your report.",
        "contact_errors": {"consent": "Please tick the box to agree first.",
                           "contact": "Please enter an email address or a phone number.",
                           "other": "Your details could not be stored. Please mention this side effect to your doctor or pharmacist."},
        "overview_tab": "Overview", "cases_tab": "Side-effect reports",
        "cases_head": "### Side-effect reports (oldest open first; ⚑ = not forwarded after 10 days)",
        "case_id": "Case number", "case_status": "New status", "case_mark": "Update status",
        "export_csv": "Export CSV", "export_json": "Export JSON", "export_file": "Export file",
        "locked_head": "### Accounts locked or delayed after failed sign-ins", "unlock_email": "Email of the account to unlock",
        "unlock": "Unlock",
    },
    "nl": {
        "title": "TRK Assistent",
        "intro": ("**Vragen en antwoorden over TRK-fusiekanker**, samengesteld uit goedgekeurde teksten. Bij "
                  "elke zin staat de bron: kies een nummer zoals [1] om die te lezen."),
        "disclaimer": ("**Algemene informatie, geen medisch advies.** Spoed: bel **112** (EU) of uw arts. "
                       "Meld bijwerkingen aan uw arts of apotheker."),
        "lang_label": "Language / Taal", "chat_label": "Gesprek",
        "chat_tab": "Chat", "hcp_tab": "Zorgprofessionals", "maint_tab": "Beheer",
        "question": "Uw vraag", "placeholder": "Stel een vraag over TRK-fusiekanker…", "send": "Versturen",
        "examples": "Voorbeeldvragen", "suggested": "U kunt ook vragen",
        "sources": "Bronnen", "source": "Bron", "references": "Referenties",
        "status": "Status", "public": "Publiek", "hcp": "Geverifieerde zorgprofessional", "maint": "Beheerder",
        "signin_head": "### Inloggen", "email": "E-mail", "password": "Wachtwoord", "signin": "Inloggen",
        "signout": "Uitloggen", "register_head": "### Registreren als zorgprofessional",
        "name": "Volledige naam", "profession": "Beroep", "country": "Land (twee letters, bijv. NL)",
        "regnum": "Registratienummer (NL: BIG-nummer, 11 cijfers)", "register": "Registreren",
        "registered": ("Dank u: uw registratie is ontvangen. U kunt inloggen zodra zij in het beroepsregister is "
                       "gecontroleerd (meteen als uw nummer op het uittreksel staat dat wij hebben)."),
        "signed_in": "Ingelogd.", "signed_out": "Uitgelogd.",
        "reindex": "Corpus opnieuw indexeren", "approve": "Goedkeuren", "reject": "Afwijzen",
        "reason": "Reden van afwijzing", "pending_head": "### Registraties in afwachting",
        "feedback_head": "### Feedback", "index_head": "### Indexstatus",
        "review_head": "### Vragen om na te kijken (laatste 30 dagen: \"weet ik niet\", buiten het onderwerp, duim omlaag)",
        "decide_email": "E-mail van de registratie", "not_allowed": "Alleen ingelogde beheerders kunnen dit doen.",
        "kinds": {"answer": "", "small_talk": "", "hcp_only": "🔒 **Alleen voor zorgprofessionals**",
                  "adverse_event": "⚠️ **Een bijwerking melden**", "advice": "🩺 **Bespreek dit met uw arts**",
                  "out_of_scope": "ℹ️ **Hier kan ik niet mee helpen**", "no_answer": "❔ **Dat weet ik niet**",
                  "invalid": "✏️ **Controleer uw vraag**", "unavailable": "⏳ **Probeer het zo opnieuw**"},
        "audience": {"public": "Publiek", "hcp": "Alleen zorgprofessionals"},
        "example_qs": ["Wat is TRK-fusiekanker?", "Hoe wordt een NTRK-genfusie vastgesteld?",
                       "Is TRK-fusiekanker erfelijk?", "Hoe meld ik een bijwerking?"],
        "contact_head": "**Vrijwillig: mag ons veiligheidsteam contact met u opnemen over deze bijwerking?**",
        "contact_name": "Uw naam (niet verplicht)", "contact_how": "E-mailadres of telefoonnummer",
        "contact_ok": "Ik ga ermee akkoord dat het team voor geneesmiddelenbewaking mij over deze melding benadert",
        "contact_send": "Contactgegevens versturen",
        "contact_saved": "✅ Dank u. Uw contactgegevens zijn bij uw melding bewaard.",
        "contact_errors": {"consent": "Vink eerst het vakje aan om akkoord te gaan.",
                           "contact": "Vul een e-mailadres of telefoonnummer in.",
                           "other": "Uw gegevens konden niet worden bewaard. Meld deze bijwerking ook aan uw arts of apotheker."},
        "overview_tab": "Overzicht", "cases_tab": "Bijwerkingsmeldingen",
        "cases_head": "### Bijwerkingsmeldingen (oudste open eerst; ⚑ = na 10 dagen niet doorgestuurd)",
        "case_id": "Meldingsnummer", "case_status": "Nieuwe status", "case_mark": "Status bijwerken",
        "export_csv": "CSV exporteren", "export_json": "JSON exporteren", "export_file": "Exportbestand",
        "locked_head": "### Accounts geblokkeerd of vertraagd na mislukte inlogpogingen",
        "unlock_email": "E-mail van het account om te deblokkeren", "unlock": "Deblokkeren",
    },
}
# Colours chosen for contrast (WCAG 2.2 AA, 4.5:1 for text): Gradio's default orange accent gives
# 2.8:1 on white, so buttons, selected tabs and links use blue-700/800.
THEME = gr.themes.Default(primary_hue="blue").set(
    color_accent="*primary_700", color_accent_soft="*primary_50",
    button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
    button_primary_text_color="white", link_text_color="*primary_700",
)
CSS = """
.sr-only {position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0}
#header {align-items: center; flex-wrap: wrap; gap: 4px 16px}
#header > * {flex: 0 1 auto !important; min-width: 0 !important; width: auto !important}
#header > #title {flex: 1 1 auto !important}
#title h1 {font-size: 1.35rem; margin: 0}
#status p {margin: 0}
.status-badge {display: inline-block; border-radius: 999px; padding: 1px 10px; font-size: 0.9em;
  background: #e8eefc; color: #1e3a8a; overflow-wrap: anywhere}
#lang, #lang fieldset, #lang [data-testid="block-info"] {padding: 0 !important; border: 0 !important;
  background: none !important; box-shadow: none !important}
#lang .wrap {gap: 4px}
#lang label {padding: 2px 8px !important; font-size: 0.85rem}
#lang [data-testid="block-info"] {font-size: 0.8rem; margin-bottom: 2px; color: #374151; background: none}
#live {position: absolute !important; width: 1px; height: 1px; overflow: hidden !important; clip: rect(0, 0, 0, 0);
  padding: 0 !important; border: 0 !important; margin: 0 !important}
#disclaimer {position: fixed !important; left: 0; right: 0; bottom: 0; z-index: 20; margin: 0 !important;
  background: var(--body-background-fill); border-top: 1px solid var(--border-color-primary);
  padding: 4px 12px !important; font-size: 0.85rem; box-shadow: 0 -2px 6px rgba(0, 0, 0, 0.06)}
/* room under the page for the disclaimer, and focus never hidden behind it (WCAG 2.4.11) */
.gradio-container {padding-bottom: 5rem !important}
html {scroll-padding-bottom: 5rem}
#disclaimer p {margin: 0}
#next-head p {margin: 0}
#ask-row {align-items: flex-end}
#send {flex-grow: 0 !important; align-self: flex-end; min-height: 44px; height: auto !important; margin-bottom: 10px}
#next-questions {flex-wrap: wrap; gap: 6px}
#next-questions > button {flex: 0 1 auto !important; min-width: 0 !important; white-space: normal; text-align: left}
#chatbot [role=log] {padding-top: 40px}  /* the first message clear of the chat's toolbar */
#chatbot a.cite {text-decoration: none; font-weight: 600; padding: 0 1px}
#chatbot a.cite:focus-visible, #chatbot summary:focus-visible, #chatbot .refs a:focus-visible {
  outline: 2px solid #1d4ed8; outline-offset: 2px}
#chatbot .cards {margin-top: 8px}
#chatbot .cards-head {margin: 4px 0; font-size: 0.9em}
#chatbot details.citation {border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 4px 8px;
  margin: 4px 0}
#chatbot details.citation[open] {background: var(--background-fill-secondary)}
#chatbot details.citation summary {cursor: pointer}
#chatbot .passage {margin: 6px 0; padding-left: 8px; border-left: 3px solid #94a3b8; overflow-wrap: anywhere}
#chatbot mark {background: #fef08a; color: #111827}
#chatbot .refs {margin: 2px 0 4px 16px; padding: 0; font-size: 0.9em; overflow-wrap: anywhere}
.badge {display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 0.8em; margin-left: 4px}
.badge-public {background: #e0f2e9; color: #14532d}
.badge-hcp {background: #fde2e2; color: #7f1d1d}
footer a, footer button, .show-api {color: #374151 !important}
.cases-wrap {overflow-x: auto; max-width: 100%}
table.cases {font-size: 0.85rem; border-collapse: collapse}
table.cases th, table.cases td {border: 1px solid var(--border-color-primary); padding: 2px 6px; vertical-align: top}
.case-flag {color: #991b1b}
@media (max-width: 480px) {
  .tab-container button {padding-left: 6px !important; padding-right: 6px !important; font-size: 0.85rem}
}
"""
# The page's own script (the live region, citation markers that open their cards): a file served
# from this origin, not a string handed to Gradio, which would compile it at run time and so need
# 'unsafe-eval' in the Content-Security-Policy (chatbot/headers.py).
STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/trk-static"
HEAD = '<script src="trk-static/ui.js" defer></script>'
# Every UI event is the page's own: kept out of the API description (only `ask` is listed there).
# They can still be called over HTTP as the page calls them, so each one that reads or changes
# anything behind an account checks the server-side session itself (see `maintainer_of`).
INTERNAL = {"api_visibility": "private"}
_MARKER = re.compile(r"&#91;(\d+)&#93;")
_URL = re.compile(r"https?://[^\s\"'<>]+")


def esc(text: str) -> str:
    """Text shown as text: HTML escaped, and Markdown link/image syntax neutralised."""
    return html.escape(text or "", quote=True).replace("[", "&#91;").replace("]", "&#93;")


def card_id(turn: int, n: int | str) -> str:
    return f"src-{turn}-{n}"


def render_reply(reply: Reply, lang: str, turn: int = 0) -> str:
    """The reply as the chat shows it: the badge of its kind, then the answer, each citation marker a
    link to its source card under the answer (``render_sources``)."""
    t = T[lang]
    cited = {str(c.n) for c in reply.citations}

    def marker(m: re.Match) -> str:
        n = m.group(1)
        if n not in cited:
            return f"<sup>{m.group(0)}</sup>"
        return (f'<sup><a class="cite" href="#{card_id(turn, n)}"><span class="sr-only">{esc(t["source"])} '
                f"</span>&#91;{n}&#93;</a></sup>")

    body = _MARKER.sub(marker, esc(reply.answer))
    badge = t["kinds"].get(reply.kind, "")
    return f"{badge}\n\n{body}" if badge else body


def render_sources(reply: Reply | None, lang: str, turn: int = 0) -> str:
    """One collapsible card per citation: title, section, audience badge, the passage with the
    sentences used marked, and its references (links where they are web addresses). One line of
    HTML, so that the chat's Markdown renderer takes it as one block."""
    if reply is None or not reply.citations:
        return ""
    t = T[lang]
    parts = [f'<div class="cards"><p class="cards-head"><strong>{esc(t["sources"])}</strong></p>']
    for c in reply.citations:
        passage = esc(c.quote)
        for s in c.sentences:
            passage = passage.replace(esc(s), f"<mark>{esc(s)}</mark>")
        passage = passage.replace("\n", "<br>")
        refs = "".join(f"<li>{_reference(s)}</li>" for s in c.sources)
        aud = esc(c.audience if c.audience in t["audience"] else "public")
        parts.append(
            f'<details class="citation aud-{aud}" id="{card_id(turn, c.n)}"><summary>&#91;{c.n}&#93; '
            f"<strong>{esc(c.title)}</strong> &mdash; {esc(c.heading)} "
            f'<span class="badge badge-{aud}">{esc(t["audience"].get(c.audience, c.audience))}</span></summary>'
            f'<blockquote class="passage">{passage}</blockquote>'
            + (f'<p class="refs-head">{esc(t["references"])}</p><ul class="refs">{refs}</ul>' if refs else "")
            + "</details>")
    parts.append("</div>")
    return "".join(parts)


def _reference(source: dict) -> str:
    title, ref = esc(source.get("title", "")), source.get("ref", "") or ""
    url = _URL.fullmatch(ref.strip())
    if url:
        return f'<a href="{html.escape(url.group(0), quote=True)}" target="_blank" rel="noopener noreferrer">{title}</a>'
    return f"{title} ({esc(ref)})" if ref else title


def spoken(reply: Reply, lang: str) -> str:
    """What the live region says once the answer is complete: its kind and its text, no markers."""
    badge = re.sub(r"^\W+|\*", "", T[lang]["kinds"].get(reply.kind, ""))
    return " ".join(f"{badge}. {_MARKER.sub('', esc(reply.answer))}".strip(". ").split())


def status_text(account, lang_code: str) -> str:
    t = T[lang_code]
    who = t["public"]
    if account is not None and account.is_hcp:
        who = f"{t['hcp']} ({account.email})"
    elif account is not None and account.is_maintainer:
        who = f"{t['maint']} ({account.email})"
    return f'<span class="sr-only">{esc(t["status"])}: </span><span class="status-badge">{esc(who)}</span>'


def code(choice) -> str:
    return LANGS.get(choice, "en")


def client_address(request: gr.Request | None) -> str:
    return request.client.host if request is not None and request.client else ""


def browser_language(request: gr.Request) -> str:
    """The language switch's first value: Nederlands when the browser's first language is Dutch
    (its Accept-Language header, which says what `navigator.language` says), else English."""
    header = request.headers.get("accept-language", "") if request is not None else ""
    first = header.split(",")[0].split(";")[0].strip().lower()
    return "Nederlands" if first == "nl" or first.startswith("nl-") else "English"


def check_rate(app: App, request: gr.Request | None) -> None:
    """The REST API's per-client limit on questions holds in the chat too (the same counter)."""
    wait = app.wait_to_ask(client_address(request))
    if wait:
        raise gr.Error(f"Too many questions from your connection; please try again in {wait} seconds.")


@dataclass
class Shell:
    """What every screen shares: the session token in the browser, the language, the status line."""

    token: gr.BrowserState
    lang: gr.Radio
    status: gr.Markdown


@dataclass
class Screen:
    """A tab as its builder hands it back: the tab, how to put its texts into a language, and the
    events other screens follow (such as signing in, after which the maintainer tab may show)."""

    tab: gr.Tab
    texts: list[tuple[gr.components.Component, Callable[[dict], object]]] = field(default_factory=list)
    events: list = field(default_factory=list)


def build(app: App, browser_secret: str | None = None) -> gr.Blocks:
    """The page: a compact header (name, status, language), the chat, HCP and maintainer tabs, a
    disclaimer that stays in view, and the ``ask`` API."""
    # files Gradio keeps to serve (only the case exports here) are deleted EXPORT_MAX_AGE after they
    # were made: an export holds reporters' contact details, and its address needs no session
    with gr.Blocks(title="TRK Assistant", delete_cache=(EXPORT_MAX_AGE, EXPORT_MAX_AGE)) as demo:
        token = gr.BrowserState("", storage_key="trk_session", secret=browser_secret or secrets.token_hex(16))
        with gr.Row(elem_id="header", equal_height=True):
            title = gr.Markdown(f"# {T['en']['title']}", elem_id="title")
            status = gr.Markdown(status_text(None, "en"), elem_id="status")
            lang = gr.Radio(list(LANGS), value="English", label=T["en"]["lang_label"], elem_id="lang")
        shell = Shell(token, lang, status)
        with gr.Tabs():
            chat = chat_screen(app, shell)
            hcp = hcp_screen(app, shell)
            maint = maintainer_screen(app, shell)
        disclaimer = gr.Markdown(T["en"]["disclaimer"], elem_id="disclaimer")
        texts = [(title, lambda t: f"# {t['title']}"), (disclaimer, lambda t: t["disclaimer"])]
        texts += chat.texts + hcp.texts + maint.texts

        def switch(choice, tok):
            t = T[code(choice)]
            return [status_text(app.account(tok), code(choice))] + [text(t) for _, text in texts]

        lang.change(switch, inputs=[lang, token], outputs=[status] + [c for c, _ in texts], api_name="language",
                    **INTERNAL)
        # the browser's language picks one on the first visit (its first choice, as the browser sends it)
        demo.load(browser_language, outputs=lang, api_name="browser_language", **INTERNAL)

        def refresh(tok, choice):
            account = app.account(tok)
            return status_text(account, code(choice)), gr.update(visible=bool(account and account.is_maintainer))

        demo.load(refresh, inputs=[token, lang], outputs=[status, maint.tab], api_name="status", **INTERNAL)
        for event, name in zip(hcp.events, ("status_after_sign_in", "status_after_sign_out")):
            # signing in or out shows or hides the maintainer tab
            event.then(refresh, inputs=[token, lang], outputs=[status, maint.tab], api_name=name, **INTERNAL)

        # API: the same JSON as `python -m chatbot ask --json` -------------------------------------
        def ask(question: str, history: list[str], session_token: str, request: gr.Request) -> dict:
            """Answer a question; without a valid session token the caller is public."""
            check_rate(app, request)
            hist = [h for h in (history or []) if isinstance(h, str)]
            return app.ask(question if isinstance(question, str) else "", hist, session_token).to_json()

        gr.api(ask, api_name="ask", concurrency_limit=app.settings.ask_concurrency)
    return demo


def chat_screen(app: App, shell: Shell) -> Screen:
    """The public chat: the conversation (answers with their source cards), questions to ask next
    (example questions before the first one), the question box."""
    t = T["en"]
    with gr.Tab(t["chat_tab"], id="chat") as tab:
        questions = gr.State([])  # the raw questions of this chat, for follow-ups
        meta = gr.State({})  # chat index -> {question, kind}, for feedback
        chatbot = gr.Chatbot(elem_id="chatbot", label=t["chat_label"], show_label=False, height="58vh",
                             min_height=260, sanitize_html=True, render_markdown=True, placeholder=t["intro"],
                             buttons=["copy", "copy_all"])  # no "share" (to Hugging Face; unlabelled)
        # visually hidden; announced (aria-live, set by ui.js). Markdown, not gr.HTML: Gradio 6 renders an
        # HTML component's template with the Function constructor, which the page's CSP forbids
        live = gr.Markdown("", elem_id="live", latex_delimiters=[])
        next_head = gr.Markdown(f"**{t['examples']}**", elem_id="next-head")
        with gr.Row(elem_id="next-questions"):
            nexts = [gr.Button(q, size="sm", elem_id=f"next-{i}", elem_classes="next-question")
                     for i, q in enumerate(t["example_qs"])]
        case_ref = gr.State("")  # the last side-effect report's case, for the optional contact form
        with gr.Column(visible=False, elem_id="contact-form", variant="panel") as contact_box:
            contact_head = gr.Markdown(t["contact_head"], elem_id="contact-head")
            consent = gr.Markdown(CONSENT["en"], elem_id="contact-consent")
            c_name = gr.Textbox(label=t["contact_name"], elem_id="contact-name", max_lines=1)
            c_how = gr.Textbox(label=t["contact_how"], elem_id="contact-how", max_lines=1)
            c_ok = gr.Checkbox(label=t["contact_ok"], elem_id="contact-ok")
            c_send = gr.Button(t["contact_send"], elem_id="contact-send")
            c_msg = gr.Markdown("", elem_id="contact-message")
        with gr.Row(elem_id="ask-row"):
            box = gr.Textbox(label=t["question"], placeholder=t["placeholder"], elem_id="question", scale=5,
                             max_lines=6)
            send = gr.Button(t["send"], variant="primary", elem_id="send", scale=1, min_width=80)

    def offered(head: str, qs: list[str]) -> list:
        return [f"**{esc(head)}**"] + [gr.update(value=q, visible=True) for q in qs] + \
            [gr.update(visible=False)] * (len(nexts) - len(qs))

    def respond(question, chat, asked, meta_map, tok, choice, request: gr.Request):
        check_rate(app, request)
        question = question if isinstance(question, str) else ""
        reply = app.ask(question, list(asked), tok)
        shown_lang = reply.language if reply.kind != "invalid" else code(choice)
        chat = list(chat or []) + [{"role": "user", "content": esc(question) or "…"},
                                   {"role": "assistant", "content": ""}]
        turn = len(chat) - 1
        meta_map = dict(meta_map or {})
        meta_map[str(turn)] = {"question": question[:2000], "kind": reply.kind}
        asked = (list(asked) + [question])[-6:] if reply.kind not in ("invalid", "small_talk") else list(asked)
        pieces = re.split(r"(?<=</sup>) ", render_reply(reply, shown_lang, turn))
        unchanged = [gr.skip()] * (2 + len(nexts) + 5)
        for i in range(1, len(pieces)):  # streamed sentence by sentence
            chat[-1] = {"role": "assistant", "content": " ".join(pieces[:i])}
            yield chat, "", asked, meta_map, *unchanged
        cards = render_sources(reply, shown_lang, turn)
        chat[-1] = {"role": "assistant", "content": " ".join(pieces) + (f"\n\n{cards}" if cards else "")}
        lt = T[shown_lang]
        if reply.suggestions:
            nxt = offered(lt["suggested"], reply.suggestions[:3])
        else:  # nothing near to suggest ("I don't know", a greeting): the example questions again
            nxt = offered(lt["examples"], [q for q in lt["example_qs"] if q != question.strip()][:3])
        done = f'<p class="turn-{turn}">{spoken(reply, shown_lang)}</p>'
        form = [gr.skip()] * 5
        if reply.kind == "adverse_event" and reply.case_ref:  # offered after the reply, never before it
            form = [reply.case_ref, gr.update(visible=True), CONSENT[shown_lang], "", False]
        yield chat, "", asked, meta_map, done, *nxt, *form

    chat_io = dict(inputs=[box, chatbot, questions, meta, shell.token, shell.lang],
                   outputs=[chatbot, box, questions, meta, live, next_head, *nexts, case_ref, contact_box, consent,
                            c_msg, c_ok], concurrency_limit=32)
    send.click(respond, api_name="chat_send", **chat_io, **INTERNAL)
    box.submit(respond, api_name="chat_submit", **chat_io, **INTERNAL)
    for i, b in enumerate(nexts):
        b.click(lambda q: q, inputs=b, outputs=box, api_name=f"next_{i}", **INTERNAL).then(
            respond, api_name=f"next_{i}_answer", **chat_io, **INTERNAL)

    def on_like(data: gr.LikeData, meta_map):
        info = (meta_map or {}).get(str(data.index if isinstance(data.index, int) else data.index[0]))
        if info and app.accounts is not None:
            try:
                app.accounts.add_feedback(info["question"], info["kind"], bool(data.liked))
            except AccountError:
                pass

    chatbot.like(on_like, inputs=[meta], outputs=None, api_name="feedback", **INTERNAL)

    def leave_contact(ref, name, how, agreed, choice):
        lt = T[code(choice)]
        try:
            app.engine.cases.add_contact(ref or "", how or "", name or "", consent=bool(agreed))
        except ValidationError as exc:
            return lt["contact_errors"].get(exc.field, lt["contact_errors"]["other"]), gr.skip(), gr.skip()
        except AccountError:
            return lt["contact_errors"]["other"], gr.skip(), gr.skip()
        return lt["contact_saved"], "", ""

    c_send.click(leave_contact, inputs=[case_ref, c_name, c_how, c_ok, shell.lang], outputs=[c_msg, c_name, c_how],
                 api_name="contact", **INTERNAL)
    texts = [
        (tab, lambda t: gr.update(label=t["chat_tab"])),
        (chatbot, lambda t: gr.update(label=t["chat_label"], placeholder=t["intro"])),
        (box, lambda t: gr.update(label=t["question"], placeholder=t["placeholder"])),
        (send, lambda t: gr.update(value=t["send"])),
        (next_head, lambda t: f"**{esc(t['examples'])}**"),
        (contact_head, lambda t: t["contact_head"]), (c_name, lambda t: gr.update(label=t["contact_name"])),
        (c_how, lambda t: gr.update(label=t["contact_how"])), (c_ok, lambda t: gr.update(label=t["contact_ok"])),
        (c_send, lambda t: gr.update(value=t["contact_send"])),
    ] + [(b, lambda t, i=i: gr.update(value=t["example_qs"][i], visible=True)) for i, b in enumerate(nexts)]
    return Screen(tab, texts)


def hcp_screen(app: App, shell: Shell) -> Screen:
    """Sign-in and registration for healthcare professionals."""
    t = T["en"]
    with gr.Tab(t["hcp_tab"], id="hcp") as tab:
        signin_head = gr.Markdown(t["signin_head"])
        email = gr.Textbox(label=t["email"], elem_id="signin-email")
        password = gr.Textbox(label=t["password"], type="password", elem_id="signin-password")
        with gr.Row():
            signin = gr.Button(t["signin"], variant="primary", elem_id="signin")
            signout = gr.Button(t["signout"], elem_id="signout")
        auth_msg = gr.Markdown("", elem_id="auth-message")
        register_head = gr.Markdown(t["register_head"])
        r_name = gr.Textbox(label=t["name"], elem_id="reg-name")
        r_email = gr.Textbox(label=t["email"], elem_id="reg-email")
        r_prof = gr.Dropdown(list(PROFESSIONS), value="physician", label=t["profession"], elem_id="reg-prof")
        r_country = gr.Textbox(value="NL", label=t["country"], elem_id="reg-country")
        r_number = gr.Textbox(label=t["regnum"], elem_id="reg-number")
        r_password = gr.Textbox(label=t["password"], type="password", elem_id="reg-password")
        register = gr.Button(t["register"], elem_id="register")
        reg_msg = gr.Markdown("", elem_id="register-message")

    def do_signin(mail, pw, choice, request: gr.Request):
        client = client_address(request)
        if app.accounts is None:
            return "", "Accounts are not available.", ""
        wait = app.wait_to_sign_in(client)
        if wait:
            return "", f"Too many sign-in attempts; please try again in {wait} seconds.", ""
        try:
            tok, _ = app.accounts.sign_in(mail or "", pw or "", client=client)
        except AccountError as exc:
            return "", esc(str(exc)), ""
        return tok, T[code(choice)]["signed_in"], ""

    signed_in = signin.click(do_signin, inputs=[email, password, shell.lang],
                             outputs=[shell.token, auth_msg, password], api_name="sign_in", **INTERNAL)

    def do_signout(tok, choice):
        if app.accounts is not None and tok:
            try:
                app.accounts.sign_out(tok)
            except AccountError:
                pass
        return "", T[code(choice)]["signed_out"]

    signed_out = signout.click(do_signout, inputs=[shell.token, shell.lang], outputs=[shell.token, auth_msg],
                               api_name="sign_out", **INTERNAL)

    def do_register(name, mail, prof, country, number, pw, choice):
        t = T[code(choice)]
        if app.accounts is None:
            return "Accounts are not available.", gr.skip()
        try:  # an email already registered gets the same answer as a new one (no account enumeration)
            app.accounts.register(name=name or "", email=mail or "", profession=prof or "",
                                  country=country or "", registration_number=number or "", password=pw or "")
        except AccountError as exc:
            return f"❌ {esc(str(exc))}", gr.skip()
        return t["registered"], ""

    register.click(do_register, inputs=[r_name, r_email, r_prof, r_country, r_number, r_password, shell.lang],
                   outputs=[reg_msg, r_password], api_name="register", **INTERNAL)
    texts = [
        (tab, lambda t: gr.update(label=t["hcp_tab"])), (signin_head, lambda t: t["signin_head"]),
        (email, lambda t: gr.update(label=t["email"])), (password, lambda t: gr.update(label=t["password"])),
        (signin, lambda t: gr.update(value=t["signin"])), (signout, lambda t: gr.update(value=t["signout"])),
        (register_head, lambda t: t["register_head"]), (r_name, lambda t: gr.update(label=t["name"])),
        (r_email, lambda t: gr.update(label=t["email"])), (r_prof, lambda t: gr.update(label=t["profession"])),
        (r_country, lambda t: gr.update(label=t["country"])), (r_number, lambda t: gr.update(label=t["regnum"])),
        (r_password, lambda t: gr.update(label=t["password"])), (register, lambda t: gr.update(value=t["register"])),
    ]
    return Screen(tab, texts, [signed_in, signed_out])


def maintainer_screen(app: App, shell: Shell) -> Screen:
    """For signed-in maintainers: index status and re-index, pending registrations, feedback."""
    t = T["en"]
    with gr.Tab(t["maint_tab"], id="maint", visible=False) as tab, gr.Tabs():
        with gr.Tab(t["overview_tab"], id="overview") as overview_tab:
            index_head = gr.Markdown(t["index_head"])
            index_info = gr.Markdown("", elem_id="index-status")
            reindex = gr.Button(t["reindex"], elem_id="reindex")
            reindex_msg = gr.Markdown("", elem_id="reindex-message")
            pending_head = gr.Markdown(t["pending_head"])
            pending = gr.Markdown("", elem_id="pending")
            m_email = gr.Textbox(label=t["decide_email"], elem_id="decide-email")
            m_reason = gr.Textbox(label=t["reason"], elem_id="decide-reason")
            with gr.Row():
                approve = gr.Button(t["approve"], elem_id="approve")
                reject = gr.Button(t["reject"], elem_id="reject")
            decide_msg = gr.Markdown("", elem_id="decide-message")
            locked_head = gr.Markdown(t["locked_head"])
            locked = gr.Markdown("", elem_id="locked")
            u_email = gr.Textbox(label=t["unlock_email"], elem_id="unlock-email")
            unlock = gr.Button(t["unlock"], elem_id="unlock")
            unlock_msg = gr.Markdown("", elem_id="unlock-message")
            feedback_head = gr.Markdown(t["feedback_head"])
            feedback = gr.Markdown("", elem_id="feedback")
            review_head = gr.Markdown(t["review_head"])
            review = gr.Markdown("", elem_id="review")
        cases = cases_screen(app, shell, maintainer_of)

    def maintainer(tok):
        return maintainer_of(app, tok)

    def overview(tok, choice):
        if maintainer(tok) is None:
            return T[code(choice)]["not_allowed"], "", "", "", ""
        st = index_status(app.settings, app.engine.store)
        lines = [f"- generation `{esc(str(st['generation']))}`, last re-index {esc(str(st['updated']))}"]
        for key in sorted(st["chunks"]):
            lines.append(f"- {esc(key)}: {st['documents'].get(key, 0)} documents, {st['chunks'][key]} chunks")
        lines += [f"- ❌ {esc(e)}" for e in st["errors"]] or ["- corpus valid"]
        pend = app.accounts.pending() if app.accounts else []
        pend_md = "\n".join(f"- {esc(a.email)}: {esc(a.name)}, {esc(a.profession)}, {esc(a.country)}"
                            for a in pend) or "-"
        fb = app.accounts.feedback_summary() if app.accounts else {"by_kind": {}, "most_disliked": []}
        fb_md = "\n".join(f"- {esc(k)}: 👍 {v['likes']} 👎 {v['dislikes']}" for k, v in fb["by_kind"].items()) or "-"
        if fb["most_disliked"]:
            fb_md += "\n\n" + "\n".join(f"- 👎 {n}× {esc(q)}" for q, n in fb["most_disliked"])
        rows = app.accounts.review(30)[:50] if app.accounts else []
        review_md = "\n".join(
            f"- {r['times'] + r['thumbs_down']}× `{esc(r['kind'])}` {esc(r['question'])}"
            + (f" (nearest: {esc(r['nearest'])})" if r["nearest"] else "") for r in rows) or "-"
        locked_md = "\n".join(f"- {esc(a.email)}: {n} failed sign-ins in a row"
                              + (" (locked: needs unlocking)" if n >= HARD_LOCK_AFTER else "")
                              for a, n in (app.accounts.locked() if app.accounts else [])) or "-"
        return "\n".join(lines), pend_md, locked_md, fb_md, review_md

    shown = [index_info, pending, locked, feedback, review]
    tab.select(overview, inputs=[shell.token, shell.lang], outputs=shown, api_name="maintainer_tab", **INTERNAL)
    overview_tab.select(overview, inputs=[shell.token, shell.lang], outputs=shown, api_name="overview_tab",
                        **INTERNAL)

    def do_unlock(tok, mail, choice):
        account = maintainer(tok)
        if account is None or app.accounts is None:
            return T[code(choice)]["not_allowed"]
        try:
            app.accounts.unlock(mail or "", actor=f"account:{account.id}")
        except AccountError as exc:
            return f"❌ {esc(str(exc))}"
        return f"✅ {esc(mail)}: unlocked"

    unlock.click(do_unlock, inputs=[shell.token, u_email, shell.lang], outputs=unlock_msg, api_name="unlock",
                 **INTERNAL)

    def do_reindex(tok, choice, progress=gr.Progress()):
        account = maintainer(tok)
        if account is None:
            return T[code(choice)]["not_allowed"]
        if not app._reindex_lock.acquire(blocking=False):
            return "A re-index is already running."
        try:
            def report(done, total, message):
                progress((done, max(total, 1)), desc=message)

            summary = build_index(app.settings, app.engine.embedder, progress=report, store=app.engine.store)
            if app.accounts is not None:
                app.accounts.record("reindex", f"account:{account.id}", summary=summary.line())
            app.engine.snapshot(force=True)
            return f"✅ {esc(summary.line())}"
        except Exception as exc:  # shown to the maintainer; the previous index keeps serving
            return f"❌ {esc(str(exc))}"
        finally:
            app._reindex_lock.release()

    reindex.click(do_reindex, inputs=[shell.token, shell.lang], outputs=[reindex_msg], concurrency_limit=1,
                  concurrency_id="reindex", api_name="reindex", **INTERNAL)

    def decide(tok, mail, reason, verdict, choice):
        account = maintainer(tok)
        if account is None or app.accounts is None:
            return T[code(choice)]["not_allowed"]
        try:
            if verdict == "approve":
                app.accounts.approve(mail or "", actor=f"account:{account.id}")
            else:
                app.accounts.reject(mail or "", reason or "", actor=f"account:{account.id}")
        except AccountError as exc:
            return f"❌ {esc(str(exc))}"
        return f"✅ {esc(mail)}: {verdict}d"

    approve.click(lambda t, m, r, c: decide(t, m, r, "approve", c), inputs=[shell.token, m_email, m_reason, shell.lang],
                  outputs=decide_msg, api_name="approve", **INTERNAL)
    reject.click(lambda t, m, r, c: decide(t, m, r, "reject", c), inputs=[shell.token, m_email, m_reason, shell.lang],
                 outputs=decide_msg, api_name="reject", **INTERNAL)
    texts = [
        (tab, lambda t: gr.update(label=t["maint_tab"])), (index_head, lambda t: t["index_head"]),
        (reindex, lambda t: gr.update(value=t["reindex"])), (pending_head, lambda t: t["pending_head"]),
        (m_email, lambda t: gr.update(label=t["decide_email"])), (m_reason, lambda t: gr.update(label=t["reason"])),
        (approve, lambda t: gr.update(value=t["approve"])), (reject, lambda t: gr.update(value=t["reject"])),
        (feedback_head, lambda t: t["feedback_head"]), (review_head, lambda t: t["review_head"]),
        (overview_tab, lambda t: gr.update(label=t["overview_tab"])), (locked_head, lambda t: t["locked_head"]),
        (u_email, lambda t: gr.update(label=t["unlock_email"])), (unlock, lambda t: gr.update(value=t["unlock"])),
    ]
    return Screen(tab, texts + cases.texts)


def maintainer_of(app: App, tok):
    """The signed-in maintainer behind a session token (checked server-side on every event), or None."""
    account = app.account(tok)
    return account if account is not None and account.is_maintainer else None


def cases_screen(app: App, shell: Shell, maintainer: Callable) -> Screen:
    """The maintainer's "Side-effect reports": every case with its age and status, a flag on any not
    forwarded after 10 days, status changes and CSV/JSON export. Every view, change and export is
    audited under the maintainer's opaque id."""
    t = T["en"]
    with gr.Tab(t["cases_tab"], id="cases") as tab:
        head = gr.Markdown(t["cases_head"])
        table = gr.Markdown("", elem_id="cases-table", latex_delimiters=[])  # an HTML table (not gr.HTML: see `live`)
        with gr.Row():
            case_id = gr.Textbox(label=t["case_id"], elem_id="case-id", max_lines=1)
            status = gr.Dropdown(["forwarded", "closed"], value="forwarded", label=t["case_status"],
                                 elem_id="case-status")
        mark = gr.Button(t["case_mark"], elem_id="case-mark")
        mark_msg = gr.Markdown("", elem_id="case-message")
        with gr.Row():
            export_csv = gr.Button(t["export_csv"], elem_id="export-csv")
            export_json = gr.Button(t["export_json"], elem_id="export-json")
        # shown once there is a file (Gradio's empty file box carries an aria-label on a plain div)
        export_file = gr.File(label=t["export_file"], elem_id="export-file", interactive=False, visible=False)

    def authorised(tok):
        account = maintainer(app, tok)
        if account is None or app.accounts is None:
            return None, None
        return account, Cases(app.accounts)

    def view(tok, choice):
        account, cases = authorised(tok)
        if account is None:
            return esc(T[code(choice)]["not_allowed"])
        try:
            return cases_table(cases.list(actor=f"account:{account.id}"))
        except AccountError as exc:
            return f"❌ {esc(str(exc))}"

    tab.select(view, inputs=[shell.token, shell.lang], outputs=table, api_name="cases", **INTERNAL)

    def do_mark(tok, number, new_status, choice):
        account, cases = authorised(tok)
        if account is None:
            return T[code(choice)]["not_allowed"], gr.skip()
        try:
            row = cases.mark(number or "", new_status or "", actor=f"account:{account.id}")
        except AccountError as exc:
            return f"❌ {esc(str(exc))}", gr.skip()
        return f"✅ case {row['id']}: {esc(row['status'])}", view(tok, choice)

    mark.click(do_mark, inputs=[shell.token, case_id, status, shell.lang], outputs=[mark_msg, table],
               api_name="case_mark", **INTERNAL)

    def do_export(tok, fmt):
        account, cases = authorised(tok)
        if account is None:
            return gr.update(value=None, visible=False)
        folder = tempfile.mkdtemp(dir=export_folder())
        path = os.path.join(folder, f"side-effect-cases-{cases.clock():%Y%m%d-%H%M%S}.{fmt}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(cases.export(fmt, actor=f"account:{account.id}"))
        return gr.update(value=path, visible=True)

    export_csv.click(lambda tok: do_export(tok, "csv"), inputs=shell.token, outputs=export_file,
                     api_name="cases_export_csv", **INTERNAL)
    export_json.click(lambda tok: do_export(tok, "json"), inputs=shell.token, outputs=export_file,
                      api_name="cases_export_json", **INTERNAL)
    texts = [
        (tab, lambda t: gr.update(label=t["cases_tab"])), (head, lambda t: t["cases_head"]),
        (case_id, lambda t: gr.update(label=t["case_id"])), (status, lambda t: gr.update(label=t["case_status"])),
        (mark, lambda t: gr.update(value=t["case_mark"])), (export_csv, lambda t: gr.update(value=t["export_csv"])),
        (export_json, lambda t: gr.update(value=t["export_json"])),
        (export_file, lambda t: gr.update(label=t["export_file"])),
    ]
    return Screen(tab, texts)


EXPORT_MAX_AGE = 600  # seconds an export file is kept for its download
_export_root: Path | None = None


def export_folder(now: float | None = None) -> Path:
    """This process's folder for case exports (private to the app's user), first emptied of exports
    older than EXPORT_MAX_AGE: an export is a download, not a store, and Gradio serves its own copy."""
    global _export_root
    if _export_root is None or not _export_root.is_dir():
        _export_root = Path(tempfile.mkdtemp(prefix="trk-exports-"))
    now = time.time() if now is None else now
    for old in _export_root.iterdir():
        if now - old.stat().st_mtime > EXPORT_MAX_AGE:
            shutil.rmtree(old, ignore_errors=True)
    return _export_root


def cases_table(rows: list[dict]) -> str:
    """The cases as an HTML table (every value escaped), for maintainers only: contact details too."""
    if not rows:
        return "<p>No side-effect reports yet.</p>"
    head = ("<tr>" + "".join(f'<th scope="col">{h}</th>' for h in (
        "#", "Received (UTC)", "Age (days)", "Status", "Language / from", "Medicines", "Reactions",
        "Missing criteria", "Message", "Contact")) + "</tr>")
    body = []
    for r in rows:
        missing = [k.replace("_", " ") for k in ("patient", "suspect_medicine", "suspected_reaction") if not r[k]]
        flag = f' <strong class="case-flag">⚑ {esc(r["flag"])}</strong>' if r["flag"] else ""
        contact = " ".join(x for x in (r["contact_name"], r["contact"]) if x)
        cells = [str(r["id"]), esc(r["received_at"]), f'{r["age_days"]}{flag}', esc(r["status"]),
                 f'{esc(r["language"])} / {esc(r["audience"])}', esc(", ".join(r["medicines"]) or "-"),
                 esc(", ".join(r["reactions"]) or "-"), esc(", ".join(missing) or "-"), esc(r["message"][:300]),
                 esc(contact or "-")]
        body.append(f'<tr id="case-{r["id"]}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<div class="cases-wrap"><table class="cases"><caption class="sr-only">Side-effect reports</caption>'
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table></div>")


def skip_missing_matplotlib() -> None:
    """Gradio imports matplotlib before and after every event, to switch its plotting backend.
    Without matplotlib installed each attempt fails only after searching every sys.path entry, on
    the event loop: 5% of the app's CPU under load (py-spy). Recording once that it is absent makes
    those imports fail at once."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None


async def no_uploads(_request) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": "this app takes no file uploads"}, status_code=404)


def mount_ui(root, app: App) -> None:
    """The chat UI at / of the FastAPI application `root`. Gradio's queue lives in this process, so
    the UI is served by one process (see `chatbot.server`)."""
    skip_missing_matplotlib()
    demo = build(app, app.settings.browser_secret)
    demo.queue(default_concurrency_limit=16)
    # our script, and no uploads: routed before Gradio's mount at /, which takes every path not
    # routed already. The chat takes no files, but Gradio's upload route would keep whatever anyone
    # posts to it in its cache folder (and serve it back from this origin).
    root.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="trk-static")
    root.add_route("/gradio_api/upload", no_uploads, methods=["POST"])
    # run_history off: Gradio would otherwise keep calls of the public `ask` endpoint (the session
    # token among their inputs) for a history page, and can copy them to a Hugging Face bucket
    gr.mount_gradio_app(root, demo, path="/", css=CSS, head=HEAD, theme=THEME, footer_links=["api"],
                        show_error=False, run_history=False)
