"""The same work on many items (files, documents) in worker processes, results in input order.

`ordered_map` is what ingest and chunk run their per-file work through. With one worker it
works in this process, as a plain loop; with more, in a `ProcessPoolExecutor`, and the caller
sees the same results in the same order, with the same progress bar, logging and errors:

- Workers are started by **forkserver** (spawn where there is none, e.g. Windows), never by
  fork: the parent has threads by then (the progress bar's, the executor's own, torch's and
  onnxruntime's in a long-lived process), and forking a threaded process can leave a lock held
  forever in the child; Hugging Face tokenizers also turn their parallelism off with a warning
  after a fork, and a llama.cpp vocabulary must not be shared. The forkserver is one clean
  interpreter that imports the work's module once, so each worker starts in milliseconds.
- `setup` runs once per process (a tokenizer is loaded once per worker, not per document);
  its result is handed to every `work(state, item)` call there.
- What the work logs in a worker is sent back with its result and logged here, in input order,
  so log.txt and the console read as they do in one process. A DistillqaError raised by the
  work comes back as the same one-line error; a worker that dies (a crash in a native library,
  out of memory) ends the map with a one-line error naming the setting that avoids the pool.
- Workers ignore Ctrl-C; the parent takes it, cancels what has not started and ends the
  workers at once, as it does when the caller stops early (a bad file).
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import queue
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from distillqa.console import track
from distillqa.errors import DistillqaError
from distillqa.runtime import usable_cores

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("distillqa")

# With `workers` None or 0, each process gets at least this many items: starting the pool (the
# forkserver's imports, a tokenizer in each worker) costs 1-2 CPU seconds, what one process
# spends reading ~1,500 small files (~1 ms each) or chunking ~250 (~6 ms: docs/benchmarks.md,
# #13), so a few files, or a few hundred, stay in this process.
ITEMS_PER_WORKER = 256
# Items sent to a worker at once: fewer messages, yet a smooth progress bar and little work in
# flight to wait for or lose.
_MAX_BATCH = 16


def pool_size(workers: int | None, items: int) -> int:
    """Processes for `items` items: `workers` (None or 0: one per usable core, at most one per
    ITEMS_PER_WORKER items), never more than the items; 1 means this process."""
    if not workers:
        workers = min(usable_cores(), items // ITEMS_PER_WORKER)
    return max(1, min(workers, items))


@contextmanager
def ordered_map(
    work: Callable[[S, T], R],
    items: Sequence[T],
    *,
    setup: Callable[[], S],
    workers: int | None,
    description: str,
    quiet: bool,
    setting: str,
) -> Iterator[Iterator[R]]:
    """`work(setup(), item)` for every item, in order, under a progress bar (see the module doc).

    `work` and `setup` must be picklable (module-level functions, or partials of them) when
    there is more than one worker. `setting` (e.g. "ingest.workers") is named in the error a
    dead worker gives. Use as `with ordered_map(...) as results: for result in results: ...`:
    leaving the block early stops the workers.
    """
    n = pool_size(workers, len(items))
    if n == 1:
        state = setup()
        yield track((work(state, item) for item in items), len(items), description, quiet)
        return
    log.info("%s: %d worker processes", description, n)
    level = logging.getLogger("distillqa").getEffectiveLevel()
    # work and setup go to each worker once, with its start, not with every batch of items
    executor = ProcessPoolExecutor(n, mp_context=_context(work), initializer=_start_worker, initargs=(work, setup, level))
    try:
        batch = max(1, min(_MAX_BATCH, len(items) // (4 * n)))
        results = executor.map(_in_worker, items, chunksize=batch)
        yield track(_replayed(results), len(items), description, quiet)
    except BaseException as e:
        _stop(executor)
        if isinstance(e, BrokenProcessPool):  # while sending the items, or waiting for a result
            raise DistillqaError(
                f"{description}: a worker process ended abruptly (a crash in a native library, or out of memory): "
                f"--set {setting}=1 works in one process and shows which file"
            ) from None
        raise
    executor.shutdown(cancel_futures=True)  # nothing left, unless the caller stopped reading


def _context(work: Callable) -> BaseContext:
    """forkserver, with the main module and the work's imported once in the server, not in each
    worker (see the module doc)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    module = getattr(work, "func", work).__module__  # a partial's function
    context.set_forkserver_preload(["__main__", module])  # no effect once this process's forkserver runs
    return context


def _replayed(results: Iterable[tuple[bool, Any, list[logging.LogRecord]]]) -> Iterator[Any]:
    """Each worker result after its log records; a worker's DistillqaError raised here."""
    for ok, value, records in results:
        for record in records:
            logging.getLogger(record.name).handle(record)
        if not ok:
            raise value
        yield value


def _stop(executor: ProcessPoolExecutor) -> None:
    """Cancel the items not started and end the workers now, not after the items in flight
    (a large PDF takes seconds). Python 3.14 has `terminate_workers()`; before it, only the
    executor's own table of processes."""
    processes = list((executor._processes or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


# --- in the worker processes ---------------------------------------------------------------

_records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
_UNSET = object()
_work: Callable[[Any, Any], Any]
_setup: Callable[[], Any]
_state: Any = _UNSET  # what `setup` made in this worker


def _start_worker(work: Callable[[Any, Any], Any], setup: Callable[[], Any], level: int) -> None:
    """Keep the work; leave Ctrl-C to the parent; keep the distillqa log's records for the parent.
    Nothing here may fail: an initializer's error breaks the pool without saying why, so `setup`
    runs with the first item, and its error comes back as the item's."""
    global _work, _setup
    _work, _setup = work, setup
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger("distillqa")
    logger.handlers[:] = [logging.handlers.QueueHandler(_records)]  # formats the message, drops the traceback object
    logger.setLevel(level)
    logger.propagate = False


def _in_worker(item: Any) -> tuple[bool, Any, list[logging.LogRecord]]:
    """(True, result, records) or (False, the DistillqaError, records): records logged meanwhile."""
    global _state
    try:
        if _state is _UNSET:
            _state = _setup()
        outcome: tuple[bool, Any] = (True, _work(_state, item))
    except DistillqaError as e:
        outcome = (False, e)
    records = []
    while not _records.empty():
        records.append(_records.get())
    return (*outcome, records)
