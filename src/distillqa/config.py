"""One pydantic config for the whole pipeline.

A run is described by a YAML or TOML file (optional) plus CLI overrides of the form
``section.key=value``. The effective config is saved in the run folder, and each stage's
fingerprint hashes only the sections it depends on, so changing a training setting does not
rerun generation.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillqa.errors import DistillqaError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    max_file_mb: float = Field(100.0, gt=0, description="Refuse input files larger than this.")
    pdf_password: str | None = Field(None, description="Password for encrypted PDFs.")
    skip_bad: bool = Field(False, description="Skip unreadable files instead of stopping.")
    header_footer_min_fraction: float = Field(
        0.5, gt=0, le=1, description="A line repeated on this share of pages is a header/footer."
    )


class ChunkConfig(_Section):
    tokenizer: str = Field(
        "teacher",
        description="'teacher' (the teacher's own tokenizer), a HF tokenizer id/folder, or a .gguf file.",
    )
    max_tokens: int = Field(
        384, ge=32, description="Chunk size. Small by default: the bundled teacher reads short passages best."
    )
    overlap_tokens: int = Field(64, ge=0)

    @model_validator(mode="after")
    def _overlap_smaller_than_chunk(self) -> "ChunkConfig":
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class TeacherConfig(_Section):
    backend: Literal["llamacpp", "transformers", "openai"] = "llamacpp"
    model: str | None = Field(
        None, description="GGUF path, HF hub id or folder, or served model name. None = bundled SmolLM2."
    )
    isolate: bool = Field(
        True,
        description="Run the llamacpp/transformers backend in a worker process, so a native crash ends in one clear error.",
    )
    # llama.cpp
    n_ctx: int = Field(2048, ge=256)
    n_threads: int | None = Field(None, description="llama.cpp threads. None = half the cores.")
    n_gpu_layers: int = 0
    weight_repacking: bool = Field(
        False,
        description="llama.cpp's extra buffer types (weights repacked for AMX/AVX kernels). Off: its AMX path segfaults on Sapphire Rapids (llama.cpp#20824).",
    )
    # transformers
    load_in_4bit: bool = False
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    batch_size: int = Field(16, ge=1)
    # OpenAI-compatible HTTP
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)
    # sampling
    temperature: float = Field(0.3, ge=0)
    max_new_tokens: int = Field(384, ge=8)
    seed: int = 0


class GenerateConfig(_Section):
    mode: Literal["qa", "answer-first", "both"] = "answer-first"
    pairs_per_chunk: int = Field(6, ge=1, le=20, description="qa mode: pairs asked per chunk.")
    answers_per_chunk: int = Field(
        10, ge=1, le=50, description="answer-first mode: candidate answers per chunk."
    )
    retries: int = Field(
        2, ge=0, description="Extra attempts (new seed) when output does not parse or its question is rejected."
    )
    cloze_fallback: bool = Field(True, description="Rule-based cloze-to-question when the teacher fails.")
    max_chunks: int | None = Field(None, ge=1, description="Only the first N chunks (quick trials).")
    question_max_tokens: int = Field(40, ge=8, description="answer-first mode: token budget for one question.")
    question_json: bool = Field(
        False,
        description='answer-first mode: ask for {"question": ...} under a JSON schema instead of one plain line.',
    )
    wave_requests: int | None = Field(
        None, ge=1, description="Requests handed to the teacher at once. None = 2 x max(teacher.batch_size, teacher.concurrency)."
    )


class DatasetConfig(_Section):
    fuzzy_threshold: float = Field(90.0, ge=0, le=100)
    max_answer_words: int = Field(12, ge=1)
    min_question_words: int = Field(3, ge=1)
    max_question_words: int = Field(40, ge=1)
    near_duplicate_threshold: float = Field(92.0, ge=0, le=100)
    copied_span_words: int = Field(
        8, ge=3, description="Drop a question copying this many consecutive passage words from outside the answer's sentence."
    )
    context_chars: int = Field(
        1000, ge=100, description="Training passage around an answer; ~250 tokens fits a 384 window."
    )
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    span_clozes: bool = Field(
        True,
        description="Add rule-based questions for every span of every sentence (route span-cloze), so the student must read the question.",
    )
    seed: int = 42


class TrainConfig(_Section):
    student: str | None = Field(None, description="HF id or folder of an encoder. None = bundled MiniLM.")
    # Measured (docs/benchmarks.md): the seed's 2e-5 barely moves the fresh span head in the few
    # hundred steps a document gives; 2e-4 for 3 epochs learns the ~1,000 span-cloze pairs of an
    # article (on Geology's human questions, F1 16.8 against 8.6 at 3e-4 for 10 epochs on 216).
    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    weight_decay: float = 0.01
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_length: int = Field(384, ge=64)
    doc_stride: int = Field(128, ge=16)
    max_answer_length: int = Field(30, ge=1)
    seed: int = 42


class RetrievalConfig(_Section):
    passage_tokens: int = Field(200, ge=32, description="Passage size for the index (reader-sized).")
    passage_overlap_tokens: int = Field(50, ge=0)
    embedder: str | None = Field(None, description="sentence-transformers model. None = bundled MiniLM.")
    top_k: int = Field(5, ge=1, le=50, description="Fewest retrieved passages the reader reads per question.")
    passages_per_answer: int = Field(
        3, ge=1, le=10, description="`ask --top-k K` reads max(top_k, K × this) retrieved passages."
    )
    candidates: int = Field(100, ge=1, description="How deep the BM25 and dense rankings go into the fusion.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant: score = sum of 1/(rrf_k + rank).")
    onnx_query_encoder: bool = Field(
        True, description="Export the embedder to ONNX at index time; questions are then embedded ~4x faster."
    )

    @model_validator(mode="after")
    def _overlap_smaller_than_passage(self) -> "RetrievalConfig":
        if self.passage_overlap_tokens >= self.passage_tokens:
            raise ValueError("passage_overlap_tokens must be smaller than passage_tokens")
        return self


class Config(_Section):
    ingest: IngestConfig = IngestConfig()
    chunk: ChunkConfig = ChunkConfig()
    teacher: TeacherConfig = TeacherConfig()
    generate: GenerateConfig = GenerateConfig()
    dataset: DatasetConfig = DatasetConfig()
    train: TrainConfig = TrainConfig()
    retrieval: RetrievalConfig = RetrievalConfig()

    def section_hash(self, *names: str) -> str:
        """A stable digest of the named sections ("train") or fields ("teacher.model"): the part
        of the config a stage depends on."""
        import hashlib

        data = {}
        for name in names:
            section, _, field = name.partition(".")
            dumped = getattr(self, section).model_dump(mode="json")
            data[name] = dumped[field] if field else dumped
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _parse_value(raw: str) -> Any:
    """CLI override values are YAML scalars, so `3`, `true`, `null` and `2e-5` get their types."""
    return yaml.safe_load(raw) if raw != "" else ""


def load_config(path: Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> Config:
    """Load a YAML/TOML config file (or start from `base`), apply `a.b=value` overrides, validate."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        if not path.is_file():
            raise DistillqaError(f"{path}: config file not found")
        text = path.read_text(encoding="utf-8")
        try:
            loaded = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
            raise DistillqaError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {e}".splitlines()[0]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise DistillqaError(f"{path}: the config must be a mapping of sections")
        data = _merge(data, loaded or {})
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise DistillqaError(f"bad override {item!r}: use section.key=value, e.g. train.epochs=2")
        section, _, field = key.partition(".")
        data.setdefault(section, {})[field] = _parse_value(raw)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise DistillqaError(f"invalid config at {where}: {err['msg']}") from None


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
