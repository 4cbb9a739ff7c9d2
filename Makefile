# splitgraph: version control for PostgreSQL tables, as an extension.
# `make help` lists the targets. The version lives in splitgraph.control only.

EXTENSION   = splitgraph
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
PG_CONFIG  ?= /usr/lib/postgresql/15/bin/pg_config
PYTHON_SERVER ?= /usr/bin/python3
VENV        = .venv
ENGINE_DIR ?= .engine
ENGINE_PORT ?= 5488
ENGINE_DB  ?= splitgraph

SQL_SOURCES = $(sort $(wildcard sql/*/*.sql))
PY_SOURCES  = $(sort $(wildcard plpython/splitgraph_pl/*.py))
EXTENSION_SQL = extension/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(EXTENSION_SQL) $(wildcard extension/$(EXTENSION)--*--*.sql)
EXTRA_CLEAN = $(EXTENSION_SQL)

# PGXS is only there once `make deps` has installed postgresql-server-dev-15.
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
PY_LIB_ROOT = $(pkglibdir)/$(EXTENSION)
else
PY_LIB_ROOT = /usr/lib/postgresql/15/lib/$(EXTENSION)
endif
PY_LIB_DIR = $(PY_LIB_ROOT)/$(EXTVERSION)

.DEFAULT_GOAL := all
all: $(EXTENSION_SQL)

.PHONY: help deps setup install-python install-if-changed engine engine-stop demo test test-long bench readme lint updatecheck

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed 's/:.*## /\t/' | sort

# The install script: the numbered sql/ folders concatenated in order, the functions declared in plpython/
# generated in place, and the version filled in.
$(EXTENSION_SQL): $(SQL_SOURCES) $(PY_SOURCES) scripts/build_sql.py $(EXTENSION).control
	@mkdir -p extension
	@$(PYTHON_SERVER) scripts/build_sql.py --version $(EXTVERSION) --python-root $(PY_LIB_ROOT) > $@.tmp && mv $@.tmp $@

deps: ## install missing Debian packages and the client tools (.venv)
	@scripts/deps.sh

install: install-python ## build and install the extension and its Python package (needs deps)

install-python: ## install plpython/ and the server's Python packages into the versioned library directory
	mkdir -p $(DESTDIR)$(PY_LIB_DIR)
	rm -rf $(DESTDIR)$(PY_LIB_DIR)/splitgraph_pl
	cp -r plpython/splitgraph_pl $(DESTDIR)$(PY_LIB_DIR)/
	find $(DESTDIR)$(PY_LIB_DIR)/splitgraph_pl -name __pycache__ -prune -exec rm -rf {} +
	@# Compiled here: the server cannot write into this directory, so a session would otherwise compile every
	@# module from its source when it first calls the extension (about 0.1 s).
	$(PYTHON_SERVER) -m compileall -q $(if $(DESTDIR),-s $(DESTDIR),) $(DESTDIR)$(PY_LIB_DIR)/splitgraph_pl
	@# The packages (pyarrow is large) are installed again only when the requirements changed.
	@if ! cmp -s plpython/requirements.txt $(DESTDIR)$(PY_LIB_DIR)/requirements.txt; then \
	  find $(DESTDIR)$(PY_LIB_DIR) -mindepth 1 -maxdepth 1 ! -name splitgraph_pl -exec rm -rf {} + && \
	  if grep -qv '^\s*\(#\|$$\)' plpython/requirements.txt; then \
	    echo "install: the server's Python packages (plpython/requirements.txt)"; \
	    $(PYTHON_SERVER) -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
	      --root-user-action=ignore --target $(DESTDIR)$(PY_LIB_DIR) -r plpython/requirements.txt; fi && \
	  cp plpython/requirements.txt $(DESTDIR)$(PY_LIB_DIR)/requirements.txt; fi

# Targets that need PGXS run `install` in a second make, after deps may have just installed it. The extension
# is installed again only when the installed script, package or server requirements differ from this tree's.
SUDO = $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
setup: deps ## deps, then build and install the extension (when what is installed differs)
	@$(MAKE) --no-print-directory install-if-changed

install-if-changed: $(EXTENSION_SQL)
	@if cmp -s $(EXTENSION_SQL) $(DESTDIR)$(datadir)/extension/$(notdir $(EXTENSION_SQL)) \
	    && cmp -s $(EXTENSION).control $(DESTDIR)$(datadir)/extension/$(EXTENSION).control \
	    && cmp -s plpython/requirements.txt $(DESTDIR)$(PY_LIB_DIR)/requirements.txt \
	    && diff -rq -x __pycache__ plpython/splitgraph_pl $(DESTDIR)$(PY_LIB_DIR)/splitgraph_pl >/dev/null 2>&1; \
	then echo "setup: the installed extension is up to date"; \
	else $(SUDO) $(MAKE) --no-print-directory install >/dev/null; fi

engine: setup ## start the local engine (a cluster under .engine/) with the extension in database splitgraph
	@$(VENV)/bin/python tests/support/cluster.py start --dir $(ENGINE_DIR) --port $(ENGINE_PORT) --db $(ENGINE_DB)

engine-stop: ## stop the local engine
	@$(VENV)/bin/python tests/support/cluster.py stop --dir $(ENGINE_DIR)

demo: engine ## walk through init, commit, tag, change, commit and checkout on the local engine
	@scripts/demo.sh "host=127.0.0.1 port=$(ENGINE_PORT) dbname=$(ENGINE_DB) user=postgres"

test: setup ## run every test: pgTAP files and pytest, on throwaway clusters
	$(VENV)/bin/python -m pytest -p no:cacheprovider --durations=15 tests

test-long: setup ## the longer randomized (hypothesis) runs, marked `long`, that `make test` keeps short
	SG_LONG=1 $(VENV)/bin/python -m pytest -p no:cacheprovider -m long tests

bench: setup ## measure performance ratios against the physical limits, in one run
	$(VENV)/bin/python tests/bench.py

readme: ## rewrite README.md's function table from the declarations
	@$(PYTHON_SERVER) scripts/build_sql.py --readme README.md

lint: deps ## sqlfluff on sql/, ruff on Python
	$(VENV)/bin/ruff check plpython tests scripts client
	$(VENV)/bin/sqlfluff lint sql

updatecheck: setup ## install the previous version, ALTER EXTENSION UPDATE, then run the suite
	@scripts/updatecheck.sh $(EXTVERSION)
