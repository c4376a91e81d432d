# Everything installs itself: uv (from PyPI) then the locked environment in .venv.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
SWIFTBOLT := $(BIN)/swiftbolt
# The demo serves the real bars shipped in swiftbolt_pipeline/emulator/bars/ (SPY QQQ AAPL
# MSFT NVDA, 2025-05-12..2026-03-12) from the emulator.
DEMO_SYMBOLS ?= SPY,QQQ,AAPL
DEMO_START ?= 2026-02-09
DEMO_END ?= 2026-03-06
comma := ,

.PHONY: install demo dev test test-all test-slow test-soak test-browser lint format bench clean soak

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --quiet
	@touch $@

demo: install
	$(SWIFTBOLT) db migrate
	$(SWIFTBOLT) watch add $(subst $(comma), ,$(DEMO_SYMBOLS))
	$(SWIFTBOLT) backfill --symbols $(DEMO_SYMBOLS) --start $(DEMO_START) --end $(DEMO_END) --timeframes m15,h1,h4,d1,w1,mo1
	$(SWIFTBOLT) tokens polygon
	@echo
	@echo "Bars are in PostgreSQL (embedded under .swiftbolt/ unless DATABASE_URL is set)."
	@echo "Open the Dagster UI with:  $(SWIFTBOLT) dev   then browse http://127.0.0.1:3000"

test: install
	$(BIN)/pytest

test-all: install
	$(BIN)/pytest -m "not browser"

# The slow suite CI runs; the full operations simulation (about 40 minutes) runs on its own.
test-slow: install
	$(BIN)/pytest -m "slow and not soak"

test-soak: install
	$(BIN)/pytest -m soak

# Headless Chromium from Debian (Playwright drives it; no browser download), then the UI suite.
# SWIFTBOLT_DOCS_SCREENSHOTS=1 also refreshes the README's pictures in docs/.
test-browser: install
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || { $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; }
	$(BIN)/pytest -m browser swiftbolt_pipeline_tests/browser

lint: install
	$(BIN)/ruff check swiftbolt_pipeline swiftbolt_pipeline_tests
	$(BIN)/ruff format --check swiftbolt_pipeline swiftbolt_pipeline_tests
	$(BIN)/pyright

format: install
	$(BIN)/ruff check --fix swiftbolt_pipeline swiftbolt_pipeline_tests
	$(BIN)/ruff format swiftbolt_pipeline swiftbolt_pipeline_tests

bench: install
	$(SWIFTBOLT) bench

clean:
	rm -rf $(VENV) .swiftbolt .pytest_cache .ruff_cache

# The operations simulation (20 sessions x 20 symbols, the whole chaos plan), then its audit;
# exits non-zero when the audit fails. SOAK_ARGS="--sessions 3 --symbols 7" for a short one.
SOAK_ARGS ?= --sessions 20 --symbols 20 --intraday-every 30
soak: install
	$(SWIFTBOLT) soak $(SOAK_ARGS)
