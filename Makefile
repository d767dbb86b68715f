# One obvious command per task. `make demo` and `make test` bring up everything they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PATIENTS ?= 10000
DEMO_CLINICS ?= 3

.PHONY: help setup services services-down migrate demo test lint format clean relevance explain
.PHONY: browser screenshots
.PHONY: bench bench-quick soak
.PHONY: fuzz

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

setup: $(STAMP)  ## Python deps into .venv (creates .venv/bin/patient-search)

$(STAMP): requirements.lock pyproject.toml scripts/setup.sh
	@PYTHON=$(PYTHON) scripts/setup.sh
	@touch $@

services:  ## start the project-local PostgreSQL and Redis, write .env
	@scripts/services.sh up

services-down:  ## stop them
	@scripts/services.sh down

migrate: setup services  ## apply the database migrations
	@$(BIN)/patient-search migrate

demo: migrate  ## seed 10,000 patients on first run and serve the API on :8000 (Ctrl-C stops)
	@$(BIN)/patient-search seed --patients $(DEMO_PATIENTS) --clinics $(DEMO_CLINICS) --if-empty
	@$(BIN)/patient-search demo-info --clinic clinic-1
	@exec env $$($(BIN)/patient-search service-login) $(BIN)/patient-search serve --host 127.0.0.1 --port 8000

test: setup services browser  ## the whole suite on real PostgreSQL and Redis, with the coverage floor
	@scripts/ensure_promtool.sh >/dev/null  # the alert rules' tests (promtool test rules)
	@$(BIN)/pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

FUZZ_EXAMPLES ?= 1000
fuzz: setup services  ## schemathesis on every operation, FUZZ_EXAMPLES (1000) examples each (make test: 25)
	@FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/hardening/test_fuzz.py -p no:cacheprovider $(PYTEST_ARGS)

browser:  ## Debian's chromium for the browser tests (apt, when /usr/bin/chromium is missing)
	@scripts/ensure_chromium.sh

screenshots: setup services browser  ## the front-desk page's main states into docs/screenshots/
	@$(BIN)/python scripts/screenshots.py

relevance: migrate  ## top-1 / top-10 / MRR per query kind (synthetic and Febrl), next to the seed's SQL
	@$(BIN)/python bench/relevance.py
	@$(BIN)/python bench/febrl.py

# BENCH_SIZES=10000,100000 overrides the sizes; data sets are imported once, under .data/bench/.
bench: setup services  ## the load benchmark (10k/100k/1M, 3 repeats): bench/results/DATE/report.md
	@$(BIN)/python bench/run.py --readme

bench-quick: setup services  ## the same at 10k and 100k with short runs (under 10 minutes)
	@$(BIN)/python bench/run.py --quick

SOAK_MINUTES ?= 10
soak: setup services  ## steady mixed load for SOAK_MINUTES (10): RSS growth, pool at rest
	@$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)

lint: setup  ## ruff and mypy --strict
	@$(BIN)/ruff check src tests $(wildcard bench)
	@$(BIN)/ruff format --check src tests $(wildcard bench)
	@$(BIN)/mypy

format: setup  ## rewrite the code in the house style
	@$(BIN)/ruff check --fix src tests $(wildcard bench)
	@$(BIN)/ruff format src tests $(wildcard bench)

clean:  ## remove the virtualenv (the .data of the servers stays; see services-down)
	rm -rf $(VENV)
