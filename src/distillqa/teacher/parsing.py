"""Tolerant reading of teacher output, and the checks a generated question must pass.

Teachers, small ones above all, wrap JSON in code fences, add prose before it, stop mid-object,
or answer with a bare list. All of that is accepted; what cannot be read raises ParseError, whose
message is recorded with the raw output in generations.jsonl.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import json_repair

from distillqa.questions.candidates import DATE, MONEY, NUMBER, PERCENT, PERSON
from distillqa.text import STOPWORDS, words


class ParseError(ValueError):
    """Teacher output with nothing usable in it."""


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_WH_WORD = re.compile(r"\b(?:what|which|who|whom|whose|when|where|why|how)\b")
_YES_NO_START = re.compile(r"^(?:is|are|was|were|do|does|did|can|could|will|would|has|have|had|should|may|might)\b")
_PLACEHOLDER = re.compile(
    r"\.\.\.|…|<[^>]*>|\[[^\]]*\]|\{|\}|\b(?:your question|question here|answer here|insert|placeholder|xxx|todo|lorem)\b",
    re.IGNORECASE,
)
# What a question about an answer of this kind must ask for, and what it must not.
_KIND_NEEDS = {
    PERSON: re.compile(r"\b(?:who|whom|whose|which)\b"),
    DATE: re.compile(r"\b(?:when|years?|decades?|century|centuries|dates?|period|era|time|age)\b"),
    NUMBER: re.compile(
        r"\bhow (?:many|much|long|far|old|large|big|deep|high|tall|wide|often|fast)\b"
        r"|\b(?:number|amount|percentage|proportion|fraction|size|depth|length|distance|rate|age)\b"
    ),
    MONEY: re.compile(r"\b(?:how much|cost|price|amount|value|worth|sum|budget|revenue|paid|pay)\b"),
    PERCENT: re.compile(r"\b(?:percentage|percent|proportion|share|fraction|how much|how many|rate)\b"),
}
_COUNT_QUESTION = re.compile(r"\bhow (?:many|much)\b")
# Question words that say nothing about which part of the sentence is asked about.
_GENERIC = frozenset(
    "name names type types kind kinds called call term process example main word thing something describe "
    "described mean means refer refers use used happen happened known sentence passage text".split()
)
NEAR_WORDS = 5  # a question must mention words this close to its answer in the sentence


def load_json(text: str) -> Any:
    """The JSON value in `text`: plain, fenced, after leading prose, or repaired if broken."""
    text = text.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ParseError("no JSON object or list in the output")
    try:
        return json.JSONDecoder().raw_decode(text, start)[0]  # tolerates trailing prose
    except json.JSONDecodeError:
        pass
    repaired = json_repair.loads(text[start:])
    if not isinstance(repaired, (dict, list)) or not repaired:
        raise ParseError("output is not JSON, even after repair")
    return repaired


def parse_pairs(text: str) -> list[dict[str, str]]:
    """Question/answer pairs from a qa-route output: {"pairs": [...]}, a bare list, or one object."""
    data = load_json(text)
    if isinstance(data, dict):
        items = data.get("pairs")
        if not isinstance(items, list):
            items = next((v for v in data.values() if isinstance(v, list)), [data])
    else:
        items = data
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        fields = {str(k).strip().lower(): v for k, v in item.items()}
        question, answer = fields.get("question", fields.get("q")), fields.get("answer", fields.get("a"))
        if isinstance(question, str) and isinstance(answer, (str, int, float)) and question.strip() and str(answer).strip():
            pairs.append({"question": _clean(question), "answer": str(answer).strip()})
    if not pairs:
        raise ParseError("no question/answer pairs in the output")
    return pairs


def parse_question(text: str) -> str:
    """One question from an answer-first output: {"question": "..."} or a plain line of text."""
    stripped = text.strip()
    if stripped.startswith(("{", "```", "[")):
        data = load_json(stripped)
        if isinstance(data, list) and data:
            data = data[0]
        question = data.get("question") if isinstance(data, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise ParseError('no "question" field in the output')
        return _clean(question)
    line = next((ln for ln in stripped.splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(?:[-*•]|\d+[.)])?\s*(?:question|q)\s*[:.]\s*", "", line, flags=re.IGNORECASE)
    if not line.strip():
        raise ParseError("empty output")
    return _clean(line)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip("\"'“”`").strip()


def question_problem(
    question: str, answer: str, sentence: str, kind: str, forbidden: Iterable[str] = ()
) -> str | None:
    """Why a teacher question for `answer` (taken from `sentence`) is unusable; None if it is fine.

    `forbidden` are questions that must not come back (the prompt's own examples, which small
    models copy). The kind checks stop a date answer being paired with "What is ...?" and the like.
    """
    q = question.lower()
    q_words = words(question)
    if not question.endswith("?"):
        return "does not end with '?'"
    if len(q_words) < 3:
        return "fewer than 3 words"
    if _PLACEHOLDER.search(question):
        return "placeholder text"
    if any(q == f.lower() for f in forbidden):
        return "copied a prompt example"
    if re.search(rf"(?<!\w){re.escape(answer.lower())}(?!\w)", q):
        return "contains the answer"
    if not _WH_WORD.search(q) and _YES_NO_START.match(q):
        return "yes/no question"
    if not _WH_WORD.search(q):
        return "no question word"
    s_words = words(sentence)
    if _longest_common_run(q_words, s_words) >= max(8, len(q_words) - 1):
        return "copies the sentence"
    answer_words = set(words(answer))
    if not (set(q_words) - STOPWORDS - answer_words) & (set(s_words) - STOPWORDS):
        return "unrelated to the passage"
    if not _mentions_neighbourhood(q_words, answer, sentence):
        return "not about the answer's context"
    needs = _KIND_NEEDS.get(kind)
    if needs is not None and not needs.search(q):
        return f"does not ask for a {kind}"
    if kind not in (NUMBER, MONEY, PERCENT) and _COUNT_QUESTION.search(q):
        return f"asks for a count, the answer is a {kind}"
    return None


def _stem(word: str) -> str:
    return word[:5]  # "patented"/"patent", "formed"/"formation": crude, but enough for matching


def _mentions_neighbourhood(q_words: list[str], answer: str, sentence: str) -> bool:
    """Does the question use two content words found within NEAR_WORDS words of the answer?

    Small teachers often write a fluent question about another part of the sentence ("What is the
    oceanic lithosphere?" for the answer "convecting mantle"). A right question nearly always names
    something next to its answer (the verb, the object, the entity it belongs to).
    """
    at = sentence.lower().find(answer.lower())
    if at < 0:
        return True  # the answer is not in this text: nothing to measure against
    left = words(sentence[:at])[-NEAR_WORDS:]
    right = words(sentence[at + len(answer):])[:NEAR_WORDS]
    near = {_stem(w) for w in left + right if w not in STOPWORDS and w not in _GENERIC}
    used = {_stem(w) for w in q_words if w not in STOPWORDS and w not in _GENERIC} & near
    return len(used) >= min(2, len(near))


def _longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of words that `a` and `b` share, in order (copy detection)."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best
