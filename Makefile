# intentcam developer targets. `make test` and `make demo` set up whatever is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
# Model mirror: INTENTCAM_MODEL_MIRROR if set, else the workplace mirror when it exists.
MIRROR ?= $(abspath $(or $(INTENTCAM_MODEL_MIRROR),$(wildcard $(SHARED)/models)))
DEMO_CLIP ?= $(SHARED)/data/concourse_overhead.avi
DEMO_OUT ?= demo-out
APT_PACKAGES := mosquitto libsystemd-dev pkg-config systemd chromium chromium-driver
STAMP := $(VENV)/.intentcam-installed
# What every test virtualenv installs (a variable: its comma would split a $(call)).
PACKAGE := '.[dev,systemd]'
# The other Pythons a device may have (Jetson's Ubuntu 22.04: 3.10, Trixie: 3.13); `make
# test-pythons` runs the fast suite on each one found that runs (python3.X on PATH, or under
# pyenv's versions: its shims on PATH fail for versions not selected).
OTHER_PYTHONS ?= 3.10 3.12 3.13
# gooseBit (hawkBit's device API) for the OTA tests: its own virtualenv, it needs Python 3.11+
# and a large dependency set that has no place beside the daemon's.
GOOSEBIT_VENV ?= .venv-goosebit
GOOSEBIT_VERSION := 0.2.12
GOOSEBIT_STAMP := $(GOOSEBIT_VENV)/.goosebit-$(GOOSEBIT_VERSION)
# The AsyncAPI 3.0.0 JSON Schema (npm @asyncapi/specs) that docs/asyncapi.yaml is checked against.
ASYNCAPI_SPECS_VERSION := 6.11.1
ASYNCAPI_SPECS_SHA256 := 01af8744dc33c0c7eb2e908f6a955319ee58b70ecadc9387d1aeb16c0cd28928
ASYNCAPI_SPEC := .cache/asyncapi-specs-$(ASYNCAPI_SPECS_VERSION)/package/schemas/3.0.0.json

.PHONY: help setup apt venv goosebit asyncapi-spec asyncapi models lint test test-fast test-pythons test-python demo demo-ota eval bench dist arm64-smoke clean
# The edit-test loop's selection: everything but whole clips and a real broker.
FAST_TESTS := -m "not slow and not broker"
BENCH_FRAMES ?= 300
BENCH_OUT ?= hw_bench/results

help:
	@echo "make setup   install system packages, the virtualenv (.venv) and the models (idempotent)"
	@echo "make test    set up if needed, lint (ruff, mypy, import contracts), run the whole test suite, then test-pythons"
	@echo "make test-fast  the suite without the slow and broker tests (about a minute)"
	@echo "make test-pythons  the fast suite on Python $(OTHER_PYTHONS) too, each installed as on a device"
	@echo "make demo    set up if needed, then run the daemon on a sample clip and write its store report"
	@echo "make demo-ota  build, sign and hot-swap a model bundle into a daemon running on a clip"
	@echo "make eval    set up if needed, then accuracy on every shared ground-truth sequence"
	@echo "make bench   set up if needed, then benchmark on the sample clips (hw_bench/results)"
	@echo "make dist    build the wheel and sdist a device installs from (dist/)"
	@echo "make asyncapi  regenerate docs/asyncapi.yaml from the message schemas"
	@echo "make arm64-smoke  install the wheel in a Debian Bookworm arm64 root under qemu and run it"
	@echo "make clean   remove the virtualenvs and demo output"

setup: apt venv models goosebit asyncapi-spec

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "error: need root (or sudo) to install:" $$missing >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v=sys.version_info[:2]; sys.exit(0 if (3,10) <= v <= (3,13) else "error: Python 3.10 to 3.13 needed, found %d.%d" % v)'
	$(call install_venv,$(PYTHON),$(VENV),-e $(PACKAGE))
	@touch $@

# $(1) makes the virtualenv $(2) if missing and installs $(3) into it. supervision (the peer,
# via trackers) pulls the desktop OpenCV, whose Qt and GL libraries would shadow the headless
# build a device installs and distort its memory figures: it is swapped back.
define install_venv
	@test -x $(2)/bin/python || $(1) -m venv $(2)
	$(2)/bin/python -m pip install -q --upgrade pip
	$(2)/bin/python -m pip install -q $(3)
	$(2)/bin/python -m pip uninstall -q -y opencv-python
	$(2)/bin/python -m pip install -q --force-reinstall --no-deps "$$($(2)/bin/python -m pip list --format=freeze 2>/dev/null | grep -i '^opencv-python-headless==')"
endef

goosebit: $(GOOSEBIT_STAMP)

$(GOOSEBIT_STAMP):
	@test -x $(GOOSEBIT_VENV)/bin/python || $(PYTHON) -m venv $(GOOSEBIT_VENV)
	$(GOOSEBIT_VENV)/bin/python -m pip install -q --upgrade pip
	$(GOOSEBIT_VENV)/bin/python -m pip install -q goosebit==$(GOOSEBIT_VERSION)
	@touch $@

asyncapi-spec: $(ASYNCAPI_SPEC)

$(ASYNCAPI_SPEC):
	@mkdir -p .cache
	curl -fsSL -o .cache/asyncapi-specs.tgz \
	  https://registry.npmjs.org/@asyncapi/specs/-/specs-$(ASYNCAPI_SPECS_VERSION).tgz
	echo "$(ASYNCAPI_SPECS_SHA256)  .cache/asyncapi-specs.tgz" | sha256sum -c --quiet
	mkdir -p .cache/asyncapi-specs-$(ASYNCAPI_SPECS_VERSION)
	tar -xzf .cache/asyncapi-specs.tgz -C .cache/asyncapi-specs-$(ASYNCAPI_SPECS_VERSION) package/schemas/3.0.0.json
	@rm -f .cache/asyncapi-specs.tgz

asyncapi: venv
	$(BIN)/python -m intentcam.asyncapi > docs/asyncapi.yaml

models: venv
	$(BIN)/intentcam models fetch $(if $(MIRROR),--mirror $(MIRROR))

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: setup lint
	INTENTCAM_MODEL_MIRROR=$(MIRROR) $(BIN)/python -m pytest -q
	@$(MAKE) --no-print-directory test-pythons

test-fast: setup
	INTENTCAM_MODEL_MIRROR=$(MIRROR) $(BIN)/python -m pytest -q $(FAST_TESTS)

# Each other Python gets .venv-pyX.Y with the package installed as on a device (a wheel, not
# editable: the tests then run the installed copy, share/intentcam data files included).
test-pythons: setup
	@for v in $(OTHER_PYTHONS); do \
	  py=; for c in $$(command -v python$$v) $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python$$v 2>/dev/null); do \
	    if "$$c" -c 'import venv' 2>/dev/null; then py=$$c; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "test-pythons: Python $$v SKIPPED: no python$$v on PATH or under pyenv"; continue; fi; \
	  echo "test-pythons: Python $$v ($$py)"; \
	  $(MAKE) --no-print-directory test-python PY=$$py VENV_OTHER=.venv-py$$v || exit 1; \
	done

test-python:
	$(call install_venv,$(PY),$(VENV_OTHER),$(PACKAGE))
	INTENTCAM_MODEL_MIRROR=$(MIRROR) $(VENV_OTHER)/bin/python -m pytest -q -p no:cacheprovider $(FAST_TESTS)

demo: setup
	@test -f $(DEMO_CLIP) || { echo "error: demo clip $(DEMO_CLIP) not found (set DEMO_CLIP=...)" >&2; exit 1; }
	@mkdir -p $(DEMO_OUT)
	$(BIN)/intentcam detect $(SHARED)/data/kite_and_cold.jpg
	@rm -f $(DEMO_OUT)/records.jsonl
	$(BIN)/intentcam run --config config/demo.toml --source $(DEMO_CLIP) --report-every 5 \
	  --sink jsonl:$(DEMO_OUT)/records.jsonl
	$(BIN)/intentcam preview --config config/demo.toml --source $(DEMO_CLIP) --seconds 10 \
	  --out $(DEMO_OUT)/view.png --plate $(DEMO_OUT)/plate.png
	$(BIN)/intentcam report --from $(DEMO_OUT)/records.jsonl --out $(DEMO_OUT)/report \
	  --plate demo-cam=$(DEMO_OUT)/plate.png
	@echo "records: $(DEMO_OUT)/records.jsonl; the scene: $(DEMO_OUT)/view.png"
	@echo "the store report: $(abspath $(DEMO_OUT))/report/index.html"

demo-ota: setup
	@test -f $(DEMO_CLIP) || { echo "error: demo clip $(DEMO_CLIP) not found (set DEMO_CLIP=...)" >&2; exit 1; }
	$(BIN)/python ota/demo_ota.py --clip $(SHARED)/data/counting/mall_dataset/mall_frames_0001-0400.mp4 \
	  --shared $(SHARED) --out $(DEMO_OUT)/ota

eval: setup
	$(BIN)/intentcam eval $(SHARED)/data/mot $(SHARED)/data/counting/mall_dataset $(EVAL_ARGS)

dist: venv
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	@ls -l dist

# Debian Bookworm arm64 root under qemu (root only; slow: not part of `make test`).
arm64-smoke: dist models
	@$(MAKE) --no-print-directory apt APT_PACKAGES="debootstrap qemu-user-static binfmt-support"
	@test -e /proc/sys/fs/binfmt_misc/register || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@update-binfmts --enable qemu-aarch64 2>/dev/null || true
	@mkdir -p $(BENCH_OUT)
	$(BIN)/python hw_bench/arm64_smoke.py --json $(BENCH_OUT)/arm64_smoke.json \
	  --models "$$($(BIN)/intentcam models list --json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["model_dir"])')"

bench: setup
	@mkdir -p $(BENCH_OUT)
	$(BIN)/intentcam bench --clip $(SHARED)/data/concourse_overhead.avi --frames $(BENCH_FRAMES) \
	  --json $(BENCH_OUT)/concourse.json --markdown $(BENCH_OUT)/concourse.md
	$(BIN)/intentcam bench --clip $(SHARED)/data/counting/mall_dataset/mall_frames_0001-0400.mp4 \
	  --frames $(BENCH_FRAMES) --json $(BENCH_OUT)/mall.json --markdown $(BENCH_OUT)/mall.md
	$(BIN)/python hw_bench/motion_gate.py --json $(BENCH_OUT)/motion_gate.json
	$(BIN)/python hw_bench/pose_cost.py --json $(BENCH_OUT)/pose_cost.json
	@echo "results in $(BENCH_OUT)/"

clean:
	rm -rf $(VENV) $(GOOSEBIT_VENV) $(foreach v,$(OTHER_PYTHONS),.venv-py$(v)) $(DEMO_OUT) .pytest_cache dist build
