//! Checks of the strings that go into generated CI files: names, matrix values, secret
//! names, ref patterns, permissions and paths. One line each, no expression syntax.

use crate::config::checker::Checker;
use crate::config::did_you_mean;
use indexmap::IndexMap;
use toml::Spanned;

/// GitHub token scopes that `permissions` may name.
const PERMISSION_SCOPES: [&str; 16] = [
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "models",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
    "artifact-metadata",
];

/// A name that is safe as a YAML key, a job id on every service and part of a file name.
pub(super) fn is_axis_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Matrix values appear in runner labels, job names, artifact names, cache keys and
/// command lines: a small character set that is safe in all of them.
pub(super) fn is_matrix_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// One part of `owner/repo`.
pub(super) fn is_name_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub(super) fn is_secret_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        // GitHub's own token is the one GITHUB_ name a job may ask for (a release upload).
        && (!name.starts_with("GITHUB_") || name == "GITHUB_TOKEN")
}

impl Checker<'_> {
    /// A free-form string that goes into a generated file: one line, no expression syntax.
    pub(super) fn ci_text(&mut self, s: &Spanned<String>, what: &str) -> bool {
        let text = s.get_ref();
        if text.trim().is_empty() {
            self.error(s.span(), format!("{what} is empty")).label = "give a value".into();
            return false;
        }
        if text.chars().any(char::is_control) {
            self.error(s.span(), format!("{what} contains a control character"))
                .label = "line breaks and tabs cannot go into a CI file here".into();
            return false;
        }
        if text.contains("${{") {
            let d = self.error(s.span(), format!("{what} contains `${{{{`"));
            d.label = "GitHub and Forgejo would evaluate this as an expression".into();
            d.help = Some("preflight writes the expressions it needs itself".into());
            return false;
        }
        true
    }

    /// Branch and tag patterns: git ref names (git-check-ref-format) with `*` globs.
    pub(super) fn ref_patterns(&mut self, list: &[Spanned<String>], what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for s in list {
            if !self.ci_text(s, what) {
                continue;
            }
            let text = s.get_ref();
            let bad = text
                .chars()
                .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '[' | '\\'));
            if bad.is_some() || text.contains("..") || text.contains("@{") {
                let d = self.error(s.span(), format!("`{text}` is not a valid {what}"));
                d.label = match bad {
                    Some(c) => format!("git ref names cannot contain {c:?}"),
                    None => "git ref names cannot contain `..` or `@{`".into(),
                };
                d.help = Some("use `*` to match any run of characters".into());
                continue;
            }
            out.push(text.clone());
        }
        out
    }

    pub(super) fn permissions(
        &mut self,
        raw: Option<&Spanned<IndexMap<Spanned<String>, Spanned<String>>>>,
    ) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        let Some(raw) = raw else { return out };
        for (scope, level) in raw.get_ref() {
            if !PERMISSION_SCOPES.contains(&scope.get_ref().as_str()) {
                let d = self.error(
                    scope.span(),
                    format!("unknown permission `{}`", scope.get_ref()),
                );
                d.label = match did_you_mean(scope.get_ref(), PERMISSION_SCOPES) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "not a GitHub token permission".into(),
                };
                continue;
            }
            if !["read", "write", "none"].contains(&level.get_ref().as_str()) {
                self.error(
                    level.span(),
                    format!(
                        "invalid level `{}` for permission `{}`",
                        level.get_ref(),
                        scope.get_ref()
                    ),
                )
                .label = "one of: read, write, none".into();
                continue;
            }
            out.insert(scope.get_ref().clone(), level.get_ref().clone());
        }
        out
    }

    pub(super) fn paths(&mut self, list: &[Spanned<String>], what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for p in list {
            if !self.ci_text(p, what) {
                continue;
            }
            if p.get_ref().split('/').any(|c| c == "..") {
                self.error(p.span(), format!("{what} leaves the repository"))
                    .label = "`..` is not allowed here".into();
                continue;
            }
            out.push(p.get_ref().clone());
        }
        out
    }
}
