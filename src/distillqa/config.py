"""One pydantic config for the whole pipeline.

A run is described by a YAML or TOML file (optional) plus CLI overrides of the form
``section.key=value``. The effective config is saved in the run folder, and each stage's
fingerprint hashes only the sections it depends on, so changing a training setting does not
rerun generation; within a section, settings marked NOT_HASHED (speed, transport, query time)
are left out, so changing them reruns nothing.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from distillqa.errors import DistillqaError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A setting marked `json_schema_extra=NOT_HASHED` is left out of the fingerprints of the stages
# that read its section (see `Config.section_hash`): it changes how fast or over which transport a
# stage runs, or it is read when a question is asked, not what a stage writes. Changing it never
# reruns a finished stage.
NOT_HASHED: dict[str, Any] = {"hash": False}


def is_hashed(field: FieldInfo) -> bool:
    """False for a setting marked NOT_HASHED."""
    extra = field.json_schema_extra
    return not (isinstance(extra, dict) and extra.get("hash") is False)


class IngestConfig(_Section):
    max_file_mb: float = Field(100.0, gt=0, description="Refuse input files larger than this.")
    # exclude: a secret is never written to the run folder (config.yaml, manifest.json)
    pdf_password: str | None = Field(
        None, description="Password for encrypted PDFs. Never saved: give it again (or DISTILLQA_PDF_PASSWORD) when ingest reruns.", exclude=True
    )
    skip_bad: bool = Field(False, description="Skip unreadable files instead of stopping.")
    header_footer_min_fraction: float = Field(
        0.5, gt=0, le=1, description="A line repeated on this share of pages is a header/footer."
    )
    workers: int | None = Field(
        None,
        ge=0,
        description="Processes reading files. None or 0 = one per usable core for many files (256+ each), 1 = this process only.",
        json_schema_extra=NOT_HASHED,  # speed only: the same documents in the same order
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
    workers: int | None = Field(
        None,
        ge=0,
        description="Processes chunking documents, each with its own tokenizer. None or 0 = one per usable core for many documents (256+ each), 1 = this process only.",
        json_schema_extra=NOT_HASHED,  # speed only: the same chunks in the same order
    )

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
        json_schema_extra=NOT_HASHED,
    )
    # llama.cpp
    n_ctx: int = Field(2048, ge=256)
    n_threads: int | None = Field(
        None,
        description="llama.cpp threads. None = half the cores. Speed only: may change the exact sampled text, not its distribution, so generation resumes across it.",
        json_schema_extra=NOT_HASHED,
    )
    n_gpu_layers: int = Field(
        0,
        description="llama.cpp layers on the GPU. Speed only: may change the exact sampled text, not its distribution.",
        json_schema_extra=NOT_HASHED,
    )
    weight_repacking: bool = Field(
        False,
        description="llama.cpp's extra buffer types (weights repacked for AMX/AVX kernels). Off: its AMX path segfaults on Sapphire Rapids (llama.cpp#20824). Speed only: may change the exact sampled text, not its distribution.",
        json_schema_extra=NOT_HASHED,
    )
    # transformers
    load_in_4bit: bool = False
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    batch_size: int = Field(
        16,
        ge=1,
        description="transformers requests per batch. Speed only: the batch's shape and seed change the exact sampled text, not its distribution.",
        json_schema_extra=NOT_HASHED,
    )
    # OpenAI-compatible HTTP
    base_url: str | list[str] | None = Field(
        None,
        description="Server URL, or a list of servers: each request goes to the least busy one that answers, and a server that stops answering hands its requests to the others. Transport only: the teacher is backend + model, so every server must serve the same model.",
        json_schema_extra=NOT_HASHED,
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key.", json_schema_extra=NOT_HASHED
    )
    concurrency: int = Field(4, ge=1, description="Requests in flight at once, per server.", json_schema_extra=NOT_HASHED)
    timeout_s: float = Field(
        120.0,
        gt=0,
        description="Seconds to wait for one answer. Changes which requests fail (then retried), not what an answer says.",
        json_schema_extra=NOT_HASHED,
    )
    max_retries: int = Field(
        3,
        ge=0,
        description="Retries of a request after a transient failure (connection, 429, 5xx).",
        json_schema_extra=NOT_HASHED,
    )
    # sampling
    temperature: float = Field(0.3, ge=0)
    max_new_tokens: int = Field(384, ge=8)
    seed: int = 0

    @property
    def servers(self) -> list[str]:
        """`base_url` as a list: none, one server, or several."""
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url or [])

    @model_validator(mode="after")
    def _distinct_servers(self) -> "TeacherConfig":
        urls = self.servers
        if isinstance(self.base_url, list) and not urls:
            raise ValueError("base_url is an empty list: give one server URL or several")
        if len({u.rstrip("/") for u in urls}) < len(urls):
            raise ValueError("base_url lists a server twice: raise teacher.concurrency instead")
        return self


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
    max_chunks: int | None = Field(
        None,
        ge=1,
        description="Only the first N chunks (quick trials). Raising it generates only the new chunks (the teacher cache keeps the rest).",
        json_schema_extra=NOT_HASHED,  # which chunks, not what is written for one: not in TEACHER_SETTINGS
    )
    question_max_tokens: int = Field(40, ge=8, description="answer-first mode: token budget for one question.")
    question_json: bool = Field(
        False,
        description='answer-first mode: ask for {"question": ...} under a JSON schema instead of one plain line.',
    )
    wave_requests: int | None = Field(
        None,
        ge=1,
        description="Requests handed to the teacher at once. None = 2 x max(teacher.batch_size, teacher.concurrency x servers). Speed only: may change the exact sampled text (batch shapes), not its distribution.",
        json_schema_extra=NOT_HASHED,
    )


# What the teacher writes for one chunk depends on these settings and on nothing else but the
# chunk's text and the prompts: the generate stage's fingerprint and its per-chunk cache key.
# questions: the limits of answer candidates and of the cloze fallback (span clozes: build-dataset's).
TEACHER_SETTINGS = (
    "teacher",
    "generate",
    "questions.max_answer_words",
    "questions.max_question_words",
    "questions.min_sentence_words",
)


class QuestionsConfig(_Section):
    """Limits of rule-based question making (`distillqa.questions`): answer candidates and cloze
    fallback questions (generate), span clozes (build-dataset). At most the dataset filter's limits."""

    max_answer_words: int = Field(
        8,
        ge=1,
        description="Longest answer the rules pick (answer candidates, span clozes) and the qa prompt asks for. At most dataset.max_answer_words.",
    )
    max_question_words: int = Field(
        30, ge=3, description="Longest rule-written (cloze) question. At most dataset.max_question_words."
    )
    min_sentence_words: int = Field(
        5, ge=1, description="Shorter sentences (headings, captions) give no answer candidates or span clozes."
    )
    span_answers: Literal["all", "phrases", "words"] = Field(
        "all",
        description="Span clozes ask, besides names, dates and numbers, for noun phrases ('phrases'), every content word ('words'), or both, with the parts of joined phrases ('all').",
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
        500, ge=100, description="Training passage around an answer; ~125 tokens fits a 192-token window with the question."
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
    # Measured (docs/benchmarks.md): 192-token windows train ~40% faster than 384 and read people's
    # questions as well; the bundled MiniLM was itself trained on 128-token inputs.
    max_length: int = Field(192, ge=64, description="Tokens per reader window (question + passage), in training and reading.")
    doc_stride: int = Field(64, ge=16, description="Tokens shared by consecutive windows of a long passage.")
    max_answer_length: int = Field(30, ge=1)
    eval_batch_size: int = Field(
        32,
        ge=1,
        description="Questions per batch and windows per forward pass when scoring (each epoch, evaluate).",
        json_schema_extra=NOT_HASHED,  # speed only: scores do not depend on the batch
    )
    seed: int = 42


class ExportConfig(_Section):
    """`distillqa export` (a stage of `run`, after train): the student as ONNX for onnxruntime."""

    onnx: bool = Field(
        True,
        description="Export the trained student to ONNX (RUN/student_onnx; ~5 s for MiniLM): ask, serve and evaluate read with the fastest export present.",
    )
    quantize: Literal["int8", "none"] = Field(
        "int8", description="Also write a dynamically quantised int8 model: a quarter of the size, faster on a CPU."
    )


class RetrievalConfig(_Section):
    # Measured (docs/benchmarks.md): a passage that fits one 192-token reader window with its
    # question reads better than a 200-token one cut in two windows (devset end to end +2 F1).
    passage_tokens: int = Field(128, ge=32, description="Passage size for the index: with the question, one reader window.")
    passage_overlap_tokens: int = Field(32, ge=0)
    embedder: str | None = Field(None, description="sentence-transformers model. None = bundled MiniLM.")
    # Query time: read from the run's config.yaml when `ask`/`serve` load, not built into the index.
    top_k: int = Field(
        5,
        ge=1,
        le=50,
        description="Fewest retrieved passages the reader reads per question (query time).",
        json_schema_extra=NOT_HASHED,
    )
    passages_per_answer: int = Field(
        3,
        ge=1,
        le=10,
        description="`ask --top-k K` reads max(top_k, K × this) retrieved passages (query time).",
        json_schema_extra=NOT_HASHED,
    )
    candidates: int = Field(
        100,
        ge=1,
        description="How deep the BM25 and dense rankings go into the fusion (query time).",
        json_schema_extra=NOT_HASHED,
    )
    rrf_k: int = Field(
        60,
        ge=1,
        description="Reciprocal rank fusion constant: score = sum of 1/(rrf_k + rank) (query time).",
        json_schema_extra=NOT_HASHED,
    )
    onnx_query_encoder: bool = Field(
        True, description="Export the embedder to ONNX at index time; questions are then embedded ~4x faster."
    )
    # Measured (docs/benchmarks.md): exact search costs ~0.08 ms per 1,000 passages on 2 cores, twice
    # the question's embedding at 100k (85 ms at 1M); the graph answers in ~2 ms at 1M, finds 97-99%
    # of the exact top 10 on real embeddings at 70k, and builds far faster than the passages embed.
    dense_index: Literal["auto", "exact", "hnsw"] = Field(
        "auto",
        description="Dense search: 'exact' = every embedding (numpy); 'hnsw' = a faiss HNSW graph (approximate, a few ms at 1M passages); 'auto' = hnsw from ann_min_passages on.",
    )
    ann_min_passages: int = Field(100_000, ge=1, description="With dense_index 'auto': the passage count from which an HNSW graph is built.")
    # Measured at 1M (docs/benchmarks.md): 128 finds 95.0% of the exact top 10 in 1.3 ms, 256 98.1% in 1.9 ms.
    hnsw_ef_search: int = Field(
        256,
        ge=1,
        description="HNSW search breadth (at least the ranking's depth): higher = better recall, slower (query time).",
        json_schema_extra=NOT_HASHED,
    )

    @model_validator(mode="after")
    def _overlap_smaller_than_passage(self) -> "RetrievalConfig":
        if self.passage_overlap_tokens >= self.passage_tokens:
            raise ValueError("passage_overlap_tokens must be smaller than passage_tokens")
        return self


class AnswerConfig(_Section):
    """How an answer is chosen among the reader's candidate spans (`distillqa.student.ranking`): in
    the evaluate stage, `evaluate`, `ask` and `serve` (read from the run's config.yaml when they load)."""

    # Measured (docs/benchmarks.md): the reader's first 20 spans hold the right one far less often
    # than all it proposes (~130 per passage; 20 starts x 20 ends): ranking all of them pays most.
    n_best: int = Field(200, ge=1, le=400, description="Candidate spans per passage that the ranker chooses among.")
    reader_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Power of the reader's span probability in the score: 1 = as is, lower = trust the rules and the sentence more, 0 = ignore it.",
    )
    type_rules: bool = Field(
        True,
        description="Discount answers of the wrong type for the wh-phrase, answers made of the question's words and lone lower-case words.",
    )
    sentence_sharpness: float = Field(
        100.0,
        ge=0,
        description="Discount exp(s x (similarity - best)) for a span outside the sentence the embedder finds most similar to the question; 0 = off.",
    )
    reader_runtime: Literal["auto", "onnx-int8", "onnx", "torch"] = Field(
        "auto",
        description="What runs the student: 'auto' = the fastest export present on a CPU (int8, then fp32 ONNX), PyTorch on a GPU or when none is; PyTorch is the fallback.",
    )
    retrieval_weight: float = Field(
        1.0,
        ge=0,
        description="Question alone: each passage's answers are scaled by (fused retrieval score / best) to this power; 0 = retrieval only chooses the passages.",
    )
    calibration_min_questions: int = Field(
        30,
        ge=2,
        description="Fit the confidence (stage calibrate) only with at least this many validation questions; below, the confidence is the ranking score.",
    )
    people_correction: dict[Literal["open", "context"], tuple[float, float]] | None = Field(
        {"open": (0.163, -0.929), "context": (0.05, -0.758)},
        description=(
            "(scale, offset) per way of asking, applied to the log-odds of the confidence fitted on the run's own"
            " questions: those are far easier than people's (right 82-95% against 24-43% on the devset), so uncorrected the confidence"
            " is 30-60 points too high on people's questions. Fitted on the devset's human questions (docs/benchmarks.md,"
            " benchmarks/calibration.py); null = no correction."
        ),
        json_schema_extra=NOT_HASHED,  # read when a question is asked
    )
    not_found_below: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Below this confidence the best answer is shown as a guess: the documents do not seem to answer the question.",
        json_schema_extra=NOT_HASHED,  # read when a question is asked
    )


class ServeConfig(_Section):
    """`distillqa serve`: questions that arrive together are read as one batch; requests are
    answered only for the host names in `allowed_hosts`."""

    batch_size: int = Field(32, ge=1, le=256, description="Most questions read as one batch.", json_schema_extra=NOT_HASHED)
    batch_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="How long a batch's first question waits for others to join it; 0 = take only those already queued.",
        json_schema_extra=NOT_HASHED,
    )
    max_queue: int = Field(
        256, ge=1, description="Questions waiting past this are refused at once with 503.", json_schema_extra=NOT_HASHED
    )
    allowed_hosts: list[str] = Field(
        ["127.0.0.1", "localhost", "[::1]"],
        min_length=1,
        description=(
            "Host names the server answers to (the request's Host header; any other gets 400, so a web page cannot "
            "reach it by DNS rebinding). Serving a network or behind a proxy, add the name clients use, "
            "e.g. [localhost, qa.example.org]; '*.example.org' takes its subdomains, '*' any name. "
            "The address given to serve --host is allowed too."
        ),
        json_schema_extra=NOT_HASHED,
    )

    @model_validator(mode="after")
    def _host_names(self) -> "ServeConfig":
        """Bad names fail when the config loads, not at the server's first request
        (TrustedHostMiddleware asserts the same wildcard rule); an IPv6 address gets the brackets
        it has in a Host header, and the names are lower-cased, as the middleware compares them."""
        names = []
        for name in self.allowed_hosts:
            if name.count(":") > 1 and not name.startswith("["):
                name = f"[{name}]"
            elif ":" in name and not name.startswith("["):
                raise ValueError(f"allowed_hosts {name!r}: give the host name without a port")
            if "*" in name[1:] or (name.startswith("*") and name != "*" and not name.startswith("*.")):
                raise ValueError(f"allowed_hosts {name!r}: '*' is either alone or starts a domain, like '*.example.org'")
            names.append(name.lower())
        self.allowed_hosts = names
        return self


class FeedbackConfig(_Section):
    """Corrections people make in the web UI (`POST /feedback`, RUN/feedback.jsonl): how much the
    server keeps, and how much the train stage counts them (`distillqa.student.feedback`)."""

    weight: int = Field(
        4,
        ge=0,
        le=100,
        description="Copies of each corrected pair in the training set: a person's correction counts as much as this many generated pairs; 0 = train without them.",
    )
    max_bytes: int = Field(
        10_000_000,
        ge=1000,
        description="Most bytes RUN/feedback.jsonl may hold; past it the server refuses new feedback with 507 (export the file and remove it, or raise this).",
        json_schema_extra=NOT_HASHED,
    )


class Config(_Section):
    ingest: IngestConfig = IngestConfig()
    chunk: ChunkConfig = ChunkConfig()
    teacher: TeacherConfig = TeacherConfig()
    generate: GenerateConfig = GenerateConfig()
    questions: QuestionsConfig = QuestionsConfig()
    dataset: DatasetConfig = DatasetConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    answer: AnswerConfig = AnswerConfig()
    serve: ServeConfig = ServeConfig()
    feedback: FeedbackConfig = FeedbackConfig()

    @model_validator(mode="after")
    def _rules_within_dataset_filters(self) -> "Config":
        """Rule-made pairs must pass the dataset filter, else build-dataset silently drops them."""
        q, d = self.questions, self.dataset
        for key in ("max_answer_words", "max_question_words"):
            if getattr(q, key) > getattr(d, key):
                raise ValueError(
                    f"questions.{key} ({getattr(q, key)}) must not exceed dataset.{key} ({getattr(d, key)}), "
                    "which drops longer pairs"
                )
        return self

    def section_hash(self, *names: str) -> str:
        """A stable digest of the named sections ("train") or fields ("teacher.model"): the part
        of the config a stage depends on. A whole section leaves out its NOT_HASHED settings; a
        field named on its own ("generate.max_chunks") is always hashed."""
        import hashlib

        data = {}
        for name in names:
            section, _, field = name.partition(".")
            part = getattr(self, section)
            dumped = part.model_dump(mode="json")
            if field:
                data[name] = dumped[field]
            else:
                fields = type(part).model_fields
                data[name] = {k: v for k, v in dumped.items() if is_hashed(fields[k])}
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
        raise DistillqaError(f"invalid config{f' at {where}' if where else ''}: {err['msg']}") from None


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
