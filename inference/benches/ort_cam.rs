//! CAM network (ResNet-50 OS16 + DRS, 20 classes, random weights) exported to ONNX and run
//! through ONNX Runtime on an image/flip pair at VOC size (2×3×375×500), as §3.2 does per
//! scale. Ours: the default session (1 intra-op thread, one session per worker); baseline:
//! the same session with 2 intra-op threads. Prints both medians and the ratio.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use ssc_core::rng::Rng;
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_models::config::ResNetConfig;
use ssc_models::onnx::{Weights, export_cam};

fn median_secs(model: &mut Model, x: &[f32], shape: [usize; 4], reps: usize) -> f64 {
    model.run(x, shape).expect("warm-up run");
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            model.run(x, shape).expect("run");
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    if !common::ort_available() {
        return;
    }
    let cfg = ResNetConfig::resnet50_os16();
    let classes = 20;
    let mut rng = Rng::new(3);
    let mut w = Weights::new();
    common::random_resnet(&cfg, &mut rng, &mut w);
    let cin = cfg.out_channels(3);
    w.insert(
        "classifier.weight",
        common::randn(&mut rng, classes * cin, 0.02),
        vec![classes, cin, 1, 1],
    );
    let s = Instant::now();
    let bytes = export_cam(&w, &cfg, classes, 0.55).expect("export");
    println!(
        "export ResNet-50 CAM: {:.2} s, {:.1} MB",
        s.elapsed().as_secs_f64(),
        bytes.len() as f64 / 1e6
    );

    let shape = [2, 3, 375, 500];
    let x = common::randn(&mut rng, shape.iter().product(), 1.0);
    let reps = 5;
    let ours_cfg = SessionConfig::default();
    let base_cfg = SessionConfig {
        intra_threads: 2,
        ..SessionConfig::default()
    };
    let mut ours = Model::from_bytes(&bytes, "cam.onnx", &ours_cfg).expect("session");
    let mut base = Model::from_bytes(&bytes, "cam.onnx", &base_cfg).expect("session");
    let t_ours = median_secs(&mut ours, &x, shape, reps);
    let t_base = median_secs(&mut base, &x, shape, reps);
    println!("CAM pair {shape:?}, median of {reps}:");
    println!("  ours     (1 intra-op thread):  {:.3} s", t_ours);
    println!("  baseline (2 intra-op threads): {:.3} s", t_base);
    println!("  ratio baseline/ours: {:.2}", t_base / t_ours);
}
