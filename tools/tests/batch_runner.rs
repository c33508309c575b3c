//! `ssc_inference::batch::run` with a toy job: failures are recorded without stopping the run,
//! the manifest is written per shard, invalid outputs are redone, and only this shard's
//! leftover temporary files are removed.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use ssc_inference::batch::{self, Job, Resumable, RunOptions, Shard};

/// Writes `<out>/<id>.txt` containing the id; ids containing `bad` fail.
struct Echo {
    out: PathBuf,
}

impl Resumable for Echo {
    type Item = String;
    fn id<'a>(&self, item: &'a String) -> &'a str {
        item
    }
    fn outputs(&self, item: &String) -> Vec<PathBuf> {
        vec![self.out.join(format!("{item}.txt"))]
    }
    fn is_done(&self, item: &String) -> bool {
        std::fs::read_to_string(&self.outputs(item)[0]).is_ok_and(|s| s == *item)
    }
}

impl Job for Echo {
    type Error = anyhow::Error;

    fn process(&self, item: &String) -> Result<()> {
        if item.contains("bad") {
            bail!("cannot process {item}");
        }
        ssc_core::atomic::write(&self.outputs(item)[0], item.as_bytes())?;
        Ok(())
    }
}

fn opts(out: &Path, shard: Shard) -> RunOptions {
    RunOptions {
        tool: "echo".into(),
        out_dir: out.to_path_buf(),
        shard,
        overwrite: false,
        progress: false,
    }
}

#[test]
fn failures_are_recorded_and_resume_redoes_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let items: Vec<String> = ["c", "a", "bad1", "d", "b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let job = Echo { out: out.clone() };
    let m = batch::run(&job, &items, &opts(&out, Shard::ALL)).unwrap();
    assert_eq!((m.items, m.written, m.skipped), (5, 4, 0));
    assert_eq!(m.failures.len(), 1);
    assert_eq!(m.failures[0].id, "bad1");
    assert!(m.failures[0].message.contains("cannot process bad1"));
    assert!(m.clone().into_result().is_err());
    let on_disk: batch::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.0-of-1.json")).unwrap()).unwrap();
    assert_eq!(on_disk, m);

    // Damage one output and leave a stale temp file of it and one of an item we do not own.
    std::fs::write(out.join("a.txt"), "garbage").unwrap();
    std::fs::write(out.join(".a.txt.tmp-12345"), "partial").unwrap();
    std::fs::write(out.join(".zz.txt.tmp-12345"), "someone else's").unwrap();
    let m = batch::run(&job, &items, &opts(&out, Shard::ALL)).unwrap();
    assert_eq!((m.written, m.skipped, m.failures.len()), (1, 3, 1));
    assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "a");
    assert!(!out.join(".a.txt.tmp-12345").exists());
    assert!(out.join(".zz.txt.tmp-12345").exists());
}

#[test]
fn shards_write_their_own_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let items: Vec<String> = (0..9).map(|i| format!("img{i}")).collect();
    let job = Echo { out: out.clone() };
    let mut total = 0;
    for i in 0..3 {
        let m = batch::run(&job, &items, &opts(&out, Shard::new(i, 3).unwrap())).unwrap();
        assert_eq!((m.items, m.written, m.skipped), (3, 3, 0));
        assert!(out.join(format!("manifest.{i}-of-3.json")).is_file());
        total += m.written;
    }
    assert_eq!(total, 9);
    for it in &items {
        assert!(job.is_done(it), "{it} missing");
    }
}
