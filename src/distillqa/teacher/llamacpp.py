"""llama.cpp teacher: a GGUF file run in-process through llama-cpp-python.

This is the offline default (the bundled SmolLM2-135M-Instruct). llama.cpp holds one sequence
here, so requests run one after another. JSON schemas become a GBNF grammar inside llama.cpp
(`response_format={"type": "json_object", "schema": ...}`), so every sampled token keeps the
output valid against the schema.
"""

from __future__ import annotations

import os
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


class LlamaCppTeacher:
    """Runs chat completions on a local GGUF model; same request and seed give the same text."""

    supports_json_schema = True

    def __init__(self, cfg: TeacherConfig):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise DistillqaError(
                "the llamacpp teacher needs llama-cpp-python: pip install 'distillqa[llama]'"
            ) from None
        self.path = Path(cfg.model).expanduser() if cfg.model else bundled_teacher_gguf()
        check_gguf(self.path)
        self.name = f"llamacpp:{self.path.name}"
        kwargs: dict = {"n_ctx": cfg.n_ctx, "n_gpu_layers": cfg.n_gpu_layers, "verbose": False}
        # Prompt processing and generation use the same thread count: llama.cpp's default of all
        # cores for the batch step made requests 10x slower when another process shares the CPU.
        threads = cfg.n_threads or max(1, (os.cpu_count() or 2) // 2)
        kwargs.update(n_threads=threads, n_threads_batch=threads)
        try:
            # verbose=False silences llama.cpp's load log and later keeps only its error lines.
            self._llm = Llama(model_path=str(self.path), **kwargs)
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
