# A thin wrapper over CMake and the scripts; `make bench` and `make test` are the README's two
# commands.
JOBS := $(shell nproc)

.PHONY: all build test bench bench-icount callgrind format format-check clean

all: build

build:
	bash scripts/deps.sh
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build/release -j$(JOBS)

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

bench-icount:
	bash scripts/bench.sh --icount

callgrind: build
	BP_BUILD=build/release bash scripts/callgrind.sh

format:
	git ls-files --cached --others --exclude-standard -- '*.c' '*.h' | xargs clang-format -i

format-check:
	bash scripts/format-check.sh

clean:
	rm -rf build
