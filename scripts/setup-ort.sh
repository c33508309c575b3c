#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that ssc's inference side loads at run time
# (ort with `load-dynamic`) into <repo>/.ort/lib/, from the PyPI `onnxruntime` wheel.
#
# Idempotent: does nothing when the library is already there. Needs python3 with pip and
# network access to PyPI (the wheel is about 24 MB). Override the version with ORT_VERSION.
#
# Afterwards ssc finds the library by itself (it searches .ort/lib upward from the executable
# and the current directory); or export ORT_DYLIB_PATH=<the printed path>.
set -euo pipefail

version="${ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.ort/lib"
lib="$dest/libonnxruntime.so.$version"

if [[ -f "$lib" ]]; then
    echo "ONNX Runtime $version already installed: $lib"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 not found. Install Python 3 with pip, or download the" >&2
    echo "onnxruntime==$version wheel yourself and set ORT_DYLIB_PATH to the" >&2
    echo "onnxruntime/capi/libonnxruntime.so.$version inside it." >&2
    exit 1
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "error: python3 has no pip (try: python3 -m ensurepip --user, or apt-get install" >&2
    echo "python3-pip), or install onnxruntime==$version yourself and set ORT_DYLIB_PATH to" >&2
    echo "<site-packages>/onnxruntime/capi/libonnxruntime.so.$version." >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "Downloading the onnxruntime==$version wheel from PyPI ..."
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$version"

mkdir -p "$dest"
# zipfile instead of `unzip`, which many minimal images lack. Extract to a temporary name
# and rename, so an interrupted run never leaves a half-written library behind.
python3 - "$tmp" "$dest" <<'EOF'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))
if not wheels:
    sys.exit("error: pip downloaded no onnxruntime wheel into " + tmp)
found = 0
with zipfile.ZipFile(wheels[0]) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime.so"):
            part = os.path.join(dest, base + ".part")
            with z.open(name) as src, open(part, "wb") as dst:
                dst.write(src.read())
            os.replace(part, os.path.join(dest, base))
            found += 1
if not found:
    sys.exit("error: no onnxruntime/capi/libonnxruntime.so* in " + wheels[0])
EOF

if [[ ! -f "$lib" ]]; then
    echo "error: the wheel did not contain libonnxruntime.so.$version; found:" >&2
    ls -l "$dest" >&2
    exit 1
fi
# A stable name for ORT_DYLIB_PATH and for the runtime's search.
ln -sf "libonnxruntime.so.$version" "$dest/libonnxruntime.so"
echo "ONNX Runtime $version installed: $lib"
echo "(ssc finds it automatically; or export ORT_DYLIB_PATH=$lib)"
