//! Parity of the reconstruction decoder (§2.4) with SSC's reference (fixture `decoder/`),
//! plus the parameter naming and the default initialisation.

mod heads_util;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module};
use candle_nn::{VarBuilder, VarMap};
use heads_util::{assert_close, config, load};
use ssc_core::tensors::TensorFile;
use ssc_models::config::DecoderConfig;
use ssc_models::decoder::Decoder;
use ssc_models::init::SeededInit;

fn dims(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// The decoder config implied by the fixture's parameter shapes.
fn fixture_config(cfg: &serde_json::Value) -> DecoderConfig {
    let shapes = &cfg["param_shapes"];
    let out = |name: &str| dims(&shapes[name])[0];
    let mut c = DecoderConfig::reference(cfg["C"].as_u64().unwrap() as usize);
    c.widths[0] = out("main.0.conv.weight");
    for k in 1..=4 {
        c.widths[k] = out(&format!("upsample_{k}.3.conv.weight"));
    }
    c.out_channels = out("upsample_4.4.weight");
    c.res_blocks = shapes
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("main.1.model.") && k.ends_with(".model.0.conv.weight"))
        .count();
    c.ln_eps = cfg["ln_eps"].as_f64().unwrap();
    c.in_eps = cfg["in_eps"].as_f64().unwrap();
    c
}

#[test]
fn decoder_matches_reference() {
    let Some(case) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "decoder") else {
        return;
    };
    let cfg = config(&case);
    let dcfg = fixture_config(&cfg);
    let dev = Device::Cpu;
    let bytes = std::fs::read(case.join("weights.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &dev).unwrap();
    let dec = Decoder::new(&dcfg, vb).unwrap();
    let t = TensorFile::open(case.join("tensors.safetensors")).unwrap();
    let input = load(&t, "input");
    let taps = dec.forward_taps(&input).unwrap();
    let atol = cfg["tolerance"]["atol"].as_f64().unwrap();
    let rtol = cfg["tolerance"]["rtol"].as_f64().unwrap();
    assert_close(
        "stage_head",
        &taps.head,
        &load(&t, "stage_head"),
        atol,
        rtol,
    );
    assert_close(
        "stage_resblock",
        &taps.resblock,
        &load(&t, "stage_resblock"),
        atol,
        rtol,
    );
    assert_close(
        "stage_upsample_1",
        &taps.upsample[0],
        &load(&t, "stage_upsample_1"),
        atol,
        rtol,
    );
    assert_close("output", &taps.output, &load(&t, "output"), atol, rtol);
    assert_eq!(
        dec.forward(&input).unwrap().dims(),
        dims(&cfg["output_shape"]).as_slice()
    );
}

#[test]
fn parameter_names_and_shapes_match_reference() {
    let Some(case) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "decoder") else {
        return;
    };
    let cfg = config(&case);
    let varmap = VarMap::new();
    let vb = SeededInit::var_builder(&varmap, 1, DType::F32, &Device::Cpu);
    Decoder::new(&fixture_config(&cfg), vb).unwrap();
    let ours: BTreeMap<String, Vec<usize>> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    let theirs: BTreeMap<String, Vec<usize>> = cfg["param_shapes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), dims(v)))
        .collect();
    assert_eq!(ours, theirs);
}

#[test]
fn default_init_follows_pytorch() {
    let cfg = DecoderConfig::synthetic(4);
    let varmap = VarMap::new();
    let vb = SeededInit::var_builder(&varmap, 7, DType::F32, &Device::Cpu);
    let dec = Decoder::new(&cfg, vb).unwrap();
    let data = varmap.data().lock().unwrap();
    let absmax = |n: &str| {
        let t = data[n].as_tensor();
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let minval = |n: &str| {
        let t = data[n].as_tensor();
        t.min_all().unwrap().to_scalar::<f32>().unwrap() as f64
    };
    // Transposed conv weight in×out×4×4: fan_in = out·16 (PyTorch uses weight dim 1).
    let w = cfg.widths;
    let bound_t = 1.0 / ((w[1] * 16) as f64).sqrt();
    let _ = w[0];
    assert!(absmax("upsample_1.0.weight") <= bound_t);
    assert!(absmax("upsample_1.0.weight") > 0.7 * bound_t);
    let bound_c = 1.0 / ((w[0] * 9) as f64).sqrt();
    assert!(absmax("upsample_1.3.conv.bias") <= bound_c);
    assert!(minval("main.0.norm.gamma") >= 0.0 && absmax("main.0.norm.gamma") < 1.0);
    assert_eq!(absmax("main.0.norm.beta"), 0.0);
    drop(data);
    // Output shape ×16 and in (−1, 1); a non-square odd size works.
    let x = heads_util::rand_f64(&[2, 4, 3, 5], 3)
        .to_dtype(DType::F32)
        .unwrap();
    let y = dec.forward(&x).unwrap();
    assert_eq!(y.dims(), &[2, 3, 48, 80]);
    assert!(
        y.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            < 1.0
    );
}

#[test]
fn decoder_gradient_reaches_input_and_parameters() {
    let mut cfg = DecoderConfig::synthetic(2);
    cfg.widths = [4, 4, 4, 4, 4];
    let varmap = VarMap::new();
    let vb = SeededInit::var_builder(&varmap, 11, DType::F64, &Device::Cpu);
    let dec = Decoder::new(&cfg, vb).unwrap();
    let x = heads_util::rand_f64(&[1, 2, 2, 3], 12);
    heads_util::gradcheck(&x, |x| dec.forward(x).unwrap(), 1e-5);
    // Every parameter is a Var that receives a non-zero gradient.
    let grads = dec
        .forward(&x)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let m = g
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(m > 0.0, "zero gradient for {name}");
    }
}
