//! `ssc-label pseudo`: the refinement stage at scale (§4.7–4.8). For every image: its cached
//! CAM file, the exported IRN edge network, the random walk, and the pseudo-mask (palette PNG
//! by default, grey on request), plus optional score stacks and confidence masks.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use ssc_core::cam::CamRecord;
use ssc_core::classes::ClassMap;
use ssc_core::dataset::Item;
use ssc_core::mask::{LabelMap, read_mask, write_grey_png, write_palette_png};
use ssc_core::pseudo::{CONFIDENCE_FRACTION, PseudoLabel};
use ssc_inference::refine::{RefineParams, refine};
use ssc_inference::runtime::{Device, Model, SessionConfig};

use crate::batch::{self, BatchArgs, DatasetArgs, Job, Resumable, RunOptions};

/// Options of `ssc-label pseudo`.
#[derive(clap::Args, Debug)]
pub struct PseudoArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Exported IRN edge network (`ssc-export --arch irn`).
    #[arg(long)]
    pub irn: PathBuf,
    /// Folder of CAM files `<id>.safetensors` (`ssc-label cams`).
    #[arg(long)]
    pub cams: PathBuf,
    /// Output folder: `<id>.png` pseudo-masks.
    #[arg(long)]
    pub out: PathBuf,
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
    /// ONNX Runtime library (else `ORT_DYLIB_PATH`, else `.ort/lib`).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub batch: BatchArgs,
}

/// Where and how pseudo-masks are written: `<out>/<id>.png` (palette, or grey class ids),
/// optionally `<out>/scores/<id>.safetensors` and `<out>/confidence/<id>.png`. Shared by
/// `ssc-label pseudo` and the one-pass `ssc-label masks`, so both write identical files; all
/// mask writing goes through [`MaskOutputs::write`].
#[derive(Debug, Clone)]
pub struct MaskOutputs {
    /// Output folder.
    pub out: PathBuf,
    /// Class names and palette colours.
    pub classes: ClassMap,
    /// Grey PNGs (class ids) instead of palette PNGs.
    pub grey: bool,
    /// Also write score stacks.
    pub scores: bool,
    /// Also write confidence masks.
    pub confidence: bool,
}

impl MaskOutputs {
    /// The mask of `id`.
    pub fn mask_path(&self, id: &str) -> PathBuf {
        mask_path(&self.out, id)
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
            anyhow::bail!(
                "the mask of image `{id}` would overwrite a confidence mask: move the \
                 `confidence` sub-folder or drop --confidence"
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

    /// Writes the outputs of `id`, the mask last: its presence marks the item as done.
    pub fn write(&self, id: &str, label: &PseudoLabel) -> Result<()> {
        let mask = LabelMap::new(label.width, label.height, label.pred.clone())?;
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
        if self.grey {
            write_grey_png(&self.mask_path(id), &mask)?;
        } else {
            write_palette_png(&self.mask_path(id), &mask, &self.classes)?;
        }
        Ok(())
    }
}

struct PseudoJob {
    cams: PathBuf,
    outputs: MaskOutputs,
    params: RefineParams,
    model_path: PathBuf,
    session: SessionConfig,
    /// One ONNX session per concurrent worker (`Session::run` takes `&mut self`).
    models: Mutex<Vec<Model>>,
}

impl PseudoJob {
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

impl Resumable for PseudoJob {
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

impl Job for PseudoJob {
    fn process(&self, item: &Item) -> Result<()> {
        let cam_path = self.cams.join(format!("{}.safetensors", item.id));
        let cam = CamRecord::read(&cam_path)?;
        let image = ssc_core::imageio::read_rgb(&item.image)?;
        let label = self
            .with_model(|m| Ok(refine(m, &image, &cam, &self.params)?))
            .with_context(|| format!("{}: refinement", item.image.display()))?;
        self.outputs.write(&item.id, &label)
    }
}

/// The refinement settings of `--params` (default: the reference's).
pub fn read_params(path: &Option<PathBuf>) -> Result<RefineParams> {
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
    anyhow::ensure!(
        model.info().arch == "irn",
        "{}: not an IRN edge model (arch `{}`)",
        path.display(),
        model.info().arch
    );
    Ok(model)
}

/// Runs `ssc-label pseudo`.
pub fn run(args: &PseudoArgs) -> Result<()> {
    ssc_inference::runtime::init(args.ort_lib.as_deref())?;
    let ds = args.data.open()?;
    let params = read_params(&args.params)?;
    let settings = serde_json::json!({
        "stage": "pseudo",
        "irn": args.irn,
        "cams": args.cams,
        "params": params,
        "dataset": args.data.spec()?,
        "version": env!("CARGO_PKG_VERSION"),
    });
    ssc_core::atomic::write(
        &args.out.join("pseudo.json"),
        &serde_json::to_vec_pretty(&settings)?,
    )?;
    let session = SessionConfig {
        device: args.device.parse::<Device>()?,
        library: args.ort_lib.clone(),
        ..SessionConfig::default()
    };
    // Fail early, before the run, on a bad model file.
    let first = open_irn(&args.irn, &session)?;
    let job = PseudoJob {
        cams: args.cams.clone(),
        outputs: MaskOutputs {
            out: args.out.clone(),
            classes: ds.classes.clone(),
            grey: args.grey,
            scores: args.scores,
            confidence: args.confidence,
        },
        params,
        model_path: args.irn.clone(),
        session,
        models: Mutex::new(vec![first]),
    };
    job.outputs
        .check_ids(ds.items.iter().map(|i| i.id.as_str()))?;
    let opts = RunOptions::from_args("ssc-label pseudo", &args.out, &args.batch)?;
    let pool = batch::thread_pool(args.batch.threads)?;
    let manifest = pool.install(|| batch::run(&job, &ds.items, &opts))?;
    manifest.into_result().map(|_| ())
}

/// Where `ssc-label pseudo` writes the mask of `id` (for tests and scripts).
pub fn mask_path(out: &Path, id: &str) -> PathBuf {
    out.join(format!("{id}.png"))
}
