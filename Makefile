# Two commands for people (run, test) and two for developers (lint, bench).
# Everything lives in .venv; nothing is installed system-wide.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
export FLASK_APP := app.py

.PHONY: run serve test lint bench clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "Konnte keine virtuelle Umgebung anlegen. Unter Debian/Ubuntu: sudo apt-get install python3-venv"; \
	  exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-dev.txt
	@touch $@

## run: install, migrate the SQLite database, load reference and demo data, serve on :5000
run: $(VENV)/.runtime
	$(BIN)/flask db upgrade
	$(BIN)/flask reference load
	$(BIN)/flask demo seed --if-empty
	$(BIN)/flask run --host 127.0.0.1 --port 5000

## serve: gunicorn as in production (settings from KIM_* variables, see gunicorn.conf.py)
serve: $(VENV)/.runtime
	$(BIN)/gunicorn --config gunicorn.conf.py app:app

## test: install the dev requirements and run the whole suite
test: $(VENV)/.dev
	$(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff (checks and formatting)
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: export and report timings and peak memory on SQLite and PostgreSQL, and the
##        NRW-scale pages and 30-user load on PostgreSQL, appended to bench/results.md
##        (BENCH_ARGS="--sizes 20000 --db sqlite --skip-scale" for a quick run,
##         BENCH_ARGS="--only-scale --load-seconds 60" for the scale part alone)
bench: $(VENV)/.dev
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
