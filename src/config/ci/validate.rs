//! `[ci]` from its raw form to the typed `Ci`: targets, triggers, the matrix and the
//! per-service settings here; jobs in `jobs`, per-target tables in `targets`.

use super::checks::{is_axis_name, is_matrix_value};
use super::jobs;
use super::raw::{AllowDirty, RawCi};
use super::{BuildkiteSettings, CI_TARGETS, Ci, GitlabSettings, Triggers, WoodpeckerSettings};
use crate::config::Step;
use crate::config::checker::{Checker, strings};
use crate::config::did_you_mean;
use indexmap::IndexMap;
use toml::Spanned;

/// Checks `[ci]` against the steps; every problem goes to `check`.
pub(in crate::config) fn validate(
    check: &mut Checker,
    raw: RawCi,
    steps: &IndexMap<String, Step>,
) -> Ci {
    for (i, t) in raw.targets.iter().enumerate() {
        if raw.targets[..i].iter().any(|u| u.get_ref() == t.get_ref()) {
            check
                .error(
                    t.span(),
                    format!("CI target `{}` is listed twice", t.get_ref()),
                )
                .label = "remove one".into();
        } else if !CI_TARGETS.contains(&t.get_ref().as_str()) {
            let d = check.error(t.span(), format!("unknown CI target `{}`", t.get_ref()));
            d.label = match did_you_mean(t.get_ref(), CI_TARGETS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("one of: {}", CI_TARGETS.join(", ")),
            };
        }
    }
    let targets = strings(&raw.targets);
    let allow_dirty = match raw.allow_dirty.as_ref() {
        None => Vec::new(),
        Some(a) => match a.get_ref() {
            AllowDirty::All(true) => targets.clone(),
            AllowDirty::All(false) => Vec::new(),
            AllowDirty::Targets(list) => {
                for t in list {
                    if !targets.contains(t) {
                        check
                            .error(
                                a.span(),
                                format!("`allow_dirty` names `{t}`, which is not in `targets`"),
                            )
                            .label = format!("the targets are: {}", targets.join(", "));
                    }
                }
                list.clone()
            }
        },
    };
    let install = raw
        .install
        .as_ref()
        .filter(|i| check.ci_text(i, "`install`"))
        .map(|i| i.get_ref().trim().to_string());

    let mut permissions = check.permissions(raw.permissions.as_ref());
    if raw.permissions.is_none() {
        permissions.insert("contents".into(), "read".into());
    }

    let triggers = match &raw.triggers {
        None => Triggers {
            push: vec!["main".into()],
            pull_request: true,
            ..Triggers::default()
        },
        Some(t) => {
            let span = t.span();
            let t = t.get_ref();
            if t.push.is_empty()
                && !t.pull_request
                && t.tags.is_empty()
                && t.schedule.is_empty()
                && !t.manual
            {
                let d = check.error(span, "`[ci.triggers]` starts CI on nothing");
                d.label = "enable at least one trigger".into();
                d.help = Some(
                    "set `push`, `pull_request`, `tags`, `schedule` or `manual`; \
                     to stop generating CI files, remove the targets"
                        .into(),
                );
            }
            for cron in &t.schedule {
                if check.ci_text(cron, "a schedule")
                    && cron.get_ref().split_whitespace().count() != 5
                {
                    let d = check.error(
                        cron.span(),
                        format!("`{}` is not a cron line", cron.get_ref()),
                    );
                    d.label = "five fields: minute hour day-of-month month day-of-week".into();
                    d.help = Some("for example \"17 3 * * 1\": Mondays at 03:17 UTC".into());
                }
            }
            Triggers {
                push: check.ref_patterns(&t.push, "branch pattern"),
                pull_request: t.pull_request,
                tags: check.ref_patterns(&t.tags, "tag pattern"),
                schedule: strings(&t.schedule),
                manual: t.manual,
            }
        }
    };

    let mut matrix = IndexMap::new();
    for (axis, values) in &raw.matrix {
        if !is_axis_name(axis.get_ref()) {
            check
                .error(
                    axis.span(),
                    format!("invalid matrix axis name `{}`", axis.get_ref()),
                )
                .label = "use lowercase letters, digits and `_`, starting with a letter".into();
        }
        if values.get_ref().is_empty() {
            check
                .error(
                    values.span(),
                    format!("matrix axis `{}` has no values", axis.get_ref()),
                )
                .label = "give at least one value".into();
        }
        let mut seen = Vec::new();
        for v in values.get_ref() {
            if !is_matrix_value(v.get_ref()) {
                let d = check.error(v.span(), format!("invalid matrix value `{}`", v.get_ref()));
                d.label = "use letters, digits and . _ - +".into();
                d.help = Some("matrix values become runner labels, job names and arguments".into());
            } else if seen.contains(v.get_ref()) {
                check
                    .error(
                        v.span(),
                        format!("matrix value `{}` is listed twice", v.get_ref()),
                    )
                    .label = "remove one".into();
            }
            seen.push(v.get_ref().clone());
        }
        matrix.insert(axis.get_ref().clone(), seen);
    }

    let gitlab_target = targets.iter().any(|t| t == "gitlab");
    let cache = check.cache(raw.cache.as_ref(), gitlab_target);

    let jobs = jobs::validate(check, &raw.jobs, steps, &matrix, gitlab_target);

    let mut gitlab_tags = Vec::new();
    for t in &raw.gitlab.tags {
        if check.ci_text(t, "a runner tag") {
            gitlab_tags.push(t.get_ref().clone());
        }
    }
    let mut agents = IndexMap::new();
    for (k, v) in &raw.buildkite.agents {
        if check.ci_text(k, "an agent tag") && check.ci_text(v, "an agent tag value") {
            agents.insert(k.get_ref().clone(), v.get_ref().clone());
        }
    }
    let image = |check: &mut Checker, i: &Option<Spanned<String>>| {
        i.as_ref()
            .filter(|i| check.ci_text(i, "`image`"))
            .map(|i| i.get_ref().clone())
    };
    let github = check.actions(&raw.github, &matrix);
    let forgejo = check.actions(&raw.forgejo, &matrix);
    let gitlab_os = check.os_map(&raw.gitlab.os, &matrix);
    Ci {
        targets,
        install,
        allow_dirty,
        cancel_in_progress: raw.cancel_in_progress.unwrap_or(true),
        permissions,
        triggers,
        matrix,
        cache,
        jobs,
        github,
        forgejo,
        gitlab: GitlabSettings {
            image: image(check, &raw.gitlab.image),
            tags: gitlab_tags,
            os: gitlab_os,
        },
        woodpecker: WoodpeckerSettings {
            image: image(check, &raw.woodpecker.image),
        },
        buildkite: BuildkiteSettings { agents },
    }
}
