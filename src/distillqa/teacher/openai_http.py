"""OpenAI-compatible HTTP teacher: vLLM, Ollama, llama.cpp server, TGI or a hosted API.

Requests go out `teacher.concurrency` at a time from a thread pool (the server batches them).
Transient failures (connection errors, timeouts, 429, 5xx) are retried with exponential backoff
and jitter. A request that still fails comes back as `GenerationResult(text="", error=...)` so one
bad chunk does not end a long run, except when the very first request cannot connect at all:
then the server is down or the URL is wrong, and the run stops with a clear message.

JSON schemas are sent in the standard OpenAI form
`{"type": "json_schema", "json_schema": {"name": "qa", "schema": ..., "strict": true}}` (vLLM,
Ollama, OpenAI). llama-cpp-python's server rejects that form and takes
`{"type": "json_object", "schema": ...}` instead, so when a server rejects the standard form we
retry in that form once and, if it works, keep using it.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from distillqa.config import TeacherConfig
from distillqa.errors import DistillqaError
from distillqa.teacher.base import GenerationRequest, GenerationResult, error_line

MAX_BACKOFF_S = 30.0


class RequestFailed(Exception):
    """A request that failed after all retries; `unreachable` when no connection could be made."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def normalize_base_url(url: str) -> str:
    """Accept `http://host:port` as well as `http://host:port/v1`: a bare host gets `/v1`."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path == "" else url


def snippet(text: str, limit: int = 200) -> str:
    """The start of a response body on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


class OpenAITeacher:
    """Chat completions from an OpenAI-compatible server, N requests in flight."""

    supports_json_schema = True  # enforced by the server; all the common ones support it
    backoff_s = 0.5  # first retry delay; doubles on each retry

    def __init__(self, cfg: TeacherConfig):
        if not cfg.base_url:
            raise DistillqaError(
                "teacher.base_url is required for the openai backend, e.g. http://127.0.0.1:8000/v1 (vLLM) "
                "or http://127.0.0.1:11434/v1 (Ollama)"
            )
        self.base_url = normalize_base_url(cfg.base_url)
        self.timeout_s = cfg.timeout_s
        self.max_retries = cfg.max_retries
        headers = {}
        api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=cfg.timeout_s,
            limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="teacher-http")
        self.schema_form = "json_schema"  # response_format form this server takes; "json_object" after a fallback
        self._checked = False  # set once a first request got through, see generate()
        try:
            self.model = cfg.model or self._served_model()
        except DistillqaError:
            self.close()
            raise
        self.name = f"openai:{self.model}"

    # -- public ------------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order. The first request ever goes alone, to fail fast on a dead server."""
        if not requests:
            return []
        head: list[GenerationResult] = []
        if not self._checked:
            head = [self._first(requests[0])]
            requests = requests[1:]
        return head + list(self._pool.map(self._chat, requests))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    # -- internals ---------------------------------------------------------------------------
    def _unreachable(self, failure: RequestFailed) -> DistillqaError:
        return DistillqaError(
            f"cannot reach teacher server at {self.base_url}: {failure}: start the server or fix teacher.base_url"
        )

    def _served_model(self) -> str:
        """With no teacher.model, use the first model the server lists (most serve exactly one)."""
        try:
            resp = self._request("GET", "/models")
        except RequestFailed as f:
            raise (self._unreachable(f) if f.unreachable else DistillqaError(f"{self.base_url}/models: {f}")) from None
        self._checked = True
        try:
            return str(resp.json()["data"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise DistillqaError(
                f"{self.base_url}/models did not list a model ({snippet(resp.text)}): set teacher.model"
            ) from None

    def _first(self, req: GenerationRequest) -> GenerationResult:
        try:
            result = self._chat(req, raise_unreachable=True)
        except RequestFailed as f:
            raise self._unreachable(f) from None
        self._checked = True
        return result

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

    def _chat(self, req: GenerationRequest, raise_unreachable: bool = False) -> GenerationResult:
        form = self.schema_form
        try:
            resp = self._request("POST", "/chat/completions", self._payload(req, form))
            if req.json_schema is not None and form == "json_schema" and rejects_schema_form(resp):
                resp = self._request("POST", "/chat/completions", self._payload(req, "json_object"))
                if resp.is_success:
                    self.schema_form = "json_object"
        except RequestFailed as f:
            if raise_unreachable and f.unreachable:
                raise
            return GenerationResult(text="", error=str(f))
        return parse_chat_response(resp)

    def _request(self, method: str, path: str, payload: dict | None = None) -> httpx.Response:
        """Send with retries; returns any final response, raises RequestFailed when none came."""
        failure = RequestFailed("no attempt made")
        sent_standard_schema = (payload or {}).get("response_format", {}).get("type") == "json_schema"
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                resp = self._client.request(method, path, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                failure = RequestFailed(f"cannot connect ({error_line(e)})", unreachable=True)
            except httpx.TimeoutException:
                failure = RequestFailed(f"no answer within teacher.timeout_s={self.timeout_s:g}s")
            except httpx.TransportError as e:  # connection dropped mid-response and similar
                failure = RequestFailed(f"connection error ({error_line(e)})")
            else:
                transient = resp.status_code == 429 or resp.status_code >= 500
                if not transient or (sent_standard_schema and rejects_schema_form(resp)):
                    return resp  # a schema-form rejection is not transient: _chat falls back instead
                failure = RequestFailed(f"HTTP {resp.status_code}: {snippet(resp.text)}")
                retry_after = parse_retry_after(resp)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        raise RequestFailed(f"{failure} (after {self.max_retries + 1} attempts)", failure.unreachable)

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
