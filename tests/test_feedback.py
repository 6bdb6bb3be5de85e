"""distillqa.student.feedback: the record's rules, the append-only file, the gold pairs, the
`distillqa feedback` command, and training and evaluating on corrections. (The server's
`POST /feedback` is tested in test_serve.py, the web page's in test_browser.py.)"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from distillqa.app.report import _corrections_section
from distillqa.cli import app
from distillqa.config import load_config
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.io import read_json, write_json
from distillqa.layout import EVAL, FEEDBACK, RunFolder
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.student import evaluate
from distillqa.student.feedback import (
    Feedback,
    FeedbackFull,
    append_feedback,
    feedback_examples,
    read_feedback,
    to_squad,
)
from distillqa.student.reader import load_reader
from tests.helpers import tiny_bert

PASSAGE = "The harbour light of Port Elwin was built in 1854 by the engineer Margaret Hale."
QUESTION = "Who built the harbour light?"
SHOWN = PASSAGE.index("1854")
GOLD = PASSAGE.index("Margaret Hale")


def record(verdict: str = "right", question: str = QUESTION, **judgement) -> Feedback:
    """A judgement of the answer "1854" (start SHOWN) in PASSAGE."""
    return Feedback(
        question=question, passage=PASSAGE, answer="1854", start=SHOWN, end=SHOWN + 4, verdict=verdict,
        document="harbour.txt", page=1, time=datetime(2026, 12, 3, 14, 0, tzinfo=timezone.utc), **judgement,
    )


def correction() -> Feedback:
    return record("wrong", correct_start=GOLD, correct_end=GOLD + len("Margaret Hale"))


@pytest.mark.parametrize(
    ("judgement", "message"),
    [
        ({"verdict": "wrong"}, "either correct_start and correct_end, or not_in_passages"),
        ({"verdict": "wrong", "correct_start": GOLD}, "give both"),
        ({"verdict": "right", "not_in_passages": True}, "no correction"),
        ({"verdict": "wrong", "correct_start": GOLD, "correct_end": GOLD + 13, "not_in_passages": True}, "either"),
        ({"verdict": "wrong", "correct_start": GOLD, "correct_end": 999}, "offsets in the passage"),
        ({"verdict": "wrong", "correct_start": SHOWN - 1, "correct_end": SHOWN}, "blank"),
        ({"verdict": "wrong", "correct_start": SHOWN, "correct_end": SHOWN + 4}, "mark it right instead"),
        ({"verdict": "right", "question": "  "}, "blank"),
    ],
)
def test_a_judgement_must_be_consistent(judgement: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        record(**judgement)


def test_gold_pairs_follow_the_verdicts_and_the_latest_judgement():
    """right: the shown span; wrong: the correction; not in these passages: no pair. A later
    judgement of the same question about the same passage replaces the earlier one."""
    records = [
        record(),
        correction(),  # replaces the "right" above
        record("wrong", question="Who was the last keeper?", not_in_passages=True),
        record(question="When was the light built?"),
    ]
    examples = feedback_examples(records)
    assert [(e["question"], e["answers"]) for e in examples] == [
        (QUESTION, [{"text": "Margaret Hale", "answer_start": GOLD}]),
        ("When was the light built?", [{"text": "1854", "answer_start": SHOWN}]),
    ]
    assert [e["shown"] for e in examples] == ["1854", "1854"] and examples[0]["id"] == correction().record_id
    assert feedback_examples(records[:3]) == feedback_examples(records[1:2])
    # SQuAD v1.1 that distillqa itself reads back
    assert squad_examples(to_squad(examples)) == [{k: e[k] for k in ("id", "question", "context", "answers")} for e in examples]


def test_records_are_appended_whole_and_read_back(tmp_path: Path):
    path = tmp_path / FEEDBACK
    append_feedback(path, record(), 10_000)
    append_feedback(path, correction(), 10_000)
    assert read_feedback(path) == ([record(), correction()], 0)
    assert read_feedback(tmp_path / "none.jsonl") == ([], 0)


def test_damaged_lines_are_skipped_and_counted_never_repaired_by_a_reader(tmp_path: Path):
    path = tmp_path / FEEDBACK
    good = record().model_dump_json().encode()
    bad_offsets = json.dumps({**record().model_dump(mode="json"), "end": 999}).encode()
    damaged = b"\n".join([good, b"{not json", bad_offsets, b"\xff\xfe", good]) + b"\n" + good[:40]
    path.write_bytes(damaged)
    assert read_feedback(path) == ([record(), record()], 4)
    assert path.read_bytes() == damaged  # the server may be appending: readers never cut


def test_the_size_limit_refuses_and_writes_nothing(tmp_path: Path):
    path = tmp_path / FEEDBACK
    append_feedback(path, record(), 1000)
    held = path.read_bytes()
    limit = 2 * len(held) - 1  # not room for a second line as long
    with pytest.raises(FeedbackFull, match=rf"feedback\.jsonl is full \({len(held)} bytes; feedback\.max_bytes is {limit}\)"):
        append_feedback(path, record(), limit)
    assert path.read_bytes() == held
    append_feedback(path, record(), limit + 1)
    assert path.read_bytes() == held * 2


def test_concurrent_appends_never_interleave(tmp_path: Path):
    path = tmp_path / FEEDBACK

    def add(n: int) -> None:
        for _ in range(n):
            append_feedback(path, correction(), 10**7)

    threads = [threading.Thread(target=add, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_feedback(path) == ([correction()] * 100, 0)


def test_the_feedback_command_lists_and_exports(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    for r in (correction(), record("wrong", question="Who was [bold]the keeper[/bold]?", not_in_passages=True)):
        append_feedback(run / FEEDBACK, r, 10_000)
    runner = CliRunner()
    listed = runner.invoke(app, ["feedback", str(run)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    for text in (QUESTION, "Margaret Hale", "1854", "not in these passages", "[bold]the keeper[/bold]", "harbour.txt, page 1"):
        assert text in listed.stdout, text
    assert "2 records; 1 training pairs" in listed.stdout

    out = tmp_path / "export" / "feedback.json"
    exported = runner.invoke(app, ["feedback", str(run), "--export", str(out)])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout == f"wrote 1 questions to {out} (SQuAD v1.1)\n"
    [example] = squad_examples(load_squad(out))
    assert (example["question"], example["answers"]) == (QUESTION, [{"text": "Margaret Hale", "answer_start": GOLD}])
    assert sorted(p.name for p in out.parent.iterdir()) == ["feedback.json"]  # written atomically: no temporary left


def test_the_feedback_command_fails_in_one_line(tmp_path: Path):
    runner = CliRunner()
    (tmp_path / "run").mkdir()
    none = runner.invoke(app, ["feedback", str(tmp_path / "run")])
    assert none.exit_code == 0 and "No feedback" in none.stdout
    append_feedback(tmp_path / "run" / FEEDBACK, record("wrong", not_in_passages=True), 10_000)
    with open(tmp_path / "run" / FEEDBACK, "ab") as f:
        f.write(b'{"question": "torn')
    cases = [
        (["feedback", str(tmp_path / "missing")], "no such run folder"),
        (["feedback", str(tmp_path / "run"), "--export", str(tmp_path)], "is a folder"),
        (["feedback", str(tmp_path / "run"), "--export", str(tmp_path / "out.json")], "no question with a right answer"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        *warnings, error = result.stderr.strip().splitlines()
        assert error.startswith("error: ") and message in error, result.stderr
        assert all(w.startswith("warning: ") and "1 damaged lines ignored" in w for w in warnings)
    assert not (tmp_path / "out.json").exists()


def test_feedback_and_its_weight_rerun_train_and_evaluate_but_the_server_limit_does_not(tmp_path: Path):
    run = Run(tmp_path)
    cfg = load_config()
    train, evaluate_stage = STAGE_BY_NAME["train"], STAGE_BY_NAME["evaluate"]
    before = run.fingerprint(train, cfg), run.fingerprint(evaluate_stage, cfg)
    assert run.fingerprint(train, load_config(None, ["feedback.max_bytes=5000"])) == before[0]
    assert run.fingerprint(train, load_config(None, ["feedback.weight=8"])) != before[0]
    append_feedback(tmp_path / FEEDBACK, correction(), 10_000)
    assert run.fingerprint(train, cfg) != before[0] and run.fingerprint(evaluate_stage, cfg) != before[1]


def test_train_learns_the_corrections_and_evaluate_scores_them_before_and_after(tmp_path: Path):
    """Only in train, never in validation; evaluate scores the shown answer (before) and the
    retrained student (after), and the report shows both."""
    run = tmp_path / "run"
    run.mkdir()
    validation = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": PASSAGE, "qas": [
        {"id": "v1", "question": "When was the light built?", "answers": [{"text": "1854", "answer_start": SHOWN}]}]}]}]}
    empty = {"version": "1.1", "data": []}
    write_json(run / "train.json", empty)
    write_json(run / "validation.json", empty)  # no epoch chosen by validation: the last one is kept
    append_feedback(run / FEEDBACK, correction(), 10_000)
    append_feedback(run / FEEDBACK, record("wrong", question="Who was the last keeper?", not_in_passages=True), 10_000)
    student = tiny_bert(tmp_path / "tiny", seed=1)
    cfg = load_config(None, [f"train.student={student}", "train.epochs=30", "train.learning_rate=2e-3", "feedback.weight=8",
                             "answer.sentence_sharpness=0"])
    summary = Run(run, quiet=True).run_stage(STAGE_BY_NAME["train"], cfg)
    assert (summary["train_questions"], summary["feedback_pairs"]) == (0, 1)
    reader = load_reader(run, "torch")
    assert reader.answer([QUESTION], [PASSAGE], top_k=1)[0][0].text == "Margaret Hale"
    assert "1 corrections made in the web UI, 8 copies" in (run / "student" / "README.md").read_text()

    write_json(run / "validation.json", validation)
    summary = Run(run, quiet=True).run_stage(STAGE_BY_NAME["evaluate"], cfg)
    assert summary["validation_questions"] == 1 and summary["feedback_pairs"] == 1
    scored = read_json(run / EVAL)["feedback"]
    assert scored["n"] == 1 and scored["before"]["f1"] == 0.0 and scored["after"]["exact_match"] == 100.0
    assert scored["questions"] == [{"id": correction().record_id, "question": QUESTION, "gold": "Margaret Hale", "shown": "1854", "distilled": "Margaret Hale"}]
    section = "\n".join(_corrections_section(scored))
    assert "## Corrections" in section and "| distilled student (after) | 100.0 | 100.0 |" in section
    assert "| Who built the harbour light? | Margaret Hale | 1854 | Margaret Hale |" in section

    write_json(run / "validation.json", empty)  # no validation: the corrections are still scored
    assert evaluate.run_stage(RunFolder(run, quiet=True), cfg)["feedback_f1_after"] == 100.0
    assert read_json(run / EVAL)["feedback"]["n"] == 1
