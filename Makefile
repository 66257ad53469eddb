# A thin wrapper over CMake and the scripts; `make bench` and `make test` are the README's two
# commands.
JOBS := $(shell nproc)

.PHONY: all build install uninstall test bench bench-icount callgrind docs format format-check clean

PREFIX ?= /usr/local

all: build

build:
	bash scripts/deps.sh
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build/release -j$(JOBS)

install: build
	cmake --install build/release --prefix $(PREFIX)

# removes what the last `make install` put in place (CMake's list of installed files)
uninstall:
	xargs -r rm -fv < build/release/install_manifest.txt

docs:
	python3 scripts/gen_reference.py > docs/reference.md

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
