# `make demo` and `make test` set everything up on a fresh machine (Python 3.10+). The demo
# uses files in this repository only; the tests also read ../shared (the corpus).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_NET ?= models/fcn8s.prototxt
CRF_NET ?= models/fcn8s_crfrnn.prototxt

.PHONY: setup demo test test-fast bench models proto lenet clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the local CPU wheel; a plain `torch` would pull GBs of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	@command -v dot >/dev/null || (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) \
		|| echo "note: graphviz's dot is missing (needed for drawing only)"
	@# the view page's browser tests drive Debian's chromium through playwright
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "note: chromium is missing (the view page's browser tests will skip)"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/netdef check $(DEMO_NET) --phase TRAIN
	$(BIN)/netdef info $(DEMO_NET)
	$(BIN)/netdef draw $(DEMO_NET) -o demo-fcn8s.svg
	$(BIN)/netdef view $(DEMO_NET) -o demo-fcn8s.html
	$(BIN)/netdef compile $(DEMO_NET) --input data=1,3,224,224 -o demo-fcn8s
	$(BIN)/python -c "import sys, torch; sys.path.insert(0, 'demo-fcn8s'); import model; \
		print('demo-fcn8s/model.py ->', {k: tuple(v.shape) for k, v in \
		model.load()(data=torch.randn(1, 3, 224, 224)).items()})"
	$(BIN)/netdef check $(CRF_NET)
	$(BIN)/netdef info $(CRF_NET) --input data=1,3,64,64 | tail -3

test: setup
	$(BIN)/python -m pytest -q -n auto

test-fast: setup
	$(BIN)/python -m pytest -q -n auto -m "not slow"

bench: setup
	$(BIN)/python bench/bench_parse.py
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python bench/bench_draw.py

# LeNet on real handwritten digits, offline: BVLC's recipe through LMDBs netdef writes
lenet: setup
	cd examples/lenet && ../../$(BIN)/python lenet.py

models: setup
	$(BIN)/python models/fcn.py

proto: setup
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=netdef/proto protos/netdef.proto

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache demo-fcn8s.svg demo-fcn8s.html demo-fcn8s
