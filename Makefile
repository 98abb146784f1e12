# switchboard: `make run` starts the gateway with the bundled demo provider;
# `make test` installs what is missing, builds with ASan+UBSan and runs every test.
BUILD      ?= build
TEST_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
CONFIG     ?= examples/switchboard.yaml
JOBS       ?= $(shell nproc)

.PHONY: all deps build run test unit integration e2e fuzz bench format format-check clean

all: build

deps:
	@scripts/install-deps.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target switchboard fake-provider

run: deps build
	@scripts/run-demo.sh $(BUILD) $(CONFIG)

test: deps format-check
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSB_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	@scripts/run-tests.sh $(TEST_BUILD)

# Runs each libFuzzer target for FUZZ_SECONDS (default 60) with its seed corpus.
fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSB_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@scripts/run-fuzz.sh $(FUZZ_BUILD) $${FUZZ_SECONDS:-60}

bench: deps build
	@bench/run.sh $(BUILD)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
