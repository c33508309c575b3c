//! Image sources of `ssc-serve` (annotation-tool integration): Label Studio's image URLs
//! mapped to files under a configured root, or fetched from Label Studio itself.
//!
//! Forms: `/data/local-files/?d=<rel>` (local-files serving) and plain relative paths resolve
//! under [`ServeConfig::local_root`], `/data/upload/<project>/<file>` under
//! [`ServeConfig::upload_root`]; the same paths behind `http(s)://host` are treated alike.
//! Anything else (or a form whose root is not configured) is fetched from
//! [`ServeConfig::remote`] with `Authorization: Token …`. A relative path that is absolute,
//! holds `..`, or leads (through a symlink) outside its root is refused with 403, because the
//! URL comes from the request and must not read arbitrary files of the server.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;

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
    /// A URL to fetch from Label Studio.
    Remote(String),
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
    match &cfg.remote {
        Some(_) if url.contains("://") => Ok(Source::Remote(url.to_string())),
        Some(r) if url.starts_with('/') => Ok(Source::Remote(format!(
            "{}{url}",
            r.url.trim_end_matches('/')
        ))),
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
    let bad = || ApiError::bad_request(format!("{url}: bad percent-encoding"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
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
pub async fn load(url: &str, cfg: &ServeConfig) -> Result<Vec<u8>, ApiError> {
    match resolve(url, cfg)? {
        Source::Local { root, rel } => {
            let limit = cfg.max_image_bytes;
            tokio::task::spawn_blocking(move || read_local(&root, &rel, limit))
                .await
                .map_err(|e| ApiError::internal(format!("reading crashed: {e}")))?
        }
        Source::Remote(full) => {
            let key = cfg.remote.as_ref().map(|r| r.api_key.clone());
            let limit = cfg.max_image_bytes;
            tokio::task::spawn_blocking(move || fetch(&full, key.as_deref(), limit))
                .await
                .map_err(|e| ApiError::internal(format!("fetch crashed: {e}")))?
        }
    }
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

/// GETs `url` with the Label Studio token (plain HTTP), at most `limit` bytes.
fn fetch(url: &str, api_key: Option<&str>, limit: u64) -> Result<Vec<u8>, ApiError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(k) = api_key {
        req = req.header("Authorization", format!("Token {k}"));
    }
    let bad_gateway = |m: String| ApiError::new(StatusCode::BAD_GATEWAY, m);
    let resp = req
        .call()
        .map_err(|e| bad_gateway(format!("{url}: fetching from Label Studio failed: {e}")))?;
    let status = resp.status().as_u16();
    match status {
        200..=299 => {}
        404 => return Err(ApiError::not_found(format!("{url}: Label Studio says 404"))),
        s => return Err(bad_gateway(format!("{url}: Label Studio answered {s}"))),
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
            Source::Remote("http://ls:8080/data/upload/3/abc.jpg".into())
        );
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
