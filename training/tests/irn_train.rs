//! IRN training on a tiny synthetic dataset (GT masks standing in for IR labels): an
//! uninterrupted 2-epoch run and a run killed after epoch 1 and resumed give bit-identical
//! edge weights; presets that need ImageNet weights refuse to start without them; missing IR
//! labels are reported by file.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_training::cam::data::open_split;
use ssc_training::checkpoint::var_tensors;
use ssc_training::irn::config::IrnTrainConfig;
use ssc_training::irn::data::IrnTrainSet;
use ssc_training::irn::trainer::{IrnTrainOptions, WEIGHTS_FILE, train};

/// A synthetic dataset whose GT masks are copied to `ir_labels/` (with their ignore band).
fn dataset(dir: &Path) -> usize {
    let cfg = SynthConfig {
        num_train: 8,
        num_val: 2,
        size: 40,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    write_dataset(&cfg, dir, &|| {}).unwrap();
    let gt = dir.join("SegmentationClass");
    let ir = dir.join("ir_labels");
    std::fs::create_dir_all(&ir).unwrap();
    for e in std::fs::read_dir(&gt).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ir.join(e.file_name())).unwrap();
    }
    cfg.classes
}

fn tiny(classes: usize) -> IrnTrainConfig {
    let mut c = IrnTrainConfig::synthetic(classes);
    c.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    c.data.crop = 48;
    c.data.radius = 3;
    c.batch_size = 4;
    c.epochs = 2;
    // GT masks stand in for IR labels here: keep every one of them.
    c.data.max_fg_fraction = None;
    c
}

fn edge_weights(
    cfg: &IrnTrainConfig,
    set: Arc<IrnTrainSet>,
    opts: &IrnTrainOptions,
) -> Vec<(String, Vec<f32>)> {
    let (nets, report) = train(cfg, set, opts).unwrap();
    for l in &report.epoch_stats {
        assert!(l.total.is_finite() && l.total > 0.0, "{l:?}");
    }
    let mut w: Vec<_> = var_tensors(&nets.edge_vars)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn resume_after_kill_gives_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let cfg = tiny(classes);
    let set = Arc::new(IrnTrainSet::new(&ds, &data, &cfg).unwrap());

    let a = tmp.path().join("a");
    let straight = edge_weights(&cfg, set.clone(), &IrnTrainOptions::new(&a));
    assert!(a.join(WEIGHTS_FILE).is_file());
    assert!(a.join("config.json").is_file());

    let b = tmp.path().join("b");
    let mut opts = IrnTrainOptions::new(&b);
    opts.stop_after_epoch = Some(1);
    let after_one = edge_weights(&cfg, set.clone(), &opts);
    assert_ne!(after_one, straight, "one epoch must differ from two");
    assert!(
        !b.join(WEIGHTS_FILE).exists(),
        "no final weights when stopped early"
    );
    let mut opts = IrnTrainOptions::new(&b);
    opts.resume = true;
    let resumed = edge_weights(&cfg, set, &opts);
    assert_eq!(
        resumed, straight,
        "resume must reproduce the uninterrupted run exactly"
    );

    // The final file holds the whole network (frozen backbone + edge branch).
    let f = candle_core::safetensors::load(a.join(WEIGHTS_FILE), &Device::Cpu).unwrap();
    assert!(f.contains_key("backbone.conv1.weight"));
    assert!(f.contains_key("fc_edge6.bias"));
}

#[test]
fn reference_preset_needs_backbone_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let cfg = IrnTrainConfig::voc();
    let set = Arc::new(IrnTrainSet::new(&ds, &data, &cfg).unwrap());
    let err = train(&cfg, set, &IrnTrainOptions::new(tmp.path().join("o")))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--backbone-weights"), "{err}");
}

#[test]
fn missing_ir_label_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let victim = data
        .join("ir_labels")
        .join(format!("{}.png", ds.items[2].id));
    std::fs::remove_file(&victim).unwrap();
    let err = IrnTrainSet::new(&ds, &data, &tiny(classes))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&victim.display().to_string()), "{err}");
}

/// The edge branch learns: on the training images, the mean loss of the last epoch is well
/// below the first ones (GT masks as IR labels, random frozen backbone of the synthetic preset).
#[test]
fn training_lowers_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let mut cfg = tiny(classes);
    cfg.epochs = 30;
    cfg.batch_size = 2;
    let set = Arc::new(IrnTrainSet::new(&ds, &data, &cfg).unwrap());
    let (_, report) = train(&cfg, set, &IrnTrainOptions::new(tmp.path().join("o"))).unwrap();
    let l: Vec<f64> = report.epoch_stats.iter().map(|l| l.total).collect();
    eprintln!("epoch losses {l:?}");
    // Epoch means are noisy (each epoch draws new crops): compare 3-epoch means.
    let first = l[..3].iter().sum::<f64>() / 3.0;
    let last = l[l.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(
        last < 0.92 * first,
        "first {first:.4}, last {last:.4}: {l:?}"
    );
}

/// `data.max_fg_fraction` leaves out exactly the labels with too much foreground, unless that
/// would leave less than one batch.
#[test]
fn labels_with_too_much_foreground_are_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let flood = |n: usize| {
        for it in &ds.items[..n] {
            let p = data.join("ir_labels").join(format!("{}.png", it.id));
            let mut m = ssc_core::mask::read_mask(&p, &ssc_core::classes::ClassMap::voc()).unwrap();
            // Mostly foreground, a little ignore: ignore counts as not foreground.
            for (i, v) in m.data.iter_mut().enumerate() {
                *v = if i % 10 == 0 { 255 } else { 1 };
            }
            ssc_core::mask::write_grey_png(&p, &m).unwrap();
        }
    };
    flood(3);
    let mut cfg = tiny(classes);
    cfg.data.max_fg_fraction = Some(0.85);
    let set = IrnTrainSet::new(&ds, &data, &cfg).unwrap();
    let left: Vec<_> = ds.items[..3].iter().map(|it| it.id.clone()).collect();
    assert_eq!(set.left_out(), &left[..]);
    assert_eq!(set.len(), ds.len() - 3);
    // 90 % foreground passes a 0.95 limit.
    cfg.data.max_fg_fraction = Some(0.95);
    assert_eq!(IrnTrainSet::new(&ds, &data, &cfg).unwrap().len(), ds.len());

    // Fewer than one batch left: the filter steps aside (with a warning) rather than fail.
    flood(ds.len() - 2);
    cfg.data.max_fg_fraction = Some(0.85);
    let set = IrnTrainSet::new(&ds, &data, &cfg).unwrap();
    assert!(set.left_out().is_empty());
    assert_eq!(set.len(), ds.len());
}
