//! Shared plumbing of ssc's command-line tools: logging, progress bars, class maps, the
//! options every batch tool shares ([`args`]). The labelling and prediction work itself lives
//! in `ssc_inference` (the jobs, the batch runner, the output sink); the binaries parse their
//! arguments and call it.

pub mod args;
pub mod deeplab_cli;
pub mod export;
pub mod irn_cli;
pub mod report;
pub mod serve;

use std::path::Path;

use anyhow::Result;
use indicatif::ProgressBar;
use ssc_core::classes::ClassMap;

/// Installs the `tracing` subscriber used by every binary (`RUST_LOG` overrides the level).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A progress bar with rate and ETA; hidden when stderr is not a terminal.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    ssc_inference::batch::progress_bar(len, what)
}

/// Resolves a class map from a CLI value: `voc`, `coco`, or a file (one name per line, or a
/// JSON list of names), background first.
pub fn class_map(spec: &str) -> Result<ClassMap> {
    match spec {
        "voc" => Ok(ClassMap::voc()),
        "coco" => Ok(ClassMap::coco()),
        path => read_class_file(Path::new(path)),
    }
}

/// Reads a class list file (one name per line or a JSON list; background first).
pub fn read_class_file(path: &Path) -> Result<ClassMap> {
    Ok(ssc_core::dataset::load_class_map(path)?)
}

/// Runs a tool's `main`: logs set up, errors printed as one readable chain (`error: … : …`)
/// without a backtrace, exit code 1 on failure.
pub fn run_main(run: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    init_logging();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
