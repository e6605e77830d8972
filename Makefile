# `make run` and `make test` set everything up on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PLUGINS := plugins/letsgo_stripe plugins/letsgo_slack plugins/example_orders

.PHONY: setup run test bench bench-quick soak clean chromium screenshots

setup: $(STAMP)

# The dashboard's browser tests drive Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser of its own). CI runs as root on Debian; elsewhere install chromium yourself.
chromium:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

$(STAMP): pyproject.toml constraints.txt requirements-dev.txt $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-r requirements-dev.txt -e '.[aws]' $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

run: setup
	$(BIN)/letsgo-worker serve

# The suite runs in 4 processes (pytest-xdist): most of its time is spent waiting on servers, subprocesses
# and chromium, so on 2 cores 4 beat 3 and 2 (about 3m50s, 4m15s, 7m10s; 10m30s in one process).
# Whole files go to one process, so a module's servers start once.
# Serially: `make test PYTEST_ARGS=`; one file: `make test PYTEST_ARGS=tests/test_config.py`.
PYTEST_ARGS ?= -n 4 --dist loadfile

test: setup chromium
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	sh bench/setup.sh
	$(BIN)/python -m bench.run --mode full --command "make bench"

bench-quick: setup
	sh bench/setup.sh
	$(BIN)/python -m bench.run --mode quick --command "make bench-quick"

# The long reliability runs: 60 s of load, 50,000 faulty messages, 10 kill -9 (docs/RELIABILITY.md).
soak: setup
	LETSGO_SOAK=1 $(BIN)/python -m pytest -q -s tests/reliability

# The dashboard's screenshots in docs/img/, from a real serve photographed by headless chromium (docs/dashboard.md).
screenshots: setup chromium
	$(BIN)/python tests/browser/take_screenshots.py

clean:
	rm -rf $(VENV) .letsgo .pytest_cache
