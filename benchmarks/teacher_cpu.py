"""Teacher speed on the CPU: the llama.cpp guards and the worker process, before and after.

    .venv/bin/python benchmarks/teacher_cpu.py [--requests 24] [--model PATH.gguf]

Each configuration answers the same answer-first requests (the pipeline's real prompt, ~270
tokens, for sentences of examples/sample.md) and reports prompt+generation throughput:
- "before": `Llama` in this process with its defaults (weight repacking on, the KV cache of the
  previous prompt's common prefix reused), as distillqa ran it until the AMX crash fix;
- "after": what `load_teacher` gives now (a worker process, repacking off, the prompt
  cache reused only at 8-token blocks), and the same with repacking on or in-process, to show
  what each part costs.
Tokens are counted with the model's own tokenizer; the first request of each run is a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from distillqa.text import sentence_spans
from distillqa.config import TeacherConfig
from distillqa.models import bundled_teacher_gguf
from distillqa.questions.candidates import extract_candidates
from distillqa.teacher.backends import load_teacher
from distillqa.teacher.base import GenerationRequest
from distillqa.teacher.prompts import question_messages

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample.md"


def requests(n: int) -> list[GenerationRequest]:
    """n answer-first requests over the sample's sentences, as the generate stage builds them."""
    text = SAMPLE.read_text(encoding="utf-8")
    cands = [c for start, end in sentence_spans(text) for c in extract_candidates(text[start:end], 2)]
    out = []
    for i in range(n):
        c = cands[i % len(cands)]
        out.append(GenerationRequest(messages=question_messages(c.sentence, c.text, c.kind, as_json=False),
                                     max_tokens=40, temperature=0.7, seed=i, stop=["\n"]))
    return out


def count_tokens(llm, text: str) -> int:
    return len(llm.tokenize(text.encode(), add_bos=False, special=False)) if text else 0


def prompt_tokens(llm, req: GenerationRequest) -> int:
    return count_tokens(llm, "".join(m["content"] for m in req.messages))


def before(model: Path, reqs: list[GenerationRequest], threads: int) -> tuple[float, float, list[str]]:
    """The old path: Llama in-process, library defaults, prompt-prefix reuse between requests.
    Returns (load seconds, generation seconds after the warm-up request, texts)."""
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(model_path=str(model), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    t1 = time.perf_counter()
    try:
        texts = []
        for i, r in enumerate(reqs):
            if i == 1:
                t2 = time.perf_counter()
            out = llm.create_chat_completion(messages=r.messages, max_tokens=r.max_tokens, temperature=r.temperature,
                                             seed=r.seed, stop=r.stop)
            texts.append(out["choices"][0]["message"]["content"] or "")
        return t1 - t0, time.perf_counter() - t2, texts
    finally:
        llm.close()


def after(model: Path, reqs: list[GenerationRequest], threads: int, **kw) -> tuple[float, float, list[str]]:
    """What `load_teacher` gives with these settings; same return as `before`."""
    t0 = time.perf_counter()
    teacher = load_teacher(TeacherConfig(model=str(model), n_threads=threads, **kw))
    t1 = time.perf_counter()
    try:
        first = teacher.generate(reqs[:1])
        t2 = time.perf_counter()
        rest = teacher.generate(reqs[1:])
        return t1 - t0, time.perf_counter() - t2, [r.text for r in first + rest]
    finally:
        teacher.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the bundled SmolLM2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from llama_cpp import Llama, llama_print_system_info

    model = args.model or bundled_teacher_gguf()
    reqs = requests(args.requests + 1)
    vocab = Llama(model_path=str(model), vocab_only=True, verbose=False)
    n_prompt = sum(prompt_tokens(vocab, r) for r in reqs[1:])
    configs = {
        "before: in-process, repacking on, prefix reuse": lambda: before(model, reqs, args.threads),
        "after: worker, repacking off, 8-token prompt blocks": lambda: after(model, reqs, args.threads),
        "after, repacking on": lambda: after(model, reqs, args.threads, weight_repacking=True),
        "after, in-process": lambda: after(model, reqs, args.threads, isolate=False),
    }
    print(f"model {model.name}, {args.requests} requests, {n_prompt / args.requests:.0f} prompt tokens each, "
          f"{args.threads} thread(s)\n{llama_print_system_info().decode().strip()}")
    print(f"| configuration | load s | requests/s | generated tok/s | prompt+generated tok/s (min-max of {args.repeats}) |")
    print("|---|---:|---:|---:|---:|")
    for name, fn in configs.items():
        loads, rates, gen_rates, all_rates = [], [], [], []
        for _ in range(args.repeats):
            load_s, seconds, texts = fn()
            n_gen = sum(count_tokens(vocab, t) for t in texts[1:])
            loads.append(load_s)
            rates.append(args.requests / seconds)
            gen_rates.append(n_gen / seconds)
            all_rates.append((n_gen + n_prompt) / seconds)
        print(f"| {name} | {statistics.mean(loads):.2f} | {statistics.mean(rates):.2f} | "
              f"{statistics.mean(gen_rates):.1f} | {statistics.mean(all_rates):.0f} "
              f"({min(all_rates):.0f}-{max(all_rates):.0f}) |")
    vocab.close()


if __name__ == "__main__":
    main()
