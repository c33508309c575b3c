//! IRN CLI glue: IR labels at scale from CAM files (resume, failure report, GT statistics),
//! and training + ONNX export of a tiny IRN checked against candle through ONNX Runtime.

use std::path::{Path, PathBuf};

use clap::Parser;
use ssc_core::cam::CamRecord;
use ssc_core::classes::ClassMap;
use ssc_core::mask::read_mask;
use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_tools::irn_cli::{
    IrLabelArgs, TrainIrnArgs, export_irn, ir_labels, run_ir_labels, train_irn,
};
use ssc_training::cam::data::open_split;
use ssc_training::irn::config::IrnTrainConfig;
use ssc_training::irn::trainer::{WEIGHTS_FILE, edge_logits, load_irn};

fn dataset(dir: &Path) -> usize {
    let cfg = SynthConfig {
        num_train: 6,
        num_val: 2,
        size: 48,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    write_dataset(&cfg, dir, &|| {}).unwrap();
    cfg.classes
}

/// Perfect CAMs from GT: one channel per class present, 1 on the class, 0 elsewhere.
fn write_gt_cams(data: &Path, cams: &Path) {
    std::fs::create_dir_all(cams).unwrap();
    let ds = open_split(data, "train").unwrap();
    for it in &ds.items {
        let gt = read_mask(it.gt.as_ref().unwrap(), &ClassMap::voc()).unwrap();
        let (w, h) = gt.size();
        let keys: Vec<i64> = ssc_core::mask::present_classes(&gt)
            .into_iter()
            .filter(|&c| c != 0 && c != 255)
            .map(|c| c as i64 - 1)
            .collect();
        let high_res: Vec<f32> = keys
            .iter()
            .flat_map(|&k| {
                gt.data
                    .iter()
                    .map(move |&v| (v as i64 == k + 1) as u8 as f32)
            })
            .collect();
        let rec = CamRecord {
            keys: keys.clone(),
            size: (h, w),
            cam: vec![0.0; keys.len() * h.div_ceil(4) * w.div_ceil(4)],
            high_res,
        };
        rec.write(&cams.join(format!("{}.safetensors", it.id)), &it.id)
            .unwrap();
    }
}

#[derive(Parser)]
struct LabelCli {
    #[command(flatten)]
    a: IrLabelArgs,
}

#[derive(Parser)]
struct TrainCli {
    #[command(flatten)]
    a: TrainIrnArgs,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn ir_labels_resume_stats_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let cams = tmp.path().join("cams");
    write_gt_cams(&data, &cams);
    let out = tmp.path().join("ir");
    let args = LabelCli::parse_from([
        "x",
        "--dataset",
        s(&data),
        "--cams",
        s(&cams),
        "--out",
        s(&out),
    ])
    .a;
    let first = run_ir_labels(&args, false).unwrap();
    assert_eq!(
        (first.written, first.skipped, first.failed.len()),
        (6, 0, 0)
    );
    let st = first.stats.unwrap();
    // Perfect CAMs: the CRF keeps nearly every confident pixel right; the band between the
    // thresholds is empty, so almost nothing is ignored.
    assert!(st.precision() > 0.9, "precision {}", st.precision());
    assert!(
        st.coverage() > 0.9 && st.coverage() <= 1.0,
        "coverage {}",
        st.coverage()
    );
    let ds = open_split(&data, "train").unwrap();
    let lab = read_mask(
        &out.join(format!("{}.png", ds.items[0].id)),
        &ClassMap::voc(),
    )
    .unwrap();
    assert!(lab.data.iter().all(|&v| v <= 3 || v == 255));

    // A second run skips everything and reports the same statistics.
    let again = run_ir_labels(&args, false).unwrap();
    assert_eq!((again.written, again.skipped), (0, 6));
    assert_eq!(again.stats, first.stats);

    // A missing CAM is reported by name and fails the command; the others still exist.
    let id = &ds.items[1].id;
    std::fs::remove_file(cams.join(format!("{id}.safetensors"))).unwrap();
    std::fs::remove_file(out.join(format!("{id}.png"))).unwrap();
    let r = run_ir_labels(&args, false).unwrap();
    assert_eq!(r.failed.len(), 1);
    assert_eq!(&r.failed[0].0, id);
    assert!(
        r.failed[0].1.contains(&format!("{id}.safetensors")),
        "{}",
        r.failed[0].1
    );
    assert!(ir_labels(args).is_err());
}

fn ort_available() -> bool {
    match ssc_inference::runtime::init(None) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP: ONNX Runtime not available: {e}");
            false
        }
    }
}

#[test]
fn train_then_export_matches_candle() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    // GT masks stand in for IR labels.
    let ir: PathBuf = data.join("SegmentationClass");
    let mut cfg = IrnTrainConfig::synthetic(classes);
    cfg.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    cfg.data.crop = 48;
    cfg.data.radius = 3;
    cfg.batch_size = 3;
    cfg.epochs = 1;
    let cfg_path = tmp.path().join("irn.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let run = tmp.path().join("run");
    let onnx = tmp.path().join("irn.onnx");
    let args = TrainCli::parse_from([
        "x",
        "--dataset",
        s(&data),
        "--out",
        s(&run),
        "--config",
        s(&cfg_path),
        "--ir-labels",
        s(&ir),
        "--export",
        s(&onnx),
    ])
    .a;
    train_irn(args).unwrap();
    assert!(run.join(WEIGHTS_FILE).is_file() && onnx.is_file());
    // The run folder and the checkpoint export the same network.
    let from_ckpt = tmp.path().join("ckpt.onnx");
    export_irn(&run, &from_ckpt).unwrap();
    assert!(std::fs::metadata(&from_ckpt).unwrap().len() > 1000);
    assert!(export_irn(tmp.path(), &tmp.path().join("no.onnx")).is_err());

    if !ort_available() {
        return;
    }
    let net = load_irn(&run.join(WEIGHTS_FILE), &cfg.net).unwrap();
    let mut model = ssc_inference::runtime::Model::open(
        &onnx,
        &ssc_inference::runtime::SessionConfig::default(),
    )
    .unwrap();
    let mut rng = ssc_core::rng::Rng::new(4);
    for shape in [[1, 3, 48, 48], [2, 3, 37, 52]] {
        let x: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| rng.normal() as f32)
            .collect();
        let want = edge_logits(&net, &x, shape).unwrap();
        let got = model.run(&x, shape).unwrap();
        assert_eq!(
            got[0].shape,
            [shape[0], 1, shape[2].div_ceil(4), shape[3].div_ceil(4)]
        );
        let err = got[0]
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{shape:?}: max |onnx − candle| = {err:e}");
        assert!(err <= 1e-4, "{shape:?}: max |onnx − candle| = {err}");
    }
}
