"""Rule-based pairs for every answer-like span of every sentence, added to the teacher's pairs.

Why: trained on ~100 pairs, one or two per sentence, the student memorises which spans are
answers and returns one of them whatever the question (on Geology: the same span for most
questions about a paragraph). When every span of a sentence answers some question, only the
question tells them apart, so the student has to read it. On Geology's human questions this took
the student's F1 from 7.3 (below the untrained 8.8) to 15-19 (docs/benchmarks.md).

Spans (`questions.span_answers`, default "all"): the answer-candidate heuristics' names, dates,
numbers and terms; every noun phrase (`questions.phrases`), and each part of a joined one ("proper
use of prescription drugs", "proper use", "prescription drugs"); and every other content word of
four letters or more. People's answers are mostly phrases (devset: 78-92% have two or more words),
so phrases teach the answer's extent; the single words keep every word of a sentence an answer to
some question, without which the student falls back to memorising answers (phrases alone, a third
as many spans: Geology F1 18.3 against 24.3 for words alone, 31.9 for both; docs/benchmarks.md).
Questions: the cloze translation of `teacher.cloze` where its rules apply, else the identity cloze
(the clause holding the span, the span replaced by its wh-word), which Lewis et al. (2019) found
still teaches a reader to find an answer. No teacher is involved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from distillqa.config import QuestionsConfig
from distillqa.questions.candidates import PHRASE, askable_sentence, askable_span, heuristic_spans
from distillqa.questions.cloze import answer_clause, cloze_question, wh_phrase
from distillqa.questions.phrases import noun_phrases
from distillqa.text import STOPWORDS, sentence_spans

ROUTE = "span-cloze"
_CONTENT_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")


def sentence_spans_to_ask(sentence: str, limits: QuestionsConfig | None = None) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of the spans of one sentence worth asking about: the answer-candidate
    heuristics' names, dates, numbers and terms, then by `questions.span_answers`:
    "words": every other content word (no overlaps); "phrases": noun phrases (no overlaps);
    "all": noun phrases, the parts of joined ones, and every content word left (overlapping)."""
    limits = limits or QuestionsConfig()
    mode = limits.span_answers
    taken: list[tuple[int, int]] = []
    for start, end, kind in heuristic_spans(sentence, limits):
        if mode == "words" or kind != PHRASE:  # the heuristics' own phrases are 2-4 words after a cue
            taken.append((start, end))
            yield start, end, kind
    asked: set[tuple[int, int]] = set()
    if mode != "words":
        for start, end in noun_phrases(sentence, limits.max_answer_words, taken, parts=mode == "all"):
            if (start, end) not in asked:
                asked.add((start, end))
                yield start, end, PHRASE
    if mode != "phrases":
        for m in _CONTENT_WORD.finditer(sentence):
            free = all(m.end() <= a or m.start() >= b for a, b in [*taken, *(asked if mode == "words" else ())])
            if free and (m.start(), m.end()) not in asked and m.group().lower() not in STOPWORDS:
                yield m.start(), m.end(), PHRASE


def identity_cloze(sentence: str, start: int, end: int, kind: str) -> str:
    """The clause holding the span as a question, the span replaced by its wh-word in place
    (the whole sentence when the clause is too short to ask anything)."""
    clause, c_start, c_end = answer_clause(sentence, start, end)
    if len(clause.split()) - len(clause[c_start:c_end].split()) >= 3:
        sentence, start, end = clause, c_start, c_end
    wh = "what" if kind == PHRASE else wh_phrase(kind, sentence[start:end], sentence[end:]).split()[0]
    question = (sentence[:start] + wh + sentence[end:]).rstrip(" .!?\"'”’)]") + "?"
    return question[0].upper() + question[1:]


def sentence_clozes(sentence: str, limits: QuestionsConfig | None = None) -> Iterator[tuple[int, int, str]]:
    """(start, end, question) for every span of one sentence that a question can single out
    (answers of at most `limits.max_answer_words` words; default limits: config.py's)."""
    limits = limits or QuestionsConfig()
    for start, end, kind in sentence_spans_to_ask(sentence, limits):
        if not askable_span(sentence, start, end, limits.max_answer_words):
            continue  # too long, nearly the whole sentence, or ambiguous within it
        question = cloze_question(sentence, start, end, kind, limits) or identity_cloze(sentence, start, end, kind)
        yield start, end, question



def chunk_pairs(chunk: dict, done: set[tuple[str, int]], limits: QuestionsConfig | None = None) -> list[dict]:
    """Pairs for the whole sentences of a chunk, as the teacher's pairs look in generations.jsonl
    (`answer_start` relative to the chunk). `done` holds the (doc_id, offset) of sentences already
    used by an overlapping chunk; this chunk's are added to it. Sentences under
    `limits.min_sentence_words` words are skipped, like answer candidates skip them."""
    limits = limits or QuestionsConfig()
    text, pairs = chunk["text"], []
    for s_start, s_end in sentence_spans(text):
        sentence = text[s_start:s_end]
        key = (chunk["doc_id"], chunk["start"] + s_start)
        if key in done or not askable_sentence(sentence, limits.min_sentence_words):
            continue  # seen in the previous chunk, a heading, or cut by the chunk edge
        done.add(key)
        for start, end, question in sentence_clozes(sentence, limits):
            pairs.append(
                {"question": question, "answer": sentence[start:end], "answer_start": s_start + start, "route": ROUTE}
            )
    return pairs
