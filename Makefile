# The two commands of the README: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run run-scaled test install lint clean messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The gettext catalogues, compiled by Babel (no system msgfmt needed): locale/*/LC_MESSAGES.
MO := $(patsubst %.po,%.mo,$(wildcard locale/*/LC_MESSAGES/django.po))
%.mo: %.po $(STAMP)
	$(PY) -m realestate.dev.catalogues $<

install: $(STAMP) $(MO)

# Update locale/es (needs GNU gettext's xgettext and msgmerge: apt-get install gettext), then
# translate the new entries; tests/realestate/test_catalogues.py fails while any is missing.
MAKEMESSAGES_ARGS := --no-location --ignore=.venv --ignore=tests --ignore=bench --ignore=.pgdata \
	--ignore=.scaled --ignore=media
messages: $(STAMP)
	$(PY) manage.py makemessages -l es $(MAKEMESSAGES_ARGS)

# PORT: the app's port (8000); STANDIN_PORT: the LLM stand-in's (PORT + 1), e.g. make run PORT=8080
run: $(STAMP) $(MO)
	PORT='$(PORT)' STANDIN_PORT='$(STANDIN_PORT)' $(PY) -m realestate.dev.devserver

# N daphne workers behind nginx on one port, sharing Redis (apt-get install nginx first).
WORKERS ?= 2
run-scaled: $(STAMP) $(MO)
	$(PY) -m realestate.dev.scaled --workers $(WORKERS)

# ARGS passes options to pytest, e.g. make test ARGS="tests/chat/test_router.py -k price".
# The quick tier (ARGS="-m 'not system'") runs on two pytest-xdist workers; everything else,
# the slow tier's timing-sensitive process tests included, runs in one process.
test: $(STAMP) $(MO)
	$(PY) -m realestate.dev.devdb $(PY) -m pytest $(if $(findstring not system,$(ARGS)),-n 2) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pgdata .pytest_cache .scaled $(MO)
