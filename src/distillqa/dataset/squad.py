"""SQuAD v1.1 files: train/validation split by chunk, export of grounded pairs, reading and checking.

The split is by chunk, not by question: questions about the same passage are near-copies of each
other's evidence, so splitting them across train and validation would overstate the student's
score. For the same reason no context string may appear in both files.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from distillqa.errors import DistillqaError


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


def _check_squad(data: dict) -> None:
    """Raise KeyError/TypeError naming the first field that is not SQuAD v1.1's."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise TypeError('no top-level "data" list')
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            if not isinstance(paragraph["context"], str):
                raise TypeError('"context" is not a string')
            for qa in paragraph["qas"]:
                if not isinstance(qa["question"], str) or "id" not in qa:
                    raise TypeError('a question needs "id" and a string "question"')
                for answer in qa["answers"]:
                    if not isinstance(answer["text"], str) or not isinstance(answer["answer_start"], int):
                        raise TypeError('an answer needs a string "text" and an integer "answer_start"')


def load_squad(path: Path) -> dict:
    """Read and check a SQuAD v1.1 file; problems become one-line DistillqaErrors."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DistillqaError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DistillqaError(f"{path}: not a readable JSON file: {e}") from None
    try:
        _check_squad(data)
    except (KeyError, TypeError) as e:
        raise DistillqaError(f"{path}: not a SQuAD v1.1 file ({e})") from None
    return data


def squad_examples(dataset: dict) -> list[dict]:
    """Flatten a SQuAD v1.1 dict into examples `{id, question, context, answers}`.

    `answers` keeps SQuAD's own form, a list of `{"text", "answer_start"}`.
    """
    return [
        {"id": qa["id"], "question": qa["question"], "context": paragraph["context"], "answers": qa.get("answers", [])}
        for article in dataset["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
