"""`distillqa export`: the ONNX student answers as PyTorch does, and every way it can be missing,
broken or stale falls back to PyTorch with one warning."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from distillqa.cli import app
from distillqa.errors import DistillqaError
from distillqa.io import read_json
from distillqa.layout import STUDENT, STUDENT_ONNX
from distillqa.student.export import export_student
from distillqa.student.reader import EXPORT_NOTE, ONNX_FILES, OnnxReader, Reader, load_reader
from tests.helpers import HARBOUR, ORCHARD, tiny_bert

ASKED = [  # (passage, question)
    (HARBOUR, "Who built the harbour light?"),
    (HARBOUR, "What did the first lamp burn?"),
    (HARBOUR, "Who designed the paraffin burner?"),
    (HARBOUR, "Who was the last keeper?"),
    (HARBOUR, "Where does the light stand?"),
    (HARBOUR, "What does the building house today?"),
    (ORCHARD, "Who planted the apple trees?"),
    (ORCHARD, "What does the village hold every October?"),
]
CONTEXTS, QUESTIONS = (list(column) for column in zip(*ASKED))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A run folder with a tiny student and its export (fp32 and int8)."""
    run = tmp_path_factory.mktemp("export") / "run"
    # initializer_range 0.2: logits spread like a trained reader's, so the best span is not a
    # near-tie that any rounding flips
    tiny_bert(run / STUDENT, initializer_range=0.2)
    export_student(run / STUDENT, run / STUDENT_ONNX)
    return run


def test_export_writes_a_model_folder_and_a_note(exported: Path):
    folder = exported / STUDENT_ONNX
    for name in [*ONNX_FILES.values(), EXPORT_NOTE, "config.json", "tokenizer.json"]:
        assert (folder / name).is_file(), name
    note = read_json(folder / EXPORT_NOTE)
    assert set(note["formats"]) == {"onnx", "onnx-int8"}
    assert note["formats"]["onnx"]["max_logit_diff"] < 1e-3 and note["formats"]["onnx"]["same_best_tokens"]
    # int8 MatMul weights (embeddings and the fused attention stay fp32)
    assert (folder / ONNX_FILES["onnx-int8"]).stat().st_size < (folder / ONNX_FILES["onnx"]).stat().st_size
    assert len(note["source_sha256"]) == 64


def test_export_leaves_the_root_logger_as_it_was(exported: Path, tmp_path: Path):
    """onnxruntime's quantiser configures the root logger on import; after an export, the
    pipeline's own log records must not start printing."""
    import subprocess
    import sys

    code = (
        "import logging; from pathlib import Path; from distillqa.student.export import export_student; "
        f"export_student(Path({str(exported / STUDENT)!r}), Path({str(tmp_path / 'out')!r})); "
        "root = logging.getLogger(); print(len(root.handlers), root.level)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == ["0", str(logging.WARNING)]


def test_onnx_answers_as_torch_does(exported: Path):
    """fp32: the same spans and scores to 1e-4 (the same arithmetic in another order). int8: the
    same best span for nearly all questions and scores within 0.1: weights rounded to 1/127 of
    each tensor's range move logits by a few hundredths, which reorders only near-ties."""
    torch_reader = Reader.load(exported / STUDENT, device="cpu")
    expected = torch_reader.answer(QUESTIONS, CONTEXTS, top_k=5)
    fp32 = OnnxReader(exported / STUDENT_ONNX / ONNX_FILES["onnx"], "onnx").answer(QUESTIONS, CONTEXTS, top_k=5)
    for want, got in zip(expected, fp32):
        assert [(a.start, a.end) for a in got] == [(a.start, a.end) for a in want]
        assert np.allclose([a.score for a in got], [a.score for a in want], atol=1e-4)
    int8 = OnnxReader(exported / STUDENT_ONNX / ONNX_FILES["onnx-int8"], "onnx-int8").answer(QUESTIONS, CONTEXTS, top_k=1)
    same = [w[0].text == g[0].text for w, g in zip(expected, int8)]
    assert sum(same) >= len(QUESTIONS) - 1
    for want, got, agree in zip(expected, int8, same):
        if agree:
            assert abs(want[0].score - got[0].score) < 0.1


def test_auto_reads_with_the_fastest_export(exported: Path):
    assert load_reader(exported, "auto", device="cpu").runtime == "onnx-int8"
    assert load_reader(exported, "onnx", device="cpu").runtime == "onnx"
    assert load_reader(exported, "torch", device="cpu").runtime == "torch"
    # the export folder is a model folder of its own (copied elsewhere, without the PyTorch student)
    assert load_reader(exported / STUDENT_ONNX, "auto", device="cpu").runtime == "onnx-int8"


def _one_warning(caplog, *words: str) -> None:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert all(w in warnings[0] for w in words), warnings[0]


@pytest.mark.parametrize("damage", ["missing", "corrupt", "stale"])
def test_a_broken_export_falls_back_to_torch_with_one_warning(exported: Path, tmp_path: Path, caplog, damage: str):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    int8 = run / STUDENT_ONNX / ONNX_FILES["onnx-int8"]
    if damage == "missing":
        int8.unlink()
    elif damage == "corrupt":
        int8.write_bytes(int8.read_bytes()[:1000])
    else:  # the student was retrained after the export
        tiny_bert(run / STUDENT, seed=1)
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        reader = load_reader(run, "onnx-int8", device="cpu")
    assert reader.runtime == "torch"
    _one_warning(caplog, "PyTorch", *(["export"] if damage == "missing" else []))
    assert reader.answer(QUESTIONS[:1], CONTEXTS[:1])[0]  # and it answers


def test_a_run_without_export_reads_with_torch_silently(exported: Path, tmp_path: Path, caplog):
    run = tmp_path / "run"
    shutil.copytree(exported / STUDENT, run / STUDENT)
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        assert load_reader(run, "auto", device="cpu").runtime == "torch"
    assert not caplog.records


def test_an_unexportable_student_is_one_clear_error(tmp_path: Path):
    (tmp_path / "student").mkdir()
    with pytest.raises(DistillqaError):
        export_student(tmp_path / "student", tmp_path / STUDENT_ONNX)
    assert not (tmp_path / STUDENT_ONNX).exists()


def test_export_command(exported: Path, tmp_path: Path):
    """`distillqa export RUN --quantize none` writes fp32 only and records the choice in the run's
    config; a bad value is a usage error."""
    run = tmp_path / "run"
    shutil.copytree(exported / STUDENT, run / STUDENT)
    (run / "manifest.json").write_text('{"stages": {}, "inputs": []}')
    result = CliRunner().invoke(app, ["export", str(run), "--quantize", "none", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (run / STUDENT_ONNX / ONNX_FILES["onnx"]).is_file()
    assert not (run / STUDENT_ONNX / ONNX_FILES["onnx-int8"]).exists()
    assert "quantize: none" in (run / "config.yaml").read_text()
    again = CliRunner().invoke(app, ["export", str(run), "--quantize", "none"])
    assert again.exit_code == 0 and "up to date" in again.output
    bad = CliRunner().invoke(app, ["export", str(run), "--quantize", "int4"])
    assert bad.exit_code == 2
