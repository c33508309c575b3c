//! The pseudo-mask job (`ssc-label pseudo`, spec §4.7–4.8): the refinement stage at scale. For
//! every image: its cached CAM file, the exported IRN edge network, the random walk, and the
//! pseudo-mask (palette PNG by default, grey on request), plus optional score stacks and
//! confidence masks, and the CVAT / COCO / Label Studio files (§10.6, [`crate::outputs`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ssc_core::cam::CamRecord;
use ssc_core::classes::ClassMap;
use ssc_core::dataset::DatasetSpec;
use ssc_core::dataset::Item;
use ssc_core::formats::MaskSource;
use ssc_core::mask::{LabelMap, read_mask, write_grey_png};
use ssc_core::pseudo::{CONFIDENCE_FRACTION, PseudoLabel};

use super::image_ref;
use crate::batch::{self, Resumable, RunOptions, Shard, Tracker};
use crate::error::{Context, InferenceError, Result, bail};
use crate::outputs::{Format, OutputOptions, OutputPaths, Outputs, finish_run, run_in_order};
use crate::refine::{RefineParams, refine};
use crate::runtime::{Model, SessionConfig};

/// Which files beside each pseudo-mask PNG a job writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskOptions {
    /// Grey PNGs (class ids) instead of palette PNGs.
    pub grey: bool,
    /// Also the score stacks `scores/<id>.safetensors` ((K+1)×H×W, §4.7).
    pub scores: bool,
    /// Also the confidence masks `confidence/<id>.png` (0/255, §4.8).
    pub confidence: bool,
}

/// `ssc-label pseudo` as a library call: for every image of this shard, its CAM file, the
/// IRN edge network, the random walk and the pseudo-mask `<out>/<id>.png` (always written,
/// whatever the formats), the files of [`MaskOptions`], the annotation files of `formats`,
/// `pseudo.json` (the resolved settings) and the manifest.
#[derive(Debug, Clone)]
pub struct PseudoJob {
    /// The dataset whose images are labelled.
    pub dataset: DatasetSpec,
    /// The exported IRN edge network (`ssc-export --arch irn`).
    pub irn: PathBuf,
    /// Folder of CAM files `<id>.safetensors` ([`crate::jobs::CamsJob`]).
    pub cams: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Files beside the masks.
    pub masks: MaskOptions,
    /// Random-walk and background settings.
    pub params: RefineParams,
    /// Device and ONNX Runtime library of the IRN sessions.
    pub session: SessionConfig,
    /// Annotation-tool formats (`voc` is always added).
    pub formats: OutputOptions,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Shard, resume and reporting.
    pub run: RunOptions,
}

/// Where and how pseudo-masks are written: `<out>/<id>.png` (palette, or grey class ids),
/// optionally `<out>/scores/<id>.safetensors` and `<out>/confidence/<id>.png`, plus the
/// annotation-tool files of the formats ([`crate::outputs`]). Shared by [`PseudoJob`] and the
/// one-pass [`crate::jobs::MasksJob`], so both write identical files; all mask writing goes
/// through [`MaskOutputs::write`], whose PNG is the one [`crate::outputs`] writes for `voc`.
pub struct MaskOutputs {
    /// Output folder.
    pub out: PathBuf,
    /// Class names and palette colours.
    pub classes: ClassMap,
    /// Also write score stacks.
    pub scores: bool,
    /// Also write confidence masks.
    pub confidence: bool,
    /// The PNG masks and the aggregate files, fed in id order (see [`crate::outputs`]).
    pub sink: Outputs,
}

impl MaskOutputs {
    /// Opens the outputs of one shard. The PNG masks are the product of the stage and what
    /// resume relies on, so `voc` is always among the formats (the others are added).
    pub fn create(
        out: &Path,
        classes: &ClassMap,
        masks: MaskOptions,
        formats: &OutputOptions,
        shard: Shard,
    ) -> Result<Self> {
        let mut formats = formats.clone();
        if !formats.formats.contains(&Format::Voc) {
            formats.formats.insert(0, Format::Voc);
        }
        let sink = Outputs::create(OutputPaths::flat(out, shard), classes, &formats)?
            .with_grey(masks.grey);
        Ok(MaskOutputs {
            out: out.to_path_buf(),
            classes: classes.clone(),
            scores: masks.scores,
            confidence: masks.confidence,
            sink,
        })
    }

    /// The mask of `id`.
    pub fn mask_path(&self, id: &str) -> PathBuf {
        self.sink.mask_path(id)
    }
    /// The score stack of `id`.
    pub fn score_path(&self, id: &str) -> PathBuf {
        self.out.join("scores").join(format!("{id}.safetensors"))
    }
    /// The confidence mask of `id`.
    pub fn confidence_path(&self, id: &str) -> PathBuf {
        self.out.join("confidence").join(format!("{id}.png"))
    }

    /// Every file written for `id`.
    pub fn outputs(&self, id: &str) -> Vec<PathBuf> {
        let mut v = vec![self.mask_path(id)];
        if self.scores {
            v.push(self.score_path(id));
        }
        if self.confidence {
            v.push(self.confidence_path(id));
        }
        v
    }

    /// Refuses ids whose mask would overwrite another image's confidence mask (an image
    /// folder with a `confidence/` sub-folder while confidence masks are requested).
    pub fn check_ids<'a>(&self, mut ids: impl Iterator<Item = &'a str>) -> Result<()> {
        if !self.confidence {
            return Ok(());
        }
        if let Some(id) = ids.find(|id| id.starts_with("confidence/")) {
            bail!(
                "the mask of image `{id}` would overwrite a confidence mask: move the \
                 `confidence` sub-folder or drop the confidence masks (--confidence)"
            );
        }
        Ok(())
    }

    /// Done when every output exists and the mask decodes with the image's size.
    pub fn is_done(&self, item: &Item) -> bool {
        if !self.outputs(&item.id).iter().all(|p| p.is_file()) {
            return false;
        }
        let Ok(mask) = read_mask(&self.mask_path(&item.id), &self.classes) else {
            return false;
        };
        ssc_core::imageio::image_size(&item.image).ok()
            == Some((mask.width as u32, mask.height as u32))
    }

    /// Writes the outputs of `id` (`image`: the image path the annotation files reference),
    /// the mask last: its presence marks the item as done.
    pub fn write(&self, id: &str, image: &str, label: &PseudoLabel) -> Result<()> {
        if self.scores {
            label.save_scores(&self.score_path(id))?;
        }
        if self.confidence {
            let conf = label.confidence_mask(CONFIDENCE_FRACTION)?;
            write_grey_png(
                &self.confidence_path(id),
                &LabelMap::new(label.width, label.height, conf)?,
            )?;
        }
        let mask = MaskSource::new(
            id,
            label.width as u32,
            label.height as u32,
            label.pred.clone(),
        )?
        .with_image(image)
        .with_scores(class_scores(label, self.classes.len()));
        self.sink.add(mask)
    }

    /// Feeds an item finished by an earlier run to the annotation files, with its class
    /// scores when its score stack was kept.
    pub fn add_existing(&self, id: &str, image: &str) -> Result<()> {
        if !self.sink.has_aggregates() {
            return Ok(());
        }
        let path = self.score_path(id);
        let scores = (self.scores && path.is_file())
            .then(|| PseudoLabel::load_scores(&path))
            .transpose()?
            .map(|l| class_scores(&l, self.classes.len()));
        self.sink.add_existing(id, image, scores)
    }
}

/// Per-class scores of a pseudo-label for the annotation files (COCO results `score`, Label
/// Studio `score`): the mean walk score (channel 0: the background score) over the pixels
/// labelled with the class, clamped to `[0, 1]`; 0 for absent classes.
pub fn class_scores(label: &PseudoLabel, classes: usize) -> Vec<f32> {
    let n = label.width * label.height;
    let mut channel: Vec<Option<usize>> = vec![None; classes];
    if let Some(bg) = channel.first_mut() {
        *bg = Some(0);
    }
    for (i, &k) in label.keys.iter().enumerate() {
        if let Some(c) = channel.get_mut(k + 1) {
            *c = Some(i + 1);
        }
    }
    let mut sum = vec![0f64; classes];
    let mut count = vec![0u64; classes];
    for (p, &c) in label.pred.iter().enumerate() {
        let c = c as usize;
        if let Some(&Some(ch)) = channel.get(c) {
            sum[c] += label.score.get(ch * n + p).copied().unwrap_or(0.0) as f64;
            count[c] += 1;
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(&s, &k)| {
            if k == 0 {
                0.0
            } else {
                ((s / k as f64) as f32).clamp(0.0, 1.0)
            }
        })
        .collect()
}

/// The per-item work of a [`PseudoJob`] run.
struct PseudoWork {
    cams: PathBuf,
    root: PathBuf,
    outputs: MaskOutputs,
    params: RefineParams,
    model_path: PathBuf,
    session: SessionConfig,
    /// One ONNX session per concurrent worker (`Session::run` takes `&mut self`).
    models: Mutex<Vec<Model>>,
}

impl PseudoWork {
    fn with_model<T>(&self, f: impl FnOnce(&mut Model) -> Result<T>) -> Result<T> {
        let taken = self.models.lock().expect("model pool").pop();
        let mut model = match taken {
            Some(m) => m,
            None => Model::open(&self.model_path, &self.session)?,
        };
        let r = f(&mut model);
        self.models.lock().expect("model pool").push(model);
        r
    }
}

impl Resumable for PseudoWork {
    type Item = Item;

    fn id<'a>(&self, item: &'a Item) -> &'a str {
        &item.id
    }

    fn outputs(&self, item: &Item) -> Vec<PathBuf> {
        self.outputs.outputs(&item.id)
    }

    fn is_done(&self, item: &Item) -> bool {
        self.outputs.is_done(item)
    }
}

impl PseudoWork {
    fn process(&self, item: &Item) -> Result<()> {
        let cam_path = self.cams.join(format!("{}.safetensors", item.id));
        let cam = CamRecord::read(&cam_path)?;
        let image = ssc_core::imageio::read_rgb(&item.image)?;
        let label = self
            .with_model(|m| refine(m, &image, &cam, &self.params))
            .with_context(|| format!("{}: refinement", item.image.display()))?;
        self.outputs
            .write(&item.id, &image_ref(&self.root, item), &label)
    }
}

/// Refinement settings from a JSON file (`None`: the reference's).
pub fn read_params(path: Option<&Path>) -> Result<RefineParams> {
    match path {
        None => Ok(RefineParams::default()),
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("{}: not refine params", p.display()))
        }
    }
}

/// Opens an exported IRN edge network, refusing any other kind of model.
pub fn open_irn(path: &Path, session: &SessionConfig) -> Result<Model> {
    let model = Model::open(path, session)?;
    if model.info().arch != "irn" {
        return Err(InferenceError::WrongModel {
            path: path.to_path_buf(),
            arch: model.info().arch.clone(),
            expected: "irn",
        });
    }
    Ok(model)
}

impl PseudoJob {
    /// Runs the job over this shard: returns the manifest (written to `out`), whose failures
    /// list the images that could not be labelled ([`batch::Manifest::into_result`]); `Err`
    /// when the run could not start or its annotation files are incomplete.
    pub fn run(&self) -> Result<batch::Manifest> {
        crate::runtime::init(self.session.library.as_deref())?;
        let ds = super::open_dataset(&self.dataset)?;
        let settings = serde_json::json!({
            "stage": "pseudo",
            "irn": self.irn,
            "cams": self.cams,
            "params": self.params,
            "dataset": self.dataset,
            "version": env!("CARGO_PKG_VERSION"),
        });
        ssc_core::atomic::write(
            &self.out.join("pseudo.json"),
            &serde_json::to_vec_pretty(&settings)?,
        )?;
        // Fail early, before the run, on a bad model file.
        let first = open_irn(&self.irn, &self.session)?;
        let opts = &self.run;
        let job = PseudoWork {
            cams: self.cams.clone(),
            root: self.dataset.root.clone(),
            outputs: MaskOutputs::create(
                &self.out,
                &ds.classes,
                self.masks,
                &self.formats,
                opts.shard,
            )?,
            params: self.params.clone(),
            model_path: self.irn.clone(),
            session: self.session.clone(),
            models: Mutex::new(vec![first]),
        };
        job.outputs
            .check_ids(ds.items.iter().map(|i| i.id.as_str()))?;
        let pool = batch::thread_pool(self.threads)?;
        let plan = pool.install(|| batch::plan(&job, &ds.items, opts));
        let todo: HashSet<&str> = plan.todo.iter().map(|i| i.id.as_str()).collect();
        // Every item of the shard in id order; finished ones only feed the aggregate files.
        let mine = opts
            .shard
            .select(ds.items.iter().collect(), |i: &&Item| &i.id);
        let sink = &job.outputs.sink;
        sink.set_order(mine.iter().map(|i| i.id.as_str()))?;
        let tracker = Tracker::new(opts, plan.total, plan.skipped);
        let late = run_in_order(
            &pool,
            sink,
            &mine,
            &todo,
            |i: &Item| i.id.as_str(),
            |i| job.outputs.add_existing(&i.id, &image_ref(&job.root, i)),
            |i| job.process(i),
            &tracker,
        );
        let manifest = tracker.finish()?;
        super::report_files(finish_run(job.outputs.sink, late)?, opts);
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_scores_average_the_walk_score_of_each_label() {
        // 2×2 image, foreground class keys 1 and 3 (dataset ids 2 and 4), 5 classes.
        let label = PseudoLabel {
            height: 2,
            width: 2,
            score: vec![
                0.25, 0.25, 0.25, 0.25, // background channel
                0.9, 0.5, 0.0, 0.1, // class id 2
                0.0, 0.2, 0.8, 2.0, // class id 4 (out-of-range score is clamped)
            ],
            pred: vec![2, 2, 4, 4],
            keys: vec![1, 3],
        };
        let s = class_scores(&label, 5);
        assert_eq!(s.len(), 5);
        assert!((s[2] - 0.7).abs() < 1e-6, "{s:?}");
        assert_eq!((s[0], s[1], s[3], s[4]), (0.0, 0.0, 0.0, 1.0));
        let bg = PseudoLabel {
            pred: vec![0, 0, 2, 0],
            ..label
        };
        let s = class_scores(&bg, 5);
        assert_eq!((s[0], s[2]), (0.25, 0.0));
    }

    #[test]
    fn grey_masks_and_annotation_files_come_from_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let classes = ClassMap::voc();
        let formats = OutputOptions::new(&[Format::Coco]);
        let masks = MaskOptions {
            grey: true,
            scores: false,
            confidence: true,
        };
        let out = MaskOutputs::create(dir.path(), &classes, masks, &formats, Shard::ALL).unwrap();
        let label = PseudoLabel {
            height: 1,
            width: 2,
            score: vec![0.25, 0.25, 0.1, 0.6],
            pred: vec![0, 3],
            keys: vec![2],
        };
        out.sink.set_order(["a"]).unwrap();
        out.write("a", "JPEGImages/a.jpg", &label).unwrap();
        // the PNG is written although only `coco` was asked for, as a grey PNG
        let png = image::open(out.mask_path("a")).unwrap();
        assert_eq!(png.to_luma8().into_raw(), vec![0, 3]);
        assert!(out.confidence_path("a").is_file());
        crate::outputs::finish_run(out.sink, Vec::new()).unwrap();
        let coco: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("coco.json")).unwrap()).unwrap();
        assert_eq!(coco["images"][0]["file_name"], "JPEGImages/a.jpg");
    }
}
