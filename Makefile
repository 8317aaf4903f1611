# Two entry points for a fresh Debian 12 machine (run as root, or with sudo for the apt step):
#   make demo   — install everything, then build, serve, pull, mount and show a gadget
#   make test   — install everything, then lint, type-check and run the whole test suite
VENV ?= .venv
PYTHON ?= python3
APT_PACKAGES = build-essential pkg-config python3-venv python3-dev fuse3 libfuse3-dev \
	clang llvm clang-19 llvm-19 libbpf-dev linux-libc-dev bpftool docker-registry skopeo apache2-utils openssl \
	zstd curl

.PHONY: demo test lint deadcode system-packages venv bench bench-build test-ig test-ig-gadgets test-ig-datasources clean

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: system-packages $(VENV)/.installed

lint: venv deadcode
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy engine fusefs cli

# Unused code in the runtime packages (settings and the names it cannot see used: [tool.vulture]).
deadcode: venv
	$(VENV)/bin/vulture

test: venv lint
	$(VENV)/bin/pytest -q

# ig and gadgetstore sharing one store, against a real ig binary (e.g. from `go build ./cmd/ig` in a
# checkout of inspektor-gadget); root only: ig's store is moved with a private mount namespace.
test-ig: venv
	@test -n "$(IG)" || { echo "usage: make test-ig IG=/path/to/ig"; exit 2; }
	@tmp=$$(mktemp -d); IG="$(abspath $(IG))" TMPDIR=$$tmp $(VENV)/bin/pytest -q -rs --basetemp=$$tmp/pytest \
		tests_ig/test_store_sharing.py; rc=$$?; rm -rf $$tmp; exit $$rc

demo: venv
	bash scripts/demo.sh

bench: venv
	$(VENV)/bin/python benchmarks/store_bench.py

# Builds every gadget of an Inspektor Gadget checkout and checks it against ig's own builder commands
# (not part of `make test`). IG_LIBBPF_HEADERS: a directory with libbpf >= 1.2's bpf/ headers, as ig's
# builder image has them (without it, gadgets that need them cannot be compared and are skipped).
IG_SOURCE ?=
IG_LIBBPF_HEADERS ?=
test-ig-gadgets: venv
	@test -n "$(IG_SOURCE)" || { echo "usage: make test-ig-gadgets IG_SOURCE=/path/to/inspektor-gadget [IG_LIBBPF_HEADERS=DIR]"; exit 2; }
	IG_SOURCE="$(IG_SOURCE)" IG_LIBBPF_HEADERS="$(IG_LIBBPF_HEADERS)" nice -n 10 $(VENV)/bin/pytest -q -rs tests_ig

# Only the --show-datasources checks of tests_ig (test-ig-gadgets runs them too), with the same variables.
test-ig-datasources: venv
	@test -n "$(IG_SOURCE)" || { echo "usage: make test-ig-datasources IG_SOURCE=/path/to/inspektor-gadget [IG_LIBBPF_HEADERS=DIR]"; exit 2; }
	IG_SOURCE="$(IG_SOURCE)" IG_LIBBPF_HEADERS="$(IG_LIBBPF_HEADERS)" $(VENV)/bin/pytest -q tests_ig/test_datasources_ig.py

# Build time of ig's gadgets against bare clang with the same flags, both arches one after the other.
bench-build: venv
	@test -n "$(IG_SOURCE)" || { echo "usage: make bench-build IG_SOURCE=/path/to/inspektor-gadget"; exit 2; }
	nice -n 10 $(VENV)/bin/python benchmarks/build_bench.py "$(IG_SOURCE)"

clean:
	rm -rf $(VENV) demo-work benchmarks/work
