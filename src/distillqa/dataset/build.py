"""The build-dataset stage: teacher pairs -> grounded, filtered `qa.jsonl` and SQuAD train/validation.

With `dataset.span_clozes` (the default), each chunk's teacher pairs are joined by rule-based
pairs for every span of its sentences (route `span-cloze`, see `distillqa.questions.span_clozes`).
For each pair: ground the answer as a verbatim span of the chunk the teacher read (the
whole document only as a fallback), cut a training passage of about `dataset.context_chars`
characters around it, apply the quality filters, then split by chunk and export SQuAD v1.1.
`dataset_summary.json` counts every pair by what happened to it, so
`pairs_proposed == kept + sum(dropped)` and `train + validation == kept`.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from distillqa.config import Config
from distillqa.console import track
from distillqa.dataset.filters import PairFilter
from distillqa.dataset.grounding import GroundedSpan, ground_with_reason
from distillqa.dataset.squad import choose_separable_validation, count, squad_dataset
from distillqa.errors import DistillqaError
from distillqa.io import read_jsonl, write_json, write_jsonl
from distillqa.layout import CHUNKS, DATASET_SUMMARY, DOCUMENTS, GENERATIONS, QA, TRAIN, VALIDATION, RunFolder
from distillqa.questions import span_clozes
from distillqa.records import page_at
from distillqa.text import SENTENCE_BREAK, fold

# End of a sentence (punctuation, closing quotes, then whitespace) or a line break.
_EXAMPLES_PER_REASON = 3


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """Build qa.jsonl, train.json, validation.json and dataset_summary.json; return counts for the manifest."""
    run.require(DOCUMENTS, CHUNKS, GENERATIONS)
    docs = {d["doc_id"]: d for d in read_jsonl(run.path(DOCUMENTS))}
    chunks = {c["chunk_id"]: c for c in read_jsonl(run.path(CHUNKS))}
    _check_chunks(run, chunks, docs)
    # One record per chunk; should a chunk appear twice, its last record wins (pair ids stay unique).
    generations = list({g["chunk_id"]: g for g in read_jsonl(run.path(GENERATIONS))}.values())

    records, stats = _ground_and_filter(run, cfg, generations, chunks, docs)

    kept_chunks = {r["chunk_id"] for r in records}
    chunk_order = [c for c in chunks if c in kept_chunks]
    validation_chunks = choose_separable_validation(
        records, chunk_order, cfg.dataset.validation_fraction, cfg.dataset.seed, docs
    )
    train = squad_dataset([r for r in records if r["chunk_id"] not in validation_chunks], docs)
    validation = squad_dataset([r for r in records if r["chunk_id"] in validation_chunks], docs)

    summary = {
        "chunks": len(chunks),
        "generations": len(generations),
        "pairs_proposed": stats["proposed"],
        "proposed_per_route": stats["proposed_per_route"],
        "dropped_per_route": stats["dropped_per_route"],
        "grounded": {match: stats["grounded"][match] for match in ("exact", "normalized", "fuzzy")},
        "dropped": dict(stats["dropped"].most_common()),
        "kept": len(records),
        "kept_per_route": dict(Counter(r["route"] for r in records).most_common()),
        "train": {**count(train), "chunks": len(chunk_order) - len(validation_chunks)},
        "validation": {**count(validation), "chunks": len(validation_chunks)},
        "dropped_examples": stats["examples"],
    }
    if not records:
        # The summary is complete and explains the failure; the dataset files would be empty.
        write_json(run.path(DATASET_SUMMARY), summary)
        reasons = ", ".join(f"{n} {reason}" for reason, n in stats["dropped"].most_common(3)) or "no pairs generated"
        raise DistillqaError(
            f"no grounded question/answer pairs were kept: {stats['proposed']} proposed ({reasons}); "
            f"see {run.path(DATASET_SUMMARY)}; try answer-first mode or a stronger teacher"
        )
    write_jsonl(run.path(QA), records)
    write_json(run.path(TRAIN), train)
    write_json(run.path(VALIDATION), validation)
    write_json(run.path(DATASET_SUMMARY), summary)
    run.log.info("build-dataset: %s", {k: v for k, v in summary.items() if k != "dropped_examples"})
    return {
        "pairs_proposed": stats["proposed"],
        "grounded": sum(stats["grounded"].values()),
        "kept": len(records),
        **{f"{route}_kept": n for route, n in summary["kept_per_route"].items()},
        "train_questions": summary["train"]["questions"],
        "validation_questions": summary["validation"]["questions"],
        "train_paragraphs": summary["train"]["paragraphs"],
        "validation_paragraphs": summary["validation"]["paragraphs"],
    }


def _check_chunks(run: RunFolder, chunks: dict[str, dict], docs: dict[str, dict]) -> None:
    """Offsets are computed from chunk starts, so chunks must still match their documents."""
    for chunk in chunks.values():
        doc = docs.get(chunk["doc_id"])
        if doc is None or doc["text"][chunk["start"] : chunk["end"]] != chunk["text"]:
            raise DistillqaError(
                f"{run.path(CHUNKS)}: chunk {chunk['chunk_id']} does not match {run.path(DOCUMENTS)}: "
                f"rerun `distillqa chunk {run.root} --force`"
            )


def _ground_and_filter(
    run: RunFolder, cfg: Config, generations: list[dict], chunks: dict[str, dict], docs: dict[str, dict]
) -> tuple[list[dict], dict]:
    """qa.jsonl records for the pairs that survive, and counts of what happened to every pair."""
    pair_filter = PairFilter(cfg.dataset)
    grounded: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    examples: dict[str, list[dict]] = defaultdict(list)
    records: list[dict] = []
    proposed: Counter[str] = Counter()  # per route
    dropped_per_route: Counter[str] = Counter()
    sentences_done: set[tuple[str, int]] = set()  # for span clozes: sentences shared by overlapping chunks

    def drop(reason: str, chunk_id: str, question: str, answer: str, route: str) -> None:
        dropped[reason] += 1
        dropped_per_route[route] += 1
        if len(examples[reason]) < _EXAMPLES_PER_REASON:
            examples[reason].append({"chunk_id": chunk_id, "question": question, "answer": answer})

    for gen in track(generations, len(generations), "grounding answers", run.quiet):
        chunk = chunks.get(gen["chunk_id"])
        if chunk is None:
            raise DistillqaError(
                f"{run.path(GENERATIONS)}: chunk {gen['chunk_id']} is not in {run.path(CHUNKS)}: "
                f"rerun `distillqa generate {run.root} --force`"
            )
        doc = docs[chunk["doc_id"]]
        pairs = list(gen.get("pairs") or [])
        if cfg.dataset.span_clozes:  # the rule-based route made here, counted like the teacher's
            pairs += span_clozes.chunk_pairs(chunk, sentences_done, cfg.questions)
        for i, pair in enumerate(pairs):
            route = str(pair.get("route", "unknown"))
            proposed[route] += 1
            question, answer = str(pair.get("question") or ""), str(pair.get("answer") or "")
            hint = pair.get("answer_start") if isinstance(pair.get("answer_start"), int) else 0
            span, reason = ground_pair(answer, question, chunk, doc, cfg.dataset.fuzzy_threshold, hint)
            if span is None:
                drop(reason, chunk["chunk_id"], question, answer, route)
                continue
            grounded[span.match] += 1
            answer_text = doc["text"][span.start : span.end]
            context_start, context_end = context_window(doc["text"], span.start, span.end, cfg.dataset.context_chars)
            if fold(doc["text"][context_start:context_end]) == fold(answer_text):
                drop("no_context", chunk["chunk_id"], question, answer, route)  # the document is only the answer
                continue
            sentence_start, sentence_end = sentence_around(
                doc["text"], span.start, span.end, context_start, context_end
            )
            # Rephrasing the answer's own sentence is how good questions are made; copying long
            # stretches of the rest of the passage is the teacher repeating its input.
            elsewhere = doc["text"][context_start:sentence_start] + "\n" + doc["text"][sentence_end:context_end]
            verdict = pair_filter.check(question, answer_text, elsewhere, doc["doc_id"])
            if verdict.reason is not None:
                drop(verdict.reason, chunk["chunk_id"], question, answer, route)
                continue
            records.append(
                {
                    "id": f"{chunk['chunk_id']}-{i:02d}",
                    "question": verdict.question,
                    "answer": answer_text,
                    "doc_id": doc["doc_id"],
                    "chunk_id": chunk["chunk_id"],
                    "offset": span.start,
                    "page": page_at(doc["pages"], span.start),
                    "route": route,
                    "teacher": gen.get("teacher", ""),
                    "match": span.match,
                    "context_start": context_start,
                    "context_end": context_end,
                }
            )
    stats = {
        "proposed": sum(proposed.values()),
        "proposed_per_route": dict(proposed.most_common()),
        "dropped_per_route": dict(dropped_per_route.most_common()),
        "grounded": grounded,
        "dropped": dropped,
        "examples": dict(examples),
    }
    if cfg.dataset.span_clozes:
        run.log.info("build-dataset: route span-cloze (rule-based, no teacher): %d pairs proposed", proposed["span-cloze"])
    return records, stats


def ground_pair(
    answer: str, question: str, chunk: dict, doc: dict, fuzzy_threshold: float, hint: int = 0
) -> tuple[GroundedSpan | None, str]:
    """Ground an answer in the chunk the teacher read, as a span of the document; else say why not.

    `hint` is where in the chunk the answer was picked (answer-first and cloze pairs record it):
    among repeated occurrences that fit the question equally, the one there wins.

    Falls back to the whole document (nearest the chunk, exact or normalized matches only: a fuzzy
    hit far from where the teacher looked is more likely a coincidence than the answer).
    """
    span, reason = ground_with_reason(answer, chunk["text"], hint, fuzzy_threshold, question=question)
    if span is not None:
        return GroundedSpan(chunk["start"] + span.start, chunk["start"] + span.end, span.match), reason
    if reason == "empty":
        return None, reason
    doc_span, _ = ground_with_reason(
        answer, doc["text"], chunk["start"], fuzzy_threshold, question=question, allow_fuzzy=False
    )
    return (doc_span, doc_span.match) if doc_span is not None else (None, reason)


def context_window(text: str, start: int, end: int, size: int) -> tuple[int, int]:
    """About `size` characters of `text` around `text[start:end]`, cut at sentence (else word) boundaries.

    The window always holds the whole answer, and is centred on it so the reader's
    window sees the answer with its evidence on both sides.
    """
    size = max(size, end - start)
    lo = max(0, min((start + end - size) // 2, len(text) - size))
    hi = min(len(text), lo + size)
    slack = max(40, size // 10)
    lo = _snap_start(text, lo, slack, latest=start)
    hi = _snap_end(text, hi, slack, earliest=end)
    while lo < start and text[lo].isspace():
        lo += 1
    while hi > end and text[hi - 1].isspace():
        hi -= 1
    return lo, hi


def sentence_around(text: str, start: int, end: int, lo: int, hi: int) -> tuple[int, int]:
    """The bounds of the sentence(s) holding `text[start:end]`, looked for within `[lo, hi]`."""
    sentence_start = max((m.end() for m in SENTENCE_BREAK.finditer(text, lo, start)), default=lo)
    following = SENTENCE_BREAK.search(text, end, hi)
    if following is None:
        return sentence_start, hi
    return sentence_start, following.end(1) if following.group(1) else following.start()


def _snap_start(text: str, pos: int, slack: int, latest: int) -> int:
    """The sentence start nearest `pos` (within `slack`, not after `latest`), else the nearest word start."""
    a, b = max(0, pos - slack), max(min(pos + slack, latest), 0)
    sentences = [m.end() for m in SENTENCE_BREAK.finditer(text, max(0, a - slack), b) if a <= m.end() <= b]
    candidates = ([0] if a == 0 else []) + sentences
    if not candidates:
        candidates = [i for i in range(a, b + 1) if i == 0 or text[i - 1].isspace()]
    return min(candidates, key=lambda i: abs(i - pos)) if candidates else min(pos, latest)


def _snap_end(text: str, pos: int, slack: int, earliest: int) -> int:
    """The sentence end nearest `pos` (within `slack`, not before `earliest`), else the nearest word end."""
    a = max(pos - slack, earliest)
    b = max(min(pos + slack, len(text)), a)
    sentences = []
    for m in SENTENCE_BREAK.finditer(text, max(0, a - 5), min(len(text), b + slack)):
        sentence_end = m.end(1) if m.group(1) else m.start()
        if a <= sentence_end <= b:
            sentences.append(sentence_end)
    candidates = ([len(text)] if b == len(text) else []) + sentences
    if not candidates:
        candidates = [i for i in range(a, b + 1) if i == len(text) or text[i].isspace()]
    return min(candidates, key=lambda i: abs(i - pos)) if candidates else max(pos, earliest)
