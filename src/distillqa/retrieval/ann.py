"""Approximate dense search for large indexes: a faiss HNSW graph over the passage embeddings.

Exact search multiplies the question's vector with every passage's: ~0.08 ms per 1,000 passages
on 2 cores, 85 ms at 1M. An HNSW graph (each vector linked to its nearest ones, in layers
searched greedily from the top) compares the question with a few thousand vectors instead: ~2 ms
at 1M, finding 98% of the exact top 10 on vectors that stand in for embeddings of real text, and
97-99% on real MiniLM embeddings at 70k (docs/benchmarks.md). The embeddings are L2-normalised,
so the inner product that the graph is built and searched with is the cosine, as in exact search.

`retrieval.dense_index` chooses ('auto': a graph from `retrieval.ann_min_passages` passages on);
the graph is built once at index time into `RUN/index/dense.hnsw`, and `retrieval.hnsw_ef_search`
sets how wide a query searches it. faiss is imported only to build or load a graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distillqa.config import RetrievalConfig
from distillqa.console import track

if TYPE_CHECKING:
    import faiss

FILE = "dense.hnsw"
# Links per vector (twice that on the bottom layer) and the search breadth while linking: with 32
# and 80, recall@10 at 1M is 0.950 at ef_search 128 and 0.981 at 256 (benchmark's `clustered`
# vectors), and building takes ~13 min on 2 cores; the graph adds ~270 bytes per vector to the
# 1,536 of a float32 384-d embedding.
M = 32
EF_CONSTRUCTION = 80
ADD_STEP = 10_000  # vectors per progress step; faiss links each step on all cores


def wanted(cfg: RetrievalConfig, passages: int) -> bool:
    """Whether the index stage builds a graph for this many passages."""
    return cfg.dense_index == "hnsw" or (cfg.dense_index == "auto" and passages >= cfg.ann_min_passages)


def build(vectors: np.ndarray, quiet: bool = True) -> faiss.IndexHNSWFlat:
    """An HNSW graph over normalised float32 vectors (it keeps its own copy of them)."""
    import faiss

    graph = faiss.IndexHNSWFlat(vectors.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    steps = range(0, len(vectors), ADD_STEP)
    for start in track(steps, len(steps), "index: linking the HNSW graph", quiet):
        graph.add(np.ascontiguousarray(vectors[start : start + ADD_STEP], dtype=np.float32))
    return graph


def search(graph: faiss.Index, vector: np.ndarray, depth: int, ef_search: int) -> np.ndarray:
    """Row numbers of the `depth` nearest vectors found, best first. The search keeps
    max(ef_search, depth) candidates: fewer than `depth` would cut the ranking short."""
    import faiss

    params = faiss.SearchParametersHNSW(efSearch=max(ef_search, depth))
    _, ids = graph.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), depth, params=params)
    return ids[0][ids[0] >= 0]


def save(graph: faiss.Index, path: Path) -> None:
    import faiss

    faiss.write_index(graph, str(path))


def load(path: Path) -> faiss.Index:
    import faiss

    return faiss.read_index(str(path))
