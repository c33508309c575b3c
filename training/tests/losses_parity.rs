//! Parity of the classification and alignment losses with the `losses/` fixture (§2.3, §2.6).
//! Shapes, hyper-parameters and tolerances come from the fixture's config.json.

use candle_core::{Device, Tensor, Var};
use serde_json::Value;
use ssc_core::tensors::TensorFile;
use ssc_training::losses::{AsmConfig, alignment_loss, multilabel_soft_margin};

fn fixture() -> Option<(std::path::PathBuf, Value)> {
    let dir = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "losses")?;
    let cfg = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    Some((dir, cfg))
}

/// `max |a − b| ≤ atol + rtol · max |b|`.
fn assert_close(name: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    assert!(
        err <= atol + rtol * scale,
        "{name}: max error {err:e} (scale {scale:e})"
    );
}

fn tensor(f: &TensorFile, name: &str) -> (Tensor, Vec<f32>) {
    let (v, shape) = f.f32(name).unwrap();
    (Tensor::from_vec(v.clone(), shape, &Device::Cpu).unwrap(), v)
}

fn tol(v: &Value) -> (f64, f64) {
    (
        v["atol"].as_f64().unwrap(),
        v["rtol"].as_f64().unwrap_or(0.0),
    )
}

#[test]
fn multilabel_soft_margin_matches() {
    let Some((dir, cfg)) = fixture() else { return };
    let f = TensorFile::open(dir.join("mlsm.safetensors")).unwrap();
    let (logits, _) = tensor(&f, "logits");
    let (labels, _) = tensor(&f, "labels");
    let (_, grad_want) = tensor(&f, "grad_logits");
    let var = Var::from_tensor(&logits).unwrap();
    let loss = multilabel_soft_margin(var.as_tensor(), &labels).unwrap();
    let want = cfg["mlsm"]["loss"].as_f64().unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    let abs = cfg["tolerance"]["mlsm"]["loss_abs"].as_f64().unwrap();
    assert!((got - want).abs() <= abs, "loss {got} vs {want}");
    let grads = loss.backward().unwrap();
    let g: Vec<f32> = grads
        .get(&var)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let (atol, rtol) = tol(&cfg["tolerance"]["mlsm"]["grad_logits"]);
    assert_close("grad_logits", &g, &grad_want, atol, rtol);
}

#[test]
fn alignment_loss_matches_every_intermediate() {
    let Some((dir, cfg)) = fixture() else { return };
    let asm = &cfg["asm"];
    let f = TensorFile::open(dir.join("asm.safetensors")).unwrap();
    let (feats, _) = tensor(&f, "F");
    let (_, labels) = tensor(&f, "labels");
    let (s, s_shape) = f.i64("S").unwrap();
    let s: Vec<u32> = s.iter().map(|&v| v as u32).collect();
    let acfg = AsmConfig {
        t_obj: asm["T_obj"].as_f64().unwrap() as f32,
        erosion_kernel: asm["erosion_kernel"].as_u64().unwrap() as usize,
        norm_eps: asm["norm_eps"].as_f64().unwrap() as f32,
        reliable_selection: true,
        reference_cpu_aliasing: false,
    };
    let var = Var::from_tensor(&feats).unwrap();
    let out = alignment_loss(
        var.as_tensor(),
        &labels,
        &s,
        (s_shape[1], s_shape[2]),
        &acfg,
    )
    .unwrap();

    let want_half: Vec<u32> = f
        .i64("S_half")
        .unwrap()
        .0
        .iter()
        .map(|&v| v as u32)
        .collect();
    assert_eq!(out.s_half, want_half, "S_half");
    let sel: Vec<i64> = f.i64("sel_index").unwrap().0;
    let got_sel: Vec<i64> = out
        .sel_index
        .iter()
        .flat_map(|&(n, c)| [n as i64, c as i64])
        .collect();
    assert_eq!(got_sel, sel, "sel_index");
    assert_eq!(out.r, f.u8("R").unwrap().0, "R");
    assert_eq!(out.m, f.u8("M").unwrap().0, "M");

    let (atol, rtol) = tol(&cfg["tolerance"]["asm"]["float_tensors"]);
    assert_close("G_bar", &out.g_bar, &f.f32("G_bar").unwrap().0, atol, rtol);
    assert_close("A_bar", &out.a_bar, &f.f32("A_bar").unwrap().0, atol, rtol);
    assert_close("T", &out.t, &f.f32("T").unwrap().0, atol, rtol);

    let got = out.loss.to_scalar::<f32>().unwrap() as f64;
    let want = asm["loss"].as_f64().unwrap();
    let lr = cfg["tolerance"]["asm"]["loss"]["rtol"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= lr * want.abs(),
        "loss {got} vs {want}"
    );

    let grads = out.loss.backward().unwrap();
    let g: Vec<f32> = grads
        .get(&var)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let (atol, rtol) = tol(&cfg["tolerance"]["asm"]["grad_F"]);
    assert_close("grad_F", &g, &f.f32("grad_F").unwrap().0, atol, rtol);
}

#[test]
fn without_reliable_selection_target_is_the_superpixel_average() {
    let Some((dir, _)) = fixture() else { return };
    let f = TensorFile::open(dir.join("asm.safetensors")).unwrap();
    let (feats, _) = tensor(&f, "F");
    let (_, labels) = tensor(&f, "labels");
    let (s, shape) = f.i64("S").unwrap();
    let s: Vec<u32> = s.iter().map(|&v| v as u32).collect();
    let cfg = AsmConfig {
        reliable_selection: false,
        ..AsmConfig::default()
    };
    let out = alignment_loss(&feats, &labels, &s, (shape[1], shape[2]), &cfg).unwrap();
    let want = f.f32("A_bar_sel").unwrap().0;
    assert_close("T = A_bar_sel", &out.t, &want, 1e-6, 0.0);
}
