"""Load test for `distillqa serve`: many concurrent POST /ask requests over loopback.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/load.py [RUN] [--requests 200] [--concurrency 1 8 32]

Starts `distillqa serve RUN` in a subprocess on 127.0.0.1 (a free port), waits for /health, and
for each `--concurrency` level sends `--requests` questions with at most that many in flight
(httpx); reports latency percentiles, requests per second and errors (which must be 0: the exit
status is 1 otherwise). Without RUN it builds a small run in a temporary folder as `distillqa
run` leaves it: a few documents, the real passage index, and a student with the bundled MiniLM
encoder and an untrained QA head, exported to ONNX (`--no-export`: PyTorch only), so each
request costs what it costs with a real MiniLM student (answers are meaningless). `--set` writes
settings into the built run's config.yaml, e.g. `--set serve.batch_size=1` (no batching) or
`--set answer.reader_runtime=torch`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

QUESTIONS = [
    "Who built the harbour light?",
    "How tall is the white tower?",
    "What did the first lamp burn?",
    "Who designed the paraffin burner?",
    "When was the light automated?",
    "What runs the museum?",
    "How many apple trees are in the orchard?",
    "When is the cider festival?",
]

DOCUMENTS = {
    "harbour.txt": [
        "The harbour light of Port Elwin was built in 1854 by the engineer Margaret Hale. It stands on a granite "
        "ledge at the mouth of the Elwin River, and its white tower is 31 metres tall.",
        "The first lamp burned whale oil and could be seen from 14 miles away. In 1902 the oil lamp was replaced "
        "by a paraffin burner designed by Thomas Quill, and in 1938 the station was connected to the electric grid.",
        "The last keeper, Edward Vance, left the tower in 1986, when the light was automated. Today the building "
        "houses a small museum run by the Port Elwin Historical Society, which opens every summer.",
    ],
    "orchard.txt": [
        "The orchard behind the mill has twelve apple trees, planted in 1921 by the miller Ada Brook. The trees "
        "are an old local variety called Elwin Russet, grown nowhere else.",
        "Every October the village holds a cider festival in the orchard, with music, a pressing contest and a "
        "market. The festival began in 1952 and has been held every year since, except in 2020.",
    ],
}


def build_run(root: Path, export: bool = True, overrides: list[str] | None = None) -> Path:
    """A servable run folder: documents.jsonl, index/ and a MiniLM student with a random QA head
    (and its ONNX export), with `overrides` in its config.yaml."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from distillqa.config import RetrievalConfig, load_config
    from distillqa.io import write_jsonl
    from distillqa.layout import RunFolder
    from distillqa.models import bundled_encoder
    from distillqa.retrieval.index import PassageIndex

    documents = []
    for name, paragraphs in DOCUMENTS.items():
        text, pages = "", []
        for number, paragraph in enumerate(paragraphs, start=1):
            start = len(text) + (2 if text else 0)
            text = f"{text}\n\n{paragraph}" if text else paragraph
            pages.append({"number": number, "start": start, "end": len(text)})
        documents.append({"doc_id": Path(name).stem, "source": name, "title": Path(name).stem, "text": text, "pages": pages})
    root.mkdir(parents=True, exist_ok=True)
    RunFolder(root).save_config(load_config(None, overrides))
    write_jsonl(root / "documents.jsonl", documents)
    (root / "manifest.json").write_text(json.dumps({"stages": {}, "inputs": []}))
    PassageIndex.build(documents, RetrievalConfig(passage_tokens=64, passage_overlap_tokens=16)).save(root / "index")
    hf_logging.set_verbosity_error()  # the QA head is new on purpose: no load report
    AutoModelForQuestionAnswering.from_pretrained(bundled_encoder()).save_pretrained(root / "student")
    AutoTokenizer.from_pretrained(bundled_encoder()).save_pretrained(root / "student")
    if export:
        from distillqa.student.export import export_student

        export_student(root / "student", root / "student_onnx")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            response = httpx.get(f"{url}/health", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server did not answer /health within {timeout_s:.0f} s")


async def load(url: str, n: int, concurrency: int, top_k: int, timeout_s: float) -> tuple[list[float], list[str], float]:
    """Send n requests, `concurrency` at a time. Returns latencies (ms), errors, wall seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in todo:
            body = {"question": QUESTIONS[i % len(QUESTIONS)], "top_k": top_k}
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/ask", json=body)
                if response.status_code != 200 or "answers" not in response.json():
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            latencies.append((time.perf_counter() - started) * 1000)

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(concurrency))), timeout_s)
        return latencies, errors, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="A run folder with index/ and student/ (default: build one).")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--no-export", action="store_true", help="built run: no ONNX export (PyTorch reader)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="built run: a config setting (repeatable)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=600, help="Give up on the whole load after this long.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            print("building a small run (real index, MiniLM student with an untrained QA head)...", flush=True)
            run = build_run(Path(tmp) / "run", export=not args.no_export, overrides=args.overrides)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "distillqa", "serve", str(run), "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        failed = False
        try:
            health = wait_for_health(url, server, timeout_s=300)
            print(
                f"serving {health['documents']} documents, {health['passages']} passages, reader {health['model']} "
                f"({health.get('reader_runtime', 'torch')}) at {url}"
            )
            for concurrency in args.concurrency:
                latencies, errors, wall = asyncio.run(load(url, args.requests, concurrency, args.top_k, args.timeout_s))
                ms = sorted(latencies)
                p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
                print(
                    f"{len(ms)} requests, concurrency {concurrency}, top_k {args.top_k}: "
                    f"p50 {statistics.median(ms):.0f} ms  p95 {p95:.0f} ms  max {ms[-1]:.0f} ms  "
                    f"{len(ms) / wall:.1f} requests/s  errors {len(errors)}",
                    flush=True,
                )
                for error in errors[:5]:
                    print(f"  error: {error}")
                failed = failed or bool(errors)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
