"""The REST API and the UI's files, through FastAPI's TestClient (no socket)."""

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from distillqa.app.serve import ASSETS, MAX_BODY_BYTES, BodySizeLimit, create_app
from tests.helpers import HARBOUR, ORCHARD, check_answers

DOCUMENTS = {"harbour.txt": HARBOUR, "orchard.md": ORCHARD}


@pytest.fixture(scope="module")
def client(small_run: Path):
    with TestClient(create_app(small_run)) as c:  # `with` runs the lifespan: loads the Asker
        yield c


def test_health(client: TestClient):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["documents"] == 2 and body["passages"] >= 2
    assert body["model"] == "run/student" and "MiniLM" in body["embedder"]
    assert body["reader_runtime"] == "torch" and body["queued"] == 0  # small_run has no export


def test_ask_returns_the_cli_json_shape(client: TestClient):
    response = client.post("/ask", json={"question": "Who built the harbour light?", "top_k": 2})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["answers"]
    check_answers(body["answers"], 2, DOCUMENTS)
    default = client.post("/ask", json={"question": "Who built the harbour light?"}).json()["answers"]
    assert 1 <= len(default) <= 3  # top_k defaults to 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"question": ""},
        {"question": "   \n\t"},
        {"question": "x" * 1001},
        {"question": 42},
        {"question": ["Who?"]},
        {"question": None},
        {"question": "Who?", "top_k": 0},
        {"question": "Who?", "top_k": 21},
        {"question": "Who?", "top_k": "3"},
        {"question": "Who?", "top_k": 2.5},
        {"question": "Who?", "top_k": True},
        {"question": "Who?", "path": "/etc/passwd"},
        ["Who?"],
        "Who?",
    ],
)
def test_invalid_requests_are_422_json(client: TestClient, body):
    response = client.post("/ask", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]


def test_malformed_json_is_422(client: TestClient):
    response = client.post("/ask", content=b'{"question": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422


def test_longest_valid_question_is_accepted(client: TestClient):
    assert client.post("/ask", json={"question": "Who " * 250, "top_k": 20}).status_code == 200


def test_body_over_the_limit_is_413(client: TestClient):
    body = json.dumps({"question": "Who?", "pad": "x" * MAX_BODY_BYTES}).encode()
    response = client.post("/ask", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_chunked_body_over_the_limit_is_413(client: TestClient):
    """No Content-Length: the middleware counts the bytes as they arrive."""
    chunks = (b"x" * 4096 for _ in range(8))
    response = client.post("/ask", content=chunks, headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413


async def _through_limit(body: bytes, content_length: bytes | None) -> tuple[int, bytes | None]:
    """Send `body` in 1000-byte messages through BodySizeLimit(max 5000) to an echo app.
    Returns the response status and the body the echo app received (None: it never ran)."""
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    received: list[bytes] = []
    sent: list[dict] = []

    async def echo(scope, receive, send):
        body = (await receive())["body"]
        received.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    headers = [(b"content-length", content_length)] if content_length is not None else []
    scope = {"type": "http", "method": "POST", "path": "/ask", "headers": headers}
    await BodySizeLimit(echo, max_bytes=5000)(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, (received[0] if received else None)


@pytest.mark.parametrize(
    ("size", "declared", "status"),
    [(4000, b"4000", 200), (4000, None, 200), (6000, None, 413), (6000, b"100", 413), (10, b"99999", 413), (10, b"abc", 413)],
)
def test_body_size_limit_middleware(size: int, declared: bytes | None, status: int):
    """Checks the header and the bytes that really arrive; a header that lies does not help."""
    import anyio

    got, received = anyio.run(_through_limit, b"y" * size, declared)
    assert got == status
    assert received == (b"y" * size if status == 200 else None)  # the whole body, replayed in one piece


def test_unknown_paths_are_404_and_no_route_takes_a_path(client: TestClient):
    for path in ("/nope", "/static/", "/static/secret.txt", "/static/../pyproject.toml", "/static/%2e%2e/__init__.py", "/redoc"):
        assert client.get(path).status_code == 404, path
    assert client.get("/ask").status_code == 405
    assert client.post("/health").status_code == 405
    paths = [route.path for route in client.app.routes]
    assert not [p for p in paths if "{" in p]
    assert set(ASSETS) <= set(paths) and {"/ask", "/health", "/docs", "/openapi.json"} <= set(paths)


def test_ui_files_are_local_and_safe(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'src="/static/app.js"' in page.text and 'href="/static/style.css"' in page.text
    for url, (_, media_type) in ASSETS.items():
        response = client.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == media_type
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", response.text), f"{url} loads something external"
    script = client.get("/static/app.js").text
    assert not re.search(r"innerHTML\s*=|outerHTML|insertAdjacentHTML|document\.write", script)
    assert "textContent" in script


def test_openapi_is_served_locally(client: TestClient):
    spec = client.get("/openapi.json").json()
    assert {"/ask", "/health"} <= set(spec["paths"])
    schema = spec["components"]["schemas"]["AskRequest"]["properties"]
    assert schema["question"]["maxLength"] == 1000 and schema["top_k"]["maximum"] == 20
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert "/docs/swagger-ui-bundle.js" in assets and "/docs/swagger-ui.css" in assets
    assert not [a for a in assets if not a.startswith("/")], "the docs page loads something external"
    for url in assets:
        assert client.get(url).status_code == 200, url


def test_concurrent_questions_all_succeed(client: TestClient):
    questions = ["Who built the harbour light?", "When was the orchard planted?", "Who was the last keeper?"] * 3

    def ask(q: str) -> int:
        return client.post("/ask", json={"question": q, "top_k": 2}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(ask, questions)) == [200] * len(questions)


class BlockedAsker:
    """An Asker stand-in whose answers wait for `gate`: a server with a busy reader."""

    def __init__(self, small_run: Path) -> None:
        from distillqa.app.ask import Asker

        self.real = Asker(small_run)
        self.index, self.reader, self.model_name = self.real.index, self.real.reader, self.real.model_name
        self.gate, self.entered = threading.Event(), threading.Event()

    def ask_many(self, questions, top_k):
        self.entered.set()
        self.gate.wait(30)
        return self.real.ask_many(questions, top_k)


def test_a_full_queue_is_503_and_health_does_not_wait(small_run: Path):
    """While the reader is busy, /health answers at once with the queue's length, and questions
    past serve.max_queue get 503 with Retry-After instead of waiting; all others are answered."""
    from distillqa.config import ServeConfig

    asker = BlockedAsker(small_run)
    app = create_app(small_run, asker=asker, cfg=ServeConfig(batch_size=2, batch_wait_ms=0, max_queue=3))
    with TestClient(app) as c, ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(c.post, "/ask", json={"question": "Who built the harbour light?"})
        assert asker.entered.wait(30)
        waiting = [pool.submit(c.post, "/ask", json={"question": f"Who was keeper number {i}?"}) for i in range(2)]
        while c.get("/health").json()["queued"] < 2:
            time.sleep(0.01)
        started = time.perf_counter()
        assert c.get("/health").status_code == 200
        assert time.perf_counter() - started < 2
        refused = c.post("/ask", json={"question": "One too many?"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "waiting" in refused.json()["detail"]
        asker.gate.set()
        assert [f.result(60).status_code for f in [first, *waiting]] == [200, 200, 200]


def test_serve_fails_with_one_line_before_binding(tmp_path: Path):
    """`distillqa serve` on a run without an index stops with the CLI's one-line error."""
    from typer.testing import CliRunner

    from distillqa.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "distillqa index" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_binds_loopback_by_default(monkeypatch, tmp_path: Path):
    """The CLI, with no --host, hands uvicorn 127.0.0.1:8000 and an app with the loaded Asker."""
    import uvicorn
    from typer.testing import CliRunner

    import distillqa.app.serve
    from distillqa.cli import app

    calls = []
    monkeypatch.setattr(distillqa.app.serve, "load_asker", lambda small_run: SimpleNamespace(ask_many=None, run=small_run))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [(served, kwargs)] = calls
    assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", 8000)
    with TestClient(served) as c:
        assert c.app.state.asker.run == tmp_path
