# forcebench: `make bench` and `make test` install everything they need on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: bench test test-all test-slurm lint install clean gpu-check

install: $(STAMP)

# Re-install when the pinned requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/forcebench run -m sweep=default hydra/launcher=parallel
	$(VENV)/bin/forcebench leaderboard runs/bench --out results

# One pytest worker per core (pytest-xdist), each on one torch thread (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

# A real single-node SLURM cluster (Debian's slurm-wlm and munge, installed when missing; root).
test-slurm: $(STAMP)
	command -v slurmctld >/dev/null || (apt-get update -q && apt-get install -y -q slurm-wlm munge)
	$(PY) -m pytest -q -m slurm tests/run/test_slurm_cluster.py

# One command on a CUDA GPU (kernels, full-size rollouts, targets; under 8 minutes on an H200), run by the
# machine's own python: it needs torch, triton, numpy and safetensors there, no install (docs/gpu_check.md).
gpu-check:
	$(PYTHON) -m bench.tools.gpu_check --out results/perf

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache
