//! Checks of the keys that drive the cache: `inputs`, `outputs`, `key_commands` and the
//! `[settings]` that place and bound the store.

use super::checker::Checker;
use crate::files::Matcher;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::path::{Component, Path};
use toml::Spanned;

/// A size: a number of bytes, or a string such as `"500MB"`, `"5 GB"` or `"2GiB"`.
pub(super) struct SizeValue(Result<u64, String>);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"5GB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue(parse_size(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                Ok(SizeValue(
                    u64::try_from(v).map_err(|_| "a size cannot be negative".to_string()),
                ))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue(Ok(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `"5GB"`, `"500 MB"`, `"2GiB"`, `"1024"`: decimal units (KB, MB, GB, TB) are powers
/// of 1000, binary ones (KiB, MiB, GiB, TiB) powers of 1024; case does not matter.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit `{other}`")),
    };
    let bytes = number * factor as f64;
    // Beyond 2^64 bytes the float-to-integer conversion would quietly saturate.
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is more than any disk holds"));
    }
    Ok(bytes as u64)
}

/// Whether a path component names git's folder on some file system: `.git` in any letter
/// case (macOS and Windows ignore case), also with the characters HFS+ ignores.
fn is_git_dir_name(component: Component) -> bool {
    let name = component.as_os_str().to_string_lossy();
    let visible: String = name
        .chars()
        .filter(|c| {
            !matches!(c, '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{206a}'..='\u{206f}' | '\u{feff}')
        })
        .collect();
    visible.eq_ignore_ascii_case(".git")
}

/// A glob or path that climbs out of the repository.
fn escapes(text: &str) -> bool {
    Path::new(text)
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
}

/// Checks a step's `inputs`, `outputs` and `key_commands`; returns the compiled inputs.
pub(super) fn check_step(
    check: &mut Checker,
    step: &str,
    inputs: &[Spanned<String>],
    outputs: &[Spanned<String>],
    key_commands: &[Spanned<String>],
) -> Option<Matcher> {
    let mut ok = true;
    for glob in inputs {
        if escapes(glob.get_ref()) {
            ok = false;
            let d = check.error(
                glob.span(),
                format!(
                    "input `{}` of step `{step}` is outside the repository",
                    glob.get_ref()
                ),
            );
            d.label = "inputs are globs relative to the repository root".into();
            d.help = Some("only files inside the repository can be inputs".into());
        }
    }
    for out in outputs {
        let text = out.get_ref();
        let trimmed = text.trim_end_matches('/');
        let why = if trimmed.trim().is_empty() || trimmed == "." {
            Some("an output must name a file or folder below the repository root")
        } else if text.starts_with('/') || escapes(text) {
            Some("outputs are paths relative to the repository root, inside it")
        } else if text.contains(['*', '?', '[', '{']) {
            Some("outputs are paths, not globs: name the file or the folder")
        } else if Path::new(trimmed).components().any(is_git_dir_name) {
            Some("git's own folder cannot be an output (nor be inside one)")
        } else {
            None
        };
        if let Some(why) = why {
            let d = check.error(
                out.span(),
                format!("invalid output `{text}` for step `{step}`"),
            );
            d.label = why.into();
            if text.contains('*') {
                let folder = text.split('*').next().unwrap_or("").trim_end_matches('/');
                if !folder.is_empty() {
                    d.help = Some(format!("write `{folder}` to keep the whole folder"));
                }
            }
        }
    }
    for cmd in key_commands {
        if cmd.get_ref().trim().is_empty() {
            check
                .error(cmd.span(), format!("empty key command in step `{step}`"))
                .label = "give a command whose output identifies a tool, e.g. \"rustc -V\"".into();
        }
    }
    if inputs.is_empty() || !ok {
        return None;
    }
    let globs: Vec<&str> = inputs.iter().map(|g| g.get_ref().as_str()).collect();
    match Matcher::new(&globs, &[]) {
        Ok(m) => Some(m),
        Err(bad) => {
            check.bad_glob(&inputs[bad.index], &bad.reason);
            None
        }
    }
}

/// Checks `[settings] cache_dir` and `cache_max`; returns the bound when it is valid.
pub(super) fn check_settings(
    check: &mut Checker,
    cache_dir: Option<&Spanned<String>>,
    cache_max: Option<&Spanned<SizeValue>>,
) -> Option<u64> {
    if let Some(dir) = cache_dir
        && dir.get_ref().trim().is_empty()
    {
        check.error(dir.span(), "`cache_dir` is empty").label =
            "give a folder, absolute or relative to the repository root".into();
    }
    let max = cache_max?;
    match &max.get_ref().0 {
        Ok(n) => Some(*n),
        Err(e) => {
            let d = check.error(max.span(), format!("invalid `cache_max`: {e}"));
            d.label = "expected a size".into();
            d.help = Some("write it like \"500MB\", \"5GB\" or \"2GiB\"".into());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_in_decimal_and_binary_units() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500 mb"), Ok(500_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5kB"), Ok(1500));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999999999TB").is_err());
        assert!(parse_size("18446744073709551616").is_err());
    }
}
