#!/usr/bin/env python3
"""Python peers of `ssc-label cams` (spec §3.2), for scripts/bench-vs-reference.sh.

For every image of a list, from the JPEG on disk to a CAM file, the way IRN's `make_cam`
does it: Pillow bicubic rescale to each scale (round half to even), ImageNet normalisation,
the image and its horizontal flip as one batch of two, the CAM network, flip-sum, bilinear
upsampling of every scale to the stride-4 and the full size, sum over scales, the image's
classes kept and max-normalised, `np.save` of {keys, cam, high_res}.

  ort    the network is the ONNX file `ssc-export --arch cam` wrote, run by onnxruntime's
         Python API on the CPU EP (intra-op threads = --threads);
  torch  the network is PyTorch (scripts/peers/torch_step.py's ResNet-50 with DRS in layer4)
         with the same weights (`cam_net.safetensors`, torchvision names).

Prints `RESULT <seconds per image> <seconds per image in the network alone> <images>`.
"""

import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{name}: {info['dtype']}"
        a, b = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).reshape(info["shape"]).copy())
    return out


def rescale(img, s):
    w, h = img.size
    size = (int(np.round(w * s)), int(np.round(h * s)))
    return img if size == (w, h) else img.resize(size, Image.BICUBIC)


def pair(img):
    x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(np.stack([x, x[:, :, ::-1]]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["ort", "torch"])
    ap.add_argument("--images", required=True, help="a file listing JPEG paths, one per line")
    ap.add_argument("--labels", required=True, help="JSON {stem: [class index, ...]}")
    ap.add_argument("--model", help="the ONNX file (ort)")
    ap.add_argument("--weights", help="cam_net.safetensors (torch)")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scales", default="1.0,0.5,1.5,2.0")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    scales = [float(s) for s in a.scales.split(",")]
    paths = [p for p in open(a.images).read().split("\n") if p]
    labels = json.load(open(a.labels))
    os.makedirs(a.out, exist_ok=True)

    if a.mode == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def net(x):
            return torch.from_numpy(sess.run(None, {name: x})[0])
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from torch_step import CamNet

        model = CamNet(a.classes, use_drs=True)
        missing, unexpected = model.load_state_dict(load_safetensors(a.weights), strict=False)
        assert not unexpected, unexpected
        assert all("num_batches_tracked" in m for m in missing), missing
        model.eval()

        def net(x):
            with torch.no_grad():
                return F.relu(model.classifier(model.layer4(model.layer3(model.layer2(model.layer1(
                    F.max_pool2d(F.relu(model.bn1(model.conv1(torch.from_numpy(x)))), 3, 2, 1)))))))

    in_net = 0.0
    t0 = time.perf_counter()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        img = Image.open(path).convert("RGB")
        w, h = img.size
        sh, sw = (h + 3) // 4, (w + 3) // 4
        outs = []
        for s in scales:
            x = pair(rescale(img, s))
            t = time.perf_counter()
            o = net(x)
            in_net += time.perf_counter() - t
            outs.append(o[0] + o[1].flip(-1))
        strided = sum(F.interpolate(o[None], (sh, sw), mode="bilinear", align_corners=False)[0] for o in outs)
        high = sum(F.interpolate(o[None], (h, w), mode="bilinear", align_corners=False)[0] for o in outs)
        keys = np.array(labels.get(stem, [0]), dtype=np.int64)
        k = torch.from_numpy(keys)
        cam = strided[k]
        cam = cam / (F.adaptive_max_pool2d(cam, (1, 1)) + 1e-5)
        hr = high[k]
        hr = hr / (F.adaptive_max_pool2d(hr, (1, 1)) + 1e-5)
        np.save(os.path.join(a.out, stem + ".npy"), {"keys": keys, "cam": cam.numpy(), "high_res": hr.numpy()})
    total = time.perf_counter() - t0
    print(f"RESULT {total / len(paths):.6f} {in_net / len(paths):.6f} {len(paths)}", flush=True)


if __name__ == "__main__":
    main()
