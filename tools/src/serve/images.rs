//! Image sources of `ssc-serve` (annotation-tool integration): Label Studio's image URLs
//! mapped to files under a configured root, or fetched from Label Studio itself.
//!
//! Forms: `/data/local-files/?d=<rel>` (local-files serving) and plain relative paths resolve
//! under [`ServeConfig::local_root`], `/data/upload/<project>/<file>` under
//! [`ServeConfig::upload_root`]; the same paths behind `http(s)://host` are treated alike.
//! Anything else (or a form whose root is not configured) is fetched over plain HTTP: from
//! [`ServeConfig::remote`]'s origin with its API key, from a host of
//! [`ServeConfig::allow_hosts`] without credentials, and not at all from any other host (403):
//! the URL comes from the request, and the key must not reach a host that merely appears in
//! a task. A relative path that is absolute, holds `..`, or leads (through a symlink) outside
//! its root is refused with 403, because it must not read arbitrary files of the server.
//!
//! The API key may be a legacy token (`Authorization: Token <key>`) or a personal access
//! token (Label Studio ≥ 1.22 disables legacy tokens by default; a PAT is a JWT refresh token
//! exchanged at `POST /api/token/refresh` for a short-lived `Bearer` access token). The kind
//! the key looks like is tried first, then the other; the kind that worked is remembered and
//! an expired access token is refreshed once. When neither works the error says what each
//! attempt got.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use axum::http::{StatusCode, Uri};

use super::config::ServeConfig;
use super::error::ApiError;

/// Where an image URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path relative to a local root (not yet checked against escapes).
    Local {
        /// The root.
        root: PathBuf,
        /// The decoded relative path.
        rel: String,
    },
    /// A URL to fetch: from Label Studio's origin (`credentials`) or an allowed host.
    Remote {
        /// Absolute URL.
        url: String,
        /// Whether it is Label Studio's origin, i.e. the API key goes with it.
        credentials: bool,
    },
}

/// `(scheme, lower-case host, port)` of an absolute http(s) URL.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    Some((scheme, host, uri.port_u16().unwrap_or(default)))
}

/// Whether `host` / `host:port` of the allow-list names `url`'s host.
fn allowed(url: &str, allow: &[String]) -> bool {
    let Some((_, host, port)) = origin(url) else {
        return false;
    };
    allow.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        match a.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h == host && p.parse::<u16>() == Ok(port),
            _ => a == host,
        }
    })
}

/// Decides where `url` points (see the module docs).
pub fn resolve(url: &str, cfg: &ServeConfig) -> Result<Source, ApiError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(ApiError::bad_request("task has an empty data.image"));
    }
    let path = strip_origin(url);
    let local = |root: &Option<PathBuf>, rel: String| {
        root.as_ref().map(|r| Source::Local {
            root: r.clone(),
            rel,
        })
    };
    let found = if let Some(query) = path.strip_prefix("/data/local-files/") {
        let query = query.strip_prefix('?').unwrap_or(query);
        let d = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("d="))
            .ok_or_else(|| ApiError::bad_request(format!("{url}: no ?d= parameter")))?;
        local(&cfg.local_root, percent_decode(d, url)?)
    } else if let Some(rest) = path.strip_prefix("/data/upload/") {
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        local(&cfg.upload_root, percent_decode(rest, url)?)
    } else if !url.contains("://") && !url.starts_with('/') {
        local(&cfg.local_root, url.to_string())
    } else {
        None
    };
    if let Some(s) = found {
        return Ok(s);
    }
    if url.contains("://") {
        let ls = cfg.remote.as_ref().and_then(|r| origin(&r.url));
        let target = origin(url)
            .ok_or_else(|| ApiError::bad_request(format!("{url}: not an http(s) URL")))?;
        if ls.as_ref() == Some(&target) {
            return Ok(Source::Remote {
                url: url.to_string(),
                credentials: true,
            });
        }
        if allowed(url, &cfg.allow_hosts) {
            return Ok(Source::Remote {
                url: url.to_string(),
                credentials: false,
            });
        }
        let port = target.2;
        return Err(ApiError::forbidden(format!(
            "{url}: refusing to fetch from {}:{port}, which is neither Label Studio's origin \
             (LABEL_STUDIO_URL{}) nor allowed (--allow-host {}:{port} fetches it without \
             credentials)",
            target.1,
            cfg.remote
                .as_ref()
                .map_or(" is not set".to_string(), |r| format!("={}", r.url)),
            target.1,
        )));
    }
    match &cfg.remote {
        Some(r) if url.starts_with('/') => Ok(Source::Remote {
            url: format!("{}{url}", r.url.trim_end_matches('/')),
            credentials: true,
        }),
        _ => Err(ApiError::bad_request(format!(
            "{url}: cannot resolve the image (set --local-root / --upload-root for Label \
             Studio file URLs, or LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to fetch it)"
        ))),
    }
}

/// Path and query of an `http(s)://host/...` URL; other strings unchanged.
fn strip_origin(url: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    url
}

/// Decodes `%XX` and `+` (form encoding, as Django reads `?d=`); bad escapes are a 400.
pub fn percent_decode(s: &str, url: &str) -> Result<String, ApiError> {
    ssc_core::formats::corrections::form_decode(s)
        .ok_or_else(|| ApiError::bad_request(format!("{url}: bad percent-encoding")))
}

/// `root/rel` after checking it stays inside `root`: 403 for absolute paths, `..` and
/// symlinks leading out, 404 for missing files.
pub fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, ApiError> {
    let forbidden = || ApiError::forbidden(format!("{rel}: path leaves the image root"));
    let rel_path = Path::new(rel);
    if rel.is_empty() || rel.contains('\0') {
        return Err(ApiError::bad_request("empty image path"));
    }
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(forbidden());
    }
    let canon_root = root
        .canonicalize()
        .map_err(|e| ApiError::internal(format!("image root {}: {e}", root.display())))?;
    let full = root.join(rel_path);
    let canon = full.canonicalize().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::not_found(format!("{rel}: no such image"))
        } else {
            ApiError::forbidden(format!("{rel}: {e}"))
        }
    })?;
    if !canon.starts_with(&canon_root) {
        return Err(forbidden());
    }
    Ok(canon)
}

/// Reads the bytes of the image `url` points to, bounded by `cfg.max_image_bytes`.
pub async fn load(url: &str, cfg: &ServeConfig, fetcher: &Fetcher) -> Result<Vec<u8>, ApiError> {
    let limit = cfg.max_image_bytes;
    match resolve(url, cfg)? {
        Source::Local { root, rel } => {
            tokio::task::spawn_blocking(move || read_local(&root, &rel, limit))
                .await
                .map_err(|e| ApiError::internal(format!("reading crashed: {e}")))?
        }
        Source::Remote { url, credentials } => {
            let fetcher = fetcher.clone();
            tokio::task::spawn_blocking(move || fetcher.get(&url, credentials, limit))
                .await
                .map_err(|e| ApiError::internal(format!("fetch crashed: {e}")))?
        }
    }
}

/// How an API key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// `Authorization: Token <key>`.
    Legacy = 1,
    /// `Authorization: Bearer <access>` after a refresh-token exchange.
    Personal = 2,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Legacy => "a legacy token",
            KeyKind::Personal => "a personal access token",
        }
    }
}

/// A personal access token's current access token.
#[derive(Debug)]
struct Access {
    token: String,
    at: Instant,
}

/// Label Studio access tokens live five minutes; renew a little before.
const ACCESS_LIFETIME: Duration = Duration::from_secs(240);

/// Fetches remote images, keeping what it learnt about the API key (its kind, the current
/// access token) across requests. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Fetcher {
    inner: std::sync::Arc<FetcherState>,
}

struct FetcherState {
    remote: Option<super::config::RemoteLabelStudio>,
    agent: ureq::Agent,
    kind: AtomicU8,
    access: Mutex<Option<Access>>,
}

/// Whether `key` has the shape of a JWT (three base64url parts).
fn looks_like_jwt(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

impl Fetcher {
    /// A fetcher for `cfg.remote`'s key.
    pub fn new(cfg: &ServeConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            // ureq's default: Authorization never follows a redirect (presigned storage URLs)
            .build()
            .into();
        Fetcher {
            inner: std::sync::Arc::new(FetcherState {
                remote: cfg.remote.clone(),
                agent,
                kind: AtomicU8::new(0),
                access: Mutex::new(None),
            }),
        }
    }

    fn order(&self, key: &str) -> Vec<KeyKind> {
        let guess = if looks_like_jwt(key) {
            [KeyKind::Personal, KeyKind::Legacy]
        } else {
            [KeyKind::Legacy, KeyKind::Personal]
        };
        let known = self.inner.kind.load(Ordering::SeqCst);
        let mut order = guess.to_vec();
        if let Some(i) = order.iter().position(|k| *k as u8 == known) {
            let k = order.remove(i);
            order.insert(0, k);
        }
        order
    }

    /// A current access token for the personal access token `key`; `renew` forces a refresh.
    fn access_token(&self, base: &str, key: &str, renew: bool) -> Result<String, String> {
        let mut cached = self.inner.access.lock().unwrap_or_else(|p| p.into_inner());
        if !renew
            && let Some(a) = cached.as_ref()
            && a.at.elapsed() < ACCESS_LIFETIME
        {
            return Ok(a.token.clone());
        }
        let url = format!("{}/api/token/refresh/", base.trim_end_matches('/'));
        let body = serde_json::json!({ "refresh": key }).to_string();
        let mut resp = self
            .inner
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map_err(|e| format!("POST {url} failed: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(format!("POST {url} answered {status}"));
        }
        let token = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["access"].as_str().map(str::to_string))
            .ok_or_else(|| format!("POST {url} gave no \"access\" token"))?;
        *cached = Some(Access {
            token: token.clone(),
            at: Instant::now(),
        });
        Ok(token)
    }

    /// GETs `url` (plain HTTP), with Label Studio's key when `credentials`, at most `limit`
    /// bytes.
    pub fn get(&self, url: &str, credentials: bool, limit: u64) -> Result<Vec<u8>, ApiError> {
        let bad_gateway = |m: String| ApiError::new(StatusCode::BAD_GATEWAY, m);
        let remote = self.inner.remote.as_ref().filter(|_| credentials);
        let Some(remote) = remote.filter(|r| !r.api_key.is_empty()) else {
            let resp = self
                .inner
                .agent
                .get(url)
                .call()
                .map_err(|e| bad_gateway(format!("{url}: fetching failed: {e}")))?;
            return body(url, resp, limit);
        };
        let mut failures = Vec::new();
        for kind in self.order(&remote.api_key) {
            let mut renewed = false;
            loop {
                let header = match kind {
                    KeyKind::Legacy => format!("Token {}", remote.api_key),
                    KeyKind::Personal => {
                        match self.access_token(&remote.url, &remote.api_key, renewed) {
                            Ok(t) => format!("Bearer {t}"),
                            Err(e) => {
                                failures.push(format!("as {}: {e}", kind.name()));
                                break;
                            }
                        }
                    }
                };
                let resp = self
                    .inner
                    .agent
                    .get(url)
                    .header("Authorization", header)
                    .call()
                    .map_err(|e| {
                        bad_gateway(format!("{url}: fetching from Label Studio failed: {e}"))
                    })?;
                let status = resp.status().as_u16();
                if status == 401 || status == 403 {
                    if kind == KeyKind::Personal && !renewed {
                        // the cached access token may have expired: one fresh exchange
                        renewed = true;
                        continue;
                    }
                    failures.push(format!("as {}: {url} answered {status}", kind.name()));
                    break;
                }
                self.inner.kind.store(kind as u8, Ordering::SeqCst);
                return body(url, resp, limit);
            }
        }
        Err(bad_gateway(format!(
            "{url}: Label Studio refused LABEL_STUDIO_API_KEY {}",
            failures.join("; ")
        )))
    }
}

fn body(
    url: &str,
    resp: ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    let bad_gateway = |m: String| ApiError::new(StatusCode::BAD_GATEWAY, m);
    match resp.status().as_u16() {
        200..=299 => {}
        404 => return Err(ApiError::not_found(format!("{url}: the server says 404"))),
        s => return Err(bad_gateway(format!("{url}: the server answered {s}"))),
    }
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad_gateway(format!("{url}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(url, limit));
    }
    Ok(bytes)
}

/// Reads `root/rel` after [`safe_join`], at most `limit` bytes.
fn read_local(root: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, ApiError> {
    let path = safe_join(root, rel)?;
    let meta = std::fs::metadata(&path).map_err(|e| ApiError::not_found(format!("{rel}: {e}")))?;
    if !meta.is_file() {
        return Err(ApiError::not_found(format!("{rel}: not a file")));
    }
    if meta.len() > limit {
        return Err(too_large(rel, limit));
    }
    std::fs::read(&path).map_err(|e| ApiError::internal(format!("{rel}: {e}")))
}

fn too_large(what: &str, limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{what}: image file larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::config::RemoteLabelStudio;
    use ssc_core::classes::ClassMap;

    fn cfg() -> ServeConfig {
        let mut c = ServeConfig::new(ClassMap::voc());
        c.local_root = Some("/srv/files".into());
        c
    }

    #[test]
    fn resolves_label_studio_forms() {
        let c = cfg();
        let local = |rel: &str| Source::Local {
            root: "/srv/files".into(),
            rel: rel.into(),
        };
        assert_eq!(
            resolve("/data/local-files/?d=a%20b/c+d.jpg", &c).unwrap(),
            local("a b/c d.jpg")
        );
        assert_eq!(
            resolve("http://ls:8080/data/local-files/?d=x.png", &c).unwrap(),
            local("x.png")
        );
        assert_eq!(resolve("x/y.jpg", &c).unwrap(), local("x/y.jpg"));
        // upload root not configured, no remote: refused
        let e = resolve("/data/upload/3/abc.jpg", &c).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let mut r = c.clone();
        r.remote = Some(RemoteLabelStudio {
            url: "http://ls:8080/".into(),
            api_key: "k".into(),
        });
        assert_eq!(
            resolve("/data/upload/3/abc.jpg", &r).unwrap(),
            Source::Remote {
                url: "http://ls:8080/data/upload/3/abc.jpg".into(),
                credentials: true
            }
        );
        // the key goes to Label Studio's origin only; other hosts need the allow-list
        assert_eq!(
            resolve("http://LS:8080/api/x.jpg", &r).unwrap(),
            Source::Remote {
                url: "http://LS:8080/api/x.jpg".into(),
                credentials: true
            }
        );
        for other in [
            "http://ls:9999/x.jpg",
            "http://evil/x.jpg",
            "https://ls:8080/x.jpg",
        ] {
            assert_eq!(
                resolve(other, &r).unwrap_err().status,
                StatusCode::FORBIDDEN,
                "{other}"
            );
        }
        r.allow_hosts = vec!["cdn.example".into(), "ls:9999".into()];
        assert_eq!(
            resolve("http://cdn.example:81/x.jpg", &r).unwrap(),
            Source::Remote {
                url: "http://cdn.example:81/x.jpg".into(),
                credentials: false
            }
        );
        assert!(matches!(
            resolve("http://ls:9999/x.jpg", &r).unwrap(),
            Source::Remote {
                credentials: false,
                ..
            }
        ));
        assert!(resolve("http://ls:9998/x.jpg", &r).is_err());
        assert!(looks_like_jwt("eyJhbGciOi.eyJ0b2tlbl9.sig-_x"));
        assert!(!looks_like_jwt("0123456789abcdef0123456789abcdef01234567"));
        r.upload_root = Some("/media/upload".into());
        assert_eq!(
            resolve("/data/upload/3/abc.jpg", &r).unwrap(),
            Source::Local {
                root: "/media/upload".into(),
                rel: "3/abc.jpg".into()
            }
        );
        assert!(percent_decode("%zz", "u").is_err());
        assert!(percent_decode("%4", "u").is_err());
    }

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"s").unwrap();
        std::fs::write(root.join("ok.jpg"), b"x").unwrap();
        assert!(safe_join(&root, "ok.jpg").is_ok());
        for bad in ["../secret.txt", "/etc/passwd", "a/../../secret.txt"] {
            assert_eq!(
                safe_join(&root, bad).unwrap_err().status,
                StatusCode::FORBIDDEN,
                "{bad}"
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link")).unwrap();
            assert_eq!(
                safe_join(&root, "link").unwrap_err().status,
                StatusCode::FORBIDDEN
            );
        }
        assert_eq!(
            safe_join(&root, "missing.jpg").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }
}
