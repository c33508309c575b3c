#!/usr/bin/env bash
# Manual demo (not run in CI): Label Studio with local-files serving plus ssc-serve as its ML
# backend, pre-annotating images with brush masks.
#
#   scripts/label-studio-demo.sh MODEL.onnx IMAGES_DIR [CLASSES]
#
# MODEL.onnx  a DeepLab model exported by ssc (ssc-export), class names in its metadata
# IMAGES_DIR  folder of images to annotate (becomes Label Studio's local-files root)
# CLASSES     optional class list for the labeling config (voc, coco or a file; default voc)
#
# Creates .venv-label-studio/ (pip install label-studio), starts Label Studio on
# http://localhost:${LS_PORT:-8080} and ssc-serve on http://localhost:${ML_PORT:-9090}, writes a
# tasks file and labeling config with ssc-convert-compatible names, and prints the steps to
# connect the two. Ctrl-C stops both.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
model="$(realpath "$1")"
images="$(realpath "$2")"
classes="${3:-voc}"
ls_port="${LS_PORT:-8080}"
ml_port="${ML_PORT:-9090}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/.label-studio-demo"
venv="$root/.venv-label-studio"

[[ -f "$model" ]] || { echo "error: no model file $model" >&2; exit 1; }
[[ -d "$images" ]] || { echo "error: no image folder $images" >&2; exit 1; }
mkdir -p "$work"

echo "== building ssc-serve (release)"
(cd "$root" && cargo build --release -p ssc-tools --bin ssc-serve)
serve="${CARGO_TARGET_DIR:-$root/target}/release/ssc-serve"

echo "== ONNX Runtime"
"$root/scripts/setup-ort.sh"

if [[ ! -x "$venv/bin/label-studio" ]]; then
    echo "== installing Label Studio into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet label-studio
fi

echo "== tasks and labeling config for $images"
python3 - "$images" "$work/tasks.json" <<'PY'
import json, os, sys, urllib.parse
root, out = sys.argv[1], sys.argv[2]
exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
tasks = []
for d, _, files in os.walk(root):
    for f in sorted(files):
        if os.path.splitext(f)[1].lower() in exts:
            rel = os.path.relpath(os.path.join(d, f), root)
            tasks.append({"data": {"image": "/data/local-files/?d=" + urllib.parse.quote(rel)}})
json.dump(tasks, open(out, "w"), indent=1)
print(f"{len(tasks)} tasks")
PY
python3 - "$classes" "$work/config.xml" <<'PY'
import sys
spec, out = sys.argv[1], sys.argv[2]
voc = ("aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse "
       "motorbike person pottedplant sheep sofa train tvmonitor").split()
names = voc if spec == "voc" else [l.strip() for l in open(spec) if l.strip() and not l.startswith("#")]
names = [n for n in names if n.lower() != "background"]
labels = "\n".join(f'    <Label value="{n}"/>' for n in names)
open(out, "w").write(f'<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
                     f'  <BrushLabels name="tag" toName="image">\n{labels}\n  </BrushLabels>\n</View>\n')
PY

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

echo "== starting Label Studio on :$ls_port (data in $work/ls-data)"
LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$images" \
LABEL_STUDIO_BASE_DATA_DIR="$work/ls-data" \
    "$venv/bin/label-studio" start --no-browser --port "$ls_port" >"$work/label-studio.log" 2>&1 &
pids+=($!)

echo "== starting ssc-serve on :$ml_port"
"$serve" --model "$model" --local-root "$images" \
    --upload-root "$work/ls-data/media/upload" \
    --host 127.0.0.1 --port "$ml_port" >"$work/ssc-serve.log" 2>&1 &
pids+=($!)

for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$ml_port/health" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "http://127.0.0.1:$ml_port/health" && echo

cat <<STEPS

Label Studio: http://localhost:$ls_port   (logs: $work/label-studio.log)
ssc-serve:    http://127.0.0.1:$ml_port   (logs: $work/ssc-serve.log)

1. Sign up / log in, then Create Project.
2. Labeling Setup -> Custom template -> Code: paste $work/config.xml
3. Settings -> Cloud Storage -> Add Source Storage -> Local files,
   absolute path $images, "Treat every bucket object as a source file" on -> Sync.
   (Or Data Import: upload $work/tasks.json.)
4. Settings -> Model -> Connect Model: URL http://127.0.0.1:$ml_port (leave
   "Interactive preannotations" off), Validate and Save.
5. Settings -> Annotation: enable "Use predictions to prelabel tasks" and pick the model.
6. Open a task: the brush masks from ssc-serve appear as a prediction; correct and submit.
7. Export -> "Brush labels to PNG" or JSON; ssc's readers (ssc_core::formats::labelstudio)
   take the JSON export back into label maps.

Ctrl-C stops both servers.
STEPS
wait
