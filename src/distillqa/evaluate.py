"""Official SQuAD v1.1 exact match and F1, and the `evaluate` stage.

The metric functions reproduce the official v1.1 script (`evaluate-v1.1.py`): answers are
lower-cased, stripped of punctuation and of the articles a/an/the, and whitespace-collapsed; a
prediction scores the best match over the gold answers; totals are percentages (0-100). The stage
scores the untrained student (the base encoder with the same seeded, fresh QA head training
starts from) next to the distilled one, so the report shows what distillation bought.
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from distillqa.config import Config
from distillqa.console import track
from distillqa.errors import DistillqaError
from distillqa.io import write_json
from distillqa.qa_features import squad_examples
from distillqa.reader import Reader
from distillqa.run import EVAL, STUDENT, VALIDATION, Run

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (official v1.1 order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


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


def predict(
    reader: Reader,
    examples: list[dict],
    batch_size: int = 32,
    max_answer_length: int = 30,
    quiet: bool = True,
    description: str = "reading",
) -> tuple[dict[str, str], float]:
    """Best answer text per example id, and milliseconds of reading per question."""
    predictions: dict[str, str] = {}
    started = time.perf_counter()
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    for batch in track(batches, len(batches), description, quiet):
        questions, contexts = [e["question"] for e in batch], [e["context"] for e in batch]
        found = reader.answer(questions, contexts, max_answer_length=max_answer_length, batch_size=batch_size)
        predictions.update((e["id"], spans[0].text if spans else "") for e, spans in zip(batch, found))
    ms = 1000 * (time.perf_counter() - started) / max(1, len(examples))
    return predictions, ms


def score_reader(
    reader: Reader,
    examples: list[dict],
    batch_size: int = 32,
    max_answer_length: int = 30,
    quiet: bool = True,
    description: str = "reading",
) -> dict:
    """{"exact_match", "f1", "n", "ms_per_question"} of `reader` on flattened SQuAD examples."""
    predictions, ms = predict(reader, examples, batch_size, max_answer_length, quiet, description)
    return {**score_examples(examples, predictions), "ms_per_question": round(ms, 2)}


def evaluate_file(model_dir: Path, squad_path: Path, batch_size: int = 32) -> dict:
    """Score a trained reader (model folder or run folder) on any SQuAD v1.1 file."""
    examples = squad_examples(load_squad(squad_path))
    if not examples:
        raise DistillqaError(f"{squad_path}: the file has no questions to score")
    return score_reader(Reader.load(model_dir), examples, batch_size)


def run_stage(run: Run, cfg: Config) -> dict:
    """Score the untrained baseline and the distilled student on RUN/validation.json -> eval.json."""
    from distillqa.train import load_base_student

    run.require(STUDENT, VALIDATION)
    examples = squad_examples(load_squad(run.path(VALIDATION)))
    n = len(examples)
    if n == 0:
        note = "validation.json has no questions: nothing was scored"
        write_json(run.path(EVAL), {"baseline": None, "distilled": None, "validation_questions": 0, "note": note})
        run.log.warning("evaluate: %s has no questions; skipped scoring", run.path(VALIDATION))
        return {"validation_questions": 0}
    window = {"max_length": cfg.train.max_length, "doc_stride": cfg.train.doc_stride}
    model, tokenizer = load_base_student(cfg.train.student, cfg.train.seed)
    score = {"max_answer_length": cfg.train.max_answer_length, "quiet": run.quiet}
    baseline = score_reader(Reader(model, tokenizer, **window), examples, description="baseline", **score)
    distilled = score_reader(Reader.load(run.path(STUDENT), **window), examples, description="distilled", **score)
    write_json(run.path(EVAL), {"baseline": baseline, "distilled": distilled, "validation_questions": n})
    return {
        "validation_questions": n,
        "baseline_exact_match": round(baseline["exact_match"], 2),
        "baseline_f1": round(baseline["f1"], 2),
        "distilled_exact_match": round(distilled["exact_match"], 2),
        "distilled_f1": round(distilled["f1"], 2),
        "ms_per_question": distilled["ms_per_question"],
    }
