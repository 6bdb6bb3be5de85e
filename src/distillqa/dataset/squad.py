"""Train/validation split by chunk and SQuAD v1.1 export of grounded pairs (qa.jsonl records).

The split is by chunk, not by question: questions about the same passage are near-copies of each
other's evidence, so splitting them across train and validation would overstate the student's
score. For the same reason no context string may appear in both files.
"""

from __future__ import annotations

import random
from collections import defaultdict


def validation_size(n_chunks: int, fraction: float) -> int:
    """How many chunks go to validation: train always gets one, validation one when there are two.

    `fraction` 0 means no validation set at all.
    """
    n_validation = min(round(n_chunks * fraction), n_chunks - 1)
    if n_chunks >= 2 and fraction > 0:
        n_validation = max(n_validation, 1)
    return max(n_validation, 0)


def seeded_order(chunk_ids: list[str], seed: int) -> list[str]:
    order = list(chunk_ids)
    random.Random(seed).shuffle(order)
    return order


def choose_validation_chunks(chunk_ids: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded random `fraction` of the chunks (see `validation_size`)."""
    return set(seeded_order(chunk_ids, seed)[: validation_size(len(chunk_ids), fraction)])


def choose_separable_validation(
    records: list[dict], chunk_ids: list[str], fraction: float, seed: int, docs: dict[str, dict]
) -> set[str]:
    """Validation chunks in seeded order, skipping any whose contexts would also be in train.

    Overlapping chunks often share a context window; taking the first `fraction` at random and
    then moving clashing ones to train can empty the validation set of a short document, so
    chunks are tried one by one until the target count is reached.
    """
    target = validation_size(len(chunk_ids), fraction)
    validation: set[str] = set()
    for chunk_id in seeded_order(chunk_ids, seed):
        if len(validation) >= target:
            break
        trial = keep_contexts_apart(records, validation | {chunk_id}, docs)
        if chunk_id in trial and len(trial) > len(validation):
            validation = trial
    return validation


def context_of(record: dict, docs: dict[str, dict]) -> str:
    return docs[record["doc_id"]]["text"][record["context_start"] : record["context_end"]]


def keep_contexts_apart(records: list[dict], validation_chunks: set[str], docs: dict[str, dict]) -> set[str]:
    """Move validation chunks whose context text also occurs in train over to train, until none does.

    Chunks overlap, so pairs from two chunks can share a context window; moving whole chunks keeps
    every chunk on one side.
    """
    validation = set(validation_chunks)
    while True:
        train_contexts = {context_of(r, docs) for r in records if r["chunk_id"] not in validation}
        clashing = {
            r["chunk_id"] for r in records if r["chunk_id"] in validation and context_of(r, docs) in train_contexts
        }
        if not clashing:
            return validation
        validation -= clashing


def squad_dataset(records: list[dict], docs: dict[str, dict]) -> dict:
    """SQuAD v1.1: one article per document, one paragraph per distinct context window.

    `answer_start` is relative to the context; every answer is checked to sit there verbatim.
    """
    windows: dict[str, dict[tuple[int, int], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        windows[r["doc_id"]][(r["context_start"], r["context_end"])].append(r)
    data = []
    for doc_id, doc in docs.items():  # document order
        if doc_id not in windows:
            continue
        paragraphs = []
        for (start, end), group in sorted(windows[doc_id].items()):
            context = doc["text"][start:end]
            qas = []
            for r in sorted(group, key=lambda r: (r["offset"], r["id"])):
                answer_start = r["offset"] - start
                if context[answer_start : answer_start + len(r["answer"])] != r["answer"]:
                    raise AssertionError(f"{r['id']}: answer {r['answer']!r} is not at {answer_start} in its context")
                qas.append(
                    {
                        "id": r["id"],
                        "question": r["question"],
                        "answers": [{"text": r["answer"], "answer_start": answer_start}],
                    }
                )
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": doc.get("title") or doc_id, "paragraphs": paragraphs})
    return {"version": "1.1", "data": data}


def count(dataset: dict) -> dict[str, int]:
    """Questions and paragraphs in a SQuAD dataset."""
    paragraphs = [p for article in dataset["data"] for p in article["paragraphs"]]
    return {"questions": sum(len(p["qas"]) for p in paragraphs), "paragraphs": len(paragraphs)}
