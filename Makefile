# Two entry points (see README): `make repro` sets up and runs the pipeline, `make test` runs the tests.
# `make docs` builds the documentation site (docs/, mkdocs.yml) into site/.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# DVC stage commands call `python`: put the project's virtualenv first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export TF_CPP_MIN_LOG_LEVEL := 2
# Material for MkDocs prints a banner about its successor on every build; the build's own warnings still show.
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup lock browser web lint docs repro test bench bench-memory bench-seeds mutation ui

# Every package, the installer uv and the build backend, pinned with hashes in requirements.lock
# (docs/dependencies.md). uv installs it; it reads no pip.conf, and takes TLS roots from the system store.
LOCK := requirements.lock
UV := $(BIN)/uv
export UV_SYSTEM_CERTS ?= 1
# The lock's lowest Python (keras 3.15 needs 3.11); it holds environment markers for 3.11 to 3.13.
LOCK_PYTHON := 3.11
# `make lock LOCK_ARGS=--upgrade` moves every unpinned package to its newest release; plain `make lock`
# keeps the locked versions that still fit pyproject.toml.
LOCK_ARGS ?=
# uv ignores upper bounds of Requires-Python: keep out releases that exclude the lock's Pythons
# (backports.strenum 1.3.1, via ai-edge-litert, says <3.11).
LOCK_CONSTRAINTS := backports-strenum<1.3

setup: $(VENV)/.installed

# pip in the new virtualenv installs only uv, at the version and hashes in the lock.
$(UV): $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PYTHON) src/mobiledx/lockfile.py installer $(LOCK) > $(VENV)/installer.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(VENV)/installer.txt
	touch $@

# `uv pip sync` makes the virtualenv exactly the lock (it removes what the lock lacks) and, as pip does,
# compiles the bytecode (else each process recompiles where PYTHONDONTWRITEBYTECODE is set: +8 s per import
# of tensorflow). The one sdist (antlr4-python3-runtime) builds with the locked, hash-checked setuptools; the
# project itself is installed editable without dependencies, built by the locked setuptools in the virtualenv.
$(VENV)/.installed: $(LOCK) pyproject.toml $(UV)
	$(UV) pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes --build-constraints $(LOCK) \
	  $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $@

# The one command that refreshes the lock after pyproject.toml changes; tests/unit/test_lock.py fails until then.
lock: $(UV)
	printf '%s\n' $(foreach c,$(LOCK_CONSTRAINTS),'$(c)') > $(VENV)/lock-constraints.txt
	$(PYTHON) src/mobiledx/lockfile.py lock-inputs | $(UV) pip compile --quiet pyproject.toml - --extra test \
	  --constraints $(VENV)/lock-constraints.txt --universal --python-version $(LOCK_PYTHON) --python $(BIN)/python \
	  --generate-hashes --custom-compile-command 'make lock' $(LOCK_ARGS) --output-file $(LOCK)
	$(PYTHON) src/mobiledx/lockfile.py stamp $(LOCK)

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

# The page of `mobiledx app` (web/): its npm package exactly as web/package-lock.json pins it, installed again
# only when the lock changes (npm ci writes node_modules/.package-lock.json).
WEB_INSTALLED := web/node_modules/.package-lock.json

web: $(WEB_INSTALLED)

$(WEB_INSTALLED): web/package-lock.json
	@command -v npm >/dev/null || { echo "make web: npm is not on PATH; install it: apt-get install -y nodejs npm" >&2; exit 1; }
	npm ci --prefix web --ignore-scripts --no-audit --no-fund
	touch $@

repro: setup
	dvc repro

# The linter (configuration in pyproject.toml) runs before the tests; `make test` fails on a finding.
lint: setup
	ruff check src stages tests benchmarks docs

# The documentation site: strict, so a warning (a broken link or heading, a page missing from the nav, a params
# field without a description) fails the build. The parameter and command-line references are generated from
# the code (docs/hooks/). `.venv/bin/mkdocs serve` serves it at http://127.0.0.1:8000/ while you edit.
docs: setup
	python -m mkdocs build --strict --site-dir site

test: setup browser web lint docs
	python -m pytest -n 2 --dist loadfile

# Mutation testing (mutmut) of the modules whose numbers are reported or decide a split, against their fast
# unit/data tests: per-module score and every surviving mutant (docs/benchmarks.md); not part of `make test`.
# MODULES="evaluation splits" runs some; 1-3 min a module on 2 cores, ingest 11, adapters 27.
mutation: setup
	python benchmarks/mutation.py $(if $(MODULES),--modules $(MODULES)) --json build/mutation/results.json

bench: setup
	python benchmarks/ingest_throughput.py
	python benchmarks/input_pipeline.py
	python benchmarks/training_throughput.py
	python benchmarks/queue_parallelism.py
	python benchmarks/int8_calibration.py
	python benchmarks/dynamic_range_latency.py
	python benchmarks/error_latency.py

# Real-size memory: 1,000 / 10,000 / 30,000 generated 600x450 JPEGs through ingest, split, rebalance and
# train (224 px, alpha 1.0 and 0.35); about 30 min and 3 GiB of disk on 2 cores.
bench-memory: setup
	python benchmarks/memory_scaling.py

# The demo recipe over 5 seeds (train -> export, both datasets): mean ± sd [min, max]; about 45 min on 2 cores.
bench-seeds: setup
	python benchmarks/seed_spread.py

ui: setup
	@python -c "from mobiledx.tracking import mlflow_runs; print('MLflow UI, training runs:', mlflow_runs.ui_url('http://127.0.0.1:5000'))"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000
