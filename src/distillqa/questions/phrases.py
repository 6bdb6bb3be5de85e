"""Noun phrases of a sentence, the answers people ask about, found without a parser.

Crowd-written SQuAD answers are mostly phrases (devset: 78-92% have two or more words; median two,
up to five in Pharmacy): "the principle of faunal succession", "magma or lava flows", "physical
experiments". Single content words, many of them verbs and adverbs ("explained", "recently"),
teach a student to answer with one word of any kind.

A noun phrase here is a run of content words that can be nouns or adjectives, ending on one that
can be a noun, optionally joined to the next such run by "of", "and" or "or" (with an article or
possessive in between) while it stays within the word limit. Which part of speech an English word
can take comes from lemminflect's lexicon (no tagger, no model download): a word it knows only as a
verb or adverb ("explained", "recently", "behave") ends a phrase. Capitalised words and numbers
count as nouns. Every phrase starts and ends on a content word, so no leading "the".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence

from distillqa.text import STOPWORDS

_WORD = re.compile(r"[^\W_][\w'’\-]*")
_JOINERS = frozenset({"of", "and", "or"})
# may stand between a joiner and the next run: "the study of the rocks", "of its crust"
_DETERMINERS = frozenset("the a an its their his her our this these those such".split())
# after these a word that can be a verb is one ("to form", "can also give", "did not show")
_BEFORE_VERB = frozenset("to can could will would may might must shall should also not does do did often".split())


@functools.lru_cache(maxsize=65536)
def _parts_of_speech(word: str) -> frozenset[str]:
    """The universal POS tags lemminflect's lexicon knows for `word` (empty when unknown)."""
    import lemminflect

    return frozenset(lemminflect.getAllLemmas(word.lower()))


def _role(word: str, previous: str, first: bool) -> str:
    """'noun' (can head a phrase), 'modifier' (adjective: can start or continue one, not end it),
    'stop' (function word, verb or adverb: no part of a phrase). `previous` is the word before
    (lower-cased); `first`: the sentence's first word, whose capital says nothing."""
    lower = word.lower()
    if lower in STOPWORDS:
        return "stop"
    if (word[:1].isupper() and not first) or any(c.isdigit() for c in word):
        return "noun"
    tags = _parts_of_speech(word)
    if "VERB" in tags and previous in _BEFORE_VERB:  # "can also give", "to form"
        return "stop"
    if not tags:  # unknown to the lexicon: a term ("lithosphere"), unless it looks like an adverb
        return "stop" if lower.endswith("ly") else "noun"
    if tags & {"NOUN", "PROPN", "NUM"}:
        return "noun"
    return "modifier" if "ADJ" in tags else "stop"


def noun_phrases(
    sentence: str, max_words: int, taken: Sequence[tuple[int, int]] = (), parts: bool = False
) -> Iterator[tuple[int, int]]:
    """(start, end) of the noun phrases of one sentence, left to right, each of at most
    `max_words` words, none overlapping a `taken` span (names, dates found before). Phrases do not
    overlap, unless `parts`: then each run a joined phrase is made of follows it ("proper use of
    prescription drugs", "proper use", "prescription drugs")."""
    matches = list(_WORD.finditer(sentence))
    tokens = [
        (m.start(), m.end(), _role(m.group(), matches[k - 1].group().lower() if k else "", k == 0))
        for k, m in enumerate(matches)
    ]
    for k in range(1, len(tokens)):
        if _verb_after_subject(sentence, matches, tokens, k):
            tokens[k] = (tokens[k][0], tokens[k][1], "stop")
    runs = [
        (first, last)
        for first, last in _runs(sentence, tokens)
        if all(tokens[last][1] <= a or tokens[first][0] >= b for a, b in taken)
    ]
    i = 0
    while i < len(runs):
        joined = [runs[i]]
        # join the next run over "of"/"and"/"or" (+ a determiner), words permitting
        while i + 1 < len(runs):
            nxt_first, nxt_last = runs[i + 1]
            between = sentence[tokens[joined[-1][1]][1] : tokens[nxt_first][0]].lower().split()
            if not (1 <= len(between) <= 2 and between[0] in _JOINERS and all(w in _DETERMINERS for w in between[1:])):
                break
            if len(sentence[tokens[joined[0][0]][0] : tokens[nxt_last][1]].split()) > max_words:
                break
            joined.append(runs[i + 1])
            i += 1
        start, end = tokens[joined[0][0]][0], tokens[joined[-1][1]][1]
        if len(sentence[start:end].split()) <= max_words:
            yield start, end
            if parts and len(joined) > 1:
                yield from ((tokens[first][0], tokens[last][1]) for first, last in joined)
        i += 1


def _verb_after_subject(sentence: str, matches: list[re.Match], tokens: list[tuple[int, int, str]], k: int) -> bool:
    """A noun-or-verb word in "-s" after a singular noun and right before a function word (not
    "of", "and", "or") or an adverb is the verb ("Basalt forms when", "The crust cools slowly");
    "oil prices rose", "quartz grains and cement" and "prescription drugs." keep their nouns."""
    word, previous = matches[k].group(), matches[k - 1].group()
    if tokens[k][2] != "noun" or tokens[k - 1][2] == "stop" or not word.endswith("s") or word.endswith("ss"):
        return False
    if previous.endswith("s") or "VERB" not in _parts_of_speech(word) or sentence[matches[k - 1].end() : matches[k].start()].strip():
        return False
    if k + 1 == len(matches) or sentence[matches[k].end() : matches[k + 1].start()].strip():
        return False  # punctuation follows: "the use of prescription drugs."
    following = matches[k + 1].group().lower()
    return (following in STOPWORDS and following not in _JOINERS) or following.endswith("ly")


def _runs(sentence: str, tokens: list[tuple[int, int, str]]) -> Iterator[tuple[int, int]]:
    """(first, last) token indices of the maximal runs of nouns and modifiers that touch (only
    spaces or hyphens between), trimmed to end on a noun."""
    i = 0
    while i < len(tokens):
        if tokens[i][2] == "stop":
            i += 1
            continue
        j = i
        while j + 1 < len(tokens) and tokens[j + 1][2] != "stop" and not sentence[tokens[j][1] : tokens[j + 1][0]].strip():
            j += 1
        last = j
        while last >= i and tokens[last][2] != "noun":
            last -= 1
        if last >= i:
            yield i, last
        i = j + 1
