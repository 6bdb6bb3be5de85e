"""`distillqa ask`: retrieval + reader over a run, the --context path, JSON shape and errors.

The reader here is a tiny BERT with random weights (built from a config, with the bundled
MiniLM tokenizer), so its answers are arbitrary spans: the tests check structure, offsets,
citations and ranking, not answer quality. `tiny_run` is shared with test_serve/test_browser.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillqa.app.ask import Asker, ask_command, rank_answers, read_context
from distillqa.cli import app
from distillqa.config import RetrievalConfig
from distillqa.errors import DistillqaError
from distillqa.io import write_jsonl
from distillqa.models import bundled_encoder
from distillqa.retrieval.index import Hit, Passage, PassageIndex

KEYS = {"answer", "score", "document", "page", "passage", "start", "end"}

HARBOUR = (
    "The harbour light of Port Elwin was built in 1854 by the engineer Margaret Hale. It stands on a granite "
    "ledge at the mouth of the Elwin River, and its white tower is 31 metres tall.\n\n"
    "The first lamp burned whale oil and could be seen from 14 miles away. In 1902 the oil lamp was replaced "
    "by a paraffin burner designed by Thomas Quill.\n\n"
    "The last keeper, Edward Vance, left the tower in 1986, when the light was automated. Today the building "
    "houses a small museum run by the Port Elwin Historical Society."
)
ORCHARD = (
    "The orchard behind the mill has twelve apple trees, planted in 1921 by the miller Ada Brook.\n\n"
    "Every October the village holds a cider festival in the orchard, with music and a pressing contest."
)


def tiny_document(doc_id: str, source: str, text: str) -> dict:
    """A documents.jsonl record with two pages split at the first paragraph break."""
    cut = text.index("\n\n")
    pages = [{"number": 1, "start": 0, "end": cut}, {"number": 2, "start": cut + 2, "end": len(text)}]
    return {"doc_id": doc_id, "source": f"/docs/{source}", "title": doc_id.title(), "text": text, "pages": pages}


TINY_DOCUMENTS = [tiny_document("harbour", "harbour.txt", HARBOUR), tiny_document("orchard", "orchard.md", ORCHARD)]


def tiny_reader(folder: Path) -> Path:
    """A random-weight 2-layer BERT QA model with the bundled MiniLM tokenizer, saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertForQuestionAnswering(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_run(root: Path, documents: list[dict] = TINY_DOCUMENTS, passage_tokens: int = 40) -> Path:
    """A run folder with documents.jsonl, index/ (bundled MiniLM embedder) and a tiny student/."""
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "documents.jsonl", documents)
    (root / "manifest.json").write_text(json.dumps({"stages": {}, "inputs": []}))
    cfg = RetrievalConfig(passage_tokens=passage_tokens, passage_overlap_tokens=8)
    PassageIndex.build(documents, cfg).save(root / "index")
    tiny_reader(root / "student")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("ask") / "run")


@pytest.fixture(scope="module")
def asker(run_dir: Path) -> Asker:
    return Asker(run_dir)


def check_answers(answers: list[dict], top_k: int, documents: dict[str, str] | None) -> None:
    """Shape, offsets, order and distinctness that every answer list must have."""
    assert 1 <= len(answers) <= top_k
    for a in answers:
        assert set(a) == KEYS
        assert a["passage"][a["start"] : a["end"]] == a["answer"] and a["answer"].strip()
        assert 0.0 <= a["score"] <= 1.0
        if documents is None:
            assert a["document"] is None and a["page"] is None
        else:
            text = documents[a["document"]]
            assert a["passage"] in text
            offset = text.index(a["passage"]) + a["start"]
            assert a["page"] == (1 if offset < text.index("\n\n") else 2)  # the answer's own page
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert len({a["answer"].lower() for a in answers}) == len(answers)


# -- ranking (no model) -----------------------------------------------------------------------


@dataclass
class FakeSpan:
    text: str
    score: float
    start: int
    end: int


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
    answers = rank_answers(hits, spans, top_k=5, page_of=lambda doc_id, offset: pages[offset])
    assert [(a["answer"], a["score"], a["page"], a["start"]) for a in answers] == [
        ("Margaret Hale", 0.5, 3, 0),
        ("Tom Quill", 0.225, 5, 0),
    ]
    assert rank_answers(hits, spans, top_k=1, page_of=lambda d, o: None)[0]["answer"] == "Margaret Hale"
    assert rank_answers([], [], top_k=3, page_of=lambda d, o: None) == []


def test_overlap_only_counts_within_one_document():
    other = Passage("e-p0", "e", "E", "e.pdf", 7, 0, 15, "The Hale family")
    hits = [_hit(0, "Hale.", 0.03), Hit(other, 0.03, 2, 2)]
    spans = [[FakeSpan("Hale", 0.6, 0, 4)], [FakeSpan("The Hale", 0.5, 0, 8), FakeSpan("hale", 0.4, 4, 8)]]
    answers = rank_answers(hits, spans, top_k=3, page_of=lambda d, o: 1)
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


def test_asker_errors(tmp_path: Path, run_dir: Path, asker: Asker):
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
    (no_student / "index").symlink_to(run_dir / "index")
    with pytest.raises(DistillqaError, match="distillqa train"):
        Asker(no_student)


# -- a given context ----------------------------------------------------------------------------


def test_read_context_with_model_or_run_folder(run_dir: Path):
    for target in (run_dir, run_dir / "student"):
        answers = read_context(target, "Who designed the burner?", HARBOUR, top_k=3)
        check_answers(answers, 3, None)
        assert all(a["passage"] == HARBOUR for a in answers)


# -- the CLI -----------------------------------------------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(app, ["ask", *args])


def test_cli_json_has_exactly_the_documented_shape(run_dir: Path):
    result = _cli(str(run_dir), "Who built the harbour light?", "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["answers"]
    check_answers(data["answers"], 2, {"harbour.txt": HARBOUR, "orchard.md": ORCHARD})


def test_cli_context_and_context_file(run_dir: Path, tmp_path: Path):
    result = _cli(str(run_dir / "student"), "Who designed the burner?", "--context", ORCHARD, "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)["answers"]
    check_answers(answers, 3, None)
    assert answers[0]["passage"] == ORCHARD

    passage = tmp_path / "passage.txt"
    passage.write_text(HARBOUR, encoding="utf-8")
    result = _cli(str(run_dir), "Who designed the burner?", "--context-file", str(passage), "--top-k", "1", "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)["answers"]
    check_answers(answers, 1, None)
    assert answers[0]["passage"] == HARBOUR


def test_cli_terminal_output_cites_and_highlights(run_dir: Path, asker: Asker):
    result = _cli(str(run_dir), "Who built the harbour light?", "--top-k", "1")
    assert result.exit_code == 0, result.output
    best = asker.ask("Who built the harbour light?", top_k=1)[0]
    assert best["answer"] in result.stdout
    assert f"{best['document']}, page {best['page']}" in result.stdout
    assert f"score {best['score']:.3f}" in result.stdout


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
def test_cli_errors_are_one_line(run_dir: Path, tmp_path: Path, args: list[str], message: str):
    result = _cli(*(a.format(run=run_dir, tmp=tmp_path) for a in args))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ask_command_prints_json(run_dir: Path, capsys):
    ask_command(run_dir, "What grows in the orchard?", top_k=2, as_json=True)
    check_answers(json.loads(capsys.readouterr().out)["answers"], 2, {"harbour.txt": HARBOUR, "orchard.md": ORCHARD})


def test_asker_can_read_with_another_student(run_dir: Path, tmp_path: Path):
    """The run's index with a student from elsewhere (the devset benchmark compares several)."""
    other = tiny_reader(tmp_path / "other")
    asker = Asker(run_dir, model_dir=other)
    assert asker.model_dir == other
    check_answers(asker.ask("Who built the harbour light?", top_k=2), 2, {"harbour.txt": HARBOUR, "orchard.md": ORCHARD})
