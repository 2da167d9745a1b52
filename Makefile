# Two commands do everything on a fresh machine: `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test install index lint bench load system-deps axe clean

install: $(STAMP)

# torch is pinned first so that pip takes the CPU wheel on disk, never a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

index: install
	$(PY) -m chatbot index --if-missing

# The chat UI and the API on 127.0.0.1:7860 (one process), the API over $(WORKERS) worker processes on 7861.
WORKERS ?= 2
run: install index
	$(PY) -m chatbot serve --workers $(WORKERS)

# Browser tests drive Debian's chromium and check the pages with axe-core (an npm package, so node
# and npm), and the scale-out tests start a PostgreSQL server; install whichever is missing from
# Debian's packages (root on these machines and in CI).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing from Debian:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# axe-core, pinned by tests/axe/package-lock.json, into tests/axe/node_modules (git-ignored)
AXE := tests/axe/node_modules/axe-core/axe.min.js
$(AXE): tests/axe/package.json tests/axe/package-lock.json
	npm ci --prefix tests/axe --no-audit --no-fund --loglevel=error
	touch $(AXE)

axe: system-deps $(AXE)

test: install system-deps axe
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	exit $$rc

lint: install
	$(PY) -m ruff check chatbot tests app.py

bench: install index
	$(PY) -m chatbot bench

load: install index
	$(PY) -m chatbot load

clean:
	rm -rf $(VENV) index data tests/axe/node_modules
