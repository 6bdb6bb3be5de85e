"""The passage index: passages cut at sentences with pages, BM25, dense search, fusion, files."""

import json
from pathlib import Path

import numpy as np
import pytest

from distillqa.config import Config, RetrievalConfig
from distillqa.errors import DistillqaError
from distillqa.io import write_jsonl
from distillqa.pipeline import Run
from distillqa.retrieval import ann
from distillqa.retrieval.index import (
    BM25_DIR,
    EMBEDDINGS,
    META,
    PASSAGES,
    QUERY_ENCODER_DIR,
    Passage,
    PassageIndex,
    bm25_index,
    bm25_tokens,
    load_embedder,
    make_passages,
    rrf_fuse,
    run_stage,
)
from distillqa.text import sentence_spans


def words(text: str) -> int:
    """A token counter for unit tests that need no model: one token per word."""
    return len(text.split())


def doc(doc_id: str, text: str, pages: list[tuple[int, int, int]] | None = None, source: str | None = None) -> dict:
    pages = pages or [(1, 0, len(text))]
    return {
        "doc_id": doc_id,
        "source": source or f"/data/{doc_id}.txt",
        "title": doc_id.title(),
        "text": text,
        "pages": [{"number": n, "start": s, "end": e} for n, s, e in pages],
    }


# -- passages -------------------------------------------------------------------------------


def test_sentence_spans_split_at_sentence_ends_and_paragraphs():
    text = "First one. Second one? Third!\n\nNew paragraph without a stop\nsame paragraph. Last (really)."
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == [
        "First one.",
        "Second one?",
        "Third!",
        "New paragraph without a stop\nsame paragraph.",
        "Last (really).",
    ]


def test_passages_are_exact_slices_sized_overlapping_and_paged():
    sentences = [f"Sentence number {i} talks about topic {i} here." for i in range(40)]  # 8 words each
    text = " ".join(sentences[:20]) + "\n\n" + " ".join(sentences[20:])
    half = text.index("\n\n")
    d = doc("notes", text, pages=[(1, 0, half), (2, half + 2, len(text))], source="/home/me/Notes.pdf")

    passages = make_passages(d, words, max_tokens=40, overlap_tokens=10)

    assert len(passages) > 5
    starts = {s for s, _ in sentence_spans(text)}
    for p in passages:
        assert p.text == text[p.start : p.end]
        assert p.start in starts  # cut at sentence boundaries
        assert len(p.text.split()) <= 40
        assert p.page == (1 if p.start < half else 2)
        assert (p.document, p.title, p.doc_id) == ("Notes.pdf", "Notes", "notes")
    for a, b in zip(passages, passages[1:]):
        assert a.start < b.start < a.end  # each passage repeats the tail of the one before
        assert len(text[b.start : a.end].split()) <= 10
    assert passages[0].start == 0 and passages[-1].end == len(text)
    assert len({p.passage_id for p in passages}) == len(passages)


def test_a_sentence_longer_than_a_passage_is_cut_at_words():
    text = " ".join(f"item{i}" for i in range(100))  # a table row: no full stop at all
    passages = make_passages(doc("table", text), words, max_tokens=30, overlap_tokens=5)
    assert all(len(p.text.split()) <= 30 for p in passages)
    assert passages[-1].end == len(text)
    assert all(p.text == text[p.start : p.end] for p in passages)


def test_config_refuses_an_overlap_as_large_as_the_passage():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="passage_overlap_tokens must be smaller"):
        RetrievalConfig(passage_tokens=64, passage_overlap_tokens=64)


# -- ranking --------------------------------------------------------------------------------


def test_rrf_fuse_sums_reciprocal_ranks():
    fused = rrf_fuse([[1, 2, 3], [3, 1, 4]], rrf_k=60)
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1][1] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[3][1] == pytest.approx(1 / 63)


def test_rrf_fuse_breaks_ties_by_best_rank_then_id():
    fused = rrf_fuse([[7, 5], [2, 9]], rrf_k=60)
    assert [item for item, _ in fused] == [2, 7, 5, 9]


def test_bm25_tokens_drop_stopwords_and_case():
    assert bm25_tokens("What is THE Xylotheca of 1854?") == ["what", "xylotheca", "1854"]


def test_bm25_index_from_term_ids_scores_as_bm25s_from_words():
    import bm25s

    texts = [d["text"] for d in CORPUS] + ["The the of and", "Apple apple trees"]
    ours = bm25_index(texts, len(texts))
    theirs = bm25s.BM25()
    theirs.index([bm25_tokens(t) for t in texts], show_progress=False)
    for query in ("apple trees planted", "xylotheca", "harbour light 1854", "unknownword"):
        tokens = bm25_tokens(query)
        assert np.allclose(
            ours.get_scores_from_ids(ours.get_tokens_ids(tokens)), theirs.get_scores_from_ids(theirs.get_tokens_ids(tokens))
        )


# -- a real index (bundled MiniLM) -----------------------------------------------------------

CORPUS = [
    doc(
        "garden",
        "The orchard behind the house has twelve apple trees. They were planted in 1921 by the first owner.\n\n"
        "The feline slept on the warm windowsill for the whole afternoon, ignoring the birds outside.\n\n"
        "A small pond at the far end of the garden freezes every winter.",
        pages=[(1, 0, 100), (2, 100, 300)],
    ),
    doc(
        "botany",
        "Xylotheca is a genus of flowering plants found in southern Africa. Its fruit is a woody capsule.\n\n"
        "Most plants in the genus grow as shrubs on rocky slopes and flower in early summer.",
    ),
    doc(
        "harbour",
        "The harbour light was built in 1854 by the engineer Margaret Hale. Its white tower is 31 metres tall.\n\n"
        "Ships entering the harbour must pass between two reefs known as the Sisters.",
    ),
]
CFG = RetrievalConfig(passage_tokens=40, passage_overlap_tokens=8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder whose `index` stage has run over CORPUS."""
    run = Run(tmp_path_factory.mktemp("run"), quiet=True)
    write_jsonl(run.path("documents.jsonl"), CORPUS)
    summary = run_stage(run, Config(retrieval=CFG))
    assert summary["documents"] == 3 and summary["passages"] >= 3
    return run.root


@pytest.fixture(scope="module")
def index(run_dir: Path) -> PassageIndex:
    return PassageIndex.load(run_dir / "index")


def test_index_stage_writes_its_files(run_dir: Path):
    folder = run_dir / "index"
    for name in (META, PASSAGES, EMBEDDINGS, BM25_DIR, QUERY_ENCODER_DIR):
        assert (folder / name).exists(), name
    meta = json.loads((folder / META).read_text())
    assert meta["query_encoder"] == "onnxruntime"
    assert meta["dense_index"] == "exact" and not (folder / ann.FILE).exists()  # 'auto', far below ann_min_passages
    assert "MiniLM" in meta["embedder"] and meta["config"]["embedder"] is None
    assert meta["config"]["passage_tokens"] == 40
    assert "rrf_k" not in meta["config"] and "top_k" not in meta["config"]  # query time: read by `ask`
    emb = np.load(folder / EMBEDDINGS)
    assert emb.dtype == np.float32 and emb.shape == (meta["passages"], meta["dim"])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert not list(run_dir.glob(".index*"))  # no temporary folder left behind


def test_bm25_finds_the_passage_with_the_rare_term(index: PassageIndex):
    ranking = index.bm25_ranking("Where does xylotheca grow?", depth=10)
    assert "Xylotheca is a genus" in index.passages[ranking[0]].text
    hit = index.search("Where does xylotheca grow?", k=3)[0]
    assert "Xylotheca" in hit.passage.text and hit.bm25_rank == 1


def test_dense_finds_a_paraphrase_bm25_cannot(index: PassageIndex):
    query = "Where did the cat nap?"  # no word in common with "The feline slept on the ... windowsill"
    assert all("feline" not in index.passages[i].text for i in index.bm25_ranking(query, depth=10))
    ranking = index.dense_ranking(index.embed_query(query), depth=3)
    assert "feline slept" in index.passages[ranking[0]].text
    hit = index.search(query, k=1)[0]
    assert "feline slept" in hit.passage.text and hit.bm25_rank is None and hit.dense_rank == 1


def test_search_hits_are_fused_best_first_with_citations(index: PassageIndex):
    hits = index.search("Who built the harbour light in 1854?", k=4)
    assert len(hits) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    top = hits[0]
    assert "Margaret Hale" in top.passage.text and top.bm25_rank == 1
    assert top.score == pytest.approx(1 / (60 + top.bm25_rank) + 1 / (60 + top.dense_rank))
    assert (top.passage.document, top.passage.page) == ("harbour.txt", 1)
    assert index.search("   ", k=3) == []
    assert len(index.search("the of and", k=2)) == 2  # stopwords only: dense still answers


def test_query_time_settings_are_search_arguments(index: PassageIndex, monkeypatch):
    query = "Who built the harbour light in 1854?"
    for rrf_k in (1, 60):
        for hit in index.search(query, k=4, rrf_k=rrf_k):
            ranks = [r for r in (hit.bm25_rank, hit.dense_rank) if r is not None]
            assert hit.score == pytest.approx(sum(1 / (rrf_k + r) for r in ranks))
    depths = []
    real = index.bm25_ranking
    monkeypatch.setattr(index, "bm25_ranking", lambda q, depth: depths.append(depth) or real(q, depth))
    index.search(query, k=3, candidates=7)
    index.search(query, k=9, candidates=7)
    index.search(query, k=3)
    assert depths == [7, 9, RetrievalConfig().candidates]  # each ranking goes max(k, candidates) deep


def test_pages_come_from_the_document_offsets(index: PassageIndex):
    garden = CORPUS[0]["text"]
    pond = next(p for p in index.passages if "pond" in p.text)
    assert pond.page == (1 if pond.start < 100 else 2)
    assert index.page_of("garden", garden.index("pond")) == 2
    assert index.page_of("garden", 0) == 1
    assert index.page_of("unknown-doc", 0) is None


def test_save_load_round_trip(index: PassageIndex, tmp_path: Path):
    index.save(tmp_path / "copy")
    index.save(tmp_path / "copy")  # replacing an existing index works too
    again = PassageIndex.load(tmp_path / "copy")
    assert again.passages == index.passages
    assert again.documents == index.documents
    assert np.array_equal(again.embeddings, index.embeddings)
    assert again.cfg == index.cfg
    for query in ("xylotheca fruit", "apple trees planted", "reefs"):
        assert again.search(query, k=3) == index.search(query, k=3)


def _point_embedder_nowhere(folder: Path) -> None:
    meta = json.loads((folder / META).read_text())
    meta["config"]["embedder"] = str(folder / "no-such-model")
    (folder / META).write_text(json.dumps(meta))


def test_load_reads_files_only_and_embeds_lazily(index: PassageIndex, tmp_path: Path):
    """Without the ONNX export, an index whose embedder cannot load still loads, and BM25 still
    works: the model is only loaded when a query has to be embedded."""
    folder = tmp_path / "other"
    PassageIndex(index.passages, list(index.documents.values()), index.embeddings, index.bm25,
                 index.cfg.model_copy(update={"onnx_query_encoder": False})).save(folder)
    assert not (folder / QUERY_ENCODER_DIR).exists()
    assert json.loads((folder / META).read_text())["query_encoder"] == "sentence-transformers"
    _point_embedder_nowhere(folder)
    lazy = PassageIndex.load(folder)
    assert lazy.bm25_ranking("reefs Sisters", depth=1)
    with pytest.raises(DistillqaError, match="cannot load embedder"):
        lazy.search("reefs", k=1)


def test_the_exported_query_encoder_needs_no_embedder(index: PassageIndex, tmp_path: Path):
    folder = tmp_path / "exported"
    index.save(folder)
    _point_embedder_nowhere(folder)
    again = PassageIndex.load(folder)
    assert "feline slept" in again.search("Where did the cat nap?", k=1)[0].passage.text


def test_onnx_query_vectors_equal_sentence_transformers_vectors(index: PassageIndex):
    from distillqa.retrieval.query_encoder import OnnxQueryEncoder

    assert isinstance(index.query_encoder, OnnxQueryEncoder)
    texts = ["cat", "Who built the harbour light in 1854?", "word " * 400]  # padded, and truncated at 256
    expected = load_embedder(None).encode(texts, normalize_embeddings=True)
    got = index.query_encoder.encode(texts)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5
    assert np.allclose(index.embed_query(texts[1]), expected[1], atol=1e-5)


def test_passages_are_embedded_by_the_onnx_export_as_by_sentence_transformers(index: PassageIndex):
    expected = load_embedder(None).encode([p.text for p in index.passages], normalize_embeddings=True)
    assert index.embeddings.dtype == np.float32
    assert np.abs(index.embeddings - expected).max() < 1e-5


def test_a_failed_export_warns_and_falls_back(index: PassageIndex, tmp_path: Path, monkeypatch, caplog):
    import distillqa.retrieval.query_encoder

    def broken(model, directory):
        directory.mkdir(parents=True)
        (directory / "model.onnx").write_text("half written")
        raise RuntimeError("exporter exploded\nwith details")

    monkeypatch.setattr(distillqa.retrieval.query_encoder, "export", broken)
    folder = tmp_path / "fallback"
    PassageIndex(index.passages, list(index.documents.values()), index.embeddings, index.bm25, index.cfg).save(folder)
    assert "ONNX export of the embedder failed (exporter exploded)" in caplog.text
    assert not (folder / QUERY_ENCODER_DIR).exists()
    again = PassageIndex.load(folder)
    assert "feline slept" in again.search("Where did the cat nap?", k=1)[0].passage.text


def test_a_failed_export_at_build_time_is_tried_and_reported_once(tmp_path: Path, monkeypatch, caplog):
    import distillqa.retrieval.query_encoder

    def broken(model, directory):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(distillqa.retrieval.query_encoder, "export", broken)
    run = Run(tmp_path, quiet=True)
    write_jsonl(run.path("documents.jsonl"), CORPUS)
    run_stage(run, Config(retrieval=CFG))  # passages embedded by sentence-transformers instead
    assert caplog.text.count("ONNX export of the embedder failed") == 1
    assert json.loads((tmp_path / "index" / META).read_text())["query_encoder"] == "sentence-transformers"
    assert "feline slept" in PassageIndex.load(tmp_path / "index").search("Where did the cat nap?", k=1)[0].passage.text


def test_load_errors_are_one_line(tmp_path: Path):
    with pytest.raises(DistillqaError, match="distillqa index"):
        PassageIndex.load(tmp_path)


def test_index_stage_refuses_documents_without_text(tmp_path: Path):
    run = Run(tmp_path, quiet=True)
    write_jsonl(run.path("documents.jsonl"), [doc("empty", "   ")])
    with pytest.raises(DistillqaError, match="no passages"):
        run_stage(run, Config(retrieval=CFG))


# -- the HNSW graph --------------------------------------------------------------------------


def clustered(n: int, seed: int, dim: int = 384) -> np.ndarray:
    """Normalised vectors in 40 clusters: embeddings of text have neighbourhoods, random ones do not."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((40, dim), dtype=np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.1 * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_builds_a_graph_from_ann_min_passages_on():
    assert not ann.wanted(RetrievalConfig(), 99_999)
    assert ann.wanted(RetrievalConfig(), 100_000)
    assert ann.wanted(RetrievalConfig(ann_min_passages=10), 10)
    assert ann.wanted(RetrievalConfig(dense_index="hnsw"), 1)
    assert not ann.wanted(RetrievalConfig(dense_index="exact", ann_min_passages=1), 10**7)


def test_graph_search_finds_what_exact_search_finds_and_survives_save_and_load(tmp_path: Path):
    vectors, queries = clustered(3000, seed=1), clustered(50, seed=2)
    texts = [f"passage number {i}" for i in range(len(vectors))]
    passages = [Passage(f"d-p{i:04d}", "d", "D", "d.txt", None, 0, len(t), t) for i, t in enumerate(texts)]
    documents = [{"doc_id": "d", "title": "D", "document": "d.txt", "pages": []}]
    cfg = RetrievalConfig(dense_index="hnsw", onnx_query_encoder=False)
    exact = PassageIndex(passages, documents, vectors, bm25_index(texts, len(texts)), cfg)
    approx = PassageIndex(passages, documents, vectors, exact.bm25, cfg, graph=ann.build(vectors))
    assert (exact.dense_kind, approx.dense_kind) == ("exact", "hnsw")

    recall = np.mean([len(set(approx.dense_ranking(q, 10)) & set(exact.dense_ranking(q, 10))) / 10 for q in queries])
    assert recall >= 0.95
    assert len(approx.dense_ranking(queries[0], 100, ef_search=8)) == 100  # searches at least depth wide

    approx.save(tmp_path / "index")
    assert json.loads((tmp_path / "index" / META).read_text())["dense_index"] == "hnsw"
    again = PassageIndex.load(tmp_path / "index")
    assert again.graph is not None and isinstance(again.embeddings, np.memmap)  # mapped, not read
    for q in queries[:5]:
        assert again.dense_ranking(q, 20) == approx.dense_ranking(q, 20)
        assert again.search("passage number 7", k=3, query_vector=q) == approx.search("passage number 7", k=3, query_vector=q)


def test_a_damaged_graph_is_a_one_line_error(index: PassageIndex, tmp_path: Path):
    folder = tmp_path / "index"
    cfg = index.cfg.model_copy(update={"onnx_query_encoder": False})
    graph = ann.build(index.embeddings)
    PassageIndex(index.passages, list(index.documents.values()), index.embeddings, index.bm25, cfg, graph=graph).save(folder)
    (folder / ann.FILE).write_bytes(b"not a faiss index")
    with pytest.raises(DistillqaError, match="cannot read the index.*distillqa index RUN --force"):
        PassageIndex.load(folder)


def test_index_stage_builds_the_graph_past_the_threshold(tmp_path: Path):
    """'auto' with a threshold the corpus reaches; passages embedded by sentence-transformers
    (no export) give the same vectors as through the export."""
    run = Run(tmp_path, quiet=True)
    write_jsonl(run.path("documents.jsonl"), CORPUS)
    cfg = CFG.model_copy(update={"ann_min_passages": 2, "onnx_query_encoder": False})
    assert run_stage(run, Config(retrieval=cfg))["dense_index"] == "hnsw"
    index = PassageIndex.load(tmp_path / "index")
    assert index.graph is not None and index.graph.ntotal == len(index)
    expected = load_embedder(None).encode([p.text for p in index.passages], normalize_embeddings=True)
    assert np.abs(np.asarray(index.embeddings) - expected).max() < 1e-5
    assert "feline slept" in index.search("Where did the cat nap?", k=1, ef_search=16)[0].passage.text
