"""Questions from concurrent requests, read by one worker thread in batches.

`serve` hands every question to a `Batcher`. Its worker takes the first question waiting, then
whatever else arrives within `serve.batch_wait_ms` (up to `serve.batch_size`), and answers them
with one `Asker.ask_many` call: one embedding call and one reader batch for all of them. Under
load the questions that queued while a batch was being read form the next batch at once, so the
wait only costs a lone question a few milliseconds. The queue is bounded: past `serve.max_queue`
waiting questions, `submit` refuses at once (the server answers 503), instead of letting
latency grow without end.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

AnswerMany = Callable[[Sequence[str], Sequence[int]], list[list[dict]]]
_STOP = None  # put on the queue by `close`


class QueueFull(Exception):
    """Too many questions are waiting; the caller should retry later."""


class Batcher:
    """Answers questions in batches on a worker thread; `submit` returns a future of the answers."""

    def __init__(self, answer_many: AnswerMany, batch_size: int = 32, wait_ms: float = 5.0, max_queue: int = 256):
        self.answer_many = answer_many
        self.batch_size = batch_size
        self.wait_s = wait_ms / 1000
        self.max_queue = max_queue
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.BoundedSemaphore(max_queue)  # questions waiting or being read
        self._worker = threading.Thread(target=self._work, name="distillqa-batcher", daemon=True)
        self._worker.start()

    @property
    def queued(self) -> int:
        """Questions waiting for the worker (not counting the batch being read)."""
        return self._queue.qsize()

    def submit(self, question: str, top_k: int) -> Future:
        """Queue a question; raises `QueueFull` when `max_queue` questions are already in."""
        if not self._slots.acquire(blocking=False):
            raise QueueFull(f"{self.max_queue} questions are already waiting: try again in a moment")
        future: Future = Future()
        self._queue.put((question, top_k, future))
        return future

    def close(self) -> None:
        """Stop the worker after the questions already queued."""
        self._queue.put(_STOP)
        self._worker.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch, stop = [item], False
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._answer(batch)
            if stop:
                return

    def _answer(self, batch: list[tuple[str, int, Future]]) -> None:
        """Answer a batch; when it fails, each question alone, so one bad question fails only itself."""
        live = [b for b in batch if b[2].set_running_or_notify_cancel()]  # skip requests given up on
        try:
            if live:
                try:
                    results = self.answer_many([q for q, _, _ in live], [k for _, k, _ in live])
                    for (_, _, future), answers in zip(live, results):
                        future.set_result(answers)
                except Exception:
                    for question, top_k, future in live:
                        try:
                            future.set_result(self.answer_many([question], [top_k])[0])
                        except Exception as e:
                            future.set_exception(e)
        finally:
            for _ in batch:
                self._slots.release()
