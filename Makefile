# Every target installs what it needs into .venv first, so a machine with only Python and make works.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-deps test-fast demo bench lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the suite uses: stunnel4, the TLS terminator in front of the test broker.
# Installed when running as root with apt; otherwise the TLS tests skip and say why.
test-deps:
	@command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4 >/dev/null); } || \
	  echo "note: stunnel4 not installed; the TLS tests will be skipped"

# The suite starts its own servers (Tansu broker, moto S3 server) on free loopback ports.
test: $(STAMP) test-deps
	$(BIN)/ruff check pipeline tests
	$(BIN)/pytest -q

# Unit tests only: no servers, seconds.
test-fast: $(STAMP)
	$(BIN)/ruff check pipeline tests
	$(BIN)/pytest -q tests/unit

demo: $(STAMP)
	$(BIN)/python -m pipeline.dev.demo

# PROFILE=1: kbak also prints its CPU and wall time per stage (KBAK_PROFILE=1).
bench: $(STAMP)
	KBAK_PROFILE=$(PROFILE) $(BIN)/python -m pipeline.dev.bench $(BENCH)

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests

clean:
	rm -rf $(VENV) .pytest_cache demo-lake
