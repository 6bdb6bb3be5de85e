"""transformers teacher: any causal LM from the hub or a local folder, batched on GPU or CPU.

On CUDA it loads in bf16 (fp16 on cards without bf16) or, with `teacher.load_in_4bit`, in 4-bit
NF4 with double quantisation like the seed notebook; on CPU it runs in float32. Requests are
generated in padded batches: prompts are left-padded (a decoder continues from the last position,
so padding must come first) and sorted by length so a batch wastes little compute on padding.

JSON schemas are enforced with an xgrammar logits processor when the optional `xgrammar` package
is installed; without it the output is unconstrained and the generation stage's tolerant parser
has to cope (`supports_json_schema` tells it which).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from distillqa.config import TeacherConfig
from distillqa.errors import DistillqaError
from distillqa.models import bundled_teacher_gguf, cuda_precision, pick_device
from distillqa.teacher.base import GenerationRequest, GenerationResult, error_line

log = logging.getLogger("distillqa")


def resolve_dtype(name: str) -> torch.dtype:
    """'auto' means bf16 on CUDA (fp16 where the card lacks bf16) and float32 on CPU."""
    if name != "auto":
        return getattr(torch, name)
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cuda_precision()]


def resolve_source(model: str | None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name in it or None). A local folder is checked here, so a typo
    fails clearly; a hub id is left to from_pretrained. A .gguf file, or None for the bundled
    SmolLM2 GGUF, is dequantised by transformers (needs the `gguf` package): the same model as
    the llama.cpp backend, without llama.cpp, which is what to try when llama.cpp crashes."""
    if not model:
        gguf = bundled_teacher_gguf()
        return str(gguf.parent), gguf.name
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise DistillqaError(f"{path}: GGUF file not found: check teacher.model")
        return str(path.parent), path.name
    if path.exists():
        if not (path / "config.json").is_file():
            raise DistillqaError(f"{path}: not a transformers model folder (no config.json)")
        return str(path), None
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        raise DistillqaError(f"{model}: model folder not found: check teacher.model")
    return model, None


def batch_seed(seeds: list[int]) -> int:
    """One torch seed per batch, derived from its requests' seeds so the same batch repeats exactly."""
    return zlib.crc32(",".join(map(str, seeds)).encode())


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Drop the first stop string and what follows, as OpenAI servers and llama.cpp do."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


class TransformersTeacher:
    """Batched chat generation with a transformers causal LM."""

    def __init__(self, cfg: TeacherConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, gguf_file = resolve_source(cfg.model)
        self.device = pick_device()
        self.dtype = resolve_dtype(cfg.dtype)
        self.batch_size = cfg.batch_size
        load_kwargs: dict[str, Any] = {"dtype": self.dtype}
        gguf = {"gguf_file": gguf_file} if gguf_file else {}
        if cfg.load_in_4bit:
            load_kwargs["quantization_config"] = self._nf4_config()
        if self.device.type == "cuda":
            load_kwargs["device_map"] = {"": self.device.index or 0}

        self.tokenizer = _from_pretrained(AutoTokenizer, source, **gguf)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _from_pretrained(AutoModelForCausalLM, source, **gguf, **load_kwargs)
        self.model.eval()

        label = gguf_file or (Path(source).name if Path(source).is_dir() else source)
        self.name = f"transformers:{label}" + (":nf4" if cfg.load_in_4bit else "")
        self._has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self._eos_ids = self._stop_token_ids()
        self._compiler: Any = None  # xgrammar.GrammarCompiler, built on the first schema request
        self.supports_json_schema = importlib.util.find_spec("xgrammar") is not None
        self._warned_no_grammar = False

    def _nf4_config(self) -> Any:
        """4-bit NF4 + double quantisation, computing in the resolved dtype (bf16 on recent cards)."""
        if self.device.type != "cuda":
            raise DistillqaError(
                "teacher.load_in_4bit needs a CUDA GPU (bitsandbytes NF4): set teacher.load_in_4bit=false on CPU"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise DistillqaError("teacher.load_in_4bit needs bitsandbytes: pip install 'distillqa[gpu]'")
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=self.dtype,
        )

    def _stop_token_ids(self) -> list[int]:
        """End-of-turn tokens: the generation config's (chat models often add one) or the tokenizer's EOS."""
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return [ids] if isinstance(ids, int) else list(ids or [])

    # -- prompts ---------------------------------------------------------------------------
    def prompt(self, messages: list[dict[str, str]]) -> str:
        """The model's chat template when it has one, else a plain "role: content" transcript."""
        if self._has_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def _encode(self, messages: list[dict[str, str]]) -> list[int]:
        # A chat template already writes the special tokens (BOS etc.); a plain transcript needs them added.
        return self.tokenizer(self.prompt(messages), add_special_tokens=not self._has_template)["input_ids"]

    # -- generation ------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Group requests that share settings, batch each group by prompt length, keep input order."""
        encoded = [self._encode(r.messages) for r in requests]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            schema = json.dumps(r.json_schema, sort_keys=True) if r.json_schema is not None else None
            groups[(schema, r.temperature, r.max_tokens, tuple(r.stop))].append(i)
        results: list[GenerationResult | None] = [None] * len(requests)
        for indices in groups.values():
            indices.sort(key=lambda i: len(encoded[i]), reverse=True)  # longest first: OOM shows up early
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                texts = self._generate_batch([requests[i] for i in batch], [encoded[i] for i in batch])
                for i, text in zip(batch, texts):
                    results[i] = GenerationResult(text=text)
        return results  # type: ignore[return-value]  # every slot is filled above

    def _generate_batch(self, reqs: list[GenerationRequest], ids: list[list[int]]) -> list[str]:
        """One padded generate() call; all `reqs` share schema, temperature, max_tokens and stop."""
        first = reqs[0]
        enc = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": first.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self._eos_ids,
        }
        if first.temperature > 0:
            kwargs.update(do_sample=True, temperature=first.temperature)
        else:  # greedy; clear the sampling knobs a model's generation_config may carry
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if first.stop:
            kwargs.update(stop_strings=list(first.stop), tokenizer=self.tokenizer)
        if first.json_schema is not None:
            processor = self._grammar_processor(first.json_schema)
            if processor is not None:
                from transformers import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList([processor])
        cuda_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
                torch.manual_seed(batch_seed([r.seed for r in reqs]))
                out = self.model.generate(**enc, **kwargs)
        except torch.OutOfMemoryError:
            raise DistillqaError(
                f"out of GPU memory generating a batch of {len(reqs)}: lower teacher.batch_size "
                f"(now {self.batch_size}) or teacher.max_new_tokens, or use teacher.load_in_4bit=true"
            ) from None
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(t, list(first.stop)) for t in texts]

    def _grammar_processor(self, schema: dict) -> Any:
        """A fresh xgrammar logits processor (they are single-use) or None without xgrammar."""
        if not self.supports_json_schema:
            if not self._warned_no_grammar:
                log.warning("xgrammar is not installed: transformers teacher output is not schema-constrained")
                self._warned_no_grammar = True
            return None
        import xgrammar
        import xgrammar.contrib.hf

        if self._compiler is None:
            vocab_size = self.model.config.get_text_config().vocab_size  # logits width, may exceed len(tokenizer)
            info = xgrammar.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=vocab_size, stop_token_ids=self._eos_ids
            )
            self._compiler = xgrammar.GrammarCompiler(info)  # caches compiled schemas
        try:
            # Compact JSON: free whitespace lets small models loop on spaces until max_tokens.
            grammar = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        except RuntimeError as e:
            raise DistillqaError(f"xgrammar cannot compile the JSON schema: {error_line(e)}") from None
        return xgrammar.contrib.hf.LogitsProcessor(grammar)

    def close(self) -> None:
        """Free the weights now (GPU memory above all) rather than whenever the object is collected."""
        if hasattr(self, "model"):
            del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _from_pretrained(cls: Any, source: str, **kwargs: Any) -> Any:
    """from_pretrained with the hub's errors turned into one line that says what to do."""
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        if Path(source).is_dir():
            raise DistillqaError(f"{source}: cannot load {cls.__name__}: {error_line(e)}") from None
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise DistillqaError(
                f"{source}: not found locally and the hub is unreachable: download it first or give a local folder"
            ) from None
        raise DistillqaError(f"{source}: cannot load from the Hugging Face hub: {error_line(e)}") from None
