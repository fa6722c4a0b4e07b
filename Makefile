# The commands of the README: `make run`, `make test` (what CI runs) and `make check` (the fast inner loop). Each
# bootstraps what it needs.
PYTHON ?= python3.11
VENV   := .venv
# The moshi engine's model code, installed without its pins (pyproject's `moshi` extra; docs/gpu.md says why).
MOSHI  := moshi==0.2.13
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test check lint venv system-test-deps clean

# Lint, types and the unit tests that need no server, SSH or browser: `make check` runs them (under a minute). A
# new fast test file belongs here too.
CHECK_TESTS := tests/test_lint.py tests/test_audio.py tests/test_gates.py tests/test_gates_slo.py \
               tests/test_imports.py tests/test_metricdefs.py tests/test_options.py tests/test_protocol.py \
               tests/test_provision_fabric.py tests/test_provision_plan.py tests/test_report_summary.py \
               tests/test_report_wer.py tests/test_self_contained.py

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "make: could not create a virtual environment (Debian: apt-get install python3.11-venv)"; exit 2; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(MOSHI)
	touch $@

venv: $(VENV)/.installed

# Debian packages the tests use for real parts: an OpenSSH server (provision), Chromium (the web UI), tmux,
# Prometheus (scrapes --prometheus-port and the servers' /metrics; started by the tests on loopback, no service).
system-test-deps:
	@missing=""; \
	 command -v sshd >/dev/null || test -x /usr/sbin/sshd || missing="$$missing openssh-server openssh-client"; \
	 command -v chromium >/dev/null || missing="$$missing chromium"; \
	 command -v tmux >/dev/null || missing="$$missing tmux"; \
	 command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	   echo "make: installing Debian packages:$$missing"; \
	   $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	 fi

run: venv
	$(VENV)/bin/yapbench run

# ruff and mypy gate inside the suite too (tests/test_lint.py, one of CHECK_TESTS), so `make check` and `make test`
# check them as CI does.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

check: venv
	$(PY) -m pytest -q $(CHECK_TESTS)

test: venv system-test-deps
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) reports/*/
