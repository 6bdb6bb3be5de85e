"""What compression bought: the student in each runtime, and the teacher, on the same questions.

    .venv/bin/python benchmarks/devset.py --variant defaults --seeds 42     # the students (once)
    .venv/bin/python benchmarks/student_speed.py [--work runs/devset] [--variant defaults] [--seed 42]

Rows: the student (trained on each devset article by `benchmarks/devset.py`) through PyTorch fp32,
ONNX fp32 and ONNX int8 (`distillqa.student.export`, as `distillqa export` writes them), three
other int8 quantisations that were tried (`VARIANTS`: more of the graph in int8), and the
bundled teacher (SmolLM2-135M-Instruct Q4_1 through llama.cpp, `load_teacher` as `generate`
uses it, asked for a short answer copied from the passages). Columns:

- params and MB on disk (the weights file each runtime reads);
- latency of one question with its 5 best passages (the article's index, as `ask` retrieves them):
  the student's `Reader.answer` with the answer settings' n_best, the teacher's answer; p50/p95
  over `--timed` questions (`--teacher-timed` for the teacher), with 1 thread and with all cores;
  the student's runtimes take turns on each question, so drift in the machine's speed moves all
  of them alike;
- questions/s at batch 32: 32 questions x 5 passages in one `Reader.answer` call (all cores); the
  teacher reads one prompt at a time (llama-cpp-python has no batch API), so its figure is 32
  questions one after another;
- devset F1 (reader mode: each human question with its gold paragraph, the answer the product
  gives, i.e. ranked by `distillqa.student.ranking`), question-weighted over the three articles,
  and for the exports the share of questions whose answer is the PyTorch answer.

Results go to WORK/student_speed.json; the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from distillqa.config import Config, TeacherConfig
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.io import write_json
from distillqa.layout import STUDENT, STUDENT_ONNX
from distillqa.models import bundled_teacher_gguf
from distillqa.retrieval.index import PassageIndex
from distillqa.runtime import usable_cores
from distillqa.student.evaluate import load_ranker, score_reader
from distillqa.student.export import export_student, quantize_int8
from distillqa.student.metrics import score_examples
from distillqa.student.reader import ONNX_FILES, WEIGHTS_FILE, OnnxReader, Reader
from distillqa.teacher.backends import load_teacher
from distillqa.teacher.base import GenerationRequest

DEVSET = Path(__file__).resolve().parents[2] / "shared" / "devset"
ARTICLES = ["geology", "1973_oil_crisis", "pharmacy"]
PASSAGES = 5
BATCH = 32
RUNTIMES = {"torch": "student, PyTorch fp32", "onnx": "student, ONNX fp32", "onnx-int8": "student, ONNX int8 (the default: every op, per tensor)"}
# other int8 quantisations of the fp32 export: (row name, op types (None: all), per channel)
VARIANTS = {
    "int8-per-channel": ("student, ONNX int8, every op, per channel", None, True),
    "int8-matmul": ("student, ONNX int8, MatMuls only (attention fp32), per channel", ("MatMul",), True),
    "int8-matmul-embeddings": ("student, ONNX int8, MatMuls + embeddings, per channel", ("MatMul", "EmbedLayerNormalization"), True),
}
TEACHER_SYSTEM = "You answer questions about a text. Reply with the answer only: a few words copied from the text."


def teacher_request(question: str, passages: list[str]) -> GenerationRequest:
    text = "\n\n".join(passages)
    return GenerationRequest(
        messages=[{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": f"Text:\n{text}\n\nQuestion: {question}"}],
        max_tokens=24,
        temperature=0.0,
        stop=["\n"],
    )


def percentiles(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(0.95 * len(ms)))]


def timed(fn: Callable[[], object], n: int, warm_up: int = 2) -> list[float]:
    """Milliseconds of each of `n` calls of fn, after `warm_up` untimed ones."""
    for _ in range(warm_up):
        fn()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - started))
    return out


def questions_with_passages(work: Path, articles: list[str]) -> list[tuple[str, list[str]]]:
    """Every devset question with the 5 best passages of its article's index, articles interleaved."""
    per_article = []
    for article in articles:
        index = PassageIndex.load(work / article / "base" / "index")
        examples = squad_examples(load_squad(DEVSET / f"{article}.squad.json"))
        per_article.append([(e["question"], [h.passage.text for h in index.search(e["question"], PASSAGES)]) for e in examples])
    return [item for group in zip(*per_article) for item in group]


def student_rows(students: dict[str, Path], items: list[tuple[str, list[str]]], cfg: Config, n_timed: int) -> list[dict]:
    """One row per runtime. Timings are interleaved (each question read by every runtime in turn),
    so a machine that speeds up or slows down meanwhile (a shared VM does) moves all rows alike."""
    n_best = cfg.answer.n_best
    runtimes = [*RUNTIMES, *VARIANTS]
    first = next(iter(students.values()))

    def onnx_file(runtime: str, model_dir: Path) -> Path:
        return model_dir.parent / STUDENT_ONNX / (ONNX_FILES[runtime] if runtime in ONNX_FILES else f"{runtime}.onnx")

    def load(runtime: str, model_dir: Path, threads: int | None) -> Reader:
        if runtime == "torch":
            return Reader.load(model_dir, device="cpu")
        return OnnxReader(onnx_file(runtime, model_dir), runtime, threads)

    for runtime in VARIANTS:
        for model_dir in students.values():
            quantize_int8(onnx_file("onnx", model_dir), onnx_file(runtime, model_dir), *VARIANTS[runtime][1:])
    params = round(sum(p.numel() for p in Reader.load(first, device="cpu").model.parameters()) / 1e6, 1)
    rows = {
        rt: {
            "model": RUNTIMES.get(rt) or VARIANTS[rt][0],
            "params_m": params,
            "mb": round((first / WEIGHTS_FILE if rt == "torch" else onnx_file(rt, first)).stat().st_size / 1e6, 1),
        }
        for rt in runtimes
    }
    for label, threads in (("1 thread", 1), ("all cores", None)):
        torch.set_num_threads(threads or usable_cores())  # torch's threads; onnxruntime's are per session
        readers = {rt: load(rt, first, threads) for rt in runtimes}
        ms: dict[str, list[float]] = {rt: [] for rt in runtimes}
        for i, (question, passages) in enumerate(items[: n_timed + 2]):
            for rt, reader in readers.items():
                started = time.perf_counter()
                reader.answer([question] * len(passages), passages, top_k=n_best)
                if i >= 2:  # the first two are warm-up
                    ms[rt].append(1000 * (time.perf_counter() - started))
        for rt in runtimes:
            rows[rt][label] = percentiles(ms[rt])
    pairs = [(q, p) for q, passages in items[:BATCH] for p in passages]
    batch_s: dict[str, list[float]] = {rt: [] for rt in runtimes}
    for repeat in range(4):
        for rt, reader in readers.items():  # all cores
            started = time.perf_counter()
            reader.answer([q for q, _ in pairs], [p for _, p in pairs], top_k=n_best)
            if repeat:
                batch_s[rt].append(time.perf_counter() - started)
    ranker = load_ranker(cfg)
    torch_answers: dict[str, str] = {}
    for rt in runtimes:
        row = rows[rt]
        row["qps_batch32"] = round(BATCH / statistics.median(batch_s[rt]), 1)
        # devset F1, each article read by its own student
        f1_total, n_total, same = 0.0, 0, 0
        for article, model_dir in students.items():
            examples = squad_examples(load_squad(DEVSET / f"{article}.squad.json"))
            scores, answers = score_reader(load(rt, model_dir, None), examples, ranker=ranker)
            f1_total += scores["f1"] * scores["n"]
            n_total += scores["n"]
            for key, text in answers.items():
                if rt == "torch":
                    torch_answers[f"{article}/{key}"] = text
                else:
                    same += torch_answers[f"{article}/{key}"] == text
        row["devset_f1"] = round(f1_total / n_total, 2)
        row["same_answer_as_torch"] = None if rt == "torch" else round(100 * same / n_total, 1)
        row["questions"] = n_total
        print(json.dumps(row), flush=True)
    for runtime in VARIANTS:
        for model_dir in students.values():
            onnx_file(runtime, model_dir).unlink()
    return list(rows.values())


def teacher_row(items: list[tuple[str, list[str]]], articles: list[str], n_timed: int, n_scored: int | None) -> dict:
    gguf = bundled_teacher_gguf()
    row: dict = {"model": "teacher, SmolLM2-135M-Instruct Q4_1 (llama.cpp)", "mb": round(gguf.stat().st_size / 1e6, 1)}
    for label, threads in (("1 thread", 1), ("all cores", usable_cores())):
        teacher = load_teacher(TeacherConfig(n_threads=threads, isolate=False))  # in-process: its Llama is at hand
        row["params_m"] = round(teacher._llm._model.n_params() / 1e6, 1)
        cycle = iter(items * (1 + (n_timed + 2) // len(items)))
        try:
            row[label] = percentiles(timed(lambda: teacher.generate([teacher_request(*next(cycle))]), n_timed))
            if threads != 1:
                ms = timed(lambda: teacher.generate([teacher_request(*next(cycle)) for _ in range(BATCH)]), 1, warm_up=0)
                row["qps_batch32"] = round(BATCH / (ms[0] / 1000), 2)
                f1_total, n_total = 0.0, 0
                for article in articles:
                    examples = squad_examples(load_squad(DEVSET / f"{article}.squad.json"))[:n_scored]
                    results = teacher.generate([teacher_request(e["question"], [e["context"]]) for e in examples])
                    answers = {e["id"]: r.text.strip().rstrip(".") for e, r in zip(examples, results)}
                    scores = score_examples(examples, answers)
                    f1_total += scores["f1"] * scores["n"]
                    n_total += scores["n"]
                row["devset_f1"] = round(f1_total / n_total, 2)
                row["questions"] = n_total
        finally:
            teacher.close()
    print(json.dumps(row), flush=True)
    return row


def render(rows: list[dict]) -> str:
    lines = [
        "| model | params | MB on disk | ms p50 / p95, 1 thread | ms p50 / p95, all cores | questions/s at batch 32 | devset F1 (reader) | same answer as PyTorch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        same = "-" if r.get("same_answer_as_torch") is None else f"{r['same_answer_as_torch']}%"
        lines.append(
            f"| {r['model']} | {r['params_m']}M | {r['mb']} | {r['1 thread'][0]:.0f} / {r['1 thread'][1]:.0f} | "
            f"{r['all cores'][0]:.0f} / {r['all cores'][1]:.0f} | {r['qps_batch32']} | {r['devset_f1']} | {same} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/devset"))
    parser.add_argument("--variant", default="defaults")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--timed", type=int, default=100, help="questions timed per student runtime and thread count")
    parser.add_argument("--teacher-timed", type=int, default=20, help="questions timed per teacher thread count")
    parser.add_argument("--teacher-scored", type=int, default=None, help="devset questions per article the teacher answers (default all)")
    parser.add_argument("--no-teacher", action="store_true")
    parser.add_argument("--articles", nargs="*", default=ARTICLES, help="devset articles (default all three)")
    args = parser.parse_args()
    students = {a: args.work / a / args.variant / f"s{args.seed}" / STUDENT for a in args.articles}
    missing = [str(p) for p in students.values() if not p.is_dir()]
    if missing:
        raise SystemExit(f"error: no student in {', '.join(missing)}: run benchmarks/devset.py --variant {args.variant} --seeds {args.seed} first")
    cfg = Config()
    for model_dir in students.values():
        note = export_student(model_dir, model_dir.parent / STUDENT_ONNX)
        print(f"exported {model_dir} in {note['seconds']} s: {json.dumps(note['formats'])}", flush=True)
    items = questions_with_passages(args.work, args.articles)
    rows = student_rows(students, items, cfg, args.timed)
    if not args.no_teacher:
        rows.append(teacher_row(items, args.articles, args.teacher_timed, args.teacher_scored))
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or 'cpu'}, torch {torch.__version__}",
        "command": "benchmarks/student_speed.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False)),
        "rows": rows,
    }
    write_json(args.work / "student_speed.json", result)
    print(render(rows))


if __name__ == "__main__":
    main()
