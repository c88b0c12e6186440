# attrkit: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export ATTRKIT_CACHE ?= $(CURDIR)/.cache/attrkit
export RAY_USAGE_STATS_ENABLED = 0
export RAY_AUTH_MODE = disabled
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test bench bench-quick crosscheck crosscheck-hf clean install zoo mutations

$(VENV)/.core:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0 numpy
	touch $@

$(VENV)/.demo: $(VENV)/.core pyproject.toml
	$(PIP) install -q -c constraints.txt -e ".[all]"
	touch $@

$(VENV)/.test: $(VENV)/.core pyproject.toml
	$(PIP) install -q -c constraints.txt -e ".[all,test]"
	touch $@

install: $(VENV)/.demo

demo: $(VENV)/.demo
	$(VENV)/bin/attrkit demo --out demo-out

test: $(VENV)/.test
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) || echo "warning: could not install chromium; browser tests will report it"
	ATTRKIT_REQUIRE_BROWSER=1 $(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected"; exit 1; fi; exit $$rc

# `make mutations` (not part of `make test`): one-line mutations of the library, one at a time in a scratch copy,
# each against the tests that must catch it (tests/mutations.py; `--list` shows them); fails if one survives.
mutations: $(VENV)/.test
	OMP_NUM_THREADS=1 $(PY) tests/mutations.py

# `make zoo`: re-run every zoo recipe (one torch thread) and rewrite the shipped weights in attrkit/zoo_weights/
# (safetensors + JSON + manifest.json with SHA-256); prints each held-out score and its band.
zoo: $(VENV)/.demo
	$(PY) -m attrkit.zoo

# `make bench`: attrkit against Captum, SHAP and LIME side by side (benchmarks/; under 30 min on 2 cores),
# writes docs/benchmarks.md and docs/benchmarks.json. `make bench-quick`: the same in under 5 minutes.
# The bench extra installs the peers into .venv if they are missing; pytorch-grad-cam needs torchvision
# (torch 2.14.1), so its comparison runs in .venv-crosscheck when that exists (`make crosscheck`).
$(VENV)/.bench: $(VENV)/.core pyproject.toml
	$(PIP) install -q -c constraints.txt -e ".[all,bench]"
	touch $@

bench: $(VENV)/.bench
	$(PY) -m benchmarks

bench-quick: $(VENV)/.bench
	$(PY) -m benchmarks --quick

# `make crosscheck`: LRP and the CAM family against Zennit and pytorch-grad-cam (crosscheck/compare.py), the
# rule methods on torchvision's backbones with Zennit / Captum agreement and timing (crosscheck/graphs.py), the
# automatic layer and token-layer CAMs on torchvision/timm nets (layers.py), AttnLRP against lxt. All
# need torchvision, which only imports beside torch 2.14.1, so they run in .venv-crosscheck (~5.5 GB, built once).
XVENV := .venv-crosscheck
$(XVENV)/.ready:
	$(PYTHON) -m venv $(XVENV)
	$(XVENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 zennit grad-cam captum==0.9.0 timm lxt numpy scikit-image scikit-learn tqdm
	$(XVENV)/bin/python -m pip install -q -e "$(CURDIR)" --no-deps
	touch $@

# PYTHONPATH: this tree's attrkit even where .venv-crosscheck is a shared environment installed from another checkout
XPY := PYTHONPATH=$(CURDIR) $(XVENV)/bin/python
crosscheck: $(XVENV)/.ready
	$(XPY) crosscheck/compare.py --json crosscheck/results.json
	$(XPY) crosscheck/graphs.py --json crosscheck/graphs.json
	$(XPY) crosscheck/layers.py --json crosscheck/layers_results.json
	$(XPY) crosscheck/attnlrp_lxt.py --json crosscheck/attnlrp_lxt_results.json

# `make crosscheck-hf`: AttnLRP against lxt on a small Hugging Face ViT and BERT. lxt 2.1 patches BERT with its copy
# of transformers 4.52's modeling_bert, so lxt runs in .venv-crosscheck-hf (transformers 4.52.4) and attrkit
# (transformers 5) in .venv-crosscheck on the saved weights and relevance (crosscheck/attnlrp_hf.py).
XVENV_HF := .venv-crosscheck-hf
$(XVENV_HF)/.ready:
	$(PYTHON) -m venv $(XVENV_HF)
	$(XVENV_HF)/bin/python -m pip install -q torch==2.14.1 transformers==4.52.4 lxt==2.1 numpy safetensors
	touch $@

crosscheck-hf: $(XVENV)/.ready $(XVENV_HF)/.ready
	mkdir -p .cache
	$(XVENV_HF)/bin/python crosscheck/attnlrp_hf.py --lxt-side .cache/attnlrp_hf_lxt.pt
	$(XPY) crosscheck/attnlrp_hf.py --lxt .cache/attnlrp_hf_lxt.pt --json crosscheck/attnlrp_hf_results.json

clean:
	rm -rf $(VENV) .cache build *.egg-info
