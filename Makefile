# Two commands: `make run` runs the whole system, `make test` runs every test.
# Each builds its own virtual environment first; only Python >= 3.11 is needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint stop-db clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start the embedded PostgreSQL (unless DATABASE_URL is set), migrate, start every Procfile process
run: $(STAMP)
	$(PY) -m engine.devdb start
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile $(HONCHO_ARGS)

## test: the whole suite against a real PostgreSQL (embedded unless DATABASE_URL is set)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy engine api config simulator

## stop-db: stop the embedded PostgreSQL that `make run` left running (data is kept)
stop-db: $(STAMP)
	$(PY) -m engine.devdb stop

clean:
	rm -rf $(VENV)
