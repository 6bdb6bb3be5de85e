"""Student training: a complete student/ folder, the loss curve, best-by-F1, and (slow) real learning."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertModel

from distillqa.config import Config, TrainConfig
from distillqa.dataset.squad import squad_examples
from distillqa.errors import DistillqaError
from distillqa.pipeline import Run
from distillqa.student.evaluate import score_reader
from distillqa.student.reader import Reader, load_base_student
from distillqa.student.train import run_stage, train_reader
from tests.helpers import tiny_bert

SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vo", "shi", "bar", "del", "nu", "zor", "qua", "fin", "gal", "hos", "tu"]
FACTS = [
    ("The capital of {x} is {y}.", "What is the capital of {x}?"),
    ("{x} was founded by {y}.", "Who founded {x}?"),
    ("The largest river in {x} is the {y}.", "What is the largest river in {x}?"),
    ("{x} mostly exports {y}.", "What does {x} mostly export?"),
]


def synthetic_squad(n_questions: int, seed: int) -> dict:
    """Invented countries, each paragraph stating four facts and asking about each of them.

    The answer is always the made-up name after a cue phrase the question repeats, which a
    small encoder learns in a few epochs, but never by copying a memorised string.
    """
    rng = random.Random(seed)
    name = lambda k: "".join(rng.choice(SYLLABLES) for _ in range(k)).capitalize()  # noqa: E731
    paragraphs, qid = [], 0
    while qid < n_questions:
        x, context, qas = name(3), "", []
        for template, question in rng.sample(FACTS, len(FACTS)):
            y = name(2) if rng.random() < 0.7 else f"{name(2)} {name(2)}"
            sentence = template.format(x=x, y=y)
            start = len(context) + len(template.split("{y}")[0].format(x=x))  # y may also occur inside x
            context += sentence + " "
            qas.append({"id": f"{seed}-{qid}", "question": question.format(x=x), "answers": [{"text": y, "answer_start": start}]})
            qid += 1
        paragraphs.append({"context": context.strip(), "qas": qas})
    return {"version": "1.1", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT encoder (no QA head, like MiniLM) standing in for the student."""
    return tiny_bert(tmp_path_factory.mktemp("tiny-base"), qa_head=False)


def tiny_cfg(tiny_base: Path, **changes) -> TrainConfig:
    settings = {"student": str(tiny_base), "epochs": 3, "learning_rate": 3e-3, "batch_size": 8}
    return TrainConfig(**{**settings, **changes})


def test_training_writes_a_complete_student(tmp_path, tiny_base):
    train = write(tmp_path / "train.json", synthetic_squad(48, seed=1))
    validation = write(tmp_path / "validation.json", synthetic_squad(8, seed=2))
    out = tmp_path / "student"
    summary = train_reader(train, validation, out, tiny_cfg(tiny_base), quiet=True)

    assert summary["train_questions"] == 48 and summary["train_windows"] == 48
    assert summary["epochs"] == 3 and summary["seconds"] > 0 and summary["parameters"] > 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md", "training_log.json"} <= names
    assert not any(n.startswith("checkpoint") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student", "train.json", "validation.json"]  # no temp folders left

    log = json.loads((out / "training_log.json").read_text())
    losses = [p["loss"] for p in log["train"]]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 * 0.9
    assert [round(e["epoch"]) for e in log["eval"]] == [1, 2, 3]
    assert log["best_f1"] == max(e["f1"] for e in log["eval"]) == pytest.approx(summary["best_f1"], abs=0.01)
    card = (out / "README.md").read_text()
    assert "| train | 48 | 48 |" in card and "| validation | 8 | 8 |" in card and "best F1" in card

    # the saved model is the kept epoch: reading validation again gives its F1
    kept, _ = score_reader(Reader.load(out, device="cpu"), squad_examples(json.loads(validation.read_text())))
    assert kept["f1"] == pytest.approx(log["best_f1"], abs=1e-6)


def test_no_validation_questions_keeps_the_last_epoch_and_replaces_old_student(tmp_path, tiny_base):
    train = write(tmp_path / "train.json", synthetic_squad(16, seed=1))
    validation = write(tmp_path / "validation.json", {"version": "1.1", "data": []})
    out = tmp_path / "student"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    summary = train_reader(train, validation, out, tiny_cfg(tiny_base, epochs=1), quiet=True)
    assert summary["best_f1"] is None
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    log = json.loads((out / "training_log.json").read_text())
    assert log["eval"] == [] and log["best_epoch"] is None
    assert "No validation questions" in (out / "README.md").read_text()


def test_long_contexts_become_several_windows(tmp_path, tiny_base):
    data = synthetic_squad(8, seed=3)
    for paragraph in data["data"][0]["paragraphs"]:
        paragraph["context"] += " Nothing else happened there." * 60
    train = write(tmp_path / "train.json", data)
    validation = write(tmp_path / "validation.json", synthetic_squad(4, seed=4))
    summary = train_reader(train, validation, tmp_path / "student", tiny_cfg(tiny_base, epochs=1, max_length=128, doc_stride=32), quiet=True)
    assert summary["train_windows"] > 2 * summary["train_questions"]


def test_run_stage_trains_from_the_run_folder(tmp_path, tiny_base):
    run = Run(tmp_path / "run", quiet=True)
    write(run.path("train.json"), synthetic_squad(16, seed=1))
    write(run.path("validation.json"), synthetic_squad(4, seed=2))
    cfg = Config(train=tiny_cfg(tiny_base, epochs=1))
    summary = run_stage(run, cfg)
    assert set(summary) == {"train_questions", "feedback_pairs", "train_windows", "epochs", "seconds", "best_f1", "parameters"}
    assert summary["feedback_pairs"] == 0  # no RUN/feedback.jsonl
    assert (run.path("student") / "model.safetensors").is_file()
    assert not run.path(".student.tmp").exists() and not run.path(".student.work").exists()


def test_bad_inputs_fail_with_one_line(tmp_path, tiny_base):
    empty = write(tmp_path / "train.json", {"version": "1.1", "data": []})
    with pytest.raises(DistillqaError, match="no training questions"):
        train_reader(empty, empty, tmp_path / "student", tiny_cfg(tiny_base), quiet=True)
    with pytest.raises(DistillqaError, match="cannot load"):
        load_base_student(str(tmp_path / "no-such-model"), seed=0)


def test_fresh_head_is_seeded(tiny_base):
    a, _ = load_base_student(str(tiny_base), seed=7)
    b, _ = load_base_student(str(tiny_base), seed=7)
    c, _ = load_base_student(str(tiny_base), seed=8)
    assert torch.equal(a.qa_outputs.weight, b.qa_outputs.weight)
    assert not torch.equal(a.qa_outputs.weight, c.qa_outputs.weight)


def test_half_precision_checkpoint_trains_with_fp32_weights(tmp_path, tiny_base):
    # in fp16, AdamW's first step turns every weight NaN; the student must keep fp32 master weights
    half = tmp_path / "half"
    BertModel.from_pretrained(tiny_base).half().save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(half)
    model, _ = load_base_student(str(half), seed=0)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    train = write(tmp_path / "train.json", synthetic_squad(16, seed=1))
    validation = write(tmp_path / "validation.json", synthetic_squad(4, seed=2))
    train_reader(train, validation, tmp_path / "student", tiny_cfg(half, epochs=1), quiet=True)
    log = json.loads((tmp_path / "student" / "training_log.json").read_text())
    assert all(math.isfinite(p["loss"]) for p in log["train"])
    reloaded = Reader.load(tmp_path / "student", device="cpu").model
    assert all(torch.isfinite(p).all() for p in reloaded.parameters())


@pytest.mark.slow
def test_bundled_minilm_learns_a_learnable_pattern(tmp_path):
    """The real offline default student: F1 on held-out invented facts rises far above the untrained head."""
    train = write(tmp_path / "train.json", synthetic_squad(120, seed=1))
    validation_data = synthetic_squad(40, seed=2)
    validation = write(tmp_path / "validation.json", validation_data)
    cfg = TrainConfig(epochs=5, learning_rate=1e-4)  # 75 steps: tiny data needs more than 3 epochs
    model, tokenizer = load_base_student(None, cfg.seed)
    examples = squad_examples(validation_data)
    baseline, _ = score_reader(Reader(model, tokenizer, device="cpu"), examples)
    summary = train_reader(train, validation, tmp_path / "student", cfg, quiet=True)
    distilled, _ = score_reader(Reader.load(tmp_path / "student", device="cpu"), examples)
    assert baseline["f1"] < 30
    assert distilled["f1"] > baseline["f1"] + 40
    assert summary["best_f1"] == pytest.approx(distilled["f1"], abs=0.01)


@pytest.mark.slow
def test_torchrun_with_two_processes_trains_one_student(tmp_path, tiny_base):
    """`torchrun --nproc_per_node 2 -m distillqa train RUN` on CPU (DDP over gloo): the two
    processes share each global batch (the same optimizer steps as one process, not twice as
    many), rank 0 alone writes student/, the log and the manifest, and the validation F1 is
    within noise of one process's: the gap to it is no larger than between two one-process
    runs with different seeds (or 10 points, when those happen to agree)."""
    import subprocess
    import sys

    launch = {"one": [sys.executable, "-m", "distillqa"], "two": [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "-m", "distillqa"]}
    runs = {"one": ("one", 42), "one-reseeded": ("one", 7), "two": ("two", 42)}
    logs = {}
    for name, (launcher, seed) in runs.items():
        run = Run(tmp_path / name)
        run.root.mkdir()
        run.save_manifest({"stages": {}, "inputs": []})
        write(run.path("train.json"), synthetic_squad(96, seed=1))
        write(run.path("validation.json"), synthetic_squad(24, seed=2))
        settings = {"student": tiny_base, "epochs": 8, "learning_rate": 3e-3, "batch_size": 8, "seed": seed}
        done = subprocess.run([*launch[launcher], "train", str(run.root), "-q", *(f"--set=train.{k}={v}" for k, v in settings.items())],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        logs[name] = json.loads(run.path("student/training_log.json").read_text())
    assert [e["step"] for e in logs["two"]["eval"]] == [e["step"] for e in logs["one"]["eval"]]
    two = tmp_path / "two"
    assert not [p.name for p in two.iterdir() if p.name.startswith(".student")]  # no work or temp folder left
    assert (two / "log.txt").read_text().count("stage train: started") == 1
    assert Run(two).manifest["stages"]["train"]["status"] == "done"
    f1 = {name: log["best_f1"] for name, log in logs.items()}
    noise = abs(f1["one"] - f1["one-reseeded"])
    assert abs(f1["two"] - f1["one"]) <= max(10.0, 2 * noise), f1
