"""Choosing and loading the configured teacher backend.

The local backends (llama.cpp, transformers) run native code that can crash the process, so by
default (`teacher.isolate`) they are served from a worker process (`teacher.worker`); the HTTP
backend is plain Python and runs in-process. Imports are lazy so a backend's heavy dependencies
load only when it is used.
"""

from __future__ import annotations

from functools import partial

from distillqa.config import TeacherConfig
from distillqa.teacher.base import Teacher

NATIVE_BACKENDS = ("llamacpp", "transformers")


def load_backend(cfg: TeacherConfig) -> Teacher:
    """The configured backend, in this process."""
    if cfg.backend == "llamacpp":
        from distillqa.teacher.llamacpp import LlamaCppTeacher

        return LlamaCppTeacher(cfg)
    if cfg.backend == "transformers":
        from distillqa.teacher.hf import TransformersTeacher

        return TransformersTeacher(cfg)
    from distillqa.teacher.openai_http import OpenAITeacher

    return OpenAITeacher(cfg)


def load_teacher(cfg: TeacherConfig) -> Teacher:
    """The configured backend, in a worker process when it runs native code and `cfg.isolate`."""
    if cfg.isolate and cfg.backend in NATIVE_BACKENDS:
        from distillqa.teacher.worker import IsolatedTeacher

        return IsolatedTeacher(partial(load_backend, cfg), cfg.backend)
    return load_backend(cfg)
