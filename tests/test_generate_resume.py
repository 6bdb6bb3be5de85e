"""Resume after a real SIGKILL: the restarted stage finishes with the same pairs as an uninterrupted
run, no chunk twice, and no finished chunk regenerated (the teacher cache keeps them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distillqa.config import Config
from distillqa.io import read_jsonl, write_jsonl
from distillqa.layout import CHUNKS, DOCUMENTS, GENERATE_SUMMARY, GENERATIONS, TEACHER_CACHE
from distillqa.pipeline import Run

REPO = Path(__file__).resolve().parents[1]
PARAGRAPHS = [
    "In 1867, Alfred Nobel patented dynamite in Sweden. The invention made him rich within a decade.",
    "The Danube flows through ten countries before reaching the Black Sea. About 40% of its basin is in Romania.",
    "Marie Curie discovered polonium in 1898 with her husband Pierre. She was the first woman to win a Nobel Prize.",
    "The Great Wall of China is more than 21,000 kilometers long. Most of the existing wall dates from the Ming dynasty.",
    "Penicillin was discovered by Alexander Fleming in 1928. It became widely used during the Second World War.",
    "The Amazon rainforest covers about 5.5 million square kilometers. It produces much of the world's oxygen.",
    "Mount Everest was first climbed in 1953 by Edmund Hillary and Tenzing Norgay. It rises 8,849 metres.",
    "The printing press was developed by Johannes Gutenberg around 1440. It spread quickly across Europe.",
]


CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
import distillqa.teacher.generate as gen
from distillqa.pipeline import STAGE_BY_NAME, Run
from tests.helpers import SlowEchoTeacher
gen.load_teacher = lambda cfg: SlowEchoTeacher()
run = Run(Path(sys.argv[1]), quiet=True)
run.run_stage(STAGE_BY_NAME["generate"], run.config())
"""


def prepared_run(root: Path) -> Path:
    """A run folder with documents.jsonl and chunks.jsonl written directly (one chunk per paragraph)."""
    run = Run(root)
    root.mkdir(parents=True)
    text = "\n\n".join(PARAGRAPHS)
    write_jsonl(run.path(DOCUMENTS), [{"doc_id": "facts-00000000", "text": text, "title": "facts"}])
    chunks, start = [], 0
    for i, para in enumerate(PARAGRAPHS):
        chunks.append({"chunk_id": f"facts-00000000-{i:04d}", "doc_id": "facts-00000000", "index": i,
                       "start": start, "end": start + len(para), "text": para})
        start += len(para) + 2
    write_jsonl(run.path(CHUNKS), chunks)
    cfg = Config.model_validate({"generate": {"answers_per_chunk": 3, "wave_requests": 3}})
    run.save_config(cfg)
    run.save_manifest({"stages": {}, "inputs": []})
    return root


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_when_started(cmd: list[str], cache: Path, min_lines: int = 2, timeout: float = 600) -> None:
    """Start `cmd`, SIGKILL it once the teacher cache has `min_lines` lines (it must not finish first)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while lines(cache) < min_lines:
        assert proc.poll() is None, f"stage ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "no progress"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def finish(cmd: list[str]) -> None:
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def pair_set(run_dir: Path) -> set[tuple[str, str, str, str]]:
    return {
        (rec["chunk_id"], p["question"], p["answer"], p["route"])
        for rec in read_jsonl(run_dir / GENERATIONS)
        for p in rec["pairs"]
    }


def check_resume(killed: Path, clean: Path, cmd_for, min_lines: int = 2) -> None:
    cache = killed / TEACHER_CACHE
    kill_when_started(cmd_for(killed), cache, min_lines)
    assert not (killed / GENERATIONS).exists()  # written whole at the end, never half
    before_restart = cache.read_bytes()
    complete = before_restart[: before_restart.rfind(b"\n") + 1]
    done_before = [json.loads(line)["record"]["chunk_id"] for line in complete.decode().splitlines()]
    assert done_before, "nothing finished before the kill"
    assert len(done_before) < lines(killed / CHUNKS), "every chunk finished before the kill: nothing was resumed"
    finish(cmd_for(killed))
    finish(cmd_for(clean))

    assert cache.read_bytes().startswith(complete)  # finished chunks kept byte for byte, not regenerated
    ids = [rec["chunk_id"] for rec in read_jsonl(killed / GENERATIONS)]
    assert len(ids) == len(set(ids)), "a chunk was written twice"
    assert ids == [rec["chunk_id"] for rec in read_jsonl(clean / GENERATIONS)]
    assert pair_set(killed) == pair_set(clean) and pair_set(clean)
    summary = json.loads((killed / GENERATE_SUMMARY).read_text())
    assert summary["chunks_reused"] == len(done_before)
    assert summary["chunks_generated"] == len(ids) - len(done_before)


def test_sigkill_and_resume_with_a_scripted_teacher(tmp_path: Path) -> None:
    killed = prepared_run(tmp_path / "killed")
    clean = tmp_path / "clean"
    shutil.copytree(killed, clean)

    def cmd_for(run_dir: Path) -> list[str]:
        return [sys.executable, "-c", CHILD.format(repo=str(REPO)), str(run_dir)]

    check_resume(killed, clean, cmd_for)


@pytest.mark.slow
def test_sigkill_and_resume_with_the_bundled_teacher(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from distillqa.models import bundled_teacher_gguf

    bundled_teacher_gguf()  # skip-free: a missing bundled model is a broken install, so fail loudly
    source = tmp_path / "facts.txt"
    source.write_text("\n\n".join(PARAGRAPHS) + "\n", encoding="utf-8")
    cli = str(Path(sys.executable).parent / "distillqa")
    killed = tmp_path / "killed"
    # one paragraph a chunk, and teacher calls of two requests (one chunk's answers), so chunks
    # finish one after another and there are some left to do when the first line appears
    settings = ["--set", "chunk.max_tokens=40", "--set", "chunk.overlap_tokens=0", "--set", "generate.answers_per_chunk=2",
                "--set", "generate.retries=1", "--set", "generate.wave_requests=2"]
    finish([cli, "ingest", str(source), "--out", str(killed), "-q", *settings])
    finish([cli, "chunk", str(killed), "-q"])
    assert len(read_jsonl(killed / CHUNKS)) == len(PARAGRAPHS)
    clean = tmp_path / "clean"
    shutil.copytree(killed, clean)

    def cmd_for(run_dir: Path) -> list[str]:
        return [cli, "generate", str(run_dir), "-q"]

    check_resume(killed, clean, cmd_for, min_lines=1)
