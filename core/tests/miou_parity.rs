//! Parity of the confusion-matrix metrics with the `miou/` fixture (§7). Everything (class
//! count, file pairs, expected numbers, tolerances) comes from the fixture's config.json, so
//! the test also runs against other fixture sets of the same layout (`SSC_FIXTURES`).

use ssc_core::metrics::Confusion;

fn grey(path: &std::path::Path) -> Vec<u8> {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_luma8()
        .into_raw()
}

#[test]
fn miou_matches_fixture() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "miou") else {
        return;
    };
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let n = cfg["n_class"].as_u64().unwrap() as usize;
    let tol = cfg["tolerance"]["iou_miou_abs"].as_f64().unwrap();
    let mut total = Confusion::new(n);
    for (k, pair) in cfg["pairs"].as_array().unwrap().iter().enumerate() {
        let gt = grey(&dir.join(pair["gt"].as_str().unwrap()));
        let pred = grey(&dir.join(pair["pred"].as_str().unwrap()));
        let mut one = Confusion::new(n);
        one.add(&gt, &pred).unwrap();
        let expect = &cfg["per_pair"][k];
        assert!(
            (one.miou() - expect["miou"].as_f64().unwrap()).abs() <= tol,
            "pair {k}"
        );
        assert!(
            (one.miou_gt_present() - expect["miou_gt_present"].as_f64().unwrap()).abs() <= tol,
            "pair {k}"
        );
        total.merge(&one);
    }
    let rows: Vec<Vec<u64>> = serde_json::from_value(cfg["confusion"].clone()).unwrap();
    assert_eq!(total.rows(), rows, "confusion matrix");
    for (c, (got, want)) in total
        .iou()
        .iter()
        .zip(cfg["iou"].as_array().unwrap())
        .enumerate()
    {
        match (got, want.as_f64()) {
            (None, None) => {}
            (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "class {c}: {g} vs {w}"),
            other => panic!("class {c}: {other:?}"),
        }
    }
    assert!((total.miou() - cfg["miou"].as_f64().unwrap()).abs() <= tol);
    assert!((total.miou_gt_present() - cfg["miou_gt_present"].as_f64().unwrap()).abs() <= tol);
    if let Some(p) = cfg["counted_pixels"].as_u64() {
        assert_eq!(total.total(), p);
    }
}
