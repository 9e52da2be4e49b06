# The two set-up commands: `make demo` and `make test`. Both create .venv and install what they need.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch lies on these machines' disk; install it first so that no looser
	# requirement pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/mlsd demo

test: install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy src
	# the layer contracts of docs/architecture.md ([tool.importlinter] in pyproject.toml)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/check_module_size.py src --max-lines 500
	$(PY) benchmarks/update_readme.py --check
	# the alerting rules shipped in deploy/prometheus/, and their unit tests
	@command -v promtool >/dev/null 2>&1 || { echo "promtool not found: install Debian's prometheus package (.ci/run does)" >&2; exit 1; }
	promtool check rules deploy/prometheus/rules.yml
	promtool test rules deploy/prometheus/rules_test.yml
	promtool check config deploy/prometheus/prometheus.yml
	@if command -v amtool >/dev/null 2>&1; then amtool check-config deploy/prometheus/alertmanager.yml; \
	else echo "amtool not found: alertmanager.yml not checked (Debian's prometheus-alertmanager package has it)"; fi

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts
	$(VENV)/bin/ruff format src tests benchmarks scripts

bench: install
	$(PY) benchmarks/simulate.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
