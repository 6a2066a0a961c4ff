# The two commands a newcomer needs: `make demo` and `make test`.
# Both create (or reuse) .venv and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lab clean wheelhouse

$(STAMP): pyproject.toml requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo

# JupyterLab on 127.0.0.1 with the project's kernel, offline (workbench/lab.py);
# LAB_ARGS=--allow-root in a container that runs as root
lab: $(STAMP)
	$(BIN)/workbench lab $(LAB_ARGS)

# Two processes (TEST_WORKERS=0 for one); each test file stays in one process,
# so a module's shared fixtures (a demo vault, a JupyterLab) are built once.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	test -x benchmarks/.peer-venv/bin/python || sh benchmarks/peer_setup.sh
	$(BIN)/python -m benchmarks $(BENCH)

# Every wheel the environment needs, for this platform and Python, in one folder
# with a hash lock, to carry to the air-gapped workstation (README: offline install).
WHEELHOUSE ?= wheelhouse
wheelhouse: $(STAMP)
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) '.[test]' pip setuptools
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir $(WHEELHOUSE) -r requirements-nodeps.txt
	$(BIN)/python tools/wheelhouse_lock.py $(WHEELHOUSE)

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis
