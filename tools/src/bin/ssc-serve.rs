//! `ssc-serve`: Label Studio ML backend pre-annotating images with brush masks predicted by an
//! exported DeepLab model (§6.5 multi-scale inference through ONNX Runtime), or by the CAM +
//! IRN models of the pseudo-label stage (§3 CAMs with predicted labels → §4.7 random walk,
//! `--cam-model` + `--irn-model`). The HTTP layer is
//! `ssc_tools::serve`; this binary parses options, opens one model session per worker and
//! serves until SIGTERM / ctrl-c, finishing the requests in flight.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use image::RgbImage;
use ssc_core::classes::ClassMap;
use ssc_inference::cam::CamConfig;
use ssc_inference::jobs::pseudo::read_params;
use ssc_inference::runtime::SessionConfig;
use ssc_inference::segment::{DeepLabSegmenter, SegmentConfig};
use ssc_tools::serve::camirn::CamIrnSegmenter;
use ssc_tools::serve::routes::shutdown_signal;
use ssc_tools::serve::{
    RemoteLabelStudio, RetrainPolicy, Retrained, Retrainer, SegmentError, Segmentation, Segmenter,
    ServeConfig, router_with, serve,
};

#[derive(Parser)]
#[command(
    name = "ssc-serve",
    version,
    about = "Label Studio ML backend: brush-mask pre-annotations from an ssc DeepLab model or \
             CAM + IRN models"
)]
struct Cli {
    /// DeepLab model exported by ssc (`.onnx` with `ssc.*` metadata).
    #[arg(
        long,
        required_unless_present = "cam_model",
        conflicts_with = "cam_model"
    )]
    model: Option<PathBuf>,
    /// CAM network exported by ssc (`ssc-export --arch cam`): serve CAMs with predicted labels
    /// refined by the IRN random walk instead of a DeepLab model.
    #[arg(long, requires = "irn_model")]
    cam_model: Option<PathBuf>,
    /// IRN edge network exported by ssc (`ssc-export --arch irn`), with --cam-model.
    #[arg(long, requires = "cam_model")]
    irn_model: Option<PathBuf>,
    /// CAM image scales with --cam-model (§3.2).
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.5,1.5,2.0")]
    cam_scales: Vec<f64>,
    /// Predicted-label threshold with --cam-model (see `ssc-label cams --label-threshold`).
    #[arg(long, default_value_t = 0.5)]
    label_threshold: f32,
    /// Random-walk settings as JSON (`RefineParams`) with --cam-model; default: the
    /// reference's.
    #[arg(long)]
    walk_params: Option<PathBuf>,
    /// Class names of the model's outputs (`voc`, `coco` or a file); default: the model's
    /// metadata. Must have as many classes as the model.
    #[arg(long)]
    classes: Option<String>,
    /// Folder that `/data/local-files/?d=…` and relative image paths resolve under (Label
    /// Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT).
    #[arg(long, env = "SSC_SERVE_LOCAL_ROOT")]
    local_root: Option<PathBuf>,
    /// Folder that `/data/upload/<project>/<file>` resolves under (`<LS data dir>/media/upload`).
    #[arg(long, env = "SSC_SERVE_UPLOAD_ROOT")]
    upload_root: Option<PathBuf>,
    /// Label Studio URL to fetch other images from (plain http).
    #[arg(long, env = "LABEL_STUDIO_URL")]
    label_studio_url: Option<String>,
    /// Label Studio API key for fetching images: a legacy token or a personal access token
    /// (Account & Settings → Personal Access Token); sent to LABEL_STUDIO_URL's origin only.
    #[arg(long, env = "LABEL_STUDIO_API_KEY", hide_env_values = true)]
    label_studio_api_key: Option<String>,
    /// Other hosts (`host` or `host:port`) whose absolute image URLs may be fetched, without
    /// credentials (repeat or comma-separate); any other host is refused.
    #[arg(long, value_delimiter = ',')]
    allow_host: Vec<String>,
    /// Store annotators' corrections (Label Studio webhooks ANNOTATION_CREATED / UPDATED /
    /// ANNOTATIONS_DELETED and the train call) in this folder: one palette PNG and one JSON per
    /// task.
    #[arg(long)]
    corrections: Option<PathBuf>,
    /// Require HTTP basic auth `user:password` on every route.
    #[arg(long, env = "SSC_SERVE_BASIC_AUTH", hide_env_values = true)]
    basic_auth: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one; the address is logged).
    #[arg(long, default_value_t = 9090)]
    port: u16,
    /// Model sessions, i.e. images segmented at once; further requests wait.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// ONNX Runtime intra-op threads per session.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// ONNX Runtime library (else ORT_DYLIB_PATH or a project-local .ort/lib).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Base input side of §6.5 (DeepLab).
    #[arg(long, default_value_t = 512)]
    input_size: usize,
    /// Extra scales fused by maximum (§6.5, DeepLab); `--scales ''` for single scale.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.75,1.0,1.25,1.5")]
    scales: Vec<String>,
    /// `model_version` reported to Label Studio (default: `ssc-<model file stem>`).
    #[arg(long)]
    model_version: Option<String>,
    /// `from_name` / `to_name` used when a request carries no labeling config.
    #[arg(long, default_value = "tag")]
    from_name: String,
    #[arg(long, default_value = "image")]
    to_name: String,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 8)]
    max_body_mib: usize,
    /// Largest image in megapixels.
    #[arg(long, default_value_t = 25.0)]
    max_megapixels: f64,
    /// Decoded image megapixels held at once over all requests (images wait for room before
    /// they are decoded); default: (workers + 1) × --max-megapixels.
    #[arg(long)]
    max_megapixels_in_flight: Option<f64>,
    /// With --cam-model: images above this many megapixels are shrunk (aspect kept) before the
    /// CAMs and the random walk, and the label map is enlarged back; bounds memory per worker.
    #[arg(long, default_value_t = 1.0)]
    walk_megapixels: f64,
    /// Seconds a request waits for a free worker before 503.
    #[arg(long, default_value_t = 30.0)]
    queue_timeout: f64,
    /// Retrain on the corrections (needs --corrections and --model): the `ssc-train deeplab`
    /// run folder of the served model (its `config.json` and `best.safetensors`, the start
    /// of every fine-tuning round).
    #[arg(long, requires_all = ["corrections", "retrain_data", "retrain_pseudo", "model"])]
    retrain_run: Option<PathBuf>,
    /// Dataset of the retraining (as `ssc-train deeplab --data`).
    #[arg(long, requires = "retrain_run")]
    retrain_data: Option<PathBuf>,
    /// Pseudo-masks of the retraining (as `ssc-train deeplab --pseudo`); corrections replace
    /// the masks of the images they name.
    #[arg(long, requires = "retrain_run")]
    retrain_pseudo: Option<PathBuf>,
    /// Split of the retraining.
    #[arg(long, default_value = "train")]
    retrain_split: String,
    /// Fine-tuning epochs per round.
    #[arg(long, default_value_t = 3)]
    retrain_epochs: usize,
    /// Retrain after this many new corrections (webhooks or train calls); without it only
    /// Label Studio's train call starts a round.
    #[arg(long, requires = "retrain_run")]
    retrain_after: Option<usize>,
    /// CPU threads of the retraining job (the rest keep serving).
    #[arg(long, default_value_t = 1)]
    retrain_threads: usize,
    /// Folder of the rounds (`round-<k>/`: training run, `deeplab.onnx`, `train.log`);
    /// default: `<corrections>-retrain`.
    #[arg(long, requires = "retrain_run")]
    retrain_out: Option<PathBuf>,
}

/// Fine-tunes the served DeepLab on the corrections with `ssc-train deeplab --init
/// <run>/best.safetensors --corrections …` in a child process (its own memory, its log in
/// the round's folder), exports it and opens one session per worker.
struct DeepLabRetrainer {
    train_bin: PathBuf,
    run: PathBuf,
    data: PathBuf,
    pseudo: PathBuf,
    split: String,
    epochs: usize,
    threads: usize,
    out: PathBuf,
    workers: usize,
    session: SessionConfig,
    seg_cfg: SegmentConfig,
    version: String,
    names: Vec<String>,
}

impl Retrainer for DeepLabRetrainer {
    fn retrain(&self, corrections: &Path, round: usize) -> Result<Retrained, String> {
        let out = self.out.join(format!("round-{round}"));
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let onnx = out.join("deeplab.onnx");
        let log_path = out.join("train.log");
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let status = std::process::Command::new(&self.train_bin)
            .arg("deeplab")
            .arg("--data")
            .arg(&self.data)
            .args(["--split", &self.split])
            .arg("--pseudo")
            .arg(&self.pseudo)
            .arg("--config")
            .arg(self.run.join("config.json"))
            .arg("--init")
            .arg(self.run.join("best.safetensors"))
            .arg("--corrections")
            .arg(corrections)
            .args(["--epochs", &self.epochs.to_string()])
            .arg("--out")
            .arg(&out)
            .arg("--export")
            .arg(&onnx)
            .env("RAYON_NUM_THREADS", self.threads.to_string())
            .stdout(log)
            .stderr(err)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", self.train_bin.display()))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            return Err(format!(
                "ssc-train deeplab failed ({status}); log {}: {}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        let mut segmenters: Vec<Box<dyn Segmenter>> = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            let s = DeepLabSegmenter::open(&onnx, &self.session, self.seg_cfg.clone())
                .map_err(|e| format!("{}: {e}", onnx.display()))?;
            if s.class_names() != self.names.as_slice() {
                return Err(format!(
                    "{}: classes {:?} differ from the served model's {:?}",
                    onnx.display(),
                    s.class_names(),
                    self.names
                ));
            }
            segmenters.push(Box::new(Onnx(s)));
        }
        Ok(Retrained {
            segmenters,
            model_version: format!("{}-r{round}", self.version),
        })
    }
}

/// The retraining policy of the command line, if any.
fn retrain_policy(
    cli: &Cli,
    cfg: &ServeConfig,
    session: &SessionConfig,
    seg_cfg: SegmentConfig,
) -> Result<Option<RetrainPolicy>> {
    let Some(run) = &cli.retrain_run else {
        return Ok(None);
    };
    for f in ["config.json", "best.safetensors"] {
        anyhow::ensure!(
            run.join(f).is_file(),
            "--retrain-run {}: no {f} (expected an `ssc-train deeplab` run folder)",
            run.display()
        );
    }
    anyhow::ensure!(
        cli.retrain_epochs > 0,
        "--retrain-epochs must be at least 1"
    );
    let corrections = cli
        .corrections
        .clone()
        .context("--retrain-run needs --corrections")?;
    let exe = std::env::current_exe().context("locating ssc-serve")?;
    let train_bin = exe.with_file_name(format!("ssc-train{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        train_bin.is_file(),
        "retraining runs {}, which is missing (build it: cargo build --release -p ssc-tools)",
        train_bin.display()
    );
    let out = cli.retrain_out.clone().unwrap_or_else(|| {
        let mut name = corrections.file_name().unwrap_or_default().to_os_string();
        name.push("-retrain");
        corrections.with_file_name(name)
    });
    Ok(Some(RetrainPolicy {
        after: cli.retrain_after,
        retrainer: Arc::new(DeepLabRetrainer {
            train_bin,
            run: run.clone(),
            data: cli.retrain_data.clone().context("--retrain-data")?,
            pseudo: cli.retrain_pseudo.clone().context("--retrain-pseudo")?,
            split: cli.retrain_split.clone(),
            epochs: cli.retrain_epochs,
            threads: cli.retrain_threads.max(1),
            out,
            workers: cli.workers,
            session: session.clone(),
            seg_cfg,
            version: cfg.model_version.clone(),
            names: cfg.classes.names.clone(),
        }),
    }))
}

/// The ONNX DeepLab segmenter behind the server's trait.
struct Onnx(DeepLabSegmenter);

impl Segmenter for Onnx {
    fn segment(&mut self, image: &RgbImage) -> Result<Segmentation, SegmentError> {
        let p = self.0.predict(image)?;
        Ok(Segmentation {
            width: p.width,
            height: p.height,
            labels: p.labels,
            scores: p.scores,
        })
    }
}

fn config(cli: &Cli, names: &[String]) -> Result<ServeConfig> {
    let classes = match &cli.classes {
        Some(spec) => {
            let c = ssc_tools::class_map(spec)?;
            if c.len() != names.len() {
                bail!(
                    "--classes has {} classes but the model outputs {}",
                    c.len(),
                    names.len()
                );
            }
            c
        }
        None => ClassMap::custom(names.to_vec()),
    };
    if !(cli.queue_timeout.is_finite() && cli.queue_timeout > 0.0) {
        bail!("--queue-timeout must be a positive number of seconds");
    }
    if !(cli.max_megapixels.is_finite() && cli.max_megapixels > 0.0) {
        bail!("--max-megapixels must be positive");
    }
    let in_flight = cli
        .max_megapixels_in_flight
        .unwrap_or(cli.max_megapixels * (cli.workers + 1) as f64);
    if !(in_flight.is_finite() && in_flight >= cli.max_megapixels) {
        bail!("--max-megapixels-in-flight must be at least --max-megapixels");
    }
    for (flag, dir) in [
        ("--local-root", &cli.local_root),
        ("--upload-root", &cli.upload_root),
    ] {
        if let Some(d) = dir
            && !d.is_dir()
        {
            bail!("{flag} {}: not a folder", d.display());
        }
    }
    let remote = match (&cli.label_studio_url, &cli.label_studio_api_key) {
        (Some(url), key) => Some(RemoteLabelStudio {
            url: url.clone(),
            api_key: key.clone().unwrap_or_default(),
        }),
        (None, _) => None,
    };
    if let Some(a) = &cli.basic_auth
        && !a.contains(':')
    {
        bail!("--basic-auth must be user:password");
    }
    let stem = cli
        .model
        .as_ref()
        .or(cli.cam_model.as_ref())
        .and_then(|m| m.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let mut cfg = ServeConfig::new(classes);
    cfg.model_version = cli.model_version.clone().unwrap_or(format!("ssc-{stem}"));
    cfg.model_class = if cli.cam_model.is_some() {
        "SscCamIrn".into()
    } else {
        "SscDeepLab".into()
    };
    cfg.local_root = cli.local_root.clone();
    cfg.upload_root = cli.upload_root.clone();
    cfg.remote = remote;
    cfg.from_name = cli.from_name.clone();
    cfg.to_name = cli.to_name.clone();
    cfg.max_body_bytes = cli.max_body_mib << 20;
    cfg.max_pixels = (cli.max_megapixels * 1e6) as u64;
    cfg.max_pixels_in_flight = (in_flight * 1e6) as u64;
    cfg.allow_hosts = cli
        .allow_host
        .iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    cfg.corrections = cli.corrections.clone();
    cfg.queue_timeout = Duration::from_secs_f64(cli.queue_timeout);
    cfg.basic_auth = cli.basic_auth.clone();
    Ok(cfg)
}

/// One segmenter per worker.
type Segmenters = Vec<Box<dyn Segmenter>>;

/// One segmenter per worker and the label names of their outputs.
fn segmenters(
    cli: &Cli,
    session: &SessionConfig,
    scales: Vec<f64>,
) -> Result<(Segmenters, Vec<String>)> {
    let mut segmenters: Segmenters = Vec::with_capacity(cli.workers);
    let mut names = Vec::new();
    if let (Some(cam), Some(irn)) = (&cli.cam_model, &cli.irn_model) {
        let cam_cfg = CamConfig {
            scales: cli.cam_scales.clone(),
            predict_labels: true,
            label_threshold: cli.label_threshold,
        };
        let params = read_params(cli.walk_params.as_deref())?;
        for _ in 0..cli.workers {
            let s = CamIrnSegmenter::open(cam, irn, session, cam_cfg.clone(), params.clone())
                .with_context(|| format!("opening {} + {}", cam.display(), irn.display()))?
                .with_work_pixels((cli.walk_megapixels * 1e6) as u64);
            names = s.class_names();
            segmenters.push(Box::new(s));
        }
        return Ok((segmenters, names));
    }
    let model = cli
        .model
        .as_ref()
        .context("--model or --cam-model is needed")?;
    let seg_cfg = SegmentConfig {
        input_size: cli.input_size,
        scales,
    };
    for _ in 0..cli.workers {
        let s = DeepLabSegmenter::open(model, session, seg_cfg.clone())
            .with_context(|| format!("opening {}", model.display()))?;
        names = s.class_names().to_vec();
        segmenters.push(Box::new(Onnx(s)));
    }
    Ok((segmenters, names))
}

fn run(cli: Cli) -> Result<()> {
    anyhow::ensure!((1..=64).contains(&cli.workers), "--workers must be 1…64");
    anyhow::ensure!(
        cli.walk_megapixels.is_finite() && cli.walk_megapixels >= 0.01,
        "--walk-megapixels must be at least 0.01"
    );
    let scales = cli
        .scales
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .with_context(|| format!("--scales: bad number {s:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let session = SessionConfig {
        intra_threads: cli.threads.max(1),
        library: cli.ort_lib.clone(),
        ..SessionConfig::default()
    };
    let seg_cfg = SegmentConfig {
        input_size: cli.input_size,
        scales: scales.clone(),
    };
    let (segmenters, names) = segmenters(&cli, &session, scales)?;
    let cfg = config(&cli, &names)?;
    let policy = retrain_policy(&cli, &cfg, &session, seg_cfg)?;
    let app = router_with(cfg, segmenters, policy).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", cli.host, cli.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local: SocketAddr = listener.local_addr()?;
        tracing::info!(
            "ssc-serve listening on http://{local} ({} classes, {} workers)",
            names.len(),
            cli.workers
        );
        serve(listener, app, shutdown_signal())
            .await
            .context("serving")
    })?;
    tracing::info!("ssc-serve stopped");
    Ok(())
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| run(Cli::parse()))
}
