# Celery Lab. `make lab` to learn, `make test` to check the course, `make bench` for timings (JSON).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make lab PORT=8899` serves on that port; without it, 8888 or else a free port.
PORT   ?=

.PHONY: bytecode lab test test-fast test-browser soak bench screenshots recordings clean

$(PY):
	@echo "Creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change. pip as venv ships it installs the course fine, so it is not
# upgraded (that was a download on every fresh clone), and its version check stays off.
$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "Installing the course's packages into $(VENV) (about a minute on a fresh clone)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $@

# coursekit's modules compiled once: every worker, kernel and check imports them, and where
# PYTHONDONTWRITEBYTECODE is set (as on CI) each of those processes compiled them again (0.06 s of CPU a worker).
bytecode: $(VENV)/.installed
	@$(PY) -m compileall -q coursekit

lab: $(VENV)/.installed bytecode
	@$(VENV)/bin/coursekit lab $(if $(PORT),--port $(PORT))

# Tests run in parallel (pytest-xdist), each test process with its own namespace and state folder. Most of a
# test's time is spent waiting on real workers and kernels, so more processes than cores pay: N was measured on
# 2 cores (see README). `make test TEST_PROCS=0` runs serially. The 15 slowest tests are listed at the end: the
# whole run must stay under 10 minutes on a fresh clone.
TEST_PROCS ?= 5
test: $(VENV)/.installed bytecode
	$(PY) -m pytest -n $(TEST_PROCS) --durations=30

# The edit loop: everything except whole-notebook runs and browser tests (markers `notebook`, `browser`).
test-fast: $(VENV)/.installed bytecode
	$(PY) -m pytest -n $(TEST_PROCS) -m "not notebook and not browser and not crowd"

# Every lesson from 03 on in JupyterLab, with its facts (make test runs three of them there, the rest headless).
test-browser: $(VENV)/.installed
	COURSEKIT_BROWSER_LESSONS=all $(PY) -m pytest -n $(TEST_PROCS) tests/test_browser_chapters.py

# Chapter 06's kill lab five rounds in a row, defaults and right settings each time (left out of `make test`).
soak: $(VENV)/.installed
	COURSEKIT_SOAK=1 $(PY) -m pytest -s -m soak tests/test_lost_tasks.py

bench: $(VENV)/.installed
	$(VENV)/bin/coursekit bench --json | tee bench.json

# The README's pictures, taken in JupyterLab in chromium as the browser tests take theirs.
screenshots: $(VENV)/.installed
	$(PY) tests/screenshots.py docs/screenshots

# The recordings a lesson replays where a learner has no RabbitMQ (coursekit/recordings/), taken again from a real
# run of that lesson on this machine's RabbitMQ (coursekit/replays.py).
recordings: $(VENV)/.installed
	@$(PY) -c "from coursekit import rabbit; url, why = rabbit.find(); raise SystemExit(0 if url else 'make recordings needs RabbitMQ: ' + why)"
	COURSEKIT_KEEP_RECORDINGS=1 $(VENV)/bin/coursekit run notebooks/04_priorities.ipynb

clean:
	-[ -x $(VENV)/bin/coursekit ] && $(VENV)/bin/coursekit down
	rm -rf $(VENV) .pytest_cache build *.egg-info bench.json
