"""ONNX export and onnxruntime sessions, shared by the query encoder and the student reader.

The query encoder is exported with torch's dynamo exporter (`export_onnx`); the student with the
TorchScript exporter, whose graph onnxruntime's optimizer can fuse (`student.export`); both under
`quiet_export`, and both run by `ort_session` on the CPU. For one short question onnxruntime
skips most of PyTorch's per-operator overhead (~4x); for the student's full windows it is no
faster in fp32, and its gain comes from int8 (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def launch_rank() -> int:
    """This process's rank when `torchrun` or `accelerate launch` started several (their RANK
    variable), else 0. Only rank 0 writes the run folder; the others only train (DDP)."""
    return int(os.environ.get("RANK", "0"))


def launch_world_size() -> int:
    """How many processes `torchrun` / `accelerate launch` started (WORLD_SIZE), else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one, e.g. in containers)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def quiet_export(module: torch.nn.Module) -> Iterator[None]:
    """Around a `torch.onnx.export` call: the module in eval mode (each submodule's own mode
    restored after), no gradients, and none of the exporter's progress output, which it writes
    to stdout and through warnings and logging."""
    import torch

    modes = {m: m.training for m in module.modules()}  # a wrapper's own mode is not its model's
    module.eval()
    quiet_torch = logging.getLogger("torch")
    level = quiet_torch.level
    quiet_torch.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        quiet_torch.setLevel(level)
        for m, training in modes.items():
            m.train(training)


def export_onnx(
    module: torch.nn.Module,
    sample: Sequence[torch.Tensor],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    max_length: int,
) -> None:
    """Write `module` (called with the inputs in `input_names` order, each [batch, length]) as one
    self-contained ONNX file with dynamic batch and length, with torch's dynamo exporter. Raises
    when the exporter cannot."""
    import torch

    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=max_length)
    with quiet_export(module):
        torch.onnx.export(
            module,
            tuple(sample),
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=(tuple({0: batch, 1: length} for _ in input_names),),
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def ort_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session over `threads` cores (None: all usable ones).

    Idle threads sleep instead of spinning, so they do not take the cores from the BM25 search,
    the other model and the server that run between calls. Denormal floats are read as zero: a
    trained model's tiny activations otherwise take a slow path in the CPU (the difference is
    below 1e-38).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
