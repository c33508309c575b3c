//! Parity of the multi-scale CAM fusion, class selection and normalisation (§3.2) with the
//! reference, against the `cam/` fixture: given the fixture's per-scale outputs `scale{i}_o`,
//! reproduce `cam_strided_sum_all_classes`, `cam`, `high_res` and `keys`. Sizes, the label and
//! tolerances come from `config.json`.

use serde_json::Value;
use ssc_core::cam::{CamRecord, ScaleOutput, fuse_scales, keys_from_label};
use ssc_core::tensors::TensorFile;

/// `max|a − g| ≤ atol + rtol·max|g|`, the fixture's rule.
fn check(name: &str, a: &[f32], g: &[f32], tol: &Value) {
    let atol = tol["atol"].as_f64().unwrap();
    let rtol = tol["rtol"].as_f64().unwrap();
    assert_eq!(a.len(), g.len(), "{name}: length");
    let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let err = a
        .iter()
        .zip(g)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    assert!(
        err <= atol + rtol * gmax,
        "{name}: max error {err} > {atol} + {rtol}·{gmax}"
    );
}

#[test]
fn cam_fusion_matches_reference() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "cam") else {
        return;
    };
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let t = TensorFile::open(dir.join("tensors.safetensors")).unwrap();
    let h = cfg["image"]["H"].as_u64().unwrap() as usize;
    let w = cfg["image"]["W"].as_u64().unwrap() as usize;
    let n_scales = cfg["scales"].as_array().unwrap().len();
    let outputs: Vec<ScaleOutput> = (0..n_scales)
        .map(|i| {
            let (data, s) = t.f32(&format!("scale{i}_o")).unwrap();
            ScaleOutput {
                data,
                channels: s[0],
                h: s[1],
                w: s[2],
            }
        })
        .collect();
    let fused = fuse_scales(&outputs, h, w).unwrap();
    let strided = cfg["strided_size"].as_array().unwrap();
    assert_eq!(
        [fused.strided_size.0, fused.strided_size.1],
        [
            strided[0].as_u64().unwrap() as usize,
            strided[1].as_u64().unwrap() as usize
        ]
    );
    let tol = &cfg["tolerance"];
    let (g_sum, _) = t.f32("cam_strided_sum_all_classes").unwrap();
    check(
        "cam_strided_sum_all_classes",
        &fused.strided,
        &g_sum,
        &tol["network_outputs"],
    );

    let label: Vec<f32> = cfg["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let keys = keys_from_label(&label);
    let (g_keys, _) = t.i64("keys").unwrap();
    assert_eq!(keys, g_keys);
    let cfg_keys: Vec<i64> = cfg["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(keys, cfg_keys);

    let rec = CamRecord::from_fused(&fused, &keys).unwrap();
    let (g_cam, cs) = t.f32("cam").unwrap();
    let (g_hr, hs) = t.f32("high_res").unwrap();
    assert_eq!(rec.strided_size(), (cs[1], cs[2]));
    assert_eq!(rec.size, (hs[1], hs[2]));
    check("cam", &rec.cam, &g_cam, &tol["cam_high_res"]);
    check("high_res", &rec.high_res, &g_hr, &tol["cam_high_res"]);

    // the file keeps everything
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("chelsea.safetensors");
    rec.write(&p, "chelsea").unwrap();
    assert_eq!(CamRecord::read(&p).unwrap(), rec);
}
