#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Fixture parity tests read ../shared/fixtures (or $SSC_FIXTURES) and skip when it is absent;
# tests on real photographs read ../shared/data/voc12-subset and skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
# The ONNX Runtime library for the inference tests (idempotent; .ort/lib).
bash scripts/setup-ort.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# ImageNet EfficientNet-Lite0 weights for the import, ONNX and ImageNet sanity tests
# (idempotent; weights/), converted by the same debug build the tests use.
cargo build --locked -p ssc-tools --bin ssc-export
SSC_EXPORT=target/debug/ssc-export bash scripts/get-weights.sh lite0
# (builds the examples too: the end-to-end test runs inference/examples/label_folder.rs)
cargo test --workspace --locked
# The library's rustdoc builds without a warning (broken links included).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# The `cuda` feature of the whole workspace compiles (CUDA 13.0 toolchain from PyPI wheels, cached
# in ~/.cache/ssc/cuda-13.0; its own target/cuda so the default binaries stay CPU builds), and
# that build trains on the CPU and refuses a missing GPU with a clear error.
if [[ "${SSC_SKIP_CUDA_BUILD:-0}" == 1 ]]; then
    echo "SSC_SKIP_CUDA_BUILD=1: the cuda feature build is skipped"
else
    bash scripts/build-cuda.sh --smoke
fi
