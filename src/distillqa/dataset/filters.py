"""Quality filters for grounded question/answer pairs.

Small teachers fail in recognisable ways: template text left in ("Question 1", "<question>"),
statements instead of questions, the answer written into the question, the passage copied out as a
"question", and the same question asked again and again. Each rule below drops one of these and
names the reason, so `dataset_summary.json` shows what the teacher did wrong.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from distillqa.config import DatasetConfig
from distillqa.text import STOPWORDS, words
from distillqa.text import normalize_answer

_WH_WORDS = frozenset("what which who whom whose when where why how".split())
_AUX_VERBS = frozenset(
    "is are was were am do does did can could will would should shall may might must has have had".split()
)
# "In which year...", "According to the text, what...": a question word after a short lead-in.
_LEAD_INS = frozenset("in on at to for from by with of during after before under according".split())
_QUOTES = " \t\r\n\"'`“”‘’«»"
# Left-over prompt templates and blanks: "...", "<question>", "{answer}", "Fill in ____".
_TEMPLATE_MARKS = ("...", "…", "<", ">", "{", "}", "__")
_NUMBERED_TEMPLATE = re.compile(r"^\s*(question|answer|q)\s*\d+\b", re.IGNORECASE)
_PLACEHOLDER_TEXTS = frozenset(
    ["question", "answer", "your question", "your answer", "the question", "the answer", "none", "unknown", "n a"]
)


def question_key(question: str) -> str:
    """The question folded to lower-case words: equal keys are duplicates."""
    return " ".join(words(question))


def is_placeholder(question: str, answer: str = "") -> bool:
    """Template text a teacher copied from the prompt instead of writing its own.

    Only the question is searched for template marks: a grounded answer is source text, where
    "<" or "..." can be genuine.
    """
    return (
        any(mark in question for mark in _TEMPLATE_MARKS)
        or bool(_NUMBERED_TEMPLATE.match(question))
        or question_key(question) in _PLACEHOLDER_TEXTS
        or question_key(answer) in _PLACEHOLDER_TEXTS
    )


def as_question(text: str) -> str | None:
    """The trimmed question ending in "?", or None when it is a statement or command.

    A missing "?" is added only when the text opens like a question (a wh-word or an auxiliary
    verb, possibly after a preposition): "Name the rock" is an instruction, not a question.
    """
    text = text.strip(_QUOTES)
    if text.endswith("?"):
        return text
    tokens = words(text)
    opens_like_question = bool(tokens) and (
        tokens[0] in _WH_WORDS
        or tokens[0] in _AUX_VERBS
        or (tokens[0] in _LEAD_INS and any(t in _WH_WORDS for t in tokens[1:4]))
    )
    return text.rstrip(".:;!, ") + "?" if opens_like_question else None


def contains_answer(question: str, answer: str) -> bool:
    """True when the answer's words appear, in order and whole, in the question."""
    answer_key = question_key(answer)
    return bool(answer_key) and f" {answer_key} " in f" {question_key(question)} "


def copies_passage(question: str, passage: str, span_words: int) -> bool:
    """True when the question repeats `span_words` consecutive words of the passage verbatim."""
    q = words(question)
    if len(q) < span_words:
        return False
    p = words(passage)
    passage_grams = {tuple(p[i : i + span_words]) for i in range(len(p) - span_words + 1)}
    return any(tuple(q[i : i + span_words]) in passage_grams for i in range(len(q) - span_words + 1))


def _index_words(key: str) -> set[str]:
    """The content words a question is indexed under for near-duplicate search ("" if it has none)."""
    return (set(key.split()) - STOPWORDS) or {""}


@dataclass(frozen=True)
class Verdict:
    """`reason` is None when the pair is kept; `question` is the cleaned question to store."""

    question: str
    reason: str | None


class PairFilter:
    """Applies every rule in order and remembers kept questions to catch later duplicates.

    Near-duplicates are only looked for among earlier kept questions of the same document with
    the same answer: the same question about two documents is not redundant, and two similar
    questions with different answers (clozes of one sentence, say) teach different spans. See
    `_near_duplicate` for how this stays fast on ~10k pairs.
    """

    def __init__(self, cfg: DatasetConfig):
        self.cfg = cfg
        self._seen_keys: set[str] = set()
        self._kept: dict[str, list[str]] = defaultdict(list)  # scope -> keys of kept questions
        # scope -> content word -> positions in _kept[scope] of the questions using it
        self._by_word: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))

    def check(self, question: str, answer: str, passage: str, doc_id: str) -> Verdict:
        """Judge one grounded pair.

        `passage` is the text the question must not copy `copied_span_words` words of: the build
        passes the training context without the answer's own sentence.
        """
        scope = f"{doc_id}\x00{normalize_answer(answer)}"
        reason = self._reason(question, answer, passage, scope)
        cleaned = as_question(question) or question.strip()
        if reason is None:
            self._remember(cleaned, scope)
        return Verdict(cleaned, reason)

    def _reason(self, question: str, answer: str, passage: str, scope: str) -> str | None:
        cfg = self.cfg
        if is_placeholder(question, answer):
            return "placeholder"
        cleaned = as_question(question)
        if cleaned is None:
            return "not_a_question"
        n_words = len(cleaned.split())
        if n_words < cfg.min_question_words:
            return "question_too_short"
        if n_words > cfg.max_question_words:
            return "question_too_long"
        if len(answer.split()) > cfg.max_answer_words:
            return "answer_too_long"
        if contains_answer(cleaned, answer):
            return "answer_in_question"
        if copies_passage(cleaned, passage, cfg.copied_span_words):
            return "copies_passage"
        key = question_key(cleaned)
        if key in self._seen_keys:
            return "duplicate"
        if self._near_duplicate(key, scope):
            return "near_duplicate"
        return None

    def _near_duplicate(self, key: str, scope: str) -> bool:
        """Is `key` within `near_duplicate_threshold` (token-set similarity) of an earlier kept question?

        Only kept questions of the same scope (document and answer) sharing a content word with `key` (or having
        none) are compared: with no content word in common two questions rarely reach a high
        token-set score, and skipping them avoids an all-pairs comparison.
        """
        kept = self._kept[scope]
        index = self._by_word[scope]
        candidates = [kept[i] for i in sorted({i for w in _index_words(key) | {""} for i in index.get(w, ())})]
        hit = process.extractOne(
            key, candidates, scorer=fuzz.token_set_ratio, score_cutoff=self.cfg.near_duplicate_threshold
        )
        return hit is not None

    def _remember(self, question: str, scope: str) -> None:
        key = question_key(question)
        self._seen_keys.add(key)
        kept = self._kept[scope]
        for word in _index_words(key):
            self._by_word[scope][word].append(len(kept))
        kept.append(key)
