"""Asking questions: of a run's documents (retrieve, then read) or of one given passage.

Without a context, the question goes to the run's passage index, the student reads the best
`max(retrieval.top_k, passages_per_answer × top_k)` passages in one batch (query-time settings
read from the run's config.yaml when the Asker loads, so changing them needs no new index), and
the `answer.n_best` spans of every passage are ranked together by `distillqa.student.ranking`:

    score = reader probability ** reader_weight × answer-type rules × (retrieval score / best) ** retrieval_weight
            × exp(sentence_sharpness × (similarity of the span's sentence to the question − best))

The reader's probability is normalised within one passage, so on its own it cannot say which
passage holds the answer (a random passage still has a "best" span). The question-sentence
similarity, from the index's own embedder, is comparable across passages: it picks the passage
and the sentence, the reader the span within it (on Geology: end-to-end F1 12.5 with the reader
and retrieval scores alone, 21.4 ranked; docs/benchmarks.md). Every factor is in [0, 1], so the
score stays readable. Identical answers (ignoring case, punctuation and spacing) from several
passages, and answers overlapping a better one in the same document, are shown once, with their
best score. A given passage (`--context`) is ranked the same way, without retrieval.

Every answer is a `records.AnswerRecord` as a dict (`{"answer", "score", "confidence", "document",
"page", "passage", "start", "end"}`, `passage[start:end] == answer`): `score` orders answers,
`confidence` is the score calibrated on the run's validation questions (RUN/calibration.json, the
`calibrate` stage). The CLI's `--json` and the server's `POST /ask` return a `records.AskResult`:
`{"found", "not_found_below", "answers"}`, `found` false when the best answer's confidence is
below `answer.not_found_below`. `--questions FILE` answers a file of questions (`ask_batch`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from distillqa.config import Config
from distillqa.errors import DistillqaError
from distillqa.layout import INDEX, MANIFEST, RunFolder
from distillqa.records import AnswerRecord, ask_result, confidence_words
from distillqa.retrieval.index import META, Hit, PassageIndex
from distillqa.student.calibration import Calibrator, load_calibrator
from distillqa.student.ranking import AnswerRanker, CachedEncoder
from distillqa.text import words

if TYPE_CHECKING:
    from rich.text import Text

    from distillqa.student.features import Answer
    from distillqa.student.reader import Reader

SNIPPET_CHARS = 300  # passage shown on each side of an answer in the terminal


def check_question(question: str) -> str:
    question = question.strip()
    if not question:
        raise DistillqaError("the question is empty: ask something, e.g. distillqa ask RUN \"Who built the harbour light?\"")
    return question


def _answer_key(text: str) -> str:
    """Answers that differ only in case, punctuation or spacing are the same answer."""
    return " ".join(words(text)) or text.strip()


def _record(span: Answer, score: float, confidence: float, document: str | None, page: int | None, passage: str) -> dict:
    return AnswerRecord(
        answer=span.text, score=round(float(score), 4), confidence=round(float(confidence), 4), document=document,
        page=page, passage=passage, start=span.start, end=span.end,
    ).model_dump()


@dataclass(frozen=True)
class _Ranked:
    """A ranked answer before it becomes a record: its span, where it lies in its source text,
    and the record's other fields (made only for the few answers kept)."""

    score: float
    span: Answer
    source: str  # doc_id, or "" for a given context
    start: int  # character offsets in that source's text
    end: int
    document: str | None
    passage: str

    def record(self, page: int | None, calibrator: Calibrator) -> dict:
        return _record(self.span, self.score, calibrator(self.score), self.document, page, self.passage)


def dedupe(candidates: list[_Ranked], top_k: int) -> list[_Ranked]:
    """The `top_k` best distinct answers, best first. An answer is dropped when a better one has
    the same text (ignoring case, punctuation and spacing) or overlaps it in the same text: a
    reader proposes "Margaret Hale" and "engineer Margaret Hale" as two answers, but they are one."""
    texts: set[str] = set()
    kept: list[_Ranked] = []
    for c in sorted(candidates, key=lambda c: -c.score):
        key = _answer_key(c.span.text)
        if not c.span.text.strip() or key in texts:
            continue
        if any(k.source == c.source and k.start < c.end and c.start < k.end for k in kept):
            continue
        texts.add(key)
        kept.append(c)
        if len(kept) == top_k:
            break
    return kept


def rank_answers(
    question: str,
    hits: Sequence[Hit],
    spans: Sequence[Sequence[Answer]],
    top_k: int,
    page_of: Callable[[str, int], int | None],
    ranker: AnswerRanker,
    calibrator: Calibrator | None = None,
) -> list[dict]:
    """Rank every passage's candidates together (see the module docstring) and dedupe.

    `spans[i]` are the reader's answers for `hits[i].passage`; `page_of(doc_id, offset)` gives the
    page of the answer itself, which can be later than the page its passage starts on.
    """
    if not hits:
        return []
    best = max(h.score for h in hits)
    power = ranker.cfg.retrieval_weight
    weights = [(h.score / best) ** power if best > 0 else 1.0 for h in hits]
    candidates = []
    for r in ranker.rank(question, [h.passage.text for h in hits], spans, weights):
        passage, span = hits[r.context].passage, r.answer
        start, end = passage.start + span.start, passage.start + span.end  # in the document's text
        candidates.append(_Ranked(r.score, span, passage.doc_id, start, end, passage.document, passage.text))
    calibrator = calibrator or Calibrator()
    return [c.record(page_of(c.source, c.start), calibrator) for c in dedupe(candidates, top_k)]


class Asker:
    """A run's passage index and student reader, loaded once, answering questions."""

    def __init__(
        self,
        run_dir: Path,
        device: str | None = None,
        model_dir: Path | None = None,
        cfg: Config | None = None,
        calibrator: Calibrator | None = None,
    ):
        """`model_dir` reads with another student than the run's own (benchmarks compare several);
        `cfg` replaces the run's saved config (`evaluate --set`); `calibrator` the run's own
        (RUN/calibration.json; with another student, the confidence is the score unless given)."""
        from distillqa.student.reader import load_reader, resolve_model_dir

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise DistillqaError(f"{self.run_dir}: no such run folder")
        index_dir = self.run_dir / INDEX
        if not (index_dir / META).is_file():
            raise DistillqaError(f"{index_dir}: no passage index: run `distillqa index {self.run_dir}` first")
        self.model_dir = resolve_model_dir(self.run_dir if model_dir is None else Path(model_dir))
        self.index = PassageIndex.load(index_dir)
        # Query-time settings (retrieval.top_k and the like, answer.*) come from the run's
        # config.yaml as it is now, not from when the index was built; read only, never saved back.
        cfg = cfg or RunFolder(self.run_dir).saved_config()
        self.retrieval = cfg.retrieval
        self.not_found_below = cfg.answer.not_found_below
        if calibrator is None:
            calibrator = load_calibrator(self.run_dir, "open", cfg.answer.people_correction) if model_dir is None else Calibrator()
        self.calibrator = calibrator
        # questions (for the search) and sentences (for the ranker) are embedded by the index's
        # query encoder, loaded on first use, and remembered: the ranker re-embeds the question
        self.embed = CachedEncoder(lambda texts: self.index.query_encoder.encode(texts))
        self.ranker = AnswerRanker(cfg.answer, self.embed)
        self.reader: Reader = load_reader(self.run_dir if model_dir is None else self.model_dir, cfg.answer.reader_runtime, device)
        # One question at a time: HF tokenizers raise "Already borrowed" when two threads share one.
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return f"{self.run_dir.name}/{self.model_dir.name}"

    def warm_up(self) -> None:
        """Load the embedder and run both models once, so the first real question is not slow."""
        self.ask("warm up", top_k=1)

    def ask(self, question: str, top_k: int = 3) -> list[dict]:
        """The `top_k` best distinct answers from the run's documents, best first."""
        return self.ask_many([question], [top_k])[0]

    def ask_many(self, questions: Sequence[str], top_k: Sequence[int]) -> list[list[dict]]:
        """`ask` for several questions at once, each with its own `top_k`: the questions are
        embedded in one call and every (question, passage) pair is read in one reader batch, so
        questions that arrive together (`serve`) cost less than one after another."""
        questions = [check_question(q) for q in questions]
        cfg = self.retrieval
        n_best = max([*top_k, self.ranker.cfg.n_best])
        with self._lock:
            vectors = self.embed(questions)
            hits = [
                self.index.search(q, max(cfg.top_k, cfg.passages_per_answer * k), query_vector=v, candidates=cfg.candidates, rrf_k=cfg.rrf_k, ef_search=cfg.hnsw_ef_search)
                for q, k, v in zip(questions, top_k, vectors)
            ]
            pairs = [(q, h.passage.text) for q, found in zip(questions, hits) for h in found]
            spans = self.reader.answer([q for q, _ in pairs], [c for _, c in pairs], top_k=n_best)
            answers, at = [], 0
            for q, k, found in zip(questions, top_k, hits):
                answers.append(rank_answers(q, found, spans[at : at + len(found)], k, self.index.page_of, self.ranker, self.calibrator))
                at += len(found)
            return answers


def score_open(asker: Asker, examples: list[dict], quiet: bool = True) -> tuple[dict, dict[str, str]]:
    """Open-mode totals and answers on flattened SQuAD examples: each question is asked alone, as a
    user asks it (retrieval + reader over the run's documents), and its top answer is scored
    against the gold answers. The gold paragraph is never shown, so this measures what a user
    sees, retrieval misses included. A blank question gets no answer (it scores 0)."""
    import time

    from distillqa.console import track
    from distillqa.student.metrics import score_examples

    predictions: dict[str, str] = {}
    started = time.perf_counter()
    for e in track(examples, len(examples), "open mode", quiet):
        answers = asker.ask(e["question"], top_k=1) if e["question"].strip() else []
        predictions[e["id"]] = answers[0]["answer"] if answers else ""
    ms = 1000 * (time.perf_counter() - started) / max(1, len(examples))
    return {**score_examples(examples, predictions), "ms_per_question": round(ms, 2)}, predictions


def evaluate_open(
    run_dir: Path, squad_path: Path, predictions_path: Path | None = None, quiet: bool = True, cfg: Config | None = None
) -> dict:
    """`distillqa evaluate RUN DATA --open`: score a SQuAD v1.1 file with questions alone over the
    run's index, optionally writing `{id: answer text}`. Returns the totals and `"mode": "open"`.
    `cfg` replaces the run's saved config (query-time settings)."""
    from distillqa.student.evaluate import (
        check_predictions_path,
        load_examples,
        write_predictions,
    )

    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).is_file():
        raise DistillqaError(f"{run_dir}: --open needs a run folder with an index (it searches the run's documents), not a model folder")
    check_predictions_path(predictions_path)
    examples = load_examples(squad_path)  # a bad file fails before the models load
    scores, predictions = score_open(Asker(run_dir, cfg=cfg), examples, quiet)
    if predictions_path is not None:
        write_predictions(predictions_path, predictions)
    return {**scores, "mode": "open"}


def read_context(target: Path, question: str, context: str, top_k: int = 3) -> list[dict]:
    """Answers found in one given passage by the model in `target` (a run or model folder), chosen
    as the run's `answer` settings say (the defaults for a model folder)."""
    from distillqa.student.evaluate import load_ranker
    from distillqa.student.reader import load_reader

    question = check_question(question)
    if not context.strip():
        raise DistillqaError("the context is empty: give a passage with --context or --context-file")
    cfg = RunFolder(Path(target)).saved_config()
    reader = load_reader(target, cfg.answer.reader_runtime)
    ranker = load_ranker(cfg)
    spans = reader.answer([question], [context], top_k=max(top_k, ranker.cfg.n_best))[0]
    ranked = ranker.rank(question, [context], [spans])
    candidates = [_Ranked(r.score, r.answer, "", r.answer.start, r.answer.end, None, context) for r in ranked]
    calibrator = load_calibrator(Path(target), "context", cfg.answer.people_correction)  # unfitted for a model folder
    return [c.record(None, calibrator) for c in dedupe(candidates, top_k)]


def _read_context_file(path: Path) -> str:
    if not path.is_file():
        raise DistillqaError(f"{path}: context file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DistillqaError(f"{path}: the context file is not UTF-8 text") from None


def ask_command(
    target: Path,
    question: str | None,
    context: str | None = None,
    context_file: Path | None = None,
    top_k: int = 3,
    as_json: bool = False,
    questions_file: Path | None = None,
    output: Path | None = None,
) -> None:
    """`distillqa ask`: answer from a given passage, or from the run's documents via the index;
    with `questions_file`, every question in it (`ask_batch`)."""
    if questions_file is not None:
        if question is not None or context is not None or context_file is not None:
            raise DistillqaError("--questions answers a file of questions over the run's documents: give no QUESTION, --context or --context-file with it")
        ask_batch(target, questions_file, output, top_k)
        return
    if output is not None:
        raise DistillqaError("--output writes the answers of --questions FILE: give one, or drop --output")
    if question is None:
        raise DistillqaError("give a QUESTION, or --questions FILE")
    question = check_question(question)
    if context is not None and context_file is not None:
        raise DistillqaError("give the passage with --context or --context-file, not both")
    if context_file is not None:
        context = _read_context_file(context_file)
    if context is not None:
        answers = read_context(target, question, context, top_k)
        not_found_below = RunFolder(Path(target)).saved_config().answer.not_found_below
    else:
        asker = Asker(target)
        answers, not_found_below = asker.ask(question, top_k), asker.not_found_below
    result = ask_result(answers, not_found_below)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print_answers(result)


def read_questions(path: Path) -> list[dict]:
    """`{"id", "question"}` per question of a batch file: JSONL (`{"question": ..., "id": ...}`,
    id optional) when its name ends in .jsonl, else one question per line; blank lines skipped.
    Ids default to the line number."""
    if not path.is_file():
        raise DistillqaError(f"{path}: questions file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DistillqaError(f"{path}: the questions file is not UTF-8 text") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DistillqaError(f"{path}: line {number} is not JSON ({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("question"), str) or not record["question"].strip():
                raise DistillqaError(f'{path}: line {number} needs a non-empty "question" string')
            out.append({"id": str(record.get("id", number)), "question": record["question"].strip()})
        else:
            out.append({"id": str(number), "question": line.strip()})
    if not out:
        raise DistillqaError(f"{path}: no questions in the file")
    return out


BATCH_COLUMNS = ("id", "question", "found", "rank", "answer", "confidence", "score", "document", "page")


def ask_batch(run_dir: Path, questions_file: Path, output: Path | None, top_k: int = 1, batch_size: int = 16) -> None:
    """`distillqa ask RUN --questions FILE [--output OUT]`: answer every question of the file
    over the run's documents, `batch_size` at a time (`Asker.ask_many`), and write JSONL (one
    `AskResult` per question, with its id and question) or, for an OUT ending in .csv, one row
    per answer (BATCH_COLUMNS; a question without answers gets one row with an empty answer).
    Without OUT, JSONL goes to stdout. The file appears only once every question is answered."""
    import csv
    import io
    import sys

    from distillqa.console import track_batches
    from distillqa.io import atomic_open

    if output is not None and (output.is_dir() or output.suffix not in (".jsonl", ".csv")):
        raise DistillqaError(f"{output}: --output must be a file ending in .jsonl or .csv")
    questions = read_questions(questions_file)  # a bad file fails before the models load
    asker = Asker(run_dir)
    results = []
    for batch in track_batches(questions, batch_size, "questions", quiet=output is None):
        for q, answers in zip(batch, asker.ask_many([q["question"] for q in batch], [top_k] * len(batch))):
            results.append({**q, **ask_result(answers, asker.not_found_below)})
    text = io.StringIO()
    if output is not None and output.suffix == ".csv":
        writer = csv.DictWriter(text, BATCH_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            for rank, a in enumerate(r["answers"] or [{}], start=1):
                writer.writerow({"id": r["id"], "question": r["question"], "found": r["found"], "rank": rank if a else "", **a})
    else:
        text.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if output is None:
        sys.stdout.write(text.getvalue())
        return
    with atomic_open(output) as f:
        f.write(text.getvalue())
    found = sum(r["found"] for r in results)
    print(f"{len(results)} questions answered ({found} found in the documents) -> {output}")


def print_answers(result: dict) -> None:
    """Answers with confidence, citation and the passage around the answer, highlighted (stdout).
    When the best is below `not_found_below`, says so first and shows the answers as guesses."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    answers = result["answers"]
    if not answers:
        console.print("No answer found.")
        return
    if not result["found"]:
        console.print(Text("The documents do not seem to answer this question. Best guesses:", style="bold"))
        console.print()
    for n, a in enumerate(answers, start=1):
        words_, colour = confidence_words(a["confidence"], result["not_found_below"])
        head = Text.assemble((f"{n}. ", "bold"), (a["answer"], "bold green" if result["found"] else "bold"))
        head.append(f"  {words_} ({a['confidence']:.0%})", style=colour)
        if a["document"] is not None:
            where = a["document"] + (f", page {a['page']}" if a["page"] is not None else "")
            head.append(f"  {where}", style="cyan")
        console.print(head)
        console.print(_snippet(a["passage"], a["start"], a["end"]))
        console.print()


def _snippet(passage: str, start: int, end: int) -> Text:
    """The passage around [start, end) with the answer highlighted; long sides are cut at a space."""
    from rich.text import Text

    left = max(0, start - SNIPPET_CHARS)
    right = min(len(passage), end + SNIPPET_CHARS)
    if left > 0:
        left = passage.find(" ", left, start) + 1 or left
    if right < len(passage):
        cut = passage.rfind(" ", end, right)
        right = cut if cut > 0 else right
    text = Text("   " + ("…" if left > 0 else ""), style="dim")
    text.append(passage[left:start], style="default")
    text.append(passage[start:end], style="bold black on yellow")
    text.append(passage[end:right], style="default")
    text.append("…" if right < len(passage) else "", style="dim")
    return text
