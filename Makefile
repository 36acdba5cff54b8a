# ocistep: build, test, demo, lint.
CARGO ?= cargo
# Where cargo puts what it builds: CARGO_TARGET_DIR when set, as cargo does.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/ocistep

.PHONY: build static test demo lint fmt clean bench bench-smoke validate image-layout \
	release-dry-run fuzz-smoke

build:
	$(CARGO) build --release --locked

## A statically linked release binary, as releases ship it (the musl target
## when installed, else glibc with crt-static); prints its path.
static:
	./scripts/build-static.sh

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

## OCI image layouts of the three image variants (nonroot, root, shell) of a
## static release binary and the CA certificates it checks TLS registries
## against, on an empty base, written by scripts/image-layout.sh into
## $(TARGET_DIR)/image-layout and pushed with ocistep --push-image to the
## layout $(TARGET_DIR)/image-out.
image-layout:
	./scripts/image-layout.sh

## What the release workflow does that needs no GitHub: the static binary and
## SHA256SUMS, the image layouts, pushed and assembled into a loopback
## registry and an OCI layout (checked with skopeo and umoci), the CI wiring
## pinned to it and the action's install script run against it.
release-dry-run:
	./scripts/release-dry-run.sh

## A minute (FUZZ_SECONDS) of coverage-guided fuzzing for each cargo fuzz
## target in fuzz/ (libFuzzer with AddressSanitizer, debug assertions on):
## reference and platform parsing, manifest and index parsing, archive
## extraction, gzip reading, layer re-timing. Seeds come from fuzz/corpus/TARGET (fuzz/make_seeds.py writes
## them); inputs the run adds go to fuzz/target/corpus, findings to
## fuzz/artifacts. Needs `cargo install --locked cargo-fuzz@0.13.2`.
## RUSTC_BOOTSTRAP=1 lets the stable toolchain take the sanitizer flag;
## FUZZ_SANITIZER=none fuzzes without it.
FUZZ_TARGETS := reference platform manifest extract gunzip retime
FUZZ_SECONDS ?= 60
FUZZ_SANITIZER ?= address
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_FLAGS = --release --debug-assertions --sanitizer $(FUZZ_SANITIZER)

fuzz-smoke:
	$(FUZZ) build $(FUZZ_FLAGS)
	@mkdir -p fuzz/target/logs; failed=; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/target/corpus/$$t; \
	  echo "==> fuzz $$t for $(FUZZ_SECONDS) s"; \
	  if $(FUZZ) run $(FUZZ_FLAGS) $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	      -print_final_stats=1 > fuzz/target/logs/$$t.log 2>&1; then \
	    grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' \
	      fuzz/target/logs/$$t.log; \
	  else \
	    tail -n 80 fuzz/target/logs/$$t.log; failed="$$failed $$t"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "fuzz-smoke: findings in$$failed; inputs in fuzz/artifacts/, logs in fuzz/target/logs/"; \
	  exit 1; \
	fi
