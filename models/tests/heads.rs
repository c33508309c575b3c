//! Unit tests of the heads' building blocks: norms and reflection padding (values against
//! hand computations, gradients against finite differences), IRN edge branch and DeepLabV2
//! ASPP.

mod heads_util;

use candle_core::{DType, Device, Tensor};

use heads_util::{gradcheck, rand_f64};
use ssc_models::ops::norm::{group_norm, instance_norm, layer_norm_munit};
use ssc_models::ops::pad::reflection_pad2d;

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Plain-loop normalisation over contiguous blocks of `block` elements: `(x − μ)/d` where
/// `d = σ + eps` (unbiased σ) or `√(var + eps)` (biased), then `γ_c·y + β_c` with `hw`
/// elements per channel.
fn hand_norm(
    x: &[f64],
    block: usize,
    hw: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
    munit: bool,
) -> Vec<f64> {
    let c = gamma.len();
    let mut out = vec![0.0; x.len()];
    for (b, chunk) in x.chunks(block).enumerate() {
        let m = chunk.len() as f64;
        let mean = chunk.iter().sum::<f64>() / m;
        let ss = chunk.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        let d = if munit {
            (ss / (m - 1.0)).sqrt() + eps
        } else {
            (ss / m + eps).sqrt()
        };
        for (i, v) in chunk.iter().enumerate() {
            let idx = b * block + i;
            let ch = (idx / hw) % c;
            out[idx] = (v - mean) / d * gamma[ch] + beta[ch];
        }
    }
    out
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn reflection_pad_values() {
    // One channel 3×4 with values 0..12; PyTorch ReflectionPad2d(1) mirrors without repeating
    // the border.
    let x = Tensor::arange(0f64, 12.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 4))
        .unwrap();
    let y = reflection_pad2d(&x, 1).unwrap();
    let rows: Vec<Vec<f64>> = y.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    assert_eq!(rows[0], vec![5.0, 4.0, 5.0, 6.0, 7.0, 6.0]);
    assert_eq!(rows[1], vec![1.0, 0.0, 1.0, 2.0, 3.0, 2.0]);
    assert_eq!(rows[4], vec![5.0, 4.0, 5.0, 6.0, 7.0, 6.0]);
    let y2 = reflection_pad2d(&x, 2).unwrap();
    assert_eq!(y2.dims(), &[1, 1, 7, 8]);
    let r0: Vec<f64> = y2
        .squeeze(0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(r0, vec![10.0, 9.0, 8.0, 9.0, 10.0, 11.0, 10.0, 9.0]);
    // Padding as large as the size has no reflection: a clear error, not a panic.
    assert!(reflection_pad2d(&x, 3).is_err());
}

#[test]
fn reflection_pad_gradient() {
    let x = rand_f64(&[1, 2, 3, 4], 1);
    gradcheck(&x, |x| reflection_pad2d(x, 2).unwrap(), 1e-6);
}

#[test]
fn norms_match_hand_computation() {
    let (n, c, h, w) = (2, 6, 3, 5);
    let x = (rand_f64(&[n, c, h, w], 4) * 3.0).unwrap();
    let gamma = rand_f64(&[c], 5);
    let beta = rand_f64(&[c], 6);
    let (xv, gv, bv) = (flat(&x), flat(&gamma), flat(&beta));
    let ones = vec![1.0; c];
    let zeros = vec![0.0; c];

    let ln = layer_norm_munit(&x, &gamma, &beta, 1e-5).unwrap();
    let want = hand_norm(&xv, c * h * w, h * w, &gv, &bv, 1e-5, true);
    assert!(max_diff(&flat(&ln), &want) < 1e-12);

    let inorm = instance_norm(&x, 1e-5).unwrap();
    let want = hand_norm(&xv, h * w, h * w, &ones, &zeros, 1e-5, false);
    assert!(max_diff(&flat(&inorm), &want) < 1e-12);

    let gn = group_norm(&x, 3, &gamma, &beta, 1e-5).unwrap();
    let want = hand_norm(&xv, 2 * h * w, h * w, &gv, &bv, 1e-5, false);
    assert!(max_diff(&flat(&gn), &want) < 1e-12);
    // GroupNorm with one group per channel is InstanceNorm with an affine part.
    let gn_c = group_norm(
        &x,
        c,
        &Tensor::ones(c, DType::F64, &Device::Cpu).unwrap(),
        &Tensor::zeros(c, DType::F64, &Device::Cpu).unwrap(),
        1e-5,
    )
    .unwrap();
    assert!(max_diff(&flat(&gn_c), &flat(&inorm)) < 1e-12);

    assert!(group_norm(&x, 4, &gamma, &beta, 1e-5).is_err());
}

#[test]
fn norm_gradients() {
    let x = rand_f64(&[2, 4, 3, 3], 7);
    let gamma = rand_f64(&[4], 8);
    let beta = rand_f64(&[4], 9);
    gradcheck(
        &x,
        |x| layer_norm_munit(x, &gamma, &beta, 1e-5).unwrap(),
        1e-6,
    );
    gradcheck(&x, |x| instance_norm(x, 1e-5).unwrap(), 1e-6);
    gradcheck(&x, |x| group_norm(x, 2, &gamma, &beta, 1e-5).unwrap(), 1e-6);
    // The affine parameters receive gradients too.
    gradcheck(
        &gamma,
        |g| layer_norm_munit(&x, g, &beta, 1e-5).unwrap(),
        1e-6,
    );
    gradcheck(&beta, |b| group_norm(&x, 2, &gamma, b, 1e-5).unwrap(), 1e-6);
}

// ---------------------------------------------------------------------------------------
// IRN edge branch (§4.2)

use candle_core::Module;
use candle_nn::VarMap;
use ssc_models::config::{DeepLabConfig, IrnConfig, ResNetConfig};
use ssc_models::deeplab::{Aspp, logits_from_pre};
use ssc_models::init::SeededInit;
use ssc_models::irn::IrnEdge;

/// Stage sizes of the torchvision ResNet stem + OS16 layers for an H×W input:
/// every stride-2 step maps n to ceil(n/2).
fn os16_sizes(h: usize, w: usize) -> [(usize, usize); 5] {
    let half = |n: usize| n.div_ceil(2);
    let s4 = (half(half(h)), half(half(w)));
    let s8 = (half(s4.0), half(s4.1));
    let s16 = (half(s8.0), half(s8.1));
    [s4, s4, s8, s16, s16]
}

fn small_irn() -> IrnConfig {
    IrnConfig::for_backbone(ResNetConfig {
        base_width: 4,
        ..ResNetConfig::tiny_os16()
    })
}

fn irn_features(cfg: &IrnConfig, n: usize, h: usize, w: usize, seed: u64) -> Vec<Tensor> {
    let chans = cfg.feature_channels();
    os16_sizes(h, w)
        .iter()
        .zip(chans)
        .enumerate()
        .map(|(k, (&(hh, ww), c))| rand_f64(&[n, c, hh, ww], seed + k as u64))
        .collect()
}

#[test]
fn irn_edge_names_and_odd_sizes() {
    let cfg = IrnConfig::tiny();
    assert_eq!(cfg.edge_factors(), [1, 1, 2, 4, 4]);
    assert_eq!(
        IrnConfig::resnet50().feature_channels(),
        [64, 256, 512, 1024, 2048]
    );
    assert_eq!(IrnConfig::resnet50().edge_width, 32);
    let varmap = VarMap::new();
    let edge = IrnEdge::new(
        &cfg,
        SeededInit::var_builder(&varmap, 1, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let mut names: Vec<(String, Vec<usize>)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    names.sort();
    let w = cfg.edge_width;
    let mut want = vec![
        ("fc_edge6.bias".to_string(), vec![1]),
        ("fc_edge6.weight".to_string(), vec![1, 5 * w, 1, 1]),
    ];
    for (k, c) in cfg.feature_channels().iter().enumerate() {
        want.push((format!("fc_edge{}.0.weight", k + 1), vec![w, *c, 1, 1]));
        want.push((format!("fc_edge{}.1.bias", k + 1), vec![w]));
        want.push((format!("fc_edge{}.1.weight", k + 1), vec![w]));
    }
    want.sort();
    assert_eq!(names, want);
    for (h, wd) in [(65, 47), (64, 64), (33, 70), (17, 9)] {
        let feats = irn_features(&cfg, 2, h, wd, 3);
        let y = edge.forward(&feats).unwrap();
        let (h4, w4) = os16_sizes(h, wd)[1];
        assert_eq!(y.dims(), &[2, 1, h4, w4], "input {h}×{wd}");
    }
    // Wrong feature count or a too-small deep feature is an error, not a panic.
    let feats = irn_features(&cfg, 1, 32, 32, 4);
    assert!(edge.forward(&feats[..4]).is_err());
    let mut bad = feats.clone();
    bad[3] = bad[3].narrow(2, 0, 1).unwrap();
    assert!(edge.forward(&bad).is_err());
}

#[test]
fn irn_edge_gradients() {
    let cfg = small_irn();
    let varmap = VarMap::new();
    let edge = IrnEdge::new(
        &cfg,
        SeededInit::var_builder(&varmap, 2, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let feats = irn_features(&cfg, 1, 23, 29, 5);
    // Gradient w.r.t. the up-sampled (x3 ×2, x5 ×4) and the plain (x1) inputs.
    for k in [0, 2, 4] {
        gradcheck(
            &feats[k],
            |x| {
                let mut f = feats.clone();
                f[k] = x.clone();
                edge.forward(&f).unwrap()
            },
            1e-6,
        );
    }
    // Every parameter is trained.
    let grads = edge
        .forward(&feats)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient: {name}"));
        let m = g
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(m > 0.0, "zero gradient for {name}");
    }
}

// ---------------------------------------------------------------------------------------
// DeepLabV2 ASPP (§6.1)

#[test]
fn aspp_is_sum_of_dilated_convs() {
    let cfg = DeepLabConfig::synthetic(5);
    let cin = cfg.backbone.feature_channels();
    let varmap = VarMap::new();
    let vb = SeededInit::var_builder(&varmap, 3, DType::F64, &Device::Cpu);
    let aspp = Aspp::new(cin, cfg.num_classes, &cfg.rates, cfg.head_init_std, vb).unwrap();
    // Biases start at zero; give them values so the test covers them.
    {
        let data = varmap.data().lock().unwrap();
        for i in 0..cfg.rates.len() {
            data[&format!("{i}.bias")]
                .set(&rand_f64(&[cfg.num_classes], 40 + i as u64))
                .unwrap();
        }
    }
    for (h, w) in [(9, 13), (8, 8), (5, 31)] {
        let x = rand_f64(&[2, cin, h, w], 6);
        let got = aspp.forward(&x).unwrap();
        assert_eq!(got.dims(), &[2, cfg.num_classes, h, w]);
        // Reference: candle's built-in conv, branch by branch, then the sum.
        let data = varmap.data().lock().unwrap();
        let mut want: Option<Tensor> = None;
        for (i, &r) in cfg.rates.iter().enumerate() {
            let wt = data[&format!("{i}.weight")].as_tensor();
            let b = data[&format!("{i}.bias")]
                .as_tensor()
                .reshape((1, (), 1, 1))
                .unwrap();
            let y = x.conv2d(wt, r, 1, r, 1).unwrap().broadcast_add(&b).unwrap();
            want = Some(match want {
                Some(s) => (s + y).unwrap(),
                None => y,
            });
        }
        assert!(max_diff(&flat(&got), &flat(&want.unwrap())) < 1e-12);
    }
    // N(0, 0.01²) weights, zero biases at initialisation.
    let fresh = VarMap::new();
    let vb = SeededInit::var_builder(&fresh, 4, DType::F64, &Device::Cpu);
    Aspp::new(256, 21, &[6, 12, 18, 24], 0.01, vb).unwrap();
    let data = fresh.data().lock().unwrap();
    let w = flat(data["0.weight"].as_tensor());
    let std = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
    assert!((std - 0.01).abs() < 3e-4, "std {std}");
    assert!(flat(data["3.bias"].as_tensor()).iter().all(|&b| b == 0.0));
    assert!(
        Aspp::new(
            4,
            2,
            &[],
            0.01,
            SeededInit::var_builder(&fresh, 1, DType::F64, &Device::Cpu)
        )
        .is_err()
    );
}

#[test]
fn logits_resize_to_input_size() {
    let pre = rand_f64(&[1, 3, 9, 12], 8);
    let l = logits_from_pre(&pre, 65, 93).unwrap();
    assert_eq!(l.dims(), &[1, 3, 65, 93]);
    // Bilinear never leaves the range of its input.
    let (lo, hi) = (
        flat(&pre).into_iter().fold(f64::MAX, f64::min),
        flat(&pre).into_iter().fold(f64::MIN, f64::max),
    );
    assert!(flat(&l).iter().all(|&v| v >= lo - 1e-12 && v <= hi + 1e-12));
}

// ---------------------------------------------------------------------------------------
// Full networks on the ResNet backbone

use ssc_models::deeplab::DeepLabV2;
use ssc_models::irn::Irn;

fn var_names(vm: &VarMap) -> Vec<String> {
    let mut n: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    n.sort();
    n
}

#[test]
fn irn_network_sizes_and_frozen_backbone() {
    let cfg = small_irn();
    let (bb, head) = (VarMap::new(), VarMap::new());
    let dev = Device::Cpu;
    let irn = Irn::from_parts(
        &cfg,
        SeededInit::var_builder(&bb, 1, DType::F32, &dev),
        SeededInit::var_builder(&head, 2, DType::F32, &dev),
    )
    .unwrap();
    assert!(var_names(&head).iter().all(|n| n.starts_with("fc_edge")));
    assert!(var_names(&bb).contains(&"layer4.0.downsample.1.running_var".to_string()));
    for (h, w) in [(65, 47), (32, 32), (17, 9)] {
        let x = rand_f64(&[2, 3, h, w], 20).to_dtype(DType::F32).unwrap();
        let y = irn.forward(&x).unwrap();
        let (h4, w4) = os16_sizes(h, w)[1];
        assert_eq!(y.dims(), &[2, 1, h4, w4], "input {h}×{w}");
    }
    let x = rand_f64(&[1, 3, 40, 36], 21).to_dtype(DType::F32).unwrap();
    let grads = irn
        .forward(&x)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in head.data().lock().unwrap().iter() {
        assert!(
            grads.get(var.as_tensor()).is_some(),
            "no gradient for {name}"
        );
    }
    for (name, var) in bb.data().lock().unwrap().iter() {
        assert!(
            grads.get(var.as_tensor()).is_none(),
            "backbone {name} got a gradient"
        );
    }
}

#[test]
fn deeplab_names_and_output_sizes() {
    let dev = Device::Cpu;
    for (cfg, os) in [
        (DeepLabConfig::synthetic(5), 8),
        (
            DeepLabConfig {
                backbone: ResNetConfig::tiny_os16().into(),
                ..DeepLabConfig::synthetic(5)
            },
            16,
        ),
    ] {
        assert_eq!(cfg.backbone.output_stride(), os);
        let vm = VarMap::new();
        let net = DeepLabV2::new(&cfg, SeededInit::var_builder(&vm, 3, DType::F32, &dev)).unwrap();
        let names = var_names(&vm);
        for want in [
            "backbone.conv1.weight",
            "backbone.layer4.0.downsample.1.running_var",
            "classifier.0.weight",
            "classifier.3.bias",
        ] {
            assert!(names.contains(&want.to_string()), "missing {want}");
        }
        for (h, w) in [(65, 47), (33, 40)] {
            let x = rand_f64(&[2, 3, h, w], 22).to_dtype(DType::F32).unwrap();
            for train in [true, false] {
                let out = net.forward_both(&x, train).unwrap();
                assert_eq!(
                    out.pre_logits.dims(),
                    &[2, 5, h.div_ceil(os), w.div_ceil(os)]
                );
                assert_eq!(out.logits.dims(), &[2, 5, h, w]);
            }
        }
    }
}

/// The `resnet/` fixture's torchvision-named weights load straight into the IRN and DeepLab
/// backbones, and their stage outputs are the fixture's (OS16 for IRN, OS8 for DeepLab).
#[test]
fn backbones_load_torchvision_names_from_fixture() {
    use ssc_core::tensors::TensorFile;
    let Some(case) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet") else {
        return;
    };
    let cfg = heads_util::config(&case);
    let (atol, rtol) = (
        cfg["tolerance"]["atol"].as_f64().unwrap(),
        cfg["tolerance"]["rtol"].as_f64().unwrap(),
    );
    let dev = Device::Cpu;
    let weights = || {
        let bytes = std::fs::read(case.join("weights.safetensors")).unwrap();
        candle_nn::VarBuilder::from_buffered_safetensors(bytes, DType::F32, &dev).unwrap()
    };
    let input = heads_util::load(
        &TensorFile::open(case.join("input.safetensors")).unwrap(),
        "input",
    );
    // Every layout number from the fixture: blocks, width, and each configuration's strides
    // and dilations.
    let usize4 = |v: &serde_json::Value| -> [usize; 4] {
        let v: Vec<usize> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        v.try_into().unwrap()
    };
    let layout = |name: &str| ResNetConfig {
        blocks: usize4(&cfg["blocks"]),
        base_width: cfg["base_width"].as_u64().unwrap() as usize,
        strides: usize4(&cfg["configs"][name]["layer_strides"]),
        dilations: usize4(&cfg["configs"][name]["layer_dilations"]),
        bn_eps: cfg["bn_eps"].as_f64().unwrap(),
    };
    let backbone = layout("os16");

    let irn_cfg = IrnConfig::for_backbone(backbone.clone());
    let head = VarMap::new();
    let irn = Irn::from_parts(
        &irn_cfg,
        weights(),
        SeededInit::var_builder(&head, 1, DType::F32, &dev),
    )
    .unwrap();
    let os16 = TensorFile::open(case.join("os16.safetensors")).unwrap();
    let feats = irn.features(&input).unwrap();
    for (name, f) in ["stem", "layer1", "layer2", "layer3", "layer4"]
        .iter()
        .zip(&feats)
    {
        heads_util::assert_close(
            &format!("irn {name}"),
            f,
            &heads_util::load(&os16, name),
            atol,
            rtol,
        );
    }

    let dl_cfg = DeepLabConfig {
        backbone: layout("os8").into(),
        ..DeepLabConfig::synthetic(3)
    };
    let head = VarMap::new();
    let net = DeepLabV2::from_parts(
        &dl_cfg,
        weights(),
        SeededInit::var_builder(&head, 2, DType::F32, &dev),
    )
    .unwrap();
    // The same head applied to the fixture's OS8 layer4 gives the network's pre_logits.
    let aspp = Aspp::new(
        dl_cfg.backbone.feature_channels(),
        dl_cfg.num_classes,
        &dl_cfg.rates,
        dl_cfg.head_init_std,
        SeededInit::var_builder(&head, 2, DType::F32, &dev),
    )
    .unwrap();
    let os8 = TensorFile::open(case.join("os8.safetensors")).unwrap();
    let want = aspp.forward(&heads_util::load(&os8, "layer4")).unwrap();
    let got = net.forward_both(&input, false).unwrap();
    heads_util::assert_close("deeplab pre_logits", &got.pre_logits, &want, atol, rtol);
    assert_eq!(got.logits.dims()[2..], input.dims()[2..]);
}
