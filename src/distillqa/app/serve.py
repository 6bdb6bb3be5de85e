"""`distillqa serve`: a REST API and a single-page web UI over one run's documents and student.

Routes: `GET /` (the web UI), `GET /static/app.js`, `GET /static/style.css`, `POST /ask`,
`GET /health`, and FastAPI's `GET /docs` and `GET /openapi.json`. No route has a path
parameter and nothing reads a file path from a request: the three UI files are read from the
package once, when the app is created, and each has its own fixed route.

The run's `Asker` (index + reader) is loaded once at startup. `/ask` hands its question to a
`distillqa.app.batcher.Batcher` and awaits the answer: questions that arrive together are read as
one batch on one worker thread (the `serve` settings of the run's config.yaml), the event loop
stays free, and past `serve.max_queue` waiting questions `/ask` answers 503 at once with a
Retry-After header. `/health` never waits behind questions: it reads counts loaded at startup
and the queue's length.

`/docs` is Swagger UI over `/openapi.json`. FastAPI's own page loads Swagger UI from a CDN,
which shows an empty page offline, so its script and stylesheet are the copies shipped in the
fastapi-offline package (Swagger UI 5, which reads FastAPI's OpenAPI 3.1), each on a fixed route
under `/docs/`. The web UI loads nothing from outside the server either, and says so to the
browser with a Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distillqa import __version__
from distillqa.app.batcher import Batcher, QueueFull
from distillqa.config import ServeConfig
from distillqa.layout import RunFolder
from distillqa.records import MAX_TOP_K, AnswerRecord

if TYPE_CHECKING:
    from distillqa.app.ask import Asker

MAX_BODY_BYTES = 16 * 1024
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
UI_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


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


class AskResponse(BaseModel):
    answers: list[AnswerRecord]


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

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
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

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body too large (limit {self.max_bytes} bytes)"}, status_code=413)
        await response(scope, receive, send)


def load_asker(run_dir: Path) -> Asker:
    """The run's Asker, warmed up so the first request is as fast as the rest."""
    from distillqa.app.ask import Asker

    asker = Asker(run_dir)
    asker.warm_up()
    return asker


def create_app(run_dir: Path, asker: Asker | None = None, cfg: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app for one run folder; pass `asker` when it is already loaded (see `serve`)
    and `cfg` to replace the run's `serve` settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = cfg or RunFolder(Path(run_dir)).saved_config().serve
        app.state.asker = asker if asker is not None else await run_in_threadpool(load_asker, Path(run_dir))
        app.state.batcher = Batcher(app.state.asker.ask_many, settings.batch_size, settings.batch_wait_ms, settings.max_queue)
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
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

    @app.post("/ask", response_model=AskResponse, responses={503: {"description": "Too many questions waiting: retry."}})
    async def ask(body: AskRequest, request: Request) -> AskResponse | JSONResponse:
        """The best distinct answers from the run's documents, with document, page and passage."""
        try:
            future = request.app.state.batcher.submit(body.question, body.top_k)
        except QueueFull as e:
            return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "1"})
        answers = await asyncio.wrap_future(future)
        return AskResponse.model_validate({"answers": answers})

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
        app.add_api_route(url, _asset_endpoint(static.joinpath(name).read_bytes(), media_type), include_in_schema=False)
    _add_docs(app)
    return app


def _asset_endpoint(content: bytes, media_type: str, headers: dict[str, str] = UI_HEADERS):
    """A GET endpoint returning one file, read once when the app was created."""

    def endpoint() -> Response:
        return Response(content, media_type=media_type, headers=headers)

    return endpoint


def _add_docs(app: FastAPI) -> None:
    """`GET /docs`: FastAPI's Swagger UI page, with its script and stylesheet served from here."""
    from fastapi.openapi.docs import get_swagger_ui_html

    bundle = files("fastapi_offline") / "static"
    for url, (name, media_type) in DOCS_ASSETS.items():
        app.add_api_route(url, _asset_endpoint(bundle.joinpath(name).read_bytes(), media_type, {}), include_in_schema=False)

    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url="/docs/swagger-ui-bundle.js",
            swagger_css_url="/docs/swagger-ui.css",
            swagger_favicon_url="/docs/favicon.png",
        )

    app.add_api_route("/docs", docs, include_in_schema=False)


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the run (failing with a one-line error if it has no index or student), then serve it."""
    import uvicorn

    from distillqa.console import console

    asker = load_asker(Path(run_dir))
    console.print(f"[green]serving[/green] {run_dir} on http://{host}:{port}/  (API: POST /ask, GET /health, /docs)")
    uvicorn.run(create_app(run_dir, asker=asker), host=host, port=port, log_level="info")
