"""The run report: what went in, what came out, and what distillation gained, measured.

`report.json` holds the numbers, `report.md` presents them with a training-curve plot. Every
number is read from files the other stages wrote; nothing is recomputed or estimated here.
"""

from __future__ import annotations

from pathlib import Path

from distillqa.config import Config
from distillqa.io import atomic_open, read_json, read_jsonl, write_json
from distillqa.layout import (
    CALIBRATION,
    CHUNKS,
    DATASET_SUMMARY,
    DOCUMENTS,
    EVAL,
    EVAL_PREDICTIONS,
    GENERATE_SUMMARY,
    MANIFEST,
    REPORT_JSON,
    REPORT_MD,
    STUDENT,
    RunFolder,
)
from distillqa.student.metrics import f1_score

CURVE = "training_curve.png"
RELIABILITY = "reliability.png"
WAYS = {"open": "question alone (ask, serve)", "context": "question with its passage (ask --context)"}
MISSES = 5  # validation questions the report shows the distilled student getting wrong
CORRECTIONS = 10  # web UI corrections the report lists, before and after


def _dir_size_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


def misses(predictions: dict[str, dict], limit: int = MISSES) -> list[dict]:
    """Up to `limit` questions (in file order) whose distilled answer shares no word with any gold
    answer (F1 0): `{"id", "question", "answers", "distilled"}`. Totals hide what goes wrong; a few
    misses show it (a wrong entity, a span of the wrong type, a question the student ignored)."""
    out = []
    for qid, p in predictions.items():
        if max((f1_score(p["distilled"], gold) for gold in p["answers"]), default=0.0) == 0.0:
            out.append({"id": qid, "question": p["question"], "answers": p["answers"], "distilled": p["distilled"]})
            if len(out) == limit:
                break
    return out


def collect(run: RunFolder) -> dict:
    """Gather the report's numbers from the run folder. `misses` is None for a run evaluated
    before eval_predictions.json existed."""
    predictions = run.path(EVAL_PREDICTIONS)
    manifest = read_json(run.path(MANIFEST))
    docs = read_jsonl(run.path(DOCUMENTS))
    student = run.path(STUDENT)
    stages = manifest.get("stages", {})
    return {
        "documents": [{"doc_id": d["doc_id"], "title": d.get("title"), "pages": len(d["pages"])} for d in docs],
        "chunks": len(read_jsonl(run.path(CHUNKS))),
        "generation": read_json(run.path(GENERATE_SUMMARY)),
        "dataset": read_json(run.path(DATASET_SUMMARY)),
        "training": {
            "student": manifest["config"]["train"]["student"] or "all-MiniLM-L6-v2 (bundled)",
            "seconds": stages.get("train", {}).get("seconds"),
            **stages.get("train", {}).get("summary", {}),
            "disk_mb": _dir_size_mb(student),
        },
        "evaluation": read_json(run.path(EVAL)),
        "misses": misses(read_json(predictions)) if predictions.exists() else None,
        "calibration": _calibration(run),
        "stage_seconds": {name: rec.get("seconds") for name, rec in stages.items()},
        "teacher": manifest["config"]["teacher"],
    }


def _calibration(run: RunFolder) -> dict | None:
    """calibration.json without its per-question rows (they stay there); None before `calibrate`."""
    path = run.path(CALIBRATION)
    if not path.exists():
        return None
    data = read_json(path)
    return {way: {k: v for k, v in data[way].items() if k != "questions_scored"} for way in WAYS} | {"right": data["right"]}


def plot_reliability(calibration: dict, out: Path) -> None:
    """The reliability diagram: per confidence bin, the share of answers that were right against
    their mean confidence, one line per way of asking; the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for way, marker in zip(WAYS, "os"):
        bins = calibration[way]["reliability"]
        if bins:
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker=marker, label=way)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (held out)", ylabel="share right", title="reliability on validation questions")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def _calibration_section(calibration: dict | None, plot: bool) -> list[str]:
    if calibration is None:
        return []
    lines = [
        "## Confidence",
        "",
        f"Each answer's confidence is the probability that it is right ({calibration['right']}), fitted on the"
        " validation questions (`distillqa calibrate`). Expected calibration error (ECE, 0 = perfect), out of fold:"
        " each question's confidence comes from a fit that did not see it.",
        "",
        "| asked | questions | right | ECE of the confidence | ECE of the raw score | calibrator |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for way, name in WAYS.items():
        c = calibration[way]
        lines.append(
            f"| {name} | {c['questions']} | {c['right']} | {_fmt(c['ece'], 3)} | {_fmt(c['ece_raw_score'], 3)} | {_cell(c['calibrator']['note'])} |"
        )
    lines += ["", "| confidence | answers (alone) | right (alone) | answers (with passage) | right (with passage) |", "|---|---:|---:|---:|---:|"]
    by_bin = {way: {(b["low"], b["high"]): b for b in calibration[way]["reliability"]} for way in WAYS}
    for key in sorted(set(by_bin["open"]) | set(by_bin["context"])):
        cells = []
        for way in WAYS:
            b = by_bin[way].get(key)
            cells += [str(b["n"]), f"{b['accuracy']:.0%}"] if b else ["0", "-"]
        lines.append(f"| {key[0]:.1f}-{key[1]:.1f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "These are this run's own questions, far easier than people's: on the devset the fitted confidence"
        " was 30-60 points too high on people's questions, so the confidence `ask` and `serve` show also"
        " applies `answer.people_correction` (docs/benchmarks.md, \"Confidence on human questions\").",
        "",
    ]
    if plot:
        lines += [f"![reliability diagram]({RELIABILITY})", ""]
    return lines


def plot_training_curve(training_log: dict, out: Path) -> bool:
    """Plot training loss per step and validation F1 per epoch (student/training_log.json).

    Returns False when there is nothing to plot.
    """
    losses = [(e["step"], e["loss"]) for e in training_log.get("train", [])]
    f1s = [(e["epoch"], e["f1"]) for e in training_log.get("eval", [])]
    if not losses and not f1s:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    if losses:
        ax[0].plot(*zip(*losses), marker=".")
    ax[0].set(title="training loss", xlabel="step", ylabel="loss")
    if f1s:
        ax[1].plot(*zip(*f1s), marker="o", color="tab:green")
    ax[1].set(title="validation F1", xlabel="epoch", ylabel="F1")
    fig.tight_layout()
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return True


def _fmt(x: object, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else ("-" if x is None else str(x))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|") or "(no answer)"


def _misses_section(missed: list[dict] | None) -> list[str]:
    if missed is None:  # evaluated before per-question answers were kept
        return []
    if not missed:
        return ["## A few misses", "", "The distilled student answered every validation question at least in part.", ""]
    return [
        "## A few misses",
        "",
        (
            f"Validation questions the distilled student got wrong (F1 0), the first {len(missed)}"
            " in file order; every answer is in eval_predictions.json."
        ),
        "",
        "| question | gold | distilled |",
        "|---|---|---|",
        *[f"| {_cell(m['question'])} | {_cell(' / '.join(m['answers']))} | {_cell(m['distilled'])} |" for m in missed],
        "",
    ]


def _corrections_section(feedback: dict | None, limit: int = CORRECTIONS) -> list[str]:
    """Before and after on the corrections made in the web UI (eval.json's "feedback"); nothing
    for a run without any."""
    if not feedback:
        return []
    before, after, rows = feedback["before"], feedback["after"], feedback["questions"]
    return [
        "## Corrections",
        "",
        (
            f"{feedback['n']} question{'s' if feedback['n'] != 1 else ''} people judged in the web UI (`distillqa feedback RUN` lists them), each read"
            " with its passage. Before: the answer they were shown; after: the distilled student's. The student"
            " was trained on them (`feedback.weight` copies each): this says whether it learned them, not how it"
            " does on new questions."
        ),
        "",
        "| corrections | EM | F1 |",
        "|---|---:|---:|",
        f"| answer shown (before) | {_fmt(before['exact_match'])} | {_fmt(before['f1'])} |",
        f"| distilled student (after) | {_fmt(after['exact_match'])} | {_fmt(after['f1'])} |",
        "",
        "| question | right answer | shown | now |",
        "|---|---|---|---|",
        *[f"| {_cell(q['question'])} | {_cell(q['gold'])} | {_cell(q['shown'])} | {_cell(q['distilled'])} |" for q in rows[:limit]],
        *(["", f"The first {limit} of {len(rows)}; every one is in eval.json."] if len(rows) > limit else []),
        "",
    ]


def render_markdown(r: dict, curve: bool) -> str:
    ev, ds, gen, tr = r["evaluation"], r["dataset"], r["generation"], r["training"]
    base, dist = ev.get("baseline") or {}, ev.get("distilled") or {}
    lines = [
        "# distillqa run report",
        "",
        "## Input",
        "",
        "| document | pages |",
        "|---|---:|",
        *[f"| {d['title'] or d['doc_id']} | {d['pages']} |" for d in r["documents"]],
        "",
        f"Chunks: {r['chunks']}. Teacher: `{gen.get('teacher', r['teacher']['backend'])}`, mode `{gen.get('mode')}`.",
        "",
        "## Distilled data",
        "",
        f"- pairs proposed: {ds['pairs_proposed']}, grounded (by match): {ds['grounded']}, kept: {ds['kept']}",
        f"- proposed per route: {ds.get('proposed_per_route', {})} (span-cloze: rule-based, made by build-dataset; the others: generate)",
        f"- kept per route: {ds['kept_per_route']}",
        f"- dropped by reason: {ds['dropped']}",
        f"- train / validation questions: {ds['train']['questions']} / {ds['validation']['questions']}"
        f" (split by chunk: {ds['train']['chunks']} / {ds['validation']['chunks']} chunks)",
        "- teacher outputs per route (attempts, parse failures, rejected by checks): "
        + (", ".join(
            f"{name}: {r['attempts']}, {r['parse_failures']}, {r['rejected']}"
            for name, r in gen.get("routes", {}).items() if r.get("attempts")
        ) or "none"),
        "",
        "## Student",
        "",
        f"- model: `{tr['student']}`, parameters: {tr.get('parameters')}, on disk: {tr['disk_mb']} MB",
        f"- training time: {_fmt(tr.get('seconds'))} s",
        "",
        "| validation split | EM | F1 |",
        "|---|---:|---:|",
        f"| untrained student (baseline) | {_fmt(base.get('exact_match'))} | {_fmt(base.get('f1'))} |",
        f"| distilled student | {_fmt(dist.get('exact_match'))} | {_fmt(dist.get('f1'))} |",
        "",
        f"Questions scored: {ev.get('validation_questions')}. Reader speed: {_fmt(dist.get('ms_per_question'))} ms per question on this machine"
        f" through {ev.get('reader_runtime', 'torch')} (`answer.reader_runtime`).",
        "",
        (
            "These validation questions were made by this run from your own documents (by the teacher"
            " and by rules), held out by chunk. Their EM/F1 says how well the student learned this run's"
            " kind of question; it is not a score on questions people ask, which is far lower: with"
            " the default teacher and student, students scoring F1 90-93 on their own validation"
            " questions scored F1 27-41 on people's questions about the same three articles"
            " (docs/benchmarks.md, devset). To measure"
            " that, write real questions with their answers as a SQuAD v1.1 file and run"
            " `distillqa evaluate RUN questions.json --open`."
        ),
        "",
    ]
    lines += _misses_section(r.get("misses"))
    lines += _calibration_section(r.get("calibration"), bool(r.get("reliability_diagram")))
    lines += _corrections_section(ev.get("feedback"))
    if curve:
        lines += ["## Training curve", "", f"![training curve]({CURVE})", ""]
    lines += ["## Stage timings (s)", "", *[f"- {k}: {_fmt(v)}" for k, v in r["stage_seconds"].items() if v is not None], ""]
    return "\n".join(lines)


def run_stage(run: RunFolder, cfg: Config) -> dict:
    report = collect(run)
    log_path = run.path(STUDENT) / "training_log.json"
    curve = log_path.exists() and plot_training_curve(read_json(log_path), run.path(CURVE))
    report["training_curve"] = CURVE if curve else None
    report["reliability_diagram"] = None
    if report["calibration"] is not None:
        plot_reliability(report["calibration"], run.path(RELIABILITY))
        report["reliability_diagram"] = RELIABILITY
    write_json(run.path(REPORT_JSON), report)
    with atomic_open(run.path(REPORT_MD)) as f:
        f.write(render_markdown(report, bool(curve)))
    dist = report["evaluation"].get("distilled") or {}
    base = report["evaluation"].get("baseline") or {}
    return {"baseline_f1": base.get("f1"), "distilled_f1": dist.get("f1"), "report": str(run.path(REPORT_MD))}
