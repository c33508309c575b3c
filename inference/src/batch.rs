//! The at-scale runner of per-image jobs (spec §10.3), shared by the library's labelling jobs
//! ([`crate::jobs`]) and every per-image tool (`ssc-superpixels`, `ssc-label`, `ssc-predict`).
//!
//! * **Shards** ([`Shard`]): an explicit `I/N` (`--shard`), else a Slurm job array (`SLURM_ARRAY_TASK_ID`,
//!   `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`/`_MAX`, `_STEP`), else a Kubernetes
//!   indexed job (`JOB_COMPLETION_INDEX` with the count from `--shards N` or
//!   `SSC_NUM_SHARDS`). Items are sorted by id and dealt round-robin, so shards are disjoint,
//!   their union is the whole dataset, and every shard gets a similar mix of images.
//! * **Resume**: an item whose outputs exist and pass the tool's check ([`Resumable::is_done`]) is
//!   skipped; anything else is redone. Outputs are written atomically (`ssc_core::atomic`), and
//!   leftover temporary files of this shard's items (from a killed run) are removed first.
//! * **Failures** of one item are recorded and the run goes on; the manifest lists them and the
//!   tool exits non-zero ([`Manifest::into_result`]).
//! * **Manifest**: `<out>/manifest.<i>-of-<n>.json`, written atomically at the end and printed
//!   as a summary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::error::{Context, InferenceError, Result, bail};
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One shard of a sharded run: this process handles the items at positions
/// `index, index + count, …` of the id-sorted list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based shard index, `< count`.
    pub index: usize,
    /// Number of shards (≥ 1).
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The unsharded run.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// A checked shard.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 {
            bail!("shard count must be at least 1");
        }
        if index >= count {
            bail!("shard index {index} out of range: must be below the count {count}");
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (0-based `I`).
    pub fn parse(s: &str) -> Result<Self> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("--shard `{s}`: expected I/N, e.g. 0/4"))?;
        let num = |v: &str| {
            v.trim().parse::<usize>().map_err(|_| {
                InferenceError::Invalid(format!("--shard `{s}`: `{v}` is not a number"))
            })
        };
        Shard::new(num(i)?, num(n)?).with_context(|| format!("--shard `{s}`"))
    }

    /// Resolves the shard from the command line and the process environment (see the module
    /// doc for the order).
    pub fn resolve(flag: Option<&str>, shards: Option<usize>) -> Result<Self> {
        Self::resolve_with(flag, shards, |k| std::env::var(k).ok())
    }

    /// [`Shard::resolve`] with an explicit environment lookup (for tests).
    pub fn resolve_with(
        flag: Option<&str>,
        shards: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        if let Some(s) = flag {
            return Shard::parse(s);
        }
        let var = |k: &str| -> Result<Option<usize>> {
            match env(k).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    InferenceError::Invalid(format!(
                        "environment variable {k}=`{v}` is not a number"
                    ))
                }),
            }
        };
        if let Some(id) = var("SLURM_ARRAY_TASK_ID")? {
            // Array ids need not start at 0 (`--array=1-8`) and may step (`--array=0-15:2`).
            let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = var("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let count = match (var("SLURM_ARRAY_TASK_COUNT")?, var("SLURM_ARRAY_TASK_MAX")?) {
                (Some(c), _) => c,
                (None, Some(max)) if max >= min => (max - min) / step + 1,
                _ => bail!(
                    "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor \
                     SLURM_ARRAY_TASK_MAX is: cannot tell the number of shards"
                ),
            };
            if id < min || (id - min) % step != 0 {
                bail!(
                    "SLURM_ARRAY_TASK_ID={id} is not in the array {min}…(step {step}); \
                     sparse arrays (`--array=1,5,9`) are not supported, use --shard I/N"
                );
            }
            return Shard::new((id - min) / step, count).context("Slurm array task");
        }
        if let Some(index) = var("JOB_COMPLETION_INDEX")? {
            let count = match shards {
                Some(n) => n,
                None => var("SSC_NUM_SHARDS")?.context(
                    "JOB_COMPLETION_INDEX is set (Kubernetes indexed job): give the number \
                     of shards with --shards N or SSC_NUM_SHARDS (the job's completions)",
                )?,
            };
            return Shard::new(index, count).context("Kubernetes indexed job");
        }
        if let Some(n) = shards.filter(|&n| n != 1) {
            bail!("--shards {n} given without a shard index (--shard I/N, Slurm or Kubernetes)");
        }
        Ok(Shard::ALL)
    }

    /// This shard's items: `items` sorted by `id`, then every `count`-th from `index`.
    pub fn select<T>(&self, mut items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
        items.sort_by(|a, b| id(a).cmp(id(b)));
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, t)| t)
            .collect()
    }

    /// The manifest's file name, `manifest.<i>-of-<n>.json`.
    pub fn manifest_name(&self) -> String {
        format!("manifest.{}-of-{}.json", self.index, self.count)
    }
}

/// What the resume logic needs to know about a per-image job: ids, output files, and whether
/// an item is finished. Tools that schedule their own work (the CAM pipeline) implement only
/// this and use [`plan`] and [`Tracker`].
pub trait Resumable: Sync {
    /// One unit of work (usually a dataset item).
    type Item: Sync;
    /// The item's id (unique; used for sharding, failures and output names).
    fn id<'a>(&self, item: &'a Self::Item) -> &'a str;
    /// The files the item produces (used to clear a killed run's temporary files).
    fn outputs(&self, item: &Self::Item) -> Vec<PathBuf>;
    /// `true` when the item's outputs exist and are valid, so it can be skipped. The default
    /// only checks that every output exists; override it to decode and check them.
    fn is_done(&self, item: &Self::Item) -> bool {
        self.outputs(item).iter().all(|p| p.is_file())
    }
}

/// A per-image job run by [`run`].
pub trait Job: Resumable {
    /// The error of one item (recorded with `{:#}`, so an `anyhow::Error` shows its chain).
    type Error: std::fmt::Display;
    /// Processes the item; errors are recorded and the run goes on.
    fn process(&self, item: &Self::Item) -> Result<(), Self::Error>;
}

/// One failed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Item id.
    pub id: String,
    /// The error chain, one line.
    pub message: String,
}

/// What a batch run did, written as JSON beside the outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The tool that ran (`ssc-superpixels`, `ssc-label cams`, …).
    pub tool: String,
    /// The shard this manifest covers.
    pub shard: Shard,
    /// Items in this shard.
    pub items: usize,
    /// Items processed and written in this run.
    pub written: usize,
    /// Items skipped because a previous run had finished them.
    pub skipped: usize,
    /// Items that failed, sorted by id.
    pub failures: Vec<Failure>,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
    /// Items written per second (processing only, skipped items excluded).
    pub images_per_second: f64,
    /// The ssc version.
    pub version: String,
}

impl Manifest {
    /// Prints a short human summary to stdout (with up to 20 failures).
    pub fn print_summary(&self) {
        println!(
            "{} shard {}: {} item(s): {} written, {} already done, {} failed in {:.1} s \
             ({:.2} images/s)",
            self.tool,
            self.shard,
            self.items,
            self.written,
            self.skipped,
            self.failures.len(),
            self.seconds,
            self.images_per_second
        );
        for f in self.failures.iter().take(20) {
            println!("  failed {}: {}", f.id, f.message);
        }
        if self.failures.len() > 20 {
            println!(
                "  … and {} more (see the manifest)",
                self.failures.len() - 20
            );
        }
    }

    /// `Err` naming the failure count when any item failed (the tool then exits non-zero).
    pub fn into_result(self) -> Result<Self> {
        if !self.failures.is_empty() {
            return Err(InferenceError::ItemsFailed {
                failed: self.failures.len(),
                items: self.items,
                manifest: self.shard.manifest_name(),
            });
        }
        Ok(self)
    }
}

/// Options of one batch run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tool name written into the manifest.
    pub tool: String,
    /// Output folder (the manifest goes here).
    pub out_dir: PathBuf,
    /// This process's shard.
    pub shard: Shard,
    /// Redo finished items.
    pub overwrite: bool,
    /// Show a progress bar and print the summary to stdout (what the command-line tools do);
    /// `false` leaves only `tracing` logs.
    pub progress: bool,
}

/// This shard's items split into those to do and those already done.
pub struct Plan<'a, T> {
    /// Items to process.
    pub todo: Vec<&'a T>,
    /// Items skipped as done.
    pub skipped: usize,
    /// Items in the shard.
    pub total: usize,
}

/// Selects this shard's items, checks which are done (in parallel) and removes leftover
/// temporary files of the ones to redo.
pub fn plan<'a, J: Resumable>(
    job: &J,
    items: &'a [J::Item],
    opts: &RunOptions,
) -> Plan<'a, J::Item> {
    let mine = opts
        .shard
        .select(items.iter().collect(), |it: &&J::Item| job.id(it));
    let total = mine.len();
    let done: Vec<bool> = mine
        .par_iter()
        .map(|it| !opts.overwrite && job.is_done(it))
        .collect();
    let todo: Vec<&J::Item> = mine
        .into_iter()
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|(it, _)| it)
        .collect();
    let outputs: Vec<PathBuf> = todo.iter().flat_map(|it| job.outputs(it)).collect();
    remove_stale_temps(&outputs);
    Plan {
        skipped: total - todo.len(),
        todo,
        total,
    }
}

/// Removes `ssc_core::atomic` temporary files (`.<name>.tmp-<pid>`) of `outputs`. Only the
/// items of this shard are passed in, so a concurrently running shard is never disturbed.
pub fn remove_stale_temps(outputs: &[PathBuf]) {
    let mut by_dir: HashMap<&Path, Vec<String>> = HashMap::new();
    for p in outputs {
        if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
            by_dir
                .entry(dir)
                .or_default()
                .push(format!(".{}.tmp-", name.to_string_lossy()));
        }
    }
    for (dir, prefixes) in by_dir {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let prefixes: std::collections::HashSet<String> = prefixes.into_iter().collect();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(cut) = name.rfind(".tmp-") else {
                continue;
            };
            if prefixes.contains(&name[..cut + 5]) {
                tracing::debug!("removing leftover temporary file {}", e.path().display());
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Thread-safe bookkeeping of a run: counts, failures, progress, and the final manifest. Tools
/// with their own scheduling (e.g. the bounded CAM pipeline) call [`Tracker::record`] per item.
pub struct Tracker {
    opts: RunOptions,
    total: usize,
    skipped: usize,
    written: AtomicUsize,
    failures: Mutex<Vec<Failure>>,
    bar: ProgressBar,
    start: Instant,
}

impl Tracker {
    /// Starts tracking `todo` items of a shard of `total` (`skipped` already done).
    pub fn new(opts: &RunOptions, total: usize, skipped: usize) -> Self {
        let todo = total - skipped;
        let bar = if opts.progress {
            progress_bar(todo as u64, &opts.tool)
        } else {
            ProgressBar::hidden()
        };
        tracing::info!(
            "{} shard {}: {} item(s), {} already done, {} to do",
            opts.tool,
            opts.shard,
            total,
            skipped,
            todo
        );
        Tracker {
            opts: opts.clone(),
            total,
            skipped,
            written: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            bar,
            start: Instant::now(),
        }
    }

    /// Records one item's outcome.
    pub fn record<E: std::fmt::Display>(&self, id: &str, result: Result<(), E>) {
        match result {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::warn!("{id}: {message}");
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Failure {
                        id: id.to_string(),
                        message,
                    });
            }
        }
        self.bar.inc(1);
    }

    /// Ends the run: writes the manifest atomically and prints the summary. Returns the
    /// manifest whether or not items failed (see [`Manifest::into_result`]).
    pub fn finish(self) -> Result<Manifest> {
        self.bar.finish_and_clear();
        let seconds = self.start.elapsed().as_secs_f64();
        let written = self.written.load(Ordering::Relaxed);
        let mut failures = self
            .failures
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        failures.sort_by(|a, b| a.id.cmp(&b.id));
        let manifest = Manifest {
            tool: self.opts.tool.clone(),
            shard: self.opts.shard,
            items: self.total,
            written,
            skipped: self.skipped,
            failures,
            seconds,
            images_per_second: if seconds > 0.0 {
                written as f64 / seconds
            } else {
                0.0
            },
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let path = self.opts.out_dir.join(self.opts.shard.manifest_name());
        let json = serde_json::to_vec_pretty(&manifest)?;
        ssc_core::atomic::write(&path, &json)
            .with_context(|| format!("cannot write the manifest {}", path.display()))?;
        if self.opts.progress {
            manifest.print_summary();
        } else {
            tracing::info!(
                "{} shard {}: {} written, {} already done, {} failed",
                manifest.tool,
                manifest.shard,
                manifest.written,
                manifest.skipped,
                manifest.failures.len()
            );
        }
        Ok(manifest)
    }
}

/// Runs `job` over this shard of `items` on the current rayon pool: plan (resume), process in
/// parallel, record failures, write the manifest. Fails only when the manifest cannot be
/// written; item failures are in the returned manifest.
pub fn run<J: Job>(job: &J, items: &[J::Item], opts: &RunOptions) -> Result<Manifest> {
    let plan = plan(job, items, opts);
    let tracker = Tracker::new(opts, plan.total, plan.skipped);
    plan.todo.par_iter().for_each(|it| {
        tracker.record(job.id(it), job.process(it));
    });
    tracker.finish()
}

/// A rayon pool of `threads` workers (all cores when `None`).
pub fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        if n == 0 {
            bail!("the thread count must be at least 1 (--threads)");
        }
        b = b.num_threads(n);
    }
    b.build()
        .map_err(|e| InferenceError::Invalid(format!("cannot start the worker threads: {e}")))
}

/// A progress bar with rate and ETA; hidden when stderr is not a terminal.
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} ({per_sec}, ETA {eta}) {elapsed_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn shard_flag_parses_and_rejects_bad_values() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        for bad in ["5/5", "1/0", "x/2", "3", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn slurm_array_indices_are_offset_by_the_minimum() {
        let s = Shard::resolve_with(
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "7"),
                ("SLURM_ARRAY_TASK_MIN", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ]),
        )
        .unwrap();
        assert_eq!(s, Shard { index: 2, count: 4 });
        // Stepped array 0-6:2 → tasks 0,2,4,6; count from MAX when COUNT is missing.
        let s = Shard::resolve_with(
            None,
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "6"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(s, Shard { index: 2, count: 4 });
        // The flag wins over the environment.
        let s =
            Shard::resolve_with(Some("1/3"), None, env(&[("SLURM_ARRAY_TASK_ID", "0")])).unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
    }

    #[test]
    fn kubernetes_index_needs_a_count() {
        let e = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert!(Shard::resolve_with(None, None, &e).is_err());
        assert_eq!(
            Shard::resolve_with(None, Some(8), &e).unwrap(),
            Shard { index: 3, count: 8 }
        );
        let e = env(&[("JOB_COMPLETION_INDEX", "3"), ("SSC_NUM_SHARDS", "4")]);
        assert_eq!(
            Shard::resolve_with(None, None, &e).unwrap(),
            Shard { index: 3, count: 4 }
        );
        let e = env(&[("JOB_COMPLETION_INDEX", "4"), ("SSC_NUM_SHARDS", "4")]);
        assert!(Shard::resolve_with(None, None, &e).is_err());
        assert_eq!(
            Shard::resolve_with(None, None, env(&[])).unwrap(),
            Shard::ALL
        );
    }

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        let ids: Vec<String> = (0..23).rev().map(|i| format!("img{i:03}")).collect();
        let mut union = Vec::new();
        for i in 0..4 {
            let part = Shard::new(i, 4)
                .unwrap()
                .select(ids.clone(), |s: &String| s.as_str());
            assert!((5..=6).contains(&part.len()), "unbalanced: {}", part.len());
            union.extend(part);
        }
        let n = union.len();
        union.sort();
        union.dedup();
        assert_eq!((n, union.len()), (23, 23));
    }
}
