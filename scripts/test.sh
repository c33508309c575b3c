#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Fixture parity tests read ../shared/fixtures (or $SSC_FIXTURES) and skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
# The ONNX Runtime library for the inference tests (idempotent; .ort/lib).
bash scripts/setup-ort.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
