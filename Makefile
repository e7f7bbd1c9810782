# Fresh-machine entry points: `make demo` runs a demo search, `make test` runs the test suite.
# Each creates .venv and installs every package at the tested version in constraints.txt: torch
# first, pinned there to the release whose CPU wheel this machine holds (left free, pip would pull a
# newer CUDA build), then the package, then two packages without their declared dependencies
# (see pyproject.toml: resemblyzer ships the GE2E weights, speechbrain is a test reference).
# Editing constraints.txt or pyproject.toml reinstalls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := constraints.txt

.PHONY: demo test install clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) torch
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) --no-deps resemblyzer speechbrain
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/search run configs/demo.yaml

# The browser test of report.html needs Debian's chromium; without apt-get (or root) it is skipped.
test: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) \
		|| echo "chromium not installed: the browser test of report.html will be skipped"
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) results/cache
