//! A run request: what a command asks (`Args`), what the environment says (`Env`, read once)
//! and the configuration, resolved into one `RunRequest`.

use crate::cache::Mode;
use crate::config::{Config, RemoteCache, did_you_mean};
use crate::error::{Error, Result};
use crate::report::{self, Format};
use std::io::IsTerminal;
use std::path::PathBuf;

use super::FileSource;

/// The environment variables that change a run, read once.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `PREFLIGHT_NO_CACHE` set (and not `0`): every run behaves as with `--no-cache`.
    pub no_cache: bool,
    /// `PREFLIGHT_SKIP`: steps to skip, comma-separated.
    pub skip: Option<String>,
    /// `PREFLIGHT_REMOTE_CACHE`: `off`, `read` or `read-write`.
    pub remote_cache: Option<String>,
    /// `PREFLIGHT=0`: the hooks do nothing.
    pub hooks_off: bool,
    /// `CI` set (and not `false`): no live display.
    pub in_ci: bool,
    /// `TERM=dumb`: no live display.
    pub dumb_term: bool,
    /// `GITHUB_ACTIONS=true`: step output folded in groups.
    pub github_actions: bool,
    /// `HOME`: reads under it are the user's own settings (`audit` names them).
    pub home: Option<PathBuf>,
}

impl Env {
    /// The one reader of these variables.
    pub fn read() -> Env {
        Env {
            no_cache: std::env::var_os("PREFLIGHT_NO_CACHE")
                .is_some_and(|v| !v.is_empty() && v != "0"),
            skip: std::env::var_os("PREFLIGHT_SKIP").map(|v| v.to_string_lossy().into_owned()),
            remote_cache: std::env::var("PREFLIGHT_REMOTE_CACHE").ok(),
            hooks_off: std::env::var_os("PREFLIGHT").is_some_and(|v| v == "0"),
            in_ci: std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false"),
            dumb_term: std::env::var("TERM").is_ok_and(|t| t == "dumb"),
            github_actions: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Whether output goes to a terminal for a person (not CI, not a pipe).
    pub fn interactive(&self) -> bool {
        std::io::stdout().is_terminal() && self.live_display()
    }

    /// Whether a terminal may show a live display: not in CI, not on a dumb terminal.
    pub fn live_display(&self) -> bool {
        !self.in_ci && !self.dumb_term
    }
}

/// What a command asks of a run, from its arguments alone.
pub struct Args {
    /// Step names (empty: all steps).
    pub steps: Vec<String>,
    pub fix: bool,
    /// Keep only these of the planned steps (a CI job's own steps).
    pub only: Option<Vec<String>>,
    pub files: FileSource,
    pub no_cache: bool,
    pub force: Vec<String>,
    pub explain: bool,
    pub dry_run: bool,
    /// `--remote-cache`, already checked by the parser.
    pub remote_cache: Option<String>,
    pub remote_execute: bool,
    pub no_remote: bool,
    /// The command has the remote flags: a bad `PREFLIGHT_REMOTE_CACHE` is an error, as a
    /// bad flag is. Hooks and watch ignore it instead.
    pub remote_flags: bool,
    /// `--ci`: plain lines, the `ci_cache` remote mode, and on GitHub Actions each step's
    /// output folded in a group.
    pub ci: bool,
    pub jobs: Option<usize>,
    pub fail_fast: bool,
    pub verbose: bool,
    pub format: Format,
    /// Fail a check that changes tracked files. Off in watch mode, where the person editing
    /// while a step runs changes them too.
    pub guard_writes: bool,
    /// The commit message file given to `commit-msg` hooks.
    pub msg_file: Option<PathBuf>,
    /// pre-commit: unstaged work is set aside while the steps run, and passed fixes staged.
    pub set_aside_unstaged: bool,
    /// Steps named in `PREFLIGHT_SKIP` are skipped (not in watch mode).
    pub env_skip: bool,
    /// `--locked`: managed tools come from preflight.lock as it is, never resolved anew.
    pub locked: bool,
}

impl Args {
    /// A run of these files with nothing else asked: all steps, the cache read and written,
    /// the human report, writes guarded.
    pub fn new(files: FileSource) -> Args {
        Args {
            steps: Vec::new(),
            fix: false,
            only: None,
            files,
            no_cache: false,
            force: Vec::new(),
            explain: false,
            dry_run: false,
            remote_cache: None,
            remote_execute: false,
            no_remote: false,
            remote_flags: false,
            ci: false,
            jobs: None,
            fail_fast: false,
            verbose: false,
            format: Format::Human,
            guard_writes: true,
            msg_file: None,
            set_aside_unstaged: false,
            env_skip: true,
            locked: false,
        }
    }
}

/// One run, everything decided: what the arguments, the environment and the configuration
/// together ask for.
pub struct RunRequest {
    pub selection: StepSelection,
    pub files: FileSource,
    pub cache: Mode,
    pub remote: crate::remote::Overrides,
    pub output: Output,
    pub dry_run: bool,
    pub msg_file: Option<PathBuf>,
    pub set_aside_unstaged: bool,
    /// How managed tools are made ready: `Locked` with `--locked` and under `run --ci`.
    pub tools: crate::tools::Policy,
}

/// Which steps run, and how.
pub struct StepSelection {
    pub names: Vec<String>,
    pub fix: bool,
    pub only: Option<Vec<String>>,
    /// Skipped on purpose (`PREFLIGHT_SKIP`).
    pub skip: Vec<String>,
}

/// How the steps of a run are shown and bounded.
pub struct Output {
    pub jobs: Option<usize>,
    pub fail_fast: bool,
    pub verbose: bool,
    pub format: Format,
    pub color: bool,
    pub ci: bool,
    pub guard_writes: bool,
    /// A live display on a terminal for a person.
    pub live: bool,
    /// On GitHub Actions: step output folded in groups.
    pub github: bool,
}

impl RunRequest {
    /// The run `args` ask for, as `env` and `config` shape it. The only place where the
    /// environment has its say on a run.
    pub fn resolve(args: Args, env: &Env, config: &Config, color: bool) -> Result<RunRequest> {
        for name in &args.force {
            if !config.steps.contains_key(name) {
                let hint = match did_you_mean(name, config.steps.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "name a step of the configuration".into(),
                };
                return Err(
                    Error::Usage(format!("--force names `{name}`, which is not a step")).hint(hint),
                );
            }
        }
        let no_cache = args.no_cache || env.no_cache;
        let cache = Mode {
            read: !no_cache,
            write: !no_cache && !args.dry_run,
            force: args.force.iter().cloned().collect(),
            explain: args.explain || args.dry_run,
        };
        let remote = crate::remote::Overrides {
            // The flag (or PREFLIGHT_REMOTE_CACHE), else under --ci the `ci_cache` mode.
            cache: remote_cache(&args, env)?.or_else(|| {
                config
                    .remote
                    .as_ref()
                    .and_then(|r| r.ci_cache)
                    .filter(|_| args.ci)
            }),
            execute: args.remote_execute.then_some(true),
            off: args.no_remote,
        };
        let output = Output {
            jobs: args.jobs,
            fail_fast: args.fail_fast,
            verbose: args.verbose,
            format: args.format,
            color,
            ci: args.ci,
            guard_writes: args.guard_writes,
            live: env.interactive() && !args.ci,
            github: env.github_actions,
        };
        Ok(RunRequest {
            selection: StepSelection {
                names: args.steps,
                fix: args.fix,
                only: args.only,
                skip: match args.env_skip {
                    true => skip_list(env, config, color),
                    false => Vec::new(),
                },
            },
            files: args.files,
            cache,
            remote,
            output,
            dry_run: args.dry_run,
            msg_file: args.msg_file,
            set_aside_unstaged: args.set_aside_unstaged,
            tools: match args.locked || args.ci {
                true => crate::tools::Policy::Locked,
                false => crate::tools::Policy::Update,
            },
        })
    }
}

/// The remote cache mode the flag or `PREFLIGHT_REMOTE_CACHE` names. Where the flag exists,
/// the variable is held to the flag's values; a hook or a watch ignores a bad value rather
/// than stop a commit over it.
fn remote_cache(args: &Args, env: &Env) -> Result<Option<RemoteCache>> {
    if let Some(flag) = &args.remote_cache {
        return Ok(RemoteCache::parse(flag));
    }
    let Some(value) = env.remote_cache.as_deref() else {
        return Ok(None);
    };
    if !args.remote_flags {
        return Ok(RemoteCache::parse(value.trim()));
    }
    match RemoteCache::parse(value) {
        Some(mode) => Ok(Some(mode)),
        None => Err(Error::Usage(format!(
            "invalid value '{value}' for PREFLIGHT_REMOTE_CACHE (the --remote-cache setting)"
        ))
        .hint("one of off, read, read-write")),
    }
}

/// Steps named in PREFLIGHT_SKIP (comma-separated); unknown names are reported, not fatal.
fn skip_list(env: &Env, config: &Config, color: bool) -> Vec<String> {
    let Some(value) = &env.skip else {
        return Vec::new();
    };
    let names: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for name in names
        .iter()
        .filter(|n| !config.steps.contains_key(n.as_str()))
    {
        report::warn(
            &format!("PREFLIGHT_SKIP names `{name}`, which is not a step"),
            color,
        );
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    fn config(text: &str) -> Config {
        config::parse(Path::new("preflight.toml"), text).unwrap()
    }

    fn resolve(args: Args, env: &Env, config: &Config) -> Result<RunRequest> {
        RunRequest::resolve(args, env, config, false)
    }

    const REMOTE: &str = "[steps.a]\nrun = \"true\"\n[steps.b]\nrun = \"true\"\n\
                          [remote]\nendpoint = \"grpc://localhost:1\"\nci_cache = \"read-write\"\n";

    #[test]
    fn no_cache_from_the_environment_turns_the_cache_off() {
        let config = config(REMOTE);
        let env = Env {
            no_cache: true,
            ..Env::default()
        };
        let request = resolve(Args::new(FileSource::Staged), &env, &config).unwrap();
        assert!(!request.cache.read && !request.cache.write);
        let request = resolve(Args::new(FileSource::Staged), &Env::default(), &config).unwrap();
        assert!(request.cache.read && request.cache.write && !request.cache.explain);
        let dry = Args {
            dry_run: true,
            ..Args::new(FileSource::Staged)
        };
        let request = resolve(dry, &Env::default(), &config).unwrap();
        assert!(request.cache.read && !request.cache.write && request.cache.explain);
    }

    #[test]
    fn the_remote_cache_comes_from_the_flag_the_environment_then_ci_cache() {
        let config = config(REMOTE);
        let read = Env {
            remote_cache: Some(" read".into()),
            ..Env::default()
        };
        // A hook trims the value and ignores a bad one.
        let hook = resolve(Args::new(FileSource::Staged), &read, &config).unwrap();
        assert_eq!(hook.remote.cache, Some(RemoteCache::Read));
        let bad = Env {
            remote_cache: Some("bogus".into()),
            ..Env::default()
        };
        let hook = resolve(Args::new(FileSource::Staged), &bad, &config).unwrap();
        assert_eq!(hook.remote.cache, None);
        // Where the flag exists, the variable is held to its values.
        let strict = || Args {
            remote_flags: true,
            ..Args::new(FileSource::Staged)
        };
        assert!(resolve(strict(), &bad, &config).is_err());
        assert!(resolve(strict(), &read, &config).is_err());
        let flag = Args {
            remote_cache: Some("off".into()),
            ..strict()
        };
        assert_eq!(
            resolve(flag, &bad, &config).unwrap().remote.cache,
            Some(RemoteCache::Off)
        );
        // Under --ci, without flag or variable, the `ci_cache` mode.
        let ci = Args {
            ci: true,
            ..strict()
        };
        assert_eq!(
            resolve(ci, &Env::default(), &config).unwrap().remote.cache,
            Some(RemoteCache::ReadWrite)
        );
        assert_eq!(
            resolve(strict(), &Env::default(), &config)
                .unwrap()
                .remote
                .cache,
            None
        );
    }

    #[test]
    fn preflight_skip_names_steps_except_in_watch_mode() {
        let config = config(REMOTE);
        let env = Env {
            skip: Some(" a, ,c".into()),
            ..Env::default()
        };
        let request = resolve(Args::new(FileSource::Staged), &env, &config).unwrap();
        assert_eq!(request.selection.skip, ["a", "c"]);
        let watch = Args {
            env_skip: false,
            ..Args::new(FileSource::Staged)
        };
        assert!(
            resolve(watch, &env, &config)
                .unwrap()
                .selection
                .skip
                .is_empty()
        );
    }

    #[test]
    fn ci_and_github_actions_shape_the_output() {
        let config = config(REMOTE);
        let env = Env {
            in_ci: true,
            github_actions: true,
            ..Env::default()
        };
        assert!(!env.interactive());
        let request = resolve(Args::new(FileSource::Staged), &env, &config).unwrap();
        assert!(!request.output.live && request.output.github);
        let dumb = Env {
            dumb_term: true,
            ..Env::default()
        };
        assert!(!dumb.interactive());
    }

    #[test]
    fn force_must_name_a_step() {
        let config = config(REMOTE);
        let args = Args {
            force: vec!["c".into()],
            ..Args::new(FileSource::Staged)
        };
        let err = resolve(args, &Env::default(), &config).err().unwrap();
        assert!(err.to_string().contains("--force names `c`"), "{err}");
    }
}
