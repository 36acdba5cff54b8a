# ocistep: build, test, demo, lint.
CARGO ?= cargo
BIN := target/release/ocistep

.PHONY: build test demo lint fmt clean bench bench-smoke validate image-layout

build:
	$(CARGO) build --release --locked

## The whole test suite: unit tests, then integration tests against a real
## registry (docker-registry), skopeo, umoci and buildah.
test:
	$(CARGO) test --locked -- --test-threads=4

## The main job end to end with no registry of your own.
demo: build
	OCISTEP=$(BIN) ./scripts/demo.sh

## Speed and memory against peers (tar|gzip, tar|pigz, skopeo+tar) in one run;
## writes bench/results.md. Not a test: run it on an otherwise idle machine.
bench: build
	python3 bench/bench.py --binary $(BIN)

## A tiny run of the benchmark, so it cannot rot (CI runs it).
bench-smoke: build
	python3 bench/bench.py --smoke --binary $(BIN) --out target/bench-smoke.md

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean

## The CI wiring (tasks/, pipelines/, action.yml, .github/, templates/,
## examples/, Containerfile) checked by pinned validators installed into
## .tools/ on first use (see scripts/validate.sh). Offline after that.
validate:
	./scripts/validate.sh

## An OCI image layout of a static release binary on an empty base, written
## by scripts/image-layout.sh into target/image-layout and pushed with
## ocistep --push-image to the layout target/image-out.
image-layout:
	./scripts/image-layout.sh
