"""`farm serve`: the lab dashboard, a read-only Starlette app over the history.

Safe by default: it binds 127.0.0.1; on any other address a token is required.
Every value is escaped by Jinja2's autoescape (a board named `<script>` is text),
and no part of a request becomes a path: a run's files are found by a checked run
id and a fixed list of names, inside the results folder. Every script and style
is served from here (templates/ through Starlette's Jinja2Templates, static/ through
its StaticFiles, plotly.js from the installed plotly package): no CDN, no inline script.

A page answers only to the host names it is served under (loopback names unless
`--allowed-host` adds some: DNS rebinding reaches a loopback port from any web
page), and carries a Content-Security-Policy that runs only farm's own scripts. A
run's files are the run's, not farm's (a fetched report.html may be anyone's):
they are served sandboxed, in an origin of their own, where no script of theirs runs.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
from pathlib import Path

import plotly
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from farm.statuses import RunOutcome
from farm.ui.web import data
from farm.ui.web.metrics import exposition
from farm.util import NAME_RE

MEDIA = {"report.html": "text/html", "junit.xml": "application/xml", "results.json": "application/json"}
TEXT_FILTER = re.compile(r"^[A-Za-z0-9._:*@ -]{0,100}$")   # pool, board, model, variant filters
DATE_FILTER = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.+Z-]*)?$")   # the shape; fromisoformat the calendar
STATUS_FILTER = ("", *RunOutcome)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
# Every response: only farm's own scripts (plotly sets inline styles), never framed, no sniffing, no referrer.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
# A run's files are not farm's (`farm fetch` brings anyone's): sandboxed, they run no script and sit in an
# opaque origin, never the dashboard's. pytest-html's report then shows its summary, not its table (its
# script needs sessionStorage, which no sandboxed origin has): the file itself, saved, shows everything.
RUN_FILE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
PAGES = (("lab", "/", "Lab"), ("runs", "/runs", "Runs"), ("trends", "/trends", "Trends"),
         ("signoffs", "/signoffs", "Sign-offs"), ("queue", "/queue", "Queue"))

# Autoescape on for .html (select_autoescape): every value is text, whatever a board is named.
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"),
                            context_processors=[lambda request: {"pages": PAGES}])
PLOTLY_JS = Path(plotly.__file__).with_name("package_data") / "plotly.min.js"   # what plotly.offline inlines


class BadRequest(Exception):
    pass


def _param(request: Request, name: str, pattern: re.Pattern = TEXT_FILTER) -> str:
    value = request.query_params.get(name, "")
    if not pattern.match(value):
        raise BadRequest(f"{name}: not a valid filter (letters, digits and . _ : * @ - only)")
    return value


def _status(request: Request) -> str:
    value = request.query_params.get("status", "")
    if value not in STATUS_FILTER:
        raise BadRequest(f"status={value[:40]!r}: one of passed, failed (or none)")
    return value


def _date(request: Request, name: str) -> str:
    """A date or an ISO 8601 time, checked as one (`2026-13-45` is no date, and was once a 500)."""
    value = request.query_params.get(name, "")
    try:
        if value and not (DATE_FILTER.match(value) and dt.datetime.fromisoformat(value)):
            raise ValueError(value)
    except ValueError:
        raise BadRequest(f"{name}={value[:40]!r}: not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return value


def create_app(sources: data.Sources, token: str | None = None,
               allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> Starlette:
    def both(name: str, build):
        """One route for the page and one for its data under /api/: the same dict."""
        async def html(request: Request) -> Response:
            context = await run_in_threadpool(build, request)
            return templates.TemplateResponse(request, f"{name}.html", {**context, "current": name})

        async def api(request: Request) -> Response:
            return JSONResponse(json.loads(json.dumps(await run_in_threadpool(build, request), default=str)))
        return [Route(PAGES_BY_NAME[name], html), Route(f"/api/{name}", api)]

    def runs(request: Request) -> dict:
        return data.runs(sources, pool=_param(request, "pool"), board=_param(request, "board"),
                         model=_param(request, "model"), status=_status(request),
                         since=_date(request, "since"), until=_date(request, "until"))

    def trends(request: Request) -> dict:
        board, variant = _param(request, "board"), _param(request, "variant") or "fp32"
        found = data.trends(sources, board, variant, _param(request, "model")) if board else None
        return {"trend": found, "boards": data.lab(sources)["boards"]}

    async def run_file(request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        if not NAME_RE.match(run_id) or name not in MEDIA:
            return PlainTextResponse("no such file: a run id and one of " + ", ".join(MEDIA), status_code=404)
        root = sources.results.resolve()
        path = (root / run_id / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return PlainTextResponse(f"run {run_id} has no {name} in the results folder", status_code=404)
        return FileResponse(path, media_type=MEDIA[name], headers={"content-security-policy": RUN_FILE_CSP})

    async def metrics(request: Request) -> Response:
        body, media = await run_in_threadpool(exposition, sources)
        return Response(body, media_type=media)

    async def static_plotly(request: Request) -> Response:
        return FileResponse(PLOTLY_JS, media_type="application/javascript", headers={"Cache-Control": "max-age=86400"})

    routes = [
        *both("lab", lambda request: data.lab(sources)),
        *both("runs", runs),
        *both("trends", trends),
        *both("signoffs", lambda request: data.signoffs(sources)),
        *both("queue", lambda request: data.queue(sources)),
        Route("/files/{run_id}/{name}", run_file),
        Route("/metrics", metrics),
        Route("/static/plotly.min.js", static_plotly),
        Mount("/static", StaticFiles(packages=[("farm.ui.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={BadRequest: _bad_request})
    if token:
        app.add_middleware(TokenRequired, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(SecurityHeaders)  # outermost: the refusals above carry the headers too
    return app


PAGES_BY_NAME = {name: path for name, path, _ in PAGES}


async def _bad_request(request: Request, exc: BadRequest) -> Response:
    return PlainTextResponse(f"bad request: {exc}", status_code=400)


class SecurityHeaders:
    """SECURITY_HEADERS on every response, unless a route set its own (a run file's sandbox)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)
        return await self.app(scope, receive, with_headers)


class TokenRequired:
    """Every request shows the token: `Authorization: Bearer T`, or `?token=T` once (then a cookie)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        given = request.query_params.get("token") or request.cookies.get("farm_token") or ""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            response = PlainTextResponse("a token is required: ?token=... or Authorization: Bearer ...",
                                         status_code=401)
            return await response(scope, receive, send)

        async def with_cookie(message):
            if message["type"] == "http.response.start" and "token" in request.query_params:
                secure = "; Secure" if scope.get("scheme") == "https" else ""  # over TLS, never sent in clear
                message.setdefault("headers", []).append(
                    (b"set-cookie", f"farm_token={self.token}; HttpOnly; SameSite=Strict; Path=/{secure}".encode()))
            await send(message)
        return await self.app(scope, receive, with_cookie)


def serve(sources: data.Sources, host: str, port: int, token: str | None,
          allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS, tls: tuple[str, str] | None = None) -> None:
    """Serve until stopped; `tls` (certificate, key) serves https with uvicorn's own TLS."""
    import uvicorn

    certfile, keyfile = tls or (None, None)
    uvicorn.run(create_app(sources, token, allowed_hosts), host=host, port=port, log_level="warning",
                ssl_certfile=certfile, ssl_keyfile=keyfile)
