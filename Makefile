# `make certs` and `make test` set themselves up on a fresh machine: a virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: certs test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@# An editable install leaves our own modules uncompiled: compile them once, so that a run where
	@# PYTHONDONTWRITEBYTECODE is set does not compile them again every time (~40 ms a run).
	$(BIN)/python -m compileall -q orchestrator
	touch $(STAMP)

## certs: a working certs directory from the embedded default spec (certs.toml), in this folder
certs: $(STAMP)
	$(BIN)/crdb-certs issue --config certs.toml --out .

## test: lint, type-check and the whole test suite (real openssl, real PostgreSQL)
test: lint
	$(BIN)/pytest

## test-openssl-1.1.1, test-openssl-3.5: the whole suite again on that OpenSSL (Debian 11's, Debian 13's),
## unpacked into .cache/ by .ci/fetch-openssl
OPENSSL_AT = $(CURDIR)/.cache/openssl-$*
# Made through pattern rules, the fetched openssl would count as intermediate and be deleted after use.
.SECONDARY:
test-openssl-%: $(STAMP) openssl-%
	PATH="$(OPENSSL_AT)/bin:$$PATH" CRDB_CERTS_TEST_OPENSSL="OpenSSL $*" $(BIN)/pytest

openssl-%: $(CURDIR)/.cache/openssl-%/bin/openssl
	@$(CURDIR)/.cache/openssl-$*/bin/openssl version

$(CURDIR)/.cache/openssl-%/bin/openssl:
	.ci/fetch-openssl $* $(OPENSSL_AT)

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests
	$(BIN)/ruff format --check orchestrator tests
	$(BIN)/mypy

## bench: crdb-certs against plain openssl scripts (not part of `make test`)
bench: $(STAMP)
	$(BIN)/python -c 'import matplotlib' 2>/dev/null \
		|| $(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
