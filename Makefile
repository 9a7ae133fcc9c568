# Celery Lab. `make lab` to learn, `make test` to check the course, `make bench` for timings (JSON).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# JupyterLab refuses to run as root (containers, CI) unless told it may.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-fast bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

lab: $(VENV)/.installed
	$(VENV)/bin/coursekit up
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 $(ROOT_FLAG) notebooks/00_setup.ipynb

# Tests run in parallel (pytest-xdist), each test process with its own namespace and state folder. Most of a
# test's time is spent waiting on real workers and kernels, so more processes than cores pay: N was measured on
# 2 cores (see README). `make test TEST_PROCS=0` runs serially.
TEST_PROCS ?= 4
test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_PROCS)

# The edit loop: everything except whole-notebook runs and browser tests (markers `notebook`, `browser`).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_PROCS) -m "not notebook and not browser"

bench: $(VENV)/.installed
	$(VENV)/bin/coursekit bench --json | tee bench.json

clean:
	-[ -x $(VENV)/bin/coursekit ] && $(VENV)/bin/coursekit down
	rm -rf $(VENV) .pytest_cache build *.egg-info bench.json
