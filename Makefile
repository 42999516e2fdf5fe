# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   # install, migrate, import the Luma catalogue, index it with a worker, serve :8000
#   make test   # lint, layer contracts, mypy, then the whole test suite (real PostgreSQL+pgvector, Redis, Celery, models)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: install demo lint audit system-deps test test-fast worker serve evaluate bench clean-data stop-db

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	bash scripts/demo.sh

# ruff (lint + format), the layer contracts in pyproject.toml, and mypy with django-stubs
lint: install
	$(VENV)/bin/ruff check multimodal_search shop tests bench
	$(VENV)/bin/ruff format --check multimodal_search shop tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# Debian packages two tests drive: chromium + chromedriver (tests/test_browser.py) and espeak-ng
# (tests/test_voice.py). Installed when missing and apt-get can (as root); otherwise those tests skip, saying why.
system-deps:
	@missing=""; \
	{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || missing="$$missing chromium chromium-driver"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing$$missing (apt-get)"; apt-get update -qq && apt-get install -y -qq $$missing; \
	  else echo "Not installed:$$missing; the browser and voice tests will skip (install them with apt-get)."; fi; \
	fi

test: lint system-deps
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# prefork (one child): a child killed mid-batch has its task requeued at once; -B runs the sweep
# (CELERY_BEAT_SCHEDULE) in the same process; run beat only once however many workers you start.
worker: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/celery -A shop worker -Q embeddings,default --pool prefork --concurrency 1 \
		-B -s $${MMSEARCH_DATA_DIR:-.data}/celerybeat-schedule --loglevel INFO

# Development server (DEBUG on unless DJANGO_DEBUG=0); `make demo` serves with gunicorn instead.
serve: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(PY) manage.py runserver 127.0.0.1:8000

# pip-audit over the virtual environment (.ci/run runs it); see scripts/audit.sh and .ci/audit-ignore.txt
audit: install
	bash scripts/audit.sh

# Stops the embedded PostgreSQL of MMSEARCH_DATA_DIR (default .data), e.g. the one `make demo` leaves running.
stop-db:
	$(PY) -m shop.runtime stop

clean-data:
	rm -rf .data
