//! `ssc-label masks`: the whole pseudo-label stage in one pass (§3.1–3.3 then §4.7–4.8). Each
//! image streams through the CAM network, the IRN edge network, the random walk and the
//! pseudo-mask without CAM files in between (they are written only with `--save-cams`).
//!
//! It runs on the bounded pipeline of `ssc_inference::pipeline`: decode workers read and
//! prepare images; each inference worker owns one CAM session and one IRN session and computes
//! the CAM scale outputs and the edge map; post-processing workers fuse the CAM, run the walk
//! and write the outputs. Memory is bounded by the channel sizes, not by the dataset. Shards,
//! resume, failures and the manifest come from `crate::batch`. The CAM stage and the mask
//! writer are those of `ssc-label cams` and `ssc-label pseudo`, so the masks equal what those
//! two commands write one after the other.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::RgbImage;
use ssc_core::cam::ScaleOutput;
use ssc_core::dataset::Item;
use ssc_inference::cam::{self, Prepared};
use ssc_inference::pipeline;
use ssc_inference::refine::{RefineParams, edge_map, refine_with_edge};
use ssc_inference::runtime::Model;

use crate::batch::{self, BatchArgs, DatasetArgs, Resumable, RunOptions, Tracker};
use crate::label_cams::{self, CamFiles, CamOptions, CamStage, write_settings};
use crate::label_pseudo::{MaskOutputs, open_irn, read_params};

/// Options of `ssc-label masks`.
#[derive(clap::Args, Debug)]
pub struct MasksArgs {
    /// The exported CAM network (`ssc-export --arch cam`).
    #[arg(long)]
    pub cam_model: PathBuf,
    /// The exported IRN edge network (`ssc-export --arch irn`).
    #[arg(long)]
    pub irn_model: PathBuf,
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Output folder: `<id>.png` masks (sub-folders of image folders are kept), `masks.json`,
    /// `manifest.<i>-of-<n>.json`.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub cam: CamOptions,
    /// Also keep the CAMs as `<out>/cams/<id>.safetensors` (what `ssc-label cams` writes).
    #[arg(long)]
    pub save_cams: bool,
    /// Write grey PNGs (class ids) instead of palette PNGs.
    #[arg(long)]
    pub grey: bool,
    /// Also write the score stacks `scores/<id>.safetensors` ((K+1)×H×W, §4.7).
    #[arg(long)]
    pub scores: bool,
    /// Also write confidence masks `confidence/<id>.png` (0/255, §4.8).
    #[arg(long)]
    pub confidence: bool,
    /// Random-walk / background settings as JSON (`RefineParams`); default: the reference's.
    #[arg(long)]
    pub params: Option<PathBuf>,
    #[command(flatten)]
    pub batch_args: BatchArgs,
}

/// The outputs of one item: the mask files, and the CAM file with `--save-cams`.
struct MasksJob {
    masks: MaskOutputs,
    cams: Option<CamFiles>,
}

impl Resumable for MasksJob {
    type Item = Item;

    fn id<'a>(&self, item: &'a Item) -> &'a str {
        &item.id
    }

    fn outputs(&self, item: &Item) -> Vec<PathBuf> {
        let mut v = self.masks.outputs(&item.id);
        if let Some(c) = &self.cams {
            v.push(c.path(item));
        }
        v
    }

    fn is_done(&self, item: &Item) -> bool {
        self.masks.is_done(item) && self.cams.as_ref().is_none_or(|c| c.is_done(item))
    }
}

/// What an inference worker hands to post-processing.
struct Inferred {
    outputs: Vec<ScaleOutput>,
    size: (usize, usize),
    edge: Vec<f32>,
}

/// Writes `masks.json`, refusing a folder whose masks were made with other CAM or walk
/// settings (a resumed run would mix them) unless everything is redone.
fn write_run_settings(out: &Path, settings: &serde_json::Value, overwrite: bool) -> Result<()> {
    let path = out.join("masks.json");
    if path.is_file() && !overwrite {
        let old: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        for key in ["cam", "params", "class_names"] {
            if old.get(key) != settings.get(key) {
                bail!(
                    "{} holds masks made with other `{key}` settings; choose another --out, \
                     delete the folder or pass --overwrite",
                    path.display()
                );
            }
        }
    }
    ssc_core::atomic::write(&path, &serde_json::to_vec_pretty(settings)?)?;
    Ok(())
}

/// Runs `ssc-label masks`.
pub fn run(args: &MasksArgs) -> Result<()> {
    let ds = args.data.open()?;
    let params: RefineParams = read_params(&args.params)?;
    let mut stage = CamStage::open(&args.cam_model, &args.cam, args.batch_args.threads, &ds)?;
    let first_irn = open_irn(&args.irn_model, &stage.session)?;
    let opts = RunOptions::from_args("ssc-label masks", &args.out, &args.batch_args)?;
    let spec = args.data.spec()?;
    write_run_settings(
        &args.out,
        &serde_json::json!({
            "stage": "masks",
            "cam_model": args.cam_model,
            "irn_model": args.irn_model,
            "class_names": stage.info.class_names,
            "cam": stage.cfg,
            "params": params,
            "dataset": spec,
            "version": env!("CARGO_PKG_VERSION"),
        }),
        args.batch_args.overwrite,
    )?;
    let cams = if args.save_cams {
        let dir = args.out.join("cams");
        write_settings(&dir, &stage.settings(spec))?;
        Some(CamFiles {
            dir,
            classes: stage.info.class_names.len(),
        })
    } else {
        None
    };
    let job = MasksJob {
        masks: MaskOutputs {
            out: args.out.clone(),
            classes: ds.classes.clone(),
            grey: args.grey,
            scores: args.scores,
            confidence: args.confidence,
        },
        cams,
    };
    job.masks
        .check_ids(ds.items.iter().map(|i| i.id.as_str()))?;

    let pool = batch::thread_pool(Some(stage.threads))?;
    let plan = pool.install(|| batch::plan(&job, &ds.items, &opts));
    let tracker = Tracker::new(&opts, plan.total, plan.skipped);
    let n = if plan.todo.is_empty() {
        1
    } else {
        stage.workers()
    };
    let mut workers = Vec::with_capacity(n);
    let mut irns = vec![first_irn];
    for cam in stage.sessions(n)? {
        let irn = match irns.pop() {
            Some(m) => m,
            None => open_irn(&args.irn_model, &stage.session)?,
        };
        workers.push((cam, irn));
    }
    let pcfg = stage.pipeline_config(workers.len());
    let (stage, params, job) = (&stage, &params, &job);
    let times = pipeline::run(
        &plan.todo,
        &pcfg,
        workers,
        |item: &&Item| -> Result<(RgbImage, Prepared)> {
            let image = ssc_core::imageio::read_rgb(&item.image)?;
            let prep = stage.prepare(&image)?;
            Ok((image, prep))
        },
        |(cam_model, irn): &mut (Model, Model), batch: Vec<(usize, (RgbImage, Prepared))>| {
            let cams = label_cams::infer_batch(cam_model, batch.iter().map(|(_, (_, p))| p));
            cams.into_iter()
                .zip(&batch)
                .map(|(r, (_, (image, _)))| {
                    let (outputs, size) = r?;
                    let edge =
                        edge_map(irn, image, params.pad_multiple).context("IRN edge network")?;
                    Ok(Inferred {
                        outputs,
                        size,
                        edge,
                    })
                })
                .collect()
        },
        |item: &&Item, inf: Inferred| {
            let rec = cam::finish(&inf.outputs, inf.size, item.labels.as_deref(), &stage.cfg)?;
            if let Some(c) = &job.cams {
                rec.write(&c.path(item), &item.id)?;
            }
            let label = refine_with_edge(&rec, &inf.edge, params).context("random walk")?;
            job.masks.write(&item.id, &label)
        },
        |item: &&Item, r: Result<()>| tracker.record(&item.id, r),
    );
    label_cams::log_stage_times(
        &times,
        ["decode+prepare", "CAM+IRN inference", "walk+write"],
    );
    tracker.finish()?.into_result().map(|_| ())
}
