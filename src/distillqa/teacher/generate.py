"""The generate stage: the teacher proposes question/answer pairs for every chunk.

Two routes, both kept and measurable, chosen by `generate.mode`:
- "qa" (route "teacher-qa"): the teacher writes question + answer pairs for a whole chunk, as
  JSON under a schema. Good with strong teachers; small ones copy or invent.
- "answer-first" (route "answer-first"): answers are picked from the chunk by rules
  (`candidates`), the teacher only writes one question per answer, which is checked
  (`parsing.question_problem`) and retried with new seeds. When it still fails, the rule-based
  cloze translation (`cloze`, route "cloze") writes the question, so even a teacher that emits
  garbage leaves usable pairs.
- "both": each chunk goes through both routes.

Requests for many chunks are handed to the backend at once (a "wave"), so transformers can batch
and HTTP can run concurrently. Each finished chunk is appended to the teacher cache
(`teacher.cache`) at once, so a killed run resumes where it stopped, and a rerun after a
settings or document change generates only the chunks it has not seen; seeds depend only on
(chunk, route, item, attempt), so a regenerated chunk gives the same output. generations.jsonl,
one line per chunk in chunk order, is written whole when every chunk is done.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from distillqa.config import Config
from distillqa.console import console, make_progress
from distillqa.errors import DistillqaError
from distillqa.io import read_jsonl, write_json, write_jsonl
from distillqa.layout import CHUNKS, GENERATE_SUMMARY, GENERATIONS, TEACHER_CACHE, RunFolder
from distillqa.questions.candidates import Candidate, extract_candidates
from distillqa.questions.cloze import cloze_question
from distillqa.teacher.backends import load_teacher
from distillqa.teacher.base import GenerationRequest, GenerationResult, Teacher
from distillqa.teacher.cache import TeacherCache, cache_key
from distillqa.teacher.parsing import ParseError, parse_pairs, parse_question, question_problem
from distillqa.teacher.prompts import (
    EXAMPLE_QUESTIONS,
    QUESTION_SCHEMA,
    qa_messages,
    qa_schema,
    question_messages,
)
from distillqa.teacher.worker import TeacherCrashed

log = logging.getLogger("distillqa")

TEACHER_QA, ANSWER_FIRST, CLOZE = "teacher-qa", "answer-first", "cloze"
ROUTES = (TEACHER_QA, ANSWER_FIRST, CLOZE)
# Retries must differ from the first try even when teacher.temperature is 0 (greedy decoding
# with a new seed would repeat the same text), so they sample at least this warm.
RETRY_TEMPERATURE = 0.7


def request_seed(chunk_id: str, route: str, item: int, attempt: int, base_seed: int) -> int:
    """A stable per-request seed: the same chunk, route, item and attempt always get the same one."""
    digest = hashlib.sha256(f"{chunk_id}\x00{route}\x00{item}\x00{attempt}".encode()).digest()
    return (int.from_bytes(digest[:4], "big") + base_seed) % (2**31)


@dataclass
class _Task:
    """One thing asked of the teacher for a chunk, retried with new seeds until it succeeds."""

    route: str  # TEACHER_QA or ANSWER_FIRST
    item: int  # 0 for the qa route, the candidate's index for answer-first
    candidate: Candidate | None = None
    attempt: int = 0
    done: bool = False
    request: GenerationRequest | None = None


@dataclass
class ChunkJob:
    """Everything generated for one chunk: its tasks, every raw attempt, and the pairs kept."""

    chunk: dict
    cfg: Config
    as_json: bool  # the teacher can constrain output to a JSON schema
    tasks: list[_Task] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        mode = self.cfg.generate.mode
        if mode in ("qa", "both"):
            self.tasks.append(_Task(TEACHER_QA, 0))
        if mode in ("answer-first", "both"):
            candidates = extract_candidates(
                self.chunk["text"], self.cfg.generate.answers_per_chunk, limits=self.cfg.questions
            )
            self.tasks += [_Task(ANSWER_FIRST, i, c) for i, c in enumerate(candidates)]

    @property
    def finished(self) -> bool:
        return all(t.done for t in self.tasks)

    def pending(self) -> list[_Task]:
        """Tasks still waiting for an answer, each with the request for its next attempt."""
        out = []
        for task in self.tasks:
            if not task.done:
                task.request = self._request(task)
                out.append(task)
        return out

    def _request(self, task: _Task) -> GenerationRequest:
        gen, teacher = self.cfg.generate, self.cfg.teacher
        seed = request_seed(self.chunk["chunk_id"], task.route, task.item, task.attempt, teacher.seed)
        temperature = teacher.temperature if task.attempt == 0 else max(teacher.temperature, RETRY_TEMPERATURE)
        if task.route == TEACHER_QA:
            return GenerationRequest(
                messages=qa_messages(self.chunk["text"], gen.pairs_per_chunk, self.cfg.questions.max_answer_words),
                json_schema=qa_schema(gen.pairs_per_chunk) if self.as_json else None,
                max_tokens=teacher.max_new_tokens,
                temperature=temperature,
                seed=seed,
            )
        cand = task.candidate
        assert cand is not None
        use_json = self.as_json and gen.question_json
        return GenerationRequest(
            messages=question_messages(cand.sentence, cand.text, cand.kind, as_json=use_json),
            json_schema=QUESTION_SCHEMA if use_json else None,
            max_tokens=gen.question_max_tokens,
            temperature=temperature,
            seed=seed,
            stop=[] if use_json else ["\n"],
        )

    def receive(self, task: _Task, result: GenerationResult) -> None:
        """Record one raw output; keep its pairs, or schedule a retry, or give up (maybe to cloze)."""
        assert task.request is not None
        pairs, error = self._read(task, result)
        attempt = {"route": task.route, "seed": task.request.seed, "raw": result.text, "ok": error is None, "error": error}
        if task.candidate is not None:
            attempt["answer"] = task.candidate.text
        self.attempts.append(attempt)
        task.attempt += 1
        if error is None:
            self.pairs += pairs
            task.done = True
        elif task.attempt > self.cfg.generate.retries:
            task.done = True
            self._fall_back(task)

    def _read(self, task: _Task, result: GenerationResult) -> tuple[list[dict], str | None]:
        """(pairs, None) for usable output, ([], "kind: why") otherwise; kinds: backend, parse, rejected."""
        if result.error:
            return [], f"backend: {result.error}"
        try:
            if task.route == TEACHER_QA:
                pairs = [
                    {**p, "route": TEACHER_QA}
                    for p in parse_pairs(result.text)
                    if p["question"].lower() not in {q.lower() for q in EXAMPLE_QUESTIONS}
                ]
                return (pairs, None) if pairs else ([], "rejected: only copies of the prompt example")
            cand = task.candidate
            assert cand is not None
            question = parse_question(result.text)
        except ParseError as e:
            return [], f"parse: {e}"
        problem = question_problem(question, cand.text, cand.sentence, cand.kind, EXAMPLE_QUESTIONS)
        if problem:
            return [], f"rejected: {problem}"
        return [_pair(question, cand, ANSWER_FIRST)], None

    def _fall_back(self, task: _Task) -> None:
        """The teacher failed this task for good: cloze questions instead, if allowed."""
        if not self.cfg.generate.cloze_fallback:
            return
        if task.route == ANSWER_FIRST:
            candidates = [task.candidate]
        else:  # a failed qa route: cloze pairs for the chunk's best answer candidates instead
            if any(t.route == ANSWER_FIRST for t in self.tasks):
                return  # mode "both": the answer-first route already covers this chunk's candidates
            candidates = extract_candidates(self.chunk["text"], self.cfg.generate.pairs_per_chunk, limits=self.cfg.questions)
        for cand in candidates:
            assert cand is not None
            start = cand.start_in_sentence
            question = cloze_question(cand.sentence, start, start + len(cand.text), cand.kind, self.cfg.questions)
            if question:
                self.pairs.append(_pair(question, cand, CLOZE))

    def record(self, teacher_name: str) -> dict:
        """The chunk's line in generations.jsonl (format in docs/design.md)."""
        return {
            "chunk_id": self.chunk["chunk_id"],
            "mode": self.cfg.generate.mode,
            "teacher": teacher_name,
            "attempts": self.attempts,
            "pairs": self.pairs,
        }


def _pair(question: str, cand: Candidate, route: str) -> dict:
    """A pair whose answer is a verbatim span; answer_start (offset in the chunk) helps grounding."""
    return {"question": question, "answer": cand.text, "route": route, "answer_start": cand.start}


def wave_size(cfg: Config) -> int:
    """Requests per teacher call: enough to fill a batch, or every server's slots twice over."""
    servers = max(1, len(cfg.teacher.servers))  # no base_url: an in-process backend
    return cfg.generate.wave_requests or 2 * max(cfg.teacher.batch_size, cfg.teacher.concurrency * servers)


def generate_chunks(
    chunks: list[dict], teacher: Teacher, cfg: Config, on_record: Callable[[dict], None]
) -> int:
    """Generate for every chunk, handing each chunk's record to `on_record` as soon as it is done.

    Each call to the teacher carries about `wave_size(cfg)` requests: retries of chunks in flight
    first, then the first requests of new chunks. Returns the number of chunks generated.
    """
    todo: Iterator[dict] = iter(chunks)
    as_json = bool(getattr(teacher, "supports_json_schema", False))
    in_flight: list[ChunkJob] = []
    generated = 0
    limit = wave_size(cfg)
    while True:
        batch = [(job, task) for job in in_flight for task in job.pending()]
        while len(batch) < limit:
            chunk = next(todo, None)
            if chunk is None:
                break
            job = ChunkJob(chunk, cfg, as_json)
            in_flight.append(job)
            batch += [(job, task) for task in job.pending()]
        if not in_flight:
            return generated
        if batch:
            results = teacher.generate([task.request for _, task in batch])
            if len(results) != len(batch):
                raise DistillqaError(f"teacher {teacher.name} returned {len(results)} results for {len(batch)} requests")
            for (job, task), result in zip(batch, results):
                job.receive(task, result)
        for job in [j for j in in_flight if j.finished]:
            in_flight.remove(job)
            generated += 1
            on_record(job.record(teacher.name))


def summarize(records: list[dict]) -> dict:
    """Per-route counts over every line of generations.jsonl (resumed chunks included)."""
    attempts: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    pairs: Counter[str] = Counter()
    for rec in records:
        for a in rec["attempts"]:
            attempts[a["route"]] += 1
            if a["error"]:
                failures[a["route"], a["error"].split(":", 1)[0]] += 1
        for p in rec["pairs"]:
            pairs[p["route"]] += 1
    routes = {}
    for route in ROUTES:
        n = attempts[route]
        routes[route] = {
            "attempts": n,
            "parse_failures": failures[route, "parse"],
            "parse_failure_rate": round(failures[route, "parse"] / n, 4) if n else 0.0,
            "rejected": failures[route, "rejected"],
            "backend_errors": failures[route, "backend"],
            "pairs": pairs[route],
        }
    return {
        "generations": sum(attempts.values()),
        "pairs": sum(pairs.values()),
        "chunks_without_pairs": sum(1 for r in records if not r["pairs"]),
        "routes": routes,
    }


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """Generate pairs for RUN/chunks.jsonl into RUN/generations.jsonl, reusing the teacher cache."""
    run.require(CHUNKS)
    chunks = read_jsonl(run.path(CHUNKS))
    if cfg.generate.max_chunks is not None:
        chunks = chunks[: cfg.generate.max_chunks]
    if not chunks:
        raise DistillqaError(f"{run.path(CHUNKS)} has no chunks: check the documents (`distillqa chunk {run.root}` made none)")
    cache = TeacherCache(run.path(TEACHER_CACHE))
    keys = {c["chunk_id"]: cache_key(c, cfg) for c in chunks}
    todo = [c for c in chunks if keys[c["chunk_id"]] not in cache]
    reused = len(chunks) - len(todo)
    log.info("generate: %d chunks: %d reused from %s, %d new", len(chunks), reused, TEACHER_CACHE, len(todo))
    started = time.time()
    generated = 0
    if todo:
        teacher = load_teacher(cfg.teacher)
        try:
            generated = _generate_with_progress(run, chunks, todo, teacher, cfg, lambda rec: cache.add(keys[rec["chunk_id"]], rec))
        except TeacherCrashed as e:
            kept = sum(1 for key in keys.values() if key in cache)
            raise DistillqaError(crash_message(e, run, kept)) from None
        finally:
            teacher.close()
    seconds = time.time() - started
    records = [{**cache.get(keys[c["chunk_id"]]), "chunk_id": c["chunk_id"]} for c in chunks]
    write_jsonl(run.path(GENERATIONS), records)
    summary = {
        "chunks": len(chunks),
        "chunks_reused": reused,
        "chunks_generated": generated,
        "mode": cfg.generate.mode,
        "teacher": next((r["teacher"] for r in records), ""),
        "seconds": round(seconds, 2),
        "chunks_per_s": round(generated / seconds, 4) if generated and seconds > 0 else 0.0,
        **summarize(records),
    }
    _warn_about_quality(run, summary)
    write_json(run.path(GENERATE_SUMMARY), summary)
    return _flatten(summary)


def crash_message(e: TeacherCrashed, run: RunFolder, kept: int) -> str:
    """One line: which backend died of which signal, what was kept, and what to try."""
    other = "transformers" if e.backend != "transformers" else "llamacpp"
    return (
        f"{e}; {kept} finished chunks are kept in {run.path(TEACHER_CACHE)} and `distillqa generate {run.root}` "
        f"resumes; run `distillqa doctor` to check this machine, or try --set teacher.backend={other}"
    )


def _generate_with_progress(
    run: RunFolder, chunks: list[dict], todo: list[dict], teacher: Teacher, cfg: Config, keep: Callable[[dict], None]
) -> int:
    """generate_chunks over `todo` with a progress bar over all `chunks`, showing chunks/s and pairs."""
    log.info("generate: %d chunks, mode %s, teacher %s", len(todo), cfg.generate.mode, teacher.name)
    started = time.time()
    counts = {"chunks": 0, "pairs": 0}
    with make_progress(run.quiet) as progress:
        task = progress.add_task("generate", total=len(chunks), completed=len(chunks) - len(todo), status="")

        def on_record(record: dict) -> None:
            keep(record)
            counts["chunks"] += 1
            counts["pairs"] += len(record["pairs"])
            rate = counts["chunks"] / max(time.time() - started, 1e-9)
            progress.update(task, advance=1, status=f"{counts['pairs']} pairs, {rate:.2f} chunks/s")

        return generate_chunks(todo, teacher, cfg, on_record)


def _warn(run: RunFolder, message: str) -> None:
    log.warning(message)
    if not run.quiet:
        console.print(f"[yellow]warning[/yellow]: {message}")


def _warn_about_quality(run: RunFolder, summary: dict) -> None:
    """Say so when the teacher was of little use, before the dataset stage finds out."""
    routes = summary["routes"]
    teacher_pairs = routes[TEACHER_QA]["pairs"] + routes[ANSWER_FIRST]["pairs"]
    if summary["pairs"] == 0:
        _warn(run, "no question/answer pairs at all: the teacher's outputs are kept in "
              f"{run.path(GENERATIONS)} (attempts); try another teacher, generate.mode=answer-first "
              "or generate.cloze_fallback=true")
    elif summary["generations"] and teacher_pairs == 0:
        _warn(run, f"the teacher ({summary['teacher']}) gave no usable output; all {summary['pairs']} "
              "pairs come from the rule-based cloze fallback")


def _flatten(summary: dict) -> dict:
    """The manifest keeps flat values: routes become e.g. `answer-first_pairs`."""
    flat = {k: v for k, v in summary.items() if k != "routes"}
    for route, stats in summary["routes"].items():
        for key in ("attempts", "pairs", "parse_failure_rate"):
            flat[f"{route}_{key}"] = stats[key]
    return flat
