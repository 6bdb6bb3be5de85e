"""Decode-time levers for #10, measured on devset students: re-rank a reader's n-best answers.

    .venv/bin/python benchmarks/rerank.py runs/geology runs/1973_oil_crisis runs/pharmacy

Each run folder is a `distillqa run ../shared/devset/ARTICLE.pdf --out runs/ARTICLE --until train`
(its name picks the article's human questions). For every question the student's 20 best spans
(reader mode: the gold paragraph) are re-ranked by:
- rules any reader applies, with ordinal factors, nothing fitted to a document: the answer's type
  agrees with the wh-word (when -> date, how many/much -> number, who/where -> name); an answer
  made only of the question's own words is almost never right; a lone lower-case word is weak;
- the sentence the bundled embedder finds most similar to the question (hard: the best span
  inside it; soft: exp(20 x (similarity - best similarity))).
Printed: SQuAD F1 of the pick, and oracle@k (the best of the top k) for the headroom.
"""

from __future__ import annotations

import re
import argparse
import math
import statistics
from pathlib import Path

from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.student.metrics import f1_score
from distillqa.text import STOPWORDS, sentence_spans, words

DEVSET = Path(__file__).resolve().parents[2] / "shared" / "devset"

N_BEST = 20  # candidates per question that the rules re-rank
QUESTION_WORDS_FACTOR = 0.05  # the answer repeats the question: strong
TYPE_MISMATCH_FACTOR = 0.2  # the answer is not of the type asked for: strong
LONE_LOWER_FACTOR = 0.5  # one lower-case word: mild

DATE, NUMBER, NAME = "date", "number", "name"
_ASKS = (  # first match wins, so longer phrases come first
    (re.compile(r"\b(what|which) (year|decade|century|month|day|date)\b|\bwhen\b|\bhow long ago\b"), DATE),
    (re.compile(r"\bhow (many|much|long|old|far|large|big|high|tall|often)\b|\bwhat (percentage|percent|proportion|fraction|number)\b"), NUMBER),
    (re.compile(r"\b(who|whom|whose)\b|\bwhere\b"), NAME),
)
_MONTHS = "january february march april may june july august september october november december".split()
_NUMBER_WORDS = set(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred "
    "thousand million billion trillion dozen half quarter third".split()
)


def asked_type(question: str) -> str | None:
    """DATE, NUMBER or NAME when the question's wh-phrase asks for one, else None."""
    q = question.lower()
    return next((kind for pattern, kind in _ASKS if pattern.search(q)), None)


def has_type(answer: str, kind: str) -> bool:
    """Does `answer` look like a `kind`? Dates have a year, month, century or decade; numbers a
    digit or number word; names a capitalised word."""
    lower = answer.lower()
    tokens = words(answer)
    if kind == DATE:
        return bool(re.search(r"\b\d{3,4}s?\b|\bcentur|\bdecade", lower)) or any(t in _MONTHS for t in tokens)
    if kind == NUMBER:
        return bool(re.search(r"\d", answer)) or any(t in _NUMBER_WORDS for t in tokens)
    return any(w[:1].isupper() for w in answer.split())


def factor(question: str, answer: str) -> float:
    """The product of the rules' factors for one candidate (1.0: no rule applies)."""
    content = [w for w in words(answer) if w not in STOPWORDS]
    asked = set(words(question)) - STOPWORDS
    f = 1.0
    if not content or set(content) <= asked:
        f *= QUESTION_WORDS_FACTOR
    kind = asked_type(question)
    if kind is not None and not has_type(answer, kind):
        f *= TYPE_MISMATCH_FACTOR
    if len(answer.split()) == 1 and answer.islower():
        f *= LONE_LOWER_FACTOR
    return f


def question_sentence_similarity(embedder, question: str, context: str) -> tuple[list[tuple[int, int]], list[float]]:
    """The context's sentences and the bundled embedder's cosine similarity of each to the question
    (MiniLM was trained on question/passage pairs: a zero-shot "which sentence answers this")."""
    spans = sentence_spans(context)
    vectors = embedder.encode([question] + [context[s:e] for s, e in spans], normalize_embeddings=True)
    return spans, [float(x) for x in vectors[1:] @ vectors[0]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with a trained student/, named after devset articles")
    args = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    from distillqa.models import bundled_encoder
    from distillqa.student.reader import Reader

    embedder = SentenceTransformer(str(bundled_encoder()), device="cpu")
    print("| article | questions | oracle@1 | @5 | @20 | plain | rules | sentence (hard) | rules + sentence (hard) | rules + sentence (tau 20) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in args.runs:
        examples = squad_examples(load_squad(DEVSET / f"{run.name}.squad.json"))
        nbest = Reader.load(run).answer([e["question"] for e in examples], [e["context"] for e in examples], top_k=N_BEST)
        rows = []
        for e, answers in zip(examples, nbest):
            spans, sims = question_sentence_similarity(embedder, e["question"], e["context"])
            best_sim = max(sims, default=0.0)
            sent = [next((x for (s, t), x in zip(spans, sims) if s <= a.start < t + 1), best_sim) for a in answers]
            golds = [g["text"] for g in e["answers"]]
            f1 = [max(f1_score(a.text, g) for g in golds) for a in answers]
            rows.append((e["question"], answers, sent, best_sim, f1))

        def mean_f1(pick) -> float:
            return round(100 * statistics.mean(f[pick(q, a, s, b)] if a else 0.0 for q, a, s, b, f in rows), 1)

        def best_by(key):
            return lambda q, a, s, b: max(range(len(a)), key=lambda i: key(q, a[i], s[i], b)) if a else 0

        oracle = [round(100 * statistics.mean(max(f[:k], default=0.0) for *_, f in rows), 1) for k in (1, 5, 20)]
        cells = [
            mean_f1(best_by(lambda q, a, s, b: a.score)),
            mean_f1(best_by(lambda q, a, s, b: a.score * factor(q, a.text))),
            mean_f1(best_by(lambda q, a, s, b: (s >= b - 1e-9, a.score))),
            mean_f1(best_by(lambda q, a, s, b: (s >= b - 1e-9, a.score * factor(q, a.text)))),
            mean_f1(best_by(lambda q, a, s, b: a.score * factor(q, a.text) * math.exp(20 * (s - b)))),
        ]
        print(f"| {run.name} | {len(rows)} | " + " | ".join(map(str, oracle + cells)) + " |")


if __name__ == "__main__":
    main()
