# Two commands: `make run` runs the whole system, `make test` runs every test.
# Each builds its own virtual environment first; only Python >= 3.11 is needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test lint stop-db clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start the embedded PostgreSQL (unless DATABASE_URL is set), migrate, start every Procfile process
# Webhooks may reach loopback only on the allow-list: here the simulator's merchant receiver.
run: ENGINE_WEBHOOK_ALLOWED_HOSTS ?= 127.0.0.1:8082
run: $(STAMP)
	$(PY) -m engine.devdb start
	$(PY) -m engine.merchants demo
	rm -rf .data/metrics && mkdir -p .data/metrics
	PROMETHEUS_MULTIPROC_DIR="$(CURDIR)/.data/metrics" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
		ENGINE_WEBHOOK_ALLOWED_HOSTS="$(ENGINE_WEBHOOK_ALLOWED_HOSTS)" \
		$(VENV)/bin/honcho start -f Procfile $(HONCHO_ARGS)

## test: the whole suite against a real PostgreSQL (embedded unless DATABASE_URL is set)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: the whole system on its own embedded PostgreSQL, measured; prints one table and writes
## bench/RESULTS.md. Options via BENCH_ARGS, e.g. BENCH_ARGS="--quick" (see bench/README.md)
bench: $(BENCH_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy engine api config simulator

## stop-db: stop the embedded PostgreSQL that `make run` left running (data is kept)
stop-db: $(STAMP)
	$(PY) -m engine.devdb stop

clean:
	rm -rf $(VENV)
