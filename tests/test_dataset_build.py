"""The build-dataset stage end to end on a small hand-made run folder, plus its window/split helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillqa.config import Config, DatasetConfig
from distillqa.dataset.build import context_window, run_stage
from distillqa.dataset.squad import seeded_order, validation_size
from distillqa.errors import DistillqaError
from distillqa.io import read_json, read_jsonl
from distillqa.pipeline import STAGE_BY_NAME, Run

SENTENCES = [
    "Granite is an intrusive igneous rock that cools slowly deep underground.",  # 0
    "Basalt forms when lava cools quickly at the surface of the Earth.",
    "Sandstone is a sedimentary rock made mostly of quartz grains.",
    "Limestone often contains the fossil shells of marine organisms.",
    "Marble is produced when limestone is heated and squeezed during metamorphism.",
    "Slate splits into thin sheets and was once used for school blackboards.",  # 5
    "The Mohs scale ranks minerals from talc, the softest, to diamond, the hardest.",
    "Plate tectonics explains why earthquakes cluster along plate boundaries.",
    "The San Andreas Fault marks the boundary between the Pacific and North American plates.",
    "Mount Everest rises about 8,849 metres above sea level.",
    "Glaciers carved the fjords of Norway during the last ice age.",  # 10 (page 2 from here)
    "Radiometric dating measures the decay of isotopes such as uranium-238.",
    "The Earth is estimated to be about 4.54 billion years old.",
    "Charles Lyell popularised the principle of uniformitarianism in 1830.",
    "James Hutton is often called the father of modern geology.",
    "Weathering breaks rocks down, while erosion carries the fragments away.",  # 15
    "Rivers deposit sediment in deltas where they meet the sea.",
    "The Grand Canyon exposes nearly two billion years of rock layers.",
    "Volcanic ash can travel thousands of kilometres in the upper atmosphere.",
    "Geologists use seismographs to record the waves produced by earthquakes.",
]
# Two paragraphs; page 2 starts with sentence 10.
PARAGRAPH_1 = " ".join(SENTENCES[:10])
TEXT = PARAGRAPH_1 + "\n\n" + " ".join(SENTENCES[10:])
DESERT = "The Sahara is the largest hot desert in the world. It covers much of North Africa."


def sentence_start(i: int) -> int:
    return TEXT.index(SENTENCES[i])


def sentence_end(i: int) -> int:
    return sentence_start(i) + len(SENTENCES[i])


# chunk index -> (first sentence, last sentence): consecutive chunks share one sentence.
CHUNK_SENTENCES = [(0, 5), (5, 10), (10, 15), (15, 19)]

PAIRS = {
    "geology-aaaa-0000": [
        ("What kind of rock cools slowly deep underground?", "Granite", "answer-first"),  # exact
        ("Where does basalt form?", "at the surface of the earth.", "teacher-qa"),  # normalized (case)
        ("What is sandstone mostly made of?", "quartz grains", "answer-first"),
        ("What do limestone rocks often contain?", "the fossil shells of marine organizms", "teacher-qa"),  # fuzzy
        ("What is the capital of France?", "Paris", "teacher-qa"),  # not_found
        ("Question 1", "Granite", "teacher-qa"),  # placeholder
        ("Tell me about marble", "limestone", "cloze"),  # not_a_question
    ],
    "geology-aaaa-0001": [
        ("Which scale ranks minerals by hardness?", "The Mohs scale", "answer-first"),
        ("What do earthquakes cluster along?", "plate boundaries", "answer-first"),
        ("How high does Mount Everest rise above sea level?", "about 8,849 metres", "teacher-qa"),
        ("What carved the fjords of Norway?", "Glaciers", "cloze"),
        # Only in chunk 0: grounded in the document, then dropped as a duplicate.
        ("what kind of rock cools slowly deep underground", "Granite", "teacher-qa"),
        ("Which scale ranks the minerals by hardness?", "Mohs scale", "teacher-qa"),  # near_duplicate
    ],
    "geology-aaaa-0002": [
        ("How old is the Earth estimated to be?", "about 4.54 billion years", "answer-first"),  # page 2
        ("Who popularised uniformitarianism?", "Charles Lyell", "answer-first"),
        ("Who is called the father of modern geology?", "James Hutton", "teacher-qa"),
        ("What did Lyell and Hutton say?", " ".join(SENTENCES[13:15]), "teacher-qa"),  # answer_too_long
    ],
    "geology-aaaa-0003": [
        ("What does the Grand Canyon expose?", "nearly two billion years of rock layers", "answer-first"),
        ("What do geologists use to record earthquake waves?", "seismographs", "answer-first"),
        ("How far can volcanic ash travel?", "thousands of kilometres", "teacher-qa"),
        ("How far can volcanic ash be carried?", "a very great distance indeed", "teacher-qa"),  # not grounded
        ("What is this?", "...", "teacher-qa"),  # empty
        (
            "Weathering breaks rocks down, while erosion carries the fragments away; where do rivers deposit sediment?",
            "in deltas",
            "teacher-qa",
        ),  # copies_passage
    ],
    "sahara-bbbb-0000": [
        ("What is the largest hot desert in the world?", "The Sahara", "answer-first"),
        ("Which region does the Sahara cover much of?", "North Africa", "teacher-qa"),
    ],
}
EXPECTED_DROPS = {
    "not_found": 2,
    "placeholder": 1,
    "not_a_question": 1,
    "duplicate": 1,
    "near_duplicate": 1,
    "answer_too_long": 1,
    "empty": 1,
    "copies_passage": 1,
}


def write_run(root: Path, pairs: dict[str, list[tuple[str, str, str]]] = PAIRS, desert: str = DESERT) -> Run:
    """documents.jsonl, chunks.jsonl and generations.jsonl in the design's formats."""
    root.mkdir(parents=True, exist_ok=True)
    page_2 = sentence_start(10)
    documents = [
        {"doc_id": "geology-aaaa", "source": "/tmp/geology.pdf", "sha256": "a" * 64, "format": "pdf",
         "title": "Geology", "text": TEXT,
         "pages": [{"number": 1, "start": 0, "end": page_2}, {"number": 2, "start": page_2, "end": len(TEXT)}]},
        {"doc_id": "sahara-bbbb", "source": "/tmp/sahara.txt", "sha256": "b" * 64, "format": "txt",
         "title": "Sahara", "text": desert, "pages": [{"number": 1, "start": 0, "end": len(desert)}]},
    ]
    chunks = []
    for i, (first, last) in enumerate(CHUNK_SENTENCES):
        start, end = sentence_start(first), sentence_end(last)
        chunks.append({"chunk_id": f"geology-aaaa-{i:04d}", "doc_id": "geology-aaaa", "index": i, "start": start,
                       "end": end, "text": TEXT[start:end], "page_start": 1, "page_end": 2, "n_tokens": 100})
    chunks.append({"chunk_id": "sahara-bbbb-0000", "doc_id": "sahara-bbbb", "index": 0, "start": 0,
                   "end": len(desert), "text": desert, "page_start": 1, "page_end": 1, "n_tokens": 20})
    generations = [
        {"chunk_id": chunk_id, "mode": "answer-first", "teacher": "llamacpp:test.gguf",
         "attempts": [{"route": "teacher-qa", "seed": 1, "raw": "...", "ok": True, "error": None}],
         "pairs": [{"question": q, "answer": a, "route": r} for q, a, r in chunk_pairs]}
        for chunk_id, chunk_pairs in pairs.items()
    ]
    for name, records in (("documents.jsonl", documents), ("chunks.jsonl", chunks), ("generations.jsonl", generations)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return Run(root, quiet=True)


def small_context_config(**dataset) -> Config:
    """Short contexts, so a 20-sentence document yields many different training passages; the
    teacher's pairs only (span clozes have tests of their own below)."""
    return Config(dataset=DatasetConfig(**{"context_chars": 200, "validation_fraction": 0.2, "span_clozes": False, **dataset}))


TEACHER_PAIRS_ONLY = Config(dataset=DatasetConfig(span_clozes=False))


@pytest.fixture
def built(tmp_path: Path) -> tuple[Run, dict]:
    run = write_run(tmp_path / "run")
    return run, run_stage(run, small_context_config())


def squad_answers(path: Path) -> list[tuple[str, dict, dict]]:
    """(title, paragraph, qa) for every question of a SQuAD file."""
    data = read_json(path)
    assert data["version"] == "1.1"
    return [(a["title"], p, qa) for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]


def test_qa_records_are_verbatim_spans_with_design_fields(built):
    run, _ = built
    docs = {d["doc_id"]: d for d in read_jsonl(run.path("documents.jsonl"))}
    records = read_jsonl(run.path("qa.jsonl"))
    assert len(records) == 16
    for r in records:
        assert set(r) == {"id", "question", "answer", "doc_id", "chunk_id", "offset", "page", "route", "teacher",
                          "match", "context_start", "context_end"}
        text = docs[r["doc_id"]]["text"]
        assert text[r["offset"] : r["offset"] + len(r["answer"])] == r["answer"]
        assert r["context_start"] <= r["offset"] and r["offset"] + len(r["answer"]) <= r["context_end"]
        assert r["context_end"] - r["context_start"] > len(r["answer"])  # never the answer alone
        assert r["question"].endswith("?") and r["teacher"] == "llamacpp:test.gguf"
    by_question = {r["question"]: r for r in records}
    assert by_question["Where does basalt form?"]["answer"] == "at the surface of the Earth"
    assert by_question["Where does basalt form?"]["match"] == "normalized"
    fuzzy = by_question["What do limestone rocks often contain?"]
    assert (fuzzy["answer"], fuzzy["match"]) == ("the fossil shells of marine organisms", "fuzzy")
    assert by_question["What kind of rock cools slowly deep underground?"]["page"] == 1
    assert by_question["How old is the Earth estimated to be?"]["page"] == 2
    # It copies 8 words of its own sentence: a rephrasing around the answer, kept (unlike copying
    # another sentence of the passage, the "copies_passage" pair).
    assert by_question["What is the largest hot desert in the world?"]["id"] == "sahara-bbbb-0000-00"


def test_contexts_are_sentence_aligned_windows_of_the_document(built):
    run, _ = built
    text_by_doc = {d["doc_id"]: d["text"] for d in read_jsonl(run.path("documents.jsonl"))}
    for r in read_jsonl(run.path("qa.jsonl")):
        text = text_by_doc[r["doc_id"]]
        context = text[r["context_start"] : r["context_end"]]
        assert context[0].isupper() and context.endswith(".")
        assert r["context_start"] == 0 or text[r["context_start"] - 2 : r["context_start"]] in (". ", "\n\n")
        assert len(context) <= 200 + 2 * 40 + len(r["answer"])


def test_squad_files_answers_and_split(built):
    run, _ = built
    records = {r["id"]: r for r in read_jsonl(run.path("qa.jsonl"))}
    train = squad_answers(run.path("train.json"))
    validation = squad_answers(run.path("validation.json"))
    assert train and validation
    for _, paragraph, qa in train + validation:
        (answer,) = qa["answers"]
        start = answer["answer_start"]
        assert paragraph["context"][start : start + len(answer["text"])] == answer["text"]
        assert qa["question"] == records[qa["id"]]["question"]
    ids = [qa["id"] for _, _, qa in train + validation]
    assert sorted(ids) == sorted(records)  # every kept pair exactly once
    train_chunks = {records[qa["id"]]["chunk_id"] for _, _, qa in train}
    validation_chunks = {records[qa["id"]]["chunk_id"] for _, _, qa in validation}
    assert not train_chunks & validation_chunks
    assert not {p["context"] for _, p, _ in train} & {p["context"] for _, p, _ in validation}
    assert {title for title, _, _ in train + validation} <= {"Geology", "Sahara"}


def test_pairs_sharing_a_window_share_a_paragraph(tmp_path):
    run = write_run(tmp_path, {"sahara-bbbb-0000": PAIRS["sahara-bbbb-0000"]})
    run_stage(run, TEACHER_PAIRS_ONLY)
    data = read_json(run.path("train.json"))["data"]
    assert len(data) == 1 and len(data[0]["paragraphs"]) == 1
    assert data[0]["paragraphs"][0]["context"] == DESERT
    assert len(data[0]["paragraphs"][0]["qas"]) == 2


def test_summary_counts_add_up(built):
    run, returned = built
    summary = read_json(run.path("dataset_summary.json"))
    assert summary["chunks"] == 5 and summary["generations"] == 5
    assert summary["pairs_proposed"] == sum(len(p) for p in PAIRS.values()) == 25
    assert summary["dropped"] == EXPECTED_DROPS
    assert summary["pairs_proposed"] == summary["kept"] + sum(summary["dropped"].values())
    grounding_failures = sum(summary["dropped"].get(k, 0) for k in ("empty", "not_found", "below_threshold"))
    assert sum(summary["grounded"].values()) == summary["pairs_proposed"] - grounding_failures
    assert summary["grounded"]["normalized"] == 1 and summary["grounded"]["fuzzy"] == 1
    assert summary["kept"] == 16 == sum(summary["kept_per_route"].values())
    assert summary["kept_per_route"] == {"answer-first": 9, "teacher-qa": 6, "cloze": 1}
    assert summary["train"]["questions"] + summary["validation"]["questions"] == summary["kept"]
    assert summary["train"]["chunks"] + summary["validation"]["chunks"] == 5
    assert summary["validation"]["chunks"] >= 1
    assert returned["kept"] == 16 and returned["pairs_proposed"] == 25
    assert returned["train_questions"] == summary["train"]["questions"]
    assert all(isinstance(v, int) for v in returned.values())
    assert set(summary["dropped_examples"]) == set(EXPECTED_DROPS)


def test_split_is_seeded_and_reproducible(tmp_path):
    first = write_run(tmp_path / "a")
    second = write_run(tmp_path / "b")
    run_stage(first, small_context_config())
    run_stage(second, small_context_config())
    assert first.path("validation.json").read_text() == second.path("validation.json").read_text()
    assert first.path("qa.jsonl").read_text() == second.path("qa.jsonl").read_text()


def test_validation_chunk_sharing_a_context_with_train_moves_to_train(tmp_path):
    # Both chunks ask about the sentence they share, so their pairs get the same context window.
    shared = {
        "geology-aaaa-0000": [("What does slate split into?", "thin sheets", "answer-first")],
        "geology-aaaa-0001": [("What was slate once used for?", "school blackboards", "answer-first")],
    }
    run = write_run(tmp_path, shared)
    run_stage(run, small_context_config(validation_fraction=0.5))
    records = read_jsonl(run.path("qa.jsonl"))
    assert len({(r["context_start"], r["context_end"]) for r in records}) == 1
    assert read_json(run.path("validation.json"))["data"] == []
    summary = read_json(run.path("dataset_summary.json"))
    assert summary["train"] == {"questions": 2, "paragraphs": 1, "chunks": 2}


def test_a_context_that_is_only_the_answer_is_dropped(tmp_path):
    pairs = {
        "sahara-bbbb-0000": [("Which rock is this document about?", "Granite", "teacher-qa")],
        "geology-aaaa-0000": [("Where does basalt form?", "at the surface of the Earth", "teacher-qa")],
    }
    run = write_run(tmp_path, pairs, desert="Granite.")
    run_stage(run, TEACHER_PAIRS_ONLY)
    assert read_json(run.path("dataset_summary.json"))["dropped"] == {"no_context": 1}
    assert [r["doc_id"] for r in read_jsonl(run.path("qa.jsonl"))] == ["geology-aaaa"]


def test_no_pairs_kept_writes_only_the_summary_and_fails(tmp_path):
    bad = {"geology-aaaa-0000": [("What is the capital of France?", "Paris", "teacher-qa"), ("Question 1", "...", "cloze")]}
    run = write_run(tmp_path, bad)
    with pytest.raises(DistillqaError, match="no grounded question/answer pairs were kept") as err:
        run_stage(run, TEACHER_PAIRS_ONLY)
    assert "dataset_summary.json" in str(err.value) and "\n" not in str(err.value)
    summary = read_json(run.path("dataset_summary.json"))
    assert summary["kept"] == 0 and summary["dropped"] == {"not_found": 1, "empty": 1}
    for name in ("qa.jsonl", "train.json", "validation.json"):
        assert not run.path(name).exists()


def test_stage_runs_through_the_run_folder(tmp_path):
    run = write_run(tmp_path)
    summary = run.run_stage(STAGE_BY_NAME["build-dataset"], small_context_config())
    assert run.manifest["stages"]["build-dataset"]["status"] == "done"
    assert run.manifest["stages"]["build-dataset"]["summary"] == summary


def test_chunks_that_do_not_match_their_document_are_refused(tmp_path):
    run = write_run(tmp_path)
    chunks = read_jsonl(run.path("chunks.jsonl"))
    chunks[1]["start"] += 1
    run.path("chunks.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chunks), encoding="utf-8")
    with pytest.raises(DistillqaError, match="does not match"):
        run_stage(run, TEACHER_PAIRS_ONLY)


@pytest.mark.parametrize("where", [0, len(TEXT) // 2, len(TEXT) - 20])
def test_context_window_holds_the_answer_and_cuts_at_sentences(where):
    start = TEXT.index(" ", where) + 1
    end = TEXT.index(" ", start)
    lo, hi = context_window(TEXT, start, end, 300)
    assert lo <= start and end <= hi
    assert 300 - 2 * 40 <= hi - lo <= 300 + 2 * 40
    assert lo == 0 or TEXT[lo - 2 : lo] in (". ", "\n\n")
    assert hi == len(TEXT) or TEXT[hi - 1] == "."


def test_context_window_falls_back_to_word_boundaries():
    text = " ".join(f"word{i}" for i in range(400))  # no sentence punctuation at all
    start = text.index("word200")
    lo, hi = context_window(text, start, start + len("word200"), 200)
    assert text[lo - 1] == " " and text[hi] == " "
    assert lo <= start < hi


def test_context_window_never_cuts_a_long_answer():
    lo, hi = context_window(TEXT, 10, len(TEXT) - 10, 100)
    assert lo <= 10 and hi >= len(TEXT) - 10


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(1, 0.1, 0), (1, 0.9, 0), (2, 0.1, 1), (5, 0.1, 1), (20, 0.1, 2), (20, 0.5, 10), (20, 0.0, 0), (3, 0.99, 2)],
)
def test_validation_chunk_counts(n, fraction, expected):
    ids = [f"c{i}" for i in range(n)]
    assert validation_size(n, fraction) == expected
    order = seeded_order(ids, seed=42)
    assert sorted(order) == sorted(ids) and order == seeded_order(ids, seed=42)


def test_recorded_answer_offset_picks_among_repeated_spans():
    """An answer picked at a known place (answer-first/cloze) is grounded there, not at its twin."""
    from distillqa.dataset.build import ground_pair

    text = "The red door opened at noon. Later the red door closed at dusk."
    chunk = {"text": text, "start": 100}
    doc = {"text": "x" * 100 + text}
    later = text.rindex("red door")
    span, _ = ground_pair("red door", "What was painted?", chunk, doc, 90.0, hint=later)
    assert span is not None and span.start == 100 + later
    span, _ = ground_pair("red door", "What was painted?", chunk, doc, 90.0)
    assert span is not None and span.start == 100 + text.index("red door")


def test_span_clozes_join_the_teacher_pairs(tmp_path):
    run = write_run(tmp_path / "run")
    summary = run_stage(run, small_context_config(span_clozes=True))
    records = read_jsonl(run.path("qa.jsonl"))
    routes = read_json(run.path("dataset_summary.json"))["kept_per_route"]
    assert routes["span-cloze"] > 3 * sum(n for route, n in routes.items() if route != "span-cloze")
    assert summary["kept"] == len(records) == sum(routes.values()) and summary["span-cloze_kept"] == routes["span-cloze"]
    full = read_json(run.path("dataset_summary.json"))  # the rule-based route is counted like the others
    for route, n in full["proposed_per_route"].items():
        assert n == routes.get(route, 0) + full["dropped_per_route"].get(route, 0)
    assert sum(full["proposed_per_route"].values()) == full["pairs_proposed"]
    docs = {d["doc_id"]: d for d in read_jsonl(run.path("documents.jsonl"))}
    spans = [(r["doc_id"], r["offset"], len(r["answer"])) for r in records if r["route"] == "span-cloze"]
    assert len(spans) == len(set(spans))  # a sentence shared by two chunks is asked about once
    for r in records:
        assert docs[r["doc_id"]]["text"][r["offset"] : r["offset"] + len(r["answer"])] == r["answer"]
    # the teacher's pairs are kept as without span clozes: they come first, so a span cloze is
    # the one dropped when the two ask the same
    teacher_only = write_run(tmp_path / "teacher-only")
    run_stage(teacher_only, small_context_config())
    teacher_pairs = {(r["question"], r["offset"]) for r in read_jsonl(teacher_only.path("qa.jsonl"))}
    assert teacher_pairs == {(r["question"], r["offset"]) for r in records if r["route"] != "span-cloze"}
