#!/usr/bin/env bash
# Label Studio with ssc-serve as its ML backend, set up end to end without a click: installs
# Label Studio into a cached venv, starts it and ssc-serve on 127.0.0.1, creates a project on
# your images (local-files storage), connects the model, retrieves predictions, submits one
# as an annotation and checks that ssc-serve stored it as a correction
# (scripts/label_studio_drive.py does the API steps). Then it keeps both running for you.
#
#   bash scripts/label-studio-demo.sh [--check] IMAGES_DIR MODEL.onnx [IRN.onnx]
#
# IMAGES_DIR  images to annotate. Label Studio serves local files only from a subfolder of
#             its document root, so the document root is IMAGES_DIR's parent folder.
# MODEL.onnx  a DeepLab model exported by ssc (class names in its metadata); with IRN.onnx,
#             MODEL.onnx is a CAM network and the pair serves CAM + IRN pseudo-labels.
# --check     exit after the checks (0 = all passed) instead of keeping the servers up.
#
# Environment: LS_PORT (8080), ML_PORT (9090), LS_DEMO_DIR (.label-studio-demo: Label Studio's
# data, logs, corrections), LS_VENV (.venv-label-studio), SSC_SERVE (an ssc-serve binary;
# default: built with cargo), LS_USER / LS_PASSWORD (the login created on first start).
# Exit status 3: Label Studio could not be installed (no PyPI access, say).
#
# Label Studio refuses ML backends on loopback and private addresses unless started with
# ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false; this script sets both for its own
# Label Studio, which listens on 127.0.0.1 only.
set -euo pipefail

check=0
if [[ "${1:-}" == "--check" ]]; then
    check=1
    shift
fi
if [[ $# -lt 2 ]]; then
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
images="$(realpath "$1")"
model="$(realpath "$2")"
irn="${3:+$(realpath "$3")}"
ls_port="${LS_PORT:-8080}"
ml_port="${ML_PORT:-9090}"
work="$(realpath -m "${LS_DEMO_DIR:-$root/.label-studio-demo}")"
venv="$(realpath -m "${LS_VENV:-$root/.venv-label-studio}")"
user="${LS_USER:-demo@example.com}"
password="${LS_PASSWORD:-ssc-demo-password}"

[[ -d "$images" ]] || { echo "error: no image folder $images" >&2; exit 1; }
[[ -f "$model" ]] || { echo "error: no model file $model" >&2; exit 1; }
[[ -z "$irn" || -f "$irn" ]] || { echo "error: no IRN model file $irn" >&2; exit 1; }
docroot="$(dirname "$images")"
[[ "$docroot" != "/" ]] || { echo "error: put the images in a subfolder, not directly under /" >&2; exit 1; }
mkdir -p "$work"
# A fixed token per demo folder: Label Studio stores it for the user it creates.
[[ -f "$work/token" ]] || python3 -c "import secrets; print(secrets.token_hex(20))" > "$work/token"
token="$(cat "$work/token")"

if [[ -z "${SSC_SERVE:-}" ]]; then
    echo "== building ssc-serve (release)"
    (cd "$root" && cargo build --release --locked -p ssc-tools --bin ssc-serve)
    SSC_SERVE="${CARGO_TARGET_DIR:-$root/target}/release/ssc-serve"
fi
bash "$root/scripts/setup-ort.sh" >/dev/null

if [[ ! -x "$venv/bin/label-studio" ]]; then
    echo "== installing Label Studio 1.23.2 into $venv (once)"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --upgrade pip &&
           "$venv/bin/pip" install --quiet "label-studio==1.23.2"; }; then
        echo "error: could not install Label Studio from PyPI into $venv" >&2
        rm -rf "$venv"
        exit 3
    fi
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting ssc-serve on 127.0.0.1:$ml_port (log: $work/ssc-serve.log)"
if [[ -n "$irn" ]]; then
    model_args=(--cam-model "$model" --irn-model "$irn")
else
    model_args=(--model "$model")
fi
"$SSC_SERVE" "${model_args[@]}" --local-root "$docroot" --corrections "$work/corrections" \
    --host 127.0.0.1 --port "$ml_port" >"$work/ssc-serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
    curl -fsS "http://127.0.0.1:$ml_port/health" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || break
    sleep 0.5
done
if ! curl -fsS "http://127.0.0.1:$ml_port/health" >/dev/null 2>&1; then
    echo "error: ssc-serve did not come up; its log ($work/ssc-serve.log):" >&2
    tail -20 "$work/ssc-serve.log" >&2
    exit 1
fi

echo "== starting Label Studio on 127.0.0.1:$ls_port (log: $work/label-studio.log; first start migrates its database, about a minute)"
LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$docroot" \
ML_BLOCK_LOCAL_IP=false \
SSRF_PROTECTION_ENABLED=false \
    "$venv/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$ls_port" \
    --data-dir "$work/ls-data" --username "$user" --password "$password" \
    --user-token "$token" --enable-legacy-api-token >"$work/label-studio.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
    curl -fsS "http://127.0.0.1:$ls_port/health" >/dev/null 2>&1 && break
    kill -0 "${pids[1]}" 2>/dev/null || break
    sleep 0.5
done
if ! curl -fsS "http://127.0.0.1:$ls_port/health" >/dev/null 2>&1; then
    echo "error: Label Studio did not come up; its log ($work/label-studio.log):" >&2
    tail -20 "$work/label-studio.log" >&2
    exit 1
fi

"$venv/bin/python" "$root/scripts/label_studio_drive.py" --ls "http://127.0.0.1:$ls_port" \
    --token "$token" --ml "http://127.0.0.1:$ml_port" --images "$images" \
    --corrections "$work/corrections"
(( check )) && exit 0

cat <<STEPS

Label Studio: http://127.0.0.1:$ls_port   login $user / $password
ssc-serve:    http://127.0.0.1:$ml_port   corrections in $work/corrections

Open the project "ssc live test": every task has ssc-serve's brush masks as a prediction.
Correct a mask and submit: ssc-serve stores it (task-<id>.png + .json). Then
  ssc-train deeplab --init RUN/best.safetensors --corrections $work/corrections ...
fine-tunes on them (README, "Label Studio").

Ctrl-C stops both servers.
STEPS
wait
