"""Answer candidates for the answer-first route: short spans of a chunk worth asking about.

Small teachers cannot be trusted to pick answers (they copy the passage or the example), but they
can often write a question for an answer they are given. So the answers are chosen here, as
verbatim spans of the chunk: named entities, dates, numbers and noun phrases. spaCy is used when it
and an English model are installed; otherwise careful regular-expression heuristics do the job.
Candidates are spread over the chunk's sentences so the questions cover the whole passage.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from distillqa.config import QuestionsConfig
from distillqa.text import ENDS_SENTENCE, STOPWORDS, sentence_spans

# Answer kinds. The cloze fallback picks its wh-word from them; validation checks that a teacher
# question about a date asks "when"/"what year", about a number "how many", and so on.
PERSON, PLACE, DATE, NUMBER, MONEY, PERCENT, NAME, TERM, PHRASE = (
    "person", "place", "date", "number", "money", "percent", "name", "term", "phrase",
)
# Higher first: facts a reader question is most likely to target, and the easiest to verify.
_PRIORITY = {DATE: 6, NUMBER: 5, MONEY: 5, PERCENT: 5, PERSON: 4, PLACE: 4, TERM: 4, NAME: 3, PHRASE: 1}

_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan\\.|Feb\\.|Mar\\.|Apr\\.|Jun\\.|Jul\\.|Aug\\.|Sep\\.|Sept\\.|Oct\\.|Nov\\.|Dec\\."
)
_NUMBER_WORDS = (
    "two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    "sixty|seventy|eighty|ninety|hundred|a hundred|thousands|hundreds|millions|billions|dozens"
)
_SCALE = r"(?:\s(?:hundred|thousand|million|billion|trillion))?"
_UNITS = (
    "years?|months?|days?|hours?|minutes?|seconds?|centuries|decades|km|kilometres?|kilometers?|"
    "miles?|metres?|meters?|m|cm|mm|feet|ft|inches|kg|kilograms?|tonnes?|tons?|pounds?|lb|g|grams?|"
    "degrees?|°C|°F|°|K|kelvin|km/h|mph|Ma|Ga|mya|kilobars?|bars?|MPa|GPa|acres?|hectares?|ha|"
    "litres?|liters?|gallons?|barrels?|people|species|times"
)
# "\b" does not work before a symbol such as "$", hence the lookbehind.
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})(?:s\b)?"
_RE_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS})\s+\d{{1,2}},?\s+{_YEAR}|\d{{1,2}}\s+(?:{_MONTHS})\s+{_YEAR}|(?:{_MONTHS})\s+{_YEAR}"
    rf"|(?:the\s+)?(?:early\s+|mid-|late\s+)?(?:1[0-9]|20)[0-9]0s"
    rf"|(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)\s+century|(?:the\s+)?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|twenty-first)\s+century"
    rf"|{_YEAR}(?:\s*(?:BC|BCE|AD|CE))?)(?![\d,.]\d)"
)
_RE_MONEY = re.compile(rf"(?<![\w$€£])[$€£]\s?\d[\d,]*(?:\.\d+)?{_SCALE}|\b\d[\d,]*(?:\.\d+)?{_SCALE}\s(?:dollars|euros|pounds sterling|US dollars)\b")
_RE_PERCENT = re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?(?:%|percent\b|per cent\b)")
_RE_NUMBER = re.compile(
    rf"\b(?:\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?|(?:{_NUMBER_WORDS})){_SCALE}"
    rf"(?:\s?(?:{_UNITS})\b)?(?![\d.,]\d)",
    re.IGNORECASE,
)
_RE_QUOTED = re.compile(r"[\"“]([^\"”]{2,60})[\"”]")
_CAP = r"[A-Z][\w'’\-]*"
_RE_CAPS = re.compile(rf"{_CAP}(?:\s+(?:(?:of|de|da|van|von|der|del|la|le|and|the|for)\s+)?{_CAP})*")
_RE_CALLED = re.compile(
    r"\b(?:called|known as|termed|named|referred to as|defined as)\s+((?:the|a|an)\s+)?([^,.;:()]{2,60}?)(?=[,.;:()]|\s(?:and|or|which|that|because|in|by|when|where)\b|$)"
)
_RE_IS_A = re.compile(r"^((?:[A-Z][\w\-]*)(?:\s+[a-z\-]+){0,2})\s+(?:is|are|was|were)\s+(?:a|an|the)\s")
_RE_SUCH_AS = re.compile(r"\b(?:such as|including|namely)\s+([^;:.()]{3,80}?)(?=[;:.()]|,\s(?:which|where|and\s+the)\b|$)")
_RE_COLON_LIST = re.compile(r":\s+([^;:.()]{3,80}?,[^;:.()]{2,60}?)\s*(?=[.;]|$)")
_RE_WORD = re.compile(r"[\w'’\-]+(?:\.\d+)?")

_PLACE_WORDS = frozenset(
    "river sea ocean mountains mountain island islands valley lake desert city county province state "
    "bay gulf coast peninsula strait canyon basin plateau range fault park forest republic kingdom".split()
)
# A capitalised name after one of these is taken for a place ("near Lyon").
_PLACE_CUE_WORDS = ("in", "at", "near", "from", "to", "across", "throughout", "off")
_PERSON_TITLES = frozenset("mr mrs ms dr sir lord lady king queen prince princess saint st president professor".split())
_PERSON_CONTEXT = re.compile(
    r"^\s*(?:,\s*(?:who|a|an|the)\b|\s(?:said|wrote|argued|proposed|published|suggested|described|believed|"
    r"discovered|invented|founded|developed|introduced|claimed|noted|observed|stated|died|was born)\b)"
)
# Words that end a noun-phrase run: common verbs and adverbs a regex would otherwise swallow
# ("rock crystallizes", "fossil types due"), and vague adjectives that make poor answers.
_NOT_NOUN = frozenset(
    """due quite inside outside within lies lie becomes become exist exists occur occurs forms pertains
    means contains contain includes include shows show provides provide makes make appears appear remains
    remain seems seem consists consist uses use allows allow gives give takes take refers refer results
    helps help leads lead moves move called known relative""".split()
)
_VAGUE = frozenset(
    """important entire similar single major main different various certain particular whole large small
    great simple common general specific typical same basic key significant primary following further""".split()
)


@dataclass(frozen=True)
class Candidate:
    """A proposed answer: a verbatim span of the chunk, with the sentence it sits in."""

    text: str
    start: int  # offset in the chunk text
    kind: str
    sentence: str
    sentence_start: int  # offset of `sentence` in the chunk text

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def start_in_sentence(self) -> int:
        return self.start - self.sentence_start


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@functools.lru_cache(maxsize=1)
def load_spacy() -> Any | None:
    """An installed English spaCy pipeline, or None. spaCy is optional: heuristics cover its absence."""
    try:
        import spacy
    except ImportError:
        return None
    for name in ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf"):
        try:
            return spacy.load(name, disable=["lemmatizer"])
        except OSError:  # model not installed
            continue
    return None


_SPACY_KINDS = {
    "PERSON": PERSON, "GPE": PLACE, "LOC": PLACE, "FAC": PLACE, "DATE": DATE, "TIME": DATE,
    "CARDINAL": NUMBER, "QUANTITY": NUMBER, "MONEY": MONEY, "PERCENT": PERCENT, "ORG": NAME,
    "NORP": NAME, "EVENT": NAME, "WORK_OF_ART": NAME, "LAW": NAME, "PRODUCT": NAME, "LANGUAGE": NAME,
}


def spacy_spans(doc: Any) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) from a parsed spaCy Doc: its named entities, then its noun chunks."""
    for ent in doc.ents:
        if ent.label_ in _SPACY_KINDS:
            yield ent.start_char, ent.end_char, _SPACY_KINDS[ent.label_]
    for chunk in doc.noun_chunks:
        yield chunk.start_char, chunk.end_char, PHRASE


def heuristic_spans(sentence: str, limits: QuestionsConfig | None = None) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) of answer-like spans in one sentence, found by regular expressions.

    Names and phrases over `limits.max_answer_words` words are not answers (default limits: config.py's)."""
    max_words = (limits or QuestionsConfig()).max_answer_words
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    def emit(s: int, e: int, kind: str) -> Iterator[tuple[int, int, str]]:
        if free(s, e):
            taken.append((s, e))
            yield s, e, kind

    for m in _RE_MONEY.finditer(sentence):
        yield from emit(m.start(), m.end(), MONEY)
    for m in _RE_PERCENT.finditer(sentence):
        yield from emit(m.start(), m.end(), PERCENT)
    for m in _RE_DATE.finditer(sentence):
        yield from emit(m.start(), m.end(), DATE)
    for m in _RE_NUMBER.finditer(sentence):
        if not re.fullmatch(r"(?i)one|a hundred", m.group()):
            yield from emit(m.start(), m.end(), NUMBER)
    for m in _RE_QUOTED.finditer(sentence):
        yield from emit(m.start(1), m.end(1), TERM)
    for m in _RE_CALLED.finditer(sentence):
        s, e = _trim_phrase(sentence, m.start(2), m.end(2), max_words)
        if e > s:
            yield from emit(s, e, TERM)
    for s, e in _capitalised_names(sentence, max_words):
        yield from emit(s, e, _name_kind(sentence, s, e))
    m = _RE_IS_A.match(sentence)
    if m and m.group(1).split()[0].lower() not in STOPWORDS:
        yield from emit(m.start(1), m.end(1), TERM)
    for m in list(_RE_SUCH_AS.finditer(sentence)) + list(_RE_COLON_LIST.finditer(sentence)):
        s, e = _trim_phrase(sentence, m.start(1), m.end(1), max_words)
        if e > s:
            yield from emit(s, e, PHRASE)
    for s, e in _noun_phrases(sentence):
        yield from emit(s, e, PHRASE)


def _trim_phrase(text: str, s: int, e: int, max_words: int) -> tuple[int, int]:
    """Shrink a span to start and end on a content word (no leading 'the', no trailing 'and')."""
    words = list(_RE_WORD.finditer(text, s, e))
    while words and words[0].group().lower() in STOPWORDS:
        words.pop(0)
    while words and words[-1].group().lower() in STOPWORDS:
        words.pop()
    if not words or len(words) > max_words:
        return s, s
    return words[0].start(), words[-1].end()


def _capitalised_names(sentence: str, max_words: int) -> Iterator[tuple[int, int]]:
    """Runs of capitalised words, minus a sentence-initial common word ('The', 'In', 'Many')."""
    for m in _RE_CAPS.finditer(sentence):
        words = list(_RE_WORD.finditer(sentence, m.start(), m.end()))
        while words and words[0].group().lower() in STOPWORDS:
            words.pop(0)  # "The Alps" -> "Alps"; "In Europe" -> "Europe"
        while words and words[-1].group().lower() in STOPWORDS:
            words.pop()
        if not words:
            continue
        s, e = words[0].start(), words[-1].end()
        if sentence[e - 2:e] in ("'s", "’s"):
            e -= 2  # "Earth's crust": the name is "Earth"
        if s == 0 and len(words) == 1:
            continue  # one capitalised word at the start of a sentence is just an ordinary word
        if len(words) > max_words or re.fullmatch(r"[A-Z]", sentence[s:e]):
            continue
        yield s, e


def _name_kind(sentence: str, s: int, e: int) -> str:
    """Person, place or other name, from cheap clues around the span (titles, 'in', 'River')."""
    words = sentence[s:e].split()
    before = sentence[:s].split()
    prev = before[-1].lower().rstrip(".") if before else ""
    if prev in _PERSON_TITLES or _PERSON_CONTEXT.match(sentence[e:]):
        return PERSON
    if words[-1].lower() in _PLACE_WORDS or (prev in _PLACE_CUE_WORDS and len(words) <= 3):
        return PLACE
    if sentence[e:e + 2] in ("'s", "’s") and len(words) == 2:
        return PERSON  # "Alfred Wegener's theory"
    return NAME


def _noun_phrases(sentence: str) -> Iterator[tuple[int, int]]:
    """Runs of 2-4 content words after a determiner or preposition ('the rock cycle' -> 'rock cycle')."""
    words = list(_RE_WORD.finditer(sentence))
    i = 0
    while i < len(words):
        w = words[i].group().lower()
        if w in ("the", "a", "an", "its", "their", "of", "in", "on", "by", "from", "into", "as", "called"):
            j = i + 1
            run: list[re.Match] = []
            while j < len(words) and len(run) < 4:
                word = words[j].group()
                gap = sentence[(run[-1] if run else words[i]).end():words[j].start()]
                lower = word.lower()
                if (
                    lower in STOPWORDS
                    or lower in _NOT_NOUN
                    or lower.endswith(("izes", "ises", "ifies", "ly"))
                    or (gap.strip() and run)
                    or re.search(r"\d", word)
                ):
                    break
                if not (lower in _VAGUE and not run):
                    run.append(words[j])
                j += 1
            if len(run) >= 2 and not run[-1].group().lower().endswith("ed"):
                yield run[0].start(), run[-1].end()
            i = max(j, i + 1)
        else:
            i += 1


def extract_candidates(
    text: str, limit: int, nlp: Any | None = None, use_spacy: bool = True, limits: QuestionsConfig | None = None
) -> list[Candidate]:
    """Up to `limit` diverse answer candidates from a chunk, spread over its sentences.

    `nlp` is a spaCy pipeline (default: `load_spacy()` when `use_spacy`); without one, heuristics.
    Skipped: spans over `limits.max_answer_words` words, spans that appear twice in their sentence
    (a question could not say which is meant), whole sentences, sentences under
    `limits.min_sentence_words` words (headings), and sentences cut by the chunk edge.
    """
    limits = limits or QuestionsConfig()
    if nlp is None and use_spacy:
        nlp = load_spacy()
    per_sentence: list[list[Candidate]] = []
    seen: set[str] = set()
    for s_start, s_end in sentence_spans(text):
        sentence = text[s_start:s_end]
        if not askable_sentence(sentence, limits.min_sentence_words):
            continue  # a heading, or a sentence cut by the chunk edge
        spans = spacy_spans(nlp(sentence)) if nlp is not None else heuristic_spans(sentence, limits)
        found = []
        for s, e, kind in spans:
            cand = _make_candidate(sentence, s_start, s, e, kind, seen, limits.max_answer_words)
            if cand is not None:
                seen.add(cand.text.lower())
                found.append(cand)
        found.sort(key=lambda c: -_PRIORITY[c.kind])
        per_sentence.append(found)
    return _round_robin(per_sentence, limit)


def askable_sentence(sentence: str, min_words: int) -> bool:
    """A whole sentence of at least `min_words` words: headings, captions and list items are not asked about."""
    return len(sentence.split()) >= min_words and bool(ENDS_SENTENCE.search(sentence))


def askable_span(sentence: str, start: int, end: int, max_words: int) -> bool:
    """A question can single out `sentence[start:end]`: at most `max_words` words, not nearly the
    whole sentence, and found once in it (a repeated span is ambiguous)."""
    answer = sentence[start:end]
    n_words = len(answer.split())
    return (
        0 < n_words <= max_words
        and n_words < len(sentence.split()) - 2
        and len(re.findall(rf"(?<!\w){re.escape(answer)}(?!\w)", sentence, re.IGNORECASE)) == 1
    )


def _make_candidate(
    sentence: str, offset: int, s: int, e: int, kind: str, seen: set[str], max_words: int
) -> Candidate | None:
    s, e = _strip_span(sentence, s, e)
    answer = sentence[s:e].rstrip(".,;:")
    e = s + len(answer)
    if answer.lower() in seen or answer.lower() in STOPWORDS or not askable_span(sentence, s, e, max_words):
        return None
    return Candidate(answer, offset + s, kind, sentence, offset)


def _round_robin(groups: Iterable[list[Candidate]], limit: int) -> list[Candidate]:
    """Best candidate of each sentence first, then second-best of each, ... until `limit`."""
    groups = [g for g in groups if g]
    out: list[Candidate] = []
    rank = 0
    while len(out) < limit and any(rank < len(g) for g in groups):
        for g in groups:
            if rank < len(g) and len(out) < limit:
                out.append(g[rank])
        rank += 1
    return sorted(out, key=lambda c: c.start)
