//! The epoch loop of every trainer (§2.10, §4.6, §6.4), with per-epoch checkpoints and exact
//! resume.
//!
//! [`run`] restores the latest checkpoint when asked, writes the resolved config beside the
//! run, trains epoch by epoch (progress bar, tracing logs, mean loss terms, seconds per step),
//! checkpoints after each epoch, keeps the best epoch when the trainer validates, and writes
//! the final weights. A trainer plugs in what differs through [`Trainer`]: its data, its
//! step, its loss terms and what its checkpoint holds.
//!
//! Every finished epoch also rewrites [`LOG_FILE`] (one JSON object per line: each step's loss
//! terms, then the epoch's means, validation score and seconds per step; see [`LogRecord`]),
//! the record `ssc-report` draws the training curves from. A resumed run keeps the lines of
//! the epochs its checkpoint holds and drops any later ones, so the log always matches the
//! weights; a run killed between an epoch's checkpoint and its log lines resumes without
//! those lines (the weights are unaffected).
//!
//! A resumed run continues at the next epoch with the same weights, optimiser state and
//! counters, and (see [`crate::data`]) the same data, so it gives the same weights as an
//! uninterrupted run (same device and thread count).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointData, TrainState, load_vars, save_weights, var_tensors};
use crate::config::RunConfig;
use crate::data::{SampleSet, load_epoch};
use crate::error::{Result, TrainError};
use crate::optim::OptimiserState;

/// Weights of the epoch with the best validation score (trainers that validate).
pub const BEST_FILE: &str = "best.safetensors";
/// Epoch and score of [`BEST_FILE`].
pub const BEST_JSON: &str = "best.json";
/// The training log in the output folder: one [`LogRecord`] per line.
pub const LOG_FILE: &str = "train-log.jsonl";

/// One line of [`LOG_FILE`]. Epochs are 1-based; `iteration` counts the steps done so far,
/// this one included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogRecord {
    /// One optimiser step.
    Step {
        /// Epoch the step belongs to.
        epoch: usize,
        /// Steps done, this one included.
        iteration: u64,
        /// The step's loss terms by name ([`LossSum::NAMES`]).
        terms: BTreeMap<String, f64>,
    },
    /// A finished epoch.
    Epoch {
        /// The epoch.
        epoch: usize,
        /// Steps done at its end.
        iteration: u64,
        /// Mean loss terms over the epoch.
        terms: BTreeMap<String, f64>,
        /// Validation mIoU in [0, 1] (trainers that validate).
        val_miou: Option<f64>,
        /// Mean wall-clock seconds per step of this epoch.
        seconds_per_step: f64,
    },
}

impl LogRecord {
    /// The epoch the record belongs to.
    pub fn epoch(&self) -> usize {
        match self {
            LogRecord::Step { epoch, .. } | LogRecord::Epoch { epoch, .. } => *epoch,
        }
    }
}

/// Reads a [`LOG_FILE`]; a line that does not parse is an error naming the file and line.
pub fn read_log(path: &Path) -> Result<Vec<LogRecord>> {
    let s = std::fs::read_to_string(path).map_err(|e| TrainError::file(path, e.to_string()))?;
    s.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

fn write_log(path: &Path, records: &[LogRecord]) -> Result<()> {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).map_err(|e| TrainError::State(e.to_string()))?);
        out.push('\n');
    }
    Ok(ssc_core::atomic::write(path, out.as_bytes())?)
}

/// Run-time choices that do not change the result, common to every trainer.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output folder (checkpoints, final weights, config).
    pub out: PathBuf,
    /// Compute device.
    pub device: Device,
    /// ImageNet weights for the backbone (torchvision ResNet or EfficientNet-Lite; required
    /// by the VOC, COCO and voc-lite presets).
    pub backbone_weights: Option<PathBuf>,
    /// A whole trained network to start from instead of the preset's initialisation
    /// (fine-tuning; DeepLabV2 only, e.g. a run's `best.safetensors`).
    pub init_weights: Option<PathBuf>,
    /// torchvision VGG-19 weights for the SSC classifier's perceptual loss (the other
    /// trainers have none).
    pub vgg_weights: Option<PathBuf>,
    /// ImageNet EfficientNet-Lite weights for the classifier's perceptual loss when it uses
    /// EfficientNet-Lite features (default: `backbone_weights`).
    pub perceptual_weights: Option<PathBuf>,
    /// Continue from the latest checkpoint in `out`.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many completed epochs (simulates a kill; tests and time-boxed runs).
    pub stop_after_epoch: Option<usize>,
}

impl TrainOptions {
    /// CPU, no weights, no resume, no progress bar.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            out: out.into(),
            device: Device::Cpu,
            backbone_weights: None,
            init_weights: None,
            vgg_weights: None,
            perceptual_weights: None,
            resume: false,
            progress: false,
            stop_after_epoch: None,
        }
    }
}

/// Opens a compute device by name: `cpu` or `cuda` (CUDA device 0, needs the `cuda` feature).
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(TrainError::Config(
            "this build has no CUDA support: rebuild with `--features cuda` (scripts/build-cuda.sh \
             does it without a local CUDA install) or use --device cpu"
                .into(),
        )),
        #[cfg(feature = "cuda")]
        "cuda" => {
            // cudarc panics when the driver library is missing; turn that into an error.
            std::panic::catch_unwind(|| Device::new_cuda(0))
                .map_err(|_| {
                    TrainError::Config(
                        "the CUDA driver library (libcuda.so.1) could not be loaded: is an NVIDIA \
                         driver installed?"
                            .into(),
                    )
                })?
                .map_err(|e| {
                    TrainError::Config(format!(
                        "cannot open CUDA device 0: {e} (no GPU visible, or no NVIDIA driver; \
                         `nvidia-smi` tells)"
                    ))
                })
        }
        other => Err(TrainError::Config(format!(
            "unknown device `{other}` (expected cpu or cuda)"
        ))),
    }
}

/// The loss terms of one step, summed over an epoch and divided into its mean.
pub trait LossSum: Copy + Default {
    /// The terms' names, in the order of [`LossSum::terms`] (the training log's keys).
    const NAMES: &'static [&'static str];

    /// Every term, in a fixed order.
    fn terms(&mut self) -> Vec<&mut f64>;

    /// Adds `other` term by term.
    fn add(&mut self, other: &Self) {
        let mut other = *other;
        for (s, t) in self.terms().into_iter().zip(other.terms()) {
            *s += *t;
        }
    }

    /// The terms by name.
    fn named(&self) -> BTreeMap<String, f64> {
        let mut t = *self;
        Self::NAMES
            .iter()
            .zip(t.terms())
            .map(|(n, v)| (n.to_string(), *v))
            .collect()
    }

    /// Every term divided by `n`.
    fn div(&self, n: f64) -> Self {
        let mut mean = *self;
        for t in mean.terms() {
            *t /= n;
        }
        mean
    }
}

impl LossSum for f64 {
    const NAMES: &'static [&'static str] = &["loss"];
    fn terms(&mut self) -> Vec<&mut f64> {
        vec![self]
    }
}

/// The best epoch so far (`best.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Validation mIoU in [0, 1].
    pub miou: f64,
}

/// What a trainer plugs into [`run`].
pub trait Trainer {
    /// The run's config, written beside it.
    type Config: RunConfig;
    /// The training set, loaded an epoch at a time by [`load_epoch`].
    type Data: SampleSet;
    /// Its optimiser.
    type Optimiser: OptimiserState;
    /// One step's loss terms.
    type Terms: LossSum;
    /// What the report keeps of each epoch.
    type Epoch;
    /// Name of the final weights file in the output folder.
    const WEIGHTS_FILE: &'static str;
    /// `true` when [`Trainer::validate`] scores every epoch: the best one is then kept as
    /// [`BEST_FILE`] and [`BEST_JSON`].
    const VALIDATES: bool = false;

    /// The resolved config.
    fn config(&self) -> &Self::Config;
    /// The training set.
    fn data(&self) -> &Arc<Self::Data>;
    /// What the progress bar calls the run (`"irn"` in `irn epoch 1/3`).
    fn name(&self) -> &str;
    /// One optimiser step on `batch`, update `iteration` of `total` (the schedule's `t`).
    fn step(
        &mut self,
        batch: &<Self::Data as SampleSet>::Batch,
        epoch: usize,
        iteration: u64,
        total: u64,
    ) -> Result<Self::Terms>;
    /// The progress bar's message after a step.
    fn message(&self, terms: &Self::Terms) -> String;
    /// The variables a checkpoint's `net` tensors restore.
    fn net_vars(&self) -> &VarMap;
    /// A second network's variables (the SSC decoder), saved as the checkpoint's `decoder`.
    fn decoder_vars(&self) -> Option<&VarMap> {
        None
    }
    /// The optimiser (its state is the checkpoint's `optim`).
    fn optimiser(&mut self) -> &mut Self::Optimiser;
    /// The whole network: a checkpoint's `net`, the final weights and those of [`BEST_FILE`]
    /// (more than [`Trainer::net_vars`] when part of it is frozen).
    fn weights(&self) -> Result<HashMap<String, Tensor>>;
    /// The validation score of the current weights (when [`Trainer::VALIDATES`]).
    fn validate(&self) -> Result<f64> {
        Err(TrainError::State("this trainer does not validate".into()))
    }
    /// Logs finished epoch `epoch` (1-based) with its mean loss terms, validation score and
    /// the best epoch so far, and returns what the report keeps of it.
    fn epoch_done(
        &self,
        epoch: usize,
        mean: Self::Terms,
        val: Option<f64>,
        best: Option<BestRecord>,
    ) -> Self::Epoch;
}

/// Summary of a finished (or stopped) run.
#[derive(Debug, Clone)]
pub struct RunReport<E> {
    /// Completed epochs.
    pub epochs: usize,
    /// Completed iterations.
    pub iterations: u64,
    /// What each epoch trained in this call gave.
    pub epoch_stats: Vec<E>,
    /// The best epoch of the whole run (trainers that validate).
    pub best: Option<BestRecord>,
    /// Mean wall-clock seconds per training step in this call, leaving out its first step
    /// when there were others (it also pays for allocations and, on a GPU, loading kernels).
    pub seconds_per_step: f64,
    /// Wall-clock seconds of the first training step of this call.
    pub first_step_seconds: f64,
    /// Where the final weights were written (`None` when stopped early).
    pub weights: Option<PathBuf>,
}

/// A per-epoch progress bar (hidden unless `show`).
fn epoch_bar(show: bool, len: usize, prefix: String) -> indicatif::ProgressBar {
    let pb = if show {
        indicatif::ProgressBar::new(len as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix);
    pb
}

fn read_best(out: &Path) -> Result<Option<BestRecord>> {
    let p = out.join(BEST_JSON);
    if !p.is_file() {
        return Ok(None);
    }
    let s = std::fs::read_to_string(&p).map_err(|e| TrainError::file(&p, e.to_string()))?;
    Ok(Some(
        serde_json::from_str(&s).map_err(|e| TrainError::file(&p, e.to_string()))?,
    ))
}

/// Writes [`BEST_FILE`] then [`BEST_JSON`] when `score` beats `best` (the first epoch always
/// does).
fn update_best<T: Trainer>(
    out: &Path,
    trainer: &T,
    best: &mut Option<BestRecord>,
    epoch: usize,
    score: f64,
) -> Result<()> {
    if best.is_some_and(|b| score <= b.miou) {
        return Ok(());
    }
    let b = BestRecord { epoch, miou: score };
    save_weights(&out.join(BEST_FILE), &trainer.weights()?)?;
    let json = serde_json::to_string_pretty(&b).map_err(|e| TrainError::State(e.to_string()))?;
    ssc_core::atomic::write(&out.join(BEST_JSON), json.as_bytes())?;
    *best = Some(b);
    Ok(())
}

/// Trains `trainer` for its config's epochs and writes checkpoints, the best epoch's files
/// (trainers that validate) and finally [`Trainer::WEIGHTS_FILE`] under `opts.out`.
///
/// With `opts.resume` and a checkpoint in `opts.out`, the trainer's state and the counters
/// (and the best record) are restored and training continues at the next epoch.
pub fn run<T: Trainer>(trainer: &mut T, opts: &TrainOptions) -> Result<RunReport<T::Epoch>> {
    let out = &opts.out;
    let cfg = trainer.config();
    let (seed, epochs, batch_size) = (cfg.seed(), cfg.epochs(), cfg.batch_size());
    let data = trainer.data().clone();
    let mut state = TrainState {
        epoch: 0,
        iteration: 0,
        seed,
    };
    let mut best = None;
    if opts.resume
        && let Some(dir) = checkpoint::latest(out)?
    {
        let ck = checkpoint::load(&dir, &opts.device)?;
        load_vars(trainer.net_vars(), &ck.net, &dir.join("net.safetensors"))?;
        if let Some(vm) = trainer.decoder_vars() {
            load_vars(vm, &ck.decoder, &dir.join("decoder.safetensors"))?;
        }
        trainer.optimiser().restore(&ck.optim)?;
        state = ck.state;
        if T::VALIDATES {
            best = read_best(out)?.filter(|b| b.epoch <= state.epoch);
        }
        tracing::info!(checkpoint = %dir.display(), epoch = state.epoch, "resumed");
        if T::VALIDATES && best.is_none_or(|b| b.epoch < state.epoch) {
            // Killed between the checkpoint and the best files: judge that epoch now.
            let score = trainer.validate()?;
            update_best(out, trainer, &mut best, state.epoch, score)?;
        }
    }
    let log_path = out.join(LOG_FILE);
    let mut log = if opts.resume && state.epoch > 0 && log_path.is_file() {
        let mut l = read_log(&log_path)?;
        l.retain(|r| r.epoch() <= state.epoch);
        l
    } else {
        Vec::new()
    };
    let config_json = checkpoint::write_run_config(out, trainer.config())?;
    let per_epoch = crate::data::batches_per_epoch(&*data, batch_size)?;
    let total = (per_epoch * epochs) as u64;
    let mut report = RunReport {
        epochs: state.epoch,
        iterations: state.iteration,
        epoch_stats: Vec::new(),
        best,
        seconds_per_step: 0.0,
        first_step_seconds: 0.0,
        weights: None,
    };
    let (mut steps, mut step_time) = (0u64, 0.0f64);
    while state.epoch < epochs {
        if opts.stop_after_epoch.is_some_and(|s| state.epoch >= s) {
            return Ok(report);
        }
        let epoch = state.epoch;
        let pb = epoch_bar(
            opts.progress,
            per_epoch,
            format!("{} epoch {}/{}", trainer.name(), epoch + 1, epochs),
        );
        let mut sum = T::Terms::default();
        let (log_len, mut epoch_time) = (log.len(), 0.0f64);
        for batch in load_epoch(data.clone(), seed, epoch, batch_size, 0) {
            let batch = batch?;
            let t0 = Instant::now();
            let terms = trainer.step(&batch, epoch, state.iteration, total)?;
            let took = t0.elapsed().as_secs_f64();
            epoch_time += took;
            if steps == 0 {
                report.first_step_seconds = took;
            } else {
                step_time += took;
            }
            steps += 1;
            state.iteration += 1;
            sum.add(&terms);
            log.push(LogRecord::Step {
                epoch: epoch + 1,
                iteration: state.iteration,
                terms: terms.named(),
            });
            pb.inc(1);
            pb.set_message(trainer.message(&terms));
        }
        pb.finish_and_clear();
        let mean = sum.div(per_epoch as f64);
        state.epoch += 1;
        checkpoint::save(
            out,
            &CheckpointData {
                state,
                config: config_json.clone(),
                net: trainer.weights()?,
                decoder: match trainer.decoder_vars() {
                    Some(vm) => var_tensors(vm)?,
                    None => HashMap::new(),
                },
                optim: trainer.optimiser().save()?,
            },
        )?;
        let val = if T::VALIDATES {
            let score = trainer.validate()?;
            // After the checkpoint: a kill in between is repaired on resume (above).
            update_best(out, trainer, &mut best, state.epoch, score)?;
            Some(score)
        } else {
            None
        };
        let epoch_steps = (log.len() - log_len) as f64;
        log.push(LogRecord::Epoch {
            epoch: state.epoch,
            iteration: state.iteration,
            terms: mean.named(),
            val_miou: val,
            seconds_per_step: epoch_time / epoch_steps.max(1.0),
        });
        write_log(&log_path, &log)?;
        report
            .epoch_stats
            .push(trainer.epoch_done(state.epoch, mean, val, best));
        report.best = best;
        report.epochs = state.epoch;
        report.iterations = state.iteration;
        report.seconds_per_step = if steps > 1 {
            step_time / (steps - 1) as f64
        } else {
            report.first_step_seconds
        };
    }
    let weights = out.join(T::WEIGHTS_FILE);
    save_weights(&weights, &trainer.weights()?)?;
    report.weights = Some(weights);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::sample_rng;

    #[test]
    fn devices_are_named_or_refused_clearly() {
        assert!(matches!(device("cpu"), Ok(Device::Cpu)));
        let e = device("tpu").unwrap_err().to_string();
        assert!(e.contains("unknown device `tpu`"), "{e}");
        // A CPU build says how to get CUDA; a CUDA build without a GPU says what is missing.
        let e = device("cuda").err().map(|e| e.to_string());
        if cfg!(feature = "cuda") {
            if let Some(e) = e {
                assert!(e.contains("CUDA"), "{e}");
            }
        } else {
            let e = e.expect("a CPU build cannot open a CUDA device");
            assert!(e.contains("--features cuda"), "{e}");
        }
    }

    /// `n` random numbers, one per sample.
    struct Numbers(usize);

    impl SampleSet for Numbers {
        type Sample = f64;
        type Batch = Vec<f64>;
        fn images(&self) -> usize {
            self.0
        }
        fn prefetch(&self) -> usize {
            1
        }
        fn sample(&self, i: usize, seed: u64, epoch: usize) -> Result<f64> {
            Ok(sample_rng(seed, epoch, i).uniform(-1.0, 1.0))
        }
        fn collate(&self, _: usize, samples: Vec<f64>) -> Vec<f64> {
            samples
        }
    }

    #[derive(Serialize)]
    struct Toy {
        seed: u64,
        epochs: usize,
        batch_size: usize,
    }
    crate::config::impl_run_config!(Toy);

    /// The toy's "optimiser": a step count.
    struct Steps(f64);

    impl OptimiserState for Steps {
        fn save(&self) -> Result<HashMap<String, Tensor>> {
            Ok(HashMap::from([(
                "steps".into(),
                Tensor::new(&[self.0], &Device::Cpu)?,
            )]))
        }
        fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
            self.0 = state["steps"].to_vec1::<f64>()?[0];
            Ok(())
        }
    }

    /// One weight that follows the batch means; its score goes up and down with it.
    struct ToyRun {
        cfg: Toy,
        set: Arc<Numbers>,
        vars: VarMap,
        steps: Steps,
    }

    impl ToyRun {
        fn new(epochs: usize) -> Self {
            let vars = VarMap::new();
            vars.get(
                1,
                "w",
                candle_nn::Init::Const(0.0),
                candle_core::DType::F64,
                &Device::Cpu,
            )
            .unwrap();
            ToyRun {
                cfg: Toy {
                    seed: 7,
                    epochs,
                    batch_size: 3,
                },
                set: Arc::new(Numbers(10)),
                vars,
                steps: Steps(0.0),
            }
        }

        fn w(&self) -> f64 {
            var_tensors(&self.vars).unwrap()["w"]
                .to_vec1::<f64>()
                .unwrap()[0]
        }
    }

    impl Trainer for ToyRun {
        type Config = Toy;
        type Data = Numbers;
        type Optimiser = Steps;
        type Terms = f64;
        type Epoch = (f64, Option<f64>);
        const WEIGHTS_FILE: &'static str = "toy.safetensors";
        const VALIDATES: bool = true;

        fn config(&self) -> &Toy {
            &self.cfg
        }
        fn data(&self) -> &Arc<Numbers> {
            &self.set
        }
        fn name(&self) -> &str {
            "toy"
        }
        fn step(&mut self, batch: &Vec<f64>, _: usize, t: u64, total: u64) -> Result<f64> {
            let mean = batch.iter().sum::<f64>() / batch.len() as f64;
            let w = self.w() + mean * (1.0 - t as f64 / total as f64);
            let var = self.vars.data().lock().unwrap()["w"].clone();
            var.set(&Tensor::new(&[w], &Device::Cpu)?)?;
            self.steps.0 += 1.0;
            Ok(mean)
        }
        fn message(&self, loss: &f64) -> String {
            format!("{loss}")
        }
        fn net_vars(&self) -> &VarMap {
            &self.vars
        }
        fn optimiser(&mut self) -> &mut Steps {
            &mut self.steps
        }
        fn weights(&self) -> Result<HashMap<String, Tensor>> {
            var_tensors(&self.vars)
        }
        fn validate(&self) -> Result<f64> {
            Ok((3.0 * self.w()).sin())
        }
        fn epoch_done(
            &self,
            _: usize,
            m: f64,
            v: Option<f64>,
            _: Option<BestRecord>,
        ) -> Self::Epoch {
            (m, v)
        }
    }

    fn run_toy(
        out: &Path,
        epochs: usize,
        stop: Option<usize>,
        resume: bool,
    ) -> (ToyRun, RunReport<(f64, Option<f64>)>) {
        let mut opts = TrainOptions::new(out);
        opts.stop_after_epoch = stop;
        opts.resume = resume;
        let mut t = ToyRun::new(epochs);
        let rep = run(&mut t, &opts).unwrap();
        (t, rep)
    }

    #[test]
    fn resume_continues_exactly_and_keeps_the_best_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, straight) = run_toy(&tmp.path().join("a"), 6, None, false);
        assert_eq!((straight.epochs, straight.iterations), (6, 18));
        assert_eq!(straight.epoch_stats.len(), 6);
        let best = straight.best.unwrap();
        let top = straight
            .epoch_stats
            .iter()
            .map(|s| s.1.unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(best.miou, top, "the best epoch has the highest score");
        assert!(tmp.path().join("a/toy.safetensors").is_file());
        assert!(tmp.path().join("a").join(BEST_FILE).is_file());

        let b = tmp.path().join("b");
        let (_, first) = run_toy(&b, 6, Some(2), false);
        assert_eq!((first.epochs, first.weights), (2, None));
        let (resumed, rest) = run_toy(&b, 6, None, true);
        assert_eq!(resumed.w(), a.w());
        assert_eq!(resumed.steps.0, 18.0, "optimiser state restored");
        assert_eq!(rest.epoch_stats, straight.epoch_stats[2..]);
        assert_eq!(rest.best, straight.best);

        // The log: one line per step and per epoch, and a resumed run's log is the straight
        // run's (timings aside).
        let strip = |l: Vec<LogRecord>| -> Vec<LogRecord> {
            l.into_iter()
                .map(|r| match r {
                    LogRecord::Epoch {
                        epoch,
                        iteration,
                        terms,
                        val_miou,
                        ..
                    } => LogRecord::Epoch {
                        epoch,
                        iteration,
                        terms,
                        val_miou,
                        seconds_per_step: 0.0,
                    },
                    step => step,
                })
                .collect()
        };
        let log_a = strip(read_log(&tmp.path().join("a").join(LOG_FILE)).unwrap());
        assert_eq!(log_a.len(), 18 + 6);
        let epochs: Vec<_> = log_a
            .iter()
            .filter_map(|r| match r {
                LogRecord::Epoch {
                    epoch,
                    iteration,
                    terms,
                    val_miou,
                    ..
                } => Some((*epoch, *iteration, terms["loss"], *val_miou)),
                LogRecord::Step { .. } => None,
            })
            .collect();
        let expected: Vec<_> = straight
            .epoch_stats
            .iter()
            .enumerate()
            .map(|(i, s)| (i + 1, 3 * (i as u64 + 1), s.0, s.1))
            .collect();
        assert_eq!(epochs, expected, "epoch lines carry the report's means");
        let steps_of_2: Vec<f64> = log_a
            .iter()
            .filter_map(|r| match r {
                LogRecord::Step {
                    epoch: 2, terms, ..
                } => Some(terms["loss"]),
                _ => None,
            })
            .collect();
        assert_eq!(steps_of_2.len(), 3);
        assert!((steps_of_2.iter().sum::<f64>() / 3.0 - straight.epoch_stats[1].0).abs() < 1e-12);
        let log_b = strip(read_log(&b.join(LOG_FILE)).unwrap());
        assert_eq!(log_b, log_a);
    }

    /// A resumed run drops log lines of epochs its checkpoint does not hold.
    #[test]
    fn resume_drops_log_lines_past_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let b = tmp.path().join("b");
        run_toy(&b, 4, Some(2), false);
        let mut log = read_log(&b.join(LOG_FILE)).unwrap();
        assert_eq!(log.len(), 2 * 4);
        // A line of an epoch 3 that never reached its checkpoint.
        log.push(LogRecord::Step {
            epoch: 3,
            iteration: 7,
            terms: BTreeMap::from([("loss".to_string(), 123.0)]),
        });
        write_log(&b.join(LOG_FILE), &log).unwrap();
        run_toy(&b, 4, None, true);
        let log = read_log(&b.join(LOG_FILE)).unwrap();
        assert_eq!(log.len(), 4 * 4);
        assert!(log.iter().all(|r| match r {
            LogRecord::Step { terms, .. } => terms["loss"] != 123.0,
            _ => true,
        }));
        std::fs::write(b.join(LOG_FILE), "{\"kind\": \"step\"}\n").unwrap();
        let e = read_log(&b.join(LOG_FILE)).unwrap_err().to_string();
        assert!(e.contains(LOG_FILE) && e.contains("line 1"), "{e}");
    }

    /// A run killed after an epoch's checkpoint but before its best files judges that epoch
    /// when it resumes.
    #[test]
    fn resume_repairs_the_best_files_of_the_last_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, straight) = run_toy(&tmp.path().join("a"), 3, Some(2), false);
        let b = tmp.path().join("b");
        let (_, one) = run_toy(&b, 3, Some(1), false);
        let best_one = std::fs::read(b.join(BEST_JSON)).unwrap();
        let (_, two) = run_toy(&b, 3, Some(2), true);
        assert_eq!(two.best, straight.best);
        // Put back epoch 1's best files: the state right after epoch 2's checkpoint.
        std::fs::write(b.join(BEST_JSON), &best_one).unwrap();
        let (_, repaired) = run_toy(&b, 3, Some(2), true);
        assert!(repaired.epoch_stats.is_empty(), "nothing left to train");
        assert_eq!(repaired.best, straight.best);
        assert_eq!(one.best.unwrap().epoch, 1);
        std::fs::remove_file(b.join(BEST_JSON)).unwrap();
        let (_, from_none) = run_toy(&b, 3, Some(2), true);
        assert_eq!(
            from_none.best.unwrap().epoch,
            2,
            "no record: the last epoch is judged"
        );
    }
}
