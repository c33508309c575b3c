//! IRN refinement at inference (§4.7): the random walk + pseudo-label composition against
//! the `randomwalk/` fixture, and the edge map of an exported IRN edge network.

mod common;

use image::RgbImage;
use ssc_core::cam::CamRecord;
use ssc_core::randomwalk::walk::WalkParams;
use ssc_core::rng::Rng;
use ssc_core::tensors::TensorFile;
use ssc_inference::refine::{RefineParams, edge_map, refine_with_edge};
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_models::config::IrnConfig;
use ssc_models::onnx::Weights;
use ssc_models::onnx::export::export_irn_edge;

#[test]
fn pseudo_labels_match_the_random_walk_fixture() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "randomwalk") else {
        return;
    };
    let cfg = common::json(&dir.join("config.json"));
    for (name, case) in cfg["cases"].as_object().unwrap() {
        let t = TensorFile::open(dir.join(case["tensors_file"].as_str().unwrap())).unwrap();
        let (edge, _) = t.f32("edge").unwrap();
        let (cam, _) = t.f32("cam").unwrap();
        let (keys, _) = t.i64("keys").unwrap();
        let size = (
            case["H"].as_u64().unwrap() as usize,
            case["W"].as_u64().unwrap() as usize,
        );
        let record = CamRecord {
            keys,
            size,
            cam,
            high_res: Vec::new(),
        };
        let params = RefineParams {
            walk: WalkParams {
                radius: cfg["radius"].as_u64().unwrap() as usize,
                beta: cfg["beta"].as_f64().unwrap() as f32,
                exp_times: cfg["exp_times"].as_u64().unwrap() as u32,
            },
            bg_thres: cfg["sem_seg_bg_thres"].as_f64().unwrap() as f32,
            ..RefineParams::default()
        };
        let out = refine_with_edge(&record, &edge, &params).unwrap();
        let want = image::open(dir.join(case["pred_png"].as_str().unwrap()))
            .unwrap()
            .into_luma8()
            .into_raw();
        let mismatches = out.pred.iter().zip(&want).filter(|(a, b)| a != b).count();
        let allowed = case["pixels_with_margin_below_1em4"].as_u64().unwrap() as usize;
        assert!(mismatches <= allowed, "{name}: {mismatches} labels differ");
        let (score, _) = t.f32("score").unwrap();
        common::assert_close(name, &out.score, &score, 1e-4, 0.0);
    }
}

#[test]
fn edge_map_is_a_flip_consistent_probability_map() {
    if !common::ort_available() {
        return;
    }
    let mut rng = Rng::new(3);
    let cfg = IrnConfig::tiny();
    let mut w = Weights::new();
    common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    let ew = cfg.edge_width;
    for (k, c) in cfg.feature_channels().into_iter().enumerate() {
        w.insert(
            format!("fc_edge{}.0.weight", k + 1),
            common::randn(&mut rng, ew * c, 0.3),
            vec![ew, c, 1, 1],
        );
        w.insert(
            format!("fc_edge{}.1.weight", k + 1),
            vec![1.0; ew],
            vec![ew],
        );
        w.insert(format!("fc_edge{}.1.bias", k + 1), vec![0.0; ew], vec![ew]);
    }
    w.insert(
        "fc_edge6.weight",
        common::randn(&mut rng, 5 * ew, 0.3),
        vec![1, 5 * ew, 1, 1],
    );
    w.insert("fc_edge6.bias", vec![0.1], vec![1]);
    let bytes = export_irn_edge(&w, &cfg).unwrap();
    let mut model = Model::from_bytes(&bytes, "irn.onnx", &SessionConfig::default()).unwrap();

    // Width a multiple of 16: no horizontal padding, so flipping the image flips the map.
    let (h, wd) = (37u32, 48u32);
    let img = RgbImage::from_fn(wd, h, |_, _| {
        image::Rgb([
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        ])
    });
    let flipped = image::imageops::flip_horizontal(&img);
    let a = edge_map(&mut model, &img, 16).unwrap();
    let b = edge_map(&mut model, &flipped, 16).unwrap();
    let (h4, w4) = (h.div_ceil(4) as usize, wd.div_ceil(4) as usize);
    assert_eq!(a.len(), h4 * w4);
    assert!(a.iter().all(|&v| v > 0.0 && v < 1.0));
    for y in 0..h4 {
        for x in 0..w4 {
            let (p, q) = (a[y * w4 + x], b[y * w4 + w4 - 1 - x]);
            assert!((p - q).abs() < 1e-5, "({y},{x}): {p} vs {q}");
        }
    }
}
