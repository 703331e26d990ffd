//! The collector of diagnostics that every part of validation writes to, and the checks
//! that several tables share (names, step references, file types).
//!
//! Imports only the typed model and diagnostics: the `raw` and per-table modules depend on
//! this one, never the other way round.

use super::{Diagnostic, Step, did_you_mean};
use crate::filetypes::{TYPE_NAMES, Types};
use indexmap::IndexMap;
use std::path::Path;
use toml::Spanned;

/// Collects diagnostics for one file.
pub(super) struct Checker<'a> {
    path: &'a Path,
    found: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(path: &'a Path) -> Self {
        Checker {
            path,
            found: Vec::new(),
        }
    }

    /// Everything found, in the order of the file; `Ok` when nothing was.
    pub(super) fn finish(mut self) -> Result<(), Vec<Diagnostic>> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found
            .sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Err(self.found)
    }

    pub(super) fn error(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.found
            .push(Diagnostic::new(self.path, Some(span), message));
        self.found.last_mut().expect("just pushed")
    }

    /// Reports a glob that does not compile, with why.
    pub(super) fn bad_glob(&mut self, glob: &Spanned<String>, reason: &str) {
        self.error(
            glob.span(),
            format!("invalid glob `{}`: {reason}", glob.get_ref()),
        )
        .label = "this glob".into();
    }

    /// The step's `types`, each checked against the known names.
    pub(super) fn types(&mut self, step: &str, names: &[Spanned<String>]) -> Types {
        let mut set = Types::default();
        for name in names {
            match Types::parse(&[name.get_ref()]) {
                Ok(t) => set = set.union(t),
                Err(_) => {
                    let d = self.error(
                        name.span(),
                        format!("unknown file type `{}` in step `{step}`", name.get_ref()),
                    );
                    d.label = match did_you_mean(name.get_ref(), TYPE_NAMES.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "not a file type".into(),
                    };
                    d.help = Some(format!("the types are: {}", TYPE_NAMES.join(", ")));
                }
            }
        }
        set
    }

    /// Checks that every name refers to a step, with a suggestion for near misses.
    pub(super) fn step_refs_in(
        &mut self,
        refs: &[Spanned<String>],
        steps: &IndexMap<String, Step>,
        what: impl Fn(&str) -> String,
    ) {
        for r in refs {
            let name = r.get_ref();
            if !steps.contains_key(name) {
                let suggestion = did_you_mean(name, steps.keys().map(String::as_str));
                let d = self.error(r.span(), what(name));
                d.label = match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "no step has this name".into(),
                };
            }
        }
    }
}

pub(super) fn is_step_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(super) fn strings(list: &[Spanned<String>]) -> Vec<String> {
    list.iter().map(|s| s.get_ref().clone()).collect()
}
