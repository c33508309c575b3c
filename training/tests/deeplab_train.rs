//! DeepLabV2 training on a tiny synthetic dataset (GT masks standing in for pseudo-masks):
//! kill/resume exactness, the loss falls and the best checkpoint is written, confidence
//! weights act as per-pixel loss weights, and ImageNet presets refuse to start without
//! weights.

use std::path::Path;
use std::sync::Arc;

use ssc_core::mask::{LabelMap, read_mask, write_grey_png};
use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_training::cam::data::open_split;
use ssc_training::checkpoint::var_tensors;
use ssc_training::deeplab::config::{CropMode, DeepLabTrainConfig};
use ssc_training::deeplab::data::{DeepLabTrainSet, ValSet};
use ssc_training::deeplab::trainer::{
    BEST_FILE, BEST_JSON, BestRecord, DeepLabTrainOptions, DeepLabTrainReport, WEIGHTS_FILE, train,
};

/// A synthetic dataset; its GT masks are the "pseudo-masks".
fn dataset(dir: &Path) -> usize {
    let cfg = SynthConfig {
        num_train: 8,
        num_val: 4,
        size: 40,
        classes: 2,
        ..SynthConfig::synthetic()
    };
    write_dataset(&cfg, dir, &|| {}).unwrap();
    cfg.classes
}

fn tiny(classes: usize) -> DeepLabTrainConfig {
    let mut c = DeepLabTrainConfig::synthetic(classes);
    c.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    c.data.crop = 32;
    c.data.crop_mode = CropMode::ScaleCrop { scale: (0.7, 1.1) };
    c.data.images_per_epoch = None;
    c.batch_size = 4;
    c.epochs = 2;
    c
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    classes: usize,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let classes = dataset(&root);
        Fixture {
            _tmp: tmp,
            root,
            classes,
        }
    }

    fn pseudo(&self) -> std::path::PathBuf {
        self.root.join("SegmentationClass")
    }

    fn sets(&self, cfg: &DeepLabTrainConfig) -> (Arc<DeepLabTrainSet>, ValSet) {
        let ds = open_split(&self.root, "train").unwrap();
        let set = DeepLabTrainSet::new(
            &ds,
            &self.pseudo(),
            cfg.confidence_dir.as_deref(),
            cfg.net.num_classes,
            &cfg.data,
        )
        .unwrap();
        let vds = open_split(&self.root, "val").unwrap();
        (Arc::new(set), ValSet::new(&vds, None, None).unwrap())
    }

    fn run(
        &self,
        cfg: &DeepLabTrainConfig,
        opts: &DeepLabTrainOptions,
    ) -> (Vec<(String, Vec<f32>)>, DeepLabTrainReport) {
        let (set, val) = self.sets(cfg);
        let (net, report) = train(cfg, set, &val, opts).unwrap();
        let mut w: Vec<_> = var_tensors(&net.vars)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        (w, report)
    }
}

#[test]
fn resume_after_kill_gives_identical_weights() {
    let f = Fixture::new();
    let cfg = tiny(f.classes);
    let out = f._tmp.path();

    let a = out.join("a");
    let (straight, rep) = f.run(&cfg, &DeepLabTrainOptions::new(&a));
    assert_eq!(rep.epoch_stats.len(), 2);
    assert!(a.join(WEIGHTS_FILE).is_file() && a.join("config.json").is_file());
    // BN running statistics are part of the weights (and of the exactness check).
    assert!(
        straight
            .iter()
            .any(|(k, _)| k == "backbone.bn1.running_mean")
    );

    let b = out.join("b");
    let mut opts = DeepLabTrainOptions::new(&b);
    opts.stop_after_epoch = Some(1);
    let (after_one, rep1) = f.run(&cfg, &opts);
    assert_ne!(after_one, straight, "one epoch must differ from two");
    assert!(
        !b.join(WEIGHTS_FILE).exists(),
        "no final weights when stopped early"
    );
    assert_eq!(rep1.best.unwrap().epoch, 1);
    let mut opts = DeepLabTrainOptions::new(&b);
    opts.resume = true;
    let (resumed, rep2) = f.run(&cfg, &opts);
    assert_eq!(
        resumed, straight,
        "resume must reproduce the uninterrupted run exactly"
    );
    assert_eq!(rep2.epoch_stats[0].epoch, 2);
    assert_eq!(rep2.epoch_stats[0], rep.epoch_stats[1]);
    assert_eq!(rep2.best, rep.best);
}

#[test]
fn training_lowers_the_loss_and_keeps_the_best_checkpoint() {
    let f = Fixture::new();
    let mut cfg = tiny(f.classes);
    cfg.epochs = 24;
    let out = f._tmp.path().join("o");
    let (_, report) = f.run(&cfg, &DeepLabTrainOptions::new(&out));
    let l: Vec<f64> = report.epoch_stats.iter().map(|s| s.loss).collect();
    eprintln!("epoch losses {l:?}");
    // Epoch means are noisy (each epoch draws new crops): compare 4-epoch means.
    let first = l[..4].iter().sum::<f64>() / 4.0;
    let last = l[l.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(
        last < 0.8 * first,
        "first {first:.4}, last {last:.4}: {l:?}"
    );
    let best: BestRecord =
        serde_json::from_slice(&std::fs::read(out.join(BEST_JSON)).unwrap()).unwrap();
    assert_eq!(Some(best), report.best);
    let top = report
        .epoch_stats
        .iter()
        .map(|s| s.val_miou)
        .fold(f64::MIN, f64::max);
    assert_eq!(
        best.miou, top,
        "best.json holds the highest validation mIoU"
    );
    assert!(best.miou > 0.0 && best.miou <= 1.0);
    assert!(out.join(BEST_FILE).is_file());
}

/// Writes a confidence mask of `value` everywhere for every training image.
fn constant_confidence(f: &Fixture, dir: &Path, value: u8) {
    std::fs::create_dir_all(dir).unwrap();
    let ds = open_split(&f.root, "train").unwrap();
    for it in &ds.items {
        let gt = read_mask(it.gt.as_ref().unwrap(), &ds.classes).unwrap();
        let m = LabelMap::filled(gt.width, gt.height, value);
        write_grey_png(&dir.join(format!("{}.png", it.id)), &m).unwrap();
    }
}

#[test]
fn confidence_masks_weigh_the_loss() {
    let f = Fixture::new();
    let mut cfg = tiny(f.classes);
    cfg.epochs = 1;
    let plain = f
        .run(&cfg, &DeepLabTrainOptions::new(f._tmp.path().join("p")))
        .1;

    let ones = f._tmp.path().join("conf1");
    constant_confidence(&f, &ones, 255);
    cfg.confidence_dir = Some(ones);
    let all = f
        .run(&cfg, &DeepLabTrainOptions::new(f._tmp.path().join("c1")))
        .1;
    assert_eq!(
        all.epoch_stats[0].loss, plain.epoch_stats[0].loss,
        "all-reliable masks change nothing"
    );

    let zeros = f._tmp.path().join("conf0");
    constant_confidence(&f, &zeros, 0);
    cfg.confidence_dir = Some(zeros);
    let none = f
        .run(&cfg, &DeepLabTrainOptions::new(f._tmp.path().join("c0")))
        .1;
    assert_eq!(none.epoch_stats[0].loss, 0.0, "weight-0 pixels are ignored");
    assert!(plain.epoch_stats[0].loss > 0.1);
}

#[test]
fn reference_preset_needs_backbone_weights_and_masks_must_exist() {
    let f = Fixture::new();
    let cfg = DeepLabTrainConfig::voc();
    let (set, val) = {
        let ds = open_split(&f.root, "train").unwrap();
        let set = DeepLabTrainSet::new(&ds, &f.pseudo(), None, 3, &cfg.data).unwrap();
        let vds = open_split(&f.root, "val").unwrap();
        (Arc::new(set), ValSet::new(&vds, None, None).unwrap())
    };
    let err = train(
        &cfg,
        set,
        &val,
        &DeepLabTrainOptions::new(f._tmp.path().join("o")),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("--backbone-weights"), "{err}");

    let ds = open_split(&f.root, "train").unwrap();
    let missing = f._tmp.path().join("nowhere");
    let err = DeepLabTrainSet::new(&ds, &missing, None, 3, &cfg.data)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowhere") && err.contains("pseudo-mask missing"),
        "{err}"
    );
}
