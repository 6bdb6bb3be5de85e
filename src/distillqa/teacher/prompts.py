"""Prompts and JSON schemas for the two generation routes.

Both are written for the weakest teacher we ship (SmolLM2-135M) without wasting a strong one:
one short instruction, examples as real chat turns (small models imitate turns far better than
they follow rules), the passage-specific part last (llama.cpp reuses the cached shared prefix),
and JSON schemas with bounded lengths and counts so constrained decoding cannot run away. The
examples are about topics unrelated to any document we test on, and `EXAMPLE_QUESTIONS` lets
validation reject a question copied from them.
"""

from __future__ import annotations

import functools
import hashlib
import json

from distillqa.config import QuestionsConfig
from distillqa.questions.candidates import DATE, MONEY, NUMBER, PERCENT, PERSON, PLACE

SCHEMA_QUESTION_CHARS = 200
MAX_ANSWER_CHARS = 80

# ---------------------------------------------------------------------------------------------
# qa route: the teacher writes question + answer pairs for a whole chunk. The answer length is
# questions.max_answer_words, the same bound the rules use.
QA_SYSTEM = (
    "You write reading-comprehension questions about a passage. Each answer must be a short span "
    "copied exactly from the passage (1 to {max_answer_words} words). Each question must be answerable from the "
    "passage, must use your own words rather than copy a sentence, and must not contain its answer. "
    'Reply with JSON only: {"pairs": [{"question": "...", "answer": "..."}]}.'
)
_QA_EXAMPLE_PASSAGE = (
    "The honey bee colony is run by a single queen, who can lay up to 2,000 eggs a day. Worker "
    "bees find flowers and tell the others where they are with a movement called the waggle dance. "
    "In 1973, Karl von Frisch shared the Nobel Prize for explaining this dance."
)
_QA_EXAMPLE_PAIRS = [
    {"question": "How many eggs can a queen lay in a day?", "answer": "up to 2,000"},
    {"question": "What movement do workers use to show where flowers are?", "answer": "the waggle dance"},
    {"question": "Who shared a Nobel Prize for explaining the bees' dance?", "answer": "Karl von Frisch"},
]


def _qa_request(passage: str, n: int) -> str:
    return f"Passage:\n{passage}\n\nWrite {n} question-answer pairs about this passage."


def qa_messages(passage: str, n: int, max_answer_words: int | None = None) -> list[dict[str, str]]:
    """Chat messages asking for `n` question/answer pairs about `passage`, with one worked example;
    answers of at most `max_answer_words` words (default: questions.max_answer_words's default)."""
    example = json.dumps({"pairs": _QA_EXAMPLE_PAIRS}, ensure_ascii=False)
    max_answer_words = max_answer_words or QuestionsConfig().max_answer_words
    return [
        {"role": "system", "content": QA_SYSTEM.replace("{max_answer_words}", str(max_answer_words))},
        {"role": "user", "content": _qa_request(_QA_EXAMPLE_PASSAGE, len(_QA_EXAMPLE_PAIRS))},
        {"role": "assistant", "content": example},
        {"role": "user", "content": _qa_request(passage, n)},
    ]


def qa_schema(n: int) -> dict:
    """JSON schema for the qa route: up to `n` pairs of bounded-length strings."""
    return {
        "type": "object",
        "properties": {
            "pairs": {
                "type": "array",
                "minItems": 1,
                "maxItems": n,
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string", "minLength": 10, "maxLength": SCHEMA_QUESTION_CHARS},
                        "answer": {"type": "string", "minLength": 1, "maxLength": MAX_ANSWER_CHARS},
                    },
                    "required": ["question", "answer"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["pairs"],
        "additionalProperties": False,
    }


# ---------------------------------------------------------------------------------------------
# answer-first route: the answer is given, the teacher writes one question for it.
QUESTION_SYSTEM = (
    "You write one quiz question whose answer is the given answer, using the given sentence. "
    "The question must not contain the answer. Reply with the question only."
)
# (sentence, answer, kind, question): one per common kind, on topics far from any test document.
_QUESTION_EXAMPLES = [
    (
        "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris.",
        "1889", DATE, "When was the Eiffel Tower completed?",
    ),
    (
        "Honey bees tell each other where flowers are with a movement called the waggle dance.",
        "the waggle dance", "term", "What movement do honey bees use to show where flowers are?",
    ),
    (
        "The violinist Niccolo Paganini toured Europe for decades and wrote 24 caprices for solo violin.",
        "24", NUMBER, "How many caprices did Paganini write for solo violin?",
    ),
]
EXAMPLE_QUESTIONS = tuple(q for *_, q in _QUESTION_EXAMPLES) + tuple(p["question"] for p in _QA_EXAMPLE_PAIRS)

# A hint per answer kind: small models pick the right question word far more often with it.
_KIND_HINTS = {
    DATE: "a date: ask when",
    NUMBER: "a number: ask how many or how much",
    MONEY: "an amount of money: ask how much",
    PERCENT: "a percentage: ask what percentage",
    PERSON: "a person: ask who",
    PLACE: "a place: ask where",
}


def _question_request(sentence: str, answer: str, kind: str) -> str:
    hint = _KIND_HINTS.get(kind)
    return f"Sentence: {sentence}\nAnswer: {answer}" + (f" ({hint})" if hint else "")


def question_messages(sentence: str, answer: str, kind: str, as_json: bool) -> list[dict[str, str]]:
    """Chat messages asking for one question whose answer is `answer`, few-shot in chat turns.

    `as_json`: examples reply {"question": ...} (for backends that constrain to QUESTION_SCHEMA),
    otherwise a plain line, which small models get right more often than JSON.
    """
    messages = [{"role": "system", "content": QUESTION_SYSTEM}]
    for ex_sentence, ex_answer, ex_kind, ex_question in _QUESTION_EXAMPLES:
        reply = json.dumps({"question": ex_question}) if as_json else ex_question
        messages.append({"role": "user", "content": _question_request(ex_sentence, ex_answer, ex_kind)})
        messages.append({"role": "assistant", "content": reply})
    messages.append({"role": "user", "content": _question_request(sentence, answer, kind)})
    return messages


QUESTION_SCHEMA: dict = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 10, "maxLength": SCHEMA_QUESTION_CHARS}},
    "required": ["question"],
    "additionalProperties": False,
}


@functools.cache
def prompts_digest() -> str:
    """A digest of every prompt and schema as sent, so the teacher cache (`teacher.cache`) never
    serves output written for an older prompt."""
    probe = {
        "qa": qa_messages("{passage}", 3, 5),
        "qa_schema": qa_schema(3),
        "question": [question_messages("{sentence}", "{answer}", kind, as_json) for kind in (*_KIND_HINTS, "") for as_json in (False, True)],
        "question_schema": QUESTION_SCHEMA,
    }
    return hashlib.sha256(json.dumps(probe, sort_keys=True).encode()).hexdigest()
