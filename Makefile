# Two commands: `make run` runs the whole system, `make test` runs every test.
# Each builds its own virtual environment first; only Python >= 3.11 is needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run run-ha test lint stop-db stop-ha clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Where `make run` keeps what it makes: the data folder (ENGINE_DATA_DIR, else .data).
RUN_DIR    ?= $(or $(ENGINE_DATA_DIR),.data)
SUPERVISOR := $(RUN_DIR)/supervisor

## run: start the embedded PostgreSQL (unless DATABASE_URL is set), migrate, then every Procfile
## process under supervisord: one that dies is started again and the others keep running.
## Ctrl-C stops them all. Scale with HONCHO_ARGS="-c worker=4,web=2".
# Webhooks may reach loopback only on the allow-list: here the simulator's merchant receiver.
run: ENGINE_WEBHOOK_ALLOWED_HOSTS ?= 127.0.0.1:8082
run: $(STAMP)
	$(PY) -m engine.commands.db start
	$(PY) -m engine.commands.merchants demo
	rm -rf $(RUN_DIR)/metrics $(SUPERVISOR) && mkdir -p $(RUN_DIR)/metrics $(SUPERVISOR)
	cp deploy/supervisord-dev.conf $(SUPERVISOR)/supervisord.conf
	$(VENV)/bin/honcho -f Procfile export -t deploy/honcho -a hamster -l - -u $$(id -u) \
		$(HONCHO_ARGS) supervisord $(SUPERVISOR)
	PROMETHEUS_MULTIPROC_DIR="$(abspath $(RUN_DIR))/metrics" PATH="$(abspath $(VENV))/bin:$$PATH" \
		ENGINE_WEBHOOK_ALLOWED_HOSTS="$(ENGINE_WEBHOOK_ALLOWED_HOSTS)" \
		exec $(VENV)/bin/supervisord -c $(SUPERVISOR)/supervisord.conf

## run-ha: the highly available mode: three Patroni nodes on this machine (each an embedded
## PostgreSQL; a synchronous standby confirms every commit), then everything `make run` runs,
## on the URL that follows the primary. Data in $(RUN_DIR)/ha; `make stop-ha` stops the nodes.
## Ports: PostgreSQL HA_BASE_PORT..+2, Patroni's REST API +10..+12, Raft +20..+22.
HA_BASE_PORT ?= 5440
HA = $(PY) -m engine.commands.ha --base-port $(HA_BASE_PORT) --dir $(RUN_DIR)/ha
run-ha: $(STAMP)
	$(HA) start
	DATABASE_URL="$$($(HA) url)" $(MAKE) --no-print-directory run

## stop-ha: stop the three nodes of `make run-ha` (replicas first; data is kept)
stop-ha: $(STAMP)
	$(HA) stop

# The browser the back office's tests drive (tests/browser): Playwright cannot download its
# own on these machines, so Debian's package it is, with a Korean font so the customer app's
# screenshots are readable (the tests read the page, not the pixels of its words). sudo only
# when not already root.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends \
		chromium fonts-nanum

## test: the whole suite against a real PostgreSQL (embedded unless DATABASE_URL is set), the
## back office's browser tests included (Debian's Chromium, installed here when missing)
test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: the whole system on its own embedded PostgreSQL, measured; prints one table and writes
## bench/RESULTS.md. Options via BENCH_ARGS, e.g. BENCH_ARGS="--quick" (see bench/README.md)
bench: $(BENCH_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

## lint: ruff check, ruff format --check, mypy strict, and the import rules (lint-imports checks
## the contracts in pyproject.toml's [tool.importlinter]: layers, no cycles, no simulator/bench)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy engine api config simulator
	$(VENV)/bin/lint-imports

## stop-db: stop the embedded PostgreSQL that `make run` left running (data is kept)
stop-db: $(STAMP)
	$(PY) -m engine.commands.db stop

clean:
	rm -rf $(VENV)
