# ocistep: build, test, demo, lint.
CARGO ?= cargo
BIN := target/release/ocistep

.PHONY: build test demo lint fmt clean

build:
	$(CARGO) build --release --locked

## The whole test suite: unit tests, then integration tests against a real
## registry (docker-registry), skopeo, umoci and buildah.
test:
	$(CARGO) test --locked -- --test-threads=4

## The main job end to end with no registry of your own.
demo: build
	OCISTEP=$(BIN) ./scripts/demo.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
