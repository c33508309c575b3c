//! `ssc-serve`: Label Studio ML backend pre-annotating images with brush masks predicted by an
//! exported DeepLab model (§6.5 multi-scale inference through ONNX Runtime), or by the CAM +
//! IRN models of the pseudo-label stage (§3 CAMs with predicted labels → §4.7 random walk,
//! `--cam-model` + `--irn-model`). The HTTP layer is
//! `ssc_tools::serve`; this binary parses options, opens one model session per worker and
//! serves until SIGTERM / ctrl-c, finishing the requests in flight.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use image::RgbImage;
use ssc_core::classes::ClassMap;
use ssc_inference::cam::CamConfig;
use ssc_inference::runtime::SessionConfig;
use ssc_inference::segment::{DeepLabSegmenter, SegmentConfig};
use ssc_tools::label_pseudo::read_params;
use ssc_tools::serve::camirn::CamIrnSegmenter;
use ssc_tools::serve::routes::shutdown_signal;
use ssc_tools::serve::{
    RemoteLabelStudio, SegmentError, Segmentation, Segmenter, ServeConfig, router, serve,
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
        let params = read_params(&cli.walk_params)?;
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
    let (segmenters, names) = segmenters(&cli, &session, scales)?;
    let cfg = config(&cli, &names)?;
    let app = router(cfg, segmenters).map_err(|e| anyhow::anyhow!("{e}"))?;
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
