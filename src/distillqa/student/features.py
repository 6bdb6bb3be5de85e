"""Turn (question, context) pairs into model windows and model logits back into answer spans.

Pure functions shared by training (`distillqa.student.train`) and inference (`distillqa.student.reader`), so the
student is trained and read with exactly the same windows. They follow `run_qa.py` /
`utils_qa.py` from the transformers examples:

- A context longer than one window is cut into several overlapping windows ("features") of
  `max_length` tokens, consecutive windows sharing `doc_stride` tokens, each prefixed by the
  question. A question is cut to `MAX_QUESTION_TOKENS` first so a long one can never leave the
  context without room (the tokenizer panics instead of raising when that happens).
- Training labels are token indices of the answer's first and last token; a window that does not
  contain the whole answer is labelled with the CLS index (usually 0), meaning "not here".
- At inference every window proposes its best start/end pairs over context tokens only, and the
  candidates of all windows of one example compete in a single softmax.

Tokenizers that pad on the left (e.g. XLNet-style) expect the question second, so the pair order
and the truncated side follow `tokenizer.padding_side`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillqa.config import TrainConfig
from distillqa.errors import DistillqaError

# the training defaults (config.py), for callers without a config (tests, benchmarks)
MAX_LENGTH: int = TrainConfig.model_fields["max_length"].default
DOC_STRIDE: int = TrainConfig.model_fields["doc_stride"].default
MAX_QUESTION_TOKENS = 64
N_BEST = 20  # start and end candidates kept per window before pairing them, as in utils_qa


@dataclass(frozen=True)
class Answer:
    """One answer span: `text == context[start:end]`.

    `score` is a probability: the softmax, over every valid candidate span of every window of the
    example (the `N_BEST` best starts x `N_BEST` best ends per window), of start logit + end
    logit. The same character span proposed by two overlapping windows gets the sum of both.
    """

    text: str
    score: float
    start: int
    end: int


def _question_first(tokenizer: Any) -> bool:
    return tokenizer.padding_side == "right"


def _window_limits(tokenizer: Any, max_length: int, doc_stride: int) -> tuple[int, int]:
    """(question token limit, stride) that always leave room for the context in a window.

    With windows of 384 and stride 128 this is (64, 128); with the defaults (192, 64), (64, 64). For short windows both shrink so that the
    context keeps at least half of the space and the stride stays below what the tokenizer allows.
    """
    free = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    question_limit = max(1, min(MAX_QUESTION_TOKENS, free // 2))
    stride = max(0, min(doc_stride, (free - question_limit) // 2))
    return question_limit, stride


def _truncate_questions(tokenizer: Any, questions: Sequence[str], limit: int) -> list[str]:
    """Strip leading whitespace (it can eat the window, as in run_qa) and cut to `limit` tokens."""
    questions = [q.lstrip() for q in questions]
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    return [
        q if len(offsets) <= limit else q[: offsets[limit - 1][1]]
        for q, offsets in zip(questions, encoded["offset_mapping"])
    ]


def _encode(tokenizer: Any, questions: Sequence[str], contexts: Sequence[str], max_length: int, doc_stride: int):
    """Tokenize pairs into overlapping windows with offsets, unpadded (the collator pads per batch)."""
    question_limit, stride = _window_limits(tokenizer, max_length, doc_stride)
    questions = _truncate_questions(tokenizer, questions, question_limit)
    first, second = (questions, contexts) if _question_first(tokenizer) else (contexts, questions)
    return tokenizer(
        list(first),
        list(second),
        truncation="only_second" if _question_first(tokenizer) else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def _model_inputs(tokenizer: Any, encoded: Any, i: int) -> dict[str, list[int]]:
    """The tensors the model takes (input_ids, attention_mask and, for BERT, token_type_ids)."""
    return {name: encoded[name][i] for name in tokenizer.model_input_names if name in encoded}


def _context_range(sequence_ids: list[int | None], context_id: int) -> tuple[int, int]:
    """First and last token index of the context inside one window."""
    indices = [k for k, s in enumerate(sequence_ids) if s == context_id]
    return indices[0], indices[-1]


def prepare_train_features(
    examples: Sequence[dict], tokenizer: Any, max_length: int = MAX_LENGTH, doc_stride: int = DOC_STRIDE
) -> list[dict[str, Any]]:
    """Training windows with `start_positions`/`end_positions` labels (token indices).

    Uses each example's first answer. A window that does not contain the whole answer, and an
    example with no answer, is labelled with the window's CLS index.
    """
    if not examples:  # the tokenizer cannot encode an empty batch
        return []
    encoded = _encode(tokenizer, [e["question"] for e in examples], [e["context"] for e in examples], max_length, doc_stride)
    context_id = 1 if _question_first(tokenizer) else 0
    features = []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        input_ids = encoded["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        example = examples[encoded["overflow_to_sample_mapping"][i]]
        start = end = cls_index
        if example["answers"]:
            answer = example["answers"][0]
            start_char = answer["answer_start"]
            end_char = start_char + len(answer["text"])
            first, last = _context_range(encoded.sequence_ids(i), context_id)
            if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                # the last token starting at or before the answer, the first ending at or after it
                start = max(k for k in range(first, last + 1) if offsets[k][0] <= start_char)
                end = min(k for k in range(first, last + 1) if offsets[k][1] >= end_char)
        features.append({**_model_inputs(tokenizer, encoded, i), "start_positions": start, "end_positions": end})
    return features


def prepare_eval_features(
    questions: Sequence[str], contexts: Sequence[str], tokenizer: Any, max_length: int = MAX_LENGTH, doc_stride: int = DOC_STRIDE
) -> list[dict[str, Any]]:
    """Inference windows: model inputs plus `example_index` and `offset_mapping`.

    `offset_mapping` holds (char start, char end) in the context for context tokens and None for
    question, special and padding tokens, so postprocessing can never pick them.
    """
    if not questions:  # the tokenizer cannot encode an empty batch
        return []
    encoded = _encode(tokenizer, questions, contexts, max_length, doc_stride)
    context_id = 1 if _question_first(tokenizer) else 0
    features = []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(i)
        features.append(
            {
                **_model_inputs(tokenizer, encoded, i),
                "example_index": encoded["overflow_to_sample_mapping"][i],
                "offset_mapping": [tuple(o) if s == context_id else None for o, s in zip(offsets, sequence_ids)],
            }
        )
    return features


def _best_tokens(logits: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Indices of the `N_BEST` highest finite logits among usable (context) tokens."""
    candidates = np.flatnonzero(usable & np.isfinite(logits))
    return candidates[np.argsort(-logits[candidates], kind="stable")[:N_BEST]]


def _window_candidates(
    offsets: list[tuple[int, int] | None], start_logits: np.ndarray, end_logits: np.ndarray, max_answer_length: int
) -> list[tuple[float, int, int]]:
    """(start logit + end logit, char start, char end) for the best valid spans of one window."""
    n = len(offsets)
    context = np.array([o is not None for o in offsets], dtype=bool)
    starts, ends = _best_tokens(start_logits[:n], context), _best_tokens(end_logits[:n], context)
    s, e = np.meshgrid(starts, ends, indexing="ij")
    ok = (e >= s) & (e - s + 1 <= max_answer_length)
    return [
        (float(start_logits[i] + end_logits[j]), offsets[i][0], offsets[j][1])
        for i, j in zip(s[ok], e[ok])
        if offsets[j][1] > offsets[i][0]
    ]


def postprocess_predictions(
    contexts: Sequence[str],
    features: Sequence[dict],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    top_k: int = 1,
    max_answer_length: int = 30,
) -> list[list[Answer]]:
    """The `top_k` best answers per context from per-window logits (see `Answer` for the score).

    `start_logits[i]`/`end_logits[i]` belong to `features[i]` and cover at least its tokens
    (anything past `len(offset_mapping)` is padding and ignored). A context whose windows have
    no valid span gets an empty list.
    """
    if len(features) != len(start_logits) or len(features) != len(end_logits):
        raise ValueError("one start and one end logit vector per feature are needed")
    candidates: list[list[tuple[float, int, int]]] = [[] for _ in contexts]
    for feature, start, end in zip(features, start_logits, end_logits):
        candidates[feature["example_index"]].extend(
            _window_candidates(feature["offset_mapping"], np.asarray(start), np.asarray(end), max_answer_length)
        )
    answers = []
    for context, spans in zip(contexts, candidates):
        if not spans:
            answers.append([])
            continue
        logits = np.array([score for score, _, _ in spans], dtype=np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        by_span: dict[tuple[int, int], float] = {}
        for p, (_, s, e) in zip(probs, spans):
            by_span[(s, e)] = by_span.get((s, e), 0.0) + float(p)
        best = sorted(by_span.items(), key=lambda item: -item[1])[:top_k]
        answers.append([Answer(text=context[s:e], score=p, start=s, end=e) for (s, e), p in best])
    return answers


# tokenizers 0.23.1 and 0.23.2 stop tokenizing at max_length when they truncate, so a long context
# gets two windows and the rest of it is silently lost (huggingface/tokenizers#2091, fixed in 0.23.3).
BROKEN_TOKENIZERS = ("0.23.1", "0.23.2")


def check_tokenizer(tokenizer: Any, name: str) -> None:
    """Refuse tokenizers that cannot window a passage: slow ones (no offsets) and broken releases."""
    import tokenizers

    if not getattr(tokenizer, "is_fast", False):
        raise DistillqaError(f"{name}: the tokenizer is not a fast tokenizer, which extractive QA needs for offsets; choose another student")
    if tokenizers.__version__ in BROKEN_TOKENIZERS:
        raise DistillqaError(
            f"tokenizers {tokenizers.__version__} drops the windows of long passages (huggingface/tokenizers#2091): "
            "run `pip install 'tokenizers>=0.23.3'`"
        )
