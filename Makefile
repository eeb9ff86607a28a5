# infersweep developer entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export PYTHONDONTWRITEBYTECODE ?= 1

.PHONY: install test test-unit lint demo clean

install: $(STAMP)

# Idempotent: rebuilt only when the requirement files change. uv resolves the pinned set in seconds.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --python $(PY) -q -r requirements.txt -e .
	@touch $(STAMP)

# Unit tests always; integration tests skip themselves (with the reason) when their service is absent.
test: install
	$(VENV)/bin/pytest -m "not real_engine"

test-unit: install
	$(VENV)/bin/pytest -m "not integration and not e2e and not real_engine"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
