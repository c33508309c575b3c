//! Per-image multi-scale CAM generation (§3.2) with ONNX Runtime, split into its steps
//! (decode, resize + normalise, inference, fuse, write), on a real VOC image (a synthetic
//! 500×375 JPEG when the samples are absent). Network: ResNet-50 OS16 + DRS, 20 classes,
//! random weights, exported to ONNX.
//!
//! Ratio: the candle forward of the same network (`ssc_models::cam::CamNet`, same weights) on
//! the scale-1.0 image/flip pair against the ort run of that pair, measured in this run.
//! `SSC_BENCH_REPS` sets the repetitions of the per-image timing (default 2).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ssc_core::rng::Rng;
use ssc_inference::cam::{self, CamConfig, Normalizer};
use ssc_inference::runtime::{self, Model, SessionConfig};
use ssc_models::cam::CamNet;
use ssc_models::config::{CamNetConfig, ResNetConfig};
use ssc_models::onnx::{Weights, export_cam};

/// Every parameter of the CAM network (torchvision names), He-normal convs, sane BN stats.
fn random_params(
    cfg: &ResNetConfig,
    classes: usize,
    rng: &mut Rng,
) -> Vec<(String, Vec<f32>, Vec<usize>)> {
    let mut out = Vec::new();
    let conv = |out: &mut Vec<_>, rng: &mut Rng, name: &str, o: usize, i: usize, k: usize| {
        let std = (2.0 / (i * k * k) as f64).sqrt();
        let v = (0..o * i * k * k)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        out.push((format!("{name}.weight"), v, vec![o, i, k, k]));
    };
    let bn = |out: &mut Vec<_>, rng: &mut Rng, name: &str, c: usize| {
        for (suffix, lo, hi) in [
            ("weight", 0.5, 1.5),
            ("bias", -0.2, 0.2),
            ("running_mean", -0.2, 0.2),
            ("running_var", 0.5, 2.0),
        ] {
            let v = (0..c).map(|_| rng.uniform(lo, hi) as f32).collect();
            out.push((format!("{name}.{suffix}"), v, vec![c]));
        }
    };
    conv(&mut out, rng, "conv1", cfg.base_width, 3, 7);
    bn(&mut out, rng, "bn1", cfg.base_width);
    let mut in_c = cfg.base_width;
    for l in 0..4 {
        let planes = cfg.base_width << l;
        let oc = cfg.out_channels(l);
        for b in 0..cfg.blocks[l] {
            let p = format!("layer{}.{b}", l + 1);
            conv(&mut out, rng, &format!("{p}.conv1"), planes, in_c, 1);
            conv(&mut out, rng, &format!("{p}.conv2"), planes, planes, 3);
            conv(&mut out, rng, &format!("{p}.conv3"), oc, planes, 1);
            bn(&mut out, rng, &format!("{p}.bn1"), planes);
            bn(&mut out, rng, &format!("{p}.bn2"), planes);
            bn(&mut out, rng, &format!("{p}.bn3"), oc);
            if b == 0 {
                conv(&mut out, rng, &format!("{p}.downsample.0"), oc, in_c, 1);
                bn(&mut out, rng, &format!("{p}.downsample.1"), oc);
            }
            in_c = oc;
        }
    }
    let v = (0..classes * in_c)
        .map(|_| (rng.normal() * 0.02) as f32)
        .collect();
    out.push(("classifier.weight".into(), v, vec![classes, in_c, 1, 1]));
    out
}

fn image_path(tmp: &std::path::Path) -> PathBuf {
    if let Some(dir) = ssc_core::fixtures::voc_samples(env!("CARGO_MANIFEST_DIR")) {
        let mut jpgs: Vec<PathBuf> = std::fs::read_dir(dir.join("JPEGImages"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        jpgs.sort();
        if let Some(p) = jpgs.into_iter().next() {
            return p;
        }
    }
    println!("(VOC samples absent: using a synthetic 500×375 JPEG)");
    let img = image::RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8])
    });
    let p = tmp.join("synthetic.jpg");
    ssc_core::imageio::write_jpeg_rgb(&p, &img, 90).expect("write JPEG");
    p
}

fn main() {
    if let Err(e) = runtime::init(None) {
        println!("SKIP: {e}");
        return;
    }
    let reps: usize = std::env::var("SSC_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let net_cfg = CamNetConfig::voc();
    let params = random_params(
        net_cfg.backbone.as_resnet().expect("a ResNet"),
        net_cfg.num_classes,
        &mut Rng::new(5),
    );
    let mut w = Weights::new();
    for (n, v, s) in &params {
        w.insert(n.clone(), v.clone(), s.clone());
    }
    let bytes = export_cam(
        &w,
        &net_cfg.backbone,
        net_cfg.num_classes,
        net_cfg.drs_delta as f32,
    )
    .expect("export");
    let mut model =
        Model::from_bytes(&bytes, "cam.onnx", &SessionConfig::default()).expect("session");
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = image_path(tmp.path());
    let norm = Normalizer::of(model.info()).expect("normaliser");
    let cfg = CamConfig::default();
    let labels = {
        let mut l = vec![0u8; net_cfg.num_classes];
        l[14] = 1;
        l
    };

    // Per-image steps; the first run warms up and is not counted.
    let mut steps = [Duration::ZERO; 5];
    let mut size = (0, 0);
    for rep in 0..=reps {
        let t0 = Instant::now();
        let img = ssc_core::imageio::read_rgb(&path).expect("decode");
        let t1 = Instant::now();
        let prep = cam::prepare(&img, &cfg.scales, &norm).expect("prepare");
        let t2 = Instant::now();
        let outs = cam::infer(&mut model, &prep).expect("infer");
        let t3 = Instant::now();
        let rec = cam::finish(&outs, prep.size, Some(&labels), &cfg).expect("fuse");
        let t4 = Instant::now();
        rec.write(&tmp.path().join("out.safetensors"), "bench")
            .expect("write");
        let t5 = Instant::now();
        size = prep.size;
        if rep > 0 {
            for (s, d) in steps
                .iter_mut()
                .zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4])
            {
                *s += d;
            }
        }
    }
    let total: Duration = steps.iter().sum();
    println!(
        "ort CAM per image ({}×{} {}, scales {:?}, 1 session, 1 intra-op thread), mean of {reps}: {:.3} s",
        size.1,
        size.0,
        path.file_name().unwrap_or_default().to_string_lossy(),
        cfg.scales,
        total.as_secs_f64() / reps as f64
    );
    for (name, d) in ["decode", "resize+normalise", "inference", "fuse", "write"]
        .iter()
        .zip(steps)
    {
        println!(
            "  {name:<17} {:>8.1} ms  {:>5.1} %",
            1e3 * d.as_secs_f64() / reps as f64,
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }

    // Network forward of the scale-1.0 pair: ort against candle, same weights.
    let img = ssc_core::imageio::read_rgb(&path).expect("decode");
    let (h, w_) = (img.height() as usize, img.width() as usize);
    let pair = norm.flip_pair(&img);
    model.run(&pair, [2, 3, h, w_]).expect("warm-up");
    let t = Instant::now();
    let ort_out = model.run(&pair, [2, 3, h, w_]).expect("ort run");
    let t_ort = t.elapsed().as_secs_f64();
    let map: HashMap<String, Tensor> = params
        .into_iter()
        .map(|(n, v, s)| (n, Tensor::from_vec(v, s, &Device::Cpu).expect("tensor")))
        .collect();
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let net = CamNet::new(&net_cfg, vb).expect("candle CamNet");
    let x = Tensor::from_vec(pair, (2, 3, h, w_), &Device::Cpu).expect("input");
    let t = Instant::now();
    let c_out = net.forward_cam(&x).expect("candle forward");
    let c_out: Vec<f32> = c_out
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .expect("to vec");
    let t_candle = t.elapsed().as_secs_f64();
    let max_diff = c_out
        .iter()
        .zip(&ort_out[0].data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("CAM network forward, pair 2×3×{h}×{w_} (max |candle − ort| {max_diff:.2e}):");
    println!("  ours (ort, 1 intra-op thread): {t_ort:.3} s");
    println!("  baseline (candle CPU):         {t_candle:.3} s");
    println!("  ratio candle/ort: {:.2}", t_candle / t_ort);
}
