"""The one small interface every teacher backend implements.

A backend takes a batch of chat requests and returns one result per request, in order. Batching
is the backend's business (transformers pads a batch, HTTP sends N concurrent requests, llama.cpp
loops), so the generation stage can hand over all pending chunks at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}]
    json_schema: dict | None = None  # constrain the output to this schema where the backend can
    max_tokens: int = 384
    temperature: float = 0.3
    seed: int = 0
    stop: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GenerationResult:
    text: str  # raw output, kept verbatim in generations.jsonl
    error: str | None = None  # set when the backend failed for this request (timeout, HTTP error)


class Teacher(Protocol):
    name: str  # e.g. "llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf", recorded with every pair
    supports_json_schema: bool

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]: ...

    def close(self) -> None: ...


def error_line(exc: BaseException) -> str:
    """An exception as one short line, for `GenerationResult.error` and `DistillqaError` messages."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
