"""`distillqa ask`: retrieval + reader over a run, the --context path, JSON shape and errors.

The reader here is a tiny BERT with random weights (built from a config, with the bundled
MiniLM tokenizer), so its answers are arbitrary spans: the tests check structure, offsets,
citations and ranking, not answer quality. The run is conftest's session-wide `small_run`.
"""

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillqa.app.ask import Asker, ask_command, rank_answers, read_context
from distillqa.cli import app
from distillqa.config import AnswerConfig, RetrievalConfig
from distillqa.errors import DistillqaError
from distillqa.records import confidence_words
from distillqa.retrieval.index import Hit, Passage
from distillqa.student.ranking import AnswerRanker
from tests.helpers import HARBOUR, ORCHARD, check_answers, tiny_bert


@pytest.fixture(scope="module")
def asker(small_run: Path) -> Asker:
    return Asker(small_run)


# -- ranking (no model) -----------------------------------------------------------------------


@dataclass
class FakeSpan:
    text: str
    score: float
    start: int
    end: int


# the reader's and the retriever's scores only: no rules, no sentence encoder
PLAIN = AnswerRanker(AnswerConfig(type_rules=False, sentence_sharpness=0, reader_weight=1))


def _hit(n: int, text: str, score: float) -> Hit:
    passage = Passage(f"d-p{n}", "d", "D", "d.pdf", 1, 100 * n, 100 * n + len(text), text)
    return Hit(passage, score, n, n)


def test_rank_answers_weights_by_retrieval_and_dedupes():
    hits = [_hit(0, "Margaret Hale built it.", 0.04), _hit(1, "It was MARGARET HALE!", 0.02), _hit(2, "Tom Quill.", 0.01)]
    spans = [
        [FakeSpan("Margaret Hale", 0.5, 0, 13), FakeSpan("Hale built", 0.3, 9, 19)],  # overlaps a better one
        [FakeSpan("MARGARET HALE", 0.9, 7, 20)],  # same answer, lower after weighting: 0.9 * 0.5
        [FakeSpan("Tom Quill", 0.9, 0, 9)],  # 0.9 * 0.25
    ]
    pages = {0: 3, 9: 3, 107: 4, 200: 5}
    answers = rank_answers("Who?", hits, spans, top_k=5, page_of=lambda doc_id, offset: pages[offset], ranker=PLAIN)
    assert [(a["answer"], a["score"], a["page"], a["start"]) for a in answers] == [
        ("Margaret Hale", 0.5, 3, 0),
        ("Tom Quill", 0.225, 5, 0),
    ]
    assert rank_answers("Who?", hits, spans, top_k=1, page_of=lambda d, o: None, ranker=PLAIN)[0]["answer"] == "Margaret Hale"
    assert rank_answers("Who?", [], [], top_k=3, page_of=lambda d, o: None, ranker=PLAIN) == []
    # retrieval_weight 0: retrieval only chooses the passages, the reader's score alone ranks
    flat = AnswerRanker(AnswerConfig(type_rules=False, sentence_sharpness=0, reader_weight=1, retrieval_weight=0))
    assert rank_answers("Who?", hits, spans, top_k=1, page_of=lambda d, o: None, ranker=flat)[0]["answer"] == "MARGARET HALE"


def test_overlap_only_counts_within_one_document():
    other = Passage("e-p0", "e", "E", "e.pdf", 7, 0, 15, "The Hale family")
    hits = [_hit(0, "Hale.", 0.03), Hit(other, 0.03, 2, 2)]
    spans = [[FakeSpan("Hale", 0.6, 0, 4)], [FakeSpan("The Hale", 0.5, 0, 8), FakeSpan("hale", 0.4, 4, 8)]]
    answers = rank_answers("Who?", hits, spans, top_k=3, page_of=lambda d, o: 1, ranker=PLAIN)
    # same offsets in another document do not overlap; the same text anywhere is one answer
    assert [(a["answer"], a["document"]) for a in answers] == [("Hale", "d.pdf"), ("The Hale", "e.pdf")]


# -- the Asker --------------------------------------------------------------------------------


def test_asker_answers_with_citations(asker: Asker):
    documents = {"harbour.txt": HARBOUR, "orchard.md": ORCHARD}
    for top_k in (1, 3, 5):
        answers = asker.ask("Who built the harbour light?", top_k=top_k)
        check_answers(answers, top_k, documents)
    assert asker.model_name.endswith("/student")


def test_asker_reads_enough_passages(asker: Asker, monkeypatch):
    seen = []
    real = asker.reader.answer

    def spy(questions, contexts, **kw):
        seen.append(len(contexts))
        return real(questions, contexts, **kw)

    monkeypatch.setattr(asker.reader, "answer", spy)
    asker.ask("When was the orchard planted?", top_k=1)
    asker.ask("When was the orchard planted?", top_k=2)
    n = len(asker.index)
    assert seen == [min(n, 5), min(n, 6)]  # max(retrieval.top_k=5, 3 × top_k)


def test_asker_reads_retrieval_settings_from_config_yaml(small_run: Path, tmp_path: Path, monkeypatch):
    """`retrieval.top_k` and the other query-time settings are the run's config.yaml as it is when
    `ask` loads, not what the index was built with: changing them needs no new index/."""
    from distillqa.layout import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    for name in ("index", "student", "documents.jsonl", "manifest.json"):
        (run / name).symlink_to(small_run / name)
    meta = (run / "index" / "meta.json").read_bytes()
    RunFolder(run).config(overrides=["retrieval.top_k=2", "retrieval.passages_per_answer=1",
                                     "retrieval.candidates=3", "retrieval.rrf_k=7",
                                     "retrieval.hnsw_ef_search=64"])
    asker = Asker(run)
    searches = []
    real = asker.index.search
    monkeypatch.setattr(
        asker.index, "search", lambda q, k, query_vector, **kw: searches.append((k, kw)) or real(q, k, query_vector, **kw)
    )
    assert len(asker.ask("Who built the harbour light?", top_k=1)) == 1
    assert searches == [(2, {"candidates": 3, "rrf_k": 7, "ef_search": 64})]  # max(top_k=2, 1 × 1) passages
    assert (run / "index" / "meta.json").read_bytes() == meta
    # without config.yaml (tiny test runs): the defaults, and nothing is written
    assert Asker(small_run).retrieval == RetrievalConfig() and not (small_run / "config.yaml").exists()


def test_asker_errors(tmp_path: Path, small_run: Path, asker: Asker):
    with pytest.raises(DistillqaError, match="question is empty"):
        asker.ask("  ", top_k=3)
    with pytest.raises(DistillqaError, match="no such run folder"):
        Asker(tmp_path / "missing")
    no_index = tmp_path / "no-index"
    no_index.mkdir()
    (no_index / "manifest.json").write_text("{}")
    with pytest.raises(DistillqaError, match=r"run `distillqa index .*no-index` first"):
        Asker(no_index)
    no_student = tmp_path / "no-student"
    no_student.mkdir()
    (no_student / "manifest.json").write_text("{}")
    (no_student / "index").symlink_to(small_run / "index")
    with pytest.raises(DistillqaError, match="distillqa train"):
        Asker(no_student)


# -- a given context ----------------------------------------------------------------------------


def test_read_context_with_model_or_run_folder(small_run: Path):
    for target in (small_run, small_run / "student"):
        answers = read_context(target, "Who designed the burner?", HARBOUR, top_k=3)
        check_answers(answers, 3, None)
        assert all(a["passage"] == HARBOUR for a in answers)


# -- the CLI -----------------------------------------------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(app, ["ask", *args])


def test_cli_json_has_exactly_the_documented_shape(small_run: Path):
    result = _cli(str(small_run), "Who built the harbour light?", "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["found", "not_found_below", "answers"]
    assert data["not_found_below"] == AnswerConfig().not_found_below
    assert data["found"] == (data["answers"][0]["confidence"] >= data["not_found_below"])
    check_answers(data["answers"], 2, {"harbour.txt": HARBOUR, "orchard.md": ORCHARD})


def test_cli_context_and_context_file(small_run: Path, tmp_path: Path):
    result = _cli(str(small_run / "student"), "Who designed the burner?", "--context", ORCHARD, "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)["answers"]
    check_answers(answers, 3, None)
    assert answers[0]["passage"] == ORCHARD

    passage = tmp_path / "passage.txt"
    passage.write_text(HARBOUR, encoding="utf-8")
    result = _cli(str(small_run), "Who designed the burner?", "--context-file", str(passage), "--top-k", "1", "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)["answers"]
    check_answers(answers, 1, None)
    assert answers[0]["passage"] == HARBOUR


def test_cli_terminal_output_cites_and_highlights(small_run: Path, asker: Asker):
    result = _cli(str(small_run), "Who built the harbour light?", "--top-k", "1")
    assert result.exit_code == 0, result.output
    best = asker.ask("Who built the harbour light?", top_k=1)[0]
    assert best["answer"] in result.stdout
    assert f"{best['document']}, page {best['page']}" in result.stdout
    assert f"({best['confidence']:.0%})" in result.stdout


@pytest.mark.parametrize(("threshold", "found"), [(0.0, True), (1.0, False)])
def test_not_found_below_the_threshold_shows_guesses(small_run: Path, tmp_path: Path, threshold: float, found: bool):
    """`answer.not_found_below` from the run's config.yaml: below it the answers are guesses."""
    from distillqa.layout import RunFolder

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    RunFolder(run).config(overrides=[f"answer.not_found_below={threshold}"])
    data = json.loads(_cli(str(run), "Who built the harbour light?", "--json").stdout)
    assert data["found"] is found and data["not_found_below"] == threshold and data["answers"]
    text = _cli(str(run), "Who built the harbour light?").stdout
    assert ("do not seem to answer this question" in text) is not found
    assert data["answers"][0]["answer"] in text  # shown either way: as the answer or as a guess
    words = "unlikely" if not found else ("likely right" if data["answers"][0]["confidence"] >= 0.7 else "may be right")
    assert words in text


def test_confidence_words():
    assert confidence_words(0.9, 0.5) == ("likely right", "green")
    assert confidence_words(0.6, 0.5) == ("may be right", "yellow")
    assert confidence_words(0.4, 0.5) == ("unlikely", "red")
    assert confidence_words(0.8, 0.85)[0] == "unlikely"  # the threshold wins over the words


# -- many questions from a file ---------------------------------------------------------------


def test_batch_questions_text_to_jsonl_and_csv(small_run: Path, asker: Asker, tmp_path: Path):
    questions = tmp_path / "questions.txt"
    questions.write_text("Who built the harbour light?\n\n  What grows in the orchard?\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    result = _cli(str(small_run), "--questions", str(questions), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "2 questions answered" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["question"]) for r in rows] == [("1", "Who built the harbour light?"), ("3", "What grows in the orchard?")]
    for r in rows:
        check_answers(r["answers"], 1, {"harbour.txt": HARBOUR, "orchard.md": ORCHARD})  # --top-k defaults to 1
        assert r["answers"] == asker.ask(r["question"], top_k=1) and set(r) == {"id", "question", "found", "not_found_below", "answers"}

    table = tmp_path / "answers.csv"
    result = _cli(str(small_run), "--questions", str(questions), "--output", str(table), "--top-k", "2")
    assert result.exit_code == 0, result.output
    with open(table, newline="", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["id"], r["rank"]) for r in csv_rows] == [("1", "1"), ("1", "2"), ("3", "1"), ("3", "2")]
    first = asker.ask("Who built the harbour light?", top_k=2)[0]
    assert csv_rows[0]["answer"] == first["answer"] and float(csv_rows[0]["confidence"]) == first["confidence"]
    assert csv_rows[0]["document"] == first["document"] and csv_rows[0]["page"] == str(first["page"])


def test_batch_questions_jsonl_with_ids_to_stdout(small_run: Path, tmp_path: Path):
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"id": "a7", "question": "Who was the last keeper?"}\n{"question": "Who planted the trees?"}\n')
    result = _cli(str(small_run), "--questions", str(questions))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a7", "2"] and all(len(r["answers"]) == 1 for r in rows)


@pytest.mark.parametrize(
    ("lines", "args", "message"),
    [
        ("Who?\n", ["Who?"], "give no QUESTION"),
        ("Who?\n", ["--output", "{tmp}/out.txt"], "must be a file ending in .jsonl or .csv"),
        ("\n \n", [], "no questions in the file"),
        ('{"question": 3}\n', [], 'line 1 needs a non-empty "question"'),
        ('{"question": "ok"}\n{broken\n', [], "line 2 is not JSON"),
    ],
)
def test_batch_questions_errors_are_one_line(small_run: Path, tmp_path: Path, lines: str, args: list[str], message: str):
    questions = tmp_path / ("q.jsonl" if lines.startswith("{") else "q.txt")
    questions.write_text(lines)
    result = _cli(str(small_run), "--questions", str(questions), *(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.txt").exists()


def test_ask_needs_a_question_and_output_needs_questions(small_run: Path, tmp_path: Path):
    assert "give a QUESTION, or --questions FILE" in _cli(str(small_run)).stderr
    assert "--output writes the answers of --questions" in _cli(str(small_run), "Who?", "--output", str(tmp_path / "a.csv")).stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{run}", "   "], "question is empty"),
        (["{tmp}", "Who?"], "distillqa index"),
        (["{run}", "Who?", "--context-file", "{tmp}/nope.txt"], "nope.txt: context file not found"),
        (["{run}", "Who?", "--context", "x", "--context-file", "{tmp}/nope.txt"], "not both"),
        (["{run}", "Who?", "--context", " \n"], "context is empty"),
        (["{tmp}", "Who?", "--context", "Some text."], "not a run folder with a student"),
    ],
)
def test_cli_errors_are_one_line(small_run: Path, tmp_path: Path, args: list[str], message: str):
    result = _cli(*(a.format(run=small_run, tmp=tmp_path) for a in args))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ask_command_prints_json(small_run: Path, capsys):
    ask_command(small_run, "What grows in the orchard?", top_k=2, as_json=True)
    check_answers(json.loads(capsys.readouterr().out)["answers"], 2, {"harbour.txt": HARBOUR, "orchard.md": ORCHARD})


def test_asker_can_read_with_another_student(small_run: Path, tmp_path: Path):
    """The run's index with a student from elsewhere (the devset benchmark compares several)."""
    other = tiny_bert(tmp_path / "other")
    asker = Asker(small_run, model_dir=other)
    assert asker.model_dir == other
    check_answers(asker.ask("Who built the harbour light?", top_k=2), 2, {"harbour.txt": HARBOUR, "orchard.md": ORCHARD})
