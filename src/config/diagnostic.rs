//! Config diagnostics: a message tied to a place in the file, rendered with the line and a caret.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    pub file: PathBuf,
    /// Byte range in the file's text; `None` when the problem has no single place.
    pub span: Option<Range<usize>>,
    /// Printed after the caret: a hint about this place (`did you mean ...?`).
    pub label: String,
    /// Printed after the snippet: what to do.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            file: file.to_path_buf(),
            span,
            label: String::new(),
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column (in characters) of the start of the span.
    pub fn line_col(&self, source: &str) -> Option<(usize, usize)> {
        let start = self.span.as_ref()?.start.min(source.len());
        let before = &source[..floor_char_boundary(source, start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Some((line, col))
    }

    /// Renders the diagnostic the way rustc does: message, location, the line, a caret.
    pub fn render(&self, source: &str, shown_path: &str) -> String {
        self.render_from(source, shown_path, None)
    }

    /// Like `render`, for text that is not the file's current content: `origin` follows the
    /// location (`--> preflight.toml:3:1 (staged)`), which stays `path:line:col` for editors.
    pub fn render_from(&self, source: &str, shown_path: &str, origin: Option<&str>) -> String {
        let origin = origin.map(|o| format!(" ({o})")).unwrap_or_default();
        let mut out = format!("error: {}\n", self.message);
        match self.line_col(source) {
            Some((line, col)) => {
                let span = self.span.clone().unwrap_or(0..0);
                let text = source.lines().nth(line - 1).unwrap_or("");
                let gutter = line.to_string().len();
                let pad = " ".repeat(gutter);
                let _ = writeln!(out, "{pad}--> {shown_path}:{line}:{col}{origin}");
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{line} | {text}");
                // The caret covers the span, clipped to the end of its first line.
                let width_in_line = text.chars().count().saturating_sub(col - 1);
                let span_chars = source
                    .get(span.clone())
                    .map_or(1, |s| s.lines().next().unwrap_or("").chars().count());
                let carets = "^".repeat(span_chars.clamp(1, width_in_line.max(1)));
                let marker = format!("{}{carets}", " ".repeat(col - 1));
                if self.label.is_empty() {
                    let _ = writeln!(out, "{pad} | {marker}");
                } else {
                    let _ = writeln!(out, "{pad} | {marker} {}", self.label);
                }
                if let Some(help) = &self.help {
                    let _ = writeln!(out, "{pad} = help: {help}");
                }
            }
            None => {
                let _ = writeln!(out, "  --> {shown_path}{origin}");
                if !self.label.is_empty() {
                    let _ = writeln!(out, "   = note: {}", self.label);
                }
                if let Some(help) = &self.help {
                    let _ = writeln!(out, "   = help: {help}");
                }
            }
        }
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The nearest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Turns a TOML or serde error into a diagnostic, adding "did you mean" for unknown keys.
pub(super) fn diagnose_toml_error(path: &Path, source: &str, err: &toml::de::Error) -> Diagnostic {
    let message = err.message().trim().to_string();
    let span = err.span();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let section = span
            .as_ref()
            .and_then(|s| enclosing_table(source, s.start))
            .map(|t| format!(" in `[{t}]`"))
            .unwrap_or_default();
        let mut d = Diagnostic::new(path, span, format!("unknown key `{key}`{section}"));
        d = match did_you_mean(key, candidates.iter().copied()) {
            Some(best) => d.label(format!("did you mean `{best}`?")),
            None => d.label("unknown key"),
        };
        if !candidates.is_empty() {
            d = d.help(format!("valid keys here: {}", candidates.join(", ")));
        }
        return d;
    }
    let (message, label) = match message.split_once('\n') {
        Some((first, rest)) => (first.to_string(), rest.trim().to_string()),
        None => (message, String::new()),
    };
    Diagnostic::new(path, span, message).label(label)
}

/// The header of the `[table]` that contains byte `offset`, if any.
fn enclosing_table(source: &str, offset: usize) -> Option<String> {
    let before = source.get(..offset)?;
    before.lines().rev().find_map(|line| {
        let line = line.trim();
        let inner = line.strip_prefix('[')?.trim_start_matches('[');
        let end = inner.find(']')?;
        Some(inner[..end].trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_the_span() {
        let src = "[steps.a]\nneds = []\n";
        let d = Diagnostic::new(Path::new("p.toml"), Some(10..14), "unknown key `neds`")
            .label("did you mean `needs`?");
        assert_eq!(d.line_col(src), Some((2, 1)));
        let out = d.render(src, "p.toml");
        assert!(out.contains("--> p.toml:2:1"), "{out}");
        assert!(out.contains("2 | neds = []"), "{out}");
        assert!(out.contains("  | ^^^^ did you mean `needs`?"), "{out}");
    }

    #[test]
    fn suggestions_are_close_words_only() {
        let keys = ["run", "needs", "files", "exclude"];
        assert_eq!(did_you_mean("neds", keys), Some("needs"));
        assert_eq!(did_you_mean("fils", keys), Some("files"));
        assert_eq!(did_you_mean("zzzzzz", keys), None);
    }
}
