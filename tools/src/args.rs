//! The command-line options the batch tools share (clap structs flattened into each tool's
//! command line) and their conversion into the library's options (`ssc_inference::batch`,
//! `ssc_inference::outputs`, `ssc_inference::jobs`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ValueEnum;
use ssc_core::formats::coco::{CocoMode, CocoOptions, CocoOutput};
use ssc_core::formats::cvat::{CvatOptions, IgnoreAs};
use ssc_core::formats::labelstudio::LabelStudioOptions;
use ssc_inference::batch::{RunOptions, Shard};
use ssc_inference::cam::CamConfig;
use ssc_inference::jobs::{self, CamStageOptions};
use ssc_inference::outputs::{Format, OutputOptions};

/// Command-line options every batch tool shares (flatten into the tool's clap struct).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BatchArgs {
    /// Process shard I of N (`I/N`, 0-based). Default: from SLURM_ARRAY_TASK_ID or
    /// JOB_COMPLETION_INDEX, else everything.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Number of shards when the index comes from JOB_COMPLETION_INDEX (Kubernetes indexed
    /// jobs; also `SSC_NUM_SHARDS`).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Redo every item even when its output exists.
    #[arg(long)]
    pub overwrite: bool,
}

impl BatchArgs {
    /// The shard these options and the environment select.
    pub fn shard(&self) -> Result<Shard> {
        Ok(Shard::resolve(self.shard.as_deref(), self.shards)?)
    }
}

/// Command-line options naming the dataset a batch tool reads (flatten into the tool's clap
/// struct).
#[derive(clap::Args, Debug, Clone)]
pub struct DatasetArgs {
    /// Dataset layout: `voc`, `coco` or `folder`.
    #[arg(long, default_value = "voc")]
    pub dataset: String,
    /// Dataset root (`VOC2012/`, `coco/`, or the image folder).
    #[arg(long)]
    pub root: PathBuf,
    /// Split (VOC: `train`, `val`, `train_aug`…; COCO: `train`/`val`; ignored for folders).
    #[arg(long)]
    pub split: Option<String>,
    /// Image-level label file instead of the layout's default.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Classes: `voc`, `coco` or a class-list file (default: the layout's own).
    #[arg(long)]
    pub classes: Option<String>,
}

impl DatasetArgs {
    /// The serialisable dataset spec (written beside the outputs).
    pub fn spec(&self) -> Result<ssc_core::dataset::DatasetSpec> {
        let kind: ssc_core::dataset::DatasetKind = self.dataset.parse()?;
        let mut spec = ssc_core::dataset::DatasetSpec::new(kind, &self.root, self.split.as_deref());
        spec.labels = self.labels.clone();
        spec.classes = self.classes.clone();
        Ok(spec)
    }

    /// Opens the dataset, naming the root in errors (an empty dataset is an error).
    pub fn open(&self) -> Result<ssc_core::dataset::Dataset> {
        Ok(jobs::open_dataset(&self.spec()?)?)
    }
}

impl BatchArgs {
    /// The run options of `tool` writing to `out_dir` (progress bar and printed summary on).
    pub fn run_options(&self, tool: &str, out_dir: &Path) -> Result<RunOptions> {
        let args = self;
        Ok(RunOptions {
            tool: tool.to_string(),
            out_dir: out_dir.to_path_buf(),
            shard: args.shard()?,
            overwrite: args.overwrite,
            progress: true,
        })
    }
}

/// COCO annotations per class or per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CocoModeArg {
    /// One crowd annotation per class present in an image.
    Class,
    /// One annotation per connected component.
    Instance,
}

/// How CVAT zips carry ignore pixels (255).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IgnoreArg {
    /// Paint ignore pixels as background.
    Background,
    /// Declare an `ignore` label in the VOC void colour (read back as 255).
    Label,
}

/// The output-format options every labelling tool shares (flatten into its clap struct).
#[derive(clap::Args, Debug, Clone)]
pub struct FormatArgs {
    /// Output formats (repeat or separate with commas): voc, cvat, coco, labelstudio.
    #[arg(
        long = "format",
        visible_alias = "to",
        value_enum,
        value_delimiter = ',',
        default_value = "voc"
    )]
    pub formats: Vec<Format>,
    /// COCO: annotations per class (`iscrowd` 1) or per connected instance.
    #[arg(long, value_enum, default_value = "class")]
    pub coco_mode: CocoModeArg,
    /// COCO: write the results format (`[{image_id, category_id, segmentation, score}]`, for
    /// evaluating predictions) instead of a dataset file.
    #[arg(long)]
    pub coco_results: bool,
    /// CVAT: how ignore pixels are written.
    #[arg(long, value_enum, default_value = "background")]
    pub cvat_ignore: IgnoreArg,
    /// Label Studio: prefix of `data.image` (local-files serving by default).
    #[arg(long, default_value = "/data/local-files/?d=")]
    pub image_prefix: String,
    /// Label Studio: name of the BrushLabels control (`from_name`).
    #[arg(long, default_value = "tag")]
    pub from_name: String,
    /// Label Studio: name of the Image object (`to_name`).
    #[arg(long, default_value = "image")]
    pub to_name: String,
    /// Label Studio: `model_version` of the predictions.
    #[arg(long, default_value = "ssc")]
    pub model_version: String,
}

impl Default for FormatArgs {
    fn default() -> Self {
        FormatArgs {
            formats: vec![Format::Voc],
            coco_mode: CocoModeArg::Class,
            coco_results: false,
            cvat_ignore: IgnoreArg::Background,
            image_prefix: "/data/local-files/?d=".into(),
            from_name: "tag".into(),
            to_name: "image".into(),
            model_version: "ssc".into(),
        }
    }
}

impl FormatArgs {
    /// The library's output options.
    pub fn options(&self) -> OutputOptions {
        OutputOptions {
            formats: self.formats.clone(),
            coco: self.coco(),
            cvat: self.cvat(),
            labelstudio: self.labelstudio(),
        }
    }

    /// Label Studio writer / config options.
    pub fn labelstudio(&self) -> LabelStudioOptions {
        LabelStudioOptions {
            image_prefix: self.image_prefix.clone(),
            from_name: self.from_name.clone(),
            to_name: self.to_name.clone(),
            model_version: self.model_version.clone(),
        }
    }

    /// COCO writer options.
    pub fn coco(&self) -> CocoOptions {
        CocoOptions {
            mode: match self.coco_mode {
                CocoModeArg::Class => CocoMode::PerClass,
                CocoModeArg::Instance => CocoMode::PerInstance,
            },
            output: if self.coco_results {
                CocoOutput::Results
            } else {
                CocoOutput::Dataset
            },
            ..Default::default()
        }
    }

    /// CVAT writer options.
    pub fn cvat(&self) -> CvatOptions {
        CvatOptions {
            ignore: match self.cvat_ignore {
                IgnoreArg::Background => IgnoreAs::Background,
                IgnoreArg::Label => IgnoreAs::Label,
            },
            ..Default::default()
        }
    }
}

/// Options of the CAM stage shared by `ssc-label cams` and `ssc-label masks`.
#[derive(clap::Args, Debug, Clone)]
pub struct CamOptions {
    /// Keep the classes the model finds instead of the dataset's image labels (score: mean of
    /// the flip-averaged ReLU CAM at scale 1.0, in logit units).
    #[arg(long)]
    pub predict_labels: bool,
    /// Score above which a class counts as present with --predict-labels (the best class is
    /// always kept).
    #[arg(long, default_value_t = 0.5)]
    pub label_threshold: f32,
    /// Image scales, comma-separated.
    #[arg(long, default_value = "1.0,0.5,1.5,2.0", value_delimiter = ',')]
    pub scales: Vec<f64>,
    /// Most images per network run (same-sized images are batched together).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The ONNX Runtime library (else ORT_DYLIB_PATH, else `.ort/lib` from
    /// `scripts/setup-ort.sh`).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

impl CamOptions {
    /// The library's CAM stage options (validated when the stage opens).
    pub fn stage_options(&self) -> Result<CamStageOptions> {
        Ok(CamStageOptions {
            config: CamConfig {
                scales: self.scales.clone(),
                predict_labels: self.predict_labels,
                label_threshold: self.label_threshold,
            },
            batch: self.batch,
            device: self.device.parse()?,
            ort_lib: self.ort_lib.clone(),
        })
    }
}
