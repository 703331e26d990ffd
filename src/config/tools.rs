//! `[tools]`: the programs steps use, each pinned to a registry package or a checked
//! download, and a step's `tools = [...]`.
//!
//! ```toml
//! [tools]
//! ruff = "pypi:ruff@0.17.5"
//! prettier = "npm:prettier@3.10.1"
//! taplo = "cargo:taplo-cli@0.10.0"
//! hadolint = { url = "https://...", sha256 = "...", bin = "hadolint" }
//! shfmt = { url = "https://.../shfmt.tar.gz", sha256 = "...", bin = "shfmt", path = "dist/shfmt" }
//! ```
//! Only the spelling is checked here; resolving, locking and installing is `crate::tools`.

use super::checker::{Checker, is_step_name};
use super::did_you_mean;
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt;
use toml::Spanned;

/// Where a tool comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ToolSource {
    /// A PyPI distribution; its console scripts become commands.
    Pypi { package: String, version: String },
    /// An npm package; its `bin` entries become commands.
    Npm { package: String, version: String },
    /// A crate built with `cargo install`; its binaries become commands.
    Cargo { package: String, version: String },
    /// A file downloaded from `url` whose SHA-256 must be `sha256`: the program itself, or
    /// an archive holding it at `path`.
    Url {
        url: String,
        sha256: String,
        /// The command's name.
        bin: String,
        /// The program's path inside the archive (`None`: the download is the program).
        path: Option<String>,
        format: ArchiveFormat,
    },
}

/// What a `url` tool's download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveFormat {
    /// The program itself.
    Binary,
    TarGz,
    TarXz,
    Zip,
}

impl ArchiveFormat {
    pub const NAMES: [&str; 4] = ["binary", "tar.gz", "tar.xz", "zip"];

    pub fn parse(text: &str) -> Option<ArchiveFormat> {
        match text {
            "binary" => Some(ArchiveFormat::Binary),
            "tar.gz" => Some(ArchiveFormat::TarGz),
            "tar.xz" => Some(ArchiveFormat::TarXz),
            "zip" => Some(ArchiveFormat::Zip),
            _ => None,
        }
    }

    /// The format a URL's file name says, if any.
    pub fn from_url(url: &str) -> Option<ArchiveFormat> {
        let name = url.split(['?', '#']).next().unwrap_or(url);
        let name = name.rsplit('/').next().unwrap_or(name);
        [
            (".tar.gz", ArchiveFormat::TarGz),
            (".tgz", ArchiveFormat::TarGz),
            (".tar.xz", ArchiveFormat::TarXz),
            (".txz", ArchiveFormat::TarXz),
            (".zip", ArchiveFormat::Zip),
        ]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, f)| f)
    }

    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::Binary => "binary",
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::TarXz => "tar.xz",
            ArchiveFormat::Zip => "zip",
        }
    }
}

/// One entry of `[tools]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolSpec {
    /// The key in `[tools]`: what steps name in `tools = [...]`.
    pub name: String,
    pub source: ToolSource,
}

impl ToolSpec {
    /// The backend's name: `pypi`, `npm`, `cargo` or `url`.
    pub fn backend(&self) -> &'static str {
        match self.source {
            ToolSource::Pypi { .. } => "pypi",
            ToolSource::Npm { .. } => "npm",
            ToolSource::Cargo { .. } => "cargo",
            ToolSource::Url { .. } => "url",
        }
    }

    /// The spec in one canonical line: what the lock records to tell when the
    /// configuration moved on.
    pub fn canonical(&self) -> String {
        match &self.source {
            ToolSource::Pypi { package, version }
            | ToolSource::Npm { package, version }
            | ToolSource::Cargo { package, version } => {
                format!("{}:{package}@{version}", self.backend())
            }
            ToolSource::Url {
                url,
                sha256,
                bin,
                path,
                format,
            } => format!(
                "url:{url} sha256={sha256} bin={bin} path={} format={}",
                path.as_deref().unwrap_or(""),
                format.name()
            ),
        }
    }
}

/// A `[tools]` value as written: `"backend:package@version"` or a `{ url = ... }` table.
pub(super) enum RawTool {
    Text(String),
    Url(RawUrlTool),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUrlTool {
    url: Spanned<String>,
    sha256: Spanned<String>,
    bin: Spanned<String>,
    path: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawTool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "\"pypi:PACKAGE@VERSION\", \"npm:...\", \"cargo:...\", or a table \
                     { url = ..., sha256 = ..., bin = ... }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTool, E> {
                Ok(RawTool::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTool, A::Error> {
                RawUrlTool::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawTool::Url)
            }
        }
        d.deserialize_any(V)
    }
}

const BACKENDS: [&str; 3] = ["pypi", "npm", "cargo"];

/// Characters a package name may hold in every registry we speak to (npm scopes included).
fn is_package_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./@".contains(&b))
        && !name.contains("..")
}

/// An exact version: no ranges, no spaces, nothing a shell or a requirement line reads.
fn is_exact_version(version: &str) -> bool {
    !version.is_empty()
        && version.as_bytes()[0].is_ascii_alphanumeric()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A command name: a file name that cannot climb out of its folder.
fn is_command_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.starts_with('-')
}

/// Parses `backend:package@version` (npm scopes: `npm:@scope/pkg@1.2.3`).
fn parse_text(text: &str) -> Result<ToolSource, String> {
    let Some((backend, rest)) = text.split_once(':') else {
        return Err("expected \"BACKEND:PACKAGE@VERSION\"".into());
    };
    if !BACKENDS.contains(&backend) {
        return Err(match did_you_mean(backend, BACKENDS) {
            Some(s) => format!("unknown backend `{backend}`: did you mean `{s}`?"),
            None => format!(
                "unknown backend `{backend}`: use pypi, npm or cargo, or a {{ url = ... }} table"
            ),
        });
    }
    // The version follows the last `@` that is not the first character (an npm scope).
    let Some(at) = rest.rfind('@').filter(|&i| i > 0) else {
        return Err("the version is missing: pin it exactly, like `@1.2.3`".into());
    };
    let (package, version) = (&rest[..at], &rest[at + 1..]);
    if !is_package_name(package) {
        return Err(format!("`{package}` is not a package name"));
    }
    if !is_exact_version(version) {
        return Err(format!(
            "`{version}` is not an exact version: pin one, like `1.2.3` (ranges are not locked)"
        ));
    }
    let (package, version) = (package.to_string(), version.to_string());
    Ok(match backend {
        "pypi" => ToolSource::Pypi { package, version },
        "npm" => ToolSource::Npm { package, version },
        _ => ToolSource::Cargo { package, version },
    })
}

/// Checks `[tools]` and returns the valid entries.
pub(super) fn validate(
    check: &mut Checker,
    raw: IndexMap<Spanned<String>, Spanned<RawTool>>,
) -> IndexMap<String, ToolSpec> {
    let mut tools = IndexMap::new();
    for (name, value) in raw {
        let name_span = name.span();
        let name = name.into_inner();
        if !is_step_name(&name) {
            check
                .error(name_span, format!("invalid tool name `{name}`"))
                .label = "use lowercase letters, digits, `-` and `_`".into();
            continue;
        }
        let span = value.span();
        let source = match value.into_inner() {
            RawTool::Text(text) => match parse_text(&text) {
                Ok(source) => source,
                Err(why) => {
                    let d = check.error(span, format!("invalid tool `{name}`: {why}"));
                    d.label = "here".into();
                    d.help = Some(
                        "write it like \"pypi:ruff@0.17.5\", \"npm:prettier@3.10.1\" or \
                         \"cargo:taplo-cli@0.10.0\""
                            .into(),
                    );
                    continue;
                }
            },
            RawTool::Url(raw) => match url_source(check, &name, raw) {
                Some(source) => source,
                None => continue,
            },
        };
        tools.insert(name.clone(), ToolSpec { name, source });
    }
    tools
}

fn url_source(check: &mut Checker, name: &str, raw: RawUrlTool) -> Option<ToolSource> {
    let mut ok = true;
    let url = raw.url.get_ref();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(char::is_whitespace)
    {
        check
            .error(raw.url.span(), format!("invalid `url` for tool `{name}`"))
            .label = "expected an https:// address".into();
        ok = false;
    }
    if !is_sha256(raw.sha256.get_ref()) {
        let d = check.error(
            raw.sha256.span(),
            format!("invalid `sha256` for tool `{name}`"),
        );
        d.label = "expected 64 hexadecimal digits".into();
        d.help = Some("the download's SHA-256, as `sha256sum FILE` prints it".into());
        ok = false;
    }
    if !is_command_name(raw.bin.get_ref()) {
        check
            .error(raw.bin.span(), format!("invalid `bin` for tool `{name}`"))
            .label = "the command's name, without a folder".into();
        ok = false;
    }
    let path = raw.path.as_ref().map(|p| p.get_ref().clone());
    if let Some(p) = &raw.path {
        let bad = p.get_ref().is_empty()
            || p.get_ref().starts_with('/')
            || p.get_ref().split('/').any(|c| c == "..");
        if bad {
            check
                .error(p.span(), format!("invalid `path` for tool `{name}`"))
                .label = "a path inside the archive, relative, without `..`".into();
            ok = false;
        }
    }
    let format = match &raw.format {
        Some(f) => match ArchiveFormat::parse(f.get_ref()) {
            Some(format) => format,
            None => {
                let d = check.error(f.span(), format!("invalid `format` for tool `{name}`"));
                d.label = format!("expected one of: {}", ArchiveFormat::NAMES.join(", "));
                return None;
            }
        },
        None => match (ArchiveFormat::from_url(url), &path) {
            (Some(format), _) => format,
            (None, None) => ArchiveFormat::Binary,
            (None, Some(_)) => {
                let d = check.error(
                    raw.url.span(),
                    format!("tool `{name}` has a `path` but its archive format is unknown"),
                );
                d.label = "the address does not end in .tar.gz, .tar.xz or .zip".into();
                d.help = Some("add `format = \"tar.gz\"` (or tar.xz, zip)".into());
                return None;
            }
        },
    };
    if format != ArchiveFormat::Binary && path.is_none() {
        let d = check.error(
            raw.url.span(),
            format!("tool `{name}` is an archive: say where the program is in it"),
        );
        d.label = "add `path = \"folder/program\"`".into();
        ok = false;
    }
    ok.then(|| ToolSource::Url {
        url: raw.url.into_inner(),
        sha256: raw.sha256.into_inner().to_ascii_lowercase(),
        bin: raw.bin.into_inner(),
        path,
        format,
    })
}

/// A step's `tools`: every name must be in `[tools]`; without the key, every tool.
pub(super) fn step_tools(
    check: &mut Checker,
    step: &str,
    names: Option<&Vec<Spanned<String>>>,
    raw_tool_names: &[String],
) -> Vec<String> {
    let Some(names) = names else {
        return raw_tool_names.to_vec();
    };
    let mut picked = Vec::new();
    for n in names {
        let name = n.get_ref();
        if !raw_tool_names.contains(name) {
            let d = check.error(
                n.span(),
                format!("step `{step}` uses tool `{name}`, which is not in [tools]"),
            );
            d.label = match did_you_mean(name, raw_tool_names.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "no tool has this name".into(),
            };
            d.help = Some(format!(
                "add it to [tools], like `{name} = \"pypi:{name}@VERSION\"`"
            ));
        } else if !picked.contains(name) {
            picked.push(name.clone());
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_specs_parse_with_scopes_and_refuse_ranges() {
        assert_eq!(
            parse_text("npm:@scope/pkg@1.2.3"),
            Ok(ToolSource::Npm {
                package: "@scope/pkg".into(),
                version: "1.2.3".into()
            })
        );
        assert!(parse_text("pypi:ruff").is_err());
        assert!(parse_text("pypi:ruff@>=1").is_err());
        assert!(parse_text("pypi:ruff@1 ; rm").is_err());
        assert!(parse_text("pip:ruff@1").unwrap_err().contains("pypi"));
        assert!(parse_text("cargo:../x@1").is_err());
    }

    #[test]
    fn archive_formats_come_from_the_address() {
        assert_eq!(
            ArchiveFormat::from_url("https://x/a.tar.gz?raw=1"),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(ArchiveFormat::from_url("https://x/a"), None);
    }
}
