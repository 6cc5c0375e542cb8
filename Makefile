# skyrelay: `make demo` runs the live demo, `make test` runs every test. Both install what is
# missing first: Debian packages with apt-get, Python packages into .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
BUILD_LOCK := /tmp/skyrelay-build-$(shell id -u).lock
JOBS ?= $(shell nproc)

APT_PACKAGES := build-essential cmake ninja-build pkg-config libboost1.81-dev \
	nlohmann-json3-dev libssl-dev libgtest-dev python3 python3-venv python3-dev \
	util-linux procps clang libclang-rt-14-dev chromium redis-server libhiredis-dev zlib1g-dev nginx \
	liburing-dev
# pyproject.toml's [build-system] requires (pip cannot install those by themselves).
PY_BUILD_DEPS := "scikit-build-core>=0.11" "pybind11>=2.13"
# The Python packages of the tests, the benchmarks and `make wheel` are listed once, as the
# dependency groups (PEP 735) of pyproject.toml; pip >= 25.1 installs one with --group NAME.
PIP_MIN := "pip>=25.1"

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help deps node-deps venv install wheel test-wheel demo test gpredict-data test-cpp test-cpp-asan test-hub-tsan test-python test-js bench clean \
	fuzz fuzz-build test-fuzz

help:
	@echo "make demo   - build and run the live demo on http://127.0.0.1:8000/"
	@echo "make test   - build and run every test (C++ under ASan+UBSan and TSan, fuzzers, Python, Node, the wheel)"
	@echo "make wheel  - build the wheel into dist/, with the shared libraries it links vendored (auditwheel)"
	@echo "make bench  - run the fan-out benchmark against python websockets"

# Debian packages, installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Node.js for the JavaScript clients (Debian's nodejs when none is installed), and the npm
# packages of package-lock.json in ./node_modules.
node-deps:
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }

node_modules/.stamp: package.json package-lock.json | node-deps
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.stamp: Makefile pyproject.toml | deps
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade $(PIP_MIN)
	$(VPY) -m pip install -q $(PY_BUILD_DEPS) --group test
	touch $@

venv: $(VENV)/.stamp

# Builds the extension (incrementally, in build/<wheel tag>) and installs the package.
install: venv
	flock $(BUILD_LOCK) $(VPY) -m pip install -q --no-build-isolation .

# The wheel of that same build (pip reuses build/<wheel tag>, so only what changed compiles),
# repaired by auditwheel: the shared libraries outside the manylinux set that the extension
# links (OpenSSL's libssl and libcrypto, hiredis) are copied into skyrelay.libs/ and the
# extension points at them, so the wheel installs where they are not. docs/install.md.
WHEEL_TOOLS := $(VENV)/.wheel-tools.stamp
$(WHEEL_TOOLS): $(VENV)/.stamp pyproject.toml
	$(VPY) -m pip install -q --group wheel
	touch $@

wheel: $(WHEEL_TOOLS)
	rm -rf build/wheel-unrepaired
	flock $(BUILD_LOCK) $(VPY) -m pip wheel -q --no-build-isolation --no-deps -w build/wheel-unrepaired .
	rm -f dist/skyrelay-*.whl
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair -w dist build/wheel-unrepaired/skyrelay-*.whl
	@ls dist/skyrelay-*.whl

# The wheel in a fresh venv with no compiler and no headers reachable: tests/wheel/.
test-wheel: wheel
	$(VPY) -m pytest -q -p no:cacheprovider tests/wheel

demo: install node_modules/.stamp
	$(VENV)/bin/skyrelay demo --host 127.0.0.1 --port 8000

# The GoogleTest suites run once, under ASan+UBSan (Debug: asserts on too); `make test-cpp` is
# the same suites in RelWithDebInfo for a quick local run. A fourth full build of the core in
# `make test` cost CI about 4 minutes and caught nothing the sanitized run does not (the wheel's
# Release build already compiles every source with optimization).
test: test-cpp-asan test-hub-tsan test-fuzz test-python test-js test-wheel

test-cpp: deps
	cmake -S . -B build/cpp-tests -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSKYRELAY_BUILD_TESTS=ON >/dev/null
	cmake --build build/cpp-tests -j $(JOBS) --target skyrelay_tests skyrelay_net_tests skyrelay_broker_tests
	ctest --test-dir build/cpp-tests --output-on-failure -j $(JOBS)

test-cpp-asan: deps
	cmake -S . -B build/cpp-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSKYRELAY_BUILD_TESTS=ON -DSKYRELAY_SANITIZE=ON >/dev/null
	cmake --build build/cpp-asan -j $(JOBS) --target skyrelay_tests skyrelay_net_tests skyrelay_broker_tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build/cpp-asan --output-on-failure -j $(JOBS)

# The hub's order test under ThreadSanitizer (g++ -fsanitize=thread; the hub, its few core
# files and the test, outside CMake so nothing else needs a TSan build).
TSAN_SOURCES := cpp/src/hub/hub.cpp cpp/src/hub/hub_channels.cpp cpp/src/hub/hub_history.cpp \
	cpp/src/hub/hub_publish.cpp cpp/src/hub/hub_state.cpp cpp/src/hub/keyed_state.cpp \
	cpp/src/hub/closed_sids.cpp cpp/src/core/clock.cpp \
	cpp/src/core/random.cpp tests/cpp/test_hub_order.cpp tests/cpp/test_hub_state.cpp \
	tests/cpp/test_member_list.cpp
test-hub-tsan: deps
	mkdir -p build/tsan
	g++ -std=c++20 -O1 -g -fsanitize=thread -Icpp/include -Itests/cpp $(TSAN_SOURCES) \
	  -lgtest -lgtest_main -lcrypto -lpthread -o build/tsan/test_hub_order
	TSAN_OPTIONS=halt_on_error=1 build/tsan/test_hub_order

test-python: install node_modules/.stamp gpredict-data
	$(VPY) -m pytest -q -p no:cacheprovider tests/python

test-js: install node_modules/.stamp gpredict-data
	node --test tests/js/

# The 979-satellite catalogue that Debian's gpredict package ships (the orbit tests, the
# benchmark and the demo's full-scale mode read it). Only the package file is fetched and
# unpacked into build/; gpredict itself is not installed.
GPREDICT_DATA := build/gpredict/usr/share/gpredict/data/satdata/satellites.dat
$(GPREDICT_DATA): | deps
	mkdir -p build/gpredict/deb
	cd build/gpredict/deb && { apt-get download gpredict 2>/dev/null || \
	  { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get download gpredict; }; }
	dpkg -x $$(ls build/gpredict/deb/gpredict_*.deb | head -1) build/gpredict
	test -f $@ && touch $@

gpredict-data: $(GPREDICT_DATA)

bench: install
	$(VPY) -m pip install -q --group bench
	$(VPY) bench/run_fanout.py

# libFuzzer targets (fuzz/*.cpp) built with clang, ASan and UBSan. `make fuzz` runs each for
# FUZZ_SECONDS on a working corpus in build/fuzz-corpus (seeded from fuzz/corpus, which is
# committed); `make test` runs each briefly. A crash fails the run and leaves its input in
# build/fuzz/artifacts/.
FUZZ_TARGETS := json_protocol envelope engineio socketio publish_api ws_frame tle jwt access_policy sse_cursor permessage_deflate client_address
FUZZ_SECONDS ?= 300
FUZZ_TEST_SECONDS ?= 10

fuzz-build: deps
	CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSKYRELAY_FUZZ=ON >/dev/null
	cmake --build build/fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))

# The fuzzers run $(JOBS) at a time (each is one process on one core): every target still gets
# its full time, and `make test` waits half as long on two cores. A crash stops the run.
define run_fuzzers
	@mkdir -p build/fuzz/artifacts
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(JOBS) -I{} bash -c '\
	  mkdir -p build/fuzz-corpus/{}; \
	  build/fuzz/fuzz_{} -max_total_time=$(1) -max_len=8192 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/artifacts/{}- build/fuzz-corpus/{} fuzz/corpus/{} \
	    > build/fuzz/{}.log 2>&1; rc=$$?; \
	  echo "fuzz {}: $(1) s"; grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY)" build/fuzz/{}.log; \
	  exit $$rc' || { echo "a fuzzer failed: its log is build/fuzz/<target>.log"; exit 1; }
endef

fuzz: fuzz-build
	$(call run_fuzzers,$(FUZZ_SECONDS))

test-fuzz: fuzz-build
	$(call run_fuzzers,$(FUZZ_TEST_SECONDS))

clean:
	rm -rf build
