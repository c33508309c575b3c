#!/usr/bin/env python3
"""One SSC classifier training iteration in PyTorch, the peer `ssc-train cam` is timed against.

Written from ../shared/spec/pipeline.md §2.1-2.8 (not from the reference code): ResNet-50 at
output stride 16 with fixed BatchNorm and stage2 detached, DRS inside every layer4 block and
after layer2 (training only), the 1x1 classifier, GAP + multi-label soft margin; for the full
variant also the CAM-driven reconstruction decoder (MUNIT layer norm, instance norm, four
transposed-convolution up-samplings, tanh), the VGG-19 perceptual loss (relu1_1 ... relu5_1,
weights 1/32 ... 1), the alignment loss (superpixel average by one-hot product, max
normalisation, 8x8 erosion of the reliable map), SGD with the momentum quirk on the classifier
and Adam on the decoder, one backward pass. Random weights: the cost does not depend on the
values. As in `cargo bench --bench cam_step`, the network's learning rate is 0 (random
ResNet-50 weights under fixed identity BN overflow after one full-rate step); the update is
still computed.

Prints one line `RESULT <seconds per iteration> <peak GPU bytes or 0> <device>` after
`--warmup` untimed iterations. Needs only torch (no torchvision).
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def drs(x, delta=0.55):
    x = F.relu(x)
    m = x.amax(dim=(2, 3), keepdim=True)
    return torch.minimum(x, delta * m)


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride, use_drs):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.use_drs = use_drs

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        s = x if self.downsample is None else self.downsample(x)
        return drs(y + s) if self.use_drs else F.relu(y + s)


def layer(cin, width, blocks, stride, use_drs):
    mods = [Bottleneck(cin, width, stride, use_drs)]
    mods += [Bottleneck(width * 4, width, 1, use_drs) for _ in range(blocks - 1)]
    return nn.Sequential(*mods)


class CamNet(nn.Module):
    def __init__(self, classes, use_drs):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = layer(64, 64, 3, 1, False)
        self.layer2 = layer(256, 128, 4, 2, False)
        self.layer3 = layer(512, 256, 6, 2, False)
        self.layer4 = layer(1024, 512, 3, 1, use_drs)
        self.classifier = nn.Conv2d(2048, classes, 1, bias=False)
        self.use_drs = use_drs
        for p in list(self.conv1.parameters()) + list(self.bn1.parameters()):
            p.requires_grad_(False)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer2(self.layer1(x)).detach()
        if self.use_drs:
            x = drs(x)
        x = self.layer4(self.layer3(x))
        f = self.classifier(x)
        return f, f.mean(dim=(2, 3))


class LayerNorm(nn.Module):
    """MUNIT layer norm: per-sample mean and unbiased std over (C, H, W), per-channel affine."""

    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(c))
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        n = x.shape[0]
        flat = x.reshape(n, -1)
        mu = flat.mean(1).view(n, 1, 1, 1)
        sd = flat.std(1).view(n, 1, 1, 1)
        y = (x - mu) / (sd + 1e-5)
        return y * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def conv_ln(cin, cout, act=True):
    mods = [nn.ZeroPad2d(1), nn.Conv2d(cin, cout, 3), LayerNorm(cout)]
    if act:
        mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(conv_ln(c, c), conv_ln(c, c, act=False))

    def forward(self, x):
        return x + self.body(x)


class Decoder(nn.Module):
    def __init__(self, classes, widths=(256, 256, 128, 64, 32)):
        super().__init__()
        mods = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(classes, widths[0], 3, bias=False),
            LayerNorm(widths[0]),
            nn.ReLU(),
            ResBlock(widths[0]),
        ]
        c = widths[0]
        for out in widths[1:]:
            mods += [
                nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False),
                nn.InstanceNorm2d(c),
                nn.ReLU(),
                conv_ln(c, out),
            ]
            c = out
        mods += [nn.Conv2d(c, 3, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*mods)

    def forward(self, f):
        return self.net(f)


class Vgg19Taps(nn.Module):
    """torchvision VGG-19 `features[0:30]`, returning relu1_1, relu2_1, relu3_1, relu4_1, relu5_1."""

    def __init__(self):
        super().__init__()
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
        mods, c = [], 3
        for v in cfg:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(c, v, 3, 1, 1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*mods)
        self.taps = {1, 6, 11, 20, 29}
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        out = []
        for i, m in enumerate(self.features):
            x = m(x)
            if i in self.taps:
                out.append(x)
        return out


def perceptual(vgg, rec, img):
    weights = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    with torch.no_grad():
        target = vgg(img)
    return sum(w * (a - b).abs().mean() for w, a, b in zip(weights, vgg(rec), target))


def norm(z):
    z = F.relu(z)
    return z / (z.amax(dim=(2, 3), keepdim=True) + 1e-5)


def alignment(f, labels, spixel, t_obj=0.3, r=8):
    n, c = labels.shape
    s = spixel[:, ::2, ::2]
    h, w = s.shape[1:]
    y = labels[:, :, None, None]
    g = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False) * y
    with torch.no_grad():
        k = int(s.max()) + 1
        onehot = F.one_hot(s.reshape(n, -1).long(), k).float()  # n, hw, k
        sums = torch.bmm(g.reshape(n, c, -1), onehot)
        means = sums / onehot.sum(1, keepdim=True).clamp(min=1e-5)
        gbar = torch.bmm(means, onehot.transpose(1, 2)).reshape(n, c, h, w) * y
    a = norm(g)
    abar = norm(gbar).detach()
    sel = labels.reshape(-1) > 0
    a_sel = a.reshape(n * c, h, w)[sel]
    abar_sel = abar.reshape(n * c, h, w)[sel]
    with torch.no_grad():
        rel = (a_sel > t_obj).float()[:, None]
        lo, hi = r // 2, r - 1 - r // 2
        padded = F.pad(rel, (lo, hi, lo, hi), value=1.0)
        eroded = -F.max_pool2d(-padded, r, 1)
        o = a_sel * eroded[:, 0]
        target = torch.maximum(abar_sel, o)
    return F.mse_loss(a_sel, target)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--variant", choices=["full", "baseline"], default="full")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    full = args.variant == "full"
    net = CamNet(args.classes, use_drs=full).to(dev)
    decoder = Decoder(args.classes).to(dev) if full else None
    vgg = Vgg19Taps().to(dev).eval() if full else None

    backbone = [p for n, p in net.named_parameters() if not n.startswith("classifier") and p.requires_grad]
    sgd = torch.optim.SGD(
        [{"params": backbone, "lr": 0.0}, {"params": net.classifier.parameters(), "lr": 0.0}],
        lr=0.0,
        momentum=1e-4,
        weight_decay=1e-4,
    )
    adam = torch.optim.Adam(decoder.parameters(), lr=5e-4, betas=(0.5, 0.999)) if full else None

    n, s, k = args.batch, args.size, args.classes
    img = torch.randn(n, 3, s, s, device=dev)
    labels = torch.zeros(n, k, device=dev)
    labels[torch.arange(n), torch.randint(0, k, (n,))] = 1
    labels[torch.arange(n), torch.randint(0, k, (n,))] = 1
    # An 8x8 grid of blocks: 64 regions, the most the ICD merge leaves.
    side = s // 8
    idx = torch.arange(s, device=dev) // side
    spixel = (idx[:, None] * 8 + idx[None, :]).clamp(max=63).expand(n, s, s).contiguous()

    def step():
        net.train()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()  # fixed BN
        f, q = net(img)
        loss = F.multilabel_soft_margin_loss(q, labels)
        if full:
            rec = decoder(f)
            loss = loss + perceptual(vgg, rec, img) + alignment(f, labels, spixel)
        sgd.zero_grad(set_to_none=True)
        if adam:
            adam.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()
        if adam:
            adam.step()
        return loss

    for _ in range(args.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    per = (time.perf_counter() - t0) / args.steps
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    print(f"RESULT {per:.6f} {peak} {dev.type}", flush=True)


if __name__ == "__main__":
    main()
