"""Score configurations of the pipeline on real articles with human questions (../shared/devset).

Each configuration ("variant": a name and config overrides) runs as a user would run it on each
devset article PDF (ingest, chunk, generate, build-dataset, train), once per training seed, and
its student is scored on the article's crowd-written SQuAD questions:

- reader mode (question + gold paragraph): F1/EM of the reader's first span ("plain") and of the
  answer the product gives (the `answer` settings' ranking, `distillqa.student.ranking`);
- end to end (question alone: retrieval over the article + the student, what `ask` answers);
- the shape of its training questions: median words, and the share of their words found in
  their passage (people's devset questions: median 10 words, 67%).

Generation and the index are made once per article in WORK/ARTICLE/base and shared by every
variant whose teacher/generate settings are the defaults'. Results accumulate in
WORK/devset_results.json, one entry per variant; `--render` prints the table: per article the
mean over seeds and the range, and the question-weighted mean over the articles.

Variants "untrained" (the fresh QA head training starts from) and "seed-method" (the seed
notebook: teacher pairs with a reasoning, trained on "Context: <answer> Reasoning: ...") need
no overrides. For the QA-trained-student study, `{qa_reader}` in an override stands for a reader
trained on the human questions of the *other* devset articles (leave one article out; for this
benchmark only, never shipped), and the variant "qa-reader" scores that reader unadapted.

The devset questions are used only for scoring (and, leave-one-out, to make the QA-trained
starting point): never in prompts, defaults or the pipeline's training data.

    .venv/bin/python benchmarks/devset.py --variant defaults
    .venv/bin/python benchmarks/devset.py --variant words --set questions.span_answers=words
    .venv/bin/python benchmarks/devset.py --variant qa-adapt --set 'train.student={qa_reader}' --set train.learning_rate=3e-5
    .venv/bin/python benchmarks/devset.py --render
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

from distillqa.config import Config, load_config
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.io import read_json, read_jsonl, write_json
from distillqa.layout import CHUNKS, DATASET_SUMMARY, DOCUMENTS, GENERATIONS, STUDENT, TEACHER_CACHE
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.student.evaluate import load_ranker, score_reader
from distillqa.student.reader import Reader, load_base_student
from distillqa.text import words

DEVSET = Path(__file__).resolve().parents[2] / "shared" / "devset"
ARTICLES = ["geology", "1973_oil_crisis", "pharmacy"]
SEEDS = [42, 43]
RESULTS = "devset_results.json"
PLAIN = ["answer.type_rules=false", "answer.sentence_sharpness=0"]  # the reader's first span
SEED_PROMPT = (
    "Generate 5-8 question-answer pairs from the following text. For each pair give the question, "
    "the answer and your reasoning. Answer in JSON: a list of objects with the keys "
    '"question", "answer" and "reasoning".\n\nText:\n{chunk}'
)


def question_shape(squad_file: Path) -> dict:
    """Median words of a SQuAD file's questions and the share of their words found in their passage."""
    lengths, found, total = [], 0, 0
    for e in squad_examples(load_squad(squad_file)):
        q = words(e["question"])
        passage = set(words(e["context"]))
        lengths.append(len(q))
        found += sum(w in passage for w in q)
        total += len(q)
    return {"question_words": statistics.median(lengths) if lengths else 0, "in_passage": round(100 * found / max(1, total), 1)}


def base_run(article: str, work: Path, cfg: Config, adopt: Path | None = None) -> Run:
    """WORK/ARTICLE/base: ingest, chunk, generate and index with `cfg` (made once); the teacher
    output of ADOPT/ARTICLE's runs is reused wherever it matches (`adopt_teacher_cache`)."""
    run = Run(work / article / "base", quiet=True)
    run.root.mkdir(parents=True, exist_ok=True)
    run.save_config(cfg)
    run.set_inputs([DEVSET / f"{article}.pdf"])
    run.setup_logging()
    for name in ("ingest", "chunk", "generate", "index"):
        if name == "generate" and adopt is not None:
            adopt_teacher_cache(run, adopt / article)
        run.run_stage(STAGE_BY_NAME[name], cfg)
    return run


def adopt_teacher_cache(run: Run, earlier: Path) -> None:
    """Add the teacher caches of the runs under `earlier` to this run's (minutes of teacher time
    per article): the cache keys (`distillqa.teacher.cache`) decide which chunks match."""
    ours = run.path(TEACHER_CACHE)
    have = ours.read_bytes() if ours.exists() else b""
    with open(ours, "ab") as f:
        for cache in sorted(earlier.rglob(TEACHER_CACHE)):
            for line in cache.read_bytes().splitlines(keepends=True):
                if line.endswith(b"\n") and line not in have:
                    f.write(line)


def variant_run(base: Run, folder: Path, cfg: Config) -> Run:
    """A run folder starting from `base`'s documents, chunks and generations; stages whose
    settings differ from base's rerun, the rest are skipped as up to date."""
    run = Run(folder, quiet=True)
    if not run.path(GENERATIONS).exists():
        run.root.mkdir(parents=True, exist_ok=True)
        for name in (DOCUMENTS, CHUNKS, GENERATIONS, "manifest.json"):
            shutil.copy(base.path(name), run.path(name))
        manifest = run.manifest
        manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in ("ingest", "chunk", "generate")}
        run.save_manifest(manifest)
    run.save_config(cfg)
    run.setup_logging()
    for name in ("ingest", "chunk", "generate", "build-dataset", "train"):
        run.run_stage(STAGE_BY_NAME[name], cfg)
    return run


def qa_reader(article: str, work: Path, cfg: Config) -> Path:
    """A reader trained on the human questions of the other devset articles (leave one out)."""
    from distillqa.student.train import train_reader

    out = work / "qa-reader" / article
    if not (out / "student" / "config.json").is_file():
        others = [load_squad(DEVSET / f"{a}.squad.json") for a in ARTICLES if a != article]
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "train.json", {"version": "1.1", "data": [d for o in others for d in o["data"]]})
        write_json(out / "validation.json", {"version": "1.1", "data": []})
        train_reader(out / "train.json", out / "validation.json", out / "student", cfg.train, quiet=True)
    return out / "student"


def seed_method(base: Run, folder: Path, cfg: Config) -> Path | None:
    """The seed notebook's method (see the module docstring); None when no output parsed."""
    from distillqa.student.train import train_reader
    from distillqa.teacher.backends import load_teacher
    from distillqa.teacher.base import GenerationRequest

    folder.mkdir(parents=True, exist_ok=True)
    chunks = read_jsonl(base.path(CHUNKS))
    teacher = load_teacher(cfg.teacher)
    results = teacher.generate(
        [
            GenerationRequest(
                messages=[{"role": "user", "content": SEED_PROMPT.format(chunk=c["text"])}],
                max_tokens=cfg.teacher.max_new_tokens,
                temperature=cfg.teacher.temperature,
                seed=cfg.teacher.seed + i,
            )
            for i, c in enumerate(chunks)
        ]
    )
    teacher.close()
    paragraphs = []
    for i, result in enumerate(results):
        try:  # the seed parsed with json.loads and nothing else
            items = json.loads(result.text)
        except json.JSONDecodeError:
            continue
        for j, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and str(item.get("answer", "")).strip():
                answer = str(item["answer"]).strip()
                paragraphs.append(
                    {
                        "context": f"Context: {answer} Reasoning: {item.get('reasoning', '')}",
                        "qas": [{"id": f"seed-{i}-{j}", "question": str(item.get("question", "")),
                                 "answers": [{"text": answer, "answer_start": len("Context: ")}]}],
                    }
                )
    if not paragraphs:
        return None
    write_json(folder / "train.json", {"version": "1.1", "data": [{"title": "seed", "paragraphs": paragraphs}]})
    write_json(folder / "validation.json", {"version": "1.1", "data": []})
    train_reader(folder / "train.json", folder / "validation.json", folder / STUDENT, cfg.train, quiet=True)
    return folder / STUDENT


def score(article: str, reader: Reader, cfg: Config, base: Run, model_dir: Path | None) -> dict:
    """Reader-mode F1/EM, plain and ranked, and end-to-end F1 of one student."""
    from distillqa.app.ask import Asker, score_open

    examples = squad_examples(load_squad(DEVSET / f"{article}.squad.json"))
    plain, _ = score_reader(reader, examples)
    ranked, _ = score_reader(reader, examples, ranker=load_ranker(cfg))
    row = {"questions": len(examples), "f1_plain": plain["f1"], "em_plain": plain["exact_match"],
           "f1": ranked["f1"], "em": ranked["exact_match"]}
    if model_dir is not None:
        row["e2e_f1"] = score_open(Asker(base.root, model_dir=model_dir, cfg=cfg), examples)[0]["f1"]
    return row


def run_variant(
    name: str, overrides: list[str], articles: list[str], seeds: list[int], work: Path, adopt: Path | None
) -> None:
    """Every article x seed of one variant, each row saved as soon as it is measured (`save_row`),
    so a run stopped halfway keeps what it measured."""
    base_cfg = load_config(None, [])
    for article in articles:
        base = base_run(article, work, base_cfg, adopt)
        for seed in seeds:
            cfg = load_config(None, [o.replace("{qa_reader}", str(qa_reader(article, work, base_cfg))) for o in overrides] + [f"train.seed={seed}"])
            started = time.time()
            if name in ("untrained", "qa-reader"):
                if name == "untrained":
                    model, tokenizer = load_base_student(cfg.train.student, seed)
                    reader, model_dir = Reader(model, tokenizer), None
                else:
                    model_dir = qa_reader(article, work, base_cfg)
                    reader = Reader.load(model_dir)
                row = score(article, reader, cfg, base, model_dir)
            elif name == "seed-method":
                model_dir = seed_method(base, work / article / name / f"s{seed}", cfg)
                row = score(article, Reader.load(model_dir), cfg, base, model_dir) if model_dir else {"f1": None}
            else:
                run = variant_run(base, work / article / name / f"s{seed}", cfg)
                summary = read_json(run.path(DATASET_SUMMARY))
                row = score(article, Reader.load(run.path(STUDENT)), cfg, base, run.path(STUDENT))
                row.update(
                    pairs=summary["kept"],
                    pairs_per_route=summary["kept_per_route"],
                    train_seconds=run.manifest["stages"]["train"].get("seconds"),
                    **question_shape(run.path("train.json")),
                )
            row["seconds"] = round(time.time() - started, 1)
            save_row(work / RESULTS, name, overrides, article, seed, row)
            print(f"{name} {article} seed {seed}: {json.dumps(row)}", flush=True)


def save_row(path: Path, name: str, overrides: list[str], article: str, seed: int, row: dict) -> None:
    """Add one article x seed row of a variant to the results file (re-read first: another
    variant may be running beside this one)."""
    results = read_json(path) if path.is_file() else {"machine": machine(), "variants": {}}
    entry = results["variants"].setdefault(name, {"overrides": overrides, "runs": {}})
    entry["overrides"] = overrides
    entry["runs"].setdefault(article, {})[str(seed)] = row
    write_json(path, results)


def _mean_range(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.mean(values)
    if min(values) == max(values):
        return f"{mean:g}" if float(mean).is_integer() else f"{mean:.1f}"
    return f"{mean:.1f} ({min(values):.1f}-{max(values):.1f})"


def render(results: dict) -> str:
    """One row per variant and article, then the question-weighted mean over articles per seed."""
    cols = ["f1_plain", "f1", "em", "e2e_f1"]
    lines = [
        "| variant | article | pairs | q words | q words in passage % | reader F1 (first span) | reader F1 | reader EM | end-to-end F1 | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in results["variants"].items():
        runs = entry["runs"]
        for article, by_seed in runs.items():
            rows = list(by_seed.values())
            cells = [_mean_range([r.get(c) for r in rows]) for c in cols]
            shape = [_mean_range([r.get(k) for r in rows]) for k in ("pairs", "question_words", "in_passage")]
            lines.append(f"| {name} | {article} ({rows[0].get('questions', '?')} q) | " + " | ".join(shape + cells) + f" | {_mean_range([r.get('train_seconds') for r in rows])} |")
        seeds = sorted({s for by_seed in runs.values() for s in by_seed})
        if len(runs) > 1:
            weighted = []
            for c in cols:
                per_seed = []
                for s in seeds:
                    rows = [by_seed[s] for by_seed in runs.values() if s in by_seed and by_seed[s].get(c) is not None]
                    if len(rows) == len(runs):
                        per_seed.append(sum(r[c] * r["questions"] for r in rows) / sum(r["questions"] for r in rows))
                weighted.append(_mean_range(per_seed))
            lines.append(f"| **{name}** | **question-weighted** | | | | " + " | ".join(f"**{w}**" for w in weighted) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", help="name of the configuration (see the module docstring for special names)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--articles", nargs="*", default=ARTICLES)
    parser.add_argument("--seeds", nargs="*", type=int, default=SEEDS)
    parser.add_argument("--work", type=Path, default=Path("runs/devset"))
    parser.add_argument("--adopt", type=Path, help="folder of earlier runs named after the articles whose teacher output to reuse")
    parser.add_argument("--render", action="store_true", help="only print the table of WORK/devset_results.json")
    args = parser.parse_args()
    path = args.work / RESULTS
    if not args.render:
        if not args.variant:
            parser.error("give --variant NAME (or --render)")
        if not DEVSET.is_dir():
            raise SystemExit(f"error: {DEVSET} not found: the devset must be beside the checkout")
        run_variant(args.variant, args.overrides, args.articles, args.seeds, args.work, args.adopt)
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: nothing measured yet")
    print(render(read_json(path)))


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or 'cpu'}, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
