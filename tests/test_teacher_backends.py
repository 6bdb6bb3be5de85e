"""Teacher backends: transformers (a tiny random model built here), llama.cpp (the bundled GGUF)
and the OpenAI-compatible HTTP client, on one server or several (against real llama_cpp.server
processes and a scripted fake server).
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from distillqa.config import Config, TeacherConfig, load_config
from distillqa.errors import DistillqaError
from distillqa.io import read_jsonl, write_jsonl
from distillqa.layout import CHUNKS, GENERATIONS, TEACHER_CACHE
from distillqa.models import bundled_teacher_gguf
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.teacher.backends import load_backend, load_teacher
from distillqa.teacher.base import GenerationRequest, GenerationResult
from tests.helpers import HARBOUR, ORCHARD

QA_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
# Only one output is valid under this schema, which an unconstrained model would not produce.
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"enum": ["supported", "unsupported"]}},
    "required": ["verdict"],
    "additionalProperties": False,
}
NILE = "The Nile is the longest river in Africa. It flows north into the Mediterranean Sea."


def user(text: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def schema_errors(value: object, schema: dict, where: str = "$") -> list[str]:
    """A tiny JSON-schema check for the keywords these tests use (jsonschema is not a dependency)."""
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}
    kind = schema.get("type")
    if kind and (not isinstance(value, kinds[kind]) or (kind in ("integer", "number") and isinstance(value, bool))):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    errors: list[str] = []
    if isinstance(value, dict):
        errors += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: unexpected {k!r}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += schema_errors(v, schema["items"], f"{where}[{i}]")
    return errors


def assert_valid_json(text: str, schema: dict) -> dict:
    data = json.loads(text)
    assert schema_errors(data, schema) == [], text
    return data


def test_schema_checker_rejects_wrong_values() -> None:
    assert schema_errors({"question": "q", "answer": "a"}, QA_SCHEMA) == []
    assert schema_errors({"question": "q"}, QA_SCHEMA) == ["$: missing 'answer'"]
    assert schema_errors({"question": 1, "answer": "a"}, QA_SCHEMA) == ["$.question: expected string, got int"]
    assert schema_errors({"verdict": "maybe"}, VERDICT_SCHEMA)
    assert schema_errors({"verdict": "supported", "x": 1}, VERDICT_SCHEMA) == ["$: unexpected 'x'"]


# ---------------------------------------------------------------------------------------------
# transformers: a tiny random Llama with a character-level byte-BPE tokenizer, built offline.
# One token per ASCII character makes "max_tokens respected" checkable on the decoded text.
# ---------------------------------------------------------------------------------------------
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_lm(folder: Path, chat_template: str | None) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    # Byte-level BPE spells space and newline as chr(256 + byte) (GPT-2's byte-to-unicode map).
    chars = [chr(256 + 10), chr(256 + 32)] + [chr(b) for b in range(33, 127)]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens(specials)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>")
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-chat-lm"), CHATML)


@pytest.fixture(scope="module")
def hf_teacher(tiny_lm: Path) -> Iterator:
    # in-process: these tests look inside the backend (the worker process is tested with llama.cpp)
    teacher = load_backend(TeacherConfig(backend="transformers", model=str(tiny_lm), batch_size=3))
    yield teacher
    teacher.close()


def varied_requests(n: int, **kw: object) -> list[GenerationRequest]:
    """Prompts of different lengths, so batches really are left-padded."""
    return [GenerationRequest(messages=user("word " * (3 * i) + f"question {i}?"), seed=i, **kw) for i in range(n)]


def test_hf_batched_greedy_equals_one_at_a_time(hf_teacher) -> None:
    requests = varied_requests(7, max_tokens=12, temperature=0.0)
    batched = hf_teacher.generate(requests)
    single = [hf_teacher.generate([r])[0] for r in requests]
    assert [r.error for r in batched] == [None] * 7
    assert [r.text for r in batched] == [r.text for r in single]
    assert len({r.text for r in single}) > 1  # outputs differ per prompt, so order is really checked
    assert hf_teacher.name == f"transformers:{Path(hf_teacher.model.name_or_path).name}"


def test_hf_sampling_is_reproducible_per_seed(hf_teacher) -> None:
    requests = varied_requests(4, max_tokens=16, temperature=1.0)
    first = [r.text for r in hf_teacher.generate(requests)]
    again = [r.text for r in hf_teacher.generate(requests)]
    reseeded = [r.text for r in hf_teacher.generate([replace(r, seed=r.seed + 100) for r in requests])]
    assert first == again
    assert first != reseeded


def test_hf_max_tokens_and_stop(hf_teacher) -> None:
    long, short = hf_teacher.generate(
        [GenerationRequest(messages=user(NILE), max_tokens=n, temperature=0.0) for n in (24, 5)]
    )
    assert len(short.text) == 5 and long.text.startswith(short.text) and len(long.text) > 5
    stop = long.text[8:10]
    cut = long.text.index(stop)
    (stopped,) = hf_teacher.generate(
        [GenerationRequest(messages=user(NILE), max_tokens=24, temperature=0.0, stop=[stop])]
    )
    assert stopped.text == long.text[:cut]


def test_hf_json_schema_is_enforced(hf_teacher) -> None:
    pytest.importorskip("xgrammar")
    assert hf_teacher.supports_json_schema
    requests = varied_requests(5, max_tokens=40, temperature=1.0, json_schema=VERDICT_SCHEMA)
    requests.append(GenerationRequest(messages=user("free text"), max_tokens=6, temperature=0.0))
    results = hf_teacher.generate(requests)
    for r in results[:5]:
        assert_valid_json(r.text, VERDICT_SCHEMA)
    # The unconstrained request in the same call gets no grammar: same text as when sent alone.
    assert results[5] == hf_teacher.generate(requests[5:])[0]
    assert not results[5].text.startswith("{")


def test_hf_without_xgrammar_generates_unconstrained(hf_teacher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_teacher, "supports_json_schema", False)
    plain = GenerationRequest(messages=user("hi"), max_tokens=8, temperature=0.0)
    (r,) = hf_teacher.generate([replace(plain, json_schema=VERDICT_SCHEMA)])
    assert r == hf_teacher.generate([plain])[0]  # the schema is ignored, nothing crashes
    assert not r.text.startswith("{")


def test_hf_plain_transcript_without_chat_template(tmp_path: Path) -> None:
    teacher = load_backend(TeacherConfig(backend="transformers", model=str(build_tiny_lm(tmp_path, None))))
    messages = user("What flows north?", system="Be brief.")
    assert teacher.prompt(messages) == "system: Be brief.\nuser: What flows north?\nassistant:"
    (r,) = teacher.generate([GenerationRequest(messages=messages, max_tokens=4, temperature=0.0)])
    assert r.error is None and len(r.text) == 4


@pytest.mark.parametrize(
    "model, message",
    [
        ("/nonexistent/teacher-folder", "model folder not found"),
        ("distillqa-tests/no-such-model", "not found locally and the hub is unreachable"),
    ],
)
def test_hf_missing_model_is_a_clear_error(model: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DistillqaError, match=message):
        load_backend(TeacherConfig(backend="transformers", model=model))


def test_hf_reads_the_bundled_gguf_without_llama_cpp() -> None:
    """The fallback a llama.cpp crash message suggests: the same SmolLM2, dequantised by transformers."""
    pytest.importorskip("gguf")
    teacher = load_backend(TeacherConfig(backend="transformers"))
    try:
        assert teacher.name == "transformers:SmolLM2-135M-Instruct.Q4_1.gguf"
        (r,) = teacher.generate([GenerationRequest(messages=user("The capital of France is"), max_tokens=6, temperature=0.0)])
    finally:
        teacher.close()
    assert r.error is None and r.text.strip()


def test_hf_4bit_needs_cuda(tiny_lm: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU refusal")
    with pytest.raises(DistillqaError, match="load_in_4bit needs a CUDA GPU"):
        load_teacher(TeacherConfig(backend="transformers", model=str(tiny_lm), load_in_4bit=True))  # via the worker


# ---------------------------------------------------------------------------------------------
# llama.cpp with the bundled SmolLM2-135M-Instruct GGUF
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_teacher() -> Iterator:
    pytest.importorskip("llama_cpp")
    teacher = load_teacher(TeacherConfig(backend="llamacpp"))
    yield teacher
    teacher.close()


def test_llamacpp_chat_completion(llama_teacher) -> None:
    assert llama_teacher.name == "llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf"
    (r,) = llama_teacher.generate(
        [GenerationRequest(messages=user(f"{NILE}\n\nWhich sea does the Nile flow into?"), max_tokens=24, temperature=0)]
    )
    assert r.error is None and r.text.strip()


@pytest.mark.slow
def test_llamacpp_json_schema_output_validates(llama_teacher) -> None:
    prompt = f"Text: {NILE}\nWrite one question about the text and its answer as JSON."
    qa, verdict = llama_teacher.generate(
        [
            GenerationRequest(messages=user(prompt), json_schema=QA_SCHEMA, max_tokens=120, temperature=0.3, seed=1),
            GenerationRequest(
                messages=user(f"{NILE}\nIs 'the Nile flows south' supported by the text?"),
                json_schema=VERDICT_SCHEMA,
                max_tokens=40,
                temperature=0.3,
                seed=1,
            ),
        ]
    )
    assert assert_valid_json(qa.text, QA_SCHEMA)["question"].strip()
    assert_valid_json(verdict.text, VERDICT_SCHEMA)


def test_llamacpp_same_seed_same_text_whatever_ran_before(llama_teacher) -> None:
    """Prompts sharing a prefix of different lengths: the prompt cache must not change the text."""
    def req(seed: int, topic: str) -> GenerationRequest:
        prompt = f"Write a question about: {NILE} {topic}"
        return GenerationRequest(messages=user(prompt), max_tokens=24, temperature=0.9, seed=seed)

    reqs = [req(seed, topic) for seed in (1, 2) for topic in ("Its delta.", "Its length.", "Egypt and Sudan.")]
    forward = [r.text for r in llama_teacher.generate(reqs)]
    backward = [r.text for r in llama_teacher.generate(reqs[::-1])][::-1]
    alone = [llama_teacher.generate([r])[0].text for r in reqs[2:4]]
    assert forward == backward and alone == forward[2:4]
    assert len(set(forward)) > 1


def test_llamacpp_loads_without_extra_buffer_types() -> None:
    """The AMX crash guard: llama.cpp gets use_extra_bufts = false unless teacher.weight_repacking."""
    pytest.importorskip("llama_cpp")
    from distillqa.teacher.llamacpp import LlamaCppTeacher

    for repack in (False, True):
        teacher = LlamaCppTeacher(TeacherConfig(backend="llamacpp", weight_repacking=repack))
        try:
            assert teacher._llm.model_params.use_extra_bufts is repack
        finally:
            teacher.close()
    import llama_cpp.llama_cpp as native

    assert native.llama_model_default_params().use_extra_bufts  # the library's default is left alone


def test_llamacpp_prompt_longer_than_context_is_an_error_result() -> None:
    pytest.importorskip("llama_cpp")
    teacher = load_teacher(TeacherConfig(backend="llamacpp", n_ctx=256))
    try:
        too_long, fine = teacher.generate(
            [
                GenerationRequest(messages=user(NILE * 40), max_tokens=8),
                GenerationRequest(messages=user("Hello"), max_tokens=8, temperature=0.0),
            ]
        )
    finally:
        teacher.close()
    assert too_long.text == "" and too_long.error and "context" in too_long.error
    assert fine.error is None and fine.text


@pytest.mark.parametrize("kind", ["missing", "not-gguf", "truncated"])
def test_llamacpp_bad_file_is_a_clear_error(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    path = tmp_path / f"{kind}.gguf"
    if kind == "not-gguf":
        path.write_text("this is a text file, not a model\n")
    elif kind == "truncated":
        with open(bundled_teacher_gguf(), "rb") as f:
            path.write_bytes(f.read(2 << 20))  # valid header, tensor data cut off
    with pytest.raises(DistillqaError) as info:
        load_teacher(TeacherConfig(backend="llamacpp", model=str(path)))
    message = str(info.value)
    assert path.name in message and "\n" not in message


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP: a real llama_cpp.server, and a scripted fake server for failures
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_servers(folder: Path, n: int, *args: str) -> Iterator[list[tuple[str, subprocess.Popen, Path]]]:
    """n llama_cpp.server processes with the bundled GGUF on free ports, started together; yields
    (base_url, process, log path) for each once all answer, and stops them after."""
    pytest.importorskip("llama_cpp.server.app")
    servers = []
    try:
        for i in range(n):
            port, log_path = free_port(), folder / f"server-{i}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_teacher_gguf()),
                     "--host", "127.0.0.1", "--port", str(port), *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            servers.append((f"http://127.0.0.1:{port}/v1", proc, log_path))
        deadline = time.monotonic() + 120
        for base_url, proc, log_path in servers:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start in 120 s: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield servers
    finally:
        for _, proc, _ in servers:
            proc.terminate()
        for _, proc, _ in servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_servers(tmp_path_factory.mktemp("llama-server"), 1, "--n_ctx", "2048") as [(base_url, _, _)]:
        yield base_url


@pytest.mark.slow
def test_http_concurrent_requests_against_llama_server(llama_server: str) -> None:
    teacher = load_teacher(TeacherConfig(backend="openai", base_url=llama_server, concurrency=3))
    try:
        assert teacher.name.startswith("openai:") and teacher.name.endswith(".gguf")  # model from /v1/models
        questions = ["Where does the Nile flow?", "Which continent is the Nile in?", "Is the Nile long?", "Name a sea."]
        results = teacher.generate(
            [GenerationRequest(messages=user(f"{NILE}\n{q}"), max_tokens=16, temperature=0.0) for q in questions]
        )
    finally:
        teacher.close()
    assert [r.error for r in results] == [None] * 4
    assert all(r.text.strip() for r in results)


@pytest.mark.slow
def test_http_json_schema_falls_back_to_llama_server_form(llama_server: str) -> None:
    teacher = load_teacher(TeacherConfig(backend="openai", base_url=llama_server, model="smollm2"))
    try:
        prompt = f"Text: {NILE}\nWrite one question about the text and its answer as JSON."
        requests = [
            GenerationRequest(messages=user(prompt), json_schema=QA_SCHEMA, max_tokens=120, temperature=0.3, seed=s)
            for s in (1, 2)
        ]
        results = teacher.generate(requests)
        assert teacher.servers[0].schema_form == "json_object"  # the standard form was rejected, the fallback kept
        results += teacher.generate(requests[:1])
    finally:
        teacher.close()
    for r in results:
        assert r.error is None
        assert_valid_json(r.text, QA_SCHEMA)
    assert results[2].text == results[0].text  # same seed, same text through the server


def test_http_requires_base_url() -> None:
    with pytest.raises(DistillqaError, match="teacher.base_url is required"):
        load_teacher(TeacherConfig(backend="openai"))


@pytest.mark.parametrize("model", ["served-name", None])
def test_http_unreachable_server_fails_fast(model: str | None) -> None:
    cfg = TeacherConfig(backend="openai", base_url=f"http://127.0.0.1:{free_port()}", model=model, max_retries=1)
    started = time.monotonic()
    with pytest.raises(DistillqaError, match=r"no teacher server answers \(http://127\.0\.0\.1:\d+/v1: cannot connect"):
        teacher = load_teacher(cfg)  # model=None asks the server for its model name here
        teacher.generate([GenerationRequest(messages=user("hi"))])
    assert time.monotonic() - started < 5


class FakeServer:
    """A local HTTP server whose behaviour is picked by the first path segment of base_url:
    ok, garbage (HTML), nochoices (JSON without choices), reject (400), slow (sleeps 1 s), busy
    (sleeps 0.1 s, counting the requests it holds at once), flaky (503 twice, then ok), down
    (always 503). A suffix ("ok-b") names another server that behaves the same. It records every
    request so tests can check what was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []  # (path, headers, body)
        self.holding: Counter[str] = Counter()  # busy: requests being answered now, per server
        self.most_held: Counter[str] = Counter()  # busy: the most at once, per server
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, dict(self.headers), body))
                name = self.path.split("/")[1]
                mode = name.partition("-")[0]
                hits = sum(1 for p, _, _ in server.requests if p == self.path)
                if mode == "garbage":
                    self.reply(200, b"<html>Gateway says hello</html>", "text/html")
                elif mode == "nochoices":
                    self.reply(200, b'{"object": "chat.completion", "choices": []}')
                elif mode == "reject":
                    self.reply(400, b'{"error": "prompt too long"}')
                elif mode == "down" or (mode == "flaky" and hits <= 2):
                    self.reply(503, b'{"error": "overloaded"}', retry_after="0")
                else:
                    if mode == "slow":
                        time.sleep(1.0)
                    elif mode == "busy":
                        server.hold(name)
                    text = f"echo: {body['messages'][-1]['content']}"
                    choice = {"message": {"role": "assistant", "content": text}}
                    self.reply(200, json.dumps({"choices": [choice]}).encode())

            def reply(self, status: int, data: bytes, ctype: str = "application/json", retry_after: str = "") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    if retry_after:
                        self.send_header("Retry-After", retry_after)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left (the slow mode)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}/v1"

    def hold(self, name: str) -> None:
        with self.lock:
            self.holding[name] += 1
            self.most_held[name] = max(self.most_held[name], self.holding[name])
        time.sleep(0.1)
        with self.lock:  # before the reply goes out: the client may send the next one at once
            self.holding[name] -= 1

    def sent_to(self, name: str) -> list[dict]:
        """The bodies of the chat requests one server got."""
        return [body for path, _, body in self.requests if path == f"/{name}/v1/chat/completions"]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


def http_teacher(base_url: str | list[str], **kw: object):
    teacher = load_teacher(TeacherConfig(backend="openai", base_url=base_url, model="m", **kw))
    teacher.backoff_s = 0.01
    return teacher


def test_http_sends_request_fields_and_api_key(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLQA_TEST_KEY", "sekret")
    teacher = http_teacher(fake_server.url("ok"), api_key_env="DISTILLQA_TEST_KEY", concurrency=4)
    requests = [
        GenerationRequest(messages=user(f"q{i}"), max_tokens=7, temperature=0.0, seed=i, stop=["\n"]) for i in range(6)
    ]
    results = teacher.generate(requests)
    teacher.close()
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(6)]  # input order kept
    path, headers, body = next(r for r in fake_server.requests if r[2]["seed"] == 0)  # sent in any order
    assert path == "/ok/v1/chat/completions" and headers["Authorization"] == "Bearer sekret"
    sent = {"model": "m", "messages": user("q0"), "max_tokens": 7, "temperature": 0.0, "seed": 0, "stop": ["\n"]}
    assert body == sent


def test_http_standard_json_schema_form_is_sent(fake_server: FakeServer) -> None:
    teacher = http_teacher(fake_server.url("ok"))
    (r,) = teacher.generate([GenerationRequest(messages=user("q"), json_schema=QA_SCHEMA)])
    teacher.close()
    assert r.error is None and teacher.servers[0].schema_form == "json_schema"
    assert fake_server.requests[0][2]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "qa", "schema": QA_SCHEMA, "strict": True},
    }


@pytest.mark.parametrize(
    "mode, message",
    [
        ("garbage", "server returned non-JSON (HTTP 200): '<html>"),
        ("nochoices", "response has no choices[0].message"),
        ("reject", 'HTTP 400: {"error": "prompt too long"}'),
    ],
)
def test_http_bad_responses_become_error_results(fake_server: FakeServer, mode: str, message: str) -> None:
    """The server answered, so it is up: its error is this request's, and the run goes on."""
    teacher = http_teacher(fake_server.url(mode), concurrency=2)
    results = teacher.generate([GenerationRequest(messages=user(f"q{i}")) for i in range(3)])
    teacher.close()
    for r in results:
        assert r.text == "" and r.error is not None and r.error.startswith(message)
    assert len(fake_server.requests) == 3  # not retried


def test_http_timeouts_stop_a_lone_server(fake_server: FakeServer) -> None:
    teacher = http_teacher(fake_server.url("slow"), timeout_s=0.2, max_retries=1)
    started = time.monotonic()
    try:
        with pytest.raises(DistillqaError, match=r"/slow/v1: no answer within teacher\.timeout_s=0\.2s \(after 2 attempts\)"):
            teacher.generate([GenerationRequest(messages=user("q"))])
    finally:
        teacher.close()
    assert time.monotonic() - started < 0.9  # two 0.2 s attempts, not the server's 1 s sleep
    assert len(fake_server.requests) == 2


def test_http_retries_5xx_then_succeeds(fake_server: FakeServer) -> None:
    teacher = http_teacher(fake_server.url("flaky"), max_retries=2)
    (r,) = teacher.generate([GenerationRequest(messages=user("q"))])
    teacher.close()
    assert r.error is None and r.text == "echo: q"
    assert len(fake_server.requests) == 3


def test_http_gives_up_after_max_retries(fake_server: FakeServer) -> None:
    teacher = http_teacher(fake_server.url("down"), max_retries=2)
    try:
        with pytest.raises(DistillqaError, match=re.escape('/down/v1: HTTP 503: {"error": "overloaded"} (after 3 attempts)')):
            teacher.generate([GenerationRequest(messages=user("q"))])
    finally:
        teacher.close()
    assert len(fake_server.requests) == 3


def test_http_lone_server_lost_mid_run_stops_the_run(fake_server: FakeServer) -> None:
    """Finished chunks are kept by the generate stage; a run of error results would be kept too."""
    teacher = http_teacher(fake_server.url("ok"), max_retries=0)
    try:
        assert teacher.generate([GenerationRequest(messages=user("q"))]) == [GenerationResult(text="echo: q")]
        fake_server.stop()
        with pytest.raises(DistillqaError, match=r"^no teacher server answers \(http://\S+/ok/v1: cannot connect"):
            teacher.generate([GenerationRequest(messages=user("q")) for _ in range(2)])
    finally:
        teacher.close()


# ---------------------------------------------------------------------------------------------
# Several OpenAI-compatible servers: spreading and failover (fake servers, then two real ones)
# ---------------------------------------------------------------------------------------------
def numbered(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(messages=user(f"q{i}"), seed=i) for i in range(n)]


def echoes(n: int) -> list[GenerationResult]:
    return [GenerationResult(text=f"echo: q{i}") for i in range(n)]


def test_fleet_config_takes_one_url_or_a_list() -> None:
    one = load_config(None, ["teacher.base_url=http://a:1/v1"])
    two = load_config(None, ["teacher.base_url=[http://a:1/v1, http://b:1/v1]"])
    assert one.teacher.base_url == "http://a:1/v1" and two.teacher.base_url == ["http://a:1/v1", "http://b:1/v1"]
    assert one.section_hash("teacher") == two.section_hash("teacher")  # transport only
    for bad, message in [("[]", "empty list"), ("[http://a:1/v1, http://a:1/v1/]", "lists a server twice")]:
        with pytest.raises(DistillqaError, match=message):
            load_config(None, [f"teacher.base_url={bad}"])


def test_fleet_spreads_requests_within_each_servers_concurrency(fake_server: FakeServer) -> None:
    teacher = http_teacher([fake_server.url("busy-a"), fake_server.url("busy-b")], concurrency=2)
    try:
        results = teacher.generate(numbered(12))
    finally:
        teacher.close()
    assert results == echoes(12)  # input order kept
    assert fake_server.most_held == {"busy-a": 2, "busy-b": 2}  # each server's own slots, all used
    sent = [len(fake_server.sent_to(name)) for name in ("busy-a", "busy-b")]
    assert sum(sent) == 12 and min(sent) >= 4 and [s.answered for s in teacher.servers] == sent


@pytest.mark.parametrize("failing, reason", [("down", "HTTP 503"), ("dead", "cannot connect"), ("slow", "no answer within")])
def test_fleet_moves_requests_off_a_failing_server(fake_server: FakeServer, failing: str, reason: str) -> None:
    bad = f"http://127.0.0.1:{free_port()}/v1" if failing == "dead" else fake_server.url(failing)
    teacher = http_teacher([bad, fake_server.url("ok")], concurrency=2, max_retries=1, timeout_s=0.3)
    try:
        results = teacher.generate(numbered(8))
    finally:
        teacher.close()
    assert results == echoes(8)  # nothing lost, input order kept
    answered = fake_server.sent_to("ok")
    assert sorted(body["seed"] for body in answered) == list(range(8))  # each request answered once
    moved = fake_server.sent_to(failing)
    assert len(moved) <= 2 * 2  # only the requests in its 2 slots, each tried twice there, then it is down
    assert all(body in answered for body in moved)  # sent on unchanged: same prompt and seed
    assert teacher.servers[0].answered == 0 and reason in teacher.servers[0].failure


def test_fleet_server_lost_mid_run_loses_nothing(fake_server: FakeServer) -> None:
    other = FakeServer()
    teacher = http_teacher([fake_server.url("busy"), other.url("busy")], concurrency=1, max_retries=1)
    results: list[GenerationResult] = []
    run = threading.Thread(target=lambda: results.extend(teacher.generate(numbered(10))))
    try:
        run.start()
        deadline = time.monotonic() + 30
        while len(other.sent_to("busy")) < 2:  # it has taken its share: now it goes away
            assert time.monotonic() < deadline
            time.sleep(0.01)
        other.stop()
        run.join(timeout=30)
    finally:
        teacher.close()
    assert results == echoes(10)
    seeds = [body["seed"] for body in fake_server.sent_to("busy") + other.sent_to("busy")]
    assert sorted(seeds) == list(range(10))  # every request answered exactly once
    assert teacher.servers[1].failure.startswith("cannot connect")


def test_fleet_down_server_rejoins_after_down_s(fake_server: FakeServer) -> None:
    teacher = http_teacher([fake_server.url("flaky"), fake_server.url("ok")], concurrency=1, max_retries=0)
    teacher.down_s = 0.5
    try:
        results = teacher.generate(numbered(1)) + teacher.generate(numbered(1))  # fails once, then skipped
        time.sleep(0.55)
        results += teacher.generate(numbered(1))  # tried again: fails again (flaky fails twice)
        time.sleep(0.55)
        results += teacher.generate(numbered(1))  # back
    finally:
        teacher.close()
    assert results == echoes(1) * 4
    assert len(fake_server.sent_to("flaky")) == 3 and teacher.servers[0].answered == 1


@pytest.mark.parametrize("model", ["m", None])
def test_fleet_with_every_server_down_stops_with_one_error(fake_server: FakeServer, model: str | None) -> None:
    down, dead = fake_server.url("down"), f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(DistillqaError) as info:
        teacher = load_teacher(TeacherConfig(backend="openai", base_url=[down, dead], model=model, max_retries=1))
        try:  # model=None asks each server for its model name first, and fails there
            teacher.generate(numbered(4))
        finally:
            teacher.close()
    message = str(info.value)
    assert message.startswith("no teacher server answers (") and "\n" not in message
    assert f"{down}: HTTP 50" in message and f"{dead}: cannot connect" in message
    assert time.monotonic() - started < 5


def chat_posts(log_path: Path) -> int:
    """Chat completions a llama_cpp.server answered, from its access log."""
    return log_path.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')


def test_fleet_of_llama_servers_survives_a_killed_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The generate stage on two real llama.cpp servers, one SIGKILLed mid-run: requests are
    spread over both, none is lost, and every chunk is written exactly once."""
    texts = [p for doc in (HARBOUR, ORCHARD) for p in doc.split("\n\n")][:3]
    chunks = [{"chunk_id": f"c{i}", "doc_id": "d", "index": i, "text": t} for i, t in enumerate(texts)]
    # n_threads_batch: the server's default (every core) makes each prompt cost seconds on a busy machine
    args = ("--n_ctx", "512", "--n_threads", "1", "--n_threads_batch", "1", "--verbose", "False")
    with llama_servers(tmp_path, 2, *args) as servers:
        (url_a, _, log_a), (url_b, proc_b, log_b) = servers
        # One request each (the least busy server gets the next), which also pays each server's
        # slow first decode before the timed part.
        teacher = load_teacher(TeacherConfig(backend="openai", base_url=[url_a, url_b], concurrency=1))
        try:
            warm = teacher.generate([GenerationRequest(messages=user(NILE), max_tokens=2) for _ in range(2)])
        finally:
            teacher.close()
        assert [r.error for r in warm] == [None, None] and [chat_posts(log_a), chat_posts(log_b)] == [1, 1]

        cfg = Config.model_validate({
            "teacher": {"backend": "openai", "base_url": [url_a, url_b], "concurrency": 2, "max_retries": 1},
            "generate": {"mode": "answer-first", "answers_per_chunk": 2, "retries": 0, "question_max_tokens": 8,
                         "wave_requests": 64},
        })
        run = Run(tmp_path / "run", quiet=True)
        run.root.mkdir()
        write_jsonl(run.path(CHUNKS), chunks)
        run.save_config(cfg)
        done = threading.Event()

        def kill_b_mid_run() -> None:
            while chat_posts(log_b) < 2 and not done.is_set():  # its first answer: it holds the next two
                time.sleep(0.02)
            proc_b.kill()  # SIGKILL: its requests in flight get no answer

        killer = threading.Thread(target=kill_b_mid_run)
        killer.start()
        try:
            with caplog.at_level(logging.WARNING, logger="distillqa"):
                summary = run.run_stage(STAGE_BY_NAME["generate"], cfg)
        finally:
            done.set()
            killer.join()
        served = [chat_posts(log_a) - 1, chat_posts(log_b) - 1]
    assert proc_b.returncode == -signal.SIGKILL
    assert f"teacher server {url_b} is down" in caplog.text  # and its requests went to the other
    records = read_jsonl(run.path(GENERATIONS))
    assert [r["chunk_id"] for r in records] == [c["chunk_id"] for c in chunks] and summary["chunks_generated"] == 3
    assert len(read_jsonl(run.path(TEACHER_CACHE))) == 3  # each chunk cached once
    attempts = [a for r in records for a in r["attempts"]]
    assert [a["error"] for a in attempts if (a["error"] or "").startswith("backend")] == []  # every request answered
    assert all(a["raw"] for a in attempts)
    for r in records:  # one attempt per task (retries=0): none recorded twice
        assert len({a["seed"] for a in r["attempts"]}) == len(r["attempts"]) > 0
    assert served[0] > 0 and served[1] >= 1 and sum(served) >= len(attempts)
