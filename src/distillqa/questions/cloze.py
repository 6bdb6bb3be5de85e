"""Rule-based cloze-to-question translation: a question for an answer with no teacher at all.

In the spirit of Lewis et al. (2019), "Unsupervised Question Answering by Cloze Translation":
their rule-based translation of a cloze (the answer's sentence with the answer masked) into a
question already trains a useful SQuAD reader. Here: trim the sentence to the clause that holds
the answer, pick a wh-word from the answer's kind, and move it to the front when simple rules
allow ("In 1867, Alfred Nobel patented dynamite." + "Alfred Nobel" -> "Who patented dynamite in
1867?"); otherwise the wh-phrase stays in place ("The company earned how much in 2010?").
"""

from __future__ import annotations

import re

from distillqa.config import QuestionsConfig
from distillqa.questions.candidates import DATE, MONEY, NUMBER, PERCENT, PERSON, PLACE
from distillqa.text import STOPWORDS

_AUX = r"is|are|was|were|has|have|had|can|could|will|would|may|might|must|should|does|do|did"
_RE_AUX = re.compile(rf"\b({_AUX})\b")
_RELATIVE = re.compile(r"\b(?:that|which|who|whom|whose|where|when|while|if|because|although)\b", re.IGNORECASE)
# Where a new clause starts; only the clause holding the answer is kept.
_CLAUSE_BREAK = re.compile(
    r"\s*[;:]\s*|\s+[–—]\s+|,\s+(?=(?:but|while|whereas|although|though|yet|so|because|since)\s)"
)
_LEADING_CONJUNCTION = re.compile(r"(?:and|but|while|whereas|although|though|yet|so|because|since)\s+", re.IGNORECASE)
# A fronted adverbial ("In 1867, ", "During the war, ") that can move to the end of a question.
_FRONTED = re.compile(
    r"^((?:In|On|At|During|By|From|After|Before|Since|Until|Around|Throughout|Within|For|Over|Under)\b[^,]{1,60}),\s+"
)
_DETERMINER = re.compile(r"\b(?:the|a|an)\s*$", re.IGNORECASE)
# What a "when"/"where" question replaces together with the answer ("in 1867" -> "when").
_WHEN_PREPOSITIONS = ("in", "on", "during", "around", "circa", "about")
_WHERE_PREPOSITIONS = ("in", "at", "near", "on")
_COUNT_WORDS = frozenset("hundred thousand million billion trillion thousands hundreds millions billions dozens".split())
_PAST_FORMS = {  # irregular pasts, and regular ones whose base ends in an "e" the rules cannot restore
    "made": "make", "found": "find", "wrote": "write", "took": "take", "became": "become", "began": "begin",
    "gave": "give", "led": "lead", "built": "build", "held": "hold", "saw": "see", "knew": "know",
    "thought": "think", "brought": "bring", "left": "leave", "won": "win", "lost": "lose", "met": "meet",
    "sold": "sell", "told": "tell", "came": "come", "went": "go", "grew": "grow", "drew": "draw",
    "fell": "fall", "rose": "rise", "said": "say", "paid": "pay", "kept": "keep", "sent": "send",
    "spent": "spend", "taught": "teach", "fought": "fight", "bought": "buy", "chose": "choose",
    "spoke": "speak", "struck": "strike", "threw": "throw", "understood": "understand", "laid": "lay",
    "proposed": "propose", "described": "describe", "produced": "produce", "used": "use",
    "created": "create", "moved": "move", "caused": "cause", "introduced": "introduce", "placed": "place",
}
# Stands for the wh-phrase while the question is assembled, so trimming never cuts it off.
_WH_SLOT = "\x00"


def wh_phrase(kind: str, answer: str, after: str) -> str:
    """The question word for an answer of this kind ('how many' for counts, 'what' by default).

    `after` is the text following the answer: a possessive there makes a person 'whose'.
    """
    if kind == PERSON:
        return "whose" if after.startswith(("'s", "’s")) else "who"
    if kind == DATE:
        if re.fullmatch(r"(?:\w+\s+)?\d{4}", answer):
            return "what year"
        if answer.endswith("0s"):
            return "what decade"
        if answer.endswith("century"):
            return "what century"
        return "when"
    if kind == PLACE:
        return "where"
    if kind == MONEY:
        return "how much"
    if kind == PERCENT:
        return "what percentage"
    if kind == NUMBER:
        unit = re.fullmatch(r".*?[\d\s]([A-Za-z°/]+)", answer)
        if unit and unit.group(1).lower() not in _COUNT_WORDS:
            return "how many " + unit.group(1)  # "660 kilometers" -> "how many kilometers"
        return "how many"
    return "what"


def cloze_question(sentence: str, start: int, end: int, kind: str, limits: QuestionsConfig | None = None) -> str | None:
    """A question whose answer is `sentence[start:end]`, or None when no rule gives a clean one
    (or none of at most `limits.max_question_words` words; default limits: config.py's)."""
    max_words = (limits or QuestionsConfig()).max_question_words
    answer = sentence[start:end]
    listed = re.fullmatch(r"there\s+(are|were)\s+(.+?)\s*:\s*", sentence[:start], re.IGNORECASE)
    if listed and not sentence[end:].strip(" ."):  # "There are three types of rock: A, B and C."
        return _finish(f"{_WH_SLOT} {listed.group(1)} the {listed.group(2)}", "what", answer, max_words)
    clause, start, end = answer_clause(sentence, start, end)
    if _RELATIVE.match(clause):
        return None  # the answer sits in a relative clause ("which is called X"): no subject to ask about
    before, after = clause[:start], clause[end:]
    wh = wh_phrase(kind, answer, after)
    if after.startswith(("'s", "’s")):
        if kind != PERSON:
            return None  # "the Earth's crust": no natural wh-word for a non-person possessor
        after = after[2:]
    if wh == "how many":  # "three major types of rock" -> "how many major types of rock"
        counted = _counted_noun(after)
        if not counted:
            return None
        wh, after = f"how many {after[:counted].strip()}", after[counted:]
    return _finish(*_build(before, wh, after), answer, max_words)


def answer_clause(sentence: str, start: int, end: int) -> tuple[str, int, int]:
    """The clause holding the answer, without asides in brackets or commas; new answer offsets."""
    pieces, pos = [], 0
    for m in _CLAUSE_BREAK.finditer(sentence):
        pieces.append((pos, m.start()))
        pos = m.end()
    pieces.append((pos, len(sentence)))
    s, e = next(((a, b) for a, b in pieces if a <= start and end <= b), (0, len(sentence)))
    lead = _LEADING_CONJUNCTION.match(sentence, s) if s > 0 else None
    if lead and lead.end() <= start:
        s = lead.end()
    clause, start, end = sentence[s:e], start - s, end - s
    # ", the most important of which was X," and "(aside)": drop when they do not hold the answer
    asides = r"\s*\([^()]*\)|,\s+(?:the\s+\w+\s+\w+\s+of\s+which|which|who|where|such\s+as|including)\b[^,]*(?:,(?=\s)|$)"
    for m in reversed(list(re.finditer(asides, clause))):
        if m.end() <= start or m.start() >= end:
            shift = len(m.group()) if m.end() <= start else 0
            clause = clause[: m.start()] + clause[m.end():]
            start, end = start - shift, end - shift
    clause = clause.rstrip(" .!?;:,")
    return clause, start, min(end, len(clause))


def _counted_noun(after: str) -> int:
    """Length of the noun phrase right after a number ('major types of rock'); 0 if there is none."""
    end = 0
    for i, m in enumerate(re.finditer(r"\s*([A-Za-z\-]+)", after)):
        word = m.group(1)
        if m.start() != end or i >= 4 or not word.islower() or word in STOPWORDS - {"of"}:
            break
        end = m.end()
    while end and after[:end].endswith(" of"):
        end -= 3
    return end


def _build(before: str, wh: str, after: str) -> tuple[str, str]:
    """The question with _WH_SLOT for the wh-phrase, and the wh-phrase: fronted when the answer is the
    subject or an auxiliary can be inverted, else in place."""
    fronted = ""
    m = _FRONTED.match(before)
    if m:  # "In 1867, Alfred Nobel ..." -> the adverbial moves to the end
        fronted, before = m.group(1), before[m.end():]
    elif after.startswith(", ") and re.fullmatch(r"\s*(?:in|on|during)\s*", before, re.IGNORECASE) and wh != "what":
        inverted = _invert(after[2:], "")  # "In 1867, Nobel patented dynamite" -> "When did Nobel patent dynamite"
        if inverted:
            return f"{_WH_SLOT} {inverted}", "when"
    tail = f" {_lower_first(fronted)}" if fronted else ""
    det = _DETERMINER.search(before)
    if det:  # "is the rock cycle" -> the determiner goes with the answer
        before = before[: det.start()]
    if not before.strip():  # the answer is the subject
        return f"{_WH_SLOT} {after.strip()}{tail}", wh
    there = re.fullmatch(r"\s*there\s+(is|are|was|were)\s*", before, re.IGNORECASE)
    if there:  # "There are three types of rock" -> "How many types of rock are there"
        return f"{_WH_SLOT} {there.group(1)} there {after.strip()}{tail}", wh
    if wh in ("when", "what year", "what decade", "what century", "where"):
        prep = re.search(r"\b(\w+)\s*$", before)
        if prep and prep.group(1).lower() in (_WHERE_PREPOSITIONS if wh == "where" else _WHEN_PREPOSITIONS):
            core = before[: prep.start()]
            inverted = _invert(core, after)
            if inverted:  # "Nobel patented dynamite in 1867" -> "When did Nobel patent dynamite"
                return f"{_WH_SLOT} {inverted}{tail}", "where" if wh == "where" else "when"
            keep = "" if wh == "where" else prep.group(1).lower()  # "in what year" / "where"
            return f"{core.strip()} {keep} {_WH_SLOT}{after}{tail}", wh
    # no fronting out of a coordination ("X and Y") or a larger noun phrase ("the X of Y", "the X layer")
    coordinated = re.match(r"\s+(?:of|and|or)\b", after) or re.search(r"\b(?:of|and|or)\s*$", before)
    next_word = re.match(r"\s+([a-z]+)", after)
    inside_np = next_word and next_word.group(1) not in STOPWORDS and not _RE_AUX.fullmatch(next_word.group(1))
    if not coordinated and not inside_np and not wh.startswith("how many"):
        inverted = _invert(before, after)
        if inverted:
            return f"{_WH_SLOT} {inverted}{tail}", wh
    return f"{fronted + ', ' if fronted else ''}{before.strip()} {_WH_SLOT}{after}", wh


def _invert(before: str, after: str) -> str | None:
    """'the fault was formed ' + ' by X' -> 'was the fault formed by X' (auxiliary or do-support).

    The first auxiliary or past-tense verb ends the subject; None when the subject is implausible
    or a subordinate clause separates the verb from the answer.
    """
    words = before.split()
    for i, word in enumerate(words[1:], start=1):
        subject, rest = " ".join(words[:i]), " ".join(words[i + 1:])
        if "," in rest or _RELATIVE.search(rest):
            return None  # the answer sits in a subordinate clause: fronting would cross into it
        if _RE_AUX.fullmatch(word):
            return _join(word, _lower_first(subject), rest, after) if _is_subject(subject) else None
        base = _past_to_base(word)
        if base:  # "Nobel patented X" -> "did Nobel patent X"
            return _join("did", _lower_first(subject), base, rest, after) if _is_subject(subject) else None
    return None


def _is_subject(text: str) -> bool:
    """A plausible noun-phrase subject: short, no comma, no relative clause, not a pronoun alone."""
    words = text.split()
    return (
        0 < len(words) <= 12
        and words[-1].lower() not in STOPWORDS
        and "," not in text
        and not _RELATIVE.search(text)
        and words[0].lower() not in ("it", "they", "he", "she", "we", "this", "these", "that", "those", "there")
    )


def _past_to_base(word: str) -> str | None:
    """Base form of a past-tense verb, only where it is unambiguous; None otherwise."""
    lower = word.lower()
    if lower in _PAST_FORMS:
        return _PAST_FORMS[lower]
    if not lower.isalpha() or len(lower) < 6 or not lower.endswith("ed"):
        return None
    stem = lower[:-2]
    if stem.endswith("i"):
        return stem[:-1] + "y"  # "carried" -> "carry"
    if stem[-1] == stem[-2] and stem[-1] in "bdgmnprt":
        return stem[:-1]  # "stopped" -> "stop"
    if re.search(r"[^aeiou][^aeiouy]$", stem) and stem[-1] != stem[-2] and stem[-2:] not in (
        "rc", "rg", "ng", "ns", "rs", "ls", "lv", "rv", "dg", "ps", "ls", "ts", "ds"
    ):
        return stem  # "patented" -> "patent", "formed" -> "form" (not "charg", "chang", "sens")
    if re.search(r"(?:er|ow|ay|ey|oy|ain|ail|eal|oil|ear|ead)$", stem):
        return stem  # "discovered", "showed", "explained"
    return None


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _lower_first(text: str) -> str:
    """Lowercase a leading common word ('The rock' -> 'the rock'), not a name ('Alfred Nobel')."""
    words = text.split(" ", 2)
    common = words[0].lower() in STOPWORDS or (len(words) > 1 and words[1][:1].islower() and not words[0].isupper())
    return text[0].lower() + text[1:] if text and common else text


def _finish(question: str, wh: str, answer: str, max_words: int) -> str | None:
    """Tidy, drop trailing comma segments after the wh-phrase while too long, put the wh-phrase in,
    capitalise, add '?'. None if still too long or too short, or if the answer leaks into it."""
    question = re.sub(r"\s+", " ", question).strip(" ,;:.")
    segments = question.split(", ")
    while len(" ".join(segments).split()) > max_words and _WH_SLOT not in segments[-1]:
        segments.pop()
    question = ", ".join(segments).replace(_WH_SLOT, wh)
    question = re.sub(r"\s+([,;:])", r"\1", question)
    if not 3 <= len(question.split()) <= max_words:
        return None
    if re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", question, re.IGNORECASE):
        return None
    return question[0].upper() + question[1:] + "?"
