//! Parity of the dense CRF (§4.1.1, §6.6) and the IR-label procedure (§4.1) with pydensecrf2,
//! against the `crf/` fixtures. Every shape, parameter and tolerance comes from the case's
//! `config.json`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use ssc_core::crf::{BilateralParams, CrfParams, GaussianParams, SOFTMAX_CLIP, argmax_labels};
use ssc_core::irlabel::{IrLabelConfig, conf_cam, ir_label_maps};
use ssc_core::tensors::TensorFile;

struct Case {
    dir: PathBuf,
    cfg: Value,
    tensors: TensorFile,
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    /// Minimum fraction of equal labels.
    min_agreement: f64,
    /// Maximum mean |ΔQ|.
    max_mean_dq: f64,
}

/// The number following `marker` in a tolerance sentence such as "... >= 0.99 for ...".
fn number_after(text: &str, marker: &str) -> f64 {
    let rest = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {text}"))
        + marker.len()..];
    let token: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    token
        .parse()
        .unwrap_or_else(|_| panic!("no number after {marker} in {text}"))
}

fn load() -> Option<Case> {
    let dir = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "crf")?;
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let tensors = TensorFile::open(dir.join("tensors.safetensors")).unwrap();
    let img = image::open(dir.join("image.png")).unwrap().to_rgb8();
    let (width, height) = (
        cfg["image"]["W"].as_u64().unwrap() as usize,
        cfg["image"]["H"].as_u64().unwrap() as usize,
    );
    assert_eq!(
        (img.width() as usize, img.height() as usize),
        (width, height)
    );
    let tol = &cfg["tolerance"];
    let min_agreement = number_after(tol["labels"].as_str().unwrap(), ">=");
    let max_mean_dq = number_after(tol["Q"].as_str().unwrap(), "<=");
    Some(Case {
        dir,
        width,
        height,
        rgb: img.into_raw(),
        cfg,
        tensors,
        min_agreement,
        max_mean_dq,
    })
}

fn f(v: &Value) -> f32 {
    v.as_f64().unwrap() as f32
}

/// CRF parameters of a config block (`ir_crf` or `sm_crf`).
fn crf_params(block: &Value) -> CrfParams {
    CrfParams {
        gaussian: Some(GaussianParams {
            sxy: f(&block["gaussian"]["sxy"]),
            compat: f(&block["gaussian"]["compat"]),
        }),
        bilateral: Some(BilateralParams {
            sxy: f(&block["bilateral"]["sxy"]),
            srgb: f(&block["bilateral"]["srgb"]),
            compat: f(&block["bilateral"]["compat"]),
        }),
        iterations: block["iterations"].as_u64().unwrap() as usize,
    }
}

fn grey_png(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_luma8().into_raw()
}

fn agreement(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64
}

impl Case {
    fn check_labels(&self, name: &str, ours: &[u8], golden: &[u8]) {
        let a = agreement(ours, golden);
        println!("{name}: {:.4} of labels agree", a);
        assert!(a >= self.min_agreement, "{name}: only {a} of labels agree");
    }

    fn check_q(&self, name: &str, ours: &[f32]) {
        let (golden, shape) = self.tensors.f32(name).unwrap();
        assert_eq!(shape, self.tensors.shape(name).unwrap());
        let d = mean_abs_diff(ours, &golden);
        println!("{name}: mean |dQ| = {d:.2e}");
        assert!(
            d <= self.max_mean_dq,
            "{name}: mean |dQ| {d} > {}",
            self.max_mean_dq
        );
    }
}

#[test]
fn ir_label_crf_matches_pydensecrf() {
    let Some(c) = load() else { return };
    let ir = &c.cfg["ir_crf"];
    let n_labels = ir["n_labels"].as_u64().unwrap() as usize;
    let gt_prob = ir["gt_prob"].as_f64().unwrap();
    assert!(!ir["zero_unsure"].as_bool().unwrap());
    let params = crf_params(ir);
    for (cam, q, pred) in [
        ("fg_conf_cam", "Q_fg", "crf_fg_pred.png"),
        ("bg_conf_cam", "Q_bg", "crf_bg_pred.png"),
    ] {
        let (labels, shape) = c.tensors.u8(cam).unwrap();
        assert_eq!(shape, vec![c.height, c.width]);
        let ours = params
            .refine_labels_q(&labels, n_labels, gt_prob, c.width, c.height, &c.rgb)
            .unwrap();
        c.check_q(q, &ours);
        c.check_labels(
            pred,
            &argmax_labels(&ours, n_labels),
            &grey_png(&c.dir.join(pred)),
        );
    }
}

#[test]
fn ir_label_procedure_matches_reference() {
    let Some(c) = load() else { return };
    let (high_res, shape) = c.tensors.f32("high_res").unwrap();
    assert_eq!(shape[1..], [c.height, c.width]);
    let (keys, _) = c.tensors.i64("keys").unwrap();
    let cfg_keys: Vec<i64> = c.cfg["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_i64().unwrap())
        .collect();
    assert_eq!(keys, cfg_keys);
    let ir = &c.cfg["ir_crf"];
    let cfg = IrLabelConfig {
        conf_fg_thres: f(&c.cfg["conf_fg_thres"]),
        conf_bg_thres: f(&c.cfg["conf_bg_thres"]),
        gt_prob: ir["gt_prob"].as_f64().unwrap(),
        crf: crf_params(ir),
    };
    let maps = ir_label_maps(&high_res, &keys, c.width, c.height, &c.rgb, &cfg).unwrap();

    // The thresholded CAMs are exact.
    let n = c.width * c.height;
    assert_eq!(maps.fg_conf_cam, c.tensors.u8("fg_conf_cam").unwrap().0);
    assert_eq!(maps.bg_conf_cam, c.tensors.u8("bg_conf_cam").unwrap().0);
    assert_eq!(conf_cam(&high_res, n, cfg.conf_fg_thres), maps.fg_conf_cam);

    c.check_labels(
        "fg_conf",
        &maps.fg_conf,
        &c.tensors.u8("fg_conf").unwrap().0,
    );
    c.check_labels(
        "bg_conf",
        &maps.bg_conf,
        &c.tensors.u8("bg_conf").unwrap().0,
    );
    let golden = c.tensors.u8("ir_label").unwrap().0;
    assert_eq!(golden, grey_png(&c.dir.join("ir_label.png")));
    c.check_labels("ir_label", &maps.ir_label, &golden);
    // Every value is a VOC id of this image or the ignore value.
    let voc_ids: Vec<u8> = c.cfg["voc_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    assert!(
        maps.ir_label
            .iter()
            .all(|v| *v == 255 || voc_ids.contains(v))
    );
}

#[test]
fn stage2_softmax_crf_matches_pydensecrf() {
    let Some(c) = load() else { return };
    let sm = &c.cfg["sm_crf"];
    let n_labels = sm["n_labels"].as_u64().unwrap() as usize;
    let (prob, shape) = c.tensors.f32("sm_prob").unwrap();
    assert_eq!(shape, vec![n_labels, c.height, c.width]);
    // The unary's clip is the one `refine_softmax` applies.
    let clip = number_after(sm["unary"].as_str().unwrap(), "clip(p,");
    assert_eq!(clip as f32, SOFTMAX_CLIP);
    let ours = crf_params(sm)
        .refine_softmax(&prob, n_labels, c.width, c.height, &c.rgb)
        .unwrap();
    c.check_q("sm_Q", &ours);
    c.check_labels(
        "sm_crf_pred",
        &argmax_labels(&ours, n_labels),
        &grey_png(&c.dir.join("sm_crf_pred.png")),
    );
}
