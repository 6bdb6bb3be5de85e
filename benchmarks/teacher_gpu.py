"""Throughput of the transformers teacher: batch 1 vs larger batches, bf16 vs 4-bit NF4.

Builds a ~100M-parameter Llama-style model with random weights (nothing is downloaded), saves it,
and times `TransformersTeacher.generate` on prompts of chunk-like length. Random weights produce
gibberish, but the compute per token is what a real model of this shape costs, which is what
batch size and quantisation change. Also checks that the 4-bit NF4 path loads and generates, and
(when xgrammar is installed) what JSON-schema constraints cost per token.

    python benchmarks/teacher_gpu.py                      # on a CUDA machine: the full table
    python benchmarks/teacher_gpu.py --device cpu --small # quick CPU check that everything runs
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import random
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int


FULL = Shape(hidden=768, layers=12, heads=12, intermediate=2048, vocab=32000)  # ~110M parameters, tied
SMALL = Shape(hidden=64, layers=2, heads=2, intermediate=128, vocab=2000)


def build_model(folder: Path, shape: Shape) -> int:
    """Save a random Llama and a tokenizer with `shape.vocab` tokens; returns the parameter count.

    The tokenizer spells prompts one ASCII character per token (no merges) but knows `vocab`
    tokens, so the output layer has a realistic width and every sampled id decodes to text.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    chars = [chr(256 + 10), chr(256 + 32)] + [chr(b) for b in range(33, 127)]  # GPT-2 byte-level spelling
    fillers = ("".join(t) for t in itertools.product(string.ascii_lowercase, repeat=3))
    tokens = specials + chars + list(itertools.islice(fillers, shape.vocab - len(specials) - len(chars)))
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
    tok.add_special_tokens(specials)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=4096,
        bos_token_id=0,
        eos_token_id=2,
        tie_word_embeddings=True,  # as small Llamas (SmolLM2) do
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def make_requests(n: int, prompt_chars: int, new_tokens: int, schema: dict | None) -> list:
    """Chunk-like prompts of varied length (so batches need padding), greedy, distinct seeds."""
    from distillqa.teacher.base import GenerationRequest

    rng = random.Random(0)
    words = ["river", "delta", "basin", "flood", "silt", "Nile", "sea", "north", "water", "valley"]
    out = []
    for i in range(n):
        length = rng.randint(prompt_chars // 2, prompt_chars)
        text = " ".join(rng.choice(words) for _ in range(length // 5))[:length]
        messages = [{"role": "user", "content": f"Text: {text}\nWrite a question about the text."}]
        out.append(
            GenerationRequest(messages=messages, json_schema=schema, max_tokens=new_tokens, temperature=0.0, seed=i)
        )
    return out


def run_case(teacher, requests: list) -> dict:
    """Time one generate() call; count generated tokens as the non-pad tokens after the prompt."""
    import torch

    counted = {"tokens": 0}
    generate = teacher.model.generate

    def counting_generate(**kwargs):
        out = generate(**kwargs)
        new = out[:, kwargs["input_ids"].shape[1] :]
        counted["tokens"] += int((new != teacher.tokenizer.pad_token_id).sum())
        return out

    teacher.model.generate = counting_generate
    if teacher.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    results = teacher.generate(requests)
    if teacher.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    teacher.model.generate = generate
    errors = [r.error for r in results if r.error]
    if errors or not any(r.text for r in results):
        raise SystemExit(f"generation failed: {errors[:1] or 'all outputs empty'}")
    peak = torch.cuda.max_memory_allocated() / 2**30 if teacher.device.type == "cuda" else float("nan")
    return {"seconds": seconds, "tokens": counted["tokens"], "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny model and few tokens: a quick run check")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,16,64; small: 1,4,8)")
    parser.add_argument("--new-tokens", type=int, default=None, help="max new tokens (default 128; small: 16)")
    parser.add_argument("--prompt-chars", type=int, default=None, help="longest prompt (default 1200; small: 200)")
    args = parser.parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch loads, so the teacher picks the CPU

    import torch

    if importlib.util.find_spec("distillqa") is None:  # a bare GPU machine: run from the checkout
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from distillqa.config import TeacherConfig
    from distillqa.teacher.hf import TransformersTeacher

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible: run with --device cpu --small for a CPU check")
    shape = SMALL if args.small else FULL
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,4,8" if args.small else "1,16,64")).split(",")]
    new_tokens = args.new_tokens or (16 if args.small else 128)
    prompt_chars = args.prompt_chars or (200 if args.small else 1200)
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "llama-random"
        params = build_model(folder, shape)
        print(f"model: random Llama, {params / 1e6:.1f}M parameters, vocab {shape.vocab}; device: {device_name}")
        print(f"new tokens per request: {new_tokens}; prompts up to {prompt_chars} tokens\n")

        header = (
            f"{'weights':<10}{'batch':>6}{'schema':>8}{'requests':>9}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'peak GiB':>10}"
        )
        print(header)
        print("-" * len(header))
        rows = [(b, False) for b in batch_sizes]
        if importlib.util.find_spec("xgrammar"):
            rows.append((batch_sizes[-1], True))
        teacher = TransformersTeacher(TeacherConfig(backend="transformers", model=str(folder)))
        for batch, with_schema in rows:
            bench(teacher, batch, with_schema, prompt_chars, new_tokens)
        teacher.close()
        if args.device == "cuda":
            if importlib.util.find_spec("bitsandbytes") is None:
                print(f"{'nf4':<10} skipped: bitsandbytes is not installed (pip install 'distillqa[gpu]')")
                return
            teacher = TransformersTeacher(TeacherConfig(backend="transformers", model=str(folder), load_in_4bit=True))
            for batch in (1, batch_sizes[-1]):
                bench(teacher, batch, False, prompt_chars, new_tokens)
            teacher.close()


def bench(teacher, batch: int, with_schema: bool, prompt_chars: int, new_tokens: int) -> None:
    """One table row: a warm-up call (kernels, allocator, grammar compile), then the timed call."""
    teacher.batch_size = batch
    n_requests = 4 if batch == 1 else batch
    requests = make_requests(n_requests, prompt_chars, new_tokens, SCHEMA if with_schema else None)
    run_case(teacher, requests[:batch])
    r = run_case(teacher, requests)
    label = "nf4" if teacher.name.endswith(":nf4") else str(teacher.dtype).removeprefix("torch.")
    print(
        f"{label:<10}{batch:>6}{'json' if with_schema else '-':>8}{n_requests:>9}{r['tokens']:>8}"
        f"{r['seconds']:>9.2f}{r['tokens'] / r['seconds']:>9.0f}{r['peak_gib']:>10.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
