#!/usr/bin/env bash
# The prepared check for a lent GPU machine (issue: the GPU path). Two halves:
#
#   bash scripts/gpu-check.sh --pack     # here (Rust, 2 cores): builds and packs what the GPU
#                                        # machine runs into target/gpu-check/bundle.tar.xz
#   bash scripts/gpu-check.sh            # there (H200, CUDA 13 driver, PyTorch, no Rust,
#                                        # no network): unpacks the bundle and prints the table
#
# The device tool runs the second half in a copy of this tree, carrying the bundle:
#   run --carry target/gpu-check/bundle.tar.xz  'bash scripts/gpu-check.sh'
#
# The table (also written to $OUT/gpu-check.md and $OUT/gpu-check.json when OUT is set):
#   (a) three iterations of every train-steps fixture case (full SSC, momentum 0.9, baseline)
#       on CPU and on CUDA, each held to the reference goldens, and the largest CPU-vs-CUDA
#       difference of the loss terms and trained tensors;
#   (b) seconds per iteration of `ssc-train cam --variant full` at 512x512, batch 8,
#       ResNet-50 + VGG-19 with random weights, on CUDA, against the same step in PyTorch
#       (scripts/peers/torch_step.py) on the same GPU, as a ratio;
#   (c) peak GPU memory of (b) for both, against the paper's 14.2 GB at batch 6;
#   (d) `ssc-label cams` images/s with the candle-exported ONNX of (b)'s network on the
#       ONNX Runtime CPU execution provider (every core).
# Without a GPU (nvidia-smi missing or seeing none) it says so, skips the CUDA rows and still
# runs (d); SSC_GPU_CHECK_SMALL=1 shrinks (b) to 128 px crops and batch 2 so the whole
# script can be tried on a small CPU machine.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
pack_dir="$root/target/gpu-check"
bundle="$pack_dir/bundle"

pack() {
    local cpu_bins=(ssc-synth ssc-superpixels ssc-export ssc-label ssc-train)
    bash "$root/scripts/build-cuda.sh" --release
    eval "$(bash "$root/scripts/build-cuda.sh" --env)"
    cd "$root"
    # The device test (a): the train-steps parity test built with CUDA.
    local test_bin
    test_bin="$(cargo test --release --locked -p ssc-training --features cuda \
        --test train_steps_parity --no-run --message-format json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "train_steps_parity":
        print(m["executable"])')"
    local cuda_bin="$CARGO_TARGET_DIR/release"
    unset CARGO_TARGET_DIR
    # (d) and the data preparation need no CUDA: the default CPU builds, which start without it.
    cargo build --release --locked -p ssc-tools
    bash "$root/scripts/setup-ort.sh" >/dev/null
    rm -rf "$bundle" "$pack_dir/bundle.tar.xz"
    mkdir -p "$bundle/bin-cuda" "$bundle/bin" "$bundle/lib" "$bundle/fixtures"
    strip -o "$bundle/bin-cuda/ssc-train" "$cuda_bin/ssc-train"
    strip -o "$bundle/bin-cuda/train_steps_parity" "$test_bin"
    for b in "${cpu_bins[@]}"; do
        strip -o "$bundle/bin/$b" "$root/target/release/$b"
    done
    cp -L "$root"/.ort/lib/libonnxruntime.so.* "$bundle/lib/"
    local fixtures="${SSC_FIXTURES:-$root/../shared/fixtures}"
    cp -r "$fixtures/train-steps" "$bundle/fixtures/"
    git -C "$root" describe --always --dirty --abbrev=12 >"$bundle/commit"
    tar -C "$pack_dir" -cf - bundle | xz -T0 -6 >"$pack_dir/bundle.tar.xz"
    echo "packed $(du -h "$pack_dir/bundle.tar.xz" | cut -f1) (carry limit 64 MiB): $pack_dir/bundle.tar.xz"
    echo "on the GPU machine: bash scripts/gpu-check.sh (carry target/gpu-check/bundle.tar.xz)"
}

if [[ "${1:-}" == "--pack" ]]; then
    pack
    exit 0
fi

# ---------------------------------------------------------------- the GPU machine's half
out="${OUT:-$root/target/gpu-check/out}"
mkdir -p "$out"
work="$(mktemp -d)"
# The step logs go to $out/logs too: on a lent machine they are the only record of a failure.
trap 'kill $(jobs -p) 2>/dev/null || true; mkdir -p "$out/logs"; cp "$work"/*.log "$out/logs/" 2>/dev/null || true; rm -rf "$work"' EXIT
rows=()
row() { # name | ours | peer | ratio / note
    rows+=("| $1 | $2 | $3 | $4 |")
    echo "ROW | $1 | $2 | $3 | $4 |"
}

if [[ ! -d "$bundle" ]]; then
    if [[ -f "$pack_dir/bundle.tar.xz" ]]; then
        tar -C "$pack_dir" -xJf "$pack_dir/bundle.tar.xz"
    else
        echo "error: no bundle: run 'bash scripts/gpu-check.sh --pack' on the build machine and" >&2
        echo "carry target/gpu-check/bundle.tar.xz" >&2
        exit 1
    fi
fi
echo "bundle of commit $(cat "$bundle/commit"), on $(nproc) cores"

gpu=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >"$work/gpus" 2>&1 && grep -q GPU "$work/gpus"; then
    gpu="$(head -n 1 "$work/gpus")"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
    echo "NO GPU: $(command -v nvidia-smi >/dev/null && echo 'nvidia-smi sees no device' || echo 'nvidia-smi not found'); rows (a)-(c) are skipped, (d) runs on the CPU"
fi

# The CUDA 13 libraries the CUDA binaries load, from PyTorch's Python environment (the
# nvidia-* pip packages), never carried.
py="${PYTHON:-python3}"
if [[ -n "$gpu" ]]; then
    libs="$("$py" - <<'EOF'
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = []
for r in roots:
    dirs += glob.glob(os.path.join(r, "nvidia", "*", "lib"))
    dirs += glob.glob(os.path.join(r, "nvidia", "cu13", "lib"))
print(":".join(sorted(set(d for d in dirs if os.path.isdir(d)))))
EOF
)"
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    missing="$(ldd "$bundle/bin-cuda/ssc-train" | grep "not found" || true)"
    if [[ -n "$missing" ]]; then
        echo "error: the CUDA build cannot find: $missing (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" >&2
        gpu=""
        row "CUDA build start-up" "missing libraries" "-" "$(echo "$missing" | awk '{print $1}' | tr '\n' ' ')"
    fi
fi

# (a) CPU vs CUDA, three iterations of every fixture case.
if [[ -n "$gpu" ]]; then
    if SSC_FIXTURES="$bundle/fixtures" SSC_TEST_DEVICE=cuda \
        "$bundle/bin-cuda/train_steps_parity" --exact cpu_and_device_agree --nocapture \
        --test-threads 1 >"$work/a.log" 2>&1; then
        status=passed
    else
        status=FAILED
        tail -n 30 "$work/a.log"
    fi
    while read -r line; do
        case_name="$(sed -E 's/.*case=([^ ]+).*/\1/' <<<"$line")"
        loss="$(sed -E 's/.*max_loss_diff=([^ ]+).*/\1/' <<<"$line")"
        w="$(sed -E 's/.*max_weight_diff=([^ ]+).*/\1/' <<<"$line")"
        row "(a) $case_name, 3 iterations CPU vs CUDA (goldens: $status)" "max weight diff $w" "max loss diff $loss" "-"
    done < <(grep DEVICE-PARITY "$work/a.log" || true)
    grep -q DEVICE-PARITY "$work/a.log" || row "(a) CPU vs CUDA" "$status, no result" "-" "see log"
else
    row "(a) CPU vs CUDA" "skipped: no GPU" "-" "-"
fi

# (b)+(c) one full SSC iteration, ResNet-50 + VGG-19, ours vs PyTorch.
size=512 batch=8 images=48 synth_size=560 label_split=train
if [[ "${SSC_GPU_CHECK_SMALL:-0}" == 1 ]]; then
    size=128 batch=2 images=6 synth_size=160 label_split=val
fi
classes=10
"$bundle/bin/ssc-synth" generate --out "$work/synth" --seed 0 --num-images 64 --num-val 8 \
    --size "$synth_size" --classes "$classes" >/dev/null 2>&1
"$bundle/bin/ssc-superpixels" --dataset voc --root "$work/synth" --split train \
    --out "$work/synth/superpixels" >/dev/null 2>&1
cat >"$work/cfg.json" <<EOF
{"requires_pretrained": false, "lr": 0.0, "batch_size": $batch, "data": {"crop": $size},
 "net": {"num_classes": $classes}, "decoder": {"in_channels": $classes}}
EOF
# Runs a command while polling the GPU's used memory into a log (nothing to poll on a CPU).
peak_of() {
    local log="$1"
    shift
    local poll=""
    if [[ -n "$gpu" ]]; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$log" &
        poll=$!
    fi
    local rc=0
    "$@" || rc=$?
    if [[ -n "$poll" ]]; then
        kill "$poll" 2>/dev/null || true
        wait "$poll" 2>/dev/null || true
    fi
    return $rc
}
peak_mib() { echo $(($(sort -n "$1" | tail -n 1) - idle_mib)); }
# On a GPU the CUDA build trains on CUDA; without one, SSC_GPU_CHECK_SMALL=1 runs the same
# rows with the CPU build on the CPU so that the script itself is tried.
train_dev="" train_bin="" idle_mib=0
if [[ -n "$gpu" ]]; then
    idle_mib="$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n 1)"
    train_dev=cuda train_bin="$bundle/bin-cuda/ssc-train"
elif [[ "${SSC_GPU_CHECK_SMALL:-0}" == 1 ]]; then
    train_dev=cpu train_bin="$bundle/bin/ssc-train"
fi
ours_s="" torch_s="" ours_peak="" torch_peak="" torch_alloc=""
if [[ -n "$train_bin" ]]; then
    if peak_of "$work/mem-ours" "$train_bin" cam --data "$work/synth" --split train --preset voc \
        --variant full --device "$train_dev" --epochs 1 --max-images "$images" \
        --config "$work/cfg.json" --out "$work/run" >"$work/b.log" 2>&1; then
        ours_s="$(grep -oE '[0-9.]+ s/step' "$work/b.log" | grep -oE '[0-9.]+')"
        [[ -n "$gpu" ]] && ours_peak="$(peak_mib "$work/mem-ours")"
    else
        tail -n 20 "$work/b.log"
    fi
    if "$py" -c 'import torch' 2>/dev/null; then
        if peak_of "$work/mem-torch" "$py" "$root/scripts/peers/torch_step.py" --device "$train_dev" \
            --size "$size" --batch "$batch" --classes "$classes" --steps 5 --warmup 2 \
            >"$work/torch.log" 2>&1; then
            read -r torch_s torch_alloc _ < <(grep RESULT "$work/torch.log" | cut -d' ' -f2-)
            [[ -n "$gpu" ]] && torch_peak="$(peak_mib "$work/mem-torch")"
        else
            tail -n 20 "$work/torch.log"
        fi
    else
        echo "no torch in $py: the PyTorch row is skipped"
    fi
    ratio="-"
    if [[ -n "$ours_s" && -n "$torch_s" ]]; then
        ratio="$("$py" -c "print(f'ours takes {$ours_s/$torch_s:.2f}x PyTorch time')")"
    fi
    row "(b) full SSC iteration, ${size}px batch $batch, R50+VGG19, $train_dev" "${ours_s:-failed} s" "PyTorch ${torch_s:-n/a} s" "$ratio"
    if [[ -n "$gpu" ]]; then
        row "(c) peak GPU memory of (b) (nvidia-smi, minus idle)" "${ours_peak:-?} MiB" "PyTorch ${torch_peak:-?} MiB (allocator peak $((${torch_alloc:-0} / 1048576)) MiB)" "paper: 14.2 GB at batch 6"
    else
        row "(c) peak GPU memory" "skipped: no GPU" "-" "-"
    fi
else
    row "(b) full SSC iteration on CUDA" "skipped: no GPU (SSC_GPU_CHECK_SMALL=1 tries it on the CPU)" "-" "-"
    row "(c) peak GPU memory" "skipped: no GPU" "-" "-"
fi

# (d) CAM labelling throughput on the ONNX Runtime CPU EP, with the network of (b) (or, without
# a GPU, the same random ResNet-50 written by a zero-step CPU run).
export ORT_DYLIB_PATH="$(ls "$bundle"/lib/libonnxruntime.so.* | head -n 1)"
weights="$work/run/cam_net.safetensors"
if [[ ! -f "$weights" ]]; then
    # One zero-rate step at 64 px: random ResNet-50 weights whatever the image size.
    echo "{\"requires_pretrained\": false, \"lr\": 0.0, \"batch_size\": 1, \"data\": {\"crop\": 64},
 \"net\": {\"num_classes\": $classes}, \"decoder\": {\"in_channels\": $classes}}" >"$work/cfg0.json"
    "$bundle/bin/ssc-train" cam --data "$work/synth" --split train --preset voc \
        --variant full --device cpu --epochs 1 --max-images 1 --config "$work/cfg0.json" \
        --out "$work/run" >"$work/b0.log" 2>&1 || true
fi
if [[ -f "$weights" ]] &&
    "$bundle/bin/ssc-export" --arch cam --weights "$weights" --config "$work/run/config.json" \
        --out "$work/cam.onnx" >"$work/export.log" 2>&1; then
    n=$(wc -l <"$work/synth/ImageSets/Segmentation/$label_split.txt")
    t0=$(date +%s.%N)
    if "$bundle/bin/ssc-label" cams --model "$work/cam.onnx" --root "$work/synth" --split "$label_split" \
        --out "$work/cams" >"$work/d.log" 2>&1; then
        t1=$(date +%s.%N)
        ips="$("$py" -c "print(f'{$n/($t1-$t0):.2f}')")"
        row "(d) ssc-label cams, ORT CPU EP, $(nproc) cores, 4 scales x flip" "$ips images/s" "-" "$n images of ~${synth_size}px"
    else
        tail -n 20 "$work/d.log"
        row "(d) ssc-label cams" "failed" "-" "-"
    fi
else
    cat "$work/export.log" "$work/b0.log" 2>/dev/null | tail -n 20
    row "(d) ssc-label cams" "export failed" "-" "-"
fi

{
    echo "GPU check, $(date -u +%Y-%m-%d), ${gpu:-no GPU}, $(nproc) cores, bundle $(cat "$bundle/commit")"
    echo
    echo "| row | ssc | peer | ratio / note |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$out/gpu-check.md"
printf '%s\n' "${rows[@]}" | "$py" -c '
import json, sys
rows = []
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
    rows.append(dict(zip(["row", "ssc", "peer", "note"], cells)))
json.dump({"gpu": sys.argv[1], "cores": int(sys.argv[2]), "bundle": sys.argv[3], "rows": rows},
          open(sys.argv[4], "w"), indent=1)
' "${gpu:-none}" "$(nproc)" "$(cat "$bundle/commit")" "$out/gpu-check.json"
