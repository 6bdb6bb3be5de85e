"""Chunking: sentence splitting, the chunk invariants (no text lost, size, overlap, pages, exact
slices), long sentences and words, the token counters, and the stage."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path

import pytest

from distillqa.chunk import chunk_document, load_token_counter
from distillqa.config import ChunkConfig, Config, TeacherConfig
from distillqa.errors import DistillqaError
from distillqa.io import write_jsonl
from distillqa.layout import CHUNKS, DOCUMENTS
from distillqa.models import bundled_encoder
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.text import sentence_spans

REPO = Path(__file__).resolve().parents[1]
HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None


def words(text: str) -> int:
    """A tokenizer-free token counter: one token per whitespace-separated word."""
    return len(text.split())


def make_doc(paragraphs: list[str], per_page: int = 2, doc_id: str = "doc-00000000") -> dict:
    """A documents.jsonl record with `per_page` paragraphs on each page."""
    text, pages = "", []
    for i in range(0, len(paragraphs), per_page):
        start = len(text) + (2 if text else 0)
        text += ("\n\n" if text else "") + "\n\n".join(paragraphs[i : i + per_page])
        pages.append({"number": len(pages) + 1, "start": start, "end": len(text)})
    return {"doc_id": doc_id, "text": text, "pages": pages}


def paragraph(k: int, sentences: int = 6) -> str:
    return " ".join(f"Paragraph {k} sentence {j} says something about lighthouse number {k * 10 + j}." for j in range(sentences))


def check_chunks(doc: dict, chunks: list[dict], count, max_tokens: int) -> None:
    """The invariants every chunking must keep."""
    text = doc["text"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(text)
    for c in chunks:
        assert c["chunk_id"] == f"{doc['doc_id']}-{c['index']:04d}" and c["doc_id"] == doc["doc_id"]
        assert c["text"] == text[c["start"] : c["end"]] and c["text"] == c["text"].strip()
        assert c["n_tokens"] == count(c["text"]) <= max_tokens
        page_of = lambda pos: next(p["number"] for p in reversed(doc["pages"]) if p["start"] <= pos)  # noqa: E731
        assert (c["page_start"], c["page_end"]) == (page_of(c["start"]), page_of(c["end"] - 1))
        covered[c["start"] : c["end"]] = [True] * (c["end"] - c["start"])
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace()), "no text is lost"
    assert all(a["start"] < b["start"] and a["end"] < b["end"] for a, b in zip(chunks, chunks[1:]))


# --- sentences -----------------------------------------------------------------------------


def test_sentence_spans_handle_abbreviations_decimals_and_initials():
    text = (
        "Dr. Smith reached Washington at 3.30 p.m. on Jan. 5. The U.S. Army was there, e.g. Gen. Patton. "
        'J. R. R. Tolkien wrote it (Vol. 1, Vol. 2). No. 5 was "great!" Really? Yes...\n\n'
        "New paragraph without a full stop\n\nSee p. 12 for more. It cost $3.5 million, etc. The end. "
        "The mast is 50 ft. tall, said Mr. Lee of Acme Inc. The firm (Smith et al. 2019) agreed."
    )
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Dr. Smith reached Washington at 3.30 p.m. on Jan. 5.",
        "The U.S. Army was there, e.g. Gen. Patton.",
        "J. R. R. Tolkien wrote it (Vol. 1, Vol. 2).",
        'No. 5 was "great!"',
        "Really?",
        "Yes...",
        "New paragraph without a full stop",
        "See p. 12 for more.",
        "It cost $3.5 million, etc.",
        "The end.",
        "The mast is 50 ft. tall, said Mr. Lee of Acme Inc.",
        "The firm (Smith et al. 2019) agreed.",
    ]


def test_sentence_spans_cover_all_text_and_are_trimmed():
    text = "  One.  Two? \n Three!\n\n\n  Four  "
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["One.", "Two?", "Three!", "Four"]
    assert sentence_spans("") == [] and sentence_spans(" \n ") == []


# --- chunk invariants with a whitespace counter ----------------------------------------------


def test_chunks_keep_every_invariant_and_overlap():
    doc = make_doc([paragraph(k) for k in range(12)], per_page=3)
    chunks = chunk_document(doc, words, max_tokens=100, overlap_tokens=20)
    check_chunks(doc, chunks, words, 100)
    assert len(chunks) > 3
    sentence_starts = {s for s, _ in sentence_spans(doc["text"])}
    for a, b in zip(chunks, chunks[1:]):
        assert b["start"] < a["end"], "consecutive chunks overlap"
        assert b["start"] in sentence_starts, "the overlap is made of whole sentences"
        assert 5 <= words(doc["text"][b["start"] : a["end"]]) <= 40, "about overlap_tokens of overlap"
    assert any(c["page_start"] != c["page_end"] for c in chunks), "chunks may span pages"


def test_chunks_end_at_paragraph_ends_when_possible():
    doc = make_doc([paragraph(k, sentences=3) for k in range(10)])  # ~39 words per paragraph
    chunks = chunk_document(doc, words, max_tokens=100, overlap_tokens=0)
    check_chunks(doc, chunks, words, 100)
    assert all(doc["text"][c["end"] : c["end"] + 2] in ("\n\n", "") for c in chunks)
    assert all(c["text"].startswith("Paragraph") and " sentence 0 " in c["text"][:30] for c in chunks)


def test_chunks_do_not_end_on_a_heading():
    parts = []
    for k in range(8):
        parts += [f"Heading number {k}", paragraph(k, sentences=3)]
    doc = make_doc(parts)
    chunks = chunk_document(doc, words, max_tokens=90, overlap_tokens=10)
    check_chunks(doc, chunks, words, 90)
    assert len(chunks) > 3
    assert not any(c["text"].split("\n\n")[-1].startswith("Heading") for c in chunks)


def test_no_overlap_when_zero():
    doc = make_doc([paragraph(k) for k in range(6)])
    chunks = chunk_document(doc, words, max_tokens=60, overlap_tokens=0)
    check_chunks(doc, chunks, words, 60)
    assert all(b["start"] > a["end"] for a, b in zip(chunks, chunks[1:]))


def test_gigantic_sentence_is_split_between_words():
    giant = " ".join(f"w{i}" for i in range(1000)) + "."
    doc = make_doc(["Short intro.", giant, "Short outro."], per_page=1)
    chunks = chunk_document(doc, words, max_tokens=64, overlap_tokens=8)
    check_chunks(doc, chunks, words, 64)
    assert len(chunks) >= 1000 // 64
    assert all(re.fullmatch(r"[\w.]+", c["text"][:1]) for c in chunks), "cut between words"


def test_word_longer_than_a_chunk_is_cut():
    doc = make_doc(["Before it. " + "x" * 500 + " after it."])
    chunks = chunk_document(doc, len, max_tokens=64, overlap_tokens=0)  # one token per character
    check_chunks(doc, chunks, len, 64)
    assert "".join(c["text"] for c in chunks if "x" in c["text"]).count("x") == 500


def test_single_short_document_is_one_chunk():
    doc = make_doc(["Only one sentence here."])
    chunks = chunk_document(doc, words, max_tokens=64, overlap_tokens=16)
    assert [(c["start"], c["end"], c["n_tokens"], c["page_start"], c["page_end"]) for c in chunks] == [(0, 23, 4, 1, 1)]


def test_overlap_must_be_smaller_than_the_chunk():
    with pytest.raises(DistillqaError, match="overlap_tokens"):
        chunk_document(make_doc(["Text."]), words, max_tokens=64, overlap_tokens=64)


# --- token counters ------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed")
def test_bundled_gguf_tokenizer_counts_and_chunks():
    from distillqa.config import IngestConfig
    from distillqa.ingest import ingest_file
    from distillqa.models import bundled_teacher_gguf

    count = load_token_counter(Config())
    assert 0 < count("Hello world") <= 3 and count("") == 0
    assert count("The Eddystone Lighthouse was first lit in 1698. " * 10) > 80
    by_path = load_token_counter(Config(chunk=ChunkConfig(tokenizer=str(bundled_teacher_gguf()))))
    assert by_path("Smeaton's tower, 1759.") == count("Smeaton's tower, 1759.")
    doc = ingest_file(REPO / "examples" / "sample.pdf", IngestConfig())
    chunks = chunk_document(doc, count, max_tokens=384, overlap_tokens=64)
    check_chunks(doc, chunks, count, 384)
    assert len(chunks) >= 5 and max(c["n_tokens"] for c in chunks) > 300
    assert all(b["start"] < a["end"] for a, b in zip(chunks, chunks[1:]))
    assert chunks[-1]["page_end"] == doc["pages"][-1]["number"]


def test_hf_tokenizer_folder():
    count = load_token_counter(Config(chunk=ChunkConfig(tokenizer=str(bundled_encoder()))))
    assert count("hello world") == 2
    assert count("word " * 2000) == 2000  # no truncation at the model's maximum length


def test_openai_teacher_without_local_tokenizer_approximates(caplog):
    cfg = Config(teacher=TeacherConfig(backend="openai", model="some-served-model"))
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        count = load_token_counter(cfg)
    assert count("x" * 40) == 10 and "characters/4" in caplog.text


def test_openai_teacher_with_local_tokenizer():
    count = load_token_counter(Config(teacher=TeacherConfig(backend="openai", model=str(bundled_encoder()))))
    assert count("hello world") == 2


def test_missing_tokenizers_fail_clearly(tmp_path: Path):
    with pytest.raises(DistillqaError, match="cannot load tokenizer"):
        load_token_counter(Config(teacher=TeacherConfig(backend="transformers", model=str(tmp_path / "none"))))
    with pytest.raises(DistillqaError, match="GGUF file not found|llama-cpp-python is not installed"):
        load_token_counter(Config(chunk=ChunkConfig(tokenizer=str(tmp_path / "missing.gguf"))))


# --- the stage -----------------------------------------------------------------------------


def test_chunk_stage_writes_chunks_per_document(tmp_path: Path):
    run = Run(tmp_path / "run", quiet=True)
    docs = [make_doc([paragraph(k) for k in range(8)], doc_id=f"d{i}-0000000{i}") for i in range(2)]
    write_jsonl(run.path(DOCUMENTS), docs)
    cfg = Config(chunk=ChunkConfig(tokenizer=str(bundled_encoder()), max_tokens=128, overlap_tokens=32))
    summary = run.run_stage(STAGE_BY_NAME["chunk"], cfg)
    chunks = [json.loads(line) for line in run.path(CHUNKS).read_text().splitlines()]
    assert summary["documents"] == 2 and summary["chunks"] == len(chunks) and summary["tokens_max"] <= 128
    for doc in docs:
        mine = [c for c in chunks if c["doc_id"] == doc["doc_id"]]
        assert [c["index"] for c in mine] == list(range(len(mine)))
        assert all(doc["text"][c["start"] : c["end"]] == c["text"] for c in mine)
    assert [c["doc_id"] for c in chunks] == sorted(c["doc_id"] for c in chunks), "in document order"


def _chunk_with(tmp_path: Path, docs: list[dict], workers: int, **chunk) -> tuple[dict, bytes]:
    run = Run(tmp_path / f"run-{workers}", quiet=True)
    write_jsonl(run.path(DOCUMENTS), docs)
    summary = run.run_stage(STAGE_BY_NAME["chunk"], Config(chunk=ChunkConfig(workers=workers, **chunk)))
    return summary, run.path(CHUNKS).read_bytes()


def test_chunk_workers_give_the_same_chunks_in_the_same_order(tmp_path: Path):
    docs = [make_doc([paragraph(i * 10 + k) for k in range(i % 4 + 1)], doc_id=f"d{i}-0000000{i}") for i in range(9)]
    tokenizer = "teacher" if HAS_LLAMA else str(bundled_encoder())  # the GGUF vocabulary loads fastest
    settings = {"tokenizer": tokenizer, "max_tokens": 64, "overlap_tokens": 16}
    serial, pooled = (_chunk_with(tmp_path, docs, workers, **settings) for workers in (1, 2))
    assert pooled == serial and serial[0]["chunks"] > len(docs)


def test_a_tokenizer_that_cannot_load_fails_the_same_in_workers(tmp_path: Path):
    docs = [make_doc([paragraph(k)], doc_id=f"d{k}-0000000{k}") for k in range(4)]
    errors = []
    for workers in (1, 2):
        with pytest.raises(DistillqaError) as e:
            _chunk_with(tmp_path, docs, workers, tokenizer=str(tmp_path / "missing.gguf"))
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "\n" not in errors[0]
    assert re.search("GGUF file not found|llama-cpp-python is not installed", errors[0])
