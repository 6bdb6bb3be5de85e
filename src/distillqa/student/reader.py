"""The student reader: answer questions from given passages with a fine-tuned extractive QA model.

transformers >= 5.3 has no `pipeline("question-answering")`, so this is our own: windows and
span search come from `distillqa.student.features` (the same code the student was trained with), and
the model runs on padded batches of windows under `torch.inference_mode()`. `OnnxReader` runs an
exported student (`distillqa export`) through onnxruntime with the same windows and span search,
and `load_reader` picks the runtime. `Answer.score` is a
probability over the candidate spans of one passage (see `distillqa.student.features.Answer`), so
it says how sure the reader is *within* that passage, not whether the passage holds an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, set_seed

from distillqa.errors import DistillqaError
from distillqa.io import read_json, write_json
from distillqa.layout import STUDENT_ONNX, file_sha256
from distillqa.models import pick_device, resolve_encoder
from distillqa.student.features import DOC_STRIDE, MAX_LENGTH, Answer, check_tokenizer, postprocess_predictions, prepare_eval_features

WINDOW_FILE = "reader_window.json"  # in a trained student's folder: {"max_length", "doc_stride"}
RUN_QA_WINDOW = {"max_length": 384, "doc_stride": 128}  # transformers' run_qa.py defaults
# An exported student (`distillqa export`, `distillqa.student.export`): RUN/student_onnx/ holds
# these files next to the tokenizer, config.json and WINDOW_FILE.
ONNX_FILES = {"onnx-int8": "model_int8.onnx", "onnx": "model.onnx"}  # fastest first
EXPORT_NOTE = "export.json"  # how the files were made, and the sha256 of the weights they came from
WEIGHTS_FILE = "model.safetensors"

log = logging.getLogger("distillqa")


def resolve_model_dir(path: Path | str) -> Path:
    """A run folder -> its trained `student/`; a model folder (has config.json) -> itself."""
    path = Path(path)
    if (path / "student" / "config.json").is_file():
        return path / "student"
    if (path / "config.json").is_file():
        return path
    if (path / "manifest.json").is_file():
        raise DistillqaError(f"{path}: this run has no trained student yet: run `distillqa train {path}` first")
    raise DistillqaError(f"{path}: not a run folder with a student/ nor a model folder with config.json")


def save_window(model_dir: Path, max_length: int, doc_stride: int) -> None:
    """Record the windows a student was trained with, so every reader of it reads the same way."""
    write_json(model_dir / WINDOW_FILE, {"max_length": max_length, "doc_stride": doc_stride})


@contextmanager
def quiet_transformers(hide_warnings: bool = False) -> Iterator[None]:
    """Hide transformers' own progress bars (loading, saving) and, if asked, its warnings.

    The warnings include the load report listing a fresh `qa_outputs` head, which is expected
    when the student starts from a plain encoder.
    """
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    if hide_warnings:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def load_base_student(name: str | None, seed: int) -> tuple[Any, Any]:
    """The untrained student: (encoder + fresh QA head drawn from `seed`, its tokenizer).

    Training starts from exactly this model, and the evaluate stage scores it as the baseline.
    """
    path = resolve_encoder(name)
    set_seed(seed)
    try:
        with quiet_transformers(hide_warnings=True):
            tokenizer = AutoTokenizer.from_pretrained(path)
            # fp32 master weights even from a half-precision checkpoint: AdamW's updates underflow
            # in fp16 (all weights turn NaN after one step); mixed precision comes from autocast
            model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DistillqaError(f"student {path!r}: cannot load it ({reason}); set train.student to an HF id or a local folder") from None
    check_tokenizer(tokenizer, path)
    return model, tokenizer


class Reader:
    """An extractive QA model plus its tokenizer and window settings.

    `device=None` picks CUDA when available, else CPU. Windows default to the training defaults
    (config.py) and are capped at the model's position embeddings.
    """

    runtime = "torch"  # what computes the logits, shown by `serve`'s /health and the benchmarks

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: str | torch.device | None = None,
        max_length: int = MAX_LENGTH,
        doc_stride: int = DOC_STRIDE,
    ):
        self._set_windows(tokenizer, model.config, max_length, doc_stride)
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = model.to(self.device).eval()

    def _set_windows(self, tokenizer: Any, model_config: Any, max_length: int, doc_stride: int) -> None:
        check_tokenizer(tokenizer, getattr(tokenizer, "name_or_path", "tokenizer"))
        self.tokenizer = tokenizer
        # a window can never be longer than the model's position embeddings
        positions = getattr(model_config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, positions)
        self.doc_stride = doc_stride

    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        doc_stride: int | None = None,
    ) -> Reader:
        """Load a trained reader from a model folder (or a run folder's `student/`). Windows default
        to the ones it was trained with (`WINDOW_FILE`, written by the train stage), else
        `RUN_QA_WINDOW`."""
        model_dir = resolve_model_dir(model_dir)
        try:
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(model_dir)
                model = AutoModelForQuestionAnswering.from_pretrained(model_dir, dtype=torch.float32)
        except Exception as e:  # a damaged model folder: safetensors, JSON and OS errors alike
            reason = (str(e).splitlines() or [type(e).__name__])[0]
            raise DistillqaError(f"{model_dir}: cannot load the reader ({reason}): train it again with `distillqa train RUN --force`") from None
        saved = saved_window(model_dir)
        return cls(
            model,
            tokenizer,
            device=device,
            max_length=max_length or saved["max_length"],
            doc_stride=doc_stride or saved["doc_stride"],
        )

    def answer(
        self,
        questions: Sequence[str],
        contexts: Sequence[str],
        top_k: int = 1,
        max_answer_length: int = 30,
        batch_size: int = 32,
    ) -> list[list[Answer]]:
        """The `top_k` best spans of `contexts[i]` answering `questions[i]`, best first.

        A context of any length is read window by window; an empty or blank context gets [].
        `max_answer_length` counts tokens; `batch_size` counts windows per forward pass.
        """
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
        readable = [i for i, c in enumerate(contexts) if c.strip()]
        answers: list[list[Answer]] = [[] for _ in contexts]
        if not readable:
            return answers
        batch_contexts = [contexts[i] for i in readable]
        features = prepare_eval_features(
            [questions[i] for i in readable], batch_contexts, self.tokenizer, self.max_length, self.doc_stride
        )
        start_logits, end_logits = self._logits(features, batch_size)
        found = postprocess_predictions(batch_contexts, features, start_logits, end_logits, top_k, max_answer_length)
        for i, spans in zip(readable, found):
            answers[i] = spans
        return answers

    def _logits(self, features: list[dict], batch_size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start/end logits per window, each trimmed to the window's own tokens.

        Windows are batched by length so that padding to the longest in a batch wastes little.
        """
        names = self.tokenizer.model_input_names
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        starts: list[np.ndarray] = [np.empty(0)] * len(features)
        ends: list[np.ndarray] = [np.empty(0)] * len(features)
        left = self.tokenizer.padding_side == "left"
        for b in range(0, len(order), batch_size):
            batch = order[b : b + batch_size]
            inputs = self.tokenizer.pad(
                [{k: features[i][k] for k in names if k in features[i]} for i in batch], return_tensors="np"
            )
            batch_starts, batch_ends = self._forward({k: v.astype(np.int64) for k, v in inputs.items()})
            for row, i in enumerate(batch):
                n = len(features[i]["input_ids"])
                cut = slice(-n, None) if left else slice(0, n)
                starts[i], ends[i] = batch_starts[row, cut], batch_ends[row, cut]
        return starts, ends

    def _forward(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, [windows, tokens], of one padded batch."""
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()})
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()


def saved_window(model_dir: Path) -> dict:
    """The windows a student was trained with. A QA model from elsewhere (or a student trained
    before windows were saved) was trained with run_qa.py's."""
    return read_json(model_dir / WINDOW_FILE) if (model_dir / WINDOW_FILE).is_file() else RUN_QA_WINDOW


class OnnxReader(Reader):
    """The same reader over an exported ONNX file, run by onnxruntime on the CPU: same windows,
    same span search, logits that differ only by the numerics (fp32 or int8)."""

    def __init__(self, onnx_file: Path, runtime: str, threads: int | None = None):
        from transformers import AutoConfig

        from distillqa.runtime import ort_session

        folder = onnx_file.parent
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder)
            config = AutoConfig.from_pretrained(folder)
        window = saved_window(folder)
        self._set_windows(tokenizer, config, window["max_length"], window["doc_stride"])
        self.session = ort_session(onnx_file, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.runtime = runtime

    def _forward(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        starts, ends = self.session.run(["start_logits", "end_logits"], {k: inputs[k] for k in self.inputs})
        return starts, ends


def load_reader(target: Path | str, runtime: str = "auto", device: str | None = None, threads: int | None = None) -> Reader:
    """The reader of a run folder (or a model folder) in the runtime `answer.reader_runtime` names.

    "auto" takes the fastest exported model present (int8, then fp32 ONNX) on a CPU and PyTorch
    on a GPU. PyTorch is the fallback: an exported file that is missing (when asked for by name),
    unreadable, or made from other weights than the student's now gives one warning and the
    PyTorch reader. `threads` applies to onnxruntime (None: all usable cores).
    """
    target = Path(target)
    if (target / STUDENT_ONNX).is_dir():  # a run folder
        onnx_dir: Path | None = target / STUDENT_ONNX
    elif any((target / name).is_file() for name in ONNX_FILES.values()):  # an export itself
        onnx_dir = target
    else:
        onnx_dir = None
    on_gpu = (torch.device(device) if device is not None else pick_device()).type == "cuda"
    if runtime == "torch" or (runtime == "auto" and (onnx_dir is None or on_gpu)):
        return Reader.load(target, device=device)
    if onnx_dir is None:
        log.warning("%s: no exported student (%s): reading with PyTorch; run `distillqa export %s`", target, STUDENT_ONNX, target)
        return Reader.load(target, device=device)
    names = list(ONNX_FILES) if runtime == "auto" else [runtime]
    present = [n for n in names if (onnx_dir / ONNX_FILES[n]).is_file()]
    if not present and runtime == "auto":  # exported without ONNX files (export.onnx off)
        return Reader.load(target, device=device)
    if not present:
        log.warning("%s: no %s: reading with PyTorch; run `distillqa export %s`", onnx_dir, " or ".join(ONNX_FILES[n] for n in names), target)
        return Reader.load(target, device=device)
    onnx_file = onnx_dir / ONNX_FILES[present[0]]
    try:
        _check_export_source(onnx_dir, resolve_model_dir(target))
        return OnnxReader(onnx_file, present[0], threads)
    except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        log.warning("%s: cannot read with it (%s): reading with PyTorch", onnx_file, reason[:300])
        return Reader.load(target, device=device)


def _check_export_source(onnx_dir: Path, model_dir: Path) -> None:
    """Raise when the export was made from other weights than the student's (retrained since)."""
    note = read_json(onnx_dir / EXPORT_NOTE)
    weights = model_dir / WEIGHTS_FILE
    if weights.is_file() and note.get("source_sha256") != file_sha256(weights):
        raise DistillqaError(f"it was exported from other weights than {weights}: run `distillqa export --force` again")
