//! Parity of the IRN random walk and its post-processing (§4.3–4.8) with the `randomwalk/`
//! fixture. Every size, parameter and tolerance comes from the fixture's config.json, so the
//! test runs unchanged against other fixture sets of the same layout (`SSC_FIXTURES`).

use std::path::Path;

use serde_json::Value;
use ssc_core::pseudo::{GRID_STRIDE, pseudo_label, upsample_crop};
use ssc_core::randomwalk::{PathIndex, WalkParams, padded_affinity, random_walk};
use ssc_core::tensors::TensorFile;

fn num(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("config.json: `{key}` missing")) as usize
}

/// Asserts the fixture rule `max|actual − golden| ≤ atol + rtol·max|golden|`.
fn assert_close(name: &str, got: &[f32], want: &[f32], tol: &Value) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let atol = tol["atol"].as_f64().unwrap();
    let rtol = tol["rtol"].as_f64().unwrap();
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let err = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .fold(0.0, f64::max);
    let bound = atol + rtol * scale;
    println!("{name}: max |Δ| = {err:.3e} (bound {bound:.1e})");
    assert!(err <= bound, "{name}: max |Δ| {err} > {bound}");
}

fn grey(path: &Path) -> Vec<u8> {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_luma8()
        .into_raw()
}

#[test]
fn random_walk_matches_fixture() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "randomwalk") else {
        return;
    };
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let params = WalkParams {
        radius: num(&cfg, "radius"),
        beta: cfg["beta"].as_f64().unwrap() as f32,
        exp_times: num(&cfg, "exp_times") as u32,
    };
    let bg_thres = cfg["sem_seg_bg_thres"].as_f64().unwrap() as f32;
    let tol = &cfg["tolerance"];
    let cases = cfg["cases"].as_object().unwrap();
    assert!(!cases.is_empty());
    for (name, case) in cases {
        println!("case {name}");
        let t = TensorFile::open(dir.join(case["tensors_file"].as_str().unwrap())).unwrap();
        let (h, w, k) = (num(case, "h"), num(case, "w"), num(case, "K"));
        let (height, width) = (num(case, "H"), num(case, "W"));

        let index = PathIndex::new(params.radius).unwrap();
        let (dirs, _) = t.i64("directions").unwrap();
        let ours: Vec<i64> = index
            .directions()
            .iter()
            .flat_map(|&(dy, dx)| [dy as i64, dx as i64])
            .collect();
        assert_eq!(ours, dirs, "{name}: directions");
        assert_eq!(index.n_directions(), num(case, "n_directions"));

        let (edge, _) = t.f32("edge").unwrap();
        let aff = padded_affinity(&edge, h, w, &index).unwrap();
        let (want, shape) = t.f32("aff_padded").unwrap();
        assert_eq!(shape[1], num(case, "n_sources_padded"));
        assert_close("aff_padded", &aff, &want, &tol["aff_padded"]);

        let (cam, _) = t.f32("cam").unwrap();
        let rw = random_walk(&cam, k, h, w, &edge, &params).unwrap();
        assert_close("rw", &rw, &t.f32("rw").unwrap().0, &tol["rw_rw_up_score"]);

        let up = upsample_crop(&rw, k, h, w, GRID_STRIDE, height, width).unwrap();
        assert_close(
            "rw_up",
            &up,
            &t.f32("rw_up").unwrap().0,
            &tol["rw_rw_up_score"],
        );

        let keys: Vec<usize> = t
            .i64("keys")
            .unwrap()
            .0
            .iter()
            .map(|&v| v as usize)
            .collect();
        let label = pseudo_label(&rw, h, w, height, width, &keys, bg_thres).unwrap();
        let (score, _) = t.f32("score").unwrap();
        assert_close("score", &label.score, &score, &tol["rw_rw_up_score"]);

        // Pred: exact wherever the golden top1 − top2 margin is at least the stated limit.
        let min_margin = 1e-4;
        let golden = grey(&dir.join(case["pred_png"].as_str().unwrap()));
        let n = height * width;
        assert_eq!(golden.len(), n);
        let (mut checked, mut mismatched) = (0, 0);
        for p in 0..n {
            let mut s: Vec<f32> = (0..=k).map(|c| score[c * n + p]).collect();
            s.sort_by(|a, b| b.total_cmp(a));
            if s[0] - s[1] >= min_margin {
                checked += 1;
                mismatched += usize::from(label.pred[p] != golden[p]);
            }
        }
        println!("pred: {mismatched} of {checked} decided pixels differ");
        assert_eq!(mismatched, 0, "{name}: pred");
        let skipped = n - checked;
        assert_eq!(skipped, num(case, "pixels_with_margin_below_1em4"));
        // Label histogram: ours may differ from the reference only on undecided pixels.
        for (id, count) in case["label_histogram"].as_object().unwrap() {
            let id: u8 = id.parse().unwrap();
            let ours = label.pred.iter().filter(|&&v| v == id).count();
            let want = count.as_u64().unwrap() as usize;
            assert!(
                ours.abs_diff(want) <= skipped,
                "{name}: {ours} pixels of {id}, want {want}"
            );
        }
    }
}
