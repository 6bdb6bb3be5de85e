"""The run folder: manifest, fingerprints, skipping finished stages, rerunning changed ones."""

import json
from pathlib import Path

import pytest

from distillqa import io
from distillqa.config import Config, load_config
from distillqa.errors import DistillqaError
from distillqa.layout import MANIFEST
from distillqa.pipeline import Run, Stage

CALLS: list[str] = []


def _upper(run: Run, cfg: Config) -> dict:
    """A two-file stage used to exercise the runner: copies a.txt to b.txt, upper-cased."""
    CALLS.append("upper")
    text = run.path("a.txt").read_text()
    with io.atomic_open(run.path("b.txt")) as f:
        f.write(text.upper() * int(cfg.train.epochs))
    return {"chars": len(text)}


def _fail(run: Run, cfg: Config) -> dict:
    with io.atomic_open(run.path("c.txt")) as f:
        f.write("partial")
        raise DistillqaError("boom")


UPPER = Stage("upper", f"{__name__}:_upper", ("train",), ("a.txt",), ("b.txt",))
FAIL = Stage("fail", f"{__name__}:_fail", (), ("a.txt",), ("c.txt",))


@pytest.fixture
def run(tmp_path: Path) -> Run:
    CALLS.clear()
    r = Run(tmp_path / "run", quiet=True)
    r.root.mkdir()
    r.path("a.txt").write_text("abc")
    return r


def test_stage_runs_once_then_skips(run: Run):
    cfg = Config()
    assert run.run_stage(UPPER, cfg) == {"chars": 3}
    assert run.path("b.txt").read_text() == "ABC" * int(cfg.train.epochs)
    assert run.run_stage(UPPER, cfg)["up_to_date"] is True
    assert CALLS == ["upper"]
    rec = json.loads(run.path(MANIFEST).read_text())["stages"]["upper"]
    assert rec["status"] == "done" and rec["summary"] == {"chars": 3} and rec["seconds"] >= 0
    assert "torch" in json.loads(run.path(MANIFEST).read_text())["packages"]


def test_changed_input_or_setting_reruns(run: Run):
    cfg = Config()
    run.run_stage(UPPER, cfg)
    run.path("a.txt").write_text("xyz")
    run.run_stage(UPPER, cfg)
    assert run.path("b.txt").read_text() == "XYZ" * int(cfg.train.epochs)
    run.run_stage(UPPER, load_config(None, ["train.epochs=1"]))
    assert run.path("b.txt").read_text() == "XYZ"
    # a setting of another section does not rerun it
    run.run_stage(UPPER, load_config(None, ["train.epochs=1", "teacher.temperature=0.9"]))
    assert CALLS == ["upper"] * 3


def test_deleted_output_reruns(run: Run):
    cfg = Config()
    run.run_stage(UPPER, cfg)
    run.path("b.txt").unlink()
    run.run_stage(UPPER, cfg)
    assert CALLS == ["upper", "upper"]


def test_failed_stage_leaves_nothing_half_written(run: Run):
    with pytest.raises(DistillqaError):
        run.run_stage(FAIL, Config())
    assert not run.path("c.txt").exists()
    assert not list(run.root.glob(".c.txt.*"))
    rec = json.loads(run.path(MANIFEST).read_text())["stages"]["fail"]
    assert rec["status"] == "failed" and rec["error"] == "boom"


def test_missing_input_names_the_stage_to_run(tmp_path: Path):
    from distillqa.pipeline import STAGE_BY_NAME

    r = Run(tmp_path)
    with pytest.raises(DistillqaError, match="distillqa ingest"):
        r.run_stage(STAGE_BY_NAME["chunk"], Config())


def test_config_is_saved_and_reused(tmp_path: Path):
    r = Run(tmp_path)
    cfg = r.config(None, ["train.epochs=2"])
    assert cfg.train.epochs == 2
    again = Run(tmp_path).config(None, ["teacher.seed=5"])
    assert again.train.epochs == 2 and again.teacher.seed == 5


# -- what a settings change reruns ------------------------------------------------------------


def test_the_manifest_records_what_a_stage_wrote(run: Run):
    run.run_stage(UPPER, Config())
    wrote = json.loads(run.path(MANIFEST).read_text())["stages"]["upper"]["outputs"]["b.txt"]
    assert wrote["bytes"] == run.path("b.txt").stat().st_size and len(wrote["sha256"]) == 64


def test_an_edited_output_reruns_the_stage(run: Run):
    cfg = Config()
    run.run_stage(UPPER, cfg)
    run.path("b.txt").write_text("edited by hand")
    assert not run.is_current(UPPER, cfg)
    run.run_stage(UPPER, cfg)
    assert run.path("b.txt").read_text() == "ABC" * int(cfg.train.epochs)
    assert CALLS == ["upper", "upper"]


def test_a_failed_rerun_keeps_the_previous_output(run: Run):
    """Outputs are replaced only when the stage succeeds (train --force interrupted keeps the model)."""
    run.run_stage(UPPER, Config())
    before = run.path("b.txt").read_text()
    bad = Stage("upper", f"{__name__}:_fail", ("train",), ("a.txt",), ("b.txt",))
    with pytest.raises(DistillqaError):
        run.run_stage(bad, Config(), force=True)
    assert run.path("b.txt").read_text() == before


def test_every_stage_names_real_settings():
    from distillqa.pipeline import STAGES

    for stage in STAGES:
        for name in stage.sections:
            section, _, field = name.partition(".")
            assert section in Config.model_fields, (stage.name, name)
            assert not field or field in type(getattr(Config(), section)).model_fields, (stage.name, name)


def test_query_time_retrieval_settings_do_not_rebuild_the_index(tmp_path: Path):
    from distillqa.layout import DOCUMENTS
    from distillqa.pipeline import STAGE_BY_NAME

    r = Run(tmp_path)
    io.write_jsonl(r.path(DOCUMENTS), [{"doc_id": "d", "text": "Some text."}])
    index = STAGE_BY_NAME["index"]
    base = r.fingerprint(index, Config())
    query_time = load_config(None, ["retrieval.top_k=9", "retrieval.passages_per_answer=1", "retrieval.candidates=7", "retrieval.rrf_k=3"])
    assert r.fingerprint(index, query_time) == base
    assert r.fingerprint(index, load_config(None, ["retrieval.passage_tokens=100"])) != base
