//! Cost of one SSC classifier training step on the CPU (issue: step time and peak memory).
//!
//! Every case runs in its own child process so its peak resident memory (`VmHWM`) is its own:
//! the synthetic preset (batch 8, 128 px crops) for each ablation variant, the voc-lite preset
//! (EfficientNet-Lite0 from `weights/`, batch 6, 256 px) for each variant when the weights are
//! there, and — with
//! `SSC_BENCH_R50=1` — one full-SSC ResNet-50 + VGG-19 step at 512×512, batch 1 (the VOC
//! preset's networks with random weights; the cost does not depend on the values).
//! The ratio column compares each synthetic variant with the baseline measured in the same run,
//! which attributes the time to DRS, the reconstruction branch (CDR) and the alignment loss.
//!
//! With `SSC_BENCH_R50=1` both ResNet-50 cases (baseline and full SSC) are also timed in
//! PyTorch in the same run (`scripts/peers/torch_step.py`, when python3 imports torch) and
//! the pairs appended to `$SSC_BENCH_JSON` (`scripts/bench-vs-reference.sh`).
//!
//! `cargo bench -p ssc-training --bench cam_step [-- CASE…]`

use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use ssc_core::bench_report::BenchRow;
use ssc_core::rng::Rng;
use ssc_training::cam::ablation::peak_rss_mib;
use ssc_training::cam::config::{CamTrainConfig, Variant};
use ssc_training::cam::data::Batch;
use ssc_training::cam::trainer::{TrainOptions, build_networks, optimisers, step};

const NUM_CLASSES: usize = 6;

struct Case {
    name: &'static str,
    cfg: fn() -> CamTrainConfig,
    steps: usize,
}

fn synthetic(v: Variant) -> CamTrainConfig {
    CamTrainConfig {
        variant: v,
        ..CamTrainConfig::synthetic(NUM_CLASSES)
    }
}

/// The voc-lite preset (EfficientNet-Lite0, batch 6 of 256 px) for `v`.
fn voc_lite(v: Variant) -> CamTrainConfig {
    CamTrainConfig {
        variant: v,
        ..CamTrainConfig::voc_lite()
    }
}

fn cases() -> Vec<Case> {
    let mut c = vec![
        Case {
            name: "synthetic/baseline",
            cfg: || synthetic(Variant::Baseline),
            steps: 8,
        },
        Case {
            name: "synthetic/drs",
            cfg: || synthetic(Variant::Drs),
            steps: 8,
        },
        Case {
            name: "synthetic/drs_cdr",
            cfg: || synthetic(Variant::DrsCdr),
            steps: 8,
        },
        Case {
            name: "synthetic/full",
            cfg: || synthetic(Variant::Full),
            steps: 8,
        },
    ];
    if lite0_weights().is_some() {
        for (name, variant) in [
            ("voc-lite/baseline", Variant::Baseline),
            ("voc-lite/drs", Variant::Drs),
            ("voc-lite/drs_cdr", Variant::DrsCdr),
            ("voc-lite/drs_cdr_asm_noras", Variant::DrsCdrAsmNoras),
            ("voc-lite/full", Variant::Full),
        ] {
            c.push(Case {
                name,
                cfg: match variant {
                    Variant::Baseline => || voc_lite(Variant::Baseline),
                    Variant::Drs => || voc_lite(Variant::Drs),
                    Variant::DrsCdr => || voc_lite(Variant::DrsCdr),
                    Variant::DrsCdrAsmNoras => || voc_lite(Variant::DrsCdrAsmNoras),
                    Variant::Full => || voc_lite(Variant::Full),
                },
                steps: 3,
            });
        }
    }
    if std::env::var("SSC_BENCH_R50").is_ok_and(|v| v == "1") {
        c.push(Case {
            name: "resnet50-512/baseline",
            cfg: || CamTrainConfig {
                batch_size: 1,
                requires_pretrained: false,
                variant: Variant::Baseline,
                ..CamTrainConfig::voc()
            },
            steps: 3,
        });
        c.push(Case {
            name: "resnet50-512/full",
            cfg: || CamTrainConfig {
                batch_size: 1,
                requires_pretrained: false,
                ..CamTrainConfig::voc()
            },
            steps: 3,
        });
    }
    c
}

/// The ImageNet Lite0 weights the voc-lite preset needs (`scripts/get-weights.sh`).
fn lite0_weights() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../weights/efficientnet-lite0.safetensors");
    p.is_file().then_some(p)
}

/// A batch of random images, a 16-px block superpixel grid and one or two present classes.
fn batch(cfg: &CamTrainConfig, seed: u64) -> Batch {
    let (n, s, k) = (cfg.batch_size, cfg.data.crop, cfg.net.num_classes);
    let mut rng = Rng::new(seed);
    let images = (0..n * 3 * s * s).map(|_| rng.f32() * 4.0 - 2.0).collect();
    let blocks = s.div_ceil(16);
    let superpixels = (0..n)
        .flat_map(|_| (0..s * s).map(move |p| ((p / s / 16) * blocks + (p % s) / 16) as u32))
        .collect();
    let mut labels = vec![0f32; n * k];
    for i in 0..n {
        labels[i * k + rng.below(k as u64) as usize] = 1.0;
        labels[i * k + rng.below(k as u64) as usize] = 1.0;
    }
    Batch {
        index: 0,
        images,
        superpixels,
        labels,
        len: n,
        size: (s, s),
    }
}

/// Runs one case in this process; prints `RESULT <s/step> <peak MiB>`.
fn child(case: &Case) {
    let cfg = (case.cfg)();
    let tmp = std::env::temp_dir().join(format!("ssc-cam-step-{}", std::process::id()));
    let mut opts = TrainOptions::new(&tmp);
    if cfg.preset == "voc-lite" {
        opts.backbone_weights = lite0_weights();
    }
    let nets = build_networks(&cfg, &opts).expect("networks");
    let mut opt = optimisers(&cfg, &nets).expect("optimisers");
    let b = batch(&cfg, 7);
    // Random ResNet-50 weights with fixed identity BN overflow to NaN after one full-rate
    // step; a zero learning rate keeps them finite and costs the same dense work.
    let factor = if cfg.preset == "voc" { 0.0 } else { 1.0 };
    // Past the warm-up so the alignment term runs; the first step is not timed.
    let epoch = cfg.asm_warmup_epochs;
    let dev = Device::Cpu;
    step(&cfg, &nets, &mut opt, &b, epoch, factor, &dev).expect("step");
    let t0 = Instant::now();
    for _ in 1..case.steps {
        step(&cfg, &nets, &mut opt, &b, epoch, factor, &dev).expect("step");
    }
    let per = t0.elapsed().as_secs_f64() / (case.steps - 1) as f64;
    println!("RESULT {per} {}", peak_rss_mib().unwrap_or(f64::NAN));
}

/// Times the parts of a full-SSC synthetic step (`--parts`): where the CDR cost goes.
fn parts() {
    use candle_core::{Module, Tensor};
    // `--parts voc-lite` splits the voc-lite step instead of the synthetic one.
    let voc_lite = std::env::args().any(|a| a == "voc-lite");
    let cfg = if voc_lite {
        CamTrainConfig::voc_lite()
    } else {
        synthetic(Variant::Full)
    };
    let tmp = std::env::temp_dir().join(format!("ssc-cam-step-{}", std::process::id()));
    let mut opts = TrainOptions::new(&tmp);
    if voc_lite {
        opts.backbone_weights = lite0_weights();
    }
    let nets = build_networks(&cfg, &opts).expect("networks");
    let b = batch(&cfg, 7);
    let (n, c) = (b.len, cfg.data.crop);
    let x = Tensor::from_slice(&b.images, (n, 3, c, c), &Device::Cpu).expect("x");
    let time = |what: &str, f: &dyn Fn()| {
        f();
        let t0 = Instant::now();
        for _ in 0..3 {
            f();
        }
        println!("{what:<40} {:>8.3} s", t0.elapsed().as_secs_f64() / 3.0);
    };
    let out = nets.net.forward_train(&x).expect("forward");
    let feats = out.features.detach();
    let (dec, _) = nets.decoder.as_ref().expect("decoder");
    let perc = nets.perceptual.as_ref().expect("perceptual");
    time("classifier forward + backward", &|| {
        let o = nets.net.forward_train(&x).expect("fwd");
        o.scores.sum_all().expect("sum").backward().expect("bwd");
    });
    time("decoder forward", &|| {
        dec.forward(&feats).expect("dec");
    });
    time("decoder forward + backward", &|| {
        let v = candle_core::Var::from_tensor(&feats).expect("var");
        let y = dec.forward(v.as_tensor()).expect("dec");
        y.sum_all().expect("sum").backward().expect("bwd");
    });
    let x_hat = dec.forward(&feats).expect("dec").detach();
    time("perceptual forward", &|| {
        perc.forward(&x_hat, &x).expect("perc");
    });
    time("perceptual forward + backward", &|| {
        let v = candle_core::Var::from_tensor(&x_hat).expect("var");
        perc.forward(v.as_tensor(), &x)
            .expect("perc")
            .backward()
            .expect("bwd");
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--parts") {
        parts();
        return;
    }
    let all = cases();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let name = &args[i + 1];
        let case = all.iter().find(|c| c.name == name).expect("known case");
        child(case);
        return;
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    let exe = std::env::current_exe().expect("bench executable");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "SSC classifier training step on the CPU ({threads} threads; each case its own process)"
    );
    println!(
        "{:<22} {:>6} {:>10} {:>14} {:>12}",
        "case", "batch", "s/step", "vs baseline", "peak RSS MiB"
    );
    let mut baseline = None;
    for case in all
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
    {
        let out = Command::new(&exe)
            .args(["--child", case.name])
            .output()
            .expect("child process");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
            eprintln!(
                "{}: failed\n{}",
                case.name,
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        };
        let mut it = line
            .split(' ')
            .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
        let (per, mib) = (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN));
        if case.name == "synthetic/baseline" {
            baseline = Some(per);
        }
        let ratio = match baseline {
            Some(b) if case.name.starts_with("synthetic/") => format!("{:.2}×", per / b),
            _ => "-".into(),
        };
        println!(
            "{:<22} {:>6} {:>10.3} {:>14} {:>12.0}",
            case.name,
            (case.cfg)().batch_size,
            per,
            ratio,
            mib
        );
        if case.name.starts_with("resnet50-512/") {
            let cfg = (case.cfg)();
            let peer = torch_step(&cfg, threads);
            if let Some(p) = peer {
                println!("{:<22} {:>6} {:>10.3}   (PyTorch, same run)", "", "", p);
            }
            BenchRow::new(
                &format!(
                    "one CPU training iteration, ResNet-50 {0}×{0} batch {1}, {2}",
                    cfg.data.crop,
                    cfg.batch_size,
                    cfg.variant.name()
                ),
                per,
                "PyTorch (scripts/peers/torch_step.py)",
                peer,
                threads,
            )
            .record();
        }
    }
}

/// The same iteration in PyTorch (`scripts/peers/torch_step.py`), seconds per step, when
/// python3 imports torch.
fn torch_step(cfg: &CamTrainConfig, threads: usize) -> Option<f64> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peers/torch_step.py");
    let variant = match cfg.variant {
        Variant::Baseline => "baseline",
        Variant::Full => "full",
        _ => return None,
    };
    let out = Command::new("python3")
        .arg(script)
        .args(["--device", "cpu", "--variant", variant])
        .args(["--size", &cfg.data.crop.to_string()])
        .args(["--batch", &cfg.batch_size.to_string()])
        .args(["--classes", &cfg.net.num_classes.to_string()])
        .args([
            "--threads",
            &threads.to_string(),
            "--steps",
            "2",
            "--warmup",
            "1",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "PyTorch peer: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))?
        .split(' ')
        .next()?
        .parse()
        .ok()
}
