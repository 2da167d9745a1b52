"""Security headers on every response of the one application: the REST API, the chat page, Gradio's
static files and its queue and streamed (SSE) replies.

A pure ASGI middleware, so streamed responses pass through untouched (Starlette's
BaseHTTPMiddleware would sit between every chunk of an event stream). Only our HTML pages are held
until complete: their inline scripts (Gradio's page carries its configuration as inline scripts,
built per request) are hashed into that page's Content-Security-Policy, so no other inline script
runs, and nothing needs `'unsafe-inline'` for scripts or a nonce written into the page.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import zlib

# The Content-Security-Policy of every response, found by running the chat, the sign-in and the
# maintainer tabs in chromium under `default-src 'none'` (report-only) and opening only what the
# violations showed Gradio 6.31 needs; tests/test_ui.py listens for violations in every browser
# test. Each directive, and why it is there:
CSP = {
    # nothing that is not named below: no plugins, workers, manifests or media from anywhere
    "default-src": ["'none'"],
    # Gradio's frontend (ES modules under /assets, loaded and imported from this origin) and our own
    # script (/trk-static/ui.js); the page's own inline scripts are added per page as sha256 hashes.
    # No 'unsafe-inline' and no 'unsafe-eval': our JavaScript is served as a file, not handed to
    # Gradio as a string it would compile with the AsyncFunction constructor.
    "script-src": ["'self'"],
    # Gradio's stylesheets (/assets, /theme.css), and inline styles: Gradio's page template puts
    # style attributes on <html>, <body> and <gradio-app> and a <style> with the theme's colours,
    # and its frontend adds <style> elements while it runs, among them our CSS after rewriting it in
    # the browser to scope each rule to the app (text that exists only there, so no hash can name
    # it). Styles cannot run script, and user and corpus text is escaped and sanitised before it is
    # shown, so none of it can carry a style.
    "style-src": ["'self'", "'unsafe-inline'"],
    # icons and images: our origin, and the data: URIs that Gradio's stylesheets use for small icons
    "img-src": ["'self'", "data:"],
    # the theme's fonts are files in Gradio's package, served from this origin (no Google Fonts)
    "font-src": ["'self'"],
    # Gradio's calls from the page: the queue (join, then the SSE stream of results) and its
    # heartbeat. Same origin only; no ws:/wss: (Gradio 6 streams over server-sent events)
    "connect-src": ["'self'"],
    # the page links a web-app manifest (/manifest.json); browsers fetch it for "install" menus
    "manifest-src": ["'self'"],
    # no page may frame this one (clickjacking); X-Frame-Options says the same to older browsers
    "frame-ancestors": ["'none'"],
    # no form is ever submitted (Gradio sends everything with fetch)
    "form-action": ["'none'"],
    # no <base> element may change where the page's relative links go (Gradio's own <base href="./">,
    # which changes nothing, is taken out of its page below)
    "base-uri": ["'none'"],
    # no <object>/<embed> plugins
    "object-src": ["'none'"],
}

# The REST API's browsable description (/api/v1/docs, FastAPI's Swagger UI page) is the one page
# that loads code from elsewhere: Swagger UI's script and stylesheet from jsDelivr (the versions
# FastAPI names) and FastAPI's icon. It gets the policy above plus those, and nothing else.
SWAGGER = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
DOCS_CSP = {**CSP, "script-src": CSP["script-src"] + [SWAGGER],
            "style-src": CSP["style-src"] + [SWAGGER],
            "img-src": CSP["img-src"] + ["https://fastapi.tiangolo.com/img/"]}
PAGE_CSP = {"/api/v1/docs": DOCS_CSP}
# The pages whose inline scripts are ours (Gradio's page template, FastAPI's docs pages): only these
# get their inline scripts' hashes. Any other HTML (a file someone managed to have served, an error
# page) gets the policy without them, so no inline script of it runs.
PAGES = frozenset({"/", "/api/v1/docs", "/api/v1/docs/oauth2-redirect"})

# Other headers on every response
STATIC_HEADERS = {
    "x-content-type-options": "nosniff",  # a response is read as the type it says it is
    "x-frame-options": "DENY",
    # a link followed from the page (a source reference) tells the other site our origin only, never
    # the page's path or query; nothing when going from https to http
    "referrer-policy": "strict-origin-when-cross-origin",
}
HSTS = "max-age=31536000; includeSubDomains"  # one year; only behind TLS (TRK_HTTPS=1)

_NO_OP_BASE = re.compile(rb'<base\s+href="\./"\s*/?>\s*')  # "./" is where the page's links go anyway
_INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_SRC = re.compile(rb"\bsrc\s*=", re.IGNORECASE)


def policy(script_hashes: list[str] | tuple[str, ...] = (), csp: dict | None = None) -> str:
    """The Content-Security-Policy header value, with the page's inline scripts' hashes."""
    directives = {k: list(v) for k, v in (csp or CSP).items()}
    if script_hashes:
        directives.setdefault("script-src", []).extend(f"'sha256-{h}'" for h in dict.fromkeys(script_hashes))
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def inline_script_hashes(html: bytes) -> list[str]:
    """The base64 sha256 of each inline <script> of a page (those without a src), in page order."""
    out = []
    for attrs, body in _INLINE_SCRIPT.findall(html):
        if not _SRC.search(attrs):
            out.append(base64.b64encode(hashlib.sha256(body).digest()).decode())
    return out


def decoded(body: bytes, encoding: str) -> bytes | None:
    """The body as sent before compression (Gradio compresses pages with brotli or gzip)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            return body
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "br":
            import brotli  # installed with Gradio

            return brotli.decompress(body)
    except Exception:
        return None
    return None


class SecurityHeaders:
    """Adds the headers above to every HTTP response of `app` (HSTS only when `https`)."""

    def __init__(self, app, https: bool = False, csp: dict | None = None, pages: dict | None = None):
        self.app = app
        self.csp = csp or CSP
        self.pages = PAGE_CSP if pages is None else pages
        self.static = [(k.encode(), v.encode()) for k, v in STATIC_HEADERS.items()]
        if https:
            self.static.append((b"strict-transport-security", HSTS.encode()))

    def headers(self, existing: list, script_hashes: list[str] = (), path: str = "") -> list:
        ours = {k for k, _ in self.static} | {b"content-security-policy"}
        kept = [(k, v) for k, v in existing if k.lower() not in ours]
        csp = policy(script_hashes, self.pages.get(path.rstrip("/"), self.csp))
        return kept + self.static + [(b"content-security-policy", csp.encode())]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        page = path in PAGES
        start: dict | None = None
        held: list[bytes] = []

        async def send_with_headers(message):
            nonlocal start
            if message["type"] == "http.response.start":
                content_type = dict((k.lower(), v) for k, v in message.get("headers", [])).get(b"content-type", b"")
                if page and content_type.startswith(b"text/html"):
                    start = message  # held until the page is complete, to hash its inline scripts
                    return
                message["headers"] = self.headers(list(message.get("headers", [])), path=path)
                await send(message)
                return
            if start is not None and message["type"] == "http.response.body":
                held.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(held)
                raw = dict((k.lower(), v) for k, v in start.get("headers", []))
                encoding = raw.get(b"content-encoding", b"").decode("latin-1").strip().lower()
                if encoding in ("", "identity"):
                    body = _NO_OP_BASE.sub(b"", body, count=1)
                    start["headers"] = [(k, str(len(body)).encode() if k.lower() == b"content-length" else v)
                                        for k, v in start.get("headers", [])]
                html = decoded(body, encoding)
                start["headers"] = self.headers(list(start.get("headers", [])),
                                                inline_script_hashes(html) if html else [], path)
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_with_headers)
