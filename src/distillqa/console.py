"""Terminal output: progress bars for long stages and short stage summaries (rich)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)
UP_TO_DATE = "up_to_date"  # the summary key of a stage the pipeline skipped as already done
log = logging.getLogger("distillqa")


def make_progress(quiet: bool) -> Progress:
    """A progress bar on stderr; disabled with --quiet or when not on a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=False,
    )


def track(items: Iterable[T], total: int, description: str, quiet: bool) -> Iterator[T]:
    """Iterate with a progress bar; logs the description once so log.txt shows the step."""
    log.info("%s: %d items", description, total)
    with make_progress(quiet) as progress:
        task = progress.add_task(description, total=total, status="")
        for item in items:
            yield item
            progress.advance(task)


def track_batches(items: Sequence[T], size: int, description: str, quiet: bool) -> Iterator[Sequence[T]]:
    """`items` `size` at a time (the last batch may be shorter), with a progress bar per batch."""
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    return track(batches, len(batches), description, quiet)


def print_summary(stage: str, summary: dict) -> None:
    if summary.get(UP_TO_DATE):
        console.print(f"[dim]{stage}: up to date, skipped[/dim]")
        return
    shown = ", ".join(f"{k}={v}" for k, v in summary.items() if isinstance(v, (int, float, str)))
    console.print(f"[green]{stage}[/green]: {shown}")


def print_run_done(root: Path) -> None:
    console.print(f"[bold green]done[/bold green]: results in {root}/ (manifest.json, log.txt)")
