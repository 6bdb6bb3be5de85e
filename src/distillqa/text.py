"""Text helpers shared across stages, each written once.

`normalize_answer` is the official SQuAD v1.1 answer normalisation (evaluate-v1.1.py), used by the
metrics and by the dataset filters that compare answers.
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (official v1.1 order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())
