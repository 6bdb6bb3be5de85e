"""The `distillqa` command: parses arguments and calls the stage functions. No logic lives here."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from distillqa.errors import DistillqaError
from distillqa.records import MAX_TOP_K

app = typer.Typer(
    help="Turn documents into a small, fast, private question-answering model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML or TOML config file (see examples/config.yaml).")
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a setting, e.g. --set train.epochs=2 (repeatable)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries; errors only.")]
RunArg = Annotated[Path, typer.Argument(help="The run folder.")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors():
    """Turn known errors into one line and a non-zero exit: ours, Ctrl-C, and the system's (a full
    disk, a folder we may not write), which name the path and say why."""
    try:
        yield
    except DistillqaError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        _fail(f"{where}{e.strerror or e}", 1)


@contextmanager
def _removed_on_failure(folder: Path):
    """Remove `folder` when this call creates it and fails before any stage finished, so a failed
    first command leaves nothing half-written. Set `state["keep"] = True` once output is real."""
    state = {"keep": folder.exists()}
    try:
        yield state
    except BaseException:
        if not state["keep"]:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _stage(name: str, root: Path, config: Path | None, overrides: list[str] | None, quiet: bool, force: bool) -> None:
    from distillqa.console import print_summary
    from distillqa.layout import MANIFEST
    from distillqa.pipeline import STAGE_BY_NAME, Run

    with _errors():
        if not (root / MANIFEST).exists():
            raise DistillqaError(f"{root} is not a run folder (no {MANIFEST}): start one with `distillqa ingest PATH... --out {root}`")
        run = Run(root, quiet=quiet)
        with run.lock(), run.logging_to_log():
            cfg = run.config(config, overrides)
            summary = run.run_stage(STAGE_BY_NAME[name], cfg, force=force)
    if not quiet:
        print_summary(name, summary)


@contextmanager
def _started_run(paths: list[str], out: Path, config, overrides, quiet, pdf_password, skip_bad):
    """Lock the run folder (creating it), find the input files and record them, for `ingest` and
    `run`. Yields (run, cfg); the lock is held until the block ends."""
    from distillqa.ingest import expand_paths
    from distillqa.pipeline import Run

    if out.exists() and not out.is_dir():
        raise DistillqaError(f"{out} is a file: --out takes a folder (a new one, or a run folder to update)")
    extra = list(overrides or [])
    if pdf_password is not None:
        extra.append(f"ingest.pdf_password={pdf_password}")
    if skip_bad:
        extra.append("ingest.skip_bad=true")
    run = Run(out, quiet=quiet)
    with run.lock(), run.logging_to_log():
        files = expand_paths(paths, run_folder=out)
        cfg = run.config(config, extra)
        run.save_config(cfg)
        run.set_inputs(files)
        yield run, cfg


PathsArg = Annotated[list[str], typer.Argument(help="Files, folders (searched recursively) or globs.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder to create or update.")]
PasswordOpt = Annotated[
    Optional[str],
    typer.Option("--pdf-password", envvar="DISTILLQA_PDF_PASSWORD", help="Password for encrypted PDFs (never saved in the run folder)."),
]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable files instead of stopping.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun even if up to date.")]


@app.command()
def ingest(
    paths: PathsArg,
    out: OutOpt,
    pdf_password: PasswordOpt = None,
    skip_bad: SkipBadOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    """Read PDF, DOCX, HTML, Markdown and TXT files into RUN/documents.jsonl."""
    from distillqa.console import print_summary
    from distillqa.pipeline import STAGE_BY_NAME

    with _removed_on_failure(out), _errors(), _started_run(paths, out, config, set_, quiet, pdf_password, skip_bad) as (run, cfg):
        summary = run.run_stage(STAGE_BY_NAME["ingest"], cfg, force=force)
    if not quiet:
        print_summary("ingest", summary)


def _stage_command(name: str, doc: str):
    def command(run: RunArg, config: ConfigOpt = None, set_: SetOpt = None, quiet: QuietOpt = False, force: ForceOpt = False) -> None:
        _stage(name, run, config, set_, quiet, force)

    command.__doc__ = doc
    app.command(name)(command)


_stage_command("chunk", "Cut documents into token-aware chunks (RUN/chunks.jsonl).")
_stage_command("generate", "Have the teacher write question/answer pairs for each chunk (RUN/generations.jsonl).")
_stage_command("build-dataset", "Ground, filter and split the pairs into SQuAD files (RUN/train.json, RUN/validation.json).")
_stage_command("train", "Fine-tune the student reader (RUN/student/).")


class ExportFormat(str, Enum):
    onnx = "onnx"


class Quantize(str, Enum):
    int8 = "int8"
    none = "none"


@app.command()
def export(
    run: RunArg,
    format_: Annotated[ExportFormat, typer.Option("--format", help="Model format (ONNX, run by onnxruntime).")] = ExportFormat.onnx,
    quantize: Annotated[
        Optional[Quantize], typer.Option(help="Also write an int8 model (default: the run's export.quantize, int8).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    """Export the student as ONNX, fp32 and int8, for fast CPU answers (RUN/student_onnx/)."""
    extra = [*(set_ or []), "export.onnx=true", *([f"export.quantize={quantize.value}"] if quantize else [])]
    _stage("export", run, config, extra, quiet, force)


_stage_command("index", "Build the BM25 + dense passage index for questions without context (RUN/index/).")
_stage_command("calibrate", "Fit the answers' confidence on the validation questions (RUN/calibration.json).")
_stage_command("report", "Write RUN/report.md and RUN/report.json.")


@app.command("run")
def run_all(
    paths: PathsArg,
    out: OutOpt,
    pdf_password: PasswordOpt = None,
    skip_bad: SkipBadOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    until: Annotated[Optional[str], typer.Option(help="Stop after this stage.")] = None,
) -> None:
    """Every stage in order, skipping the ones already done with the same inputs and settings."""
    from distillqa.console import print_summary
    from distillqa.pipeline import STAGE_BY_NAME, STAGES
    from distillqa.runtime import launch_world_size

    if until is not None and until not in STAGE_BY_NAME:
        _fail(f"unknown stage {until!r}: choose from {', '.join(STAGE_BY_NAME)}")
    if launch_world_size() > 1:
        _fail("torchrun/accelerate launch runs `distillqa train RUN` only: run the other stages in one process")
    with _removed_on_failure(out) as folder, _errors(), _started_run(paths, out, config, set_, quiet, pdf_password, skip_bad) as (run, cfg):
        for stage in STAGES:
            summary = run.run_stage(stage, cfg)
            folder["keep"] = True  # something real exists now: keep the folder on later failures
            if not quiet:
                print_summary(stage.name, summary)
            if stage.name == until:
                break
    if not quiet:
        from distillqa.console import print_run_done

        print_run_done(out)


@app.command()
def evaluate(
    target: Annotated[
        Path, typer.Argument(metavar="RUN_OR_MODEL", help="A run folder (or, with DATA and without --open, a model folder).")
    ],
    data: Annotated[
        Optional[Path], typer.Argument(metavar="DATA.json", help="A SQuAD v1.1 file to score. Without it: run the evaluate stage.")
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Ask each question alone: retrieval + reader over the run's documents.")
    ] = False,
    predictions: Annotated[
        Optional[Path], typer.Option("--predictions", help="Write each question's answer to FILE as {id: answer}.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    """Run the evaluate stage (RUN/eval.json, RUN/eval_predictions.json), or score any SQuAD v1.1
    file with the official EM/F1: reader mode reads each question with its gold paragraph, --open
    with the question alone, as `distillqa ask` does."""
    import json

    if data is None:
        if open_ or predictions is not None:
            _fail("--open and --predictions score a SQuAD file: give one, e.g. distillqa evaluate RUN questions.json --open")
        if as_json:
            _fail("--json prints the scores of a SQuAD file: give one, or read RUN/eval.json after the stage")
        _stage("evaluate", target, config, set_, quiet, force)
        return
    if force:
        _fail("--force reruns the evaluate stage; scoring a SQuAD file always reads it anew")
    with _errors():
        from distillqa.layout import RunFolder

        cfg = RunFolder(target).saved_config(config, set_)
        if open_:
            from distillqa.app.ask import evaluate_open

            scores = evaluate_open(target, data, predictions, quiet=quiet, cfg=cfg)
        else:
            from distillqa.student.evaluate import evaluate_file

            scores = evaluate_file(target, data, cfg, predictions, quiet=quiet)
    if as_json:
        typer.echo(json.dumps(scores))
    else:
        typer.echo(
            f"exact_match {scores['exact_match']:.2f}  f1 {scores['f1']:.2f}  questions {scores['n']}  ({scores['mode']} mode)"
        )


@app.command()
def ask(
    target: Annotated[Path, typer.Argument(help="A run folder, or a model folder when --context is given.")],
    question: Annotated[Optional[str], typer.Argument(help="The question (or --questions FILE).")] = None,
    context: Annotated[Optional[str], typer.Option(help="The passage to read (skips retrieval).")] = None,
    context_file: Annotated[Optional[Path], typer.Option(help="Read the passage from a file.")] = None,
    top_k: Annotated[Optional[int], typer.Option(min=1, max=MAX_TOP_K, help="Answers per question (default 3; 1 with --questions).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    questions: Annotated[
        Optional[Path], typer.Option(help="Answer every question of a file: one per line, or JSONL with a \"question\" (and \"id\") per line.")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option(help="With --questions: write the answers here, .jsonl or .csv (default: JSONL on stdout).")
    ] = None,
) -> None:
    """Answer a question from a given passage, or from the run's documents via retrieval."""
    from distillqa.app.ask import ask_command

    with _errors():
        ask_command(
            target, question, context=context, context_file=context_file, top_k=top_k or (1 if questions else 3),
            as_json=as_json, questions_file=questions, output=output,
        )


@app.command()
def serve(
    run: RunArg,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local. Requests must name this address or a host in serve.allowed_hosts.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve the web UI and REST API (POST /ask, POST /feedback, GET /health, /docs) for a finished run."""
    from distillqa.app.serve import serve as serve_run

    with _errors():
        serve_run(run, host=host, port=port)


@app.command()
def feedback(
    run: RunArg,
    export: Annotated[
        Optional[Path], typer.Option("--export", help="Write the questions with a right answer to FILE as SQuAD v1.1 JSON.")
    ] = None,
) -> None:
    """List the answers people marked right or wrong in the web UI (RUN/feedback.jsonl), or export
    them as SQuAD v1.1. `distillqa train RUN` learns from them."""
    from distillqa.student.feedback import feedback_command

    with _errors():
        feedback_command(run, export)


@app.command()
def doctor() -> None:
    """Check this machine: Python, packages, torch device, the llama.cpp build and CPU, a few
    tokens from the bundled teacher (in a worker process), the bundled models, onnxruntime and
    optional pieces. Exits non-zero on any FAIL."""
    from distillqa.app.doctor import FAIL, run_checks

    results = run_checks()
    for check in results:
        typer.echo(check.line())
    failed = [c.name for c in results if c.status == FAIL]
    typer.echo(f"{len(results) - len(failed)} ok or skipped, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    if failed:
        raise typer.Exit(1)


def main() -> None:  # `python -m distillqa` (__main__.py) and the console script
    app(prog_name="distillqa")

