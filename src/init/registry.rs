//! The registries' current versions of the linters `init` pins: PyPI's JSON API and the npm
//! registry, asked at once, each with a short timeout, so that `init` on a machine without
//! network costs a few seconds at most and then writes how to pin by hand.
//!
//! The addresses follow what the tool installs use: `PREFLIGHT_PYPI_JSON_URL` (PyPI's JSON
//! API or a mirror of it) and `npm_config_registry` (npm's own setting).

use super::Managed;
use std::time::Duration;

/// How long one question may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(4);

/// An answer is a small JSON document; anything larger is not one.
const MAX_BYTES: u64 = 8 << 20;

fn pypi_base() -> String {
    std::env::var("PREFLIGHT_PYPI_JSON_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "https://pypi.org/pypi".into())
}

fn npm_base() -> String {
    std::env::var("npm_config_registry")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "https://registry.npmjs.org".into())
}

/// Where the current version of `m` is asked, and where the answer holds it.
fn question(m: &Managed) -> (String, &'static [&'static str]) {
    match m.backend {
        "npm" => (
            format!("{}/{}/latest", npm_base().trim_end_matches('/'), m.package),
            &["version"],
        ),
        _ => (
            format!("{}/{}/json", pypi_base().trim_end_matches('/'), m.package),
            &["info", "version"],
        ),
    }
}

fn ask(url: &str, path: &[&str]) -> Result<String, String> {
    // The system's certificates: a company proxy's CA is there, not in a bundled list.
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(TIMEOUT))
        .user_agent(concat!("preflight/", env!("CARGO_PKG_VERSION")))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("no answer within {}s", TIMEOUT.as_secs()),
        e => e.to_string(),
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("{url} answered HTTP {status}"));
    }
    let text = response
        .into_body()
        .with_config()
        .limit(MAX_BYTES)
        .read_to_string()
        .map_err(|e| format!("reading the answer of {url} failed: {e}"))?;
    version_in(&text, path).ok_or_else(|| format!("{url} gave no version"))
}

/// The version at `path` in a JSON answer, if it looks like one (it goes into the config
/// file as written).
fn version_in(text: &str, path: &[&str]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let version = path
        .iter()
        .try_fold(&value, |v, key| v.get(key))?
        .as_str()?;
    let plain = !version.is_empty()
        && version.as_bytes()[0].is_ascii_alphanumeric()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    plain.then(|| version.to_string())
}

/// Asks for the current version of each of `wanted`, all at once.
pub fn current_versions(wanted: &[&'static Managed]) -> Vec<Result<String, String>> {
    std::thread::scope(|scope| {
        let asked: Vec<_> = wanted
            .iter()
            .map(|m| {
                let (url, path) = question(m);
                scope.spawn(move || ask(&url, path))
            })
            .collect();
        asked
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the question failed".to_string()))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_version_is_taken_from_an_answer() {
        let info = &["info", "version"][..];
        assert_eq!(
            version_in(r#"{"info": {"version": "0.17.6"}}"#, info),
            Some("0.17.6".into())
        );
        assert_eq!(version_in(r#"{"info": {"version": "1\"; x"}}"#, info), None);
        assert_eq!(version_in(r#"{"info": {}}"#, info), None);
        assert_eq!(version_in("not json", info), None);
        assert_eq!(
            version_in(r#"{"version": "3.10.1"}"#, &["version"]),
            Some("3.10.1".into())
        );
    }
}
