# `make certs` and `make test` set themselves up on a fresh machine: a virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: certs test lint bench clean
# The suite's tests run in parallel, one worker per CPU (pytest-xdist): each test makes its own folders,
# ports and PostgreSQL cluster. `make test PYTEST_ARGS=` runs them in one process.
PYTEST_ARGS ?= -n auto

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
	$(BIN)/pytest $(PYTEST_ARGS)

## test-openssl-1.1.1, test-openssl-3.5: the whole suite again on that OpenSSL (Debian 11's, Debian 13's),
## unpacked into .cache/ by .ci/fetch-openssl
OPENSSL_AT = $(CURDIR)/.cache/openssl-$*
# Made through pattern rules, the fetched openssl would count as intermediate and be deleted after use.
.SECONDARY:
test-openssl-%: $(STAMP) openssl-%
	PATH="$(OPENSSL_AT)/bin:$$PATH" CRDB_CERTS_TEST_OPENSSL="OpenSSL $*" $(BIN)/pytest $(PYTEST_ARGS)

openssl-%: $(CURDIR)/.cache/openssl-%/bin/openssl
	@$(CURDIR)/.cache/openssl-$*/bin/openssl version

$(CURDIR)/.cache/openssl-%/bin/openssl:
	.ci/fetch-openssl $* $(OPENSSL_AT)

## test-python-3.13: the whole suite again on that CPython (Debian 13's), unpacked into .cache/ by
## .ci/fetch-python, in its own virtual environment (.cache/venv-3.13)
PYTHON_AT = $(CURDIR)/.cache/python-$*/root/usr/bin/python3
test-python-%: .cache/venv-%/.installed
	.cache/venv-$*/bin/pytest $(PYTEST_ARGS)

# No pip inside (Debian's ensurepip looks for the machine's wheels): that release's pip runs from its wheel.
.cache/venv-%/.installed: pyproject.toml | python-%
	rm -rf .cache/venv-$*
	$(PYTHON_AT) -m venv --without-pip .cache/venv-$*
	.cache/venv-$*/bin/python .cache/python-$*/pip.whl/pip install --quiet --disable-pip-version-check \
		-e '.[test]'
	.cache/venv-$*/bin/python -m compileall -q orchestrator
	touch $@

python-%: $(CURDIR)/.cache/python-%/root/usr/bin/python3
	@$(PYTHON_AT) --version

$(CURDIR)/.cache/python-%/root/usr/bin/python3:
	.ci/fetch-python $* $(CURDIR)/.cache/python-$*

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
