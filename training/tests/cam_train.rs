//! SSC classifier training on a tiny synthetic dataset: an uninterrupted 2-epoch run and a
//! run killed after epoch 1 and resumed give bit-identical weights (with the reference SGD and
//! with the network's Adam); batch-statistics BN is saved and used; the loss terms of each
//! variant are switched as configured; ImageNet presets refuse to start without weights.

use std::path::Path;
use std::sync::Arc;

use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_models::config::BnMode;
use ssc_training::cam::config::{CamTrainConfig, Variant};
use ssc_training::cam::data::{TrainSet, open_split};
use ssc_training::cam::generate::evaluate_seeds;
use ssc_training::cam::trainer::{TrainOptions, build_networks, train};
use ssc_training::checkpoint::var_tensors;
use ssc_training::optim::AdamConfig;

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
    c.net.backbone.as_resnet_mut().unwrap().base_width = 4;
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
    // The reference optimisers, and the from-scratch alternative (the network's own Adam
    // beside the decoder's, batch-statistics BN) whose state must not collide with them.
    let reference = tiny(classes, Variant::Full);
    let mut adam_bn = reference.clone();
    adam_bn.net_adam = Some(AdamConfig {
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 1e-4,
    });
    adam_bn.net.bn = BnMode::Batch;
    adam_bn.warmup_iters = 3;
    for (name, cfg) in [("sgd", reference), ("adam_bn", adam_bn)] {
        let set = Arc::new(TrainSet::new(&ds, &data, &cfg.data).unwrap());
        let dir = tmp.path().join(name);
        let straight = weights(&dir.join("a"), classes, &cfg, set.clone(), None, false);
        // "killed" after epoch 1, then resumed in a fresh trainer
        let b = dir.join("b");
        let after_one = weights(&b, classes, &cfg, set.clone(), Some(1), false);
        assert_ne!(
            after_one, straight,
            "{name}: one epoch must differ from two"
        );
        let resumed = weights(&b, classes, &cfg, set, None, true);
        assert_eq!(resumed.len(), straight.len());
        for ((na, a), (nb, b)) in straight.iter().zip(&resumed) {
            assert_eq!(na, nb);
            assert_eq!(a, b, "{name}: parameter {na} differs after resume");
        }
        assert!(b.join("cam_net.safetensors").is_file());
        assert!(b.join("checkpoint/latest").is_file());
    }
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
        let l = &rep.epoch_stats;
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

/// With batch-statistics BN the running statistics are learned, saved with the weights, and
/// are what a network rebuilt from the saved file uses at inference.
#[test]
fn batch_norm_statistics_are_saved_and_used_at_inference() {
    use candle_core::{DType, Device, Tensor};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = dataset(&data);
    let ds = open_split(&data, "train").unwrap();
    let mut cfg = tiny(classes, Variant::Baseline);
    cfg.net.bn = BnMode::Batch;
    cfg.epochs = 1;
    let set = Arc::new(TrainSet::new(&ds, &data, &cfg.data).unwrap());
    let out = tmp.path().join("bn");
    let (nets, _) = train(&cfg, set, &TrainOptions::new(&out)).unwrap();

    let saved = ssc_models::import::load_state_dict(out.join("cam_net.safetensors"))
        .unwrap()
        .into_tensors();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let stat = |k: &str| flat(&saved[k]);
    let mean = stat("layer1.0.bn1.running_mean");
    let var = stat("layer1.0.bn1.running_var");
    assert!(
        mean.iter().any(|m| m.abs() > 1e-4),
        "running mean never updated: {mean:?}"
    );
    assert!(
        var.iter().any(|v| (v - 1.0).abs() > 1e-4),
        "running var never updated: {var:?}"
    );

    let x = Tensor::rand(0f32, 1f32, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(saved, DType::F32, &Device::Cpu);
    let rebuilt = ssc_training::cam::trainer::build_cam_net(&cfg, vb).unwrap();
    let expected = flat(&rebuilt.features(&x).unwrap());
    let got = flat(&nets.net.features(&x).unwrap());
    let diff = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-5,
        "saved network differs from the trained one by {diff}"
    );
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
