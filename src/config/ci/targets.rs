//! The parts of `[ci]` that belong to one service or one job's files: caches, artifacts,
//! the `os` runner labels and the GitHub/Forgejo action settings.

use super::checks::is_name_part;
use super::raw::{RawActions, RawArtifacts, RawCache};
use super::{ActionsSettings, Artifacts, ArtifactsWhen, Cache, Pin};
use crate::config::checker::Checker;
use crate::config::{did_you_mean, parse_duration_up_to};
use indexmap::IndexMap;
use toml::Spanned;

/// How long CI artifacts may be kept: GitLab takes years (and "never" expiring).
const MAX_ARTIFACT_AGE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

impl Checker<'_> {
    pub(super) fn cache(&mut self, raw: Option<&Spanned<RawCache>>, gitlab: bool) -> Option<Cache> {
        let raw = raw?;
        let c = raw.get_ref();
        if c.paths.is_empty() {
            self.error(raw.span(), "`cache` has no `paths`").label =
                "list the folders to keep between runs".into();
        }
        let paths = self.paths(&c.paths, "a cache path");
        if gitlab {
            for p in &c.paths {
                let text = p.get_ref();
                if text.starts_with('/') || text.starts_with('~') || text.starts_with('$') {
                    let d = self.error(p.span(), "GitLab caches only paths inside the project");
                    d.label = "make it relative to the repository root".into();
                    d.help = Some(
                        "for tool folders such as ~/.cargo, point the tool's home into the \
                         repository (e.g. CARGO_HOME in [env]) and cache that"
                            .into(),
                    );
                }
            }
        }
        if gitlab && c.key_files.len() > 2 {
            self.error(
                c.key_files[2].span(),
                "GitLab keys a cache on at most two files",
            )
            .label = "GitLab's `cache:key:files` takes one or two files".into();
        }
        let key_files = self.paths(&c.key_files, "a cache key file");
        Some(Cache { paths, key_files })
    }

    pub(super) fn artifacts(&mut self, raw: Option<&Spanned<RawArtifacts>>) -> Option<Artifacts> {
        let raw = raw?;
        let a = raw.get_ref();
        if a.paths.is_empty() {
            self.error(raw.span(), "`artifacts` has no `paths`").label =
                "list the files or folders to keep".into();
        }
        let paths = self.paths(&a.paths, "an artifact path");
        let when = match a.when.as_ref() {
            None => ArtifactsWhen::OnFailure,
            Some(w) => match w.get_ref().as_str() {
                "on_success" => ArtifactsWhen::OnSuccess,
                "on_failure" => ArtifactsWhen::OnFailure,
                "always" => ArtifactsWhen::Always,
                other => {
                    let options = ["on_success", "on_failure", "always"];
                    self.error(
                        w.span(),
                        format!("invalid `when` = `{other}` for artifacts"),
                    )
                    .label = match did_you_mean(other, options) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "one of: on_success, on_failure, always".into(),
                    };
                    ArtifactsWhen::OnFailure
                }
            },
        };
        let expire_days = a.expire.as_ref().and_then(|e| {
            match parse_duration_up_to(e.get_ref(), MAX_ARTIFACT_AGE, "a century") {
                Ok(d) if d.as_secs() >= 86_400 => Some(d.as_secs().div_ceil(86_400)),
                Ok(_) => {
                    self.error(e.span(), "artifacts are kept for at least a day")
                        .label = "write a number of days, such as \"7d\"".into();
                    None
                }
                Err(reason) => {
                    self.error(e.span(), format!("invalid `expire` `{}`", e.get_ref()))
                        .label = reason;
                    None
                }
            }
        });
        Some(Artifacts {
            paths,
            when,
            expire_days,
        })
    }

    /// `os = { VALUE = "label" }`: each key a value of the `os` matrix axis.
    pub(super) fn os_map(
        &mut self,
        raw: &IndexMap<Spanned<String>, Spanned<String>>,
        matrix: &IndexMap<String, Vec<String>>,
    ) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        for (value, label) in raw {
            let values = matrix.get("os");
            if !values.is_some_and(|v| v.contains(value.get_ref())) {
                let d = self.error(
                    value.span(),
                    format!(
                        "`{}` is not a value of the `os` matrix axis",
                        value.get_ref()
                    ),
                );
                d.label = match values {
                    Some(v) => match did_you_mean(value.get_ref(), v.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("its values: {}", v.join(", ")),
                    },
                    None => "`[ci.matrix]` has no `os` axis".into(),
                };
                continue;
            }
            if self.ci_text(label, "a runner label") {
                out.insert(value.get_ref().clone(), label.get_ref().clone());
            }
        }
        out
    }

    pub(super) fn actions(
        &mut self,
        raw: &RawActions,
        matrix: &IndexMap<String, Vec<String>>,
    ) -> ActionsSettings {
        let os = self.os_map(&raw.os, matrix);
        let runs_on = raw
            .runs_on
            .as_ref()
            .filter(|r| self.ci_text(r, "`runs_on`"))
            .map(|r| r.get_ref().clone());
        let mut pins = IndexMap::new();
        for (action, pin) in &raw.pins {
            let name = action.get_ref();
            let parts: Vec<&str> = name.split('/').collect();
            if parts.len() < 2 || !parts.iter().all(|p| is_name_part(p)) {
                self.error(action.span(), format!("`{name}` is not an action name"))
                    .label = "write it as owner/repository, as in `uses:`".into();
                continue;
            }
            let p = pin.get_ref();
            if p.sha.len() != 40 || !p.sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                let d = self.error(
                    pin.span(),
                    format!("the pin of `{name}` is not a commit SHA"),
                );
                d.label = "a full 40-character commit hash".into();
                d.help = Some("tags and branches can move; a commit cannot".into());
                continue;
            }
            if let Some(v) = &p.version
                && (v.trim().is_empty() || v.chars().any(char::is_control))
            {
                self.error(
                    pin.span(),
                    format!("the version of `{name}` is not one line"),
                )
                .label = "a release name such as \"v4.2.2\"".into();
                continue;
            }
            pins.insert(
                name.clone(),
                Pin {
                    sha: p.sha.to_ascii_lowercase(),
                    version: p.version.clone(),
                },
            );
        }
        ActionsSettings { runs_on, pins, os }
    }
}
