EXTENSION   = pganalytics_ml
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
PG_CONFIG  ?= pg_config
PYTHON_LIBDIR ?= /usr/local/lib/pganalytics_ml/$(EXTVERSION)
VENV       ?= .venv
DEV_TOOLS  ?= 1

# The install script is built from sql/ and plpython/, ordered by file name across both folders.
SOURCE_NAMES = $(sort $(notdir $(wildcard sql/*.sql plpython/*.sql)))
SOURCES      = $(foreach f,$(SOURCE_NAMES),$(wildcard sql/$(f) plpython/$(f)))

# Upgrade scripts: each step's own changes (sql/upgrades/, committed), and in the step that reaches this
# version every PL/Python function again, since their bodies name the version (docs/operations.md).
UPGRADE_SOURCES = $(wildcard sql/upgrades/$(EXTENSION)--*--*.sql)
PLPYTHON        = $(sort $(wildcard plpython/*.sql))

DATA_built  = extension/$(EXTENSION)--$(EXTVERSION).sql $(patsubst sql/upgrades/%,extension/%,$(UPGRADE_SOURCES))
EXTRA_CLEAN = $(DATA_built)

# On a fresh machine PGXS arrives with 'make deps' (postgresql-server-dev-15); until then only deps works.
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
all install installcheck:
	@echo "PostgreSQL's build support (PGXS) is missing: run 'make deps' first" >&2; exit 1
endif

extension/$(EXTENSION)--$(EXTVERSION).sql: $(SOURCES) $(EXTENSION).control
	@mkdir -p extension
	( echo "-- generated from sql/ and plpython/ by make; do not edit"; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  for f in $(SOURCES); do echo; echo "-- $$f"; cat $$f; done ) \
	| sed -e 's|@PGML_VERSION@|$(EXTVERSION)|g' -e 's|@PGML_PYTHON_LIBDIR@|$(PYTHON_LIBDIR)|g' > $@

extension/$(EXTENSION)--%.sql: sql/upgrades/$(EXTENSION)--%.sql $(PLPYTHON) $(EXTENSION).control
	@mkdir -p extension
	( echo "-- generated from $< by make; do not edit"; \
	  printf '%s\n' '\echo Use "ALTER EXTENSION $(EXTENSION) UPDATE" to load this file. \quit'; \
	  cat $<; \
	  if [ "$(lastword $(subst --, ,$*))" = "$(EXTVERSION)" ]; then \
	    for f in $(PLPYTHON); do echo; echo "-- $$f"; sed -e 's/^CREATE \(FUNCTION\|PROCEDURE\)/CREATE OR REPLACE \1/' $$f; done; \
	  fi ) \
	| sed -e 's|@PGML_VERSION@|$(EXTVERSION)|g' -e 's|@PGML_PYTHON_LIBDIR@|$(PYTHON_LIBDIR)|g' > $@

# The Python package goes next to its dependencies (make deps), in the directory PL/Python loads.
install: install-python
install-python:
	test -d $(PYTHON_LIBDIR) || { echo "$(PYTHON_LIBDIR) is missing: run 'make deps' first" >&2; exit 1; }
	rm -rf $(PYTHON_LIBDIR)/pganalytics_ml
	cp -r python_pkg/pganalytics_ml $(PYTHON_LIBDIR)/pganalytics_ml
	find $(PYTHON_LIBDIR)/pganalytics_ml -name __pycache__ -prune -exec rm -rf {} +
	/usr/bin/python3 -m compileall -q $(PYTHON_LIBDIR)/pganalytics_ml

uninstall: uninstall-python
uninstall-python:
	rm -rf $(PYTHON_LIBDIR)/pganalytics_ml

.PHONY: deps test lint demo demo-stop bench dist install-python uninstall-python

# A release as it installs: its install script and its Python package. Run before bumping the version;
# releases/ keeps every released version, so that upgrades from each are tested (tests/python/test_upgrade.py).
dist: extension/$(EXTENSION)--$(EXTVERSION).sql
	@mkdir -p releases
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --exclude=__pycache__ \
	    -C extension -cf - $(EXTENSION)--$(EXTVERSION).sql -C ../python_pkg pganalytics_ml \
	  | gzip -9n > releases/$(EXTENSION)-$(EXTVERSION).tar.gz

deps:
	PYTHON_LIBDIR=$(PYTHON_LIBDIR) VENV=$(VENV) DEV_TOOLS=$(DEV_TOOLS) bash tools/install-deps.sh

# One run, one summary: lint, unit, integration and pgTAP tests (pytest drives them all).
test: install
	PG_CONFIG=$(PG_CONFIG) PGML_PG_BIN=$$($(PG_CONFIG) --bindir) PGML_PYTHON_LIBDIR=$(PYTHON_LIBDIR) $(VENV)/bin/pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# A throwaway cluster in ./demo learning a changing workload (under 10 minutes); left running to explore.
demo: install
	$(VENV)/bin/python bench/demo.py

demo-stop:
	$(VENV)/bin/python bench/demo.py --stop

# Every benchmark into bench/RESULTS.md (about 45 minutes); BENCH="jobs snapshot" runs only those, into bench/out/.
bench: install
	$(VENV)/bin/python bench/run_all.py $(BENCH)
