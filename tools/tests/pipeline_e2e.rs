//! The main job's chain end to end on a tiny synthetic benchmark, through the real binaries:
//! synth → superpixels → classifier → export → CAMs → seed sweep → IR labels → IRN → export →
//! pseudo-masks → evaluation, then the one-pass `ssc-label masks` against CAMs + pseudo. It
//! checks that every stage consumes the previous one's output and that every output is
//! complete and well-formed (the numbers of so short a training are not meaningful, only their
//! validity is).

use std::path::Path;
use std::process::Command;

fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn count(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == ext)
        })
        .count()
}

#[test]
fn pseudo_label_pipeline_runs_end_to_end() {
    if ssc_inference::runtime::find_library(None).is_err() {
        eprintln!("SKIP: ONNX Runtime library not found (run scripts/setup-ort.sh)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let data = d.join("synth");
    run(
        env!("CARGO_BIN_EXE_ssc-synth"),
        &[
            "generate",
            "--out",
            s(&data),
            "--num-images",
            "16",
            "--num-val",
            "4",
            "--size",
            "48",
            "--classes",
            "3",
        ],
    );
    run(
        env!("CARGO_BIN_EXE_ssc-superpixels"),
        &[
            "--root",
            s(&data),
            "--split",
            "train",
            "--out",
            s(&data.join("superpixels")),
            "--k",
            "40",
            "--min-size",
            "20",
        ],
    );
    assert_eq!(count(&data.join("superpixels"), "png"), 16);
    let cam = d.join("cam");
    run(
        env!("CARGO_BIN_EXE_ssc-train"),
        &[
            "cam",
            "--data",
            s(&data),
            "--preset",
            "synthetic",
            "--epochs",
            "1",
            "--out",
            s(&cam),
        ],
    );
    let cam_onnx = d.join("cam.onnx");
    run(
        env!("CARGO_BIN_EXE_ssc-export"),
        &[
            "--arch",
            "cam",
            "--weights",
            s(&cam.join("cam_net.safetensors")),
            "--config",
            s(&cam.join("config.json")),
            "--classes",
            s(&data.join("classes.txt")),
            "--out",
            s(&cam_onnx),
        ],
    );
    let cams = d.join("cams");
    run(
        env!("CARGO_BIN_EXE_ssc-label"),
        &[
            "cams",
            "--model",
            s(&cam_onnx),
            "--root",
            s(&data),
            "--split",
            "train",
            "--out",
            s(&cams),
        ],
    );
    assert_eq!(count(&cams, "safetensors"), 16);
    let sweep = run(
        env!("CARGO_BIN_EXE_ssc-eval"),
        &[
            "cams",
            "--cams",
            s(&cams),
            "--gt",
            s(&data),
            "--split",
            "train",
            "--json",
            s(&d.join("eval-cams.json")),
        ],
    );
    assert!(sweep.contains("best threshold"), "{sweep}");
    let ir = d.join("ir");
    let irl = run(
        env!("CARGO_BIN_EXE_ssc-label"),
        &[
            "irlabels",
            "--dataset",
            s(&data),
            "--split",
            "train",
            "--cams",
            s(&cams),
            "--out",
            s(&ir),
        ],
    );
    assert_eq!(count(&ir, "png"), 16, "{irl}");
    let irn_onnx = d.join("irn.onnx");
    run(
        env!("CARGO_BIN_EXE_ssc-train"),
        &[
            "irn",
            "--dataset",
            s(&data),
            "--split",
            "train",
            "--ir-labels",
            s(&ir),
            "--preset",
            "synthetic",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--out",
            s(&d.join("irn")),
            "--export",
            s(&irn_onnx),
            // the trained classifier as the frozen backbone, as the main job does
            "--backbone-weights",
            s(&cam.join("cam_net.safetensors")),
        ],
    );
    let pseudo = d.join("pseudo");
    let pseudo_args = [
        "pseudo",
        "--irn",
        s(&irn_onnx),
        "--cams",
        s(&cams),
        "--root",
        s(&data),
        "--split",
        "train",
        "--out",
        s(&pseudo),
        "--scores",
        "--confidence",
    ];
    run(env!("CARGO_BIN_EXE_ssc-label"), &pseudo_args);
    assert_eq!(count(&pseudo, "png"), 16);
    assert_eq!(count(&pseudo.join("scores"), "safetensors"), 16);
    assert_eq!(count(&pseudo.join("confidence"), "png"), 16);
    // Pseudo-masks are valid masks of the right sizes: the evaluator accepts every one.
    let eval = run(
        env!("CARGO_BIN_EXE_ssc-eval"),
        &[
            "--pred",
            s(&pseudo),
            "--gt",
            s(&data),
            "--split",
            "train",
            "--json",
            s(&d.join("eval-pseudo.json")),
        ],
    );
    assert!(eval.contains("images: 16"), "{eval}");
    // A rerun of the pseudo stage finds everything done.
    run(env!("CARGO_BIN_EXE_ssc-label"), &pseudo_args);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pseudo.join("manifest.0-of-1.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["skipped"].as_u64(), Some(16), "{manifest}");
    assert_eq!(manifest["written"].as_u64(), Some(0));

    // With the trained networks, the one-pass stage writes the masks of CAMs + pseudo.
    let one_pass = d.join("one-pass");
    run(
        env!("CARGO_BIN_EXE_ssc-label"),
        &[
            "masks",
            "--cam-model",
            s(&cam_onnx),
            "--irn-model",
            s(&irn_onnx),
            "--root",
            s(&data),
            "--split",
            "train",
            "--out",
            s(&one_pass),
        ],
    );
    let voc = ssc_core::classes::ClassMap::voc();
    for e in std::fs::read_dir(&pseudo).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "png") {
            let a = ssc_core::mask::read_mask(&path, &voc).unwrap();
            let b =
                ssc_core::mask::read_mask(&one_pass.join(path.file_name().unwrap()), &voc).unwrap();
            assert!(a == b, "{}: one-pass mask differs", path.display());
        }
    }

    // The library example labels the same images with the same two networks.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples").join("label_folder"))
        .filter(|p| p.is_file());
    match example {
        Some(bin) => {
            let ex_out = d.join("example");
            let images = data.join("JPEGImages");
            let printed = run(
                bin.to_str().unwrap(),
                &[s(&cam_onnx), s(&irn_onnx), s(&images), s(&ex_out)],
            );
            let n = count(&images, "jpg");
            assert_eq!(count(&ex_out, "png"), n, "{printed}");
            assert_eq!(printed.lines().count(), n, "{printed}");
            for e in std::fs::read_dir(&ex_out).unwrap() {
                let p = e.unwrap().path();
                let mask = ssc_core::mask::read_mask(&p, &voc).unwrap();
                let img = ssc_core::imageio::read_rgb(
                    images.join(p.with_extension("jpg").file_name().unwrap()),
                )
                .unwrap();
                assert_eq!((mask.width as u32, mask.height as u32), img.dimensions());
            }
        }
        None => eprintln!(
            "SKIP the label_folder example: not built (`cargo test --workspace` builds it)"
        ),
    }

    // The report of this run: self-contained, every picture decodes, training curves from the
    // trainers' logs, a picture row per chosen image with its score.
    let out = run(
        env!("CARGO_BIN_EXE_ssc-report"),
        &["--run", s(d), "--gt", s(&data), "--images", "3"],
    );
    assert!(out.contains("report.html"), "{out}");
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    let pictures = check_self_contained(&html);
    assert!(
        html.contains("cam: cls") && html.contains("irn: total"),
        "training curves"
    );
    assert!(
        html.contains("image mIoU"),
        "pictures are scored against ground truth"
    );
    assert!(html.contains("IR label") && html.contains("pseudo-mask") && html.contains(": CAM "));
    // 3 rows: image, ground truth, at least one CAM, IR label, pseudo-mask.
    assert!(pictures >= 3 * 5, "{pictures} pictures");
    // Without ground truth: the photographs come from the dataset root the CAM stage recorded;
    // nothing is scored.
    let bare = d.join("bare.html");
    run(
        env!("CARGO_BIN_EXE_ssc-report"),
        &["--run", s(d), "--images", "2", "--out", s(&bare)],
    );
    let html = std::fs::read_to_string(&bare).unwrap();
    assert!(check_self_contained(&html) >= 2 * 4);
    assert!(!html.contains("image mIoU") && html.contains("no ground truth"));
}

fn check_self_contained(html: &str) -> usize {
    ssc_tools::report::verify_self_contained(html).unwrap_or_else(|e| panic!("report: {e}"))
}
