"""Retrieval at scale: index build time, memory, query latency and HNSW recall against exact search.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py [--passages 100000] [--queries 200]
        [--vectors clustered random] [--dense-index auto|exact|hnsw] [--ef 100 128 256]
        [--json results.json] [--sentence-transformers]

Passages are random sentences over a Zipf-distributed pseudo-word vocabulary, so BM25 has
realistic posting lists; BM25 is built by the index stage's own `bm25_index`. Their embeddings are
synthetic: MiniLM embeds 10-20 passages a second on 2 shared cores, so 1M would take most of a
day. Two kinds, each timed and scored:
- `clustered`: passages around 1,000 topics (see TOPICS), a stand-in chosen so that an HNSW graph
  finds as much of the exact top 10 as on real MiniLM embeddings of real text at 70k
  (docs/benchmarks.md, benchmarks/results/retrieval_calibration.txt). The representative case.
- `random`: uniform on the sphere. They have no neighbourhoods (every vector is about as far from
  all others), the worst case for any approximate index; exact search costs the same.
Recall@10 is over held-out vectors of the same kind against exact search (faiss.knn). The index
is then saved and loaded in a fresh process, as `ask` and `serve` load it, whose peak memory is
what serving costs; there questions are embedded by the real MiniLM exported to ONNX
(`--sentence-transformers`: the torch fallback) and the whole search is timed. Peak RSS of a step
is the process's VmHWM, reset before the step (/proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from distillqa.config import RetrievalConfig
from distillqa.retrieval import ann
from distillqa.retrieval.index import Passage, PassageIndex, bm25_index

WORDS_PER_PASSAGE = 150  # ~200 MiniLM tokens
VOCABULARY = 30_000
DIM = 384
# `clustered`: a fixed distribution, so that more passages make it denser, as more text does: 1,000
# topic centres, each with its own random 64-d subspace in which its passages vary (embeddings of
# text vary locally in few dimensions), by noise of norm 3 (a passage's cosine with its centre
# ~0.3). Over 70k such vectors an HNSW graph finds as much of the exact top 10 as over 70k MiniLM
# embeddings of real text (0.972 vs 0.968-0.986 at ef_search 128; docs/benchmarks.md).
TOPICS = 1_000
SUBSPACE = 64
CLUSTER_NOISE = 3.0


# -- data ---------------------------------------------------------------------------------------


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
    passages = []
    for block in range(0, n, 10_000):  # word ids a block at a time: 1M x 150 int64 would be 1.2 GB
        ids = rng.choice(VOCABULARY, size=(min(10_000, n - block), WORDS_PER_PASSAGE), p=probs)
        for i, row in enumerate(ids, start=block):
            words = [vocab[w] for w in row]
            sentences = [" ".join(words[s : s + 15]).capitalize() + "." for s in range(0, WORDS_PER_PASSAGE, 15)]
            text = " ".join(sentences)
            doc = f"doc{i // 50:05d}"
            passages.append(Passage(f"{doc}-p{i % 50:04d}", doc, doc, f"{doc}.pdf", 1 + (i % 50) // 5, 0, len(text), text))
    return passages, vocab, probs


def sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    """n float32 vectors uniform on the unit sphere."""
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def topics(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The `clustered` distribution: TOPICS centres on the sphere and, for each, SUBSPACE random
    directions (near-orthonormal: random vectors in 384-d barely overlap)."""
    bases = rng.standard_normal((TOPICS, SUBSPACE, DIM), dtype=np.float32) / np.float32(np.sqrt(DIM))
    return sphere(TOPICS, rng), bases


def embeddings(kind: str, n: int, rng: np.random.Generator, distribution: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """n normalised float32 vectors: `random` on the sphere; `clustered` drawn from `distribution`
    (see `topics`), in random order."""
    if kind == "random":
        return sphere(n, rng)
    centres, bases = distribution
    x = np.empty((n, DIM), dtype=np.float32)
    rows = rng.permutation(n)
    start = 0
    for topic, m in enumerate(np.bincount(rng.integers(0, TOPICS, n), minlength=TOPICS)):
        noise = rng.standard_normal((m, SUBSPACE), dtype=np.float32) @ bases[topic]
        x[rows[start : start + m]] = centres[topic] + noise * np.float32(CLUSTER_NOISE / np.sqrt(SUBSPACE))
        start += m
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


# -- measuring --------------------------------------------------------------------------------


def reset_peak() -> None:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def memory_mb() -> dict[str, float]:
    """This process's resident memory now and its peak since `reset_peak`, in MB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(status["VmRSS"].split()[0]) / 1024), "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024)}


@contextlib.contextmanager
def measured(name: str, results: dict) -> Iterator[None]:
    """Record the time and peak memory of the block under results[name]."""
    reset_peak()
    started = time.perf_counter()
    yield
    results[name] = {"seconds": round(time.perf_counter() - started, 1), **memory_mb()}
    print(f"  {name}: {results[name]['seconds']} s, peak RSS {results[name]['peak_rss_mb']} MB", flush=True)


def timed(fn: Callable, items: Iterable) -> dict[str, float]:
    """Per-item latency of fn over items: p50, p95, mean, max in ms."""
    ms = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        ms.append((time.perf_counter() - started) * 1000)
    ms.sort()
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
        "mean_ms": round(statistics.mean(ms), 2),
        "max_ms": round(ms[-1], 2),
    }


def show(name: str, t: dict, extra: str = "") -> None:
    print(f"  {name:<44} p50 {t['p50_ms']:7.2f} ms  p95 {t['p95_ms']:7.2f} ms  max {t['max_ms']:7.2f} ms{extra}", flush=True)


def recall_at_10(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t)) / 10 for f, t in zip(found, truth)]))


# -- the benchmark ----------------------------------------------------------------------------


def dense_search(index: PassageIndex, queries: np.ndarray, ef_values: list[int], results: dict) -> None:
    """Exact and HNSW search for held-out vectors of the passages' kind: latency and recall@10."""
    import faiss

    depth = index.cfg.candidates
    truth = faiss.knn(queries, np.asarray(index.embeddings), 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    exact = PassageIndex(index.passages, list(index.documents.values()), index.embeddings, index.bm25, index.cfg)  # no graph
    results["exact"] = timed(lambda q: exact.dense_ranking(q, depth), queries)
    show("dense, exact (numpy matrix-vector)", results["exact"])
    if index.graph is None:
        return
    for ef in ef_values:
        search = functools.partial(index.dense_ranking, depth=depth, ef_search=ef)
        t = timed(search, queries)
        t["recall_at_10"] = round(recall_at_10([search(q) for q in queries], truth), 4)
        results[f"hnsw_ef{ef}"] = t
        show(f"dense, HNSW ef_search={ef}", t, f"  recall@10 {t['recall_at_10']:.3f}")


def serve_latency(folder: str, queries: list[str], k: int) -> dict:
    """In a fresh process: load the index as `ask` does, then time each step of a search."""
    results: dict = {}
    reset_peak()
    started = time.perf_counter()
    index = PassageIndex.load(Path(folder))
    results["load"] = {"seconds": round(time.perf_counter() - started, 2), **memory_mb()}
    started = time.perf_counter()
    encoder = index.query_encoder
    results["encoder"] = type(encoder).__name__
    results["encoder_load_s"] = round(time.perf_counter() - started, 2)
    vectors = {q: index.embed_query(q) for q in queries}  # also warms the model up
    depth = index.cfg.candidates
    results["embed"] = timed(index.embed_query, queries)
    results["bm25"] = timed(lambda q: index.bm25_ranking(q, depth), queries)
    results["dense"] = timed(lambda q: index.dense_ranking(vectors[q], depth), queries)
    results["search_given_vector"] = timed(lambda q: index.search(q, k, query_vector=vectors[q]), queries)
    results["search"] = timed(lambda q: index.search(q, k), queries)
    results["serving_peak_rss_mb"] = memory_mb()["peak_rss_mb"]
    return results


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return f"{cpu}, {multiprocessing.cpu_count()} cores, load average {Path('/proc/loadavg').read_text().split()[0]} at start"



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--vectors", nargs="+", choices=["clustered", "random"], default=["clustered", "random"])
    parser.add_argument("--dense-index", choices=["auto", "exact", "hnsw"], default="auto", help="as retrieval.dense_index")
    parser.add_argument("--ef", type=int, nargs="+", default=[100, 128, 256], help="HNSW ef_search values to measure (at least the depth, 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument(
        "--sentence-transformers", action="store_true", help="embed queries with sentence-transformers, not the ONNX export"
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cfg = RetrievalConfig(dense_index=args.dense_index, onnx_query_encoder=not args.sentence_transformers)
    results: dict = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "machine": machine()}
    print(f"{args.passages} synthetic passages ({WORDS_PER_PASSAGE} words each), {results['machine']}", flush=True)

    with measured("passages", results):
        passages, vocab, probs = synthetic_passages(args.passages, rng)
    with measured("bm25_build", results):
        bm25 = bm25_index((p.text for p in passages), len(passages))
    documents = [{"doc_id": d, "title": d, "document": f"{d}.pdf", "pages": []} for d in sorted({p.doc_id for p in passages})]
    questions = [" ".join(vocab[w] for w in rng.choice(VOCABULARY, size=rng.integers(3, 8), p=probs)) for _ in range(args.queries)]
    distribution = topics(rng)  # held-out queries come from the passages' distribution

    for kind in args.vectors:
        print(f"{kind} vectors:", flush=True)
        out: dict = results.setdefault(kind, {})
        with measured("vectors", out):
            vectors = embeddings(kind, args.passages, rng, distribution)
        graph = None
        if ann.wanted(cfg, len(passages)):
            with measured("hnsw_build", out):
                graph = ann.build(vectors)
        index = PassageIndex(passages, documents, vectors, bm25, cfg, graph=graph)
        out["dense_index"] = index.dense_kind
        dense_search(index, embeddings(kind, args.queries, rng, distribution), args.ef, out)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "index"
            with measured("save", out):  # includes the ONNX export
                index.save(folder)
            out["disk_mb"] = {
                f.name: round(sum(g.stat().st_size for g in [f, *f.rglob("*")] if g.is_file()) / 1e6) for f in folder.iterdir()
            }
            del index, vectors, graph  # the fresh process loads its own copy
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                served = pool.apply(serve_latency, (str(folder), questions, 10))
        out["served"] = served
        print(
            f"  loaded in a fresh process in {served['load']['seconds']} s (RSS {served['load']['rss_mb']} MB); "
            f"{served['encoder']} loaded in {served['encoder_load_s']} s; serving peak RSS {served['serving_peak_rss_mb']} MB"
        )
        for name in ("embed", "bm25", "dense", "search_given_vector", "search"):
            show(f"served: {name}", served[name])
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
