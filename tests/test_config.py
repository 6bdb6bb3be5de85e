import json
from pathlib import Path

import pytest

from distillqa.config import Config, load_config
from distillqa.errors import DistillqaError


def test_defaults_validate():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.teacher.backend == "llamacpp"
    assert cfg.train.max_length == 192 and cfg.train.doc_stride == 64


def test_yaml_and_overrides(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 2\nteacher:\n  temperature: 0.0\n")
    cfg = load_config(f, ["train.learning_rate=3e-5", "generate.mode=qa", "teacher.model=null"])
    assert cfg.train.epochs == 2
    assert cfg.train.learning_rate == pytest.approx(3e-5)
    assert cfg.generate.mode == "qa"
    assert cfg.teacher.temperature == 0.0 and cfg.teacher.model is None


def test_toml(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text('[chunk]\nmax_tokens = 256\n[teacher]\nbackend = "openai"\nbase_url = "http://127.0.0.1:1"\n')
    cfg = load_config(f)
    assert cfg.chunk.max_tokens == 256 and cfg.teacher.backend == "openai"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epochs=-1"], "train.epochs"),
        (["teacher.backend=gpt"], "teacher.backend"),
        (["train.nonsense=1"], "train.nonsense"),
        (["epochs=3"], "section.key=value"),
    ],
)
def test_bad_settings_are_one_line_errors(overrides, message):
    with pytest.raises(DistillqaError) as e:
        load_config(None, overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path: Path):
    with pytest.raises(DistillqaError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(DistillqaError, match="not valid YAML"):
        load_config(bad)


def test_section_hash_only_depends_on_named_sections():
    a, b = Config(), load_config(None, ["train.epochs=1"])
    assert a.section_hash("teacher", "generate") == b.section_hash("teacher", "generate")
    assert a.section_hash("train") != b.section_hash("train")


def test_example_config_lists_every_default():
    """examples/config.yaml documents every setting; it must stay valid and equal to the defaults."""
    import yaml

    from tests.conftest import REPO

    path = REPO / "examples" / "config.yaml"
    assert load_config(path) == Config()
    listed = yaml.safe_load(path.read_text())
    for name, section in Config.model_fields.items():
        assert set(listed[name]) == set(section.annotation.model_fields), name  # secrets too (never saved)


def test_a_secret_is_never_dumped():
    """pdf_password is used in memory but never reaches config.yaml or manifest.json."""
    cfg = load_config(None, ["ingest.pdf_password=hunter2"])
    assert cfg.ingest.pdf_password == "hunter2"
    assert "hunter2" not in json.dumps(cfg.model_dump(mode="json"))


def test_chunk_overlap_must_be_smaller_than_chunk():
    with pytest.raises(DistillqaError, match="overlap_tokens must be smaller"):
        load_config(None, ["chunk.max_tokens=64", "chunk.overlap_tokens=64"])


def test_field_level_hash():
    a, b = Config(), load_config(None, ["teacher.temperature=0.9"])
    assert a.section_hash("teacher.model", "teacher.backend") == b.section_hash("teacher.model", "teacher.backend")
    assert a.section_hash("teacher") != b.section_hash("teacher")


# Every NOT_HASHED setting with a changed value (the test below fails when one is added untested).
UNHASHED_CHANGES = [
    "teacher.isolate=false",
    "teacher.n_threads=2",
    "teacher.n_gpu_layers=10",
    "teacher.weight_repacking=true",
    "teacher.batch_size=2",
    "teacher.base_url=http://127.0.0.1:1",
    "teacher.api_key_env=OTHER_KEY",
    "teacher.concurrency=16",
    "teacher.timeout_s=5",
    "teacher.max_retries=0",
    "generate.max_chunks=5",
    "generate.wave_requests=3",
    "serve.allowed_hosts=[qa.example.org]",
    "serve.batch_size=8",
    "serve.batch_wait_ms=0",
    "serve.max_queue=16",
    "train.eval_batch_size=4",
    "retrieval.top_k=9",
    "retrieval.passages_per_answer=1",
    "retrieval.candidates=20",
    "retrieval.rrf_k=10",
    "retrieval.hnsw_ef_search=16",
    "ingest.workers=2",
    "chunk.workers=2",
    "feedback.max_bytes=5000",
    "answer.not_found_below=0.4",
    "answer.people_correction=null",
]


def test_settings_that_do_not_change_output_are_not_hashed():
    from distillqa.config import is_hashed

    marked = {
        f"{name}.{key}"
        for name in Config.model_fields
        for key, field in type(getattr(Config(), name)).model_fields.items()
        if not is_hashed(field)
    }
    assert {c.partition("=")[0] for c in UNHASHED_CHANGES} == marked
    base = Config()
    for change in UNHASHED_CHANGES:
        section = change.partition(".")[0]
        changed = load_config(None, [change])
        assert changed != base, change
        assert changed.section_hash(section) == base.section_hash(section), change
    # named on its own (a stage's scope), an unhashed setting is hashed
    five = load_config(None, ["generate.max_chunks=5"])
    assert five.section_hash("generate.max_chunks") != base.section_hash("generate.max_chunks")


@pytest.mark.parametrize(
    "change",
    ["teacher.temperature=0.9", "teacher.model=other.gguf", "generate.mode=qa", "questions.min_sentence_words=6",
     "retrieval.passage_tokens=100", "retrieval.embedder=other-embedder"],
)
def test_settings_that_change_output_are_hashed(change: str):
    section = change.partition(".")[0]
    assert load_config(None, [change]).section_hash(section) != Config().section_hash(section)


def test_rule_limits_must_fit_the_dataset_filter():
    for key in ("max_answer_words", "max_question_words"):
        with pytest.raises(DistillqaError) as e:
            load_config(None, [f"questions.{key}=41"])
        assert f"questions.{key} (41) must not exceed dataset.{key}" in str(e.value)
        assert "\n" not in str(e.value) and " at :" not in str(e.value)
        raised = load_config(None, [f"questions.{key}=41", f"dataset.{key}=41"])
        assert getattr(raised.questions, key) == 41
