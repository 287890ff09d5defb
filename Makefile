# trnlab: the two user commands build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: test report lab lint clean-reports

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## make test: unit tests, lint, then the notebooks against their stored outputs (nbval), run
## from a copy in a temporary folder so that nothing is written into notebooks/
test: $(STAMP)
	$(BIN)/ruff check trnlab tests
	$(BIN)/python -m pytest
	@nbdir=$$(mktemp -d) && cp notebooks/*.ipynb $$nbdir/ && \
	$(BIN)/python -m pytest -c pyproject.toml --rootdir $$nbdir --nbval $$nbdir \
		--nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=300 \
		--nbval-current-env -p no:cacheprovider; status=$$?; rm -rf $$nbdir; exit $$status

## make report: run every notebook with default parameters into reports/<timestamp>/
report: $(STAMP)
	$(BIN)/trnlab report

## make lab: JupyterLab on 127.0.0.1
lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --allow-root notebooks

lint: $(STAMP)
	$(BIN)/ruff check trnlab tests

clean-reports:
	rm -rf reports/[0-9]*
