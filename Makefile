# Every target sets up .venv itself: nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: fidelity scaleout test lint typecheck unit integration venv clean demo dev docs bench soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Tests run in PYTEST_WORKERS processes (pytest-xdist): each has its own moto server, and
# every test starts from an empty endpoint, so they share nothing. 2 fits a 2-core machine.
PYTEST_WORKERS ?= 2

# Pure logic, no endpoint: seconds.
unit: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) tests/unit

# Everything against the embedded endpoint (and the browser test when Chromium is there).
integration: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) tests --ignore=tests/unit

test: lint typecheck unit integration

# The ingest, processing, streaming and fan-out integration tests again on LocalStack (host
# mode, no Docker; its own venv, as its runtime pins botocore and moto versions of its own).
# Tests marked moto_only are skipped there. See tests/fidelity/run.py.
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed
FIDELITY_TESTS := $(addprefix tests/integration/test_,$(addsuffix .py,\
	smoke_sqs sqs_batch bridge bridge_confinement bridge_hostile poller processor \
	processor_edges claimcheck completed_once dlq dlq_announce recovery redrive_progress \
	reupload worker progress_publisher hub sse_servers streaming_examples fanout_sns \
	sns_limits hub_delivery forged_jobs cancel multipart bridge_requests hub_deletes \
	progress_packs))

$(LOCALSTACK_STAMP): tests/fidelity/requirements-localstack.txt
	$(PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet -r tests/fidelity/requirements-localstack.txt
	touch $(LOCALSTACK_STAMP)

fidelity: $(STAMP) $(LOCALSTACK_STAMP)
	$(BIN)/python tests/fidelity/run.py --localstack $(LOCALSTACK_VENV)/bin/python -- \
		-q -p no:cacheprovider $(FIDELITY_TESTS)

# The whole pipeline on an embedded endpoint: no AWS account, no Docker.
demo: $(STAMP)
	$(BIN)/transflow demo

dev: $(STAMP)
	$(BIN)/transflow dev

# docs/api.md from the docstrings; a test fails while it is stale.
docs: $(STAMP)
	$(BIN)/python docs/gen_api.py

clean:
	rm -rf $(VENV) $(LOCALSTACK_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# Benchmarks and the soak: not part of `make test` (tests/integration/test_bench_smoke.py
# runs each script at a tiny size). Results land in bench/results/.
BENCH_ARGS ?=
SOAK_ARGS ?=

bench: $(STAMP)
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

# Fan-out with real servers at the issue's size: 4 gunicorn workers + 2 uvicorn, 50 subscribers.
scaleout: $(STAMP)
	TRANSFLOW_SCALEOUT_FULL=1 $(BIN)/pytest -q tests/integration/scaleout/test_scaleout_servers.py

soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
