"""OpenAI-compatible HTTP teacher: vLLM, Ollama, llama.cpp server, TGI or a hosted API, on one
server or several.

`teacher.base_url` is one URL or a list of servers that all serve the same model. Each server has
its own connection pool and `teacher.concurrency` slots, and a request goes to the server with
the fewest requests in flight. A request is the same (messages, sampling, seed) whichever server
answers it, so where it ran does not change what the generate stage records.

Transient failures (connection errors, timeouts, 429, 5xx) are retried on the same server with
exponential backoff and jitter. A server that still fails is marked down for `down_s` seconds
(then it gets requests again) and the request moves to a server it has not failed on: a server
that dies mid-run loses no request, and each request still gets exactly one result. When no
server is left to try, generate() raises one error naming every server and why; the generate
stage keeps the chunks it finished, and a rerun resumes. A request that a server answers with an
error of its own (4xx, a reply that is not a chat completion) comes back as
`GenerationResult(text="", error=...)`, so one bad chunk does not end a long run.

The client spreads requests itself rather than asking for a router in front: it already owns the
concurrency and the retries, and nothing more has to run. One URL in front of something that
spreads requests works as well, e.g. vLLM's own data parallelism (`vllm serve MODEL
--data-parallel-size 2`: two engines behind one port) or a load balancer; then
`teacher.concurrency` is the total for that URL.

JSON schemas are sent in the standard OpenAI form
`{"type": "json_schema", "json_schema": {"name": "qa", "schema": ..., "strict": true}}` (vLLM,
Ollama, OpenAI). llama-cpp-python's server rejects that form and takes
`{"type": "json_object", "schema": ...}` instead, so when a server rejects the standard form we
retry in that form once and, if it works, keep using it on that server.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from distillqa.config import TeacherConfig
from distillqa.errors import DistillqaError
from distillqa.teacher.base import GenerationRequest, GenerationResult, error_line

log = logging.getLogger("distillqa")

MAX_BACKOFF_S = 30.0


class RequestFailed(Exception):
    """A request a server did not answer, after all retries on that server."""


def normalize_base_url(url: str) -> str:
    """Accept `http://host:port` as well as `http://host:port/v1`: a bare host gets `/v1`."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path == "" else url


def snippet(text: str, limit: int = 200) -> str:
    """The start of a response body on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


class Server:
    """One base URL: its connection pool, its slots, and whether it is up."""

    def __init__(self, url: str, headers: dict[str, str], cfg: TeacherConfig):
        self.url = normalize_base_url(url)
        self.slots = cfg.concurrency
        self.client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=cfg.timeout_s,
            limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
        )
        self.in_flight = 0
        self.answered = 0  # requests it answered (any HTTP status), logged at close to show the spread
        self.down_until = 0.0  # time.monotonic() before which it gets no request
        self.failure = ""  # why it was last marked down
        self.schema_form = "json_schema"  # response_format form it takes; "json_object" after a fallback

    def up(self) -> bool:
        return time.monotonic() >= self.down_until


class OpenAITeacher:
    """Chat completions from OpenAI-compatible servers, `teacher.concurrency` requests in flight on each."""

    supports_json_schema = True  # enforced by the server; all the common ones support it
    backoff_s = 0.5  # first retry delay; doubles on each retry
    down_s = 60.0  # how long a failed server gets no requests (a restarted server then rejoins)

    def __init__(self, cfg: TeacherConfig):
        if not cfg.servers:
            raise DistillqaError(
                "teacher.base_url is required for the openai backend, e.g. http://127.0.0.1:8000/v1 (vLLM) "
                "or http://127.0.0.1:11434/v1 (Ollama), or a list of servers serving the same model"
            )
        self.timeout_s = cfg.timeout_s
        self.max_retries = cfg.max_retries
        headers = {}
        api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.servers = [Server(url, headers, cfg) for url in cfg.servers]
        self._changed = threading.Condition()  # guards the servers' in_flight, answered and down state
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency * len(self.servers), thread_name_prefix="teacher-http")
        try:
            self.model = cfg.model or self._served_model()
        except DistillqaError:
            self.close()
            raise
        self.name = f"openai:{self.model}"

    # -- public ------------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order; raises DistillqaError when no server is left to answer."""
        return list(self._pool.map(self._chat, requests))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for server in self.servers:
            server.client.close()
        if len(self.servers) > 1:
            log.info("teacher servers: %s", ", ".join(
                f"{s.url} answered {s.answered}" + (f" (was down: {s.failure})" if s.failure else "") for s in self.servers
            ))

    # -- spreading and failover ------------------------------------------------------------------
    def _chat(self, req: GenerationRequest) -> GenerationResult:
        """Send to the least busy server; one that fails is marked down and the request moves on."""
        tried: set[Server] = set()
        while True:
            server = self._acquire(tried)
            failure = None
            try:
                return self._chat_on(server, req)
            except RequestFailed as f:
                failure = f
                tried.add(server)
            finally:
                self._release(server, failure)

    def _acquire(self, tried: set[Server]) -> Server:
        """A slot on the up server with the fewest requests in flight, never one in `tried`; waits
        while they are all full, raises when none is left."""
        with self._changed:
            while True:
                left = [s for s in self.servers if s not in tried and s.up()]
                if not left:
                    raise self._none_left()
                free = [s for s in left if s.in_flight < s.slots]
                if free:
                    server = min(free, key=lambda s: s.in_flight)
                    server.in_flight += 1
                    return server
                self._changed.wait()  # every release notifies, and a full server has requests to release

    def _release(self, server: Server, failure: RequestFailed | None) -> None:
        with self._changed:
            server.in_flight -= 1
            if failure is None:
                server.answered += 1
            elif server.up():  # the first request to find it failing marks it; the others just move on
                self._mark_down(server, failure)
            self._changed.notify_all()

    def _mark_down(self, server: Server, failure: RequestFailed) -> None:
        server.down_until = time.monotonic() + self.down_s
        server.failure = str(failure)
        if len(self.servers) > 1:
            log.warning("teacher server %s is down (%s): its requests go to the others", server.url, failure)

    def _none_left(self) -> DistillqaError:
        reasons = "; ".join(f"{s.url}: {s.failure}" for s in self.servers)
        return DistillqaError(f"no teacher server answers ({reasons}): start the server or fix teacher.base_url")

    # -- one server ------------------------------------------------------------------------------
    def _served_model(self) -> str:
        """With no teacher.model, use the first model the first answering server lists (most serve exactly one)."""
        for server in self.servers:
            try:
                resp = self._request(server, "GET", "/models")
            except RequestFailed as f:
                self._mark_down(server, f)
                continue
            try:
                return str(resp.json()["data"][0]["id"])
            except (ValueError, KeyError, IndexError, TypeError):
                raise DistillqaError(
                    f"{server.url}/models did not list a model ({snippet(resp.text)}): set teacher.model"
                ) from None
        raise self._none_left()

    def _payload(self, req: GenerationRequest, schema_form: str) -> dict:
        payload: dict = {
            "model": self.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "seed": req.seed,
        }
        if req.stop:
            payload["stop"] = list(req.stop)
        if req.json_schema is not None:
            if schema_form == "json_schema":
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "qa", "schema": req.json_schema, "strict": True},
                }
            else:
                payload["response_format"] = {"type": "json_object", "schema": req.json_schema}
        return payload

    def _chat_on(self, server: Server, req: GenerationRequest) -> GenerationResult:
        """One request on one server; raises RequestFailed when that server does not answer."""
        form = server.schema_form
        resp = self._request(server, "POST", "/chat/completions", self._payload(req, form))
        if req.json_schema is not None and form == "json_schema" and rejects_schema_form(resp):
            resp = self._request(server, "POST", "/chat/completions", self._payload(req, "json_object"))
            if resp.is_success:
                server.schema_form = "json_object"
        return parse_chat_response(resp)

    def _request(self, server: Server, method: str, path: str, payload: dict | None = None) -> httpx.Response:
        """Send with retries; returns any final response, raises RequestFailed when none came."""
        failure = RequestFailed("no attempt made")
        sent_standard_schema = (payload or {}).get("response_format", {}).get("type") == "json_schema"
        for attempt in range(self.max_retries + 1):
            if attempt and not server.up():
                raise RequestFailed(server.failure)  # another request found it down meanwhile: move on now
            retry_after: float | None = None
            try:
                resp = server.client.request(method, path, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                failure = RequestFailed(f"cannot connect ({error_line(e)})")
            except httpx.TimeoutException:
                failure = RequestFailed(f"no answer within teacher.timeout_s={self.timeout_s:g}s")
            except httpx.TransportError as e:  # connection dropped mid-response and similar
                failure = RequestFailed(f"connection error ({error_line(e)})")
            else:
                transient = resp.status_code == 429 or resp.status_code >= 500
                if not transient or (sent_standard_schema and rejects_schema_form(resp)):
                    return resp  # a schema-form rejection is not transient: _chat_on falls back instead
                failure = RequestFailed(f"HTTP {resp.status_code}: {snippet(resp.text)}")
                retry_after = parse_retry_after(resp)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        raise RequestFailed(f"{failure} (after {self.max_retries + 1} attempts)")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with +-50% jitter (so parallel requests do not retry in lockstep)."""
        if retry_after is not None:
            return min(retry_after, MAX_BACKOFF_S)
        return min(self.backoff_s * 2**attempt, MAX_BACKOFF_S) * random.uniform(0.5, 1.5)


def rejects_schema_form(resp: httpx.Response) -> bool:
    """An error that blames the response_format (llama-cpp-python answers 500 to `json_schema`)."""
    return resp.status_code >= 400 and ("response_format" in resp.text or "json_schema" in resp.text)


def parse_retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:  # absent, or an HTTP date (rare): fall back to our own backoff
        return None


def parse_chat_response(resp: httpx.Response) -> GenerationResult:
    """The first choice's text, or an error result saying what was wrong with the response."""
    if not resp.is_success:
        return GenerationResult(text="", error=f"HTTP {resp.status_code}: {snippet(resp.text)}")
    try:
        data = resp.json()
    except ValueError:
        return GenerationResult(
            text="", error=f"server returned non-JSON (HTTP {resp.status_code}): {snippet(resp.text)!r}"
        )
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return GenerationResult(text="", error=f"response has no choices[0].message: {snippet(resp.text)}")
    if not isinstance(content, str):
        return GenerationResult(text="", error=f"response message has no text content: {snippet(resp.text)}")
    return GenerationResult(text=content)
