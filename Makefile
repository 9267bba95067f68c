# The two commands a user needs: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
SHARED_DATA := $(abspath ../shared/data)
DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(abspath data))

.PHONY: demo test setup model clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==25.3
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

model: $(STAMP)
	$(PY) -m metabert_tf.model_cache

test: setup model
	$(PY) -m pytest -q -n 2 --dist worksteal tests

demo: setup model
	DATA_DIR=$(DATA_DIR) bash scripts/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache
