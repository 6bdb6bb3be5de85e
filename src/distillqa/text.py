"""Text helpers shared across stages, each written once.

- sentences: `sentence_spans` (abbreviation-aware, for chunking, candidates, span clozes and
  passages) and the two "ends like a sentence" patterns;
- words: `words`/`fold` (accent- and case-folded letters and digits, for comparing texts) and
  one `STOPWORDS` list;
- `normalize_answer`: the official SQuAD v1.1 answer normalisation (evaluate-v1.1.py), for the
  metrics and the dataset filters that compare answers.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (official v1.1 order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


# --- sentences -------------------------------------------------------------------------

# A period after these is not a sentence end even before a capital ("Dr. Watson", "et al. (2019)").
# Only words usually followed by a name need listing: a lowercase next word never starts a
# sentence ("50 ft. tall"), and "Inc."/"etc." end sentences at least as often as not.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt rev gen col lt sgt capt cmdr adm gov sen rep hon pres vs viz cf al dept univ".split()
)
# ... and after these only before a number ("No. 5", "Fig. 3", "Jan. 12", "ca. 1500").
_BEFORE_NUMBER = frozenset(
    "no nos p pp vol vols fig figs eq eqs ch sec art approx ca "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_NEXT_CHAR = re.compile(r"\s*(\S)")
_DOTTED = re.compile(r"(?:[^\W\d_]{1,3}\.)+[^\W\d_]{1,3}")  # U.S, e.g, i.e, Ph.D, a.m


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, trimmed of whitespace, in order; they cover every
    non-space character of `text`. Paragraph breaks (blank lines) always end a sentence.

    A period ends a sentence only if whitespace and then a non-lowercase character follow and
    the word before it is not an abbreviation ("Dr.", "Gen."), a dotted abbreviation ("U.S.",
    "e.g."), an initial ("J. R. R. Tolkien") or "No."/"p." before a number. Decimals ("3.5")
    never split: no space follows their dot.
    """
    spans: list[tuple[int, int]] = []
    block_start = 0
    for block_end in [m.start() for m in _PARAGRAPH_BREAK.finditer(text)] + [len(text)]:
        start = block_start
        for m in _SENTENCE_END.finditer(text, block_start, block_end):
            nxt = _next_char(text, m.end(), block_end)
            if nxt and _ends_sentence(text, m, nxt):
                _add_span(text, start, m.end(), spans)
                start = m.end()
        _add_span(text, start, block_end, spans)
        block_start = block_end
    return spans


def _next_char(text: str, pos: int, limit: int) -> str:
    m = _NEXT_CHAR.match(text, pos, limit)
    return m.group(1) if m else ""


def _ends_sentence(text: str, m: re.Match, nxt: str) -> bool:
    """Whether the punctuation matched by `m`, followed by the character `nxt`, ends a sentence."""
    if nxt.islower() or nxt in ",;:":  # "approx. five", "e.g., rocks"
        return False
    if not m.group().startswith("."):
        return True
    before = text[max(0, m.start() - 40) : m.start()]
    token = before.split()[-1].lstrip("\"'“‘([") if before and not before[-1].isspace() else ""
    if _DOTTED.fullmatch(token) or (len(token) == 1 and token.isupper()) or token.lower() in _ABBREVIATIONS:
        return False
    return not (token.lower() in _BEFORE_NUMBER and nxt.isdigit())


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        s = start + piece.index(stripped[0])
        spans.append((s, s + len(stripped)))


# A sentence break, cheaply: closing punctuation (group 1) and space, or a blank line. For snapping
# window edges and spotting a match that runs across sentences, where a missed abbreviation costs
# nothing; `sentence_spans` is the careful splitter. A single line break is no break: PDF text
# keeps some inside paragraphs ("geo-\nlogy").
SENTENCE_BREAK = re.compile(r"([.!?][\"'”’)\]]*)\s+|\n\s*\n")
# A text ends like a sentence: closing punctuation, then maybe a quote or bracket.
ENDS_SENTENCE = re.compile(r"[.!?][\"'”’)\]]*$")
# ... or like a statement that goes on (colon, semicolon, ellipsis): not a heading, not a title.
ENDS_WITH_STOP = re.compile(r"[.!?…:;][\"'”’)\]]*$")


# --- words ---------------------------------------------------------------------------------

# Function words: never an answer on their own, and not evidence that a question is about a
# passage. One list for candidates, cloze, question checks, grounding and the dataset filters
# ("s" is what remains of "earth's" once `words` splits it).
STOPWORDS = frozenset(
    """a about above according after all also although am among an and another any are as at be
    because been before being below between both but by can could did do does during each early
    few first for from had has have he her here him his how however i if in into is it it's its
    just late later many may me might more most much must my new no nor not of often old on one
    only onto or other our over own passage s same second several shall she should since so some
    sometimes such text than that the their them then there therefore these they this those
    though through thus to under until usually very was we were what when where whereas which
    while who whom whose why will with without would yes yet you your""".split()
)

_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_LETTERS_AND_DIGITS = re.compile(r"[^\W_]+")


@functools.lru_cache(maxsize=4096)
def fold_char(ch: str) -> str:
    """The lower-case letters/digits of one character, accents removed ("É"->"e", "ﬁ"->"fi").

    Spaces, punctuation, quotes, dashes and combining accents fold to "", which is what makes the
    comparison insensitive to them.
    """
    return "".join(
        c for c in unicodedata.normalize("NFKD", ch).casefold() if c.isalnum() and not unicodedata.combining(c)
    )


def _fold_or_split(match: re.Match) -> str:
    ch = match.group()
    return fold_char(ch) or ("" if unicodedata.combining(ch) else " ")


def words(text: str) -> list[str]:
    """Folded words (runs of letters/digits), for comparing questions and passages."""
    if not text.isascii():  # the per-character path only where needed: it is much slower
        text = _NON_ASCII.sub(_fold_or_split, text)
    return _LETTERS_AND_DIGITS.findall(text.lower())


def fold(text: str) -> str:
    """`text` reduced to its folded letters and digits, with no separators at all."""
    return "".join(words(text))
