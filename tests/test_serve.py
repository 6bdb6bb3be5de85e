"""The REST API and the UI's files, through FastAPI's TestClient (no socket), and `serve`
(binding, uvicorn over a real socket)."""

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import distillqa.app.serve
from distillqa.app.serve import (
    ASSETS,
    DOCS_ASSETS,
    MAX_BODY_BYTES,
    MAX_FEEDBACK_BODY_BYTES,
    BodySizeLimit,
    bind,
    create_app,
    load_asker,
)
from distillqa.config import FeedbackConfig, ServeConfig
from distillqa.errors import DistillqaError
from distillqa.layout import FEEDBACK
from distillqa.student.feedback import read_feedback
from tests.helpers import HARBOUR, ORCHARD, check_answers, running

DOCUMENTS = {"harbour.txt": HARBOUR, "orchard.md": ORCHARD}
LOCAL = "http://127.0.0.1:8000"  # the TestClient's own "testserver" is not an allowed host


@pytest.fixture(scope="module")
def client(small_run: Path):
    with TestClient(create_app(small_run), base_url=LOCAL) as c:  # `with` runs the lifespan: loads the Asker
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
    assert list(body) == ["found", "not_found_below", "answers"]
    assert body["found"] == (body["answers"][0]["confidence"] >= body["not_found_below"])
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
        self.not_found_below = self.real.not_found_below
        self.gate, self.entered = threading.Event(), threading.Event()

    def ask_many(self, questions, top_k):
        self.entered.set()
        self.gate.wait(30)
        return self.real.ask_many(questions, top_k)


def test_a_full_queue_is_503_and_health_does_not_wait(small_run: Path):
    """While the reader is busy, /health answers at once with the queue's length, and questions
    past serve.max_queue get 503 with Retry-After instead of waiting; all others are answered."""
    asker = BlockedAsker(small_run)
    app = create_app(small_run, asker=asker, cfg=ServeConfig(batch_size=2, batch_wait_ms=0, max_queue=3))
    with TestClient(app, base_url=LOCAL) as c, ThreadPoolExecutor(max_workers=4) as pool:
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
        check_security_headers(refused)
        asker.gate.set()
        assert [f.result(60).status_code for f in [first, *waiting]] == [200, 200, 200]


def test_serve_without_an_index_fails_with_one_line(monkeypatch, tmp_path: Path):
    """`distillqa serve` on a run without an index stops with the CLI's one-line error."""
    from typer.testing import CliRunner

    from distillqa.cli import app

    monkeypatch.setattr(distillqa.app.serve, "bind", lambda host, port: bind(host, 0))  # port 8000 may be taken
    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "distillqa index" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_binds_loopback_by_default(monkeypatch, tmp_path: Path):
    """The CLI, with no --host, binds 127.0.0.1:8000, then hands uvicorn that socket and an app
    with the loaded Asker, and closes the socket when uvicorn returns."""
    import uvicorn
    from typer.testing import CliRunner

    from distillqa.cli import app

    bound, served = [], []

    def fake_bind(host: str, port: int) -> socket.socket:
        bound.append((host, port))
        return bind("127.0.0.1", 0)  # a test must not take port 8000

    monkeypatch.setattr(distillqa.app.serve, "bind", fake_bind)
    monkeypatch.setattr(
        distillqa.app.serve, "load_asker", lambda small_run: SimpleNamespace(ask_many=None, run=small_run, index=SimpleNamespace(passages=[]))
    )
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append((self.config.app, sockets)))
    result = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert bound == [("127.0.0.1", 8000)]
    [(app_served, [sock])] = served
    assert sock.fileno() == -1  # closed
    with TestClient(app_served, base_url=LOCAL) as c:
        assert c.app.state.asker.run == tmp_path


def test_a_busy_port_fails_at_once_in_one_line(monkeypatch, tmp_path: Path):
    """A port in use is the CLI's one-line error (exit 2) before any model loads."""
    from typer.testing import CliRunner

    from distillqa.cli import app

    def load_asker(run_dir: Path):
        pytest.fail("the models were loaded for a port that is in use")

    monkeypatch.setattr(distillqa.app.serve, "load_asker", load_asker)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: 127.0.0.1:{port} is already in use: stop the other server or pass --port N\n"


def test_bind_errors_are_one_line():
    """Any other address the machine cannot listen on is one line too, naming host and port."""
    with pytest.raises(DistillqaError, match=r"^cannot listen on 192\.0\.2\.1:8000: \S.*$"):  # TEST-NET-1, not this machine's
        bind("192.0.2.1", 8000)
    with pytest.raises(DistillqaError, match=r"^cannot listen on \[2001:db8::1\]:8000: \S.*$"):  # IPv6's documentation prefix
        bind("2001:db8::1", 8000)
    with bind("127.0.0.1", 0) as sock:
        assert sock.getsockname()[0] == "127.0.0.1" and sock.getsockname()[1] > 0


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8000", 200),
        ("localhost:8000", 200),
        ("LocalHost", 200),
        ("[::1]:8000", 200),
        ("evil.example", 400),  # DNS rebinding: a page on evil.example whose name now points to 127.0.0.1
        ("evil.example:8000", 400),
        ("localhost.evil.example", 400),
        ("127.0.0.1.nip.io", 400),
        ("testserver", 400),
        ("", 400),
        ("local host", 400),
    ],
)
def test_only_local_host_names_are_answered(client: TestClient, host: str, status: int):
    response = client.get("/health", headers={"Host": host})
    assert response.status_code == status
    if status == 400:
        assert response.text == "Invalid host header"
        check_security_headers(response)


def test_allowed_hosts_setting_and_serve_host(small_run: Path):
    """serve.allowed_hosts replaces the loopback names; the address `serve --host` names is
    allowed too, unless it is 0.0.0.0 or ::, which no client sends."""

    def status(app: FastAPI, host: str) -> int:
        return TestClient(app, base_url=LOCAL).get("/openapi.json", headers={"Host": host}).status_code  # no lifespan: no Asker

    deployed = create_app(small_run, cfg=ServeConfig(allowed_hosts=["qa.example.org", "*.lab.example.org"]))
    assert [status(deployed, h) for h in ("qa.example.org", "a.lab.example.org:8000", "localhost", "evil.example")] == [200, 200, 400, 400]
    lan = create_app(small_run, host="192.168.1.20")
    assert [status(lan, h) for h in ("192.168.1.20:8000", "localhost", "192.168.1.21")] == [200, 200, 400]
    assert status(create_app(small_run, host="fd00::20"), "[fd00::20]:8000") == 200
    assert status(create_app(small_run, host="0.0.0.0"), "0.0.0.0:8000") == 400
    assert ServeConfig(allowed_hosts=["::1", "QA.Example.org"]).allowed_hosts == ["[::1]", "qa.example.org"]
    for bad in (["localhost:8000"], ["qa.*.org"], ["*example.org"], []):
        with pytest.raises(ValueError):
            ServeConfig(allowed_hosts=bad)


def check_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff", response.request.url
    assert headers["referrer-policy"] == "no-referrer", response.request.url
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp, response.request.url
    assert len(headers.get_list("content-security-policy")) == 1


def test_every_response_has_the_security_headers(client: TestClient):
    """One middleware around everything: routes, UI and docs files, and each error status
    (400, 413 and 503 are checked in their own tests)."""
    responses = [client.get(url) for url in [*ASSETS, *DOCS_ASSETS, "/docs", "/openapi.json", "/health"]]
    responses += [
        client.post("/ask", json={"question": "Who built the harbour light?"}),
        client.get("/nope"),  # 404
        client.get("/ask"),  # 405
        client.post("/ask", json={"question": ""}),  # 422
        client.post("/ask", content=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"}),  # 413
    ]
    assert [r.status_code for r in responses] == [200] * (len(responses) - 4) + [404, 405, 422, 413]
    for response in responses:
        check_security_headers(response)
    assert client.get("/").headers["content-security-policy"] == distillqa.app.serve.UI_CSP  # the UI's own, strict


def test_docs_page_may_run_only_its_own_inline_script(client: TestClient):
    """Swagger UI's page has one inline script: its policy allows that script by hash, and
    nothing else inline, nor from outside the server."""
    page = client.get("/docs")
    [script] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["style-src"] == "'self'" and policy["connect-src"] == "'self'" and policy["img-src"] == "'self' data:"


ODD_QUESTIONS = [
    "\ud800",  # lone surrogates: not text, and UTF-8 cannot encode them
    "Who built \udfff the light?",
    "\udc00\ud800",
    "\ud83d\ude00 Who?",  # a valid pair: one emoji
    "Who\x00 built it?",
    "\x00",
    "\x01\x02\x1b[31m\x7f?",
    "Who\tbuilt\r\nit?",
    "?!...;--",
    "\u00a0\u00a0",  # whitespace-like unicode only
    "\u3000",
    "\u2028\u2029\u2000\u205f",
    "a" * 1000,  # one word, as long as a question may be
    "e" + "\u0301" * 999,  # combining marks
    "\u0301\u0302",
    "מי בנה את המגדלור?",  # right to left
    "\u202eWho built the harbour light?",
    "🏗️💡?",
    "😀" * 1000,
    "\u200b\u200c\u200d\ufeff",  # zero-width only: tokenizes to nothing
    "Who\u200bbuilt\u200bit?",
    "谁建造了灯塔？",
    "\ue000\uf8ff\uffff\ufffe",  # private use, noncharacters
    "<script>alert(1)</script>",
]


def test_odd_questions_are_answered_or_422_never_500(client: TestClient):
    """Each question goes as JSON with \\u escapes (the only way to send a lone surrogate)."""
    bodies = [json.dumps({"question": q}) for q in ODD_QUESTIONS]
    bodies += [json.dumps({"question": "Who?", "\udc00": 1}), json.dumps({"question": "\ud800", "top_k": "\udfff"})]
    for body in bodies:
        response = client.post("/ask", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code in (200, 422), body
        data = response.json()
        if response.status_code == 422:
            assert data["detail"] and all(d["msg"] for d in data["detail"]), body
        else:
            assert isinstance(data["answers"], list), body
    lone = client.post("/ask", content=bodies[0], headers={"Content-Type": "application/json"})
    assert lone.status_code == 422 and "valid string" in lone.json()["detail"][0]["msg"]
    # a surrogate written in UTF-8 (as CESU-8 does), and bytes that are not UTF-8 at all
    for raw in (b'{"question": "\xed\xa0\x80"}', b'{"question": "\xff"}'):
        assert client.post("/ask", content=raw, headers={"Content-Type": "application/json"}).status_code in (400, 422)


def test_health_answers_at_once_behind_200_questions(small_run: Path):
    """Over real connections: 200 questions wait for a busy reader, and /health (on a
    connection of its own, as a liveness probe's) still answers within a second. It waited
    behind them when the routes were plain `def`s sharing anyio's 40 threads."""
    asker = BlockedAsker(small_run)
    questions = 200

    async def load(url: str) -> list[int]:
        unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=url, limits=unlimited, timeout=120) as c:
            asks = [asyncio.create_task(c.post("/ask", json={"question": f"Who was keeper number {i}?"})) for i in range(questions)]
            try:
                async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
                    while not asker.entered.is_set() or (await probe.get("/health")).json()["queued"] < questions - 32:
                        await asyncio.sleep(0.05)  # the first batch (up to serve.batch_size, 32) is being read
                started = time.perf_counter()
                async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
                    health = await probe.get("/health")
                waited = time.perf_counter() - started
            finally:
                asker.gate.set()
            statuses = [r.status_code for r in await asyncio.gather(*asks)]
        assert health.status_code == 200 and waited < 1, f"/health took {waited:.2f} s"
        return statuses

    with running(create_app(small_run, asker=asker)) as url:
        assert asyncio.run(load(url)) == [200] * questions


# -- POST /feedback ----------------------------------------------------------------------------

QUESTION = "Who built the harbour light?"


@pytest.fixture(scope="module")
def served_run(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_run's files, hard-linked (nothing in them may change: the tests check it), in a
    folder of its own for the feedback tests' server to write feedback.jsonl in."""
    return Path(shutil.copytree(small_run, tmp_path_factory.mktemp("feedback") / "run", copy_function=os.link))


@pytest.fixture(scope="module")
def served_asker(served_run: Path):
    return load_asker(served_run)


@pytest.fixture
def feedback_client(served_run: Path, served_asker):
    """A server on `served_run` with no feedback yet."""
    (served_run / FEEDBACK).unlink(missing_ok=True)
    with TestClient(create_app(served_run, asker=served_asker), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def shown(served_asker) -> dict:
    """A judgement of an answer as /ask shows it: "1854", in the index's passage that says who
    built the light ("Margaret Hale")."""
    passage = next(p.text for p in served_asker.index.passages if "Margaret Hale" in p.text)
    start = passage.index("1854")
    return {"question": QUESTION, "passage": passage, "answer": "1854", "start": start, "end": start + 4, "verdict": "right"}


def corrected(shown: dict, text: str = "Margaret Hale") -> dict:
    start = shown["passage"].index(text)
    return {**shown, "verdict": "wrong", "correct_start": start, "correct_end": start + len(text)}


def files_in(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_feedback_is_one_line_of_feedback_jsonl_and_nothing_else_is_written(feedback_client: TestClient, served_run: Path, shown: dict):
    before = files_in(served_run)
    asked = feedback_client.post("/ask", json={"question": QUESTION, "top_k": 1}).json()["answers"][0]
    as_asked = {k: asked[k] for k in ("passage", "answer", "start", "end")}
    bodies = [
        {"question": QUESTION, **as_asked, "verdict": "right"},  # an answer exactly as /ask gave it
        corrected(shown),
        {**shown, "verdict": "wrong", "not_in_passages": True},
    ]
    responses = [feedback_client.post("/feedback", json=body) for body in bodies]
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert [r.json()["gold"] for r in responses] == [asked["answer"], "Margaret Hale", None]
    records, damaged = read_feedback(served_run / FEEDBACK)
    assert damaged == 0 and [r.record_id for r in records] == [r.json()["id"] for r in responses]
    for record, body in zip(records, bodies):
        assert record.model_dump(include=set(body)) == body
        assert record.time.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - record.time) < timedelta(minutes=1)
    assert (records[1].document, records[1].page) == ("harbour.txt", 1)  # from the index, not the request
    assert files_in(served_run) == {**before, FEEDBACK: files_in(served_run)[FEEDBACK]}


@pytest.mark.parametrize(
    "change",
    [
        lambda b: {},
        lambda b: {k: v for k, v in b.items() if k != "verdict"},
        lambda b: {**b, "verdict": "maybe"},
        lambda b: {**b, "question": " \n\t"},
        lambda b: {**b, "question": "x" * 1001},
        lambda b: {**b, "path": "/etc/passwd"},
        lambda b: {**b, "start": str(b["start"])},
        lambda b: {**b, "end": float(b["end"])},
        lambda b: {**b, "start": -1},
        lambda b: {**b, "end": len(b["passage"]) + 1},
        lambda b: {**b, "end": b["start"]},
        lambda b: {**b, "answer": "1855"},  # not passage[start:end]
        lambda b: {**corrected(b), "verdict": "right"},  # "right" with a correction
        lambda b: {**b, "verdict": "wrong"},  # wrong, but neither a correction nor not_in_passages
        lambda b: {**corrected(b), "not_in_passages": True},  # both
        lambda b: {k: v for k, v in corrected(b).items() if k != "correct_end"},
        lambda b: {**corrected(b), "correct_end": len(b["passage"]) + 5},
        lambda b: corrected(b, " "),  # a blank span
        lambda b: corrected(b, "1854"),  # the correction is the shown answer
        lambda b: {**b, "verdict": "wrong", "not_in_passages": "true"},
        lambda b: {**b, "passage": b["passage"] + " And a sentence of no index."},  # not a passage of the run
        lambda b: {**b, "passage": b["passage"].upper(), "answer": "1854"},
        lambda b: [b],
    ],
)
def test_bad_feedback_is_422_and_writes_nothing(feedback_client: TestClient, served_run: Path, shown: dict, change):
    response = feedback_client.post("/feedback", json=change(shown))
    assert response.status_code == 422, response.json()
    assert response.headers["content-type"] == "application/json" and response.json()["detail"]
    check_security_headers(response)
    assert not (served_run / FEEDBACK).exists()


def test_feedback_takes_a_larger_body_than_ask(feedback_client: TestClient, shown: dict):
    """/feedback carries a passage, so its body may pass /ask's 16 KiB; not its own limit."""
    long = {**shown, "passage": shown["passage"] + " x" * 10_000}
    assert MAX_BODY_BYTES < len(json.dumps(long)) < MAX_FEEDBACK_BODY_BYTES
    assert feedback_client.post("/feedback", json=long).status_code == 422  # read, and not an index passage
    assert feedback_client.post("/ask", json={"question": QUESTION, "pad": long["passage"]}).status_code == 413
    huge = {**shown, "passage": "x" * MAX_FEEDBACK_BODY_BYTES}
    response = feedback_client.post("/feedback", json=huge)
    assert response.status_code == 413 and str(MAX_FEEDBACK_BODY_BYTES) in response.json()["detail"]


def test_a_full_feedback_file_is_507_and_stays_as_it_was(served_run: Path, served_asker, shown: dict):
    path = served_run / FEEDBACK
    path.unlink(missing_ok=True)
    app = create_app(served_run, asker=served_asker, feedback=FeedbackConfig(max_bytes=1500))
    with TestClient(app, base_url=LOCAL) as c:
        statuses = []
        while not statuses or statuses[-1] == 201:
            held = path.read_bytes() if path.exists() else b""
            response = c.post("/feedback", json=corrected(shown))
            statuses.append(response.status_code)
    assert statuses[0] == 201 and statuses[-1] == 507, statuses
    assert "full" in response.json()["detail"] and "feedback.max_bytes" in response.json()["detail"]
    check_security_headers(response)
    assert path.read_bytes() == held and len(held) <= 1500
    records, damaged = read_feedback(path)
    assert len(records) == len(statuses) - 1 and damaged == 0


def test_a_line_torn_by_a_kill_is_ignored_then_cut_by_the_next_feedback(feedback_client: TestClient, served_run: Path, shown: dict):
    """A server killed mid-write leaves a last line without its newline: readers skip it, and
    the next feedback cuts it off before appending, so the file stays whole lines."""
    path = served_run / FEEDBACK
    assert feedback_client.post("/feedback", json=shown).status_code == 201
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(whole[: len(whole) // 2])  # the first half of a line, as a kill mid-write leaves it
    records, damaged = read_feedback(path)
    assert len(records) == 1 and damaged == 1
    assert feedback_client.post("/feedback", json=corrected(shown)).status_code == 201
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2 and lines[0] == whole and lines[1].endswith(b"\n")
    records, damaged = read_feedback(path)
    assert [r.verdict for r in records] == ["right", "wrong"] and damaged == 0


def test_feedback_is_in_the_api_docs(client: TestClient):
    spec = client.get("/openapi.json").json()
    assert "/feedback" in spec["paths"] and "507" in spec["paths"]["/feedback"]["post"]["responses"]
    fields = spec["components"]["schemas"]["FeedbackRequest"]["properties"]
    assert {"question", "passage", "answer", "start", "end", "verdict", "correct_start", "correct_end", "not_in_passages"} == set(fields)
