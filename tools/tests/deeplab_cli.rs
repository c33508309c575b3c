//! `ssc-train deeplab` on a tiny synthetic benchmark (GT masks as pseudo-masks): trains,
//! keeps the best checkpoint, resumes a finished run, refuses an ImageNet preset without
//! weights, and exports the best checkpoint to ONNX whose scores match the candle network
//! (≤ 1e-4) through ONNX Runtime.

use std::path::Path;
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use ssc_inference::runtime::{Model, SessionConfig, find_library};
use ssc_training::deeplab::config::DeepLabTrainConfig;
use ssc_training::deeplab::trainer::{
    BEST_FILE, BEST_JSON, BestRecord, WEIGHTS_FILE, load_deeplab,
};

const SYNTH: &str = env!("CARGO_BIN_EXE_ssc-synth");
const TRAIN: &str = env!("CARGO_BIN_EXE_ssc-train");

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn train(root: &Path, out: &Path, extra: &[&str]) -> Output {
    let pseudo = root.join("SegmentationClass");
    let mut args = vec![
        "deeplab",
        "--data",
        root.to_str().unwrap(),
        "--split",
        "train",
        "--pseudo",
        pseudo.to_str().unwrap(),
        "--val-split",
        "val",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(TRAIN, &args)
}

#[test]
fn deeplab_trains_exports_and_matches_onnx() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("synth");
    let o = run(
        SYNTH,
        &[
            "generate",
            "--out",
            root.to_str().unwrap(),
            "--num-images",
            "16",
            "--num-val",
            "8",
            "--size",
            "48",
            "--classes",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The synthetic preset shrunk further for a test.
    let mut cfg = DeepLabTrainConfig::synthetic(3);
    cfg.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    cfg.data.crop = 32;
    cfg.batch_size = 4;
    let cfg_path = tmp.path().join("tiny.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();

    // An ImageNet preset without weights fails before training.
    let out = tmp.path().join("run");
    let o = train(&root, &out, &["--preset", "voc"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--backbone-weights"), "{}", text(&o));

    let onnx = tmp.path().join("deeplab.onnx");
    let o = train(
        &root,
        &out,
        &[
            "--config",
            cfg_path.to_str().unwrap(),
            "--seed",
            "5",
            "--epochs",
            "2",
            "--export",
            onnx.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("epoch 2: loss") && t.contains("val mIoU"), "{t}");
    for f in [WEIGHTS_FILE, BEST_FILE, BEST_JSON, "config.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let best: BestRecord =
        serde_json::from_slice(&std::fs::read(out.join(BEST_JSON)).unwrap()).unwrap();
    assert!((1..=2).contains(&best.epoch));
    let saved: DeepLabTrainConfig =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved.seed, 5);

    // Resuming a finished run trains nothing more and succeeds.
    let before = std::fs::read(out.join(BEST_JSON)).unwrap();
    let o = train(&root, &out, &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(out.join(BEST_JSON)).unwrap(), before);

    // ONNX of the best checkpoint vs the candle network, both on the same input.
    assert!(onnx.is_file());
    if find_library(None).is_err() {
        eprintln!("SKIP: ONNX Runtime library not found (run scripts/setup-ort.sh)");
        return;
    }
    let net = load_deeplab(&out.join(BEST_FILE), &saved.net).unwrap();
    let (h, w) = (37, 50);
    let mut rng = ssc_core::rng::Rng::new(9);
    let x: Vec<f32> = (0..2 * 3 * h * w).map(|_| rng.normal() as f32).collect();
    let xt = Tensor::from_slice(&x, (2, 3, h, w), &Device::Cpu).unwrap();
    let want = net.forward_both(&xt, false).unwrap();
    let mut model = Model::open(&onnx, &SessionConfig::default()).unwrap();
    assert_eq!(model.info().arch, "deeplab");
    let outs = model.run(&x, [2, 3, h, w]).unwrap();
    for (name, t) in [("pre_logits", &want.pre_logits), ("logits", &want.logits)] {
        let got = outs.iter().find(|o| o.name == name).unwrap();
        assert_eq!(got.shape, t.dims());
        let t: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let err = got
            .data
            .iter()
            .zip(&t)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{name}: max |onnx − candle| = {err:e}");
        assert!(err <= 1e-4, "{name}: max |onnx − candle| = {err}");
    }
}
