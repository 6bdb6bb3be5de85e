"""Retrieval latency over 100k passages and index load time for 10k passages.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py [--passages 100000] [--queries 200] [--sentence-transformers]

Passages are random sentences over a Zipf-distributed pseudo-word vocabulary, so BM25 has
realistic posting lists. Their embeddings are random normalised vectors, not MiniLM's: embedding
100k passages would take most of an hour on a CPU and does not change search cost (a 100k x 384
float32 matrix-vector product either way). Queries are embedded with the real bundled MiniLM,
exported to ONNX as `distillqa index` does (`--sentence-transformers`: with the torch fallback),
and latency is reported with and without that step. Targets: < 20 ms per query, load < 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distillqa.config import RetrievalConfig
from distillqa.retrieval.index import Passage, PassageIndex, bm25_tokens

WORDS_PER_PASSAGE = 150  # ~200 MiniLM tokens, the default passage size
VOCABULARY = 30_000


def pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct pronounceable pseudo-words ("tavelo", "minkra", ...)."""
    consonants, vowels = list("bcdfghklmnprstvz"), list("aeiou")
    words: set[str] = set()
    while len(words) < n:
        syllables = rng.integers(2, 5)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


def synthetic_passages(n: int, rng: np.random.Generator) -> tuple[list[Passage], list[str], np.ndarray]:
    """n passages of random sentences; returns passages, the vocabulary and its word probabilities."""
    vocab = pseudo_words(VOCABULARY, rng)
    probs = 1.0 / (np.arange(VOCABULARY) + 2.7)  # Zipf: a few very common words, a long tail
    probs /= probs.sum()
    ids = rng.choice(VOCABULARY, size=(n, WORDS_PER_PASSAGE), p=probs)
    passages = []
    for i, row in enumerate(ids):
        words = [vocab[w] for w in row]
        sentences = [" ".join(words[s : s + 15]).capitalize() + "." for s in range(0, WORDS_PER_PASSAGE, 15)]
        text = " ".join(sentences)
        doc = f"doc{i // 50:05d}"
        passages.append(Passage(f"{doc}-p{i % 50:04d}", doc, doc, f"{doc}.pdf", 1 + (i % 50) // 5, 0, len(text), text))
    return passages, vocab, probs


def build_index(passages: list[Passage], rng: np.random.Generator) -> tuple[PassageIndex, float]:
    """A PassageIndex over `passages` with a real BM25 index and random normalised embeddings."""
    import bm25s

    started = time.perf_counter()
    bm25 = bm25s.BM25()
    bm25.index([bm25_tokens(p.text) for p in passages], show_progress=False)
    seconds = time.perf_counter() - started
    embeddings = rng.standard_normal((len(passages), 384), dtype=np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    docs = sorted({p.doc_id for p in passages})
    documents = [{"doc_id": d, "title": d, "document": f"{d}.pdf", "pages": []} for d in docs]
    return PassageIndex(passages, documents, embeddings, bm25, RetrievalConfig()), seconds


def percentiles(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"mean {statistics.mean(ms):6.2f} ms  p50 {statistics.median(ms):6.2f} ms  p95 {p95:6.2f} ms  max {ms[-1]:6.2f} ms"


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--load-passages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sentence-transformers", action="store_true", help="embed queries with sentence-transformers, not the ONNX export"
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(f"building {args.passages} synthetic passages ({WORDS_PER_PASSAGE} words each)...", flush=True)
    passages, vocab, probs = synthetic_passages(args.passages, rng)

    # -- load time: 10k passages, before anything imports torch or sentence-transformers --------
    small, _ = build_index(passages[: args.load_passages], rng)
    small.cfg = small.cfg.model_copy(update={"onnx_query_encoder": False})  # its load is timed below, apart
    with tempfile.TemporaryDirectory() as tmp:
        small.save(Path(tmp) / "index")
        size_mb = sum(f.stat().st_size for f in (Path(tmp) / "index").rglob("*") if f.is_file()) / 1e6
        loads = []
        for _ in range(5):
            started = time.perf_counter()
            PassageIndex.load(Path(tmp) / "index")
            loads.append(time.perf_counter() - started)
    del small
    torch_loaded = "torch" in sys.modules
    print(
        f"index load, {args.load_passages} passages ({size_mb:.0f} MB on disk): "
        f"first {loads[0]:.3f} s, median of 5 {statistics.median(loads):.3f} s (target < 1 s)"
        f"{'' if torch_loaded else '; torch was not imported'}"
    )
    # -- search latency over the full index, saved and loaded as `ask` and `serve` do --------
    index, bm25_seconds = build_index(passages, rng)
    index.cfg = index.cfg.model_copy(update={"onnx_query_encoder": not args.sentence_transformers})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        index.save(Path(tmp) / "index")
        saved = time.perf_counter() - started
        index = PassageIndex.load(Path(tmp) / "index")
        started = time.perf_counter()
        encoder = index.query_encoder
        print(
            f"index: {len(index)} passages; BM25 built in {bm25_seconds:.1f} s; saved in {saved:.1f} s "
            "(includes the ONNX export); dense part = RANDOM normalised vectors (same search cost as real ones)\n"
            f"query encoder {type(encoder).__name__} loaded on the first query in {time.perf_counter() - started:.2f} s"
        )
        return _search_latency(index, vocab, probs, args, rng)


def _search_latency(index: PassageIndex, vocab: list[str], probs: np.ndarray, args: argparse.Namespace, rng: np.random.Generator) -> int:
    queries = [" ".join(vocab[w] for w in rng.choice(VOCABULARY, size=rng.integers(3, 8), p=probs)) for _ in range(args.queries)]
    vectors = {q: index.embed_query(q) for q in queries}  # also warms the model up
    k, depth = 10, index.cfg.candidates

    embed = timed(index.embed_query, queries)
    bm25 = timed(lambda q: index.bm25_ranking(q, depth), queries)
    dense = timed(lambda q: index.dense_ranking(vectors[q], depth), queries)
    fused = timed(lambda q: index.search(q, k, query_vector=vectors[q]), queries)
    full = timed(lambda q: index.search(q, k), queries)

    print(f"{args.queries} queries, k={k}, {depth} candidates per retriever:")
    print(f"  query embedding (MiniLM)         {percentiles(embed)}")
    print(f"  BM25 ranking                     {percentiles(bm25)}")
    print(f"  dense ranking (matrix-vector)    {percentiles(dense)}")
    print(f"  search without query embedding   {percentiles(fused)}")
    print(f"  search with query embedding      {percentiles(full)}   (target < 20 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
