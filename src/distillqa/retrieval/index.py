"""The passage index that lets `ask` and `serve` answer questions without a given context.

Documents are cut into reader-sized passages (whole sentences, ~`passage_tokens` tokens, with
overlap), and each passage is indexed twice: BM25 over lower-cased words without stopwords
(good at rare terms, names and numbers) and a normalised sentence-transformers embedding (good
at paraphrases). A query runs both and merges the two rankings by reciprocal rank fusion
(score = sum of 1 / (rrf_k + rank)), which needs no score calibration between the two. Dense
search is exact below `retrieval.ann_min_passages` passages and goes through a faiss HNSW graph
above (`distillqa.retrieval.ann`).

Passage sizes are counted with the embedder's own tokenizer, not words: the embedder truncates
its input (256 word pieces for MiniLM), so counting its tokens guarantees a 200-token passage is
embedded whole, and with the default student (the same MiniLM vocabulary) the count is exactly
what the reader sees. English averages ~1.3 word pieces per word, so a word count would overshoot.

The embedder is exported to ONNX before the passages are embedded, and the passages go through
that export in batches on all cores (the same vectors as sentence-transformers', to 1e-5);
without it they are embedded by sentence-transformers.

On disk (`RUN/index/`): `meta.json` (format, embedder, dense index kind, index-time settings),
`passages.jsonl`, `documents.json` (titles and page offsets, for citing an answer's page),
`embeddings.npy` (float32, one normalised row per passage), `dense.hnsw` (the faiss graph, when
there is one), `bm25/` (bm25s's own files) and `query_encoder/` (the embedder exported to ONNX,
see `distillqa.retrieval.query_encoder`). Loading reads all but the last; with a graph,
`embeddings.npy` is mapped, not read, since the graph holds its own copy of the vectors. The
query encoder is loaded on the first query that needs it, because loading a model takes longer
than loading the whole index. Without `query_encoder/` (export off or failed, or onnxruntime
missing) questions are embedded with sentence-transformers, ~4x slower.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distillqa.chunk import pack
from distillqa.config import RetrievalConfig, is_hashed
from distillqa.console import track
from distillqa.errors import DistillqaError
from distillqa.io import atomic_dir, read_json, read_jsonl, write_json, write_jsonl
from distillqa.layout import DOCUMENTS, INDEX, RunFolder
from distillqa.records import page_at
from distillqa.retrieval import ann, query_encoder
from distillqa.text import words

if TYPE_CHECKING:
    import faiss
    from bm25s import BM25
    from sentence_transformers import SentenceTransformer

    from distillqa.config import Config

log = logging.getLogger("distillqa")

FORMAT = 2  # 2: BM25 over folded words (accents and case)
META = "meta.json"
PASSAGES = "passages.jsonl"
DOCUMENT_INFO = "documents.json"
EMBEDDINGS = "embeddings.npy"
BM25_DIR = "bm25"
QUERY_ENCODER_DIR = "query_encoder"
BUNDLED_EMBEDDER_NAME = "all-MiniLM-L6-v2 (bundled)"
EMBED_BATCH = 32  # passages per encoder call and progress step

# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by whitespace and a capital,
# digit or opening quote. Abbreviations ("e.g. The") may split a sentence in two, which is
# harmless: sentences are only the units that passages are packed from.


@dataclass(frozen=True)
class Passage:
    """A span of one document: `text == document.text[start:end]`, cited by file name and page."""

    passage_id: str
    doc_id: str
    title: str
    document: str  # the source file name, e.g. "geology.pdf"
    page: int | None  # the page of the passage's first character
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Hit:
    """One search result: the fused score and where the passage ranked in each retriever."""

    passage: Passage
    score: float  # reciprocal rank fusion score
    bm25_rank: int | None  # 1-based; None when BM25 did not rank it (no shared term or too deep)
    dense_rank: int | None


# -- passages -------------------------------------------------------------------------------


def make_passages(doc: dict, count_tokens: Callable[[str], int], max_tokens: int, overlap_tokens: int) -> list[Passage]:
    """Cut one `documents.jsonl` record into passages that are exact slices of its text, packed as
    chunks are (`chunk.pack`) but reader-sized."""
    text = doc["text"]
    document = Path(doc.get("source") or doc["doc_id"]).name
    passages = []
    for n, (start, end, _) in enumerate(pack(text, count_tokens, max_tokens, overlap_tokens)):
        passages.append(
            Passage(
                passage_id=f"{doc['doc_id']}-p{n:04d}",
                doc_id=doc["doc_id"],
                title=doc.get("title") or document,
                document=document,
                page=page_at(doc.get("pages") or [], start),
                start=start,
                end=end,
                text=text[start:end],
            )
        )
    return passages


# -- ranking --------------------------------------------------------------------------------


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def bm25_tokens(text: str) -> list[str]:
    """Folded words (`text.words`) minus bm25s's English stopwords; no stemming, so the index
    stays predictable. bm25s's short list, not `text.STOPWORDS`: "when" or "first" can matter in a search."""
    stop = _stopwords()
    return [t for t in words(text) if t not in stop]


def bm25_index(texts: Iterable[str], total: int, quiet: bool = True) -> BM25:
    """A BM25 index over `bm25_tokens` of each text. Terms become ids as they are read, so each
    token costs one pointer to a shared int, not a string of its own (~3 GB less at 1M passages)."""
    import bm25s

    vocab: dict[str, int] = {}
    ids = [
        [vocab.setdefault(t, len(vocab)) for t in bm25_tokens(text)]
        for text in track(texts, total, "index: BM25 terms", quiet)
    ]
    bm25 = bm25s.BM25()
    bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
    return bm25


def index_settings(cfg: RetrievalConfig) -> dict:
    """The retrieval settings built into an index (passage sizes, embedder, ONNX export): the ones
    the index stage hashes. Query-time settings (top_k, rrf_k, ...) are not the index's: `ask`
    reads them from the run's config.yaml."""
    fields = RetrievalConfig.model_fields
    return {k: v for k, v in cfg.model_dump(mode="json").items() if is_hashed(fields[k])}


def rrf_fuse(rankings: Sequence[Sequence[int]], rrf_k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: (item, sum over rankings of 1/(rrf_k + rank)), best first.
    Ties go to the item with the better single rank, then the lower id, so results are stable."""
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
            best[item] = min(best.get(item, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (argpartition: O(n), not a full sort)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


# -- the embedder ---------------------------------------------------------------------------

_EMBEDDERS: dict[str, SentenceTransformer] = {}
_EMBEDDER_LOCK = threading.Lock()
_ENCODE_LOCK = threading.Lock()  # HF tokenizers fail ("Already borrowed") when two threads share one


def load_embedder(name: str | None) -> SentenceTransformer:
    """The sentence-transformers model, loaded once per process (index build, ask and serve share it)."""
    from distillqa.models import resolve_encoder

    path = resolve_encoder(name)
    with _EMBEDDER_LOCK:
        if path not in _EMBEDDERS:
            from sentence_transformers import SentenceTransformer

            try:
                _EMBEDDERS[path] = SentenceTransformer(path)
            except (OSError, ValueError) as e:
                raise DistillqaError(f"cannot load embedder {path!r}: {str(e).splitlines()[0]}") from None
        return _EMBEDDERS[path]


def embedder_display_name(name: str | None) -> str:
    return BUNDLED_EMBEDDER_NAME if name is None else name


def _token_counter(model: SentenceTransformer) -> Callable[[str], int]:
    tokenizer = model.tokenizer
    return lambda text: len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


class SentenceTransformerEncoder:
    """The embedder itself as a query encoder: the fallback when there is no ONNX export."""

    def __init__(self, name: str | None):
        self.model = load_embedder(name)

    def encode(self, texts: list[str]) -> np.ndarray:
        with _ENCODE_LOCK:
            vectors = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32, copy=False)


Encoder = query_encoder.OnnxQueryEncoder | SentenceTransformerEncoder


def _export_query_encoder(name: str | None, directory: Path) -> bool:
    """Export the embedder for fast query embedding; on any failure warn and go on without it
    (the index still works, questions are embedded by sentence-transformers)."""
    missing = [m for m in ("onnxruntime", "onnxscript") if not find_spec(m)]
    if missing:
        log.warning("retrieval: %s not installed: questions will be embedded with sentence-transformers (slower)", " and ".join(missing))
        return False
    try:
        query_encoder.export(load_embedder(name), directory)
    except Exception as e:  # noqa: BLE001 - an exporter failure must not lose the index built so far
        shutil.rmtree(directory, ignore_errors=True)
        log.warning("retrieval: ONNX export of the embedder failed (%s): questions will be embedded with sentence-transformers (slower)", str(e).splitlines()[0][:200])
        return False
    return True


def embed_passages(encoder: Encoder, texts: list[str], quiet: bool = True) -> np.ndarray:
    """Normalised float32 embeddings, one row per text, in batches of similar lengths (longest
    first, as sentence-transformers orders them), so little of each batch is padding."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    vectors: np.ndarray | None = None
    steps = range(0, len(texts), EMBED_BATCH)
    for start in track(steps, len(steps), "index: embedding passages", quiet):
        rows = order[start : start + EMBED_BATCH]
        part = encoder.encode([texts[i] for i in rows])
        if vectors is None:
            vectors = np.empty((len(texts), part.shape[1]), dtype=np.float32)
        vectors[rows] = part
    assert vectors is not None  # build() refuses an index without passages
    return vectors


# -- the index ------------------------------------------------------------------------------


class PassageIndex:
    """Passages with their BM25 index and embeddings; `search` fuses both rankings."""

    def __init__(
        self,
        passages: list[Passage],
        documents: list[dict],
        embeddings: np.ndarray,
        bm25: BM25,
        cfg: RetrievalConfig,
        directory: Path | None = None,
        graph: faiss.Index | None = None,
    ):
        counts = {"embeddings": len(embeddings), "graph vectors": len(passages) if graph is None else graph.ntotal}
        for what, n in counts.items():
            if n != len(passages):
                raise DistillqaError(
                    f"index is inconsistent: {len(passages)} passages but {n} {what}: rebuild it with `distillqa index RUN --force`"
                )
        self.passages = passages
        self.documents = {d["doc_id"]: d for d in documents}  # doc_id -> title, document, pages
        self.embeddings = embeddings
        self.bm25 = bm25
        self.cfg = cfg
        self.graph = graph  # the HNSW graph for dense search; None: exact search
        self.directory = directory  # where it was loaded or built: the exported query encoder lives there
        self._workdir: tempfile.TemporaryDirectory | None = None  # built here: holds the export until saved
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.passages)

    @property
    def embedder_name(self) -> str:
        return embedder_display_name(self.cfg.embedder)

    @property
    def dense_kind(self) -> str:
        return "exact" if self.graph is None else "hnsw"

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(cls, documents: list[dict], cfg: RetrievalConfig, quiet: bool = True) -> PassageIndex:
        """Cut documents into passages, then index them with BM25, the embedder (through its ONNX
        export when there is one) and, when `retrieval.dense_index` asks, an HNSW graph."""
        model = load_embedder(cfg.embedder)
        limit = model.max_seq_length
        if limit and cfg.passage_tokens > limit - 2:
            log.warning(
                "retrieval.passage_tokens=%d is more than the embedder reads (%d): passage ends are not embedded",
                cfg.passage_tokens,
                limit,
            )
        count = _token_counter(model)
        passages: list[Passage] = []
        for doc in documents:
            passages.extend(make_passages(doc, count, cfg.passage_tokens, cfg.passage_overlap_tokens))
        if not passages:
            raise DistillqaError("no passages to index: the documents contain no text")
        texts = [p.text for p in passages]
        bm25 = bm25_index(texts, len(texts), quiet)

        workdir = tempfile.TemporaryDirectory(prefix="distillqa-index-")
        export = Path(workdir.name) / QUERY_ENCODER_DIR
        encoder = (
            query_encoder.OnnxQueryEncoder(export)
            if cfg.onnx_query_encoder and _export_query_encoder(cfg.embedder, export)
            else SentenceTransformerEncoder(cfg.embedder)
        )
        embeddings = embed_passages(encoder, texts, quiet)
        graph = ann.build(embeddings, quiet) if ann.wanted(cfg, len(passages)) else None
        docs = [
            {
                "doc_id": d["doc_id"],
                "title": d.get("title") or Path(d.get("source") or d["doc_id"]).name,
                "document": Path(d.get("source") or d["doc_id"]).name,
                "pages": d.get("pages") or [],
            }
            for d in documents
        ]
        index = cls(passages, docs, embeddings, bm25, cfg, Path(workdir.name), graph)
        index._workdir, index._encoder = workdir, encoder
        return index

    # -- files ------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write every file into a temporary sibling folder, then swap it in, so a reader never
        sees a half-written index."""
        with atomic_dir(Path(directory)) as tmp:
            write_jsonl(tmp / PASSAGES, (asdict(p) for p in self.passages))
            write_json(tmp / DOCUMENT_INFO, list(self.documents.values()))
            np.save(tmp / EMBEDDINGS, self.embeddings)
            if self.graph is not None:
                ann.save(self.graph, tmp / ann.FILE)
            self.bm25.save(str(tmp / BM25_DIR), show_progress=False)
            exported = self.cfg.onnx_query_encoder and self._write_query_encoder(tmp / QUERY_ENCODER_DIR)
            write_json(
                tmp / META,
                {
                    "format": FORMAT,
                    "embedder": self.embedder_name,  # display name; config.embedder is what loads
                    "dim": int(self.embeddings.shape[1]),
                    "passages": len(self.passages),
                    "documents": len(self.documents),
                    "token_counts": "embedder tokenizer",
                    "query_encoder": "onnxruntime" if exported else "sentence-transformers",
                    "dense_index": self.dense_kind,
                    "config": index_settings(self.cfg),
                },
            )

    def _write_query_encoder(self, target: Path) -> bool:
        """Copy the ONNX export this index was built or loaded with into `target`; export the
        embedder when it has none, unless it was built here (the export failed then: once is enough)."""
        source = self.directory / QUERY_ENCODER_DIR if self.directory else None
        if source is not None and (source / query_encoder.MODEL_FILE).is_file():
            shutil.copytree(source, target)
            return True
        return self._workdir is None and _export_query_encoder(self.cfg.embedder, target)

    @classmethod
    def load(cls, directory: Path) -> PassageIndex:
        """Read a saved index (no model is loaded here; see `embed_query`)."""
        import bm25s

        directory = Path(directory)
        if not (directory / META).is_file():
            raise DistillqaError(f"{directory}: no passage index here (meta.json missing): build it with `distillqa index RUN`")
        rebuild = "rebuild it with `distillqa index RUN --force`"
        try:
            meta = read_json(directory / META)
        except (OSError, ValueError) as e:
            raise DistillqaError(f"{directory / META} is damaged ({str(e).splitlines()[0]}): {rebuild}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise DistillqaError(f"{directory}: index format {found} is not {FORMAT}: {rebuild}")
        try:
            config = RetrievalConfig.model_validate(meta.get("config"))
            passages = [Passage(**rec) for rec in read_jsonl(directory / PASSAGES)]
            documents = read_json(directory / DOCUMENT_INFO)
            hnsw = meta.get("dense_index") == "hnsw"
            # with a graph, exact search is never run: map the vectors, do not read them
            embeddings = np.load(directory / EMBEDDINGS, mmap_mode="r" if hnsw else None)
            graph = ann.load(directory / ann.FILE) if hnsw else None
            bm25 = bm25s.BM25.load(str(directory / BM25_DIR), show_progress=False, verbosity=0)
        except (OSError, ValueError, TypeError, RuntimeError, DistillqaError) as e:
            raise DistillqaError(f"{directory}: cannot read the index ({str(e).splitlines()[0]}): {rebuild}") from None
        return cls(passages, documents, embeddings, bm25, config, directory, graph)

    # -- searching --------------------------------------------------------------------------
    @property
    def query_encoder(self) -> Encoder:
        """The exported ONNX encoder when the index has one and onnxruntime is installed, else
        sentence-transformers; loaded on first use."""
        with self._encoder_lock:
            if self._encoder is None:
                onnx_dir = self.directory / QUERY_ENCODER_DIR if self.directory else None
                if onnx_dir is not None and (onnx_dir / query_encoder.MODEL_FILE).is_file() and find_spec("onnxruntime"):
                    self._encoder = query_encoder.OnnxQueryEncoder(onnx_dir)
                else:
                    self._encoder = SentenceTransformerEncoder(self.cfg.embedder)
            return self._encoder

    def embed_query(self, query: str) -> np.ndarray:
        """The query's normalised embedding."""
        return self.query_encoder.encode([query])[0]

    def bm25_ranking(self, query: str, depth: int) -> list[int]:
        """Passage numbers sharing at least one term with the query, best BM25 score first."""
        ids = self.bm25.get_tokens_ids(bm25_tokens(query))
        if not ids:
            return []
        scores = self.bm25.get_scores_from_ids(ids)
        return [int(i) for i in _top(scores, depth) if scores[i] > 0]

    def dense_ranking(self, query_vector: np.ndarray, depth: int, ef_search: int | None = None) -> list[int]:
        """Passage numbers by cosine similarity (a dot product: both sides are normalised): over
        every embedding, or through the HNSW graph `ef_search` wide (None: the config.py default)."""
        if self.graph is None:
            return [int(i) for i in _top(self.embeddings @ query_vector, depth)]
        ef_search = RetrievalConfig.model_fields["hnsw_ef_search"].default if ef_search is None else ef_search
        return [int(i) for i in ann.search(self.graph, query_vector, depth, ef_search)]

    def search(
        self,
        query: str,
        k: int = 5,
        query_vector: np.ndarray | None = None,
        *,
        candidates: int | None = None,
        rrf_k: int | None = None,
        ef_search: int | None = None,
    ) -> list[Hit]:
        """The k best passages for `query` by fused BM25 and dense rank. Pass `query_vector` when
        the query is already embedded (batch jobs, benchmarks). `candidates`, `rrf_k` and
        `ef_search` are query-time settings (retrieval.*; None: their config.py defaults), so the
        caller's config applies, not the one the index was built with."""
        if not query.strip() or k < 1:
            return []
        defaults = RetrievalConfig.model_fields
        candidates = defaults["candidates"].default if candidates is None else candidates
        rrf_k = defaults["rrf_k"].default if rrf_k is None else rrf_k
        depth = max(k, candidates)
        bm25 = self.bm25_ranking(query, depth)
        dense = self.dense_ranking(self.embed_query(query) if query_vector is None else query_vector, depth, ef_search)
        bm25_rank = {p: r for r, p in enumerate(bm25, start=1)}
        dense_rank = {p: r for r, p in enumerate(dense, start=1)}
        return [
            Hit(self.passages[p], score, bm25_rank.get(p), dense_rank.get(p))
            for p, score in rrf_fuse([bm25, dense], rrf_k)[:k]
        ]

    def page_of(self, doc_id: str, offset: int) -> int | None:
        """The page of a character offset in a document's text (to cite an answer, not its passage)."""
        doc = self.documents.get(doc_id)
        return page_at(doc["pages"], offset) if doc else None


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """Stage `index`: RUN/documents.jsonl -> RUN/index/."""

    documents = read_jsonl(run.path(DOCUMENTS))
    if not documents:
        raise DistillqaError(f"{run.path(DOCUMENTS)}: no documents to index: run `distillqa ingest` with some files")
    index = PassageIndex.build(documents, cfg.retrieval, quiet=run.quiet)
    index.save(run.path(INDEX))
    return {
        "documents": len(index.documents),
        "passages": len(index),
        "embedder": index.embedder_name,
        "dim": int(index.embeddings.shape[1]),
        "dense_index": index.dense_kind,
    }
