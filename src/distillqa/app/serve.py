"""`distillqa serve`: a REST API and a single-page web UI over one run's documents and student.

Routes: `GET /` (the web UI), `GET /static/app.js`, `GET /static/style.css`, `POST /ask`,
`POST /feedback`, `GET /health`, and FastAPI's `GET /docs` and `GET /openapi.json`. No route has
a path parameter and nothing reads a file path from a request: the three UI files are read from
the package once, when the app is created, and each has its own fixed route.

`POST /feedback` stores a user's judgement of a shown answer (right; or wrong, with the right
span of the shown passage or "not in these passages") as one line of RUN/feedback.jsonl, the only
file the server writes (`distillqa.student.feedback`: append-only, fsynced, at most
`feedback.max_bytes`, past which it answers 507 and writes nothing). The body is checked like
`/ask`'s (422), and its passage must be one of the index's, by its exact text: the document and
page are taken from the index, not from the request.

`serve` binds its socket first, so a busy port is a one-line error before the models spend
seconds loading; then the run's `Asker` (index + reader) is loaded once. `/ask` hands its
question to a `distillqa.app.batcher.Batcher` and awaits the answer: questions that arrive
together are read as one batch on one worker thread (the `serve` settings of the run's
config.yaml), the event loop stays free, and past `serve.max_queue` waiting questions `/ask`
answers 503 at once with a Retry-After header. `/health` never waits behind questions (see
`create_app`). A request body that fails validation is a 422 whatever it holds, a lone
surrogate included (`AsciiJSONResponse`).

Every request passes three middlewares, outermost first: `SecurityHeaders` (nosniff,
no-referrer and a Content-Security-Policy on every response, errors included), starlette's
`TrustedHostMiddleware` (a Host header not in `serve.allowed_hosts`, nor the address `serve
--host` names, is a 400: a web page cannot reach the server through DNS rebinding), and
`BodySizeLimit` (413; a larger limit for `/feedback`, whose body carries a passage).

`/docs` is Swagger UI over `/openapi.json`. FastAPI's own page loads Swagger UI from a CDN,
which shows an empty page offline, so its script and stylesheet are the copies shipped in the
fastapi-offline package (Swagger UI 5, which reads FastAPI's OpenAPI 3.1), each on a fixed route
under `/docs/`. The web UI loads nothing from outside the server either, and its
Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.datastructures import MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distillqa import __version__
from distillqa.app.batcher import Batcher, QueueFull
from distillqa.config import FeedbackConfig, ServeConfig
from distillqa.errors import DistillqaError
from distillqa.layout import FEEDBACK, RunFolder
from distillqa.records import MAX_TOP_K, AskResult, ask_result
from distillqa.student.feedback import Feedback, FeedbackFull, Judgement, append_feedback

if TYPE_CHECKING:
    from distillqa.app.ask import Asker
    from distillqa.retrieval.index import Passage

MAX_BODY_BYTES = 16 * 1024
MAX_FEEDBACK_BODY_BYTES = 64 * 1024  # carries an index passage: a few thousand characters, up to 4 bytes each
MAX_QUESTION_CHARS = 1000

# The UI's files: URL -> (file in distillqa/app/static, media type).
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
DOCS_ASSETS = {
    "/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "/docs/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "/docs/favicon.png": ("favicon.png", "image/png"),
}
UI_HEADERS = {"Cache-Control": "no-cache"}  # a new version of the package is seen at once
# Content-Security-Policy by path (`SecurityHeaders`): the web UI runs only its own files; the
# docs page's policy is made with the page (`_add_docs`); anything else (JSON, errors, the UI's
# script and stylesheet) may load nothing. None of them may be framed.
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DEFAULT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
ANY_ADDRESS = ("", "0.0.0.0", "::")


class AskRequest(BaseModel):
    """`POST /ask` body. Strict: `"top_k": "3"` or a numeric question is a 422, not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, examples=["Who built the harbour light?"])
    top_k: int = Field(3, ge=1, le=MAX_TOP_K, description="How many distinct answers to return.")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return value


class FeedbackRequest(Judgement):
    """`POST /feedback` body: a judgement of one answer as `/ask` returned it (question, passage,
    answer, start, end), strict like `AskRequest`; offsets count characters of the passage."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, examples=["Who built the harbour light?"])
    passage: str = Field(min_length=1, description="The answer's passage, exactly as /ask returned it.")
    correct_start: int | None = Field(None, description='With verdict "wrong": where the right answer starts in the passage.')
    correct_end: int | None = Field(None, description='With verdict "wrong": where the right answer ends.')
    not_in_passages: bool = Field(False, description='With verdict "wrong": the right answer is not in these passages.')


class FeedbackSaved(BaseModel):
    id: str
    gold: str | None = Field(description="The answer training will learn for the question; null: not in these passages.")


class Health(BaseModel):
    status: str
    documents: int
    passages: int
    model: str
    reader_runtime: str = Field(description="What runs the student: onnx-int8, onnx or torch.")
    embedder: str
    queued: int = Field(description="Questions waiting to be read.")


class BodySizeLimit:
    """Reject request bodies over `max_bytes` with 413 before the app parses them.

    A `Content-Length` header is checked first; the body is then counted as it arrives, so a
    chunked request without that header (or one that lies in it) cannot get past the limit.
    The accepted body (at most `max_bytes`) is replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, paths: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths or {}  # path -> its own limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._too_large(scope, receive, send, limit)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await self._too_large(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = JSONResponse({"detail": f"request body too large (limit {limit} bytes)"}, status_code=413)
        await response(scope, receive, send)


class SecurityHeaders:
    """Add `SECURITY_HEADERS` and the path's Content-Security-Policy to every HTTP response.

    Pure ASGI, around the whole app, so the headers are on whatever answers: a route, FastAPI's
    404/405/422, `BodySizeLimit`'s 413, `TrustedHostMiddleware`'s 400. (Starlette's own plain
    500 comes from outside every middleware.) Headers a route set of the same name are replaced.
    """

    def __init__(self, app: ASGIApp, policies: dict[str, str]):
        self.app = app
        self.policies = policies  # path -> policy; DEFAULT_CSP elsewhere

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = {**SECURITY_HEADERS, "Content-Security-Policy": self.policies.get(scope["path"], DEFAULT_CSP)}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message).update(added)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AsciiJSONResponse(JSONResponse):
    """JSON with every character outside ASCII escaped (`\\uXXXX`), so any Python string can be
    sent: a lone surrogate from a request (JSON `"\\ud800"`) cannot be encoded as UTF-8, and
    FastAPI's 422, which quotes the bad input back, was a 500 for it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


async def _invalid_request(request: Request, exc: RequestValidationError) -> AsciiJSONResponse:
    """FastAPI's own 422 body, sent with `AsciiJSONResponse`."""
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


def url_host(host: str) -> str:
    """`host` as a URL and a Host header write it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (0: any free port). `serve` binds before loading the
    models, so a busy port is a one-line error at once, not after seconds of loading."""
    where = f"{url_host(host)}:{port}"
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise DistillqaError(f"{where} is already in use: stop the other server or pass --port N") from None
        raise DistillqaError(f"cannot listen on {where}: {e.strerror or e}") from None


def load_asker(run_dir: Path) -> Asker:
    """The run's Asker, warmed up so the first request is as fast as the rest."""
    from distillqa.app.ask import Asker

    asker = Asker(run_dir)
    asker.warm_up()
    return asker


def passages_by_text(asker: Asker) -> dict[str, Passage]:
    """The index's passages by their text (the first of identical ones): the passages `/feedback`
    accepts, found in one look-up however large the index."""
    return {p.text: p for p in reversed(asker.index.passages)}


def create_app(
    run_dir: Path,
    asker: Asker | None = None,
    cfg: ServeConfig | None = None,
    host: str | None = None,
    feedback: FeedbackConfig | None = None,
) -> FastAPI:
    """The FastAPI app for one run folder; pass `asker` when it is already loaded (see `serve`),
    `cfg` and `feedback` to replace the run's `serve` and `feedback` settings, and `host`, the
    address the server listens on, to accept it as a Host header too (unless it is 0.0.0.0 or ::,
    which no client asks for).

    `/ask` and `/health` are `async def` and never block: `/ask` awaits its batch, and `/health`
    reads counts loaded at startup and the queue's length, so it needs neither a thread nor the
    Asker's lock. They must stay so: a plain `def` route runs in anyio's threadpool (40 threads),
    and when both were (before the Batcher), 200 questions queued on the Asker's lock held every
    thread and `/health` waited for one (26.7 s on a Geology run on 2 cores; 0.15 s at most now).
    """
    if cfg is None or feedback is None:
        saved = RunFolder(Path(run_dir)).saved_config()
        cfg, feedback = cfg or saved.serve, feedback or saved.feedback
    settings, max_feedback_bytes = cfg, feedback.max_bytes
    feedback_file = Path(run_dir) / FEEDBACK
    allowed_hosts = [*settings.allowed_hosts]
    if host is not None and host not in ANY_ADDRESS:
        allowed_hosts.append(url_host(host).lower())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.asker = asker if asker is not None else await run_in_threadpool(load_asker, Path(run_dir))
        app.state.batcher = Batcher(app.state.asker.ask_many, settings.batch_size, settings.batch_wait_ms, settings.max_queue)
        app.state.passages = await run_in_threadpool(passages_by_text, app.state.asker)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.batcher.close)

    app = FastAPI(
        title="distillqa",
        version=__version__,
        description="Ask questions of your documents: a passage index plus a small extractive reader.",
        lifespan=lifespan,
        docs_url=None,  # replaced below by the same page with local assets
        redoc_url=None,  # ReDoc also comes from a CDN; one docs page is enough
        exception_handlers={RequestValidationError: _invalid_request},
    )

    @app.post("/ask", response_model=AskResult, responses={503: {"description": "Too many questions waiting: retry."}})
    async def ask(body: AskRequest, request: Request) -> AskResult | JSONResponse:
        """The best distinct answers from the run's documents, with document, page and passage."""
        try:
            future = request.app.state.batcher.submit(body.question, body.top_k)
        except QueueFull as e:
            return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "1"})
        answers = await asyncio.wrap_future(future)
        return AskResult.model_validate(ask_result(answers, request.app.state.asker.not_found_below))

    @app.post(
        "/feedback",
        status_code=201,
        response_model=FeedbackSaved,
        responses={507: {"description": "The feedback file is full (feedback.max_bytes) or cannot be written: nothing was stored."}},
    )
    async def store_feedback(body: FeedbackRequest, request: Request) -> FeedbackSaved | JSONResponse:
        """Store a judgement of an answer in RUN/feedback.jsonl: right, or wrong with the right
        span of its passage (`correct_start`, `correct_end`) or `not_in_passages`."""
        passage = request.app.state.passages.get(body.passage)
        if passage is None:
            message = "not a passage of this run's index: send the passage exactly as /ask returned it"
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "passage"), "msg": message}])
        record = Feedback(
            **body.model_dump(),
            document=passage.document,
            page=request.app.state.asker.index.page_of(passage.doc_id, passage.start + body.start),
            time=datetime.now(timezone.utc).replace(microsecond=0),
        )
        try:  # a thread: the append waits for its fsync (and for another request's append)
            await run_in_threadpool(append_feedback, feedback_file, record, max_feedback_bytes)
        except FeedbackFull as e:
            return JSONResponse({"detail": str(e)}, status_code=507)
        except OSError as e:
            return JSONResponse({"detail": f"cannot store the feedback: {e.strerror or e}"}, status_code=507)
        gold = record.gold
        return FeedbackSaved(id=record.record_id, gold=None if gold is None else body.passage[gold[0] : gold[1]])

    @app.get("/health", response_model=Health)
    async def health(request: Request) -> Health:
        """Liveness plus what is loaded: document and passage counts, reader, embedder, queue."""
        asker = request.app.state.asker
        return Health(
            status="ok",
            documents=len(asker.index.documents),
            passages=len(asker.index),
            model=asker.model_name,
            reader_runtime=asker.reader.runtime,
            embedder=asker.index.embedder_name,
            queued=request.app.state.batcher.queued,
        )

    static = files("distillqa.app") / "static"
    for url, (name, media_type) in ASSETS.items():
        app.add_api_route(url, _asset_endpoint(static.joinpath(name).read_bytes(), media_type, UI_HEADERS), include_in_schema=False)
    docs_csp = _add_docs(app)
    # add_middleware wraps what is there: the last one added sees a request first
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, paths={"/feedback": MAX_FEEDBACK_BODY_BYTES})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts, www_redirect=False)
    app.add_middleware(SecurityHeaders, policies={"/": UI_CSP, "/docs": docs_csp})
    return app


def _asset_endpoint(content: bytes, media_type: str, headers: dict[str, str] | None = None):
    """A GET endpoint returning one file, read once when the app was created."""

    def endpoint() -> Response:
        return Response(content, media_type=media_type, headers=headers)

    return endpoint


def _add_docs(app: FastAPI) -> str:
    """`GET /docs`: FastAPI's Swagger UI page, made once, with its script and stylesheet served
    from here. Returns the page's Content-Security-Policy: this server's files, the page's one
    inline script (by its hash: nothing else inline runs) and the data: images of Swagger UI's
    stylesheet."""
    from fastapi.openapi.docs import get_swagger_ui_html

    bundle = files("fastapi_offline") / "static"
    for url, (name, media_type) in DOCS_ASSETS.items():
        app.add_api_route(url, _asset_endpoint(bundle.joinpath(name).read_bytes(), media_type), include_in_schema=False)
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} - API docs",
        swagger_js_url="/docs/swagger-ui-bundle.js",
        swagger_css_url="/docs/swagger-ui.css",
        swagger_favicon_url="/docs/favicon.png",
    ).body
    [script] = re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    app.add_api_route("/docs", _asset_endpoint(page, "text/html; charset=utf-8"), include_in_schema=False)
    return (
        f"default-src 'none'; script-src 'self' 'sha256-{digest}'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Bind host:port, load the run, serve it; a busy port, or a run without an index or student,
    fails with a one-line `DistillqaError`, the port first (it takes no time to check)."""
    import uvicorn

    from distillqa.console import console

    sock = bind(host, port)
    try:
        config = RunFolder(Path(run_dir)).saved_config()
        settings = config.serve
        app = create_app(run_dir, asker=load_asker(Path(run_dir)), cfg=settings, host=host, feedback=config.feedback)
        where = f"http://{url_host(host)}:{sock.getsockname()[1]}/"
        console.print(f"[green]serving[/green] {run_dir} on {where}  (API: POST /ask, POST /feedback, GET /health, /docs)")
        if host in ANY_ADDRESS:
            console.print(f"requests must name one of serve.allowed_hosts: {', '.join(settings.allowed_hosts)} (others get 400)")
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
    finally:
        sock.close()
