# Celery Lab. `make lab` to learn, `make test` to check the course, `make bench` for timings (JSON).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make lab PORT=8899` serves on that port; without it, 8888 or else a free port.
PORT   ?=

.PHONY: lab test bench screenshots clean

$(PY):
	@echo "Creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change. pip as venv ships it installs the course fine, so it is not
# upgraded (that was a download on every fresh clone), and its version check stays off.
$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "Installing the course's packages into $(VENV) (about a minute on a fresh clone)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $@

lab: $(VENV)/.installed
	@$(VENV)/bin/coursekit lab $(if $(PORT),--port $(PORT))

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(VENV)/bin/coursekit bench --json | tee bench.json

# The README's pictures, taken in JupyterLab in chromium as the browser tests take theirs.
screenshots: $(VENV)/.installed
	$(PY) tests/screenshots.py docs/screenshots

clean:
	-[ -x $(VENV)/bin/coursekit ] && $(VENV)/bin/coursekit down
	rm -rf $(VENV) .pytest_cache build *.egg-info bench.json
