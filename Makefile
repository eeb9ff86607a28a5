# infersweep developer entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export PYTHONDONTWRITEBYTECODE ?= 1
# A local GSM8K copy for the demo's and the tests' evals (the product itself reads the hub's openai/gsm8k).
export INFERSWEEP_GSM8K_DIR ?= $(if $(wildcard ../shared/data/gsm8k/test.jsonl),$(abspath ../shared/data/gsm8k),)

.PHONY: install test test-unit lint demo clean
ENGINE ?=
MODEL ?=

install: $(STAMP)

# uv itself, pinned; it installs and resolves everything else.
UV_VERSION ?= 0.13.9
UV := $(VENV)/bin/uv
$(UV):
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"

# Reproducible: the exact versions and hashes of requirements.lock, then the project itself editable with
# no dependencies of its own (the lock holds them). Idempotent: redone only when the lock, pyproject.toml or
# requirements.txt changed; it then fails, naming the fix, when the lock no longer satisfies the ranges
# (checked offline against what was just installed).
$(STAMP): requirements.lock pyproject.toml requirements.txt | $(UV)
	$(UV) pip install --python $(PY) -q --require-hashes -r requirements.lock
	$(UV) pip install --python $(PY) -q --no-deps -e .
	@out=$$($(UV) pip install --python $(PY) --offline --dry-run -r requirements.txt -r pyproject.toml 2>&1); \
	grep -q "Would make no changes" <<<"$$out" || { echo "$$out" >&2; echo "make install: requirements.lock" \
		"does not satisfy requirements.txt and pyproject.toml: run make lock" >&2; exit 1; }
	@touch $(STAMP)

# Re-resolve the ranges (requirements.txt + pyproject.toml's dependencies) into requirements.lock with
# hashes, and lm-eval's lane into requirements-lmeval.lock. uv keeps every pin already in a lock unless a
# range forces a change; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest allowed versions.
LOCK_FLAGS ?=
LOCK_PYTHON ?= 3.11
.PHONY: lock
lock: | $(UV)
	$(UV) pip compile -q requirements.txt pyproject.toml --generate-hashes --python-version $(LOCK_PYTHON) \
		$(LOCK_FLAGS) -o requirements.lock
	printf '%s\n' "lm-eval[api]==$(LMEVAL_VERSION)" pytest pytest-timeout \
		| $(UV) pip compile -q - pyproject.toml --generate-hashes --python-version $(LOCK_PYTHON) \
		$(LOCK_FLAGS) -o requirements-lmeval.lock

# Unit tests always; integration tests skip themselves (with the reason) when their service is absent.
test: install
	$(VENV)/bin/pytest -m "not real_engine"

test-unit: install
	$(VENV)/bin/pytest -m "not integration and not e2e and not real_engine"

# The whole demo sweep through Airflow in-process (dag.test on SQLite) on the simulated engine.
# `make demo ENGINE=vllm-process MODEL=/path/to/model` runs the same chain against a real vLLM.
demo: install
	$(VENV)/bin/infersweep demo $(if $(ENGINE),--engine $(ENGINE)) $(if $(MODEL),--model $(MODEL))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# lm-eval parity lane: lm-eval gets its own venv so its pins never mix with the product's; the tests
# marked `lm_eval_parity` check our gsm8k scoring against lm-eval's own code. The stamp keeps it cached.
# Background and timings: docs/performance.md, "Why the lanes are set up this way".
LMEVAL_VENV ?= .venv-lmeval
LMEVAL_VERSION ?= 0.4.13
LMEVAL_STAMP := $(LMEVAL_VENV)/.installed-$(LMEVAL_VERSION)

LMEVAL_LOCK := requirements-lmeval.lock

# The pinned, hashed set of requirements-lmeval.lock (lm-eval[api], pytest and the project's dependencies;
# `make lock` writes it), then the project editable without dependencies. Redone only when the lock or
# pyproject.toml changes.
$(LMEVAL_STAMP): $(LMEVAL_LOCK) pyproject.toml | $(UV)
	@grep -qi '^lm-eval==$(LMEVAL_VERSION) ' $(LMEVAL_LOCK) || { echo "$(LMEVAL_LOCK) does not pin" \
		"lm-eval==$(LMEVAL_VERSION): run make lock" >&2; exit 1; }
	@test -x $(LMEVAL_VENV)/bin/python || python3 -m venv $(LMEVAL_VENV)
	$(UV) pip install --python $(LMEVAL_VENV)/bin/python -q --require-hashes -r $(LMEVAL_LOCK)
	$(UV) pip install --python $(LMEVAL_VENV)/bin/python -q --no-deps -e .
	@touch $@

.PHONY: test-eval-parity install-eval-parity
install-eval-parity: $(LMEVAL_STAMP)

test-eval-parity: $(LMEVAL_STAMP)
	HF_DATASETS_OFFLINE=1 $(LMEVAL_VENV)/bin/pytest -m lm_eval_parity tests/evals -q

# Real vLLM (CPU) lane: a cached vLLM venv and model, then the tests marked `real_engine`. install.sh exits
# REAL_ENGINE_SKIP where vLLM's CPU build cannot run, so the lane states the skip instead of failing CI.
# Its own --basetemp: concurrent pytest runs would rotate a shared one away during this long run.
# Background and timings: docs/performance.md, "Why the lanes are set up this way".
REAL_ENGINE_SKIP := 75

.PHONY: test-real-engine
test-real-engine: install
	@start=$$(date +%s); \
	model=$$(bash scripts/real_engine/install.sh); rc=$$?; \
	if [ $$rc -eq $(REAL_ENGINE_SKIP) ]; then \
		echo "SKIP: make test-real-engine: the real vLLM (CPU) lane cannot run on this machine (reason above)"; exit 0; fi; \
	if [ $$rc -ne 0 ]; then echo "test-real-engine: install failed (exit $$rc)" >&2; exit $$rc; fi; \
	model=$$(printf '%s\n' "$$model" | tail -n 1); \
	echo "real-engine: vLLM and model ready after $$(( $$(date +%s) - start )) s; model $$model"; \
	INFERSWEEP_REAL_MODEL="$$model" HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -m real_engine tests/real_engine -q -s \
		--basetemp="$${TMPDIR:-/tmp}/infersweep-real-engine"; rc=$$?; \
	echo "real-engine: total $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

# SGLang argparse lane: SGLang's own ServerArgs parser (scripts/sglang_lane/install.sh, a cached venv) parses every
# SGLang recipe of the InferenceX fixture whose image runs the installed release; nothing is served. install.sh
# exits REAL_ENGINE_SKIP where it cannot install (no local CPU torch wheel, no package index, no Python 3.11).
.PHONY: test-sglang-cli
test-sglang-cli: install
	@start=$$(date +%s); \
	py=$$(bash scripts/sglang_lane/install.sh); rc=$$?; \
	if [ $$rc -eq $(REAL_ENGINE_SKIP) ]; then \
		echo "SKIP: make test-sglang-cli: the SGLang argparse lane cannot install on this machine (reason above)"; exit 0; fi; \
	if [ $$rc -ne 0 ]; then echo "test-sglang-cli: install failed (exit $$rc)" >&2; exit $$rc; fi; \
	py=$$(printf '%s\n' "$$py" | tail -n 1); \
	echo "sglang-cli: lane ready after $$(( $$(date +%s) - start )) s ($$py, venv $$(du -sh "$$(dirname "$$(dirname "$$py")")" | cut -f1))"; \
	INFERSWEEP_SGLANG_PYTHON="$$py" HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -m real_engine tests/recipes/test_sglang_cli_lane.py -q -s \
		-p no:cacheprovider; rc=$$?; \
	echo "sglang-cli: total $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc
