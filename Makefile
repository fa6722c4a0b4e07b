# The two commands of the README: `make run` and `make test`. Each bootstraps what it needs.
PYTHON ?= python3.11
VENV   := .venv
# The moshi engine's model code, installed without its pins (pyproject's `moshi` extra; docs/gpu.md says why).
MOSHI  := moshi==0.2.13
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test venv system-test-deps clean

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "make: could not create a virtual environment (Debian: apt-get install python3.11-venv)"; exit 2; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(MOSHI)
	touch $@

venv: $(VENV)/.installed

# Debian packages the tests use for real parts: an OpenSSH server (provision), Chromium (the web UI), tmux.
system-test-deps:
	@missing=""; \
	 command -v sshd >/dev/null || test -x /usr/sbin/sshd || missing="$$missing openssh-server openssh-client"; \
	 command -v chromium >/dev/null || missing="$$missing chromium"; \
	 command -v tmux >/dev/null || missing="$$missing tmux"; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	   echo "make: installing Debian packages:$$missing"; \
	   $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	 fi

run: venv
	$(VENV)/bin/yapbench run

test: venv system-test-deps
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) reports/*/
