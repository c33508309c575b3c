//! CLI tests of `ssc-superpixels` on a tiny synthetic benchmark: a corrupt image is reported
//! and skipped with exit code 1, a rerun skips finished files and redoes damaged ones, and two
//! shards (one from `--shard`, one from Slurm variables) are disjoint with the full union.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ssc_core::synth::{SynthConfig, write_dataset};

const BIN: &str = env!("CARGO_BIN_EXE_ssc-superpixels");

/// 7 train images near 48 px.
fn tiny(dir: &Path) -> PathBuf {
    let root = dir.join("synth");
    let cfg = SynthConfig {
        num_train: 7,
        num_val: 1,
        size: 48,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    write_dataset(&cfg, &root, &|| {}).unwrap();
    root
}

fn run(root: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--dataset", "voc", "--root"])
        .arg(root)
        .args(["--split", "train", "--out"])
        .arg(out)
        .args(["--threads", "2", "--max-regions", "16"])
        .args(extra)
        .env("RUST_LOG", "warn");
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "SSC_NUM_SHARDS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn manifest(out: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
}

/// Ids of the `.png` outputs (hidden temporaries would show up with a leading dot).
fn outputs(out: &Path) -> BTreeSet<String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .map(|n| n.trim_end_matches(".png").to_string())
        .collect()
}

fn train_ids() -> BTreeSet<String> {
    (0..7).map(|i| format!("train_{i:05}")).collect()
}

#[test]
fn corrupt_image_is_reported_and_the_rest_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = tiny(dir.path());
    std::fs::write(
        root.join("JPEGImages/train_00003.jpg"),
        b"not a jpeg at all",
    )
    .unwrap();
    let out = dir.path().join("sp");
    let o = run(&root, &out, &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("train_00003"), "{}", text(&o));
    let m = manifest(&out, "manifest.0-of-1.json");
    assert_eq!(m["items"], 7);
    assert_eq!(m["written"], 6);
    let failures = m["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["id"], "train_00003");
    assert!(
        failures[0]["message"]
            .as_str()
            .unwrap()
            .contains("train_00003.jpg"),
        "{m}"
    );
    let mut expect = train_ids();
    expect.remove("train_00003");
    assert_eq!(outputs(&out), expect);
    // Every written file is a valid partition of the image's size with ≤ 16 regions.
    for id in &expect {
        let seg = ssc_core::superpixels::file::read(&out.join(format!("{id}.png"))).unwrap();
        let (w, h) =
            ssc_core::imageio::image_size(root.join(format!("JPEGImages/{id}.jpg"))).unwrap();
        assert_eq!((seg.width, seg.height), (w as usize, h as usize));
        assert!(seg.count >= 1 && seg.count <= 16, "{id}: {}", seg.count);
    }
    let settings = manifest(&out, "superpixels.json");
    assert_eq!(settings["params"]["max_regions"], 16);
    assert_eq!(settings["params"]["k"], 75.0);
}

#[test]
fn rerun_skips_finished_files_and_redoes_damaged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = tiny(dir.path());
    let out = dir.path().join("sp");
    let o = run(&root, &out, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let first = std::fs::read(out.join("train_00001.png")).unwrap();

    let o = run(&root, &out, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let m = manifest(&out, "manifest.0-of-1.json");
    assert_eq!(
        (m["skipped"].as_u64(), m["written"].as_u64()),
        (Some(7), Some(0))
    );

    // A truncated output (e.g. copied by hand) and a killed run's temporary file.
    std::fs::write(out.join("train_00001.png"), &first[..first.len() / 2]).unwrap();
    std::fs::write(out.join(".train_00004.png.tmp-99999"), b"partial").unwrap();
    std::fs::remove_file(out.join("train_00004.png")).unwrap();
    let o = run(&root, &out, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let m = manifest(&out, "manifest.0-of-1.json");
    assert_eq!(
        (m["skipped"].as_u64(), m["written"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(std::fs::read(out.join("train_00001.png")).unwrap(), first);
    assert!(!out.join(".train_00004.png.tmp-99999").exists());

    // Other parameters into the same folder are refused.
    let o = run(&root, &out, &["--k", "300"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("other parameters"), "{}", text(&o));
}

#[test]
fn two_shards_are_disjoint_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let root = tiny(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let o = run(&root, &a, &["--shard", "0/2"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    // The second shard comes from a Slurm array `--array=1-2`.
    let o = run(
        &root,
        &b,
        &[],
        &[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (sa, sb) = (outputs(&a), outputs(&b));
    assert_eq!((sa.len(), sb.len()), (4, 3));
    assert!(sa.is_disjoint(&sb));
    assert_eq!(sa.union(&sb).cloned().collect::<BTreeSet<_>>(), train_ids());
    assert_eq!(manifest(&a, "manifest.0-of-2.json")["written"], 4);
    assert_eq!(manifest(&b, "manifest.1-of-2.json")["written"], 3);
}
