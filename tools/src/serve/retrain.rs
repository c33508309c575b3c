//! Retraining on annotators' corrections and swapping the served model (annotation-tool
//! integration, closing the loop): after `after` new corrections (or on Label Studio's train
//! call) one background job runs a [`Retrainer`] on the corrections folder; when it succeeds,
//! the new segmenters replace the served ones and `model_version` changes. Requests that
//! started before the swap finish on the old model (both are in memory for that while); a
//! failed retrain keeps the old model and reports why in `/health` and the log.
//!
//! The HTTP layer only knows the trait; the binary's [`Retrainer`] runs `ssc-train deeplab
//! --init … --corrections …` and exports the result (see `ssc-serve --retrain-run`).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::predictor::Segmenter;

/// A retrained model, ready to serve.
pub struct Retrained {
    /// One segmenter per worker.
    pub segmenters: Vec<Box<dyn Segmenter>>,
    /// Its `model_version` (must differ from the served one).
    pub model_version: String,
}

/// Trains a new model on the corrections in a folder. Runs on a background thread, one job at
/// a time; an `Err` is a message for the user (what failed, where its log is).
pub trait Retrainer: Send + Sync {
    /// Round `round` (1, 2, …) of retraining on every correction stored in `corrections`.
    fn retrain(&self, corrections: &Path, round: usize) -> Result<Retrained, String>;
}

/// When to retrain.
#[derive(Clone)]
pub struct RetrainPolicy {
    /// Retrain once this many corrections arrived since the last retrain (`None`: only on
    /// the train call).
    pub after: Option<usize>,
    /// The job.
    pub retrainer: Arc<dyn Retrainer>,
}

/// Where retraining stands (reported by `/health`).
#[derive(Debug, Default, Clone)]
pub struct RetrainState {
    /// A job is running.
    pub running: bool,
    /// Corrections stored since the last job started.
    pub pending: usize,
    /// Jobs started.
    pub started: usize,
    /// Jobs that produced a model now served.
    pub succeeded: usize,
    /// Jobs that failed (the model stayed).
    pub failed: usize,
    /// The last failure's message, until a job succeeds.
    pub last_error: Option<String>,
    /// The last job's wall time in seconds.
    pub last_seconds: Option<f64>,
}

impl RetrainState {
    /// `/health`'s `retrain` object.
    pub fn to_json(&self, after: Option<usize>) -> Value {
        let state = if self.running {
            "running"
        } else if self.last_error.is_some() {
            "failed"
        } else {
            "idle"
        };
        json!({
            "state": state,
            "after": after,
            "pending_corrections": self.pending,
            "rounds_started": self.started,
            "rounds_succeeded": self.succeeded,
            "rounds_failed": self.failed,
            "last_error": self.last_error,
            "last_seconds": self.last_seconds,
        })
    }

    /// Takes a job if one is due (none running; forced, or `after` corrections pending):
    /// marks it running and returns its round number.
    pub fn take_job(&mut self, after: Option<usize>, force: bool) -> Option<usize> {
        let due = force || after.is_some_and(|n| self.pending >= n.max(1));
        if self.running || !due {
            return None;
        }
        self.running = true;
        self.pending = 0;
        self.started += 1;
        Some(self.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_at_a_time_when_due() {
        let mut s = RetrainState::default();
        assert_eq!(s.take_job(Some(3), false), None);
        s.pending = 3;
        assert_eq!(s.take_job(Some(3), false), Some(1));
        assert_eq!(s.pending, 0);
        s.pending = 5;
        assert_eq!(s.take_job(Some(3), true), None, "one job at a time");
        s.running = false;
        assert_eq!(s.take_job(None, false), None, "train call only");
        assert_eq!(s.take_job(None, true), Some(2));
        assert_eq!(s.to_json(None)["state"], "running");
    }
}
