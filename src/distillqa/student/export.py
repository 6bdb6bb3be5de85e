"""`distillqa export`: the trained student as ONNX (fp32, and int8 by default) for fast CPU answers.

The student's logits come from a plain PyTorch module; exported with torch's ONNX exporter and
run by onnxruntime they are the same numbers (fp32, to ~1e-5), and no faster than PyTorch on a
CPU for full windows. Dynamic int8 quantisation (onnxruntime's `quantize_dynamic`: int8 weights, activations
quantised per batch at run time) stores the weights in a quarter of the space and runs the
matrix products on integer kernels; it moves the logits a little, so the export measures how far
on a few sample windows and records it in `export.json`. Windows, span search and ranking stay
the ones in `distillqa.student.features` and `ranking`, so an answer differs only by these
numerics. docs/benchmarks.md has the speed, size and devset F1 of each.

RUN/student_onnx/ is a model folder of its own: `model.onnx`, `model_int8.onnx`, the tokenizer,
`config.json`, the reader's windows and `export.json` (how it was made, and the sha256 of the
weights it came from, so a student retrained since is never read through a stale export).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from distillqa.config import Config
from distillqa.errors import DistillqaError
from distillqa.io import atomic_dir, write_json
from distillqa.layout import STUDENT, STUDENT_ONNX, RunFolder, file_sha256
from distillqa.student.reader import EXPORT_NOTE, ONNX_FILES, WEIGHTS_FILE, WINDOW_FILE, OnnxReader, Reader, quiet_transformers

# A sample to trace the graph with and to compare the runtimes on: two windows of other lengths.
SAMPLE_QUESTIONS = ["Who built the harbour light?", "When was the light automated and by whom was it run?"]
SAMPLE_PASSAGES = [
    "The harbour light of Port Elwin was built in 1854 by the engineer Margaret Hale. It stands on a granite "
    "ledge at the mouth of the Elwin River, and its white tower is 31 metres tall.",
    "The last keeper, Edward Vance, left the tower in 1986, when the light was automated. Today the building "
    "houses a small museum run by the Port Elwin Historical Society.",
]
OUTPUTS = ("start_logits", "end_logits")
FP32_TOLERANCE = 1e-3  # max |logit difference| of the fp32 export; more means the export is wrong


def export_fp32(model_dir: Path, target: Path, names: list[str], sample: dict) -> None:
    """The student as one ONNX graph, its attention, layer norms and GELUs fused for onnxruntime.

    The model is traced with eager attention by torch's TorchScript exporter: onnxruntime's
    transformer optimizer (what optimum's ORTOptimizer runs) recognises the attention pattern in
    that graph and fuses it into one `Attention` op, which the dynamo exporter's graph does not
    give it (measured: docs/benchmarks.md). The fused ops are onnxruntime's own, so the file
    is for onnxruntime.
    """
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModelForQuestionAnswering

    from distillqa.runtime import quiet_export

    with quiet_transformers():
        model = AutoModelForQuestionAnswering.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")

    class QaLogits(torch.nn.Module):
        """The QA model as a function of its input tensors, returning (start, end) logits."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.model(**dict(zip(names, inputs)))
            return out.start_logits, out.end_logits

    traced = target.with_name("traced.onnx")
    axes = {name: {0: "batch", 1: "length"} for name in [*names, *OUTPUTS]}
    module = QaLogits()
    with quiet_export(module):
        torch.onnx.export(
            module, tuple(sample[n] for n in names), str(traced), input_names=names, output_names=list(OUTPUTS),
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    # the attention fusion needs the head count and width (left at 0, it guesses and misses)
    heads, width = getattr(model.config, "num_attention_heads", 0), getattr(model.config, "hidden_size", 0)
    with _quiet_logging():
        optimize_model(str(traced), model_type="bert", num_heads=heads, hidden_size=width).save_model_to_file(str(target))
    traced.unlink()


# What int8 quantises: every weight onnxruntime can (the fused attention's query/key/value
# projections, the other MatMuls, the embedding table), one scale per tensor. Measured on the
# devset's human questions (docs/benchmarks.md, 351 questions): the fastest and smallest of the
# four quantisations tried (1.6x PyTorch fp32, 23 MB), and -0.3 F1; per-channel scales were
# slower and lost more (-0.8), and MatMuls alone gained little speed (1.15x) for -1.1.
INT8_OPS: tuple[str, ...] | None = None
INT8_PER_CHANNEL = False


def quantize_int8(
    source: Path, target: Path, op_types: tuple[str, ...] | None = INT8_OPS, per_channel: bool = INT8_PER_CHANNEL
) -> None:
    """Dynamic int8 quantisation (int8 weights, activations quantised per batch at run time) of
    the weights of `op_types` (None: every op onnxruntime can quantise)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_logging():
        # the fused ops are outside ONNX's shape inference: their outputs are float
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=list(op_types) if op_types else None,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """onnxruntime's optimizer and quantiser log advice at WARNING on the root logger, and one of
    their modules calls `logging.basicConfig` when imported, which would print every later log
    record of the process (the pipeline's INFO, bm25s' DEBUG): the root logger is put back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        root.handlers[:] = handlers
        root.setLevel(level)


def _sample_logits(reader: Reader) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits of the sample windows, padded to one batch."""
    features = reader.tokenizer(SAMPLE_QUESTIONS, SAMPLE_PASSAGES, padding=True, return_tensors="np")
    return reader._forward({k: v.astype(np.int64) for k, v in features.items() if k in reader.tokenizer.model_input_names})


def compare(reference: Reader, other: Reader) -> dict[str, Any]:
    """How far `other`'s logits are from `reference`'s on the sample windows: the largest
    difference and whether each window's best start and end token agree."""
    ref_start, ref_end = _sample_logits(reference)
    start, end = _sample_logits(other)
    diff = max(float(np.abs(ref_start - start).max()), float(np.abs(ref_end - end).max()))
    same = bool((ref_start.argmax(1) == start.argmax(1)).all() and (ref_end.argmax(1) == end.argmax(1)).all())
    return {"max_logit_diff": round(diff, 6), "same_best_tokens": same}


def export_student(model_dir: Path, out: Path, quantize: str = "int8") -> dict:
    """Write `out` (replacing it only when complete) from the PyTorch student in `model_dir`.
    Returns the summary recorded in `export.json`."""
    import onnxruntime
    import torch

    started = time.perf_counter()
    reader = Reader.load(model_dir, device="cpu")
    model, tokenizer = reader.model, reader.tokenizer
    names = list(tokenizer.model_input_names)
    sample = tokenizer(SAMPLE_QUESTIONS, SAMPLE_PASSAGES, padding=True, return_tensors="pt")
    formats = ["onnx"] + (["onnx-int8"] if quantize == "int8" else [])
    with atomic_dir(out) as tmp:
        try:
            export_fp32(model_dir, tmp / ONNX_FILES["onnx"], names, sample)
            if quantize == "int8":
                quantize_int8(tmp / ONNX_FILES["onnx"], tmp / ONNX_FILES["onnx-int8"])
        except Exception as e:  # the exporter, the optimizer and the quantiser raise many types
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DistillqaError(
                f"{model_dir}: cannot export the student to ONNX ({reason[:300]}); --set export.onnx=false reads it with PyTorch"
            ) from None
        tokenizer.save_pretrained(tmp)
        model.config.save_pretrained(tmp)
        if (model_dir / WINDOW_FILE).is_file():
            shutil.copy(model_dir / WINDOW_FILE, tmp / WINDOW_FILE)
        checks = {name: compare(reader, OnnxReader(tmp / ONNX_FILES[name], name)) for name in formats}
        if checks["onnx"]["max_logit_diff"] > FP32_TOLERANCE:
            raise DistillqaError(f"{model_dir}: the fp32 ONNX export gives other logits than PyTorch ({checks['onnx']}); --set export.onnx=false reads it with PyTorch")
        weights = model_dir / WEIGHTS_FILE
        note = {
            "source": str(model_dir),
            "source_sha256": file_sha256(weights) if weights.is_file() else None,
            "formats": {
                name: {"file": ONNX_FILES[name], "mb": round((tmp / ONNX_FILES[name]).stat().st_size / 1e6, 1), **checks[name]}
                for name in formats
            },
            "quantization": (
                f"dynamic int8 (onnxruntime quantize_dynamic): QInt8 weights of {', '.join(INT8_OPS) if INT8_OPS else 'every op'}, "
                f"{'per channel' if INT8_PER_CHANNEL else 'per tensor'}"
            ) if quantize == "int8" else None,
            "exporter": f"torch {torch.__version__} torch.onnx.export (TorchScript, eager attention), onnxruntime.transformers.optimizer (bert fusions)",
            "onnxruntime": onnxruntime.__version__,
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_json(tmp / EXPORT_NOTE, note)
    return note


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """RUN/student -> RUN/student_onnx (with `export.onnx` off: a folder with only the note)."""
    run.require(STUDENT)
    if not cfg.export.onnx:
        with atomic_dir(run.path(STUDENT_ONNX)) as tmp:
            write_json(tmp / EXPORT_NOTE, {"formats": {}, "note": "export.onnx is off: the student is read with PyTorch"})
        return {"formats": "none (export.onnx is off)"}
    note = export_student(run.path(STUDENT), run.path(STUDENT_ONNX), cfg.export.quantize)
    summary: dict[str, Any] = {"seconds": note["seconds"]}
    for name, info in note["formats"].items():
        summary[f"{name}_mb"] = info["mb"]
        summary[f"{name}_max_logit_diff"] = info["max_logit_diff"]
    return summary
