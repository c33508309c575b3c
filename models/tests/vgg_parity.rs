//! Parity of the frozen VGG-19 features and the perceptual loss (§2.5) with the reference
//! (fixture `vgg19/`): every tap for both images, L_p in both variants and ∂L_p/∂x_hat.

mod heads_util;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use heads_util::{assert_close, config, gradcheck, load, rand_f64};
use ssc_core::tensors::TensorFile;
use ssc_models::config::{PerceptualConfig, VggConfig};
use ssc_models::vgg::{PerceptualLoss, Vgg, avg_pool_2x2};

/// Block layout from the fixture's `conv_channels` (numbers = convs, "M" = pool).
fn fixture_vgg_config(cfg: &serde_json::Value) -> VggConfig {
    let mut c = VggConfig {
        convs: [0; 5],
        widths: [0; 5],
    };
    let mut block = 0;
    for e in cfg["conv_channels"].as_array().unwrap() {
        match e.as_u64() {
            Some(w) => {
                c.convs[block] += 1;
                c.widths[block] = w as usize;
            }
            None => block += 1,
        }
    }
    assert_eq!(block, 5);
    c
}

/// (tap names, indices, weights) of one variant in the config.
fn variant(cfg: &serde_json::Value, taps: &str, weights: &str) -> (Vec<String>, PerceptualConfig) {
    let mut pairs: Vec<(String, usize)> = cfg[taps]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
        .collect();
    pairs.sort_by_key(|p| p.1);
    let w: Vec<f64> = cfg[weights]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    (
        pairs.iter().map(|p| p.0.clone()).collect(),
        PerceptualConfig {
            taps: pairs.iter().map(|p| p.1).collect(),
            weights: w,
            max_width: 1024,
        },
    )
}

fn tol(cfg: &serde_json::Value, key: &str) -> (f64, f64) {
    let t = &cfg["tolerance"][key];
    (
        t["atol"].as_f64().unwrap_or(0.0),
        t["rtol"].as_f64().unwrap(),
    )
}

struct Case {
    cfg: serde_json::Value,
    vgg: Vgg,
    vcfg: VggConfig,
    t: TensorFile,
}

fn open() -> Option<Case> {
    let case = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "vgg19")?;
    let cfg = config(&case);
    let vcfg = fixture_vgg_config(&cfg);
    let bytes = std::fs::read(case.join("weights.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    let vgg = Vgg::new(&vcfg, vb).unwrap();
    let t = TensorFile::open(case.join("tensors.safetensors")).unwrap();
    Some(Case { cfg, vgg, vcfg, t })
}

#[test]
fn features_match_reference() {
    let Some(c) = open() else { return };
    let (names, pc) = variant(&c.cfg, "taps_code", "weights_code");
    let (atol, rtol) = tol(&c.cfg, "features");
    for img in ["x_hat", "target"] {
        let feats = c.vgg.forward_taps(&load(&c.t, img), &pc.taps).unwrap();
        for (name, f) in names.iter().zip(&feats) {
            let key = format!("{img}_{name}");
            assert_close(&key, f, &load(&c.t, &key), atol, rtol);
        }
    }
    // The default presets pick the same layers as the fixture.
    assert_eq!(PerceptualConfig::code(&c.vcfg).taps, pc.taps);
    assert_eq!(PerceptualConfig::code(&c.vcfg).weights, pc.weights);
    let (_, paper) = variant(&c.cfg, "taps_paper", "weights_paper");
    assert_eq!(PerceptualConfig::paper(&c.vcfg), paper);
}

#[test]
fn perceptual_loss_and_gradient_match_reference() {
    let Some(c) = open() else { return };
    let rtol_l = c.cfg["tolerance"]["L_p"]["rtol"].as_f64().unwrap();
    let x_hat = load(&c.t, "x_hat");
    let target = load(&c.t, "target");
    for (taps, weights, key) in [
        ("taps_code", "weights_code", "L_p"),
        ("taps_paper", "weights_paper", "L_p_paper_variant"),
    ] {
        let (_, pc) = variant(&c.cfg, taps, weights);
        let loss = PerceptualLoss::new(c.vgg.clone(), pc).unwrap();
        let got = loss
            .forward(&x_hat, &target)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let want = c.cfg[key].as_f64().unwrap();
        assert!(
            (got - want).abs() <= rtol_l * want.abs(),
            "{key}: {got} vs {want}"
        );
    }

    let (_, pc) = variant(&c.cfg, "taps_code", "weights_code");
    let loss = PerceptualLoss::new(c.vgg.clone(), pc).unwrap();
    let xv = Var::from_tensor(&x_hat).unwrap();
    let tv = Var::from_tensor(&target).unwrap();
    let grads = loss
        .forward(xv.as_tensor(), tv.as_tensor())
        .unwrap()
        .backward()
        .unwrap();
    let (atol, rtol) = tol(&c.cfg, "grad_x_hat");
    let g = grads.get(xv.as_tensor()).expect("gradient reaches x_hat");
    assert_close("grad_x_hat", g, &load(&c.t, "grad_x_hat"), atol, rtol);
    // Target detached; VGG weights are not trainable, so no gradient is kept for them.
    assert!(grads.get(tv.as_tensor()).is_none());
}

/// A tiny random VGG (f64) for gradient checks.
fn tiny_vgg(seed: u64) -> (VggConfig, Vgg) {
    let cfg = VggConfig {
        convs: [1, 1, 1, 1, 1],
        widths: [2, 3, 3, 2, 2],
    };
    let varmap = candle_nn::VarMap::new();
    let vb = ssc_models::init::SeededInit::var_builder(&varmap, seed, DType::F64, &Device::Cpu);
    (cfg.clone(), Vgg::new(&cfg, vb).unwrap())
}

#[test]
fn perceptual_loss_gradient_and_halving() {
    let (vcfg, vgg) = tiny_vgg(1);
    let pc = PerceptualConfig::code(&vcfg);
    assert_eq!(pc.taps, vec![1, 4, 7, 10, 13]);
    let target = rand_f64(&[1, 3, 32, 32], 2);
    let loss = PerceptualLoss::new(vgg.clone(), pc.clone()).unwrap();
    gradcheck(
        &rand_f64(&[1, 3, 32, 32], 3),
        |x| loss.forward(x, &target).unwrap(),
        1e-5,
    );

    // With max_width 16 a 32-wide pair is halved once first: the same as halving by hand.
    let small = PerceptualLoss::new(
        vgg.clone(),
        PerceptualConfig {
            max_width: 16,
            ..pc
        },
    )
    .unwrap();
    let x = rand_f64(&[1, 3, 32, 32], 4);
    let a = small
        .forward(&x, &target)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let b = loss
        .forward(&avg_pool_2x2(&x).unwrap(), &avg_pool_2x2(&target).unwrap())
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((a - b).abs() < 1e-12 && a > 0.0, "{a} vs {b}");

    // Mismatched shapes and taps/weights are errors.
    assert!(loss.forward(&x, &rand_f64(&[1, 3, 32, 30], 5)).is_err());
    let bad = PerceptualConfig {
        taps: vec![1],
        weights: vec![1.0, 2.0],
        max_width: 1024,
    };
    assert!(PerceptualLoss::new(vgg, bad).is_err());
}

#[test]
fn avg_pool_values_and_gradient() {
    let x = Tensor::arange(0f64, 20.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 4, 5))
        .unwrap();
    let y: Vec<f64> = avg_pool_2x2(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // rows {0,1} × cols {0,1}: (0+1+5+6)/4 = 3; the odd last column is dropped (floor).
    assert_eq!(y, vec![3.0, 5.0, 13.0, 15.0]);
    gradcheck(
        &rand_f64(&[1, 2, 5, 6], 6),
        |x| avg_pool_2x2(x).unwrap(),
        1e-6,
    );
}
