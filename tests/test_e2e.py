"""End to end through the CLI, on a small document: documents in, a usable model out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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

    # the evaluate stage: distillation beat the untrained student on the held-out questions, and
    # eval_predictions.json holds the answers behind those totals
    scores = json.loads((run / "eval.json").read_text())
    assert scores["validation_questions"] > 0
    assert scores["distilled"]["f1"] > scores["baseline"]["f1"], scores
    validation_ids = {qa["id"] for a in json.loads((run / "validation.json").read_text())["data"]
                      for p in a["paragraphs"] for qa in p["qas"]}
    assert set(json.loads((run / "eval_predictions.json").read_text())) == validation_ids
    res = _cli("evaluate", str(run), "--quiet", cwd=tmp_path)  # the stage by name: up to date
    assert res.returncode == 0, res.stderr
    evaluated = json.loads((run / "manifest.json").read_text())["stages"]["evaluate"]
    assert evaluated["started"] == manifest["stages"]["evaluate"]["started"]

    # reader mode on the run's own validation file reads as the stage did: the same score
    res = _cli("evaluate", str(run), str(run / "validation.json"), "--json", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    reader = json.loads(res.stdout)
    assert reader["mode"] == "reader" and reader["f1"] == pytest.approx(scores["distilled"]["f1"])

    # open mode: every question answered from the run's documents, written as {id: answer}
    predictions = tmp_path / "predictions.json"
    res = _cli("evaluate", str(run), str(run / "train.json"), "--open", "--predictions", str(predictions),
               "--json", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["mode"] == "open"
    train_ids = {qa["id"] for a in json.loads((run / "train.json").read_text())["data"]
                 for p in a["paragraphs"] for qa in p["qas"]}
    written = json.loads(predictions.read_text())
    assert set(written) == train_ids
    text = json.loads((run / "documents.jsonl").read_text().splitlines()[0])["text"]
    assert all(answer in text for answer in written.values()) and any(written.values())
