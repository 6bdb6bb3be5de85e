"""Score distillation on real documents with human-written questions (../shared/devset).

For each article PDF the pipeline runs as a user would (ingest, chunk, generate, build-dataset,
train, index), then the student is scored on that article's crowd-written SQuAD questions:

- reader mode: each question with its gold paragraph as context (official SQuAD v1.1 EM/F1);
- end to end: the question alone, answered through retrieval + the student (`distillqa ask`),
  plus retrieval recall@k (a retrieved passage contains a gold answer).

Rows: the untrained student (fresh QA head); the distilled student per source of pairs (`qa`:
teacher-written pairs; `answer-first`: teacher questions for extracted answers, with the cloze
fallback; `span clozes`: the rule-based pairs for every span of every sentence, no teacher; and
the default, all of them); and the seed notebook's method reproduced with the same teacher and
student (teacher-written pairs with a reasoning, trained on "Context: <answer> Reasoning:
<reasoning>" instead of the source text).

Generation runs once per article in mode `both`; the `qa` and `answer-first` rows train on the
pairs of their own routes only. That is the same as running each mode alone, because mode
`both` makes exactly the requests of the two modes, seeded per chunk.

The devset questions are used only for scoring here: never in prompts or training data.

    .venv/bin/python benchmarks/devset.py [--articles geology ...] [--work runs/devset]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import time
from pathlib import Path

from distillqa.config import Config, load_config
from distillqa.io import read_jsonl, write_json, write_jsonl
from distillqa.layout import CHUNKS, DOCUMENTS, GENERATIONS, STUDENT
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.dataset.squad import load_squad
from distillqa.student.evaluate import score_reader
from distillqa.student.metrics import score_examples
from distillqa.dataset.squad import squad_examples
from distillqa.student.reader import Reader
from distillqa.student.reader import load_base_student
from distillqa.student.train import train_reader
from distillqa.teacher.backends import load_teacher
from distillqa.teacher.base import GenerationRequest

DEVSET = Path(__file__).resolve().parents[2] / "shared" / "devset"
# row -> (teacher routes kept, None = all; whether span clozes are added)
VARIANTS = {
    "qa": ({"teacher-qa"}, False),
    "answer-first": ({"answer-first", "cloze"}, False),
    "span clozes only (no teacher)": (set(), True),
    "default: both + span clozes": (None, True),
}
SEED_PROMPT = (
    "Generate 5-8 question-answer pairs from the following text. For each pair give the question, "
    "the answer and your reasoning. Answer in JSON: a list of objects with the keys "
    '"question", "answer" and "reasoning".\n\nText:\n{chunk}'
)
RECALL_K = 5


def pipeline(run: Run, cfg: Config, stages: list[str]) -> None:
    for name in stages:
        run.run_stage(STAGE_BY_NAME[name], cfg)


def route_variant(base: Run, name: str, routes: set[str] | None, span_clozes: bool, cfg: Config) -> Run:
    """A run folder sharing `base`'s documents and chunks, with only the pairs of `routes`."""
    cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"span_clozes": span_clozes})})
    run = Run(base.root.parent / re.sub(r"\W+", "-", name).strip("-"), quiet=True)
    run.root.mkdir(parents=True, exist_ok=True)
    run.setup_logging()
    for f in (DOCUMENTS, CHUNKS):
        shutil.copy(base.path(f), run.path(f))
    lines = read_jsonl(base.path(GENERATIONS))
    for line in lines:
        line["pairs"] = [p for p in line["pairs"] if routes is None or p["route"] in routes]
    write_jsonl(run.path(GENERATIONS), lines)
    pipeline(run, cfg, ["build-dataset", "train"])
    return run


def seed_variant(base: Run, cfg: Config) -> Run:
    """The seed notebook's method: trains on "Context: <answer> Reasoning: <reasoning>"."""
    run = Run(base.root.parent / "seed", quiet=True)
    run.root.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(cfg.teacher)
    chunks = read_jsonl(base.path(CHUNKS))
    requests = [
        GenerationRequest(
            messages=[{"role": "user", "content": SEED_PROMPT.format(chunk=c["text"])}],
            max_tokens=cfg.teacher.max_new_tokens,
            temperature=cfg.teacher.temperature,
            seed=cfg.teacher.seed + i,
        )
        for i, c in enumerate(chunks)
    ]
    results = teacher.generate(requests)
    teacher.close()
    paragraphs, failures = [], 0
    for i, result in enumerate(results):
        try:  # the seed parsed with json.loads and nothing else
            items = json.loads(result.text)
        except json.JSONDecodeError:
            failures += 1
            continue
        for j, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict) or not str(item.get("answer", "")).strip():
                continue
            answer = str(item["answer"]).strip()
            context = f"Context: {answer} Reasoning: {item.get('reasoning', '')}"
            paragraphs.append(
                {
                    "context": context,
                    "qas": [
                        {
                            "id": f"seed-{i}-{j}",
                            "question": str(item.get("question", "")),
                            "answers": [{"text": answer, "answer_start": len("Context: ")}],
                        }
                    ],
                }
            )
    squad = {"version": "1.1", "data": [{"title": "seed", "paragraphs": paragraphs}]}
    write_json(run.path("train.json"), squad)
    write_json(run.path("validation.json"), {"version": "1.1", "data": []})
    write_json(run.path("seed_summary.json"), {"chunks": len(chunks), "parse_failures": failures, "pairs": len(paragraphs)})
    if paragraphs:
        train_reader(run.path("train.json"), run.path("validation.json"), run.path(STUDENT), cfg.train, quiet=True)
    return run


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def end_to_end(base: Run, student: Path, gold: dict) -> dict:
    """Question alone: retrieval recall@k and the F1 of retrieval + the given student."""
    from distillqa.app.ask import Asker

    asker = Asker(base.root, model_dir=student)
    examples = squad_examples(gold)
    hits = 0
    predictions = {}
    for ex in examples:
        passages = [normalize(h.passage.text) for h in asker.index.search(ex["question"], RECALL_K)]
        golds = [normalize(a["text"]) for a in ex["answers"]]
        hits += any(g and g in p for p in passages for g in golds)
        answers = asker.ask(ex["question"], top_k=1)
        predictions[ex["id"]] = answers[0]["answer"] if answers else ""
    scores = score_examples(examples, predictions)
    return {"recall_at_k": round(100 * hits / max(1, len(examples)), 1), "e2e_f1": round(scores["f1"], 1)}


def bench_article(pdf: Path, work: Path, cfg: Config) -> dict:
    gold = load_squad(pdf.with_suffix(".squad.json"))
    examples = squad_examples(gold)
    base = Run(work / pdf.stem / "both", quiet=True)
    base.root.mkdir(parents=True, exist_ok=True)
    base.save_config(cfg)
    base.set_inputs([pdf])
    base.setup_logging()
    started = time.time()
    pipeline(base, cfg, ["ingest", "chunk", "generate", "build-dataset", "train", "index"])
    generate_seconds = base.manifest["stages"]["generate"]["seconds"]
    window = {"max_length": cfg.train.max_length, "doc_stride": cfg.train.doc_stride}

    rows: dict[str, dict] = {}
    model, tokenizer = load_base_student(cfg.train.student, cfg.train.seed)
    untrained = Reader(model, tokenizer, **window)
    rows["untrained student"] = score_reader(untrained, examples)[0]
    for name, (routes, span_clozes) in VARIANTS.items():
        default = routes is None and span_clozes == cfg.dataset.span_clozes
        run = base if default else route_variant(base, name, routes, span_clozes, cfg)
        kept = json.loads(run.path("dataset_summary.json").read_text())["kept"]
        row = score_reader(Reader.load(run.path(STUDENT), **window), examples)[0]
        rows[f"distilled: {name}"] = {**row, "pairs": kept, **end_to_end(base, run.path(STUDENT), gold)}
    seed = seed_variant(base, cfg)
    seed_summary = json.loads(seed.path("seed_summary.json").read_text())
    if seed.path(STUDENT).exists():
        rows["seed method"] = {**score_reader(Reader.load(seed.path(STUDENT), **window), examples)[0], "pairs": seed_summary["pairs"]}
    else:  # no parseable output at all: there is no student to score
        rows["seed method"] = {"exact_match": None, "f1": None, "n": len(examples), "pairs": 0}
    rows["seed method"]["parse_failures"] = f"{seed_summary['parse_failures']}/{seed_summary['chunks']}"
    return {"article": pdf.stem, "questions": len(examples), "generate_seconds": generate_seconds,
            "seconds": round(time.time() - started, 1), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", nargs="*", default=["geology", "1973_oil_crisis", "pharmacy"])
    parser.add_argument("--work", type=Path, default=Path("runs/devset"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--render", action="store_true", help="only print the table of WORK/devset_results.json")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads((args.work / "devset_results.json").read_text())["results"]))
        return
    if not DEVSET.is_dir():
        raise SystemExit(f"error: {DEVSET} not found: the devset must be beside the checkout")
    cfg = load_config(None, ["generate.mode=both", *args.overrides])
    results = []
    for article in args.articles:  # saved after each article, so a long run keeps what it measured
        results.append(bench_article(DEVSET / f"{article}.pdf", args.work, cfg))
        write_json(args.work / "devset_results.json", {"machine": machine(), "overrides": args.overrides, "results": results})
        print(render(results[-1:]), flush=True)
    print(render(results))


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def render(results: list[dict]) -> str:
    lines = [
        "| article | student | pairs | EM | F1 | recall@5 | e2e F1 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for name, row in res["rows"].items():
            if row.get("pairs") == 0:  # nothing to train on: no student, no score
                row = {**row, "exact_match": None, "f1": None}
            em, f1 = (f"{row[k]:.1f}" if row[k] is not None else "-" for k in ("exact_match", "f1"))
            lines.append(
                f"| {res['article']} ({res['questions']} q) | {name} | {row.get('pairs', '-')} | "
                f"{em} | {f1} | {row.get('recall_at_k', '-')} | {row.get('e2e_f1', '-')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
