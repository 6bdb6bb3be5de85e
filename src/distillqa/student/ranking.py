"""Choosing the answer among the reader's n-best spans: answer-type rules and the question's sentence.

A small distilled reader often ranks a right answer in its top 5 but not first (devset: the best
of its top 5 scores 33-54 F1, its first pick 15-32; docs/benchmarks.md). Two signals that any
reader can use, with nothing fitted to a document, pick better:

- rules: an answer of the wrong type for the wh-phrase (a percentage for "when", a verb for
  "how many", a lower-case word for "who"), an answer made only of the question's own words (or
  repeating some of them), a lone lower-case word and a span running over a sentence end are
  each multiplied by a factor below 1;
- the question's sentence: the embedder (MiniLM was trained on question/passage pairs) scores each
  sentence against the question, and a span outside the most similar sentence is discounted by
  exp(sharpness × (its sentence's similarity − the best)). About 92% of SQuAD questions are
  answerable from one sentence (Min et al. 2018).

Cosine similarities are comparable across passages, unlike the reader's probability (normalised
within one passage), so the same score also ranks answers from different retrieved passages:

    score = reader probability ^ reader_weight × rule factor × passage weight × exp(sharpness × (sim − best sim))

Every factor is at most 1, so the score stays in [0, 1]. The ranker sees every span the reader
proposes (`answer.n_best`, ~130 per passage), not only its first few: the reader's top 20 hold a
right answer far less often than the sentence the embedder picks does (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from distillqa.config import AnswerConfig
from distillqa.student.features import Answer
from distillqa.text import STOPWORDS, sentence_spans, words

# texts -> one L2-normalised row per text (OnnxQueryEncoder.encode, SentenceTransformerEncoder.encode)
SentenceEncoder = Callable[[list[str]], np.ndarray]

# Ordinal factors (strong or mild), not fitted to a document: each only reorders the reader's own candidates.
QUESTION_WORDS_FACTOR = 0.05  # the answer only repeats the question's words: almost never right
SHARED_WORDS_FACTOR = 0.5  # it repeats some of them: people's answers do for ~1 question in 5
CROSSES_SENTENCE_FACTOR = 0.2  # it runs over a sentence end: answers lie within one sentence
TYPE_MISMATCH_FACTOR = 0.2  # not of the type the wh-phrase asks for
LONE_LOWER_FACTOR = 0.5  # one lower-case word: often a verb or adjective, rarely what people ask for

DATE, NUMBER, NAME = "date", "number", "name"
_ASKS = (  # first match wins, so the longer wh-phrases come first
    (re.compile(r"\b(what|which) (year|decade|century|month|day|date)\b|\bwhen\b|\bhow long ago\b"), DATE),
    (
        re.compile(
            r"\bhow (many|much|long|old|far|large|big|high|tall|often)\b"
            r"|\bwhat (percentage|percent|proportion|fraction|number)\b"
        ),
        NUMBER,
    ),
    (re.compile(r"\b(who|whom|whose)\b|\bwhere\b"), NAME),
)
_MONTHS = frozenset("january february march april may june july august september october november december".split())
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred "
    "thousand million billion trillion dozen half quarter third".split()
)


def asked_type(question: str) -> str | None:
    """DATE, NUMBER or NAME when the question's wh-phrase asks for one, else None."""
    q = question.lower()
    return next((kind for pattern, kind in _ASKS if pattern.search(q)), None)


def has_type(answer: str, kind: str) -> bool:
    """Does `answer` look like a `kind`? Dates have a year, month, century or decade; numbers a
    digit or a number word; names a capitalised word."""
    tokens = words(answer)
    if kind == DATE:
        return bool(re.search(r"\b\d{3,4}s?\b|\bcentur|\bdecade", answer.lower())) or any(t in _MONTHS for t in tokens)
    if kind == NUMBER:
        return bool(re.search(r"\d", answer)) or any(t in _NUMBER_WORDS for t in tokens)
    return any(w[:1].isupper() for w in answer.split())


@lru_cache(maxsize=64)
def _question_facts(question: str) -> tuple[frozenset[str], str | None]:
    """The question's content words and asked type, computed once for its ~130 candidates per passage."""
    return frozenset(words(question)) - STOPWORDS, asked_type(question)


@lru_cache(maxsize=1 << 16)
def _answer_facts(answer: str) -> tuple[frozenset[str], frozenset[str], bool]:
    """An answer's content words, the types it has and whether it is one lower-case word: the
    same spans come back for every question that retrieves their passage."""
    kinds = frozenset(kind for kind in (DATE, NUMBER, NAME) if has_type(answer, kind))
    return frozenset(w for w in words(answer) if w not in STOPWORDS), kinds, len(answer.split()) == 1 and answer.islower()


def rule_factor(question: str, answer: str) -> float:
    """The product of the rules' factors for one candidate answer (1.0 when no rule applies)."""
    content, kinds, lone_lower = _answer_facts(answer)
    asked, kind = _question_facts(question)
    factor = 1.0
    if not content or content <= asked:
        factor *= QUESTION_WORDS_FACTOR
    elif asked.intersection(content):
        factor *= SHARED_WORDS_FACTOR
    if kind is not None and kind not in kinds:
        factor *= TYPE_MISMATCH_FACTOR
    if lone_lower:
        factor *= LONE_LOWER_FACTOR
    return factor


class CachedEncoder:
    """A sentence encoder that remembers the last `size` texts it embedded. The ranker embeds the
    sentences of every passage it reads, and the same passages come back for related questions
    (and for every question about one paragraph in `evaluate`); thread-safe."""

    def __init__(self, encode: SentenceEncoder, size: int = 20_000):
        self.encode_texts, self.size = encode, size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
            if missing:
                self._vectors.update(zip(missing, self.encode_texts(missing)))
            rows = []
            for t in texts:
                self._vectors.move_to_end(t)
                rows.append(self._vectors[t])
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
            return np.stack(rows)


@dataclass(frozen=True)
class Ranked:
    """One candidate after ranking: `answer` is a span of `contexts[context]`."""

    context: int
    answer: Answer
    score: float


class AnswerRanker:
    """Re-ranks a reader's n-best spans of one question over one or more contexts.

    Without an encoder (or with `answer.sentence_sharpness` 0) only the rules apply.
    """

    def __init__(self, cfg: AnswerConfig, encode: SentenceEncoder | None = None):
        self.cfg = cfg
        self.encode = encode if cfg.sentence_sharpness > 0 else None

    def rank(
        self,
        question: str,
        contexts: Sequence[str],
        spans: Sequence[Sequence[Answer]],
        weights: Sequence[float] | None = None,
    ) -> list[Ranked]:
        """Every span of every context with its score (module docstring), best first.

        `spans[i]` are the reader's candidates in `contexts[i]`; `weights[i]` (default 1) scales a
        whole context, e.g. by its retrieval score.
        """
        bounds = [_sentence_bounds(context) for context in contexts]
        sentence_sims = self._sentence_similarities(question, contexts, spans, bounds)
        best = max((s for sims in sentence_sims for _, _, s in sims), default=0.0)
        ranked = []
        for i, found in enumerate(spans):
            weight = 1.0 if weights is None else weights[i]
            for answer in found:
                score = answer.score**self.cfg.reader_weight * weight
                if self.cfg.type_rules:
                    score *= rule_factor(question, answer.text)
                    if any(answer.start < start < answer.end for start, _ in bounds[i]):
                        score *= CROSSES_SENTENCE_FACTOR
                if sentence_sims[i]:
                    sim = next((s for a, b, s in sentence_sims[i] if a <= answer.start < b), best)
                    score *= math.exp(self.cfg.sentence_sharpness * (sim - best))
                ranked.append(Ranked(i, answer, score))
        ranked.sort(key=lambda r: -r.score)
        return ranked

    def _sentence_similarities(
        self,
        question: str,
        contexts: Sequence[str],
        spans: Sequence[Sequence[Answer]],
        bounds: Sequence[list[tuple[int, int]]],
    ) -> list[list[tuple[int, int, float]]]:
        """(start, end, cosine similarity to the question) of each sentence holding a candidate,
        per context; empty lists without an encoder. One encoder call for the whole question."""
        if self.encode is None:
            return [[] for _ in contexts]
        per_context = [
            [(a, b) for a, b in sentences if any(a <= s.start < b for s in found)] for sentences, found in zip(bounds, spans)
        ]
        texts = [contexts[i][a:b] for i, bounds in enumerate(per_context) for a, b in bounds]
        if not texts:
            return [[] for _ in contexts]
        vectors = self.encode([question, *texts])
        sims = iter((vectors[1:] @ vectors[0]).tolist())
        return [[(a, b, next(sims)) for a, b in bounds] for bounds in per_context]


def _sentence_bounds(context: str) -> list[tuple[int, int]]:
    """Sentences of a context covering all of it: each ends where the next begins, so every
    character (and every answer) falls in exactly one."""
    starts = [a for a, _ in sentence_spans(context)] or [0]
    starts[0] = 0
    return list(zip(starts, [*starts[1:], len(context) + 1]))
