# Thin wrapper over CMake. `make test` is the README's test command; `make run` the main job.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: deps configure build test run asan clean

deps:
	@scripts/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DSTRATA_WERROR=ON $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	@scripts/run_main_job.sh $(BUILD)

asan:
	@$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DSTRATA_SANITIZE=ON -DSTRATA_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug"

clean:
	rm -rf $(BUILD) build-asan
