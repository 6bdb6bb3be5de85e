"""distillqa: turn documents into a small, fast, private question-answering model."""

__version__ = "0.1.0"
