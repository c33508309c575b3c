//! Server settings of `ssc-serve` (annotation-tool integration): identity, class list, image
//! sources and the limits that keep one bad or heavy request from taking the server down.

use std::path::PathBuf;
use std::time::Duration;

use ssc_core::classes::ClassMap;

/// Where images that are not local files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLabelStudio {
    /// Base URL of Label Studio (`http://localhost:8080`); plain HTTP only.
    pub url: String,
    /// API key: a legacy token (sent as `Authorization: Token <key>`) or a personal access
    /// token (a JWT refresh token, exchanged at `/api/token/refresh` for a `Bearer` access
    /// token). Sent to this origin only.
    pub api_key: String,
}

/// Settings of the ML backend.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `model_version` reported by `/setup` and every prediction.
    pub model_version: String,
    /// `model_class` reported by `/health`.
    pub model_class: String,
    /// Class names of the segmenter's label values (background first); brush labels use them.
    pub classes: ClassMap,
    /// Folder that `/data/local-files/?d=<rel>` and plain relative paths resolve under
    /// (Label Studio's `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`).
    pub local_root: Option<PathBuf>,
    /// Folder that `/data/upload/<project>/<file>` resolves under (Label Studio's
    /// `<data dir>/media/upload`).
    pub upload_root: Option<PathBuf>,
    /// Label Studio to fetch other image URLs from; its API key goes to its origin only.
    pub remote: Option<RemoteLabelStudio>,
    /// Other hosts (`host` or `host:port`) whose absolute image URLs may be fetched, without
    /// credentials; any other host is refused.
    pub allow_hosts: Vec<String>,
    /// `from_name` of results when the request's label config names no `BrushLabels`.
    pub from_name: String,
    /// `to_name` of results when the request's label config names no `BrushLabels`.
    pub to_name: String,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest image (width·height) decoded; also bounds fetched image bytes indirectly.
    pub max_pixels: u64,
    /// Decoded image pixels held at once over all requests (images wait for room before
    /// decoding); at least `max_pixels`.
    pub max_pixels_in_flight: u64,
    /// Folder where annotators' corrections (webhook annotations) are stored; `None` ignores
    /// them.
    pub corrections: Option<PathBuf>,
    /// Largest image file read or fetched, in bytes.
    pub max_image_bytes: u64,
    /// How long a request waits for a free segmenter before 503.
    pub queue_timeout: Duration,
    /// Required `user:password` for HTTP basic auth, if any.
    pub basic_auth: Option<String>,
}

impl ServeConfig {
    /// Defaults for a class list: 8 MiB bodies, 25 Mpx images, 50 Mpx decoded at once, 64 MiB
    /// files, 30 s queue wait,
    /// no auth, `tag` / `image` control names (those of ssc's labeling config).
    pub fn new(classes: ClassMap) -> Self {
        ServeConfig {
            model_version: "ssc".into(),
            model_class: "SscSegmenter".into(),
            classes,
            local_root: None,
            upload_root: None,
            remote: None,
            allow_hosts: Vec::new(),
            from_name: "tag".into(),
            to_name: "image".into(),
            max_body_bytes: 8 << 20,
            max_pixels: 25_000_000,
            max_pixels_in_flight: 50_000_000,
            corrections: None,
            max_image_bytes: 64 << 20,
            queue_timeout: Duration::from_secs(30),
            basic_auth: None,
        }
    }
}
