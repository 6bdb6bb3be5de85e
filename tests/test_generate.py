"""The generate stage with scripted teachers: routes, retries, seeds, cloze fallback, batching, summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from distillqa.config import Config
from distillqa.errors import DistillqaError
from distillqa.io import read_json, read_jsonl, write_jsonl
from distillqa.layout import CHUNKS, GENERATE_SUMMARY, GENERATIONS, TEACHER_CACHE
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.teacher import generate as gen
from distillqa.teacher.base import GenerationRequest, GenerationResult
from distillqa.teacher.generate import ANSWER_FIRST, CLOZE, TEACHER_QA, generate_chunks, request_seed
from distillqa.teacher.prompts import EXAMPLE_QUESTIONS, qa_messages, qa_schema

TEXTS = [
    "In 1867, Alfred Nobel patented dynamite in Sweden. The invention made him very rich within a decade. "
    "He later founded the Nobel Prizes with his fortune.",
    "The Danube flows through ten countries before reaching the Black Sea. About 40% of its basin lies in "
    "Romania. The river was an important trade route in the Middle Ages.",
    "Marie Curie discovered polonium in 1898 with her husband Pierre. She was the first woman to win a Nobel "
    "Prize. Her notebooks are still radioactive today.",
]


def make_chunks(texts: list[str] = TEXTS) -> list[dict]:
    return [{"chunk_id": f"doc-0000-{i:04d}", "doc_id": "doc-0000", "index": i, "text": t} for i, t in enumerate(texts)]


class ScriptedTeacher:
    """A teacher whose reply is computed from the request; it records every call it gets."""

    name = "scripted:test"

    def __init__(self, reply: Callable[[GenerationRequest], str], supports_json_schema: bool = True):
        self.reply = reply
        self.supports_json_schema = supports_json_schema
        self.calls: list[list[GenerationRequest]] = []
        self.closed = False

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(list(requests))
        return [GenerationResult(self.reply(r)) for r in requests]

    def close(self) -> None:
        self.closed = True

    @property
    def requests(self) -> list[GenerationRequest]:
        return [r for call in self.calls for r in call]


def answer_of(request: GenerationRequest) -> str:
    """The answer an answer-first request asks about (its last user turn: 'Sentence: ...\\nAnswer: X')."""
    line = request.messages[-1]["content"].split("\nAnswer: ", 1)[1]
    return line.split(" (", 1)[0]


_HEADS = {"a date": "When", "a number": "How many", "a percentage": "What percentage", "a person": "Who",
          "a place": "Where", "an amount": "How much"}


def good_questions(request: GenerationRequest) -> str:
    """A teacher that writes a valid question for every answer: the right wh-word (from the prompt's
    hint) and the words around the answer in its sentence."""
    prompt = request.messages[-1]["content"]
    answer = answer_of(request)
    sentence = prompt.split("\n", 1)[0].removeprefix("Sentence: ")
    before, _, after = sentence.partition(answer)
    near = before.replace(",", "").split()[-4:] + after.strip(" .,").replace(",", "").split()[:4]
    head = next((h for hint, h in _HEADS.items() if f"({hint}" in prompt), "What")
    return f"{head} {' '.join(near)}?"


def cfg_for(mode: str = "answer-first", **generate) -> Config:
    return Config.model_validate({"generate": {"mode": mode, **generate}})


def run_chunks(tmp_path: Path, teacher: ScriptedTeacher, cfg: Config, chunks: list[dict] | None = None) -> list[dict]:
    records: list[dict] = []
    generate_chunks(chunks or make_chunks(), teacher, cfg, records.append)
    return records


def test_request_seed_is_stable_and_distinct() -> None:
    assert request_seed("c-1", ANSWER_FIRST, 2, 0, 0) == request_seed("c-1", ANSWER_FIRST, 2, 0, 0)
    seeds = {request_seed("c-1", ANSWER_FIRST, i, a, 0) for i in range(5) for a in range(3)}
    assert len(seeds) == 15
    assert request_seed("c-1", TEACHER_QA, 0, 0, 5) != request_seed("c-1", TEACHER_QA, 0, 0, 6)
    assert 0 <= request_seed("c-1", TEACHER_QA, 0, 0, 2**31 - 1) < 2**31


def test_answer_first_keeps_valid_teacher_questions(tmp_path: Path) -> None:
    teacher = ScriptedTeacher(good_questions)
    records = run_chunks(tmp_path, teacher, cfg_for(answers_per_chunk=3))
    assert [r["chunk_id"] for r in records] == [c["chunk_id"] for c in make_chunks()]
    for rec, chunk in zip(records, make_chunks()):
        assert rec["mode"] == "answer-first" and rec["teacher"] == "scripted:test"
        assert rec["pairs"] and all(p["route"] == ANSWER_FIRST for p in rec["pairs"])
        for p in rec["pairs"]:
            assert chunk["text"][p["answer_start"]:p["answer_start"] + len(p["answer"])] == p["answer"]
        assert all(a["ok"] and a["route"] == ANSWER_FIRST and a["error"] is None for a in rec["attempts"])
    # plain-text questions by default: no schema, one line
    assert all(r.json_schema is None and r.stop == ["\n"] for r in teacher.requests)
    # few-shot examples are chat turns before the real request
    roles = [m["role"] for m in teacher.requests[0].messages]
    assert roles[0] == "system" and roles.count("assistant") >= 2 and roles[-1] == "user"


def test_garbage_teacher_retries_with_new_seeds_then_falls_back_to_cloze(tmp_path: Path) -> None:
    teacher = ScriptedTeacher(lambda r: "Lorem ipsum")
    records = run_chunks(tmp_path, teacher, cfg_for(answers_per_chunk=2, retries=2), make_chunks()[:1])
    (rec,) = records
    by_answer: dict[str, list[dict]] = {}
    for a in rec["attempts"]:
        by_answer.setdefault(a["answer"], []).append(a)
    assert len(by_answer) == 2
    for attempts in by_answer.values():
        assert len(attempts) == 3  # first try + 2 retries
        assert len({a["seed"] for a in attempts}) == 3
        assert all(not a["ok"] and a["raw"] == "Lorem ipsum" and a["error"].startswith("rejected:") for a in attempts)
    assert rec["pairs"] and all(p["route"] == CLOZE for p in rec["pairs"])
    assert {p["question"] for p in rec["pairs"]} >= {"Who patented dynamite in Sweden in 1867?"} or all(
        p["question"].endswith("?") for p in rec["pairs"]
    )
    temps = sorted({r.temperature for r in teacher.requests})
    assert temps == [0.3, gen.RETRY_TEMPERATURE]


def test_no_pairs_without_cloze_fallback(tmp_path: Path) -> None:
    teacher = ScriptedTeacher(lambda r: "")
    (rec,) = run_chunks(tmp_path, teacher, cfg_for(retries=0, cloze_fallback=False), make_chunks()[:1])
    assert rec["pairs"] == [] and rec["attempts"]
    assert all(a["error"] == "parse: empty output" for a in rec["attempts"])


def test_retry_succeeds_after_a_bad_first_attempt(tmp_path: Path) -> None:
    seen: set[str] = set()

    def reply(r: GenerationRequest) -> str:
        answer = answer_of(r)
        if answer not in seen:
            seen.add(answer)
            return "not a question"
        return good_questions(r)

    (rec,) = run_chunks(tmp_path, ScriptedTeacher(reply), cfg_for(answers_per_chunk=2), make_chunks()[:1])
    assert [a["ok"] for a in rec["attempts"]] == [False, False, True, True]
    assert all(p["route"] == ANSWER_FIRST for p in rec["pairs"]) and len(rec["pairs"]) == 2


def qa_reply(request: GenerationRequest) -> str:
    pairs = [
        {"question": "Who patented dynamite in Sweden?", "answer": "Alfred Nobel"},
        {"question": EXAMPLE_QUESTIONS[0], "answer": "1889"},  # a copied example is dropped
    ]
    return "Here you go:\n```json\n" + json.dumps({"pairs": pairs}) + "\n```"


def test_qa_mode_parses_tolerantly_and_passes_the_schema(tmp_path: Path) -> None:
    teacher = ScriptedTeacher(qa_reply)
    records = run_chunks(tmp_path, teacher, cfg_for("qa", pairs_per_chunk=4))
    assert all(r["pairs"] == [{"question": "Who patented dynamite in Sweden?", "answer": "Alfred Nobel", "route": TEACHER_QA}] for r in records)
    (req, *_) = teacher.requests
    assert len(teacher.requests) == 3
    assert req.json_schema == qa_schema(4)
    items = req.json_schema["properties"]["pairs"]
    assert items["maxItems"] == 4 and items["minItems"] == 1
    assert items["items"]["properties"]["answer"]["maxLength"] <= 80
    assert req.messages == qa_messages(make_chunks()[0]["text"], 4)


def test_qa_mode_without_schema_support(tmp_path: Path) -> None:
    teacher = ScriptedTeacher(qa_reply, supports_json_schema=False)
    run_chunks(tmp_path, teacher, cfg_for("qa"))
    assert all(r.json_schema is None for r in teacher.requests)


def test_qa_mode_garbage_falls_back_to_cloze(tmp_path: Path) -> None:
    records = run_chunks(tmp_path, ScriptedTeacher(lambda r: "no json here"), cfg_for("qa", retries=1, pairs_per_chunk=3))
    for rec in records:
        assert len(rec["attempts"]) == 2
        assert all(a["route"] == TEACHER_QA and a["error"].startswith("parse:") for a in rec["attempts"])
        assert rec["pairs"] and {p["route"] for p in rec["pairs"]} == {CLOZE}


def test_both_mode_runs_both_routes(tmp_path: Path) -> None:
    def reply(r: GenerationRequest) -> str:
        return qa_reply(r) if r.json_schema is not None else good_questions(r)

    records = run_chunks(tmp_path, ScriptedTeacher(reply), cfg_for("both", answers_per_chunk=2))
    for rec in records:
        assert {a["route"] for a in rec["attempts"]} == {TEACHER_QA, ANSWER_FIRST}
        assert {p["route"] for p in rec["pairs"]} == {TEACHER_QA, ANSWER_FIRST}


def test_question_json_mode_uses_the_question_schema(tmp_path: Path) -> None:
    def reply(r: GenerationRequest) -> str:
        return json.dumps({"question": good_questions(r)})

    teacher = ScriptedTeacher(reply)
    (rec,) = run_chunks(tmp_path, teacher, cfg_for(question_json=True, answers_per_chunk=2), make_chunks()[:1])
    assert all(r.json_schema is not None and r.stop == [] for r in teacher.requests)
    assert '{"question"' in teacher.requests[0].messages[2]["content"]  # the examples answer in JSON too
    assert all(p["route"] == ANSWER_FIRST for p in rec["pairs"])


def test_requests_of_many_chunks_go_out_in_one_wave(tmp_path: Path) -> None:
    teacher = ScriptedTeacher(good_questions)
    chunks = make_chunks(TEXTS * 4)
    chunks = [{**c, "chunk_id": f"c-{i:03d}"} for i, c in enumerate(chunks)]
    records = run_chunks(tmp_path, teacher, cfg_for(answers_per_chunk=3, wave_requests=9), chunks)
    assert len(records) == 12 and len({r["chunk_id"] for r in records}) == 12
    assert max(len(call) for call in teacher.calls) >= 9  # three chunks' requests in one call
    assert len(teacher.calls) <= 5


# -- run_stage --------------------------------------------------------------------------------
def make_run(tmp_path: Path, chunks: list[dict]) -> tuple[Run, Config]:
    run = Run(tmp_path / "run", quiet=True)
    run.root.mkdir()
    write_jsonl(run.path(CHUNKS), chunks)
    cfg = Config()
    run.save_config(cfg)
    return run, cfg


def test_run_stage_writes_summary_and_returns_flat_dict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = ScriptedTeacher(good_questions)
    monkeypatch.setattr(gen, "load_teacher", lambda cfg: teacher)
    run, cfg = make_run(tmp_path, make_chunks())
    result = run.run_stage(STAGE_BY_NAME["generate"], cfg)
    assert teacher.closed
    assert all(isinstance(v, (int, float, str)) for v in result.values())
    summary = read_json(run.path(GENERATE_SUMMARY))
    assert summary["chunks"] == 3 and summary["chunks_reused"] == 0 and summary["chunks_generated"] == 3
    assert summary["teacher"] == "scripted:test" and summary["mode"] == "answer-first"
    routes = summary["routes"]
    assert routes[ANSWER_FIRST]["pairs"] == summary["pairs"] > 0
    assert routes[ANSWER_FIRST]["parse_failure_rate"] == 0.0
    assert summary["generations"] == routes[ANSWER_FIRST]["attempts"] == len(teacher.requests)
    assert summary["chunks_per_s"] > 0
    assert result["answer-first_pairs"] == summary["pairs"]
    assert len(read_jsonl(run.path(GENERATIONS))) == 3


def test_run_stage_parse_failure_rate_per_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def reply(r: GenerationRequest) -> str:
        return "{{{ not json" if r.json_schema is not None else good_questions(r)

    monkeypatch.setattr(gen, "load_teacher", lambda cfg: ScriptedTeacher(reply))
    run, _ = make_run(tmp_path, make_chunks())
    cfg = run.config(overrides=["generate.mode=both", "generate.retries=1"])
    result = run.run_stage(STAGE_BY_NAME["generate"], cfg)
    routes = read_json(run.path(GENERATE_SUMMARY))["routes"]
    assert routes[TEACHER_QA]["attempts"] == 6 and routes[TEACHER_QA]["parse_failures"] == 6
    assert routes[TEACHER_QA]["parse_failure_rate"] == 1.0 == result["teacher-qa_parse_failure_rate"]
    assert routes[ANSWER_FIRST]["parse_failure_rate"] == 0.0


def test_run_stage_garbage_teacher_warns_and_still_gives_cloze_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gen, "load_teacher", lambda cfg: ScriptedTeacher(lambda r: "???"))
    run, cfg = make_run(tmp_path, make_chunks())
    result = run.run_stage(STAGE_BY_NAME["generate"], cfg)
    assert result["pairs"] > 0 and result["pairs"] == result["cloze_pairs"]
    assert "rule-based cloze fallback" in caplog.text


def test_run_stage_with_no_pairs_finishes_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gen, "load_teacher", lambda cfg: ScriptedTeacher(lambda r: "???"))
    run, _ = make_run(tmp_path, make_chunks())
    cfg = run.config(overrides=["generate.cloze_fallback=false", "generate.retries=0"])
    result = run.run_stage(STAGE_BY_NAME["generate"], cfg)
    assert result["pairs"] == 0
    assert "no question/answer pairs at all" in caplog.text
    assert run.manifest["stages"]["generate"]["status"] == "done"


def test_run_stage_rejects_zero_chunks(tmp_path: Path) -> None:
    run, cfg = make_run(tmp_path, [])
    with pytest.raises(DistillqaError, match="no chunks"):
        run.run_stage(STAGE_BY_NAME["generate"], cfg)


def test_run_stage_teacher_load_errors_propagate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cfg):
        raise DistillqaError("model.gguf: GGUF file not found: check teacher.model")

    monkeypatch.setattr(gen, "load_teacher", broken)
    run, cfg = make_run(tmp_path, make_chunks())
    with pytest.raises(DistillqaError, match="GGUF file not found"):
        run.run_stage(STAGE_BY_NAME["generate"], cfg)


def test_run_stage_max_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "load_teacher", lambda cfg: ScriptedTeacher(good_questions))
    run, _ = make_run(tmp_path, make_chunks())
    cfg = run.config(overrides=["generate.max_chunks=2"])
    assert run.run_stage(STAGE_BY_NAME["generate"], cfg)["chunks"] == 2
    assert len(read_jsonl(run.path(GENERATIONS))) == 2


# -- what a settings change keeps -------------------------------------------------------------


class CountingLoads:
    """`load_teacher` stand-in: a new ScriptedTeacher per load, all kept for inspection."""

    def __init__(self) -> None:
        self.teachers: list[ScriptedTeacher] = []

    def __call__(self, cfg) -> ScriptedTeacher:
        self.teachers.append(ScriptedTeacher(lambda r: good_questions(r) if "\nAnswer: " in r.messages[-1]["content"] else "???"))
        return self.teachers[-1]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> CountingLoads:
    """Every teacher the generate stage loads in this test."""
    counting = CountingLoads()
    monkeypatch.setattr(gen, "load_teacher", counting)
    return counting


def chunk_of(request: GenerationRequest, chunks: list[dict]) -> str:
    """The chunk an answer-first request is about (its sentence is in exactly one test chunk)."""
    sentence = request.messages[-1]["content"].split("\n", 1)[0].removeprefix("Sentence: ")
    (chunk_id,) = [c["chunk_id"] for c in chunks if sentence in c["text"]]
    return chunk_id


def test_speed_settings_keep_a_finished_generate_stage(tmp_path: Path, loads: CountingLoads) -> None:
    run, cfg = make_run(tmp_path, make_chunks())
    stage = STAGE_BY_NAME["generate"]
    run.run_stage(stage, cfg)
    before = run.path(GENERATIONS).read_bytes()
    faster = run.config(overrides=["teacher.concurrency=16", "teacher.timeout_s=5", "teacher.n_threads=2",
                                   "teacher.batch_size=4", "generate.wave_requests=3"])
    assert run.is_current(stage, faster)
    assert run.run_stage(stage, faster)["up_to_date"] is True
    assert run.path(GENERATIONS).read_bytes() == before
    assert len(loads.teachers) == 1


def test_max_chunks_reuses_the_teacher_cache_both_ways(tmp_path: Path, loads: CountingLoads) -> None:
    chunks = make_chunks()
    run, _ = make_run(tmp_path, chunks)
    stage = STAGE_BY_NAME["generate"]
    run.run_stage(stage, run.config(overrides=["generate.max_chunks=1"]))
    first = run.path(GENERATIONS).read_text()
    assert len(read_jsonl(run.path(GENERATIONS))) == 1

    raised = run.config(overrides=["generate.max_chunks=3"])
    assert not run.is_current(stage, raised)
    summary = run.run_stage(stage, raised)
    assert (summary["chunks"], summary["chunks_reused"], summary["chunks_generated"]) == (3, 1, 2)
    assert run.path(GENERATIONS).read_text().startswith(first)  # the first chunk's line is the cached one
    assert {chunk_of(r, chunks) for r in loads.teachers[-1].requests} == {c["chunk_id"] for c in chunks[1:]}

    lowered = run.config(overrides=["generate.max_chunks=2"])
    summary = run.run_stage(stage, lowered)  # nothing to generate: no teacher is loaded
    assert (summary["chunks"], summary["chunks_reused"], summary["chunks_generated"], len(loads.teachers)) == (2, 2, 0, 2)
    assert len(read_jsonl(run.path(GENERATIONS))) == 2
    assert run.is_current(stage, lowered)


def test_a_torn_or_damaged_cache_line_regenerates_only_that_chunk(tmp_path: Path, loads: CountingLoads) -> None:
    chunks = make_chunks()
    run, cfg = make_run(tmp_path, chunks)
    stage = STAGE_BY_NAME["generate"]
    run.run_stage(stage, cfg)
    cache = run.path(TEACHER_CACHE)
    lines = cache.read_bytes().splitlines(keepends=True)
    cache.write_bytes(lines[0] + b"{not json\n" + lines[2][:40])  # line 2 damaged, line 3 torn by a kill
    summary = run.run_stage(stage, cfg, force=True)
    assert (summary["chunks_reused"], summary["chunks_generated"]) == (1, 2)
    assert cache.read_bytes().startswith(lines[0] + b"{not json\n")  # torn tail cut, then appended to
    assert len(read_jsonl(run.path(GENERATIONS))) == 3


@pytest.mark.parametrize(
    "change", ["teacher.temperature=0.9", "teacher.model=other.gguf", "generate.mode=both", "questions.max_answer_words=3"]
)
def test_output_settings_restart_generation(tmp_path: Path, loads: CountingLoads, change: str) -> None:
    run, cfg = make_run(tmp_path, make_chunks())
    stage = STAGE_BY_NAME["generate"]
    run.run_stage(stage, cfg)
    changed = run.config(overrides=[change])
    summary = run.run_stage(stage, changed)
    assert (summary["chunks_reused"], summary["chunks_generated"]) == (0, 3)
    assert len(read_jsonl(run.path(GENERATIONS))) == 3
    assert run.is_current(stage, changed) and not run.is_current(stage, cfg)
    summary = run.run_stage(stage, cfg)
    assert (summary["chunks_reused"], summary["chunks_generated"]) == (3, 0)  # back again: all from the cache


def test_speed_settings_and_new_documents_reuse_the_cache(tmp_path: Path, loads: CountingLoads) -> None:
    """A rerun after a timeout change or with one more document asks the teacher only for new chunks."""
    chunks = make_chunks()
    run, cfg = make_run(tmp_path, chunks[:2])
    stage = STAGE_BY_NAME["generate"]
    run.run_stage(stage, cfg)
    write_jsonl(run.path(CHUNKS), chunks)  # a document added: the stage's input changed
    summary = run.run_stage(stage, run.config(overrides=["teacher.timeout_s=300"]))
    assert (summary["chunks_reused"], summary["chunks_generated"]) == (2, 1)
    assert {chunk_of(r, chunks) for r in loads.teachers[-1].requests} == {chunks[2]["chunk_id"]}
