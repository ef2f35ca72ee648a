# Two entry points (see README): `make repro` sets up and runs the pipeline, `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# DVC stage commands call `python`: put the project's virtualenv first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup browser lint repro test bench bench-memory ui

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Headless browser for tests/integration/test_mlflow_ui.py: Debian's chromium and its matching chromedriver,
# installed with apt-get only when missing.
BROWSER_PACKAGES := chromium chromium-driver
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  command -v apt-get >/dev/null || { echo "make browser: no apt-get here; install chromium and chromedriver" >&2; exit 1; }; \
	  echo "make browser: installing $(BROWSER_PACKAGES)"; \
	  { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $(BROWSER_PACKAGES); } \
	    || { echo "make browser: could not install $(BROWSER_PACKAGES) with apt-get" >&2; exit 1; }; \
	fi

repro: setup
	dvc repro

# The linter (configuration in pyproject.toml) runs before the tests; `make test` fails on a finding.
lint: setup
	ruff check src stages tests benchmarks

test: setup browser lint
	python -m pytest -n 2 --dist loadfile

bench: setup
	python benchmarks/ingest_throughput.py
	python benchmarks/input_pipeline.py
	python benchmarks/training_throughput.py
	python benchmarks/queue_parallelism.py
	python benchmarks/int8_calibration.py
	python benchmarks/dynamic_range_latency.py

# Real-size memory: 1,000 / 10,000 / 30,000 generated 600x450 JPEGs through ingest, split, rebalance and
# train (224 px, alpha 1.0 and 0.35); about 30 min and 3 GiB of disk on 2 cores.
bench-memory: setup
	python benchmarks/memory_scaling.py

ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000
