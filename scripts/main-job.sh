#!/usr/bin/env bash
# The main job on the built-in synthetic benchmark, on CPU.
# Stages grow as the pipeline lands; today: generate the benchmark, evaluate the trivial
# all-background baseline on it, and check the evaluator on the ground truth itself.
# Output goes to $SSC_RUN (default runs/main).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SSC_RUN:-runs/main}
bash scripts/setup-ort.sh
cargo build --release --locked -p ssc-tools
BIN=target/release
mkdir -p "$RUN"
start=$(date +%s)
"$BIN/ssc-synth" generate --out "$RUN/synth" --seed "${SSC_SEED:-0}"
"$BIN/ssc-eval" --pred "$RUN/synth/SegmentationClass" --gt "$RUN/synth" --split val \
  --json "$RUN/eval-gt-vs-gt.json" > "$RUN/eval-gt-vs-gt.txt"
"$BIN/ssc-eval" baseline --gt "$RUN/synth" --split val --json "$RUN/eval-baseline.json" \
  | tee "$RUN/eval-baseline.txt"
echo
echo "== main job summary ($(( $(date +%s) - start )) s) =="
printf '%-40s %s\n' "stage" "val mIoU"
printf '%-40s %s\n' "ground truth vs itself (sanity)" "$(grep '^mIoU' "$RUN/eval-gt-vs-gt.txt" | cut -d' ' -f2-3)"
printf '%-40s %s\n' "all-background baseline" "$(grep '^mIoU' "$RUN/eval-baseline.txt" | cut -d' ' -f2-3)"
