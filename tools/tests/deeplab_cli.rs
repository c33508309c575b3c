//! `ssc-train deeplab` on a tiny synthetic benchmark (GT masks as pseudo-masks): trains,
//! keeps the best checkpoint, resumes a finished run, refuses an ImageNet preset without
//! weights, and exports the best checkpoint to ONNX whose scores match the candle network
//! (≤ 1e-4) through ONNX Runtime.

mod cli_common;

use std::path::Path;
use std::process::Output;

use cli_common::{TRAIN, run, synth, text};

use candle_core::{Device, Tensor};
use ssc_inference::runtime::{Model, SessionConfig, find_library};
use ssc_training::deeplab::config::DeepLabTrainConfig;
use ssc_training::deeplab::trainer::{
    BEST_FILE, BEST_JSON, BestRecord, WEIGHTS_FILE, load_deeplab,
};

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
    synth(&root, 16, 8, 48, 3);
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

/// Writes a correction as `ssc-serve --corrections` stores it (palette PNG + sidecar).
fn write_correction(dir: &Path, task: u64, image: &str, gt: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let classes = ssc_core::classes::ClassMap::custom(
        ["background", "a", "b", "c"].map(String::from).to_vec(),
    );
    let map = ssc_core::mask::read_mask(gt, &classes).unwrap();
    ssc_core::mask::write_palette_png(&dir.join(format!("task-{task}.png")), &map, &classes)
        .unwrap();
    let rec = serde_json::json!({"task": task, "annotation": task * 10, "image": image});
    std::fs::write(dir.join(format!("task-{task}.json")), rec.to_string()).unwrap();
}

/// `--init` starts from a trained network (checked tensor by tensor) and `--corrections`
/// puts annotators' label maps in place of the pseudo-masks of the images they name; a
/// correction of a val image is left out, never trained on.
#[test]
fn fine_tunes_from_init_on_corrections() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("synth");
    synth(&root, 8, 4, 40, 3);
    let ids = |split: &str| -> Vec<String> {
        std::fs::read_to_string(root.join(format!("ImageSets/Segmentation/{split}.txt")))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (train_ids, val_ids) = (ids("train"), ids("val"));
    let mut cfg = DeepLabTrainConfig::synthetic(3);
    cfg.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    cfg.data.crop = 32;
    cfg.batch_size = 4;
    let cfg_path = tmp.path().join("tiny.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    // pseudo-masks that say "background" everywhere
    let pseudo = tmp.path().join("pseudo");
    std::fs::create_dir_all(&pseudo).unwrap();
    for id in &train_ids {
        let gt = ssc_core::mask::read_mask(
            &root.join(format!("SegmentationClass/{id}.png")),
            &ssc_core::classes::ClassMap::custom(
                ["background", "a", "b", "c"].map(String::from).to_vec(),
            ),
        )
        .unwrap();
        let blank = ssc_core::mask::LabelMap::filled(gt.width, gt.height, 0);
        ssc_core::mask::write_grey_png(&pseudo.join(format!("{id}.png")), &blank).unwrap();
    }
    let fit_with = |config: &Path, out: &Path, extra: &[&str]| -> Output {
        let mut args = vec![
            "deeplab",
            "--data",
            root.to_str().unwrap(),
            "--pseudo",
            pseudo.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(TRAIN, &args)
    };
    let fit = |out: &Path, extra: &[&str]| fit_with(&cfg_path, out, extra);
    let first = tmp.path().join("first");
    let o = fit(&first, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let init = first.join(BEST_FILE);

    let corr = tmp.path().join("corrections");
    let gt = |id: &str| root.join(format!("SegmentationClass/{id}.png"));
    // an upload reference (Label Studio's 8-hex prefix) and a local-files one
    write_correction(
        &corr,
        1,
        &format!("/data/upload/1/0a1b2c3d-{}.png", train_ids[0]),
        &gt(&train_ids[0]),
    );
    write_correction(
        &corr,
        2,
        &format!("/data/local-files/?d=JPEGImages%2F{}.png", train_ids[3]),
        &gt(&train_ids[3]),
    );
    write_correction(
        &corr,
        3,
        &format!("/data/local-files/?d={}.png", val_ids[0]),
        &gt(&val_ids[0]),
    );

    let weights = |out: &Path| std::fs::read(out.join(WEIGHTS_FILE)).unwrap();
    let both = tmp.path().join("both");
    let init_s = init.to_str().unwrap();
    let corr_s = corr.to_str().unwrap();
    let o = fit(&both, &["--init", init_s, "--corrections", corr_s]);
    assert!(o.status.success(), "{}", text(&o));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(both.join("corrections.json")).unwrap()).unwrap();
    assert_eq!(
        rec["used"],
        serde_json::json!([train_ids[0].clone(), train_ids[3].clone()])
    );
    let left = rec["left_out"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].as_str().unwrap().contains(&val_ids[0]), "{rec}");
    let saved: DeepLabTrainConfig =
        serde_json::from_slice(&std::fs::read(both.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved.corrections_dir.as_deref(), Some(corr.as_path()));

    // the same run again is bit-identical; without the corrections, or without the init,
    // it is not
    let again = tmp.path().join("again");
    assert!(
        fit(&again, &["--init", init_s, "--corrections", corr_s])
            .status
            .success()
    );
    assert_eq!(weights(&both), weights(&again));
    let no_corr = tmp.path().join("no-corr");
    assert!(fit(&no_corr, &["--init", init_s]).status.success());
    assert_ne!(
        weights(&both),
        weights(&no_corr),
        "corrections changed nothing"
    );
    let no_init = tmp.path().join("no-init");
    assert!(fit(&no_init, &["--corrections", corr_s]).status.success());
    assert_ne!(weights(&both), weights(&no_init), "--init changed nothing");

    // weights of another network are refused by name; corrections naming no training image
    // are an error
    let mut wide = cfg.clone();
    wide.net.backbone.as_resnet_mut().unwrap().base_width = 8;
    let wide_path = tmp.path().join("wide.json");
    std::fs::write(&wide_path, serde_json::to_vec(&wide).unwrap()).unwrap();
    let o = fit_with(&wide_path, &tmp.path().join("wide"), &["--init", init_s]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("misshaped") && text(&o).contains("best.safetensors"),
        "{}",
        text(&o)
    );
    let only_val = tmp.path().join("only-val");
    write_correction(
        &only_val,
        3,
        &format!("{}.png", val_ids[0]),
        &gt(&val_ids[0]),
    );
    let o = fit(
        &tmp.path().join("val-run"),
        &["--corrections", only_val.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("names a training image"), "{}", text(&o));
}
