//! From the raw serde view to the typed `Config`: step names, commands, references, the
//! `needs` graph, durations and globs, with every problem pointed at its place in the file.
//! The `[ci]` and `[remote]` tables are checked by their own modules, called from here.

use super::checker::{Checker, is_step_name, strings};
use super::raw::{EnvValue, RawConfig, RawStep};
use super::{
    Command, Config, Diagnostic, FILES_PLACEHOLDER, GIT_HOOKS, Hook, Settings, Step, did_you_mean,
    parse_duration,
};
use crate::files::Matcher;
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use toml::Spanned;

/// Checks a step's `run` or `fix` command: not empty, `{files}` used as a whole element.
fn check_command(check: &mut Checker, step: &str, key: &str, cmd: &Spanned<Command>) {
    let span = cmd.span();
    super::limits::check_command_bytes(check, step, key, cmd);
    match cmd.get_ref() {
        Command::Shell(s) if s.trim().is_empty() => {
            check
                .error(span, format!("`{key}` of step `{step}` is empty"))
                .label = "give the command to run".into();
        }
        Command::Argv(args) if args.is_empty() || args[0].trim().is_empty() => {
            check
                .error(span, format!("`{key}` of step `{step}` is empty"))
                .label = "the first element must name the program to run".into();
        }
        Command::Argv(args) => {
            if args
                .iter()
                .any(|a| a != FILES_PLACEHOLDER && a.contains(FILES_PLACEHOLDER))
            {
                let d = check.error(
                    span,
                    format!("`{{files}}` must be a whole element in `{key}` of step `{step}`"),
                );
                d.label = "in an array, \"{files}\" stands alone and becomes one argument per file"
                    .into();
                d.help = Some("write it as its own element, or use a command string".into());
            }
        }
        Command::Shell(_) => {}
    }
}

pub(super) fn validate(path: &Path, raw: RawConfig) -> Result<Config, Vec<Diagnostic>> {
    let mut check = Checker::new(path);

    // Step names keep their spans here; afterwards steps are looked up by plain name.
    let mut name_spans: IndexMap<String, std::ops::Range<usize>> = IndexMap::new();
    let mut raw_steps: IndexMap<String, RawStep> = IndexMap::new();
    for (name, step) in raw.steps {
        let span = name.span();
        let name = name.into_inner();
        if !is_step_name(&name) {
            check
                .error(span.clone(), format!("invalid step name `{name}`"))
                .label = "use lowercase letters, digits, `-` and `_`".into();
        }
        name_spans.insert(name.clone(), span);
        raw_steps.insert(name, step);
    }

    let tool_names: Vec<String> = raw.tools.keys().map(|k| k.get_ref().clone()).collect();
    let mut steps = IndexMap::new();
    for (name, s) in &raw_steps {
        match &s.run {
            None => {
                check
                    .error(
                        name_spans[name].clone(),
                        format!("step `{name}` has no `run`"),
                    )
                    .label = "add `run = \"...\"` to this step".into();
            }
            Some(run) => check_command(&mut check, name, "run", run),
        }
        if let Some(fix) = &s.fix {
            check_command(&mut check, name, "fix", fix);
        }
        let timeout = s
            .timeout
            .as_ref()
            .and_then(|t| match parse_duration(t.get_ref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    let d =
                        check.error(t.span(), format!("invalid timeout `{}`: {e}", t.get_ref()));
                    d.label = "expected a duration".into();
                    d.help = Some(
                        "write it like \"500ms\", \"90s\", \"10m\", \"1h\" or \"1m 30s\"".into(),
                    );
                    None
                }
            });
        let dir = s.dir.as_ref().and_then(|d| {
            let p = Path::new(d.get_ref());
            let escapes = p.components().any(|c| {
                matches!(
                    c,
                    Component::ParentDir | Component::RootDir | Component::Prefix(_)
                )
            });
            if escapes || d.get_ref().trim().is_empty() {
                check
                    .error(d.span(), format!("invalid `dir` for step `{name}`"))
                    .label = "must be a folder inside the repository, relative to its root".into();
                None
            } else {
                Some(p.components().collect::<PathBuf>())
            }
        });
        let types = check.types(name, &s.types);
        // `types` alone selects among all the run's files.
        let files = if s.files.is_empty() && !s.types.is_empty() {
            vec!["*".to_string()]
        } else {
            strings(&s.files)
        };
        let matcher = if files.is_empty() {
            if !s.exclude.is_empty() {
                check
                    .error(
                        s.exclude[0].span(),
                        format!("step `{name}` has `exclude` but no `files`"),
                    )
                    .label = "add `files` globs or `types`; `exclude` only narrows them".into();
            }
            None
        } else {
            match Matcher::new(&files, &strings(&s.exclude)) {
                Ok(m) => Some(m),
                Err(bad) => {
                    let list = if bad.in_exclude { &s.exclude } else { &s.files };
                    check.bad_glob(&list[bad.index], &bad.reason);
                    None
                }
            }
        };
        if s.run.as_ref().is_some_and(|r| r.get_ref().uses_files()) && files.is_empty() {
            let span = s.run.as_ref().map(Spanned::span).unwrap_or_default();
            check
                .error(
                    span,
                    format!("step `{name}` uses {{files}} but has no `files` globs"),
                )
                .label =
                "add `files = [\"...\"]` or `types = [\"...\"]` to say which files it gets".into();
        }
        steps.insert(
            name.clone(),
            Step {
                name: name.clone(),
                run: s
                    .run
                    .as_ref()
                    .map_or(Command::Argv(vec![]), |r| r.get_ref().clone()),
                fix: s.fix.as_ref().map(|f| f.get_ref().clone()),
                dir,
                env: IndexMap::new(),
                needs: dedup(strings(&s.needs)),
                files: strings(&s.files),
                exclude: strings(&s.exclude),
                types,
                matcher,
                inputs: strings(&s.inputs),
                outputs: strings(&s.outputs),
                key_env: strings(&s.key_env),
                key_commands: strings(&s.key_commands),
                input_matcher: super::cache_keys::check_step(
                    &mut check,
                    name,
                    &s.inputs,
                    &s.outputs,
                    &s.key_commands,
                ),
                timeout,
                remote: s.remote.unwrap_or(true),
                platform: s.platform.clone(),
                tools: super::tools::step_tools(&mut check, name, s.tools.as_ref(), &tool_names),
                observe: s.observe.unwrap_or(true),
            },
        );
    }
    for (name, s) in raw_steps {
        check.step_refs_in(&s.needs, &steps, |n| {
            format!("step `{name}` needs `{n}`, which is not a step")
        });
        super::limits::check_env(&mut check, &format!("step `{name}`"), &s.env, |v| &v.0);
        super::limits::check_key_env(&mut check, &name, &s.key_env);
        steps[&name].env = env_map(s.env);
    }
    // Needs spans, for pointing at the edge that closes a cycle.
    if let Some(cycle) = find_cycle(&steps) {
        let first = &cycle[0];
        let second = &cycle[1];
        let span = raw_needs_span(path, first, second, &name_spans);
        let d = check.error(span, format!("steps form a cycle: {}", cycle.join(" → ")));
        d.label = format!("`{first}` needs `{second}` here");
        d.help = Some("remove one of these `needs` so the steps can run in order".into());
    }

    let mut hooks = IndexMap::new();
    for (hook_name, hook) in raw.hooks {
        let span = hook_name.span();
        let hook_name = hook_name.into_inner();
        if !GIT_HOOKS.contains(&hook_name.as_str()) {
            let d = check.error(span, format!("`{hook_name}` is not a git hook"));
            d.label = match did_you_mean(&hook_name, GIT_HOOKS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "see `git help hooks` for the names".into(),
            };
        }
        let hook = hook.into_inner();
        check.step_refs_in(&hook.steps, &steps, |n| {
            format!("hook `{hook_name}` runs `{n}`, which is not a step")
        });
        hooks.insert(
            hook_name,
            Hook {
                steps: strings(&hook.steps),
                fix: hook.fix,
            },
        );
    }

    super::limits::check_env(&mut check, "[env]", &raw.env, |v| &v.0);
    let jobs = super::limits::check_jobs(&mut check, raw.settings.jobs.as_ref());
    let ci = super::ci::validate(&mut check, raw.ci, &steps);
    let remote = super::remote::validate(&mut check, raw.remote);
    let tools = super::tools::validate(&mut check, raw.tools);
    let cache_max = super::cache_keys::check_settings(
        &mut check,
        raw.settings.cache_dir.as_ref(),
        raw.settings.cache_max.as_ref(),
    );

    check.finish()?;
    Ok(Config {
        path: path.to_path_buf(),
        settings: Settings {
            jobs,
            fail_fast: raw.settings.fail_fast,
            salt: raw.settings.salt,
            cache_dir: raw
                .settings
                .cache_dir
                .map(|d| PathBuf::from(d.into_inner())),
            cache_max: cache_max.unwrap_or(super::DEFAULT_CACHE_MAX),
            observe: raw.settings.observe.unwrap_or(true),
        },
        env: env_map(raw.env),
        steps,
        hooks,
        ci,
        remote,
        tools,
    })
}

fn dedup(mut names: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// A cycle in the `needs` graph, as the list of names with the first repeated at the end.
pub(crate) fn find_cycle(steps: &IndexMap<String, Step>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        steps: &IndexMap<String, Step>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::Open;
        stack.push(i);
        for need in &steps[i].needs {
            let Some(j) = steps.get_index_of(need) else {
                continue;
            };
            match marks[j] {
                Mark::Open => {
                    let from = stack
                        .iter()
                        .position(|&k| k == j)
                        .expect("open is on the stack");
                    let mut cycle: Vec<String> = stack[from..]
                        .iter()
                        .map(|&k| steps[k].name.clone())
                        .collect();
                    cycle.push(steps[j].name.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, steps, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; steps.len()];
    for i in 0..steps.len() {
        if marks[i] == Mark::New
            && let Some(c) = visit(i, steps, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The span of `needs = [... "second" ...]` inside step `first`, found by re-reading the file.
fn raw_needs_span(
    path: &Path,
    first: &str,
    second: &str,
    name_spans: &IndexMap<String, std::ops::Range<usize>>,
) -> std::ops::Range<usize> {
    #[derive(Deserialize)]
    struct OnlyNeeds {
        #[serde(default)]
        steps: IndexMap<String, NeedsOf>,
    }
    #[derive(Deserialize)]
    struct NeedsOf {
        #[serde(default)]
        needs: Vec<Spanned<String>>,
    }
    let fallback = name_spans.get(first).cloned().unwrap_or(0..0);
    let Ok(text) = std::fs::read_to_string(path) else {
        return fallback;
    };
    toml::from_str::<OnlyNeeds>(&text)
        .ok()
        .and_then(|c| {
            c.steps
                .get(first)?
                .needs
                .iter()
                .find(|n| n.get_ref() == second)
                .map(Spanned::span)
        })
        .unwrap_or(fallback)
}

fn env_map(raw: IndexMap<Spanned<String>, Spanned<EnvValue>>) -> IndexMap<String, String> {
    raw.into_iter()
        .map(|(k, v)| (k.into_inner(), v.into_inner().0))
        .collect()
}
