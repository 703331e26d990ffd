//! `[remote]`: a REAPI server used as a shared cache and, optionally, to run steps.

use super::checker::Checker;
use super::{Step, parse_duration};
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// How the remote cache is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteCache {
    Off,
    /// Look results up, never write (laptops, untrusted branches).
    Read,
    /// Look up, and upload what passed locally (trusted CI).
    ReadWrite,
}

impl RemoteCache {
    pub fn parse(text: &str) -> Option<RemoteCache> {
        match text {
            "off" => Some(RemoteCache::Off),
            "read" => Some(RemoteCache::Read),
            "read-write" => Some(RemoteCache::ReadWrite),
            _ => None,
        }
    }

    pub fn reads(self) -> bool {
        self != RemoteCache::Off
    }

    pub fn writes(self) -> bool {
        self == RemoteCache::ReadWrite
    }
}

/// A validated `[remote]` table.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `grpc://host:port` or `grpcs://host:port`.
    pub endpoint: String,
    pub instance_name: String,
    /// A PEM file of CA certificates to trust besides the system's (grpcs only).
    pub ca_cert: Option<PathBuf>,
    /// Header name → the environment variable holding its value.
    pub headers: Vec<(String, String)>,
    pub cache: RemoteCache,
    /// The cache mode of `run --ci` (what generated CI files call), when it differs.
    pub ci_cache: Option<RemoteCache>,
    pub execute: bool,
    /// Platform properties of every step (a step's `platform` adds to them).
    pub platform: BTreeMap<String, String>,
    /// The deadline of one call (an execution waits as long as the step's timeout).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// How long a step may wait in the farm's queue before it runs here instead.
    pub queue_timeout: Duration,
    /// How often a call that failed in a way that may pass is tried again.
    pub retries: u32,
}

impl Remote {
    /// The platform properties of a step: the table's, then the step's own.
    pub fn platform_of(&self, step: &Step) -> BTreeMap<String, String> {
        let mut all = self.platform.clone();
        all.extend(step.platform.clone());
        all
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    instance_name: String,
    ca_cert: Option<Spanned<String>>,
    #[serde(default)]
    headers: IndexMap<Spanned<String>, Spanned<String>>,
    cache: Option<Spanned<String>>,
    ci_cache: Option<Spanned<String>>,
    #[serde(default)]
    execute: bool,
    #[serde(default)]
    platform: BTreeMap<String, String>,
    timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    queue_timeout: Option<Spanned<String>>,
    retries: Option<Spanned<u32>>,
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn duration(
    check: &mut Checker,
    key: &str,
    value: Option<&Spanned<String>>,
    default: Duration,
) -> Duration {
    let Some(value) = value else {
        return default;
    };
    match parse_duration(value.get_ref()) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            check
                .error(value.span(), format!("`{key}` must be longer than zero"))
                .label = "a duration like \"30s\"".into();
            default
        }
        Err(e) => {
            let d = check.error(value.span(), format!("invalid `{key}`: {e}"));
            d.label = "expected a duration".into();
            d.help = Some("write it like \"500ms\", \"30s\" or \"2m\"".into());
            default
        }
    }
}

pub(super) fn validate(check: &mut Checker, raw: Option<Spanned<RawRemote>>) -> Option<Remote> {
    let raw = raw?;
    let table = raw.span();
    let raw = raw.into_inner();
    let Some(endpoint) = raw.endpoint else {
        let d = check.error(table, "`[remote]` has no `endpoint`");
        d.label = "add `endpoint = \"grpc://host:port\"`".into();
        return None;
    };
    let scheme = endpoint.get_ref().split_once("://").map(|(s, _)| s);
    let tls = match scheme {
        Some("grpc") => false,
        Some("grpcs") => true,
        _ => {
            let d = check.error(
                endpoint.span(),
                format!("invalid remote endpoint `{}`", endpoint.get_ref()),
            );
            d.label = "expected grpc://host:port or grpcs://host:port".into();
            false
        }
    };
    if let Some(ca) = &raw.ca_cert
        && !tls
    {
        check
            .error(ca.span(), "`ca_cert` needs a grpcs:// endpoint")
            .label = "a certificate is only used over TLS".into();
    }
    let mut headers = Vec::new();
    for (name, variable) in &raw.headers {
        if !is_header_name(name.get_ref()) {
            check
                .error(
                    name.span(),
                    format!("invalid header name `{}`", name.get_ref()),
                )
                .label = "letters, digits, `-`, `_` and `.`".into();
        }
        if !is_variable_name(variable.get_ref()) {
            let d = check.error(
                variable.span(),
                format!(
                    "header `{}` must name an environment variable, not give a value",
                    name.get_ref()
                ),
            );
            d.label = "the name of the variable that holds the value".into();
            d.help = Some(
                "never write a secret in preflight.toml: put it in an environment variable \
                 (a CI secret) and name that variable here, like `authorization = \"REMOTE_TOKEN\"`"
                    .into(),
            );
        }
        headers.push((name.get_ref().clone(), variable.get_ref().clone()));
    }
    let mut mode = |key: &str, value: &Spanned<String>| {
        RemoteCache::parse(value.get_ref()).unwrap_or_else(|| {
            let d = check.error(
                value.span(),
                format!("invalid remote `{key}` mode `{}`", value.get_ref()),
            );
            d.label = "expected \"off\", \"read\" or \"read-write\"".into();
            RemoteCache::Off
        })
    };
    let cache = raw
        .cache
        .as_ref()
        .map_or(RemoteCache::ReadWrite, |m| mode("cache", m));
    let ci_cache = raw.ci_cache.as_ref().map(|m| mode("ci_cache", m));
    Some(Remote {
        endpoint: endpoint.into_inner(),
        instance_name: raw.instance_name,
        ca_cert: raw.ca_cert.map(|c| PathBuf::from(c.into_inner())),
        headers,
        cache,
        ci_cache,
        execute: raw.execute,
        platform: raw.platform,
        timeout: duration(
            check,
            "timeout",
            raw.timeout.as_ref(),
            Duration::from_secs(60),
        ),
        connect_timeout: duration(
            check,
            "connect_timeout",
            raw.connect_timeout.as_ref(),
            Duration::from_secs(5),
        ),
        queue_timeout: duration(
            check,
            "queue_timeout",
            raw.queue_timeout.as_ref(),
            Duration::from_secs(600),
        ),
        retries: super::limits::check_retries(check, raw.retries.as_ref()).unwrap_or(3),
    })
}
