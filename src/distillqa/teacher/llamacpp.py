"""llama.cpp teacher: a GGUF file run in-process through llama-cpp-python.

This is the offline default (the bundled SmolLM2-135M-Instruct). llama.cpp holds one sequence
here, so requests run one after another. JSON schemas become a GBNF grammar inside llama.cpp
(`response_format={"type": "json_object", "schema": ...}`), so every sampled token keeps the
output valid against the schema.

Two guards, both measured on real machines (docs/benchmarks.md):
- Weight repacking ("extra buffer types") is off unless `teacher.weight_repacking`: a natively
  built llama.cpp repacks weights for AMX on Intel Xeons that have it and then segfaults in
  `ggml_backend_amx_mul_mat` (ggml-org/llama.cpp#20824). Whatever build pip gave the user, the
  model is loaded with `use_extra_bufts = false`.
- The prompt cache is reused only at fixed block boundaries. llama-cpp-python reuses the KV cache
  of the longest common token prefix with the *previous* prompt and evaluates the rest as one
  batch; a batch of another shape gives slightly different logits, so the same request and seed
  gave different text depending on what ran before. `DeterministicLlama` evaluates every prompt
  in blocks of `PROMPT_BLOCK` tokens at fixed positions and reuses the cache only up to a block
  boundary. Guaranteed: the same request and seed give the same text with the same llama.cpp
  build, model and thread count, whatever ran before; the shared instruction and examples are
  still evaluated once, not per request (evaluating every prompt whole cost 4x the time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distillqa.config import TeacherConfig
from distillqa.errors import DistillqaError
from distillqa.models import bundled_teacher_gguf
from distillqa.teacher.base import GenerationRequest, GenerationResult, error_line

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Fail with a one-line message before llama.cpp does, since its own errors are vague."""
    if not path.exists():
        raise DistillqaError(f"{path}: GGUF file not found: check teacher.model")
    if not path.is_file():
        raise DistillqaError(f"{path}: not a file: teacher.model must point to a .gguf file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise DistillqaError(f"{path}: not a GGUF file (wrong header): give a .gguf model or use another backend")


@contextmanager
def model_params_patch(weight_repacking: bool) -> Iterator[None]:
    """While a `Llama` is built, its default model params carry `use_extra_bufts`.

    `Llama.__init__` takes no such argument; it starts from `llama_model_default_params()`, which
    it looks up on the `llama_cpp.llama_cpp` module, so that function is wrapped for the call.
    """
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = weight_repacking
        return p

    native.llama_model_default_params = params
    try:
        yield
    finally:
        native.llama_model_default_params = original


# Prompt evaluation batch and prompt-cache reuse granularity (tokens); see DeterministicLlama.
# Measured with benchmarks/teacher_cpu.py (answer-first requests, 1 thread): 8 ~2.5 requests/s,
# 32 ~1.9, 128 ~1.3, whole prompts 0.6; llama-cpp-python's own unbounded reuse ~3.1.
PROMPT_BLOCK = 8


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _llama_class():
    """`DeterministicLlama`, defined on first use since llama-cpp-python is an optional dependency."""
    from llama_cpp import Llama

    class DeterministicLlama(Llama):
        """A `Llama` whose output depends only on the request, not on what ran before.

        Prompts are evaluated in blocks of `PROMPT_BLOCK` tokens at fixed positions (n_batch), and
        the KV cache of a previous prompt is reused only up to a block boundary, so every block
        is computed in the same batch shape whether it was cached or not.
        """

        def generate(self, tokens, *args, **kwargs):
            tokens = list(tokens)
            shared = min(common_prefix_len(self._input_ids.tolist(), tokens), len(tokens) - 1)
            keep = shared // PROMPT_BLOCK * PROMPT_BLOCK
            if keep:
                self.n_tokens = keep  # Llama finds exactly this prefix and evaluates the rest
            else:
                self.reset()
            return super().generate(tokens, *args, **kwargs)

    return DeterministicLlama


class LlamaCppTeacher:
    """Runs chat completions on a local GGUF model; same request and seed give the same text."""

    supports_json_schema = True

    def __init__(self, cfg: TeacherConfig):
        try:
            llama_class = _llama_class()
        except ImportError:
            raise DistillqaError(
                "the llamacpp teacher needs llama-cpp-python: pip install 'distillqa[llama]'"
            ) from None
        self.path = Path(cfg.model).expanduser() if cfg.model else bundled_teacher_gguf()
        check_gguf(self.path)
        self.name = f"llamacpp:{self.path.name}"
        kwargs: dict = {"n_ctx": cfg.n_ctx, "n_gpu_layers": cfg.n_gpu_layers, "n_batch": PROMPT_BLOCK, "verbose": False}
        # Prompt processing and generation use the same thread count: llama.cpp's default of all
        # cores for the batch step made requests 10x slower when another process shares the CPU.
        threads = cfg.n_threads or max(1, (os.cpu_count() or 2) // 2)
        kwargs.update(n_threads=threads, n_threads_batch=threads)
        try:
            # verbose=False silences llama.cpp's load log and later keeps only its error lines.
            with model_params_patch(cfg.weight_repacking):
                self._llm = llama_class(model_path=str(self.path), **kwargs)
        except (ValueError, RuntimeError) as e:
            raise DistillqaError(
                f"{self.path}: llama.cpp cannot load this GGUF file (truncated or corrupt?): "
                f"re-download it ({error_line(e)})"
            ) from None

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [self._one(r) for r in requests]

    def _one(self, req: GenerationRequest) -> GenerationResult:
        response_format = (
            {"type": "json_object", "schema": req.json_schema} if req.json_schema is not None else None
        )
        try:
            out = self._llm.create_chat_completion(
                messages=req.messages,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                seed=req.seed,
                stop=list(req.stop) or None,
                response_format=response_format,
            )
        except (ValueError, RuntimeError) as e:  # e.g. the prompt is longer than n_ctx
            return GenerationResult(text="", error=f"llama.cpp: {error_line(e)}")
        return GenerationResult(text=out["choices"][0]["message"]["content"] or "")

    def close(self) -> None:
        self._llm.close()
