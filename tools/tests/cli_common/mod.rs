//! Shared by the tests that drive the training and data binaries: run one, read what it
//! printed, make a tiny synthetic benchmark.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const SYNTH: &str = env!("CARGO_BIN_EXE_ssc-synth");
pub const TRAIN: &str = env!("CARGO_BIN_EXE_ssc-train");

/// Runs `bin ARGS` with warnings-only logging.
pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

/// Standard output then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ssc-synth generate` of `images` train and `val` val images of `size` px with `classes`
/// foreground classes into `root` (must succeed).
pub fn synth(root: &Path, images: usize, val: usize, size: usize, classes: usize) {
    let (images, val, size, classes) = (
        images.to_string(),
        val.to_string(),
        size.to_string(),
        classes.to_string(),
    );
    let o = run(
        SYNTH,
        &[
            "generate",
            "--out",
            root.to_str().unwrap(),
            "--num-images",
            &images,
            "--num-val",
            &val,
            "--size",
            &size,
            "--classes",
            &classes,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}
