//! Training-trajectory parity with the `train-steps/` fixture (§2.1–2.10): from the fixture's
//! initial weights and batches, the trainer's own iteration (poly learning rates, forward, the
//! variant's losses, one backward pass, SGD with the case's momentum and the decoder's Adam)
//! reproduces, iteration after iteration, every loss term, learning rate, forward output,
//! iteration-0 gradient, trainable tensor and the final optimiser state within the case's
//! tolerances; every other tensor of the network stays bit-identical.
//!
//! Every shape, width, block count, class count, hyper-parameter, iteration count and
//! tolerance comes from the fixture's `config.json`; the only constants here are the tensor
//! naming scheme of the fixture README.
//!
//! With `SSC_TEST_DEVICE=cuda` (what `scripts/gpu-check.sh` sets on a lent GPU, in a
//! `--features cuda` build) every case also runs on that device, is held to the same goldens,
//! and the largest CPU-vs-device difference of the loss terms and of the trained tensors is
//! printed as a `DEVICE-PARITY` line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde_json::Value;
use ssc_core::tensors::TensorFile;
use ssc_models::cam::CamTrainOutput;
use ssc_models::config::{
    BnMode, CamNetConfig, DecoderConfig, PerceptualConfig, ResNetConfig, VggConfig,
};
use ssc_models::ops::pool::global_avg_pool;
use ssc_training::cam::config::{CamTrainConfig, Variant};
use ssc_training::cam::data::Batch;
use ssc_training::cam::trainer::{
    NetOptimiser, Networks, Optimisers, StepForward, TrainOptions, build_networks, forward_losses,
    losses_from_outputs, optimisers,
};
use ssc_training::checkpoint::var_tensors;
use ssc_training::optim::AdamConfig;
use ssc_training::schedule::warmup_poly_factor;

fn fixture() -> Option<(PathBuf, Value)> {
    let dir = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "train-steps")?;
    let cfg = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    Some((dir, cfg))
}

fn usize_vec(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn arr<const N: usize>(v: &Value) -> [usize; N] {
    usize_vec(v)
        .try_into()
        .unwrap_or_else(|v: Vec<usize>| panic!("expected {N} values, got {v:?}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// The trainer configuration that reproduces `case` of the fixture.
fn train_config(cfg: &Value, case: &Value) -> CamTrainConfig {
    let net = &cfg["network"];
    let bb = &net["backbone"];
    // Our ResNet has torchvision's stem; a fixture with another one cannot be reproduced.
    assert_eq!(bb["conv1_stride"].as_u64(), Some(2), "conv1 stride");
    assert_eq!(bb["maxpool"].as_str(), Some("3x3 s2 p1"), "stem max pool");
    let num_classes = net["num_classes"].as_u64().unwrap() as usize;
    let dec = &cfg["decoder"];
    let vgg_cfg = &cfg["vgg"];
    let vgg = VggConfig {
        convs: arr(&vgg_cfg["convs"]),
        widths: arr(&vgg_cfg["widths"]),
    };
    let perceptual = PerceptualConfig {
        taps: usize_vec(&vgg_cfg["taps"]),
        weights: vgg_cfg["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect(),
        max_width: vgg_cfg["max_width"].as_u64().unwrap() as usize,
    };
    let asm = &cfg["asm"];
    let sgd = &cfg["optimiser"]["sgd"];
    let adam = &cfg["optimiser"]["adam"];
    let betas = usize_vec_f(&adam["betas"]);
    let lr0 = f(&sgd["lr0"]["backbone"]);
    let mut c = CamTrainConfig::voc();
    c.variant = Variant::parse(case["variant"].as_str().unwrap()).unwrap();
    c.net = CamNetConfig {
        backbone: ResNetConfig {
            blocks: arr(&bb["blocks"]),
            base_width: bb["base_width"].as_u64().unwrap() as usize,
            strides: arr(&bb["layer_strides"]),
            dilations: arr(&bb["layer_dilations"]),
            bn_eps: f(&bb["bn_eps"]),
        }
        .into(),
        num_classes,
        drs_delta: f(&net["drs_delta"]),
        train_all_stages: false,
        bn: BnMode::Frozen,
        detach_early_drs_cap: false,
        early_drs_every_variant: false,
    };
    assert_eq!(
        c.net.feature_channels() as u64,
        net["feature_channels"].as_u64().unwrap()
    );
    c.decoder = DecoderConfig {
        in_channels: dec["in_channels"].as_u64().unwrap() as usize,
        widths: arr(&dec["widths"]),
        res_blocks: dec["res_blocks"].as_u64().unwrap() as usize,
        out_channels: dec["out_channels"].as_u64().unwrap() as usize,
        ln_eps: f(&dec["ln_eps"]),
        in_eps: f(&dec["in_eps"]),
    };
    c.vgg = vgg;
    c.perceptual = perceptual;
    c.asm.t_obj = f(&asm["T_obj"]) as f32;
    c.asm.erosion_kernel = asm["erosion_kernel"].as_u64().unwrap() as usize;
    c.asm.norm_eps = f(&asm["norm_eps"]) as f32;
    c.asm_warmup_epochs = asm["warmup_epochs"].as_u64().unwrap() as usize;
    c.asm.reference_cpu_aliasing = ran_on_cpu(cfg);
    c.lr = lr0;
    c.classifier_lr_mult = f(&sgd["lr0"]["classifier"]) / lr0;
    c.weight_decay = f(&sgd["weight_decay"]);
    assert_eq!(f(&sgd["dampening"]), 0.0, "dampening");
    assert_eq!(sgd["nesterov"].as_bool(), Some(false), "nesterov");
    c.momentum = f(&case["sgd_momentum"]);
    c.reference_momentum_quirk = false;
    c.poly_power = f(&sgd["poly_power"]);
    c.adam = AdamConfig {
        lr: f(&adam["lr0"]),
        betas: (betas[0], betas[1]),
        eps: f(&adam["eps"]),
        weight_decay: f(&adam["weight_decay"]),
    };
    assert_eq!(adam["amsgrad"].as_bool(), Some(false), "amsgrad");
    assert_eq!(f(&adam["poly_power"]), c.poly_power, "one poly power");
    assert_eq!(
        adam["max_step"], sgd["max_step"],
        "one schedule length for SGD and Adam"
    );
    c.requires_pretrained = false;
    c
}

/// Whether the reference ran with its tensors on the CPU (`.cuda()` a no-op), as recorded in
/// `reference.runtime`: SSC's alignment loss then aliases its prediction (see
/// `AsmConfig::reference_cpu_aliasing`).
fn ran_on_cpu(cfg: &Value) -> bool {
    cfg["reference"]["runtime"].as_array().is_some_and(|r| {
        r.iter()
            .filter_map(Value::as_str)
            .any(|s| s.contains(".cuda()") && s.contains("no-op"))
    })
}

fn usize_vec_f(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

fn batch(file: &TensorFile, t: usize) -> Batch {
    let (images, s) = file.f32(&format!("it{t}.img")).unwrap();
    let (labels, ls) = file.f32(&format!("it{t}.label")).unwrap();
    let (sp, ss) = file.u8(&format!("it{t}.spixel")).unwrap();
    assert_eq!(
        (s[0], ls[0], ss[0]),
        (s[0], s[0], s[0]),
        "batch sizes agree"
    );
    assert_eq!(&ss[1..], &s[2..], "superpixels cover the image");
    Batch {
        index: t,
        images,
        superpixels: sp.into_iter().map(u32::from).collect(),
        labels,
        len: s[0],
        size: (s[2], s[3]),
    }
}

/// `max|got − want| ≤ atol + rtol·max|want|`; returns the error for the report.
fn check(what: &str, got: &Tensor, want: &[f32], shape: &[usize], tol: (f64, f64)) -> f64 {
    assert_eq!(got.dims(), shape, "{what}: shape");
    let got = host(got);
    let scale = want.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    let bound = tol.0 + tol.1 * scale;
    assert!(
        err <= bound,
        "{what}: max error {err:e} > {bound:e} (scale {scale:e})"
    );
    err
}

fn check_scalar(what: &str, got: f64, want: f64, tol: &Value) {
    let bound = f(&tol["atol"]) + f(&tol["rtol"]) * want.abs();
    assert!(
        (got - want).abs() <= bound,
        "{what}: {got} vs {want} (bound {bound:e})"
    );
}

fn var(vm: &VarMap, name: &str) -> Var {
    vm.data()
        .lock()
        .unwrap()
        .get(name)
        .unwrap_or_else(|| panic!("no parameter `{name}`"))
        .clone()
}

/// One golden tensor of a case with its tolerance group.
struct Golden {
    name: String,
    group: String,
    shape: Vec<usize>,
}

/// What a golden tensor is compared with.
enum Target<'a> {
    /// A network tensor after iteration `t`.
    Net(usize, &'a str),
    /// A decoder tensor after iteration `t`.
    Decoder(usize, &'a str),
    /// A forward output of iteration `t` (`logits`, `F`, `x_rec`).
    Output(usize, &'a str),
    /// An iteration-0 gradient of a network (`net`) or decoder tensor, or of F.
    Grad(&'a str, &'a str),
    /// Final optimiser state: `sgd.momentum_buffer`, `adam.exp_avg`, `adam.exp_avg_sq`.
    State(&'a str, &'a str),
}

fn target(name: &str) -> Target<'_> {
    if let Some(rest) = name.strip_prefix("sgd.momentum_buffer.") {
        return Target::State("momentum_buffer", rest);
    }
    for kind in ["exp_avg_sq", "exp_avg"] {
        if let Some(rest) = name.strip_prefix(&format!("adam.{kind}.")) {
            return Target::State(if kind == "exp_avg" { "m" } else { "v" }, rest);
        }
    }
    let (it, rest) = name
        .split_once('.')
        .unwrap_or_else(|| panic!("unknown golden tensor `{name}`"));
    let t: usize = it
        .strip_prefix("it")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("unknown golden tensor `{name}`"));
    if let Some(p) = rest.strip_prefix("net.") {
        Target::Net(t, p)
    } else if let Some(p) = rest.strip_prefix("decoder.") {
        Target::Decoder(t, p)
    } else if let Some(p) = rest.strip_prefix("grad.net.") {
        assert_eq!(t, 0, "gradients are stored for iteration 0 only");
        Target::Grad("net", p)
    } else if let Some(p) = rest.strip_prefix("grad.decoder.") {
        assert_eq!(t, 0);
        Target::Grad("decoder", p)
    } else if rest == "grad_F" {
        assert_eq!(t, 0);
        Target::Grad("F", "")
    } else if ["logits", "F", "x_rec"].contains(&rest) {
        Target::Output(t, rest)
    } else if ["img", "label", "spixel"].contains(&rest) {
        panic!("batch tensor `{name}` in a case file")
    } else {
        panic!("unknown golden tensor `{name}`")
    }
}

/// What a case run produced, on the host: every loss term of every iteration and every
/// trainable tensor (network and decoder) after the last one.
struct CaseRun {
    losses: Vec<f64>,
    tensors: BTreeMap<String, Vec<f32>>,
}

fn host(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn run_case(dir: &Path, cfg: &Value, case_name: &str, dev: &Device) -> CaseRun {
    let case = &cfg["cases"][case_name];
    let tcfg = train_config(cfg, case);
    let iterations = cfg["iterations"].as_u64().unwrap() as usize;
    let max_step = cfg["optimiser"]["sgd"]["max_step"].as_u64().unwrap();
    let mut opts = TrainOptions::new(std::env::temp_dir());
    opts.device = dev.clone();
    opts.backbone_weights = Some(dir.join("init_net.safetensors"));
    opts.vgg_weights = Some(dir.join("init_vgg.safetensors"));
    let nets = build_networks(&tcfg, &opts).unwrap();
    if let Some((_, vm)) = &nets.decoder {
        vm.clone()
            .load(dir.join("init_decoder.safetensors"))
            .unwrap();
    }
    assert_eq!(
        nets.decoder.is_some(),
        case["decoder_and_perceptual_loss"].as_bool().unwrap(),
        "{case_name}: decoder"
    );
    let init = TensorFile::open(dir.join("init_net.safetensors")).unwrap();
    let mut opt = optimisers(&tcfg, &nets).unwrap();
    let goldens_file = TensorFile::open(dir.join(case["file"].as_str().unwrap())).unwrap();
    let batches = TensorFile::open(dir.join("batches.safetensors")).unwrap();

    let goldens: Vec<Golden> = case["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| Golden {
            name: name.clone(),
            group: v["group"].as_str().unwrap().to_string(),
            shape: usize_vec(&v["shape"]),
        })
        .collect();
    let tol_of = |group: &str| {
        let g = &case["tolerance"]["groups"][group];
        assert!(!g.is_null(), "{case_name}: no tolerance for group {group}");
        (f(&g["atol"]), f(&g["rtol"]))
    };
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    let mut compare = |g: &Golden, got: &Tensor| {
        let (want, _) = goldens_file.f32(&g.name).unwrap();
        check(
            &format!("{case_name} {}", g.name),
            got,
            &want,
            &g.shape,
            tol_of(&g.group),
        );
        *checked.entry(g.group.clone()).or_default() += 1;
    };

    let mut losses = Vec::new();
    for t in 0..iterations {
        let factor = warmup_poly_factor(t as u64, max_step, tcfg.poly_power, 0);
        opt.set_lr_factor(factor);
        check_lrs(case_name, case, &opt, t);
        let b = batch(&batches, t);
        // The trainer's iteration, unrolled so the gradients can be inspected: this is
        // exactly `trainer::step`.
        let fwd = forward_losses(&tcfg, &nets, &b, 0, dev).unwrap();
        let grads = fwd.loss.backward().unwrap();
        let tm = fwd.terms;
        losses.extend([tm.cls, tm.perceptual, tm.align, tm.total]);
        for term in ["cls", "per", "align", "total"] {
            let Some(want) = case["loss"][term].get(t).map(f) else {
                continue;
            };
            let got = match term {
                "cls" => fwd.terms.cls,
                "per" => fwd.terms.perceptual,
                "align" => fwd.terms.align,
                _ => fwd.terms.total,
            };
            check_scalar(
                &format!("{case_name} it{t} loss {term}"),
                got,
                want,
                &case["tolerance"]["loss"][term],
            );
        }
        for g in &goldens {
            match target(&g.name) {
                Target::Output(it, what) if it == t => {
                    let got = match what {
                        "logits" => fwd.out.scores.clone(),
                        "F" => fwd.out.features.clone(),
                        _ => fwd.reconstruction.clone().expect("x_rec needs the decoder"),
                    };
                    compare(g, &got);
                }
                Target::Grad("F", _) if t == 0 => {
                    compare(g, &grad_wrt_features(&tcfg, &nets, &b, &fwd, dev));
                }
                Target::Grad(kind, name) if t == 0 => {
                    compare(g, &grad_of(&grads, &nets, kind, name));
                }
                _ => {}
            }
        }
        opt.step(&grads).unwrap();
        for g in &goldens {
            match target(&g.name) {
                Target::Net(it, name) if it == t => {
                    compare(g, var(&nets.net_vars, name).as_tensor())
                }
                Target::Decoder(it, name) if it == t => {
                    let vm = &nets.decoder.as_ref().expect("decoder tensors need CDR").1;
                    compare(g, var(vm, name).as_tensor());
                }
                _ => {}
            }
        }
        assert_frozen_unchanged(case_name, cfg, &nets, &init, t);
    }

    for g in &goldens {
        if let Target::State(kind, name) = target(&g.name) {
            let got = optimiser_state(&opt, &nets, kind, name, case, iterations);
            compare(g, &got);
        }
    }
    // Every golden tensor was compared once.
    let total: usize = checked.values().sum();
    assert_eq!(total, goldens.len(), "{case_name}: compared {checked:?}");
    eprintln!("{case_name} on {dev:?}: {total} tensors within tolerance ({checked:?})");
    let mut tensors: BTreeMap<String, Vec<f32>> = var_tensors(&nets.net_vars)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (format!("net.{name}"), host(&t)))
        .collect();
    if let Some((_, vm)) = &nets.decoder {
        for (name, t) in var_tensors(vm).unwrap() {
            tensors.insert(format!("decoder.{name}"), host(&t));
        }
    }
    CaseRun { losses, tensors }
}

fn check_lrs(case_name: &str, case: &Value, opt: &Optimisers, t: usize) {
    let tol = &case["tolerance"]["lr"];
    let NetOptimiser::Sgd(sgd) = &opt.net else {
        panic!("the reference trains the network with SGD");
    };
    let lrs = sgd.lrs();
    let names: Vec<&str> = sgd.groups().iter().map(|g| g.name.as_str()).collect();
    for (i, group) in names.iter().enumerate() {
        let want = f(&case["lr"][*group][t]);
        check_scalar(&format!("{case_name} it{t} lr {group}"), lrs[i], want, tol);
    }
    if let Some(want) = case["lr"].get("decoder") {
        let got = opt.decoder.as_ref().expect("decoder Adam").lr();
        check_scalar(
            &format!("{case_name} it{t} lr decoder"),
            got,
            f(&want[t]),
            tol,
        );
    }
}

/// ∂L/∂F: candle keeps only the leaves' gradients, so the losses are recomputed from a copy
/// of F made a leaf (the same function of F the trainer differentiates).
fn grad_wrt_features(
    cfg: &CamTrainConfig,
    nets: &Networks,
    b: &Batch,
    fwd: &StepForward,
    dev: &Device,
) -> Tensor {
    let f = Var::from_tensor(&fwd.out.features.detach()).unwrap();
    let out = CamTrainOutput {
        features: f.as_tensor().clone(),
        scores: global_avg_pool(f.as_tensor()).unwrap(),
    };
    let (n, (h, w)) = (b.len, b.size);
    let x = Tensor::from_slice(&b.images, (n, 3, h, w), dev).unwrap();
    let again = losses_from_outputs(cfg, nets, &x, out, b, 0).unwrap();
    assert_eq!(
        again.terms, fwd.terms,
        "the loss as a function of F is the same"
    );
    again
        .loss
        .backward()
        .unwrap()
        .get(f.as_tensor())
        .unwrap()
        .clone()
}

fn grad_of(grads: &GradStore, nets: &Networks, kind: &str, name: &str) -> Tensor {
    let t = match kind {
        "net" => grads.get(var(&nets.net_vars, name).as_tensor()),
        _ => grads.get(var(&nets.decoder.as_ref().unwrap().1, name).as_tensor()),
    };
    t.unwrap_or_else(|| panic!("no gradient for {kind} {name}"))
        .clone()
}

fn optimiser_state(
    opt: &Optimisers,
    nets: &Networks,
    kind: &str,
    name: &str,
    case: &Value,
    iterations: usize,
) -> Tensor {
    if kind == "momentum_buffer" {
        let NetOptimiser::Sgd(sgd) = &opt.net else {
            panic!("SGD expected");
        };
        return sgd
            .momentum_buffer(&var(&nets.net_vars, name))
            .unwrap_or_else(|| panic!("no momentum buffer for {name}"))
            .clone();
    }
    let adam = opt.decoder.as_ref().expect("decoder Adam");
    let (step, m, v) = adam
        .moments(&var(&nets.decoder.as_ref().unwrap().1, name))
        .unwrap_or_else(|| panic!("no Adam state for {name}"));
    let want_step = case["adam_step_after_last_iteration"]
        .as_f64()
        .unwrap_or(iterations as f64);
    assert_eq!(step as f64, want_step, "Adam step count of {name}");
    if kind == "m" { m.clone() } else { v.clone() }
}

/// Every network tensor outside `trainable_net` (frozen parameters, running statistics) is
/// bit-identical to its initial value.
fn assert_frozen_unchanged(
    case_name: &str,
    cfg: &Value,
    nets: &Networks,
    init: &TensorFile,
    t: usize,
) {
    let trainable: Vec<&str> = cfg["trainable_net"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let now: HashMap<String, Tensor> = var_tensors(&nets.net_vars).unwrap().into_iter().collect();
    let mut frozen = 0;
    for name in init.names() {
        if trainable.contains(&name.as_str()) {
            continue;
        }
        let (want, _) = init.f32(&name).unwrap();
        let got = host(
            now.get(&name)
                .unwrap_or_else(|| panic!("{name} not in the network")),
        );
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{case_name} it{t}: frozen tensor {name} changed"
        );
        frozen += 1;
    }
    assert!(frozen > 0, "{case_name}: no frozen tensor checked");
}

#[test]
fn three_iterations_follow_the_reference() {
    let Some((dir, cfg)) = fixture() else { return };
    let cases: Vec<String> = cfg["cases"].as_object().unwrap().keys().cloned().collect();
    assert!(!cases.is_empty());
    for case in cases {
        run_case(&dir, &cfg, &case, &Device::Cpu);
    }
}

/// The same cases on `SSC_TEST_DEVICE` (a GPU; skipped when unset), each held to the goldens,
/// and the largest CPU-vs-device difference printed for `scripts/gpu-check.sh`.
#[test]
fn cpu_and_device_agree() {
    let Ok(name) = std::env::var("SSC_TEST_DEVICE") else {
        eprintln!("SSC_TEST_DEVICE not set: the CPU-vs-device comparison is skipped");
        return;
    };
    let Some((dir, cfg)) = fixture() else { return };
    let dev =
        ssc_training::run::device(&name).unwrap_or_else(|e| panic!("SSC_TEST_DEVICE={name}: {e}"));
    let iterations = cfg["iterations"].as_u64().unwrap();
    for case in cfg["cases"].as_object().unwrap().keys() {
        let cpu = run_case(&dir, &cfg, case, &Device::Cpu);
        let other = run_case(&dir, &cfg, case, &dev);
        let loss = cpu
            .losses
            .iter()
            .zip(&other.losses)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert_eq!(
            cpu.tensors.keys().collect::<Vec<_>>(),
            other.tensors.keys().collect::<Vec<_>>()
        );
        let (mut weights, mut worst) = (0f64, String::new());
        for (k, a) in &cpu.tensors {
            let d = a
                .iter()
                .zip(&other.tensors[k])
                .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
            if d >= weights {
                (weights, worst) = (d, k.clone());
            }
        }
        println!(
            "DEVICE-PARITY case={case} device={name} iterations={iterations} \
             max_loss_diff={loss:.3e} max_weight_diff={weights:.3e} worst={worst}"
        );
    }
}
