//! CAM generation per image (§3.2: scales 1.0, 0.5, 1.5, 2.0, each with its flip) with ONNX
//! Runtime for the two backbones: EfficientNet-Lite0 at output stride 16 against ResNet-50 at
//! output stride 16 (the reference), both with DRS and a 20-class classifier, measured in the
//! same run on the same 500×375 image (a VOC photograph when the samples are present).
//! Weights are random (timing does not depend on them). Prints the median of
//! `SSC_BENCH_REPS` (default 3) per-image times and the ratio.

use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::VarMap;
use ssc_core::rng::Rng;
use ssc_inference::cam::{self, CamConfig, Normalizer};
use ssc_inference::runtime::{self, Model, SessionConfig};
use ssc_models::cam::CamNet;
use ssc_models::config::{BackboneConfig, CamNetConfig, EfficientNetConfig, ResNetConfig};
use ssc_models::init::SeededInit;
use ssc_models::onnx::{Weights, export_cam};

/// Every parameter of a CAM network on `backbone` with random (seeded) values.
fn random_weights(backbone: BackboneConfig) -> (Weights, CamNetConfig) {
    let cfg = CamNetConfig {
        backbone,
        ..CamNetConfig::voc()
    };
    let vm = VarMap::new();
    CamNet::new(
        &cfg,
        SeededInit::var_builder(&vm, 3, DType::F32, &Device::Cpu),
    )
    .expect("build");
    let mut w = Weights::new();
    let mut rng = Rng::new(9);
    for (name, var) in vm.data().lock().expect("lock").iter() {
        let t = var.as_tensor();
        let mut v: Vec<f32> = t.flatten_all().and_then(|t| t.to_vec1()).expect("values");
        if name.ends_with("running_var") {
            v.iter_mut().for_each(|x| *x = rng.uniform(0.5, 2.0) as f32);
        }
        w.insert(name.clone(), v, t.dims().to_vec());
    }
    (w, cfg)
}

fn image() -> image::RgbImage {
    if let Some(dir) = ssc_core::fixtures::voc_samples(env!("CARGO_MANIFEST_DIR")) {
        let p = dir.join("JPEGImages/2011_000006.jpg");
        if let Ok(img) = ssc_core::imageio::read_rgb(&p) {
            return img;
        }
    }
    println!("(VOC samples absent: using a synthetic 500×375 image)");
    image::RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8])
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds per image of prepare + infer + fuse.
fn per_image(model: &mut Model, img: &image::RgbImage, reps: usize) -> f64 {
    let norm = Normalizer::of(model.info()).expect("normaliser");
    let cfg = CamConfig::default();
    let mut labels = vec![0u8; 20];
    labels[11] = 1;
    let mut times = Vec::new();
    for rep in 0..=reps {
        let t = Instant::now();
        let prep = cam::prepare(img, &cfg.scales, &norm).expect("prepare");
        let outs = cam::infer(model, &prep).expect("infer");
        let rec = cam::finish(&outs, prep.size, Some(&labels), &cfg).expect("fuse");
        std::hint::black_box(rec);
        if rep > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    median(times)
}

fn main() {
    if let Err(e) = runtime::init(None) {
        println!("SKIP: {e}");
        return;
    }
    let reps: usize = std::env::var("SSC_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let img = image();
    let sc = SessionConfig::default();
    let mut times = Vec::new();
    for (name, backbone) in [
        (
            "EfficientNet-Lite0 OS16",
            BackboneConfig::from(
                EfficientNetConfig::lite(0)
                    .expect("lite0")
                    .with_output_stride(16),
            ),
        ),
        ("ResNet-50 OS16", ResNetConfig::resnet50_os16().into()),
    ] {
        let (w, cfg) = random_weights(backbone);
        let bytes =
            export_cam(&w, &cfg.backbone, cfg.num_classes, cfg.drs_delta as f32).expect("export");
        let mut model = Model::from_bytes(&bytes, "cam.onnx", &sc).expect("session");
        let t = per_image(&mut model, &img, reps);
        println!(
            "{name:<24} {t:.3} s per {}×{} image (4 scales × flip, 1 intra-op thread, median of {reps})",
            img.width(),
            img.height()
        );
        times.push(t);
    }
    println!("ratio ResNet-50 / Lite0: {:.2}", times[1] / times[0]);
}
