//! SSC classifier training on a tiny synthetic dataset: an uninterrupted 2-epoch run and a
//! run killed after epoch 1 and resumed give bit-identical weights; the loss terms of each
//! variant are switched as configured; ImageNet presets refuse to start without weights.

use std::path::Path;
use std::sync::Arc;

use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_training::cam::config::{CamTrainConfig, Variant};
use ssc_training::cam::data::{TrainSet, open_split};
use ssc_training::cam::generate::evaluate_seeds;
use ssc_training::cam::trainer::{TrainOptions, build_networks, train};
use ssc_training::checkpoint::var_tensors;

fn dataset(dir: &Path) -> usize {
    let cfg = SynthConfig {
        num_train: 8,
        num_val: 2,
        size: 40,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    write_dataset(&cfg, dir, &|| {}).unwrap();
    cfg.classes
}

fn tiny(classes: usize, variant: Variant) -> CamTrainConfig {
    let mut c = CamTrainConfig::synthetic(classes);
    c.variant = variant;
    c.net.backbone.base_width = 4;
    c.decoder.widths = [4, 4, 4, 4, 4];
    c.vgg = ssc_models::config::VggConfig::vgg19_narrow(32);
    c.perceptual = ssc_models::config::PerceptualConfig::code(&c.vgg);
    c.data.crop = 32;
    c.data.resize_long = (28, 44);
    c.batch_size = 4;
    c.epochs = 2;
    c.asm_warmup_epochs = 1;
    c.eval_scales = vec![1.0, 0.5];
    c
}

fn weights(
    out: &Path,
    classes: usize,
    cfg: &CamTrainConfig,
    set: Arc<TrainSet>,
    stop: Option<usize>,
    resume: bool,
) -> Vec<(String, Vec<f32>)> {
    let mut opts = TrainOptions::new(out);
    opts.stop_after_epoch = stop;
    opts.resume = resume;
    let _ = classes;
    let (nets, _) = train(cfg, set, &opts).unwrap();
    let mut w: Vec<_> = var_tensors(&nets.net_vars)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    if let Some((_, vm)) = &nets.decoder {
        w.extend(var_tensors(vm).unwrap().into_iter().map(|(k, t)| {
            (
                format!("dec.{k}"),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        }));
    }
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn resume_after_kill_gives_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let cfg = tiny(classes, Variant::Full);
    let set = Arc::new(TrainSet::new(&ds, &data, &cfg.data).unwrap());

    let straight = weights(
        &tmp.path().join("a"),
        classes,
        &cfg,
        set.clone(),
        None,
        false,
    );
    // "killed" after epoch 1, then resumed in a fresh trainer
    let b = tmp.path().join("b");
    let after_one = weights(&b, classes, &cfg, set.clone(), Some(1), false);
    assert_ne!(after_one, straight, "one epoch must differ from two");
    let resumed = weights(&b, classes, &cfg, set, None, true);
    assert_eq!(resumed.len(), straight.len());
    for ((na, a), (nb, b)) in straight.iter().zip(&resumed) {
        assert_eq!(na, nb);
        assert_eq!(a, b, "parameter {na} differs after resume");
    }
    assert!(b.join("cam_net.safetensors").is_file());
    assert!(b.join("checkpoint/latest").is_file());
}

#[test]
fn variants_switch_loss_terms_and_eval_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    for variant in [Variant::Baseline, Variant::DrsCdrAsmNoras] {
        let cfg = tiny(classes, variant);
        let set = Arc::new(TrainSet::new(&ds, &data, &cfg.data).unwrap());
        let out = tmp.path().join(variant.name());
        let (nets, rep) = train(&cfg, set, &TrainOptions::new(&out)).unwrap();
        assert_eq!(rep.epochs, 2);
        let l = &rep.epoch_losses;
        assert!(l.iter().all(|t| t.cls > 0.0 && t.cls.is_finite()));
        if variant == Variant::Baseline {
            assert!(l.iter().all(|t| t.perceptual == 0.0 && t.align == 0.0));
            assert!(nets.decoder.is_none());
        } else {
            assert!(l.iter().all(|t| t.perceptual > 0.0));
            // alignment only after the warm-up epoch
            assert_eq!(l[0].align, 0.0);
            assert!(l[1].align > 0.0);
        }
        let val = open_split(&data, "val").unwrap();
        let thr = ssc_core::cam::Sweep::range(0.05, 0.6, 0.05);
        let ev = evaluate_seeds(
            &nets.net,
            &val,
            &cfg.eval_scales,
            &thr,
            None,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert_eq!(ev.images, 2);
        assert_eq!(ev.points.len(), thr.len());
        assert!((0.0..=1.0).contains(&ev.best.miou));
    }
}

#[test]
fn imagenet_presets_need_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let err = match build_networks(&CamTrainConfig::voc(), &TrainOptions::new(tmp.path())) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("voc preset built without weights"),
    };
    assert!(err.contains("--backbone-weights"), "{err}");
}

#[test]
fn missing_superpixels_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let mut cfg = tiny(classes, Variant::Full);
    cfg.data.compute_missing_superpixels = false;
    let err = TrainSet::new(&ds, &data, &cfg.data)
        .unwrap_err()
        .to_string();
    assert!(err.contains("superpixels") && err.contains(".png"), "{err}");
}
