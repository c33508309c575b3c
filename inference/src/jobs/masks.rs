//! The one-pass pseudo-mask job (`ssc-label masks`, spec §3.1–3.3 then §4.7–4.8). Each
//! image streams through the CAM network, the IRN edge network, the random walk and the
//! pseudo-mask without CAM files in between (they are written only with `--save-cams`).
//!
//! It runs on the bounded pipeline of [`crate::pipeline`]: decode workers read and
//! prepare images; each inference worker owns one CAM session and one IRN session and computes
//! the CAM scale outputs and the edge map; post-processing workers fuse the CAM, run the walk
//! and write the outputs. Memory is bounded by the channel sizes, not by the dataset. Shards,
//! resume, failures and the manifest come from [`crate::batch`]. The CAM stage and the mask
//! writer are those of [`super::cams`] and [`super::pseudo`], so the masks equal what those
//! two jobs write one after the other. The `cvat`, `coco` and `labelstudio` formats add the
//! annotation-tool files of [`crate::outputs`] (§10.6), fed in id order; finished items of a
//! resumed run flow through the pipeline without work so those files stay complete.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use ssc_core::cam::ScaleOutput;
use ssc_core::dataset::{DatasetSpec, Item};

use super::cams::{self, CamFiles, CamStage, CamStageOptions, write_settings};
use super::image_ref;
use super::pseudo::{MaskOptions, MaskOutputs, open_irn};
use crate::batch::{self, Failure, Resumable, RunOptions, Tracker};
use crate::cam::{self, Prepared};
use crate::error::{Context, InferenceError, Result};
use crate::outputs::{OutputOptions, finish_run};
use crate::pipeline;
use crate::refine::{RefineParams, edge_map, refine_with_edge};
use crate::runtime::Model;

/// `ssc-label masks` as a library call: for every image of this shard, the CAM network, the
/// IRN edge network, the random walk and the pseudo-mask `<out>/<id>.png`, in one pass (CAM
/// files only with `save_cams`), plus the files of [`MaskOptions`], the annotation files of
/// `formats`, `masks.json` (the resolved settings) and the manifest. The masks equal what
/// [`crate::jobs::CamsJob`] then [`crate::jobs::PseudoJob`] write.
#[derive(Debug, Clone)]
pub struct MasksJob {
    /// The exported CAM network (`ssc-export --arch cam`).
    pub cam_model: PathBuf,
    /// The exported IRN edge network (`ssc-export --arch irn`).
    pub irn_model: PathBuf,
    /// The dataset whose images are labelled.
    pub dataset: DatasetSpec,
    /// Output folder.
    pub out: PathBuf,
    /// CAM stage options (also the device and library of the IRN sessions).
    pub cam: CamStageOptions,
    /// Also keep the CAMs as `<out>/cams/<id>.safetensors`.
    pub save_cams: bool,
    /// Files beside the masks.
    pub masks: MaskOptions,
    /// Random-walk and background settings.
    pub params: RefineParams,
    /// Annotation-tool formats (`voc` is always added).
    pub formats: OutputOptions,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Shard, resume and reporting.
    pub run: RunOptions,
}

/// The outputs of one item: the mask files, and the CAM file with `--save-cams`.
struct MasksWork {
    masks: MaskOutputs,
    cams: Option<CamFiles>,
}

impl Resumable for MasksWork {
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
    super::write_settings_file(
        &out.join("masks.json"),
        settings,
        Some(overwrite),
        "masks",
        |old| super::differing(old, settings, &["cam", "params", "class_names"]),
    )
}

impl MasksJob {
    /// Runs the job over this shard: returns the manifest (written to `out`), whose failures
    /// list the images that could not be labelled ([`batch::Manifest::into_result`]); `Err`
    /// when the run could not start or its annotation files are incomplete.
    pub fn run(&self) -> Result<batch::Manifest> {
        let ds = super::open_dataset(&self.dataset)?;
        let params = &self.params;
        let mut stage = CamStage::open(&self.cam_model, &self.cam, self.threads, &ds)?;
        let first_irn = open_irn(&self.irn_model, &stage.session)?;
        let opts = &self.run;
        let spec = self.dataset.clone();
        write_run_settings(
            &self.out,
            &serde_json::json!({
                "stage": "masks",
                "cam_model": self.cam_model,
                "irn_model": self.irn_model,
                "class_names": stage.info.class_names,
                "cam": stage.cfg,
                "params": params,
                "dataset": spec,
                "version": env!("CARGO_PKG_VERSION"),
            }),
            opts.overwrite,
        )?;
        let cams = if self.save_cams {
            let dir = self.out.join("cams");
            write_settings(&dir, &stage.settings(spec))?;
            Some(CamFiles {
                dir,
                classes: stage.info.class_names.len(),
            })
        } else {
            None
        };
        let job = MasksWork {
            masks: MaskOutputs::create(
                &self.out,
                &ds.classes,
                self.masks,
                &self.formats,
                opts.shard,
            )?,
            cams,
        };
        job.masks
            .check_ids(ds.items.iter().map(|i| i.id.as_str()))?;

        let pool = batch::thread_pool(Some(stage.threads))?;
        let plan = pool.install(|| batch::plan(&job, &ds.items, opts));
        let todo: HashSet<&str> = plan.todo.iter().map(|i| i.id.as_str()).collect();
        // Every item of the shard in id order: finished ones pass through the pipeline without
        // work and only feed the annotation files, so those are complete and in order.
        let mine = opts
            .shard
            .select(ds.items.iter().collect(), |i: &&Item| &i.id);
        let sink = &job.masks.sink;
        sink.set_order(mine.iter().map(|i| i.id.as_str()))?;
        let tracker = Tracker::new(opts, plan.total, plan.skipped);
        let late: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
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
                None => open_irn(&self.irn_model, &stage.session)?,
            };
            workers.push((cam, irn));
        }
        let pcfg = stage.pipeline_config(workers.len());
        let times = {
            let root = &self.dataset.root;
            let (stage, job, todo) = (&stage, &job, &todo);
            pipeline::run(
                &mine,
                &pcfg,
                workers,
                |item: &&Item| -> Result<Option<(RgbImage, Prepared)>> {
                    // Decode workers take items in order, so the oldest unfinished item is always
                    // past this point and the wait ends.
                    sink.admit(&item.id);
                    if !todo.contains(item.id.as_str()) {
                        return Ok(None);
                    }
                    let image = ssc_core::imageio::read_rgb(&item.image)?;
                    let prep = stage.prepare(&image)?;
                    Ok(Some((image, prep)))
                },
                |(cam_model, irn): &mut (Model, Model),
                 batch: Vec<(usize, Option<(RgbImage, Prepared)>)>| {
                    let n = batch.len();
                    // A panic must not leave the reorder buffer waiting for these items.
                    catch_unwind(AssertUnwindSafe(|| {
                        let fresh: Vec<&Prepared> = batch
                            .iter()
                            .filter_map(|(_, d)| d.as_ref().map(|(_, p)| p))
                            .collect();
                        let mut cams = if fresh.is_empty() {
                            Vec::new()
                        } else {
                            cams::infer_batch(cam_model, fresh)
                        }
                        .into_iter();
                        batch
                            .iter()
                            .map(|(_, d)| {
                                let Some((image, _)) = d else {
                                    return Ok(None);
                                };
                                let (outputs, size) = cams.next().unwrap_or_else(|| {
                                    Err(InferenceError::Invalid(
                                        "CAM network: missing output".into(),
                                    ))
                                })?;
                                let edge = edge_map(irn, image, params.pad_multiple)
                                    .context("IRN edge network")?;
                                Ok(Some(Inferred {
                                    outputs,
                                    size,
                                    edge,
                                }))
                            })
                            .collect()
                    }))
                    .unwrap_or_else(|_| {
                        (0..n)
                            .map(|_| Err(InferenceError::Panic("in inference".into())))
                            .collect()
                    })
                },
                |item: &&Item, inf: Option<Inferred>| {
                    let image = image_ref(root, item);
                    catch_unwind(AssertUnwindSafe(|| {
                        let Some(inf) = inf else {
                            return job.masks.add_existing(&item.id, &image);
                        };
                        let rec = cam::finish(
                            &inf.outputs,
                            inf.size,
                            item.labels.as_deref(),
                            &stage.cfg,
                        )?;
                        if let Some(c) = &job.cams {
                            rec.write(&c.path(item), &item.id)?;
                        }
                        let label =
                            refine_with_edge(&rec, &inf.edge, params).context("random walk")?;
                        job.masks.write(&item.id, &image, &label)
                    }))
                    .unwrap_or_else(|_| Err(InferenceError::Panic("in post-processing".into())))
                },
                |item: &&Item, r: Result<()>| {
                    if r.is_err() {
                        sink.skip(&item.id);
                    }
                    if todo.contains(item.id.as_str()) {
                        tracker.record(&item.id, r);
                    } else if let Err(e) = r {
                        late.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Failure {
                                id: item.id.clone(),
                                message: format!("{e:#}"),
                            });
                    }
                },
            )
        };
        cams::log_stage_times(
            &times,
            ["decode+prepare", "CAM+IRN inference", "walk+write"],
        );
        let manifest = tracker.finish()?;
        let late = late.into_inner().unwrap_or_else(|p| p.into_inner());
        super::report_files(finish_run(job.masks.sink, late)?, opts);
        Ok(manifest)
    }
}
