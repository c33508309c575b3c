#!/usr/bin/env bash
# Annotator simulation on the synthetic benchmark: what annotators' corrections are worth.
#
#   bash scripts/annotator-sim.sh
#
# Takes the main job's run ($SSC_RUN, default runs/main; `bash scripts/main-job.sh` first:
# pseudo-masks, DeepLabV2 trained on them, its ONNX). For each fraction F of the train images
# (10, 25, 50 %; nested draws of a seeded shuffle), an "annotator" corrects F of the images
# with their ground truth: the GT masks become Label Studio brush annotations
# (ssc-convert --format labelstudio) that are delivered to `ssc-serve --corrections` through
# its webhook (ANNOTATION_CREATED, as Label Studio sends them), which stores them. Then
# `ssc-train deeplab --init <the pseudo-mask model> --corrections <stored>` fine-tunes for
# $SIM_EPOCHS epochs. F = 0 fine-tunes the same way without corrections, so the rows differ
# only by the corrections. Prints a table of val mIoU (best epoch) and writes it to
# $SSC_RUN/annotator-sim-seed$SSC_SEED/table.md. Val images are never corrected. Finished
# steps are not redone.
#
# Environment: SSC_RUN (runs/main), SSC_SEED (0: the draw and the fine-tuning seed),
# SIM_EPOCHS (3), SIM_FRACTIONS ("0 10 25 50"), SSC_BIN (prebuilt binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SSC_RUN:-runs/main}
SEED=${SSC_SEED:-0}
EPOCHS=${SIM_EPOCHS:-3}
FRACTIONS=${SIM_FRACTIONS:-0 10 25 50}
DATA="$RUN/synth"
for need in "$DATA/ImageSets/Segmentation/train.txt" "$RUN/pseudo" "$RUN/deeplab/best.safetensors" \
  "$RUN/deeplab.onnx"; do
  [[ -e "$need" ]] || { echo "error: $need not found: run \`bash scripts/main-job.sh\` (SSC_RUN=$RUN) first" >&2; exit 1; }
done
bash scripts/setup-ort.sh >/dev/null
if [[ -n "${SSC_BIN:-}" ]]; then
  BIN=$SSC_BIN
else
  cargo build --release --locked -p ssc-tools
  BIN=target/release
fi
SIM="$RUN/annotator-sim-seed$SEED"
mkdir -p "$SIM"
RUN=$(realpath "$RUN")
DATA="$RUN/synth"
SIM=$(realpath "$SIM")

# The draw: one seeded shuffle of the train ids; F % takes its first F % (nested).
python3 - "$DATA/ImageSets/Segmentation/train.txt" "$SEED" "$SIM/order.txt" <<'PY'
import random, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
random.Random(int(sys.argv[2])).shuffle(ids)
open(sys.argv[3], "w").write("\n".join(ids) + "\n")
PY
N=$(wc -l < "$SIM/order.txt")

serve_pid=""
stop_serve() { [[ -n "$serve_pid" ]] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null; serve_pid=""; }
trap stop_serve EXIT

declare -a ROWS=()
for F in $FRACTIONS; do
  K=$(( N * F / 100 ))
  CORR="$SIM/corrections-$F"
  OUT="$SIM/finetune-$F"
  echo
  echo "== $F % of $N train images corrected ($K)"
  extra=()
  if (( K > 0 )); then
    if [[ ! -f "$CORR/.complete" ]]; then
      rm -rf "$CORR" "$SIM/gt-$F" "$SIM/ls-$F"
      mkdir -p "$SIM/gt-$F"
      head -n "$K" "$SIM/order.txt" | while read -r id; do
        ln -s "$DATA/SegmentationClass/$id.png" "$SIM/gt-$F/$id.png"
      done
      "$BIN/ssc-convert" --masks "$SIM/gt-$F" --images "$DATA/JPEGImages" \
        --classes "$DATA/classes.txt" --format labelstudio --out "$SIM/ls-$F" >/dev/null
      "$BIN/ssc-serve" --model "$RUN/deeplab.onnx" --port 0 --host 127.0.0.1 \
        --local-root "$DATA" --corrections "$CORR" 2>"$SIM/serve-$F.log" &
      serve_pid=$!
      url=""
      for _ in $(seq 100); do
        url=$(grep -o 'listening on http://[0-9.:]*' "$SIM/serve-$F.log" | head -1 | sed 's/listening on //') || true
        [[ -n "$url" ]] && break
        kill -0 "$serve_pid" 2>/dev/null || { cat "$SIM/serve-$F.log" >&2; exit 1; }
        sleep 0.1
      done
      [[ -n "$url" ]] || { echo "error: ssc-serve did not start (log: $SIM/serve-$F.log)" >&2; exit 1; }
      # One ANNOTATION_CREATED webhook per task, as Label Studio delivers a submitted annotation.
      python3 - "$url" "$SIM/ls-$F/labelstudio-tasks.json" "$SIM/ls-$F/labelstudio-config.xml" <<'PY'
import json, sys, urllib.request
url, tasks, config = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read()
for i, t in enumerate(tasks, 1):
    result = t["predictions"][0]["result"] if t.get("predictions") else []
    body = {"action": "ANNOTATION_CREATED",
            "task": {"id": i, "data": t["data"]},
            "annotation": {"id": 1000 + i, "task": i, "result": result, "was_cancelled": False},
            "project": {"id": 1, "label_config": config}}
    req = urllib.request.Request(url + "/webhook", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        ans = json.load(r)
    if ans.get("stored") != 1:
        sys.exit(f"task {i}: {ans}")
print(f"{len(tasks)} corrections delivered through /webhook")
PY
      stop_serve
      touch "$CORR/.complete"
    fi
    extra=(--corrections "$CORR")
  fi
  if [[ ! -f "$OUT/best.json" ]]; then
    "$BIN/ssc-train" deeplab --data "$DATA" --split train --pseudo "$RUN/pseudo" \
      --confidence "$RUN/pseudo/confidence" --val-split val --config "$RUN/deeplab/config.json" \
      --init "$RUN/deeplab/best.safetensors" --epochs "$EPOCHS" --seed "$SEED" --out "$OUT" \
      "${extra[@]}" 2>&1 | grep -E '^epoch|^best|error' || true
  fi
  [[ -f "$OUT/best.json" ]] || { echo "error: fine-tuning at $F % failed" >&2; exit 1; }
  miou=$(python3 -c "import json,sys; print('%.2f' % (100 * json.load(open(sys.argv[1]))['miou']))" "$OUT/best.json")
  ROWS+=("$F|$K|$miou")
done

base=$(python3 -c "import json,sys; print('%.2f' % (100 * json.load(open(sys.argv[1]))['miou']))" "$RUN/deeplab/best.json")
{
  echo "| train images corrected | images | val mIoU (best of $EPOCHS fine-tuning epochs) |"
  echo "|---|---|---|"
  echo "| pseudo-masks only (the main job's DeepLabV2, no fine-tuning) | 0 | $base % |"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r f k m <<<"$r"
    echo "| $f % | $k | $m % |"
  done
} | tee "$SIM/table.md"
