"""`distillqa.pool.ordered_map`: results, order, logging and errors as in one process; setup once
per worker; a dead worker and Ctrl-C end it at once and cleanly."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from distillqa.errors import DistillqaError
from distillqa.pool import ITEMS_PER_WORKER, ordered_map, pool_size
from distillqa.runtime import usable_cores

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("distillqa.test")
_setups = 0  # setup calls in this process


def _setup() -> int:
    global _setups
    _setups += 1
    return os.getpid()


def _work(state: int, item: int) -> tuple[int, int, int, int]:
    """(item squared, pid, setup's pid, setup calls here); logs and fails on some items."""
    log.info("item %d", item)
    if item == 13:
        try:
            {}["inner"]
        except KeyError:
            log.info("item %d failed", item, exc_info=True)  # the traceback, as text, crosses over
            raise DistillqaError(f"item {item}: unlucky") from None
    if item == 14:
        raise ValueError("a bug")
    if item == 99:
        os.kill(os.getpid(), signal.SIGKILL)
    return item * item, os.getpid(), state, _setups


def _map(items: list[int], workers: int) -> list:
    with ordered_map(_work, items, setup=_setup, workers=workers, description="test", quiet=True, setting="test.workers") as results:
        return list(results)


def test_pool_size():
    assert pool_size(None, ITEMS_PER_WORKER - 1) == pool_size(0, 5) == 1  # too few to pay for a pool
    assert pool_size(None, 10**6) == usable_cores()
    assert pool_size(4, 3) == 3 and pool_size(1, 10**6) == 1 and pool_size(2, 0) == 1


def test_workers_give_the_same_results_in_order_and_set_up_once_each(caplog):
    items = list(range(15, 55))  # none that fails
    with caplog.at_level(logging.INFO, logger="distillqa"):
        serial = _map(items, 1)
        serial_log = [r.getMessage() for r in caplog.records]
        caplog.clear()
        pooled = _map(items, 2)
    assert [r[0] for r in pooled] == [r[0] for r in serial] == [i * i for i in items]
    pids = {r[1] for r in pooled}
    assert os.getpid() not in pids and len(pids) <= 2
    assert all(pid == setup_pid and setups == 1 for _, pid, setup_pid, setups in pooled), "setup once per worker, there"
    worker_log = [r.getMessage() for r in caplog.records if r.name == "distillqa.test"]
    assert worker_log == [m for m in serial_log if m.startswith("item")] == [f"item {i}" for i in items], "logged here, in order"


def test_a_worker_error_is_raised_here_as_in_one_process(caplog):
    for workers in (1, 2):
        with caplog.at_level(logging.INFO, logger="distillqa"), pytest.raises(DistillqaError, match=r"^item 13: unlucky$"):
            _map(list(range(20)), workers)
        assert "item 13 failed" in caplog.text and "KeyError: 'inner'" in caplog.text, "what the worker logged is kept"
        caplog.clear()
        with pytest.raises(ValueError, match="a bug"):  # not a user error: the bug's own exception
            _map([14], workers)


def test_a_dead_worker_ends_the_map_in_one_line():
    start = time.monotonic()
    with pytest.raises(DistillqaError, match=r"test: a worker process ended abruptly .*--set test.workers=1") as e:
        _map(list(range(90, 200)), 2)
    assert "\n" not in str(e.value) and time.monotonic() - start < 30


CTRL_C = textwrap.dedent(
    """
    import sys, time
    from distillqa.pool import ordered_map

    def slow(state, item):
        time.sleep(0.01 if item < 64 else 60)  # then items that would keep a waiting pool for minutes
        return item

    def noop():
        return None

    if __name__ == "__main__":
        with ordered_map(slow, list(range(200)), setup=noop, workers=2, description="slow", quiet=True, setting="x") as results:
            for i, _ in enumerate(results):
                print("result", i, flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_the_workers_at_once(tmp_path: Path):
    script = tmp_path / "slow.py"
    script.write_text(CTRL_C)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True
    )
    assert proc.stdout.readline().startswith("result")  # the pool is working
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 3  # the forkserver and two workers
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to every process of the group
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - start < 5, "no waiting for the items in flight, let alone the queue"
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    assert "leaked" not in stderr and stderr.count("KeyboardInterrupt") == 1, "only the parent's"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
