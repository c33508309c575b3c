#!/usr/bin/env bash
# The real-data job: the whole pseudo-label pipeline on real VOC 2012 photographs with
# ImageNet EfficientNet-Lite0 features, on CPU.
#
#   bash scripts/voc-job.sh [VOC_ROOT]        (default ../shared/data/voc12-subset)
#
#   splits → superpixels → train classifier ($SSC_VARIANT) → export → CAMs → seeds scored on
#   `train` → IR labels → train IRN → export → pseudo-masks scored on `train` → train DeepLabV2
#   on the pseudo-masks → ssc-predict on the held-out part of train_aug → evaluation
#
# VOC_ROOT is a VOC-layout folder with JPEGImages/, SegmentationClassAug/ (or
# SegmentationClass/), cls_labels.npy and ImageSets/Segmentation/{train_aug,train}.txt. It is
# only read: the job works on a view of it in $SSC_RUN/data (links to the images, masks and
# labels, plus its own split lists):
#   holdout     200 ids of train_aug outside `train`, chosen by a fixed hash of the id (never
#               seen by any training stage; DeepLabV2 is scored on them)
#   wsss_train  train_aug minus holdout: every training stage uses these (image labels only)
#   train       the official VOC `train` ids among them: seeds and pseudo-masks are scored here,
#               as papers do
# mIoU is reported over all 21 classes and over background + the eight classes with ≥ 100
# images in voc12-subset (cat, chair, cow, dog, horse, person, sheep, sofa).
#
# Environment: SSC_RUN (default runs/voc), SSC_SEED (0), SSC_VARIANT (baseline, the plain CAM,
# which scores best on these photographs (README); or drs, drs_cdr, drs_cdr_asm_noras, full),
# SSC_STOP_AFTER=pseudo to stop after the pseudo-masks (the ablation needs no DeepLab),
# SSC_BIN=DIR to use prebuilt ssc-* binaries instead of building. Killed runs resume: training
# stages continue from their last checkpoint and labelling stages skip finished images; a
# finished stage is not redone.
set -euo pipefail
cd "$(dirname "$0")/.."
VOC=$(realpath "${1:-../shared/data/voc12-subset}")
RUN=${SSC_RUN:-runs/voc}
SEED=${SSC_SEED:-0}
VARIANT=${SSC_VARIANT:-baseline}
STOP_AFTER=${SSC_STOP_AFTER:-}
for need in JPEGImages cls_labels.npy ImageSets/Segmentation/train_aug.txt ImageSets/Segmentation/train.txt; do
  [[ -e "$VOC/$need" ]] || { echo "error: $VOC/$need not found (expected a VOC-layout folder)" >&2; exit 1; }
done
bash scripts/setup-ort.sh
if [[ -n "${SSC_BIN:-}" ]]; then
  BIN=$SSC_BIN   # prebuilt binaries (e.g. a frozen copy for a long experiment)
else
  cargo build --release --locked -p ssc-tools
  BIN=target/release
fi
SSC_EXPORT=$BIN/ssc-export bash scripts/get-weights.sh lite0
LITE0=weights/efficientnet-lite0.safetensors
mkdir -p "$RUN"
RUN=$(realpath "$RUN")
DATA="$RUN/data"
SUBSET=background,cat,chair,cow,dog,horse,person,sheep,sofa

declare -a STAGES=()
rm -f "$RUN/stages.tsv"
tsv() { # tsv NAME MILLISECONDS COMMAND... : one line of stages.tsv (what ssc-report reads)
  local name=$1 ms=$2
  shift 2
  printf '%s\t%d.%03d\t%s\n' "$name" $((ms / 1000)) $((ms % 1000)) "$(printf '%q ' "$@" | tr '\t\n' '  ')" \
    >> "$RUN/stages.tsv"
}
stage() { # stage NAME COMMAND... : runs a stage (unless its marker exists) and records its wall time
  local name=$1 marker t0 t1
  shift
  marker="$RUN/.done-$(echo "$name" | tr -c 'a-zA-Z0-9' '_')"
  echo
  echo "== $name"
  if [[ -f "$marker" ]]; then
    echo "(done before: $(cat "$marker") s)"
    STAGES+=("$name|$(( $(cat "$marker" | tr -d '.') * 100 ))|cached")
    tsv "$name (earlier run)" $(( $(cat "$marker" | tr -d '.') * 100 )) "$@"
    return
  fi
  t0=$(date +%s%N)
  "$@"
  t1=$(date +%s%N)
  local ms=$(( (t1 - t0) / 1000000 ))
  printf '%d.%d\n' $((ms / 1000)) $((ms % 1000 / 100)) > "$marker"
  STAGES+=("$name|$ms|")
  tsv "$name" "$ms" "$@"
}

# The data view and its splits (deterministic: a hash of each id, independent of the seed).
mkdir -p "$DATA/ImageSets/Segmentation"
for d in JPEGImages SegmentationClassAug SegmentationClass cls_labels.npy; do
  [[ -e "$VOC/$d" ]] && ln -sfn "$VOC/$d" "$DATA/$d"
done
python3 - "$VOC" "$DATA" <<'PY'
import hashlib, sys
voc, data = sys.argv[1], sys.argv[2]
read = lambda n: [l.strip() for l in open(f"{voc}/ImageSets/Segmentation/{n}.txt") if l.strip()]
aug, train = read("train_aug"), read("train")
official = set(train)
rank = sorted((hashlib.sha256(i.encode()).hexdigest(), i) for i in aug if i not in official)
holdout = set(i for _, i in rank[:200])
write = lambda n, ids: open(f"{data}/ImageSets/Segmentation/{n}.txt", "w").write("".join(i + "\n" for i in ids))
write("train_aug", aug)
write("train", [i for i in train if i not in holdout])
write("holdout", [i for i in aug if i in holdout])
write("wsss_train", [i for i in aug if i not in holdout])
print(f"splits: wsss_train {len(aug) - len(holdout)}, train {len(train)}, holdout {len(holdout)}")
PY

miou() { grep -E '^mIoU: |^best threshold' "$1" | tail -1 | sed 's/.*mIoU: //'; }
sub() { grep -E 'mIoU over' "$1" | tail -1 | sed 's/.*: //'; }

stage "superpixels (wsss_train)" "$BIN/ssc-superpixels" --dataset voc --root "$DATA" --split wsss_train \
  --out "$DATA/superpixels"
stage "train classifier ($VARIANT)" "$BIN/ssc-train" cam --data "$DATA" --split wsss_train \
  --preset voc-lite --variant "$VARIANT" --seed "$SEED" --backbone-weights "$LITE0" --out "$RUN/cam" --resume
stage "export classifier" "$BIN/ssc-export" --arch cam --weights "$RUN/cam/cam_net.safetensors" \
  --config "$RUN/cam/config.json" --classes voc --out "$RUN/cam.onnx"
stage "CAMs (wsss_train)" "$BIN/ssc-label" cams --model "$RUN/cam.onnx" --dataset voc --root "$DATA" \
  --split wsss_train --out "$RUN/cams"
stage "evaluate CAM seeds (train)" bash -c "set -o pipefail; '$BIN/ssc-eval' cams --cams '$RUN/cams' --gt '$DATA' \
  --split train --subset $SUBSET --json '$RUN/eval-cams.json' | tee '$RUN/eval-cams.txt'"
stage "IR labels" bash -c "set -o pipefail; '$BIN/ssc-label' irlabels --dataset '$DATA' --split wsss_train \
  --cams '$RUN/cams' --out '$RUN/ir_labels' 2>&1 | tee '$RUN/ir-labels.txt'"
stage "train IRN" "$BIN/ssc-train" irn --dataset "$DATA" --split wsss_train --ir-labels "$RUN/ir_labels" \
  --preset voc-lite --seed "$SEED" --out "$RUN/irn" --export "$RUN/irn.onnx" \
  --backbone-weights "$LITE0" --resume
stage "pseudo-masks (wsss_train)" "$BIN/ssc-label" pseudo --irn "$RUN/irn.onnx" --cams "$RUN/cams" \
  --dataset voc --root "$DATA" --split wsss_train --out "$RUN/pseudo" --confidence
stage "evaluate pseudo-masks (train)" bash -c "set -o pipefail; '$BIN/ssc-eval' --pred '$RUN/pseudo' --gt '$DATA' \
  --split train --subset $SUBSET --json '$RUN/eval-pseudo.json' | tee '$RUN/eval-pseudo.txt'"
if [[ "$STOP_AFTER" != pseudo ]]; then
  # Validation (monitoring only) on the train ids; the final weights are exported, so nothing
  # is selected on the held-out images.
  stage "train DeepLabV2 (pseudo-masks)" "$BIN/ssc-train" deeplab --data "$DATA" --split wsss_train \
    --pseudo "$RUN/pseudo" --confidence "$RUN/pseudo/confidence" --val-split train --preset voc-lite \
    --backbone-weights "$LITE0" --seed "$SEED" --out "$RUN/deeplab" --resume
  stage "export DeepLabV2" "$BIN/ssc-export" --arch deeplab --weights "$RUN/deeplab/deeplab.safetensors" \
    --config "$RUN/deeplab/config.json" --classes voc --out "$RUN/deeplab.onnx"
  sed 's|^\(.*\)$|JPEGImages/\1.jpg|' "$DATA/ImageSets/Segmentation/holdout.txt" > "$DATA/holdout-images.txt"
  stage "predict (holdout)" "$BIN/ssc-predict" --model "$RUN/deeplab.onnx" --input "$DATA/holdout-images.txt" \
    --input-size 320 --out "$RUN/pred-holdout"
  stage "evaluate segmentation (holdout)" bash -c "set -o pipefail; '$BIN/ssc-eval' --pred '$RUN/pred-holdout' \
    --gt '$DATA' --split holdout --subset $SUBSET --json '$RUN/eval-seg.json' | tee '$RUN/eval-seg.txt'"
fi
"$BIN/ssc-eval" baseline --gt "$DATA" --split train --subset $SUBSET --json "$RUN/eval-baseline.json" \
  > "$RUN/eval-baseline.txt"

echo
echo "== voc job summary ($VOC, seed $SEED, classifier $VARIANT; seeds and pseudo-masks on the official"
echo "   train ids, segmentation on the held-out ids; mIoU over 21 classes / over background + 8 frequent classes)"
printf '%-34s %-28s %s\n' "result" "mIoU (21 classes)" "mIoU (9 classes)"
printf '%-34s %-28s %s\n' "all-background baseline" "$(miou "$RUN/eval-baseline.txt")" "$(sub "$RUN/eval-baseline.txt")"
printf '%-34s %-28s %s\n' "CAM seed (best threshold)" "$(miou "$RUN/eval-cams.txt")" "$(sub "$RUN/eval-cams.txt")"
printf '%-34s %s\n' "IR labels" "$(grep -iE 'precision' "$RUN/ir-labels.txt" | tail -1)"
printf '%-34s %-28s %s\n' "pseudo-masks (IRN random walk)" "$(miou "$RUN/eval-pseudo.txt")" "$(sub "$RUN/eval-pseudo.txt")"
if [[ -f "$RUN/eval-seg.txt" ]]; then
  printf '%-34s %-28s %s\n' "DeepLabV2 on holdout" "$(miou "$RUN/eval-seg.txt")" "$(sub "$RUN/eval-seg.txt")"
fi
echo
printf '%-34s %s\n' "stage" "wall time (s)"
total=0
for s in "${STAGES[@]}"; do
  rest=${s#*|}
  ms=${rest%%|*}
  note=${rest#*|}
  printf '%-34s %d.%d %s\n' "${s%%|*}" $((ms / 1000)) $((ms % 1000 / 100)) "${note:+(earlier run)}"
  total=$((total + ms))
done
printf '%-34s %d.%d\n' "total" $((total / 1000)) $((total % 1000 / 100))
echo
# One self-contained page with the pictures, charts, configs and commands of this run.
"$BIN/ssc-report" --run "$RUN" --gt "$DATA"
