#!/usr/bin/env bash
# Every speed claim as a ratio against its real peer, measured back to back in one run on the
# same inputs (not part of CI; about 20-30 minutes on 2 cores).
#
#   bash scripts/bench-vs-reference.sh [--rows rw,crf,superpixels,cam,train]
#
# Installs the peers into a local venv (.bench-venv, or $SSC_BENCH_VENV) from PyPI: PyTorch,
# scikit-image, pydensecrf2, onnxruntime, numpy/scipy, Pillow. Then runs
#   rw           IRN random walk, 125x94, K 3 and 21, beta 10, 2^8 steps: ours on 1 and 2
#                threads vs PyTorch CSR; 40x30: vs IRN's dense route in PyTorch
#                (cargo bench -p ssc-core --bench randomwalk)
#   crf          dense CRF 500x375, 21 labels, 10 iterations vs pydensecrf2 (--bench crf)
#   superpixels  FH and FH + merge vs scikit-image felzenszwalb (--bench superpixels)
#   cam          CAMs of 20 VOC photographs (voc12-subset, else synthetic 500 px), ResNet-50
#                OS16 with DRS, 4 scales x flip, JPEG to CAM file: `ssc-label cams` vs a
#                Python loop over onnxruntime with the same ONNX, vs PyTorch make_cam with the
#                same weights, and vs the onnxruntime loop's bare session.run time
#   train        one CPU training iteration, ResNet-50 512x512 batch 1, baseline and full SSC,
#                vs PyTorch (SSC_BENCH_R50=1 cargo bench -p ssc-training --bench cam_step)
# and writes bench-results.json (a list of {row, ours_s, peer, peer_s, ratio, threads, measured};
# ratio = peer time / our time; measured = the run's date and commit), bench-results.md, and the
# same table into README.md between the bench-vs-reference markers. With --rows, the rows of
# this run replace their earlier results and the others are kept.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rows="rw,crf,superpixels,cam,train"
if [[ "${1:-}" == "--rows" ]]; then
    rows="$2"
fi
want() { [[ ",$rows," == *",$1,"* ]]; }
threads="$(nproc)"
venv="${SSC_BENCH_VENV:-$root/.bench-venv}"
voc="${SSC_VOC:-$root/../shared/data/voc12-subset}"
json_rows="$root/target/bench-vs-reference/rows.jsonl"
mkdir -p "$(dirname "$json_rows")"
rm -f "$json_rows"

# Only the peers of the chosen rows (--rows crf does not need PyTorch's 3 GB).
modules=(numpy) packages=(numpy)
want rw && modules+=(torch scipy) packages+=(torch scipy)
want crf && modules+=(pydensecrf.densecrf) packages+=(pydensecrf2)
want superpixels && modules+=(skimage) packages+=(scikit-image)
want cam && modules+=(torch onnxruntime PIL) packages+=(torch "onnxruntime==${ORT_VERSION:-1.31.1}" pillow)
want train && modules+=(torch) packages+=(torch)
imports="import $(IFS=,; echo "${modules[*]}")"
if [[ ! -x "$venv/bin/python3" ]] || ! "$venv/bin/python3" -c "$imports" 2>/dev/null; then
    echo "Installing the peers into $venv: ${packages[*]} (PyTorch is about 3 GB with its CUDA wheels) ..."
    [[ -x "$venv/bin/python3" ]] || python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install -q --upgrade pip
    "$venv/bin/python3" -m pip install -q "${packages[@]}"
fi
# The benches call `python3` for their peers.
export PATH="$venv/bin:$PATH"
export SSC_BENCH_JSON="$json_rows"
python3 -m pip list 2>/dev/null | grep -iE '^(torch|scikit-image|onnxruntime|pydensecrf2|numpy|scipy) ' | tr -s ' ' | paste -sd ',' | sed 's/^/peers: /' || true
bash scripts/setup-ort.sh >/dev/null

for b in randomwalk crf superpixels; do
    case "$b" in
        randomwalk) r=rw ;;
        *) r="$b" ;;
    esac
    if want "$r"; then
        echo "== $b"
        cargo bench --locked -q -p ssc-core --bench "$b"
    fi
done

if want cam; then
    echo "== CAM generation"
    cargo build --release --locked -q -p ssc-tools
    bin="$root/target/release"
    work="$root/target/bench-vs-reference/cam"
    rm -rf "$work"
    mkdir -p "$work/data/ImageSets/Segmentation"
    if [[ -f "$voc/cls_labels.npy" ]]; then
        ln -s "$voc/JPEGImages" "$work/data/JPEGImages"
        ln -s "$voc/cls_labels.npy" "$work/data/cls_labels.npy"
        head -n 20 "$voc/ImageSets/Segmentation/train.txt" >"$work/data/ImageSets/Segmentation/bench.txt"
        source_desc="20 VOC photographs (voc12-subset train)"
    else
        "$bin/ssc-synth" generate --out "$work/synth" --seed 0 --num-images 20 --num-val 1 \
            --size 500 --classes 10 >/dev/null 2>&1
        work_data="$work/synth"
        rm -rf "$work/data"
        ln -s "$work_data" "$work/data"
        cp "$work_data/ImageSets/Segmentation/train.txt" "$work_data/ImageSets/Segmentation/bench.txt"
        source_desc="20 synthetic 500 px images (voc12-subset absent)"
    fi
    data="$work/data"
    # Labels as {stem: [class index from 0]} for the Python peers.
    python3 - "$data" "$work/labels.json" "$work/images.txt" <<'EOF'
import json, os, sys
import numpy as np
data, out, images = sys.argv[1:4]
ids = [l.strip() for l in open(f"{data}/ImageSets/Segmentation/bench.txt") if l.strip()]
if os.path.exists(f"{data}/cls_labels.npy"):
    d = np.load(f"{data}/cls_labels.npy", allow_pickle=True).item()
    def key(i):
        return int(i.replace("_", "")) if int(i.replace("_", "")) in d else i
    lab = {i: [int(c) for c in np.nonzero(d[key(i)])[0]] for i in ids}
else:
    names = [l.strip() for l in open(f"{data}/classes.txt") if l.strip()][1:]
    cls = json.load(open(f"{data}/cls_labels.json"))
    lab = {i: [names.index(c) for c in cls[i]] for i in ids}
json.dump(lab, open(out, "w"))
open(images, "w").write("".join(f"{data}/JPEGImages/{i}.jpg\n" for i in ids))
EOF
    # Random ResNet-50 + DRS weights (one zero-rate step at 64 px), exported as candle writes it.
    echo '{"requires_pretrained": false, "lr": 0.0, "batch_size": 1, "data": {"crop": 64, "compute_missing_superpixels": true}}' >"$work/cfg.json"
    "$bin/ssc-train" cam --data "$data" --split bench --preset voc --variant full --epochs 1 \
        --max-images 1 --config "$work/cfg.json" --out "$work/run" >"$work/train.log" 2>&1
    "$bin/ssc-export" --arch cam --weights "$work/run/cam_net.safetensors" \
        --config "$work/run/config.json" --out "$work/cam.onnx" >"$work/export.log" 2>&1
    classes="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["net"]["num_classes"])' "$work/run/config.json")"
    n="$(wc -l <"$work/images.txt")"
    t0=$(date +%s.%N)
    "$bin/ssc-label" cams --model "$work/cam.onnx" --root "$data" --split bench \
        --out "$work/ours" --threads "$threads" --overwrite >"$work/label.log" 2>&1
    t1=$(date +%s.%N)
    ours="$(python3 -c "print(($t1 - $t0) / $n)")"
    read -r ort_s ort_net _ < <(python3 scripts/peers/cam_peer.py ort --images "$work/images.txt" \
        --labels "$work/labels.json" --model "$work/cam.onnx" --out "$work/ort" \
        --threads "$threads" | grep RESULT | cut -d' ' -f2-)
    read -r torch_s _ _ < <(python3 scripts/peers/cam_peer.py torch --images "$work/images.txt" \
        --labels "$work/labels.json" --weights "$work/run/cam_net.safetensors" \
        --classes "$classes" --out "$work/torch" --threads "$threads" | grep RESULT | cut -d' ' -f2-)
    python3 - "$json_rows" "$ours" "$ort_s" "$ort_net" "$torch_s" "$threads" "$source_desc" <<'EOF'
import json, sys
path, ours, ort_s, ort_net, torch_s, threads, src = sys.argv[1:8]
ours, ort_s, ort_net, torch_s, threads = float(ours), float(ort_s), float(ort_net), float(torch_s), int(threads)
row = f"CAM generation per image, ResNet-50 OS16 + DRS, 4 scales x flip, JPEG to CAM file ({src})"
with open(path, "a") as f:
    for peer, t in [("onnxruntime Python loop, same ONNX", ort_s),
                    ("PyTorch make_cam, same weights", torch_s),
                    ("onnxruntime bare session.run time of that loop", ort_net)]:
        f.write(json.dumps({"row": row, "ours_s": ours, "peer": peer, "peer_s": t,
                            "ratio": t / ours, "threads": threads}) + "\n")
        print(f"BENCH-ROW {row}: ours {ours:.3f} s, {peer} {t:.3f} s, ratio {t / ours:.2f}")
EOF
fi

if want train; then
    echo "== training iteration"
    SSC_BENCH_R50=1 cargo bench --locked -q -p ssc-training --bench cam_step -- resnet50-512
fi

# The results: JSON, Markdown, and the README's table.
python3 - "$json_rows" "$root" "$threads" <<'EOF'
import datetime, json, os, platform, subprocess, sys
path, root, threads = sys.argv[1], sys.argv[2], sys.argv[3]
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
# Changes to the results themselves do not make the measured code differ from the commit.
dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                        ":!README.md", ":!bench-results.json", ":!bench-results.md"], capture_output=True, text=True).stdout.strip()
measured = f"{datetime.date.today()}, {commit}{'+changes' if dirty else ''}"
new = [dict(json.loads(l), measured=measured) for l in open(path) if l.strip()]
# A run of some rows (--rows) replaces those rows and keeps the others from the previous
# results, each with the run (date, commit) it came from; every ratio is still a same-run pair.
out_json = f"{root}/bench-results.json"
old = json.load(open(out_json)) if os.path.exists(out_json) else []
names = {r["row"] for r in new}
rows, placed = [], False
for r in old:
    if r["row"] in names:
        if not placed:
            rows += new
            placed = True
    else:
        rows.append(r)
if not placed:
    rows += new
json.dump(rows, open(out_json, "w"), indent=1)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
def s(v):
    return "n/a" if v is None else (f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s")
lines = [
    f"Measured on {cpu} ({threads} cores) by `bash scripts/bench-vs-reference.sh`; each pair in "
    "one run (its date and commit in the last column); ratio = peer time / our time (above 1: "
    "ours is faster).",
    "",
    "| row | threads | ours | peer | peer time | ratio | run |",
    "|---|---|---|---|---|---|---|",
]
for r in rows:
    ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
    lines.append(f"| {r['row']} | {r['threads']} | {s(r['ours_s'])} | {r['peer']} | {s(r['peer_s'])} | {ratio} | {r.get('measured', 'n/a')} |")
table = "\n".join(lines) + "\n"
open(f"{root}/bench-results.md", "w").write(table)
print(table)
readme = open(f"{root}/README.md").read()
begin, end = "<!-- bench-vs-reference:begin -->", "<!-- bench-vs-reference:end -->"
if begin in readme and end in readme:
    pre, rest = readme.split(begin, 1)
    _, post = rest.split(end, 1)
    open(f"{root}/README.md", "w").write(pre + begin + "\n" + table + end + post)
    print("README.md table updated")
EOF
