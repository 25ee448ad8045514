# The README's two commands, and a few conveniences.
#   make demo   build, then run sluice on examples/quickstart.yaml with two demo origins
#   make test   build (optimised, ASan+UBSan, TSan, fuzzers) and run every test
SHELL := /bin/bash
.DEFAULT_GOAL := build

DEMO_ORIGINS := 127.0.0.1:9001=origin-a 127.0.0.1:9002=origin-b

.PHONY: deps build asan tsan fuzz test test-release test-asan test-tsan test-fuzz demo clean

deps:
	bash deploy/install-deps.sh

build: deps
	cmake --preset release
	cmake --build --preset release

asan: deps
	cmake --preset asan
	cmake --build --preset asan

test-release: build
	ctest --preset release

test-asan: asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --preset asan

tsan: deps
	cmake --preset tsan
	cmake --build --preset tsan

# ThreadSanitizer: unit tests, then every integration file with workers: 2
# (tests/CMakeLists.txt sets SLUICE_TEST_WORKERS=2 and TSAN_OPTIONS).
test-tsan: tsan
	ctest --preset tsan

fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz

# Each libFuzzer target for its CI budget (tests/fuzz/README.md), about 3 minutes.
test-fuzz: fuzz
	ctest --preset fuzz

test: test-release test-asan test-tsan test-fuzz

demo: build
	@set -e; pids=(); \
	trap 'kill $${pids[@]} 2>/dev/null' EXIT; \
	for o in $(DEMO_ORIGINS); do \
	  build/release/bench/sluice-bench origin --listen $${o%%=*} --name $${o##*=} > /dev/null & pids+=($$!); \
	done; \
	echo "demo origins on 127.0.0.1:9001 and :9002; sluice on :8080 (admin on 127.0.0.1:9901)"; \
	echo "try: curl -i localhost:8080/    (Ctrl-C stops everything)"; \
	build/release/proxy/sluice --config examples/quickstart.yaml

clean:
	rm -rf build
