"""The chunk stage: documents -> RUN/chunks.jsonl, passages sized in the teacher's own tokens.

A chunk is what the teacher reads in one prompt, so its size is counted with the teacher's
tokenizer (the GGUF's vocabulary for llama.cpp, the Hugging Face tokenizer otherwise). The
default of 384 tokens with 64 of overlap suits the bundled SmolLM2-135M teacher (2048-token
context, and small models answer best about short passages); the seed notebook used 2000/500
for Gemma-2, which is a fine choice for a large teacher (`--set chunk.max_tokens=2000`).

Cuts fall at paragraph ends where possible, else at sentence ends, else between words (a
sentence longer than a chunk), else inside a word (a run of text without spaces). Consecutive
chunks share about `overlap_tokens` of whole sentences, so a fact cut at a chunk's edge is
whole in the next one. Every chunk is an exact slice of its document's text, and together the
chunks cover every non-space character of it.

Many documents are chunked by worker processes (`chunk.workers`, `distillqa.pool`), each
loading the tokenizer once: the same chunks in the same order.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distillqa.config import ChunkConfig, Config
from distillqa.errors import DistillqaError
from distillqa.io import read_jsonl, write_jsonl
from distillqa.layout import CHUNKS, DOCUMENTS, RunFolder
from distillqa.pool import ordered_map
from distillqa.records import page_at
from distillqa.text import ENDS_WITH_STOP, sentence_spans

log = logging.getLogger("distillqa")

TokenCounter = Callable[[str], int]

_SPACE_RUNS = re.compile(r"\S+")
_HEADING_TOKENS = 24


# --- token counters ------------------------------------------------------------------------


def load_token_counter(cfg: Config) -> TokenCounter:
    """Count tokens as the teacher will (see the module doc); `chunk.tokenizer` may override it."""
    name = cfg.chunk.tokenizer
    if name != "teacher":
        return _gguf_counter(Path(name)) if name.lower().endswith(".gguf") else _hf_counter(name)
    backend, model = cfg.teacher.backend, cfg.teacher.model
    if model is None and backend != "openai":  # the bundled SmolLM2 (its GGUF holds the tokenizer)
        from distillqa.models import bundled_teacher_gguf

        return _gguf_counter(bundled_teacher_gguf())
    if backend == "llamacpp" or (backend == "transformers" and model.lower().endswith(".gguf")):  # type: ignore[union-attr]
        return _gguf_counter(Path(model))  # type: ignore[arg-type]
    if backend == "transformers":
        return _hf_counter(model)  # type: ignore[arg-type]
    try:  # openai: a served model; its tokenizer may or may not be on this machine
        return _hf_counter(model, local_only=True) if model else _approximate()
    except DistillqaError:
        return _approximate()


def _approximate() -> TokenCounter:
    log.warning("chunk: no local tokenizer for the served teacher model: counting tokens as characters/4")
    return lambda text: (len(text) + 3) // 4


def _gguf_counter(path: Path) -> TokenCounter:
    llm = _gguf_vocab(str(path))
    return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False))


@functools.cache
def _gguf_vocab(path: str):  # -> llama_cpp.Llama (an optional dependency)
    """Load only the vocabulary of a GGUF (fast, no weights); once per file and process."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise DistillqaError(
            "llama-cpp-python is not installed: `pip install 'distillqa[llama]'`, or set chunk.tokenizer to a Hugging Face tokenizer"
        ) from None
    if not Path(path).is_file():
        raise DistillqaError(f"{path}: GGUF file not found: check teacher.model or chunk.tokenizer")
    try:
        with _stderr_silenced():
            llm = Llama(model_path=path, vocab_only=True, verbose=False)
    except ValueError as e:
        raise DistillqaError(f"{path}: cannot load the GGUF vocabulary ({e}): is it a complete GGUF file?") from None
    atexit.register(llm.close)  # closing at interpreter teardown fails inside llama_cpp
    return llm


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """llama.cpp writes a context-size warning to file descriptor 2 even with verbose=False."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _hf_counter(name: str, local_only: bool = False) -> TokenCounter:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except Exception as e:  # hub, file and format errors all mean the same thing here
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise DistillqaError(f"cannot load tokenizer {name!r} for chunking ({reason}): set chunk.tokenizer to a tokenizer folder, HF id or .gguf") from None
    tokenizer.model_max_length = 1 << 62  # we count whole documents; no "sequence too long" warnings
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


# --- chunking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    """A sentence, or a piece of one too long for a chunk: the smallest thing a chunk holds."""

    start: int
    end: int
    tokens: int
    opens_paragraph: bool
    heading: bool = False  # a short paragraph of its own without a full stop: keep it with what follows


def pack(text: str, count_tokens: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of consecutive windows of at most `max_tokens` that cover `text`:
    whole sentences (a longer one cut at words), a cut at a paragraph end where one falls in the
    window's second half, never a heading left at the end, and about `overlap_tokens` of whole
    sentences repeated from the window before. Chunks (for the teacher) and index passages (for
    the reader) are both packed by this."""
    if overlap_tokens >= max_tokens:
        raise DistillqaError(f"overlap_tokens ({overlap_tokens}) must be smaller than max_tokens ({max_tokens})")
    units = _units(text, count_tokens, max_tokens)
    windows: list[tuple[int, int, int]] = []
    carried: list[int] = []  # indices of units repeated from the previous window
    first_new = 0
    while first_new < len(units):
        members = _fill(units, carried, first_new, max_tokens)
        n_tokens = count_tokens(text[units[members[0]].start : units[members[-1]].end])
        while n_tokens > max_tokens and len(members) > 1:  # the parts' counts need not add up exactly
            # give up new sentences before the overlap, but never the last new one
            members = members[:-1] if members[-2] >= first_new else members[1:]
            n_tokens = count_tokens(text[units[members[0]].start : units[members[-1]].end])
        windows.append((units[members[0]].start, units[members[-1]].end, n_tokens))
        first_new = members[-1] + 1
        carried = _overlap(units, members, overlap_tokens)
    return windows


def chunk_document(doc: dict, count_tokens: TokenCounter, max_tokens: int, overlap_tokens: int) -> list[dict]:
    """Cut one document into chunks.jsonl records (see docs/design.md and the module doc)."""
    text = doc["text"]
    return [
        {
            "chunk_id": f"{doc['doc_id']}-{i:04d}",
            "doc_id": doc["doc_id"],
            "index": i,
            "start": start,
            "end": end,
            "text": text[start:end],
            "page_start": page_at(doc["pages"], start),
            "page_end": page_at(doc["pages"], end - 1),
            "n_tokens": n_tokens,
        }
        for i, (start, end, n_tokens) in enumerate(pack(text, count_tokens, max_tokens, overlap_tokens))
    ]


def _fill(units: list[_Unit], carried: list[int], first_new: int, max_tokens: int) -> list[int]:
    """The units of the next chunk: the carried overlap, then new units while they fit,
    ending at a paragraph end if one falls in the second half of the chunk."""
    members = list(carried)
    total = sum(units[i].tokens for i in members)
    if total + units[first_new].tokens > max_tokens:
        members, total = [], 0  # the overlap must never stop the chunk from moving on
    end = first_new
    while end < len(units) and (end == first_new or total + units[end].tokens <= max_tokens):
        total += units[end].tokens
        end += 1
    if end < len(units) and not _good_cut(units, end):
        size = total
        for i in range(end - 1, first_new, -1):
            size -= units[i].tokens
            if _good_cut(units, i) and size >= max_tokens // 2:
                end = i
                break
        else:
            if units[end - 1].heading and end - 1 > first_new:
                end -= 1  # no paragraph end to cut at, but at least do not end on a heading
    return members + list(range(first_new, end))


def _good_cut(units: list[_Unit], i: int) -> bool:
    """Cutting before unit `i` ends a paragraph and leaves no heading behind."""
    return units[i].opens_paragraph and not units[i - 1].heading


def _overlap(units: list[_Unit], members: list[int], overlap_tokens: int) -> list[int]:
    """The last whole units of a chunk adding up to about `overlap_tokens` (never the whole chunk).

    Whole sentences rarely add up exactly: take them while they fit, or the last one alone if
    it is at most twice the target, so long sentences still overlap.
    """
    carried: list[int] = []
    total = 0
    for i in reversed(members[1:]):
        if total + units[i].tokens > overlap_tokens:
            break
        carried.insert(0, i)
        total += units[i].tokens
    if not carried and overlap_tokens > 0 and len(members) > 1 and units[members[-1]].tokens <= 2 * overlap_tokens:
        carried = [members[-1]]
    return carried


def _units(text: str, count_tokens: TokenCounter, max_tokens: int) -> list[_Unit]:
    spans = sentence_spans(text)
    opens = [i == 0 or "\n" in text[spans[i - 1][1] : start] for i, (start, _) in enumerate(spans)]
    units: list[_Unit] = []
    for i, (start, end) in enumerate(spans):
        tokens = count_tokens(text[start:end])
        if tokens <= max_tokens:
            alone = opens[i] and (i + 1 == len(spans) or opens[i + 1])
            heading = alone and tokens <= _HEADING_TOKENS and not ENDS_WITH_STOP.search(text, start, end)
            units.append(_Unit(start, end, tokens, opens[i], heading))
            continue
        for j, (s, e, n) in enumerate(_split_long(text, start, end, count_tokens, max_tokens)):
            units.append(_Unit(s, e, n, opens[i] and j == 0))
    return units


def _split_long(text: str, start: int, end: int, count_tokens: TokenCounter, max_tokens: int) -> list[tuple[int, int, int]]:
    """Pieces (start, end, tokens) of a sentence longer than a chunk: as many whole words as fit,
    and a single word longer than a chunk cut after as many characters as fit."""
    words = [(m.start(), m.end()) for m in _SPACE_RUNS.finditer(text, start, end)]
    pieces: list[tuple[int, int, int]] = []
    i = 0
    while i < len(words):
        begin = words[i][0]

        def fits(stop: int) -> bool:
            return count_tokens(text[begin:stop]) <= max_tokens

        if fits(words[i][1]):
            n_words = _longest(lambda k: fits(words[i + k - 1][1]), 1, len(words) - i)
            stop, i = words[i + n_words - 1][1], i + n_words
        else:
            stop = _longest(lambda k: fits(begin + k), 1, words[i][1] - begin) + begin
            words[i] = (stop, words[i][1])
        pieces.append((begin, stop, count_tokens(text[begin:stop])))
    return pieces


def _longest(fits: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest k in [lo, hi] with fits(k), given fits(lo) and that fits only turns false as k
    grows: gallop (1, 2, 4, ... steps) then bisect, so the cost depends on the answer, not on hi."""
    step = 1
    while lo + step <= hi and fits(lo + step):
        lo, step = lo + step, step * 2
    hi = min(hi, lo + step - 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _chunks_of(cfg: ChunkConfig, count_tokens: TokenCounter, doc: dict) -> list[dict]:
    """`chunk_document` as `ordered_map` calls it: the token counter is its per-process state."""
    return chunk_document(doc, count_tokens, cfg.max_tokens, cfg.overlap_tokens)


def run_stage(run: RunFolder, cfg: Config) -> dict:
    documents = read_jsonl(run.path(DOCUMENTS))
    chunks: list[dict] = []
    with ordered_map(
        functools.partial(_chunks_of, cfg.chunk),
        documents,
        setup=functools.partial(load_token_counter, cfg),
        workers=cfg.chunk.workers,
        description="chunk",
        quiet=run.quiet,
        setting="chunk.workers",
    ) as results:
        for doc_chunks in results:
            chunks.extend(doc_chunks)
    write_jsonl(run.path(CHUNKS), chunks)
    sizes = [c["n_tokens"] for c in chunks]
    return {
        "documents": len(documents),
        "chunks": len(chunks),
        "tokens_mean": round(statistics.fmean(sizes), 1) if sizes else 0,
        "tokens_max": max(sizes, default=0),
    }
