# The two commands of the README: `make run` and `make test`. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DEBUG ?= 1

.PHONY: run test lint bench faults mutation system-packages system-packages-test venv

run: system-packages venv var/portal.env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runportal

test: system-packages-test venv lint
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q -ll -c pyproject.toml -r portal deployments worklists
	$(PY) manage.py makemigrations --check --dry-run

bench: system-packages-test venv
	$(PY) bench/run.py

# The fault battery (bench/faults.py): FAULT_ROUNDS rounds of each fault against real parts, as root.
faults: system-packages-test venv
	PYTHONPATH=. FAULT_ROUNDS=$${FAULT_ROUNDS:-100} $(PY) bench/faults.py

# Mutation testing of the modules that decide access and what the machines are told (tests/mutation/).
mutation: system-packages-test venv $(VENV)/.mutation-installed
	$(PY) -m tests.mutation.run

$(VENV)/.mutation-installed: requirements-mutation.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-mutation.txt
	touch $@

system-packages:
	@scripts/install-system-packages run

system-packages-test:
	@scripts/install-system-packages test

venv: $(VENV)/.installed

# A local install runs in development mode, so that `manage.py` works from a plain shell too
# (its secrets are generated once into var/). The environment still wins over this file.
var/portal.env:
	mkdir -p var
	printf '# Written by make run for this local install.\nDEBUG=1\n' > $@

# Re-installed only when the pinned requirements change.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@
