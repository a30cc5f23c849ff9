# The README's two commands: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.streamdet-installed
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint typecheck pytest bench bench-pipeline bench-liveview bench-faults eval-ped2 clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed before the project: an unpinned torch pulls a newer multi-GB build.
$(STAMP): pyproject.toml requirements/torch.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/torch.txt
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP)

# Debian packages the tests need (GStreamer's RTSP server, ...): installed only when missing.
system-deps:
	bash scripts/install-system-deps.sh

demo: setup
	$(VENV)/bin/streamdet demo

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy streamdet

pytest: setup system-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: setup system-deps
	$(PY) benchmarks/capture.py

bench-pipeline: setup system-deps
	$(PY) benchmarks/pipeline.py

bench-liveview: setup system-deps
	$(PY) benchmarks/liveview.py

# The fault suite (~40 min: a 30-minute soak); FAULTS_ARGS="--soak-minutes 2" makes it ~10.
FAULTS_ARGS ?=
bench-faults: setup system-deps
	$(PY) benchmarks/faults.py $(FAULTS_ARGS)

# UCSD Ped2 from the shared folder beside this repository (never copied into it).
eval-ped2: setup
	$(VENV)/bin/streamdet eval --dataset ../shared/data/ucsd_ped2 --out runs/ped2

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
