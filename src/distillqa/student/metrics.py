"""Official SQuAD v1.1 exact match and F1: pure functions on plain data, no model.

They reproduce the official v1.1 script (`evaluate-v1.1.py`): answers are normalised
(`text.normalize_answer`), a prediction scores the best match over the gold answers, and totals
are percentages (0-100).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from distillqa.dataset.squad import squad_examples
from distillqa.text import normalize_answer


def exact_match(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 (0-1) of the normalised answers; 0 when nothing is shared."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_over_golds(metric: Callable[[str, str], float], prediction: str, golds: list[str]) -> float:
    return max((float(metric(prediction, g)) for g in golds), default=0.0)


def score_examples(examples: list[dict], predictions: dict[str, str]) -> dict:
    """{"exact_match", "f1"} in percent over flattened SQuAD examples, and "n".

    As in the official script, a question without a prediction scores 0, and predictions for
    unknown ids are ignored. With no questions both scores are 0.0 (n says why).
    """
    em = f1 = 0.0
    for ex in examples:
        if ex["id"] not in predictions:
            continue
        golds = [a["text"] for a in ex["answers"]]
        em += _best_over_golds(exact_match, predictions[ex["id"]], golds)
        f1 += _best_over_golds(f1_score, predictions[ex["id"]], golds)
    n = len(examples)
    return {"exact_match": 100.0 * em / n if n else 0.0, "f1": 100.0 * f1 / n if n else 0.0, "n": n}


def squad_scores(dataset: dict, predictions: dict[str, str]) -> dict:
    """Official SQuAD v1.1 scores of `predictions` (id -> answer text) on a SQuAD dict."""
    return score_examples(squad_examples(dataset), predictions)
