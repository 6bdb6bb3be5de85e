"""The server's batcher: questions arriving together are answered in one call, a full queue
refuses at once, and one failing question fails only itself."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from distillqa.app.batcher import Batcher, QueueFull


class Recorder:
    """An `ask_many` that records its batches; blocks while `gate` is clear."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set once a call has started

    def __call__(self, questions: Sequence[str], top_k: Sequence[int]) -> list[list[dict]]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(list(questions))
        if "bad" in questions:
            raise ValueError("cannot answer 'bad'")
        return [[{"answer": q, "top_k": k}] for q, k in zip(questions, top_k)]


def test_questions_waiting_together_are_one_batch():
    recorder = Recorder()
    batcher = Batcher(recorder, batch_size=8, wait_ms=0, max_queue=64)
    recorder.gate.clear()  # the first question holds the worker while the others queue
    first = batcher.submit("q0", 1)
    assert recorder.entered.wait(10)  # the worker is reading q0 alone
    rest = [batcher.submit(f"q{i}", i) for i in range(1, 11)]
    recorder.gate.set()
    assert first.result(10) == [{"answer": "q0", "top_k": 1}]
    assert [f.result(10) for f in rest] == [[{"answer": f"q{i}", "top_k": i}] for i in range(1, 11)]
    batcher.close()
    assert [len(b) for b in recorder.batches] == [1, 8, 2]  # batch_size caps a batch


def test_a_lone_question_waits_at_most_the_batch_wait():
    recorder = Recorder()
    batcher = Batcher(recorder, batch_size=32, wait_ms=20, max_queue=4)
    assert batcher.submit("alone", 3).result(5) == [{"answer": "alone", "top_k": 3}]
    batcher.close()


def test_a_full_queue_refuses_at_once_and_frees_its_slots():
    recorder = Recorder()
    batcher = Batcher(recorder, batch_size=2, wait_ms=0, max_queue=3)
    recorder.gate.clear()
    taken = [batcher.submit(f"q{i}", 1) for i in range(3)]
    with pytest.raises(QueueFull, match="3 questions"):
        batcher.submit("one too many", 1)
    recorder.gate.set()
    for f in taken:
        f.result(10)
    assert batcher.submit("room again", 1).result(10)
    batcher.close()


def test_one_failing_question_fails_only_itself():
    recorder = Recorder()
    batcher = Batcher(recorder, batch_size=8, wait_ms=0, max_queue=16)
    recorder.gate.clear()
    futures = [batcher.submit(q, 1) for q in ("a", "bad", "c")]
    recorder.gate.set()
    assert futures[0].result(10) == [{"answer": "a", "top_k": 1}]
    with pytest.raises(ValueError, match="bad"):
        futures[1].result(10)
    assert futures[2].result(10) == [{"answer": "c", "top_k": 1}]
    batcher.close()


def test_a_cancelled_request_is_not_read():
    recorder = Recorder()
    batcher = Batcher(recorder, batch_size=8, wait_ms=0, max_queue=16)
    recorder.gate.clear()
    holder = batcher.submit("holder", 1)
    assert recorder.entered.wait(10)
    gone = batcher.submit("gone", 1)
    assert gone.cancel()
    kept = batcher.submit("kept", 1)
    recorder.gate.set()
    holder.result(10), kept.result(10)
    batcher.close()
    assert "gone" not in sum(recorder.batches, [])
