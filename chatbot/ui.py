"""The Gradio app: public chat with cited answers, HCP sign-in and registration, maintainer tab, API.

Every request re-checks the session token server-side; the role never comes from the browser.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import secrets
import sys

# Gradio's queue rebuilds a pandas table of its last 10,000 events after every event, for its
# monitoring page (unused here): measured with py-spy, 7% of the server's time under load, and
# growing with uptime. Summarise rarely, over fewer events.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")

import gradio as gr  # noqa: E402

from chatbot.accounts import PROFESSIONS, AccountError
from chatbot.answer import Reply
from chatbot.index import build_index, index_status
from chatbot.service import App

LANGS = {"English": "en", "Nederlands": "nl"}
T = {
    "en": {
        "title": "# TRK Assistant\nQuestions and answers about TRK fusion cancer, from approved texts.",
        "disclaimer": ("**General information, not medical advice.** In an emergency call **112** (in the "
                       "EU; elsewhere your local emergency number) or your doctor. Report side effects to "
                       "your doctor or pharmacist."),
        "chat_tab": "Chat", "hcp_tab": "Healthcare professionals", "maint_tab": "Maintainer",
        "question": "Your question", "placeholder": "Ask about TRK fusion cancer…", "send": "Send",
        "examples": "Example questions", "sources": "Sources",
        "status_public": "Status: **Public**",
        "status_hcp": "Status: **Verified healthcare professional** ({email})",
        "status_maint": "Status: **Maintainer** ({email})",
        "signin_head": "### Sign in", "email": "Email", "password": "Password", "signin": "Sign in",
        "signout": "Sign out", "register_head": "### Register as a healthcare professional",
        "name": "Full name", "profession": "Profession", "country": "Country (two letters, e.g. NL)",
        "regnum": "Professional registration number (NL: BIG number, 11 digits)", "register": "Register",
        "registered": "Thank you. Your registration is **{status}**.",
        "registered_pending": " We will verify it against the professional register; you can sign in once it is approved.",
        "signed_in": "Signed in.", "signed_out": "Signed out.",
        "reindex": "Re-index corpus", "approve": "Approve", "reject": "Reject", "reason": "Reason for rejection",
        "pending_head": "### Pending HCP registrations", "feedback_head": "### Feedback",
        "review_head": "### Questions to review (last 30 days: \"I don't know\", out of scope, thumbs-down)",
        "index_head": "### Index status", "not_allowed": "Only signed-in maintainers can do this.",
        "kinds": {"answer": "", "small_talk": "", "hcp_only": "🔒 **For healthcare professionals only**",
                  "adverse_event": "⚠️ **Reporting a side effect**", "advice": "🩺 **Please talk to your doctor**",
                  "out_of_scope": "ℹ️ **Outside what I can help with**", "no_answer": "❔ **I don't know**",
                  "invalid": "✏️ **Please check your question**", "unavailable": "⏳ **Please try again shortly**"},
        "audience": {"public": "Public", "hcp": "HCP only"},
        "example_qs": ["What is TRK fusion cancer?", "How is TRK fusion cancer diagnosed?",
                       "Can children get TRK fusion cancer?", "How do I report a side effect?"],
    },
    "nl": {
        "title": "# TRK Assistent\nVragen en antwoorden over TRK-fusiekanker, uit goedgekeurde teksten.",
        "disclaimer": ("**Algemene informatie, geen medisch advies.** Bel bij spoed **112** (in de EU; "
                       "elders het plaatselijke alarmnummer) of uw arts. "
                       "Meld bijwerkingen aan uw arts of apotheker."),
        "chat_tab": "Chat", "hcp_tab": "Zorgprofessionals", "maint_tab": "Beheer",
        "question": "Uw vraag", "placeholder": "Stel een vraag over TRK-fusiekanker…", "send": "Versturen",
        "examples": "Voorbeeldvragen", "sources": "Bronnen",
        "status_public": "Status: **Publiek**",
        "status_hcp": "Status: **Geverifieerde zorgprofessional** ({email})",
        "status_maint": "Status: **Beheerder** ({email})",
        "signin_head": "### Inloggen", "email": "E-mail", "password": "Wachtwoord", "signin": "Inloggen",
        "signout": "Uitloggen", "register_head": "### Registreren als zorgprofessional",
        "name": "Volledige naam", "profession": "Beroep", "country": "Land (twee letters, bijv. NL)",
        "regnum": "Registratienummer (NL: BIG-nummer, 11 cijfers)", "register": "Registreren",
        "registered": "Dank u. Uw registratie is **{status}**.",
        "registered_pending": " Wij controleren deze in het beroepsregister; u kunt inloggen zodra zij is goedgekeurd.",
        "signed_in": "Ingelogd.", "signed_out": "Uitgelogd.",
        "reindex": "Corpus opnieuw indexeren", "approve": "Goedkeuren", "reject": "Afwijzen",
        "reason": "Reden van afwijzing", "pending_head": "### Registraties in afwachting",
        "feedback_head": "### Feedback", "index_head": "### Indexstatus",
        "review_head": "### Vragen om na te kijken (laatste 30 dagen: \"weet ik niet\", buiten het onderwerp, duim omlaag)",
        "not_allowed": "Alleen ingelogde beheerders kunnen dit doen.",
        "kinds": {"answer": "", "small_talk": "", "hcp_only": "🔒 **Alleen voor zorgprofessionals**",
                  "adverse_event": "⚠️ **Een bijwerking melden**", "advice": "🩺 **Bespreek dit met uw arts**",
                  "out_of_scope": "ℹ️ **Hier kan ik niet mee helpen**", "no_answer": "❔ **Dat weet ik niet**",
                  "invalid": "✏️ **Controleer uw vraag**", "unavailable": "⏳ **Probeer het zo opnieuw**"},
        "audience": {"public": "Publiek", "hcp": "Alleen zorgprofessionals"},
        "example_qs": ["Wat is TRK-fusiekanker?", "Hoe wordt een NTRK-genfusie vastgesteld?",
                       "Is TRK-fusiekanker erfelijk?", "Hoe meld ik een bijwerking?"],
    },
}
CSS = """
.badge {border-radius: 4px; padding: 0 6px; font-size: 0.8em; margin-left: 6px}
.badge-public {background: #e0f2e9; color: #14532d}
.badge-hcp {background: #fde2e2; color: #7f1d1d}
.sources details {margin: 4px 0}
.sources blockquote {white-space: pre-wrap; margin: 4px 0 4px 8px}
"""


def esc(text: str) -> str:
    """Text shown as text: HTML escaped, and Markdown link/image syntax neutralised."""
    return html.escape(text or "", quote=True).replace("[", "&#91;").replace("]", "&#93;")


def render_reply(reply: Reply, lang: str) -> str:
    badge = T[lang]["kinds"].get(reply.kind, "")
    body = esc(reply.answer)
    body = re.sub(r"&#91;(\d+)&#93;", r"<sup>[\1]</sup>", body)  # our citation markers only
    return f"{badge}\n\n{body}" if badge else body


def render_sources(reply: Reply | None, lang: str) -> str:
    if reply is None or not reply.citations:
        return ""
    parts = [f'<div class="sources"><h4>{esc(T[lang]["sources"])}</h4>']
    for c in reply.citations:
        aud = T[lang]["audience"].get(c.audience, c.audience)
        quote = esc(c.quote)
        for s in c.sentences:
            quote = quote.replace(esc(s), f"<mark>{esc(s)}</mark>")
        srcs = "".join(f"<li>{esc(s.get('title', ''))}" + (f" ({esc(s.get('ref', ''))})" if s.get("ref") else "")
                       + "</li>" for s in c.sources)
        parts.append(
            f'<details class="citation" data-audience="{esc(c.audience)}"><summary>[{c.n}] {esc(c.title)} '
            f'&mdash; {esc(c.heading)} <span class="badge badge-{esc(c.audience)}">{esc(aud)}</span></summary>'
            f"<blockquote>{quote}</blockquote><ul>{srcs}</ul></details>"
        )
    parts.append("</div>")
    return "".join(parts)


def build(app: App, browser_secret: str | None = None) -> gr.Blocks:
    with gr.Blocks(title="TRK Assistant") as demo:
        token = gr.BrowserState("", storage_key="trk_session", secret=browser_secret or secrets.token_hex(16))
        questions = gr.State([])  # the raw questions of this chat, for follow-ups
        meta = gr.State({})  # chat index -> {question, kind}, for feedback
        lang = gr.Radio(list(LANGS), value="English", label="Language / Taal", elem_id="lang")
        title = gr.Markdown(T["en"]["title"], elem_id="title")
        disclaimer = gr.Markdown(T["en"]["disclaimer"], elem_id="disclaimer")
        status = gr.Markdown(T["en"]["status_public"], elem_id="status")
        with gr.Tabs():
            with gr.Tab(T["en"]["chat_tab"], id="chat") as chat_tab:
                chatbot = gr.Chatbot(elem_id="chatbot", height=420, sanitize_html=True, render_markdown=True)
                with gr.Row():
                    box = gr.Textbox(label=T["en"]["question"], placeholder=T["en"]["placeholder"],
                                     elem_id="question", scale=5)
                    send = gr.Button(T["en"]["send"], variant="primary", elem_id="send", scale=1)
                examples_head = gr.Markdown(f"**{T['en']['examples']}**")
                with gr.Row():
                    example_buttons = [gr.Button(q, size="sm", elem_classes="example") for q in T["en"]["example_qs"]]
                sources = gr.HTML("", elem_id="sources")
            with gr.Tab(T["en"]["hcp_tab"], id="hcp") as hcp_tab:
                signin_head = gr.Markdown(T["en"]["signin_head"])
                email = gr.Textbox(label=T["en"]["email"], elem_id="signin-email")
                password = gr.Textbox(label=T["en"]["password"], type="password", elem_id="signin-password")
                with gr.Row():
                    signin = gr.Button(T["en"]["signin"], variant="primary", elem_id="signin")
                    signout = gr.Button(T["en"]["signout"], elem_id="signout")
                auth_msg = gr.Markdown("", elem_id="auth-message")
                register_head = gr.Markdown(T["en"]["register_head"])
                r_name = gr.Textbox(label=T["en"]["name"], elem_id="reg-name")
                r_email = gr.Textbox(label=T["en"]["email"], elem_id="reg-email")
                r_prof = gr.Dropdown(list(PROFESSIONS), value="physician", label=T["en"]["profession"], elem_id="reg-prof")
                r_country = gr.Textbox(value="NL", label=T["en"]["country"], elem_id="reg-country")
                r_number = gr.Textbox(label=T["en"]["regnum"], elem_id="reg-number")
                r_password = gr.Textbox(label=T["en"]["password"], type="password", elem_id="reg-password")
                register = gr.Button(T["en"]["register"], elem_id="register")
                reg_msg = gr.Markdown("", elem_id="register-message")
            with gr.Tab(T["en"]["maint_tab"], id="maint", visible=False) as maint_tab:
                index_head = gr.Markdown(T["en"]["index_head"])
                index_info = gr.Markdown("", elem_id="index-status")
                reindex = gr.Button(T["en"]["reindex"], elem_id="reindex")
                reindex_msg = gr.Markdown("", elem_id="reindex-message")
                pending_head = gr.Markdown(T["en"]["pending_head"])
                pending = gr.Markdown("", elem_id="pending")
                m_email = gr.Textbox(label=T["en"]["email"], elem_id="decide-email")
                m_reason = gr.Textbox(label=T["en"]["reason"], elem_id="decide-reason")
                with gr.Row():
                    approve = gr.Button(T["en"]["approve"], elem_id="approve")
                    reject = gr.Button(T["en"]["reject"], elem_id="reject")
                decide_msg = gr.Markdown("", elem_id="decide-message")
                feedback_head = gr.Markdown(T["en"]["feedback_head"])
                feedback = gr.Markdown("", elem_id="feedback")
                review_head = gr.Markdown(T["en"]["review_head"])
                review = gr.Markdown("", elem_id="review")

        def code(choice) -> str:
            return LANGS.get(choice, "en")

        def check_rate(request: gr.Request) -> None:
            """The REST API's per-client limit on questions holds here too (the same counter)."""
            wait = app.wait_to_ask(client_address(request))
            if wait:
                raise gr.Error(f"Too many questions from your connection; please try again in {wait} seconds.")

        # chat ------------------------------------------------------------------------------------
        def respond(question, chat, asked, meta_map, tok, choice, request: gr.Request):
            check_rate(request)
            lang_code = code(choice)
            question = question if isinstance(question, str) else ""
            reply = app.ask(question, list(asked), tok)
            shown_lang = reply.language if reply.kind != "invalid" else lang_code
            chat = list(chat or []) + [{"role": "user", "content": esc(question) or "…"},
                                       {"role": "assistant", "content": ""}]
            meta_map = dict(meta_map or {})
            meta_map[str(len(chat) - 1)] = {"question": question[:2000], "kind": reply.kind}
            asked = (list(asked) + [question])[-6:] if reply.kind not in ("invalid", "small_talk") else list(asked)
            full = render_reply(reply, shown_lang)
            pieces = re.split(r"(?<=</sup>) ", full)
            for i in range(1, len(pieces) + 1):
                chat[-1] = {"role": "assistant", "content": " ".join(pieces[:i])}
                yield chat, "", asked, meta_map, gr.skip()
            yield chat, "", asked, meta_map, render_sources(reply, shown_lang)

        chat_io = dict(inputs=[box, chatbot, questions, meta, token, lang],
                       outputs=[chatbot, box, questions, meta, sources], concurrency_limit=32)
        send.click(respond, **chat_io)
        box.submit(respond, **chat_io)
        for b in example_buttons:
            b.click(lambda q: q, inputs=b, outputs=box).then(respond, **chat_io)

        def on_like(data: gr.LikeData, meta_map):
            info = (meta_map or {}).get(str(data.index if isinstance(data.index, int) else data.index[0]))
            if info and app.accounts is not None:
                try:
                    app.accounts.add_feedback(info["question"], info["kind"], bool(data.liked))
                except AccountError:
                    pass

        chatbot.like(on_like, inputs=[meta], outputs=None)

        # language --------------------------------------------------------------------------------
        def switch(choice, tok):
            t = T[code(choice)]
            account = app.account(tok)
            return [
                t["title"], t["disclaimer"], status_text(account, code(choice)),
                gr.update(label=t["chat_tab"]), gr.update(label=t["hcp_tab"]), gr.update(label=t["maint_tab"]),
                gr.update(label=t["question"], placeholder=t["placeholder"]), gr.update(value=t["send"]),
                f"**{t['examples']}**", *[gr.update(value=q) for q in t["example_qs"]],
                t["signin_head"], gr.update(label=t["email"]), gr.update(label=t["password"]),
                gr.update(value=t["signin"]), gr.update(value=t["signout"]), t["register_head"],
                gr.update(label=t["name"]), gr.update(label=t["email"]), gr.update(label=t["profession"]),
                gr.update(label=t["country"]), gr.update(label=t["regnum"]), gr.update(label=t["password"]),
                gr.update(value=t["register"]), t["index_head"], gr.update(value=t["reindex"]),
                t["pending_head"], gr.update(label=t["email"]), gr.update(label=t["reason"]),
                gr.update(value=t["approve"]), gr.update(value=t["reject"]), t["feedback_head"], t["review_head"],
            ]

        lang.change(switch, inputs=[lang, token], outputs=[
            title, disclaimer, status, chat_tab, hcp_tab, maint_tab, box, send, examples_head, *example_buttons,
            signin_head, email, password, signin, signout, register_head, r_name, r_email, r_prof, r_country,
            r_number, r_password, register, index_head, reindex, pending_head, m_email, m_reason, approve,
            reject, feedback_head, review_head,
        ])
        demo.load(None, js="() => (navigator.language || 'en').toLowerCase().startsWith('nl') ? 'Nederlands' : 'English'",
                  outputs=lang)

        # accounts --------------------------------------------------------------------------------
        def status_text(account, lang_code):
            t = T[lang_code]
            if account is None:
                return t["status_public"]
            if account.is_hcp:
                return t["status_hcp"].format(email=esc(account.email))
            if account.is_maintainer:
                return t["status_maint"].format(email=esc(account.email))
            return t["status_public"]

        def refresh(tok, choice):
            account = app.account(tok)
            return status_text(account, code(choice)), gr.update(visible=bool(account and account.is_maintainer))

        demo.load(refresh, inputs=[token, lang], outputs=[status, maint_tab])

        def do_signin(mail, pw, choice, request: gr.Request):
            client = client_address(request)
            if app.accounts is None:
                return "", "Accounts are not available.", T[code(choice)]["status_public"], gr.update(visible=False), ""
            wait = app.wait_to_sign_in(client)
            if wait:
                return ("", f"Too many sign-in attempts; please try again in {wait} seconds.",
                        T[code(choice)]["status_public"], gr.update(visible=False), "")
            try:
                tok, account = app.accounts.sign_in(mail or "", pw or "", client=client)
            except AccountError as exc:
                return "", esc(str(exc)), T[code(choice)]["status_public"], gr.update(visible=False), ""
            return (tok, T[code(choice)]["signed_in"], status_text(account, code(choice)),
                    gr.update(visible=account.is_maintainer), "")

        signin.click(do_signin, inputs=[email, password, lang],
                     outputs=[token, auth_msg, status, maint_tab, password])

        def do_signout(tok, choice):
            if app.accounts is not None and tok:
                try:
                    app.accounts.sign_out(tok)
                except AccountError:
                    pass
            return "", T[code(choice)]["signed_out"], T[code(choice)]["status_public"], gr.update(visible=False)

        signout.click(do_signout, inputs=[token, lang], outputs=[token, auth_msg, status, maint_tab])

        def do_register(name, mail, prof, country, number, pw, choice):
            t = T[code(choice)]
            if app.accounts is None:
                return "Accounts are not available.", gr.skip()
            try:
                account = app.accounts.register(name=name or "", email=mail or "", profession=prof or "",
                                                 country=country or "", registration_number=number or "",
                                                 password=pw or "")
            except AccountError as exc:
                return f"❌ {esc(str(exc))}", gr.skip()
            text = t["registered"].format(status=account.status)
            if account.status == "pending":
                text += t["registered_pending"]
            return text, ""

        register.click(do_register, inputs=[r_name, r_email, r_prof, r_country, r_number, r_password, lang],
                       outputs=[reg_msg, r_password])

        # maintainer --------------------------------------------------------------------------------
        def maintainer(tok):
            account = app.account(tok)
            return account if account is not None and account.is_maintainer else None

        def overview(tok, choice):
            if maintainer(tok) is None:
                return T[code(choice)]["not_allowed"], "", "", ""
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
            return "\n".join(lines), pend_md, fb_md, review_md

        maint_tab.select(overview, inputs=[token, lang], outputs=[index_info, pending, feedback, review])

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

        reindex.click(do_reindex, inputs=[token, lang], outputs=[reindex_msg], concurrency_limit=1,
                      concurrency_id="reindex")

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

        approve.click(lambda t, m, r, c: decide(t, m, r, "approve", c), inputs=[token, m_email, m_reason, lang],
                      outputs=decide_msg)
        reject.click(lambda t, m, r, c: decide(t, m, r, "reject", c), inputs=[token, m_email, m_reason, lang],
                     outputs=decide_msg)

        # API: the same JSON as `python -m chatbot ask --json` -------------------------------------
        def ask(question: str, history: list[str], session_token: str, request: gr.Request) -> dict:
            """Answer a question; without a valid session token the caller is public."""
            check_rate(request)
            hist = [h for h in (history or []) if isinstance(h, str)]
            return app.ask(question if isinstance(question, str) else "", hist, session_token).to_json()

        gr.api(ask, api_name="ask", concurrency_limit=app.settings.ask_concurrency)
    return demo


def skip_missing_matplotlib() -> None:
    """Gradio imports matplotlib before and after every event, to switch its plotting backend.
    Without matplotlib installed each attempt fails only after searching every sys.path entry, on
    the event loop: 5% of the app's CPU under load (py-spy). Recording once that it is absent makes
    those imports fail at once."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None


def client_address(request: gr.Request | None) -> str:
    return request.client.host if request is not None and request.client else ""


def mount_ui(root, app: App) -> None:
    """The chat UI at / of the FastAPI application `root`. Gradio's queue lives in this process, so
    the UI is served by one process (see `chatbot.server`)."""
    skip_missing_matplotlib()
    demo = build(app, app.settings.browser_secret)
    demo.queue(default_concurrency_limit=16)
    gr.mount_gradio_app(root, demo, path="/", css=CSS, footer_links=["api"], show_error=False)
