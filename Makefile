# Two commands on a fresh machine:
#   make demo   set up everything (ExifTool included) and scan sample_media/
#   make test   set up everything and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && echo sudo)
SAMPLE_EXCLUDES := --exclude '*.py' --exclude '*.json' --exclude '*.pem'

.PHONY: setup exiftool demo test test-tools bench samples clean

exiftool:
	@command -v exiftool >/dev/null 2>&1 || { \
	  echo "make: installing ExifTool"; \
	  if command -v apt-get >/dev/null 2>&1; then \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libimage-exiftool-perl; \
	  elif command -v brew >/dev/null 2>&1; then brew install exiftool; \
	  elif command -v dnf >/dev/null 2>&1; then $(SUDO) dnf install -y perl-Image-ExifTool; \
	  else echo "make: install ExifTool with your package manager" >&2; exit 3; fi; }
	@exiftool -ver >/dev/null

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
# the reference dwtDct embedder tests/test_pixels.py marks images with; --no-deps: the package
# declares torch and opencv-python (GUI build), which its dwtDct code never uses
	$(BIN)/pip install -q --no-deps 'invisible-watermark==0.2.0'
	touch $@

setup: exiftool $(VENV)/.installed

demo: setup
	$(BIN)/provgate scan sample_media $(SAMPLE_EXCLUDES) --ledger $(VENV)/demo-ledger.db
	-find sample_media -type f ! -name '*.py' ! -name '*.json' ! -name '*.pem' | \
	  $(BIN)/provgate check --from - --zone final --ledger $(VENV)/demo-ledger.db
	$(BIN)/provgate report --ledger $(VENV)/demo-ledger.db --delivery sample_media -o $(VENV)/demo-report.html

# system tools the tests drive: strace (C2PA validation opens no socket), chromium (the HTML
# report renders from disk). Skipped tests locally without them; .ci/run makes them required.
TEST_TOOLS := strace chromium
test-tools:
	@missing=""; for t in $(TEST_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing$$missing"; \
	  $(SUDO) apt-get update -qq >/dev/null 2>&1; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 || \
	    echo "make: could not install$$missing (tests that need them will skip, or fail in CI)"; fi

test: setup test-tools
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/bench_scan.py
	$(BIN)/python bench/bench_ledger.py
	$(BIN)/python bench/bench_c2pa.py
	$(BIN)/python bench/bench_watch.py
	$(BIN)/python bench/bench_pixels.py
	$(BIN)/pip install -q -e '.[samples]'  # OpenEXR: bench_sequences.py writes its frames
	$(BIN)/python bench/bench_sequences.py  # --big: 200 2K frames (2.5 GB); --huge 100000: memory
	-$(BIN)/python bench/bench_truth.py  # needs ../shared/realworld

# needs ffmpeg too (apt-get install ffmpeg)
samples: setup
	$(BIN)/pip install -q -e '.[samples]'
	$(BIN)/python sample_media/make_samples.py
	$(BIN)/python sample_media/make_c2pa_samples.py
	$(BIN)/python sample_media/make_film_samples.py  # after make_samples.py: it rewrites EXPECTED.json

clean:
	rm -rf $(VENV) .pytest_cache
