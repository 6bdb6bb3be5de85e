"""End to end through the CLI, on a small document: documents in, a usable model out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.student.metrics import score_examples

TEXT = """The Harbour Light of Port Elwin

The harbour light of Port Elwin was built in 1854 by the engineer Margaret Hale. It stands on a granite ledge at the mouth of the Elwin River, and its white tower is 31 metres tall.

The first lamp burned whale oil and could be seen from 14 miles away. In 1902 the oil lamp was replaced by a paraffin burner designed by Thomas Quill, and in 1938 the station was connected to the electric grid.

The last keeper, Edward Vance, left the tower in 1986, when the light was automated. Today the building houses a small museum run by the Port Elwin Historical Society, which opens every summer from June to September.

Ships entering the harbour must pass between two reefs known as the Sisters. Before the light was built, at least 23 ships were wrecked on the Sisters, including the schooner Albatross in 1849.
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distillqa", *args], cwd=cwd, capture_output=True, text=True, timeout=1500
    )


@pytest.mark.slow
def test_run_then_ask(tmp_path: Path):
    doc = tmp_path / "harbour.txt"
    doc.write_text(TEXT)
    run = tmp_path / "run"
    res = _cli("run", str(doc), "--out", str(run), "--quiet", "--set", "train.epochs=2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("documents.jsonl", "chunks.jsonl", "generations.jsonl", "qa.jsonl", "train.json",
                 "report.md", "report.json", "eval.json", "eval_predictions.json", "student/config.json", "index"):
        assert (run / name).exists(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in manifest["stages"].values())

    # rerunning does nothing
    again = _cli("run", str(doc), "--out", str(run), "--quiet", "--set", "train.epochs=2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "manifest.json").read_text())["stages"]["train"]["started"] == manifest["stages"]["train"]["started"]

    res = _cli("ask", str(run), "Who built the harbour light?", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    answers = json.loads(res.stdout)["answers"]
    assert answers and {"answer", "score", "document", "page", "passage", "start", "end"} <= set(answers[0])
    best = answers[0]
    assert best["passage"][best["start"]:best["end"]] == best["answer"]
    assert best["page"] == 1

    # the evaluate stage ran as part of `run`, wrote an answer per validation question, and
    # `evaluate RUN` names that same stage: up to date, so nothing reruns
    scores = json.loads((run / "eval.json").read_text())
    answers = json.loads((run / "eval_predictions.json").read_text())
    assert set(answers) == set(ids(run / "validation.json")) and len(answers) == scores["validation_questions"]
    res = _cli("evaluate", str(run), "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    evaluated = json.loads((run / "manifest.json").read_text())["stages"]["evaluate"]
    assert evaluated["started"] == manifest["stages"]["evaluate"]["started"]

    # a SQuAD file scored in reader mode (gold paragraph) and in open mode (question alone): an
    # answer for every question, written as {id: answer}, and totals that are those answers' scores
    examples = squad_examples(load_squad(run / "train.json"))
    text = json.loads((run / "documents.jsonl").read_text().splitlines()[0])["text"]
    for mode in ("reader", "open"):
        predictions = tmp_path / f"{mode}.json"
        flags = ["--open"] if mode == "open" else []
        res = _cli("evaluate", str(run), str(run / "train.json"), *flags, "--predictions", str(predictions),
                   "--json", "--quiet", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        totals = json.loads(res.stdout)
        written = json.loads(predictions.read_text())
        assert totals["mode"] == mode and set(written) == {e["id"] for e in examples}
        assert all(answer in text for answer in written.values()) and any(written.values())
        expected = score_examples(examples, written)
        assert (totals["exact_match"], totals["f1"], totals["n"]) == pytest.approx((expected["exact_match"], expected["f1"], expected["n"]))


def ids(squad_file: Path) -> list[str]:
    return [e["id"] for e in squad_examples(load_squad(squad_file))]
