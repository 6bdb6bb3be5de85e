"""Find a generated answer as a verbatim span of its source text.

The student reader is trained on extractive spans, so every answer the teacher writes must be
turned into exact source characters (`text[start:end]`) or dropped. Teachers rarely copy text
perfectly: they change case, straighten curly quotes, drop accents, rejoin hyphenated line breaks,
add a full stop or paraphrase a word. Grounding therefore tries, in order:

1. ``exact``: the cleaned answer occurs verbatim at word boundaries;
2. ``normalized``: it occurs once both sides are folded to lower-case letters and digits only
   (no accents, spaces, punctuation, quotes or dashes), mapped back to source characters;
3. ``fuzzy``: the best rapidfuzz alignment of the folded strings, snapped to whole source words and
   re-scored, is at least ``fuzzy_threshold``.

When an answer occurs several times, the occurrence whose neighbourhood shares the most words with
the question wins, then the one closest to ``hint``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from array import array
from dataclasses import dataclass

from rapidfuzz import fuzz

from distillqa.text import SENTENCE_BREAK, STOPWORDS, fold, fold_char, words

# Wrappers a teacher puts around an answer: quotes, markdown emphasis, a closing full stop.
_EDGE_CHARS = " \t\r\n\u00a0\"'`*“”‘’„‚«»‹›.,;:!?…"
# Below this fuzzy score the answer shares too little with the text to be a paraphrase of it.
_PARAPHRASE_FLOOR = 50.0
# Characters either side of an occurrence compared with the question to pick between repeats.
_QUESTION_WINDOW = 150
# A sentence or paragraph break: folded matching ignores punctuation, but must not join two sentences.
_ASCII_RUN_OR_OTHER = re.compile(r"[A-Za-z0-9]+|[^\x00-\x7f]")
@dataclass(frozen=True)
class GroundedSpan:
    """`text[start:end]` is the grounded answer; `match` says how it was found."""

    start: int
    end: int
    match: str  # "exact" | "normalized" | "fuzzy"


@dataclass(frozen=True)
class _Folded:
    """A folded copy of a text and, for each folded character, the index of its source character."""

    text: str
    source_index: array  # array("l"): compact for long documents


@functools.lru_cache(maxsize=64)
def _folded(text: str) -> _Folded:
    # Cached: every pair of a chunk (and every fallback to a document) searches the same text.
    pieces: list[str] = []
    index = array("l")
    for m in _ASCII_RUN_OR_OTHER.finditer(text):
        piece = m.group()
        if piece.isascii():
            pieces.append(piece.lower())
            index.extend(range(m.start(), m.end()))
        else:
            folded = fold_char(piece)
            pieces.append(folded)
            index.extend([m.start()] * len(folded))
    return _Folded("".join(pieces), index)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.combining(ch) != 0


def _starts_word(text: str, i: int) -> bool:
    return i == 0 or not _is_word_char(text[i - 1])


def _ends_word(text: str, i: int) -> bool:
    return i == len(text) or not _is_word_char(text[i])


def _extend_over_marks(text: str, end: int) -> int:
    """Include combining accents after a span's last letter: "e" + U+0301 is one visible letter."""
    while end < len(text) and unicodedata.combining(text[end]):
        end += 1
    return end


def clean_answer(answer: str) -> str:
    """The answer without surrounding whitespace, quotes, markdown stars or trailing punctuation."""
    return answer.strip(_EDGE_CHARS)


def _joins_sentences(answer: str, source: str) -> bool:
    """True when a folded match spans a sentence break the answer does not have ("Earth. Science")."""
    return len(SENTENCE_BREAK.findall(source)) > len(SENTENCE_BREAK.findall(answer))


def _exact_candidates(answer: str, text: str) -> list[tuple[int, int]]:
    out = []
    i = text.find(answer)
    while i != -1:
        end = i + len(answer)
        if (_starts_word(text, i) or not _is_word_char(answer[0])) and (
            _ends_word(text, end) or not _is_word_char(answer[-1])
        ):
            out.append((i, end))
        i = text.find(answer, i + 1)
    return out


def _normalized_candidates(answer: str, folded_answer: str, text: str) -> list[tuple[int, int]]:
    folded = _folded(text)
    out = []
    k = folded.text.find(folded_answer)
    while k != -1:
        start = folded.source_index[k]
        last = folded.source_index[k + len(folded_answer) - 1]
        # A match must not start or end inside a ligature, nor inside a source word.
        inside_ligature = (k > 0 and folded.source_index[k - 1] == start) or (
            k + len(folded_answer) < len(folded.text) and folded.source_index[k + len(folded_answer)] == last
        )
        end = _extend_over_marks(text, last + 1)
        if (
            not inside_ligature
            and _starts_word(text, start)
            and _ends_word(text, end)
            and not _joins_sentences(answer, text[start:end])
        ):
            out.append((start, end))
        k = folded.text.find(folded_answer, k + 1)
    return out


def _fuzzy_span(answer: str, folded_answer: str, text: str) -> tuple[float, tuple[int, int] | None]:
    """Best fuzzy alignment snapped to whole words: (score, span), or (best raw score, None)."""
    folded = _folded(text)
    alignment = fuzz.partial_ratio_alignment(folded_answer, folded.text)
    if alignment.dest_end <= alignment.dest_start:
        return alignment.score, None
    raw_start = folded.source_index[alignment.dest_start]
    raw_end = _extend_over_marks(text, folded.source_index[alignment.dest_end - 1] + 1)
    # The alignment may cut words; try both the enclosing and the inner whole-word spans.
    starts = {_word_start_at_or_before(text, raw_start), _word_start_at_or_after(text, raw_start)}
    ends = {_word_end_at_or_after(text, raw_end), _word_end_at_or_before(text, raw_end)}
    scored = [
        (fuzz.ratio(folded_answer, fold(text[s:e])), s, e)
        for s in sorted(starts)
        for e in sorted(ends)
        if s < e and not _joins_sentences(answer, text[s:e])
    ]
    if not scored:
        return alignment.score, None
    score, start, end = max(scored, key=lambda t: t[0])
    return score, (start, end)


def _word_start_at_or_before(text: str, i: int) -> int:
    while i > 0 and _is_word_char(text[i - 1]):
        i -= 1
    return i


def _word_start_at_or_after(text: str, i: int) -> int:
    while i < len(text) and not (_is_word_char(text[i]) and _starts_word(text, i)):
        i += 1
    return i


def _word_end_at_or_after(text: str, i: int) -> int:
    while i < len(text) and _is_word_char(text[i]):
        i += 1
    return i


def _word_end_at_or_before(text: str, i: int) -> int:
    while i > 0 and not (_is_word_char(text[i - 1]) and _ends_word(text, i)):
        i -= 1
    return i


def _choose(candidates: list[tuple[int, int]], text: str, hint: int, question: str | None) -> tuple[int, int]:
    """Among repeated occurrences, prefer the one whose surroundings match the question, then the nearest to `hint`."""
    if len(candidates) == 1:
        return candidates[0]
    question_words = set(words(question or "")) - STOPWORDS

    def key(span: tuple[int, int]) -> tuple[int, int]:
        start, end = span
        around = set(words(text[max(0, start - _QUESTION_WINDOW) : end + _QUESTION_WINDOW]))
        return -len(question_words & around), abs(start - hint)

    return min(candidates, key=key)


def ground_with_reason(
    answer: str,
    text: str,
    hint: int = 0,
    fuzzy_threshold: float = 90.0,
    question: str | None = None,
    allow_fuzzy: bool = True,
) -> tuple[GroundedSpan | None, str]:
    """Like `ground`, but also says why: the match type, or the reason it failed.

    Failure reasons: "empty" (nothing left after cleaning), "longer_than_text", "not_found"
    (unrelated to the text), "below_threshold" (a partial match: usually a paraphrase).
    """
    answer = clean_answer(answer)
    folded_answer = fold(answer)
    if not folded_answer:
        return None, "empty"
    if len(folded_answer) > len(_folded(text).text):
        return None, "longer_than_text"
    exact = _exact_candidates(answer, text)
    if exact:
        start, end = _choose(exact, text, hint, question)
        return GroundedSpan(start, end, "exact"), "exact"
    normalized = _normalized_candidates(answer, folded_answer, text)
    if normalized:
        start, end = _choose(normalized, text, hint, question)
        return GroundedSpan(start, end, "normalized"), "normalized"
    if not allow_fuzzy:
        return None, "not_found"
    score, span = _fuzzy_span(answer, folded_answer, text)
    if span is not None and score >= fuzzy_threshold:
        return GroundedSpan(span[0], span[1], "fuzzy"), "fuzzy"
    return None, "below_threshold" if score >= _PARAPHRASE_FLOOR else "not_found"


def ground(
    answer: str,
    text: str,
    hint: int = 0,
    fuzzy_threshold: float = 90.0,
    question: str | None = None,
) -> GroundedSpan | None:
    """The span of `text` that `answer` refers to, or None when it cannot be grounded.

    `hint` is a character position in `text` near where the answer is expected (repeats nearer
    to it win); `question`, when given, breaks ties between repeats by shared words first.
    """
    return ground_with_reason(answer, text, hint, fuzzy_threshold, question)[0]
