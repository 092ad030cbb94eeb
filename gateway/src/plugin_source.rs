//! Where a plugin's `.wasm` file comes from: a local `path` (optionally pinned by `sha256`), or an
//! `https://` `url` pinned by a required `sha256`. A URL is fetched once with the gateway's rustls
//! client (verified against `ca` or the system roots), size-limited, checked against its sha256 and
//! kept in the cache directory under that sha256; later loads (reloads, restarts) read the cached copy
//! and never touch the network again.

use crate::config::Source;
use crate::config::{Config, ConfigError, Plugin, UpstreamTls};
use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The largest `.wasm` file fetched from a URL; a larger answer fails the load. Default: 64MiB.
pub const MAX_FETCH_BYTES: usize = 64 << 20;

/// How long fetching one plugin may take, from connecting to the last byte. Default: 30s.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The folder of the cache directory that holds fetched `.wasm` files, by sha256.
pub const SOURCES_DIR: &str = "sources";

/// Checks the source fields of every plugin: exactly one of `path` and `url` (or neither, for a
/// built-in plugin given settings); a URL is `https://` with a host and has a `sha256`; a `sha256` is
/// 64 hex digits; `ca` only goes with `url`.
pub fn check(cfg: &Config, src: &Source) -> Result<(), ConfigError> {
    for (i, p) in cfg.plugins.iter().enumerate() {
        check_one(p, &format!("plugins[{i}]"), src)?;
    }
    for (i, f) in cfg.functions.iter().enumerate() {
        let p = f.source();
        if p.path.is_none() && p.url.is_none() {
            return Err(src.err(
                format!("functions[{i}].name"),
                format!(
                    "function `{}` needs a `path` (a local .wasm component) or a `url` (https:// with `sha256`)",
                    p.name
                ),
            ));
        }
        check_one(&p, &format!("functions[{i}]"), src)?;
    }
    Ok(())
}

/// [`check`] of one plugin (or function) source, whose fields are at `prefix`.
fn check_one(p: &Plugin, prefix: &str, src: &Source) -> Result<(), ConfigError> {
    {
        let at = |f: &str| format!("{prefix}.{f}");
        match (&p.path, &p.url) {
            (Some(_), Some(_)) => {
                return Err(src.err(
                    at("url"),
                    format!("plugin `{}`: write `path` or `url`, not both", p.name),
                ))
            }
            // A built-in plugin's entry may only give settings (capabilities, limits...).
            (None, None) if crate::builtin::get(&p.name).is_some() => {
                if p.sha256.is_some() || p.ca.is_some() {
                    return Err(src.err(
                        at(if p.sha256.is_some() { "sha256" } else { "ca" }),
                        format!(
                            "plugin `{}` is built in: `sha256` and `ca` go with a `path` or `url` that replaces it",
                            p.name
                        ),
                    ));
                }
            }
            (None, None) => {
                return Err(src.err(
                    at("name"),
                    format!(
                        "plugin `{}` needs a `path` (a local .wasm file) or a `url` (https:// with `sha256`); it is not a built-in plugin (`gateway plugins` lists them)",
                        p.name
                    ),
                ))
            }
            (None, Some(url)) => {
                check_url(url).map_err(|m| src.err(at("url"), m))?;
                if p.sha256.is_none() {
                    return Err(src.err(
                        at("url"),
                        format!(
                            "plugin `{}` is fetched from a URL, so it needs `sha256` (the hex sha256 of the .wasm file)",
                            p.name
                        ),
                    ));
                }
            }
            (Some(_), None) => {
                if p.ca.is_some() {
                    return Err(src.err(at("ca"), "`ca` is only used to fetch a `url`"));
                }
            }
        }
        if let Some(h) = &p.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(src.err(at("sha256"), "a sha256 is 64 hex digits"));
            }
        }
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("`{url}`: plugins are only fetched over https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

/// A plugin's `.wasm` file, read or fetched.
#[derive(Clone, Debug)]
pub struct Wasm {
    /// The file's content.
    pub bytes: Arc<[u8]>,
    /// Its sha256, in lowercase hex.
    pub sha256: String,
}

/// Where a plugin's file comes from, as `/plugins` shows it.
pub fn describe(p: &Plugin) -> String {
    match (&p.path, &p.url) {
        (Some(path), _) => path.display().to_string(),
        (None, Some(url)) => url.clone(),
        (None, None) => String::new(),
    }
}

/// The sha256 a plugin's config pins (lowercase), if any.
pub fn pinned(p: &Plugin) -> Option<String> {
    p.sha256.as_ref().map(|h| h.to_ascii_lowercase())
}

/// Reads the `.wasm` file of plugin `i` from its `path` (relative to the config file), checking the
/// pinned sha256 if there is one. Errors name `plugins[i].path` or `plugins[i].sha256`.
pub async fn read_path(p: &Plugin, i: usize, src: &Source) -> Result<Wasm, ConfigError> {
    read_path_at(p, &format!("plugins[{i}]"), src).await
}

/// [`read_path`] of a plugin (or function) source whose fields are at `prefix` (`functions[2]`).
pub async fn read_path_at(p: &Plugin, prefix: &str, src: &Source) -> Result<Wasm, ConfigError> {
    let Some(rel) = &p.path else {
        return Err(src.err(format!("{prefix}.path"), "no path"));
    };
    let path = resolve(src, rel);
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        src.err(
            format!("{prefix}.path"),
            format!("plugin `{}`: cannot read {}: {e}", p.name, path.display()),
        )
    })?;
    let sha256 = hex(&Sha256::digest(&bytes));
    if let Some(want) = pinned(p) {
        if want != sha256 {
            return Err(src.err(
                format!("{prefix}.sha256"),
                format!(
                    "plugin `{}`: sha256 mismatch: {} has {sha256}, the config pins {want}",
                    p.name,
                    path.display()
                ),
            ));
        }
    }
    Ok(Wasm {
        bytes: bytes.into(),
        sha256,
    })
}

/// The `.wasm` file of plugin `i` from its `url`: the copy in `cache_dir` if there is a good one,
/// else fetched, verified against the pinned sha256 and stored there. Errors name `plugins[i].url`
/// (fetch failures) or `plugins[i].sha256` (a mismatch).
pub async fn fetch_url(
    p: &Plugin,
    i: usize,
    src: &Source,
    cache_dir: Option<&Path>,
) -> Result<Wasm, ConfigError> {
    fetch_url_at(p, &format!("plugins[{i}]"), src, cache_dir).await
}

/// [`fetch_url`] of a plugin (or function) source whose fields are at `prefix` (`functions[2]`).
pub async fn fetch_url_at(
    p: &Plugin,
    prefix: &str,
    src: &Source,
    cache_dir: Option<&Path>,
) -> Result<Wasm, ConfigError> {
    let (Some(url), Some(want)) = (&p.url, pinned(p)) else {
        return Err(src.err(format!("{prefix}.url"), "a url with a sha256 is needed"));
    };
    let cached = cache_dir.map(|d| d.join(SOURCES_DIR).join(format!("{want}.wasm")));
    if let Some(path) = &cached {
        if let Ok(bytes) = tokio::fs::read(path).await {
            let sha256 = hex(&Sha256::digest(&bytes));
            if sha256 == want {
                tracing::debug!(plugin = %p.name, path = %path.display(), "plugin read from the cache");
                return Ok(Wasm {
                    bytes: bytes.into(),
                    sha256,
                });
            }
            tracing::warn!(plugin = %p.name, path = %path.display(), "cached plugin file is corrupt; fetching it again");
            let _ = tokio::fs::remove_file(path).await;
        }
    }
    let fail = |m: String| src.err(format!("{prefix}.url"), format!("plugin `{}`: {m}", p.name));
    let tls = crate::tls::client_config(
        src,
        prefix,
        &UpstreamTls {
            ca: p.ca.clone(),
            ..Default::default()
        },
    )?;
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, get(url, tls))
        .await
        .map_err(|_| fail(format!("fetching {url} took longer than {FETCH_TIMEOUT:?}")))?
        .map_err(|m| fail(format!("cannot fetch {url}: {m}")))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    if sha256 != want {
        return Err(src.err(
            format!("{prefix}.sha256"),
            format!(
                "plugin `{}`: sha256 mismatch: {url} sent a file with sha256 {sha256}, the config pins {want}",
                p.name
            ),
        ));
    }
    tracing::info!(plugin = %p.name, %url, bytes = bytes.len(), "plugin fetched and verified");
    if let Some(path) = &cached {
        if let Err(e) = write_atomically(path, &bytes).await {
            tracing::warn!(plugin = %p.name, path = %path.display(), "could not cache the fetched plugin: {e}");
        }
    }
    Ok(Wasm {
        bytes: Arc::from(&bytes[..]),
        sha256,
    })
}

/// GETs `url` over https with `tls`: a 200 answer's body, at most [`MAX_FETCH_BYTES`]. Redirects are
/// not followed. Sent by the upstream client (one cluster of one endpoint, the URL's authority), so
/// the gateway has one HTTP client stack.
async fn get(url: &str, tls: rustls::ClientConfig) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    let authority = uri.authority().ok_or("the URL has no host")?;
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(443)
    );
    let cluster = crate::config::Upstream {
        name: "plugin-fetch".into(),
        endpoints: vec![crate::config::Endpoint { address, weight: 1 }],
        balancer: Default::default(),
        protocol: crate::config::Protocol::Http1,
        connect_timeout: crate::config::Dur(FETCH_TIMEOUT),
        pool: crate::config::Pool {
            max_idle_per_endpoint: 0,
            ..Default::default()
        },
        health: Default::default(),
        tls: Some(Default::default()),
    };
    let client = crate::upstream::Client::new(&cluster, Some(tls));
    let req = http::Request::get(uri.clone())
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "gateway-plugin-fetch")
        .body(crate::body::empty())
        .map_err(|e| e.to_string())?;
    let resp = client.send(0, req).await.map_err(|e| {
        let mut m = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            m.push_str(": ");
            m.push_str(&c.to_string());
            cause = c.source();
        }
        m
    })?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("the server answered {}", resp.status()));
    }
    let too_big = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_FETCH_BYTES as u64);
    if too_big {
        return Err(format!("the file is larger than {MAX_FETCH_BYTES} bytes"));
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_FETCH_BYTES);
    match body.collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(format!("the file is larger than {MAX_FETCH_BYTES} bytes"))
        }
        Err(e) => Err(format!("reading the body: {e}")),
    }
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}

/// A path from the config, relative to the config file's folder.
pub fn resolve(src: &Source, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        src.path.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// The sha256 of `bytes`, in lowercase hex (how plugins are pinned and compared).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(plugin: &str) -> Result<(), ConfigError> {
        let yaml = format!(
            "listeners:\n  - name: main\n    address: 127.0.0.1:0\nplugins:\n  - name: p\n{plugin}"
        );
        let path = Path::new("gw.yaml");
        let cfg = Config::parse(path, &yaml)?;
        check(
            &cfg,
            &Source {
                path: path.into(),
                text: Some(yaml),
            },
        )
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn source_fields_are_checked_with_their_location() {
        let e = checked("    url: https://example.com/p.wasm\n").unwrap_err();
        assert_eq!(e.field, "plugins[0].url");
        assert_eq!(e.location.map(|l| l.0), Some(6));
        assert!(e.to_string().starts_with("gw.yaml:6:"), "{e}");
        assert!(e.message.contains("needs `sha256`"), "{e}");

        let e = checked(&format!(
            "    url: http://example.com/p.wasm\n    sha256: {SHA}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("https://"), "{e}");
        let e = checked("    path: p.wasm\n    sha256: abc\n").unwrap_err();
        assert_eq!(e.field, "plugins[0].sha256");
        let e = checked(&format!(
            "    path: p.wasm\n    url: https://example.com/p.wasm\n    sha256: {SHA}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let e = checked("    abi: component\n").unwrap_err();
        assert!(e.message.contains("needs a `path`"), "{e}");
        let e = checked("    path: p.wasm\n    ca: ca.pem\n").unwrap_err();
        assert_eq!(e.field, "plugins[0].ca");

        checked(&format!(
            "    url: https://example.com/p.wasm\n    sha256: {SHA}\n"
        ))
        .unwrap();
        checked(&format!(
            "    path: p.wasm\n    sha256: {}\n",
            SHA.to_uppercase()
        ))
        .unwrap();
        checked("    path: p.wasm\n").unwrap();
    }
}
