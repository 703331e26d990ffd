//! HTTP downloads for the backends that talk to a registry themselves (crates.io's index,
//! `url` tools): one error per failure that names the tool, the address and what to do.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// The most a download may be: a tool is a program, not a disk image.
const MAX_BYTES: u64 = 2 << 30;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_body(Some(Duration::from_secs(300)))
        .user_agent(concat!("preflight/", env!("CARGO_PKG_VERSION")))
        .http_status_as_error(false)
        // The system's roots (and SSL_CERT_FILE), not a bundled list: a company proxy that
        // re-signs TLS must work here as it does for pip, npm and cargo.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into()
}

/// What went wrong with one request.
pub enum Fetched {
    /// The server answered 404 or 410.
    NotFound,
    Body(Box<dyn Read + Send + Sync + 'static>),
}

fn open(tool: &str, url: &str) -> Result<Fetched> {
    let response = agent().get(url).call().map_err(|e| {
        Error::Setup(format!("tool `{tool}`: cannot reach {url}: {e}")).hint(
            "check the network (and proxy), then try again; the store keeps what is installed",
        )
    })?;
    let status = response.status().as_u16();
    if status == 404 || status == 410 {
        return Ok(Fetched::NotFound);
    }
    if !(200..300).contains(&status) {
        return Err(
            Error::Setup(format!("tool `{tool}`: {url} answered HTTP {status}"))
                .hint("try again later, or check the address"),
        );
    }
    Ok(Fetched::Body(Box::new(
        response.into_body().into_reader().take(MAX_BYTES),
    )))
}

/// The body at `url` as text (a registry's answer); `None` on 404.
pub fn text(tool: &str, url: &str) -> Result<Option<String>> {
    match open(tool, url)? {
        Fetched::NotFound => Ok(None),
        Fetched::Body(mut body) => {
            let mut text = String::new();
            body.read_to_string(&mut text).map_err(|e| {
                Error::Setup(format!("tool `{tool}`: reading {url} failed: {e}"))
                    .hint("check the network, then try again")
            })?;
            Ok(Some(text))
        }
    }
}

/// Downloads `url` into `dest` and returns the SHA-256 of what arrived, in hex; `None` on 404.
pub fn download(tool: &str, url: &str, dest: &Path) -> Result<Option<String>> {
    let mut body = match open(tool, url)? {
        Fetched::NotFound => return Ok(None),
        Fetched::Body(body) => body,
    };
    let mut file = std::fs::File::create(dest)
        .map_err(|e| Error::io(format!("tool `{tool}`: cannot write its download"), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Setup(format!(
                    "tool `{tool}`: the download of {url} broke off: {e}"
                ))
                .hint("check the network, then try again"));
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| {
            Error::io(format!("tool `{tool}`: cannot write its download"), e)
                .hint("free some disk space (or `preflight tools prune`), then try again")
        })?;
    }
    file.sync_all()
        .map_err(|e| Error::io(format!("tool `{tool}`: cannot write its download"), e))?;
    Ok(Some(super::lockfile::hex(&hasher.finalize())))
}
