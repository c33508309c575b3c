//! A real Label Studio (1.23.2, installed from PyPI into the cached venv
//! `.venv-label-studio/` on first use) driven through its own REST API with the real
//! `ssc-serve` binary as its ML backend: `scripts/label-studio-demo.sh --check` starts both on
//! 127.0.0.1, creates a project with a `$photo` data key over a local-files storage, connects
//! the backend and its webhook, retrieves predictions for every task and checks them, submits
//! one as an annotation and checks the stored correction decodes to it, deletes the
//! annotation and checks the correction is gone (`scripts/label_studio_drive.py`).
//!
//! Skips with a notice when ONNX Runtime or Label Studio cannot be had (no PyPI access), or
//! when `SSC_SKIP_LABEL_STUDIO=1`. Takes a minute or two (Label Studio's first start migrates
//! its database).

mod label_common;

use std::path::Path;
use std::process::Command;

use label_common::*;

const SERVE: &str = env!("CARGO_BIN_EXE_ssc-serve");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[cfg(unix)]
fn label_studio_round_trip() {
    if std::env::var("SSC_SKIP_LABEL_STUDIO").as_deref() == Ok("1") {
        eprintln!("SKIP: SSC_SKIP_LABEL_STUDIO=1");
        return;
    }
    if !ort_available() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cam = tiny_cam_model(dir.path(), 3);
    let irn = tiny_irn_model(dir.path());
    let images = dir.path().join("root/photos");
    std::fs::create_dir_all(&images).unwrap();
    for (i, (w, h)) in [(45u32, 29u32), (32, 40)].into_iter().enumerate() {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            if (x as i32 - 15).pow(2) + (y as i32 - 14).pow(2) < 90 {
                image::Rgb([220, 40, 30])
            } else {
                image::Rgb([(x * 5) as u8, (y * 3 + 40 * i as u32) as u8, 120])
            }
        });
        img.save(images.join(format!("pic {i}.png"))).unwrap();
    }
    let out = Command::new("bash")
        .arg(repo.join("scripts/label-studio-demo.sh"))
        .arg("--check")
        .arg(&images)
        .arg(&cam)
        .arg(&irn)
        .env("SSC_SERVE", SERVE)
        .env("LS_DEMO_DIR", dir.path().join("demo"))
        .env("LS_PORT", free_port().to_string())
        .env("ML_PORT", free_port().to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(3) {
        eprintln!("SKIP: Label Studio could not be installed:\n{text}");
        return;
    }
    let logs = |name: &str| {
        std::fs::read_to_string(dir.path().join("demo").join(name))
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            })
            .unwrap_or_default()
    };
    assert!(
        out.status.success(),
        "{text}\n--- ssc-serve log (last lines)\n{}\n--- Label Studio log (last lines)\n{}",
        logs("ssc-serve.log"),
        logs("label-studio.log")
    );
    eprintln!("{text}");
    assert!(text.contains("all Label Studio checks passed"), "{text}");
    assert!(text.contains("2 tasks"), "{text}");
}
