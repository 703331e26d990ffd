//! The shims in git's hooks folder: installing them (`preflight install`, `init --install`),
//! removing them, and checking that git really runs them (`install --check`, `doctor`).

use crate::config::Config;
use crate::error::{Error, Result, exit};
use crate::git;
use crate::hooks::{self, Change, Health};
use crate::report;
use std::path::PathBuf;

fn binary() -> Result<PathBuf> {
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find the preflight binary", e))?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

fn shown(path: &std::path::Path, root: &std::path::Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// What `install` is asked: hooks beyond those of `[hooks]`, whether a global
/// `core.hooksPath` may be used, or only a check.
#[derive(Debug, Default)]
pub struct Install {
    pub hooks: Vec<String>,
    pub use_global_hooks_path: bool,
    pub check: bool,
}

/// Installs (or checks) the shims of the hooks `config` binds and `args` adds; returns the
/// exit code.
pub fn install(repo: &git::Repo, config: &Config, args: &Install) -> Result<i32> {
    let mut wanted: Vec<String> = config.hooks.keys().cloned().collect();
    for extra in &args.hooks {
        if !crate::config::GIT_HOOKS.contains(&extra.as_str()) {
            let hint = match crate::config::did_you_mean(extra, crate::config::GIT_HOOKS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "see `git help hooks` for the names".into(),
            };
            return Err(Error::Usage(format!("`{extra}` is not a git hook")).hint(hint));
        }
        if !wanted.contains(extra) {
            wanted.push(extra.clone());
        }
    }
    let dir = repo.hooks_dir();
    let bin = binary()?;
    if args.check {
        return check(repo, &dir, &wanted, &bin);
    }
    hooks::check_hooks_dir(&dir, args.use_global_hooks_path)?;
    if wanted.is_empty() {
        report::print("no hooks in [hooks] of the config; nothing to install\n");
        return Ok(exit::SUCCESS);
    }
    let changes = hooks::install(&dir.path, &wanted, &bin)?;
    let mut out = String::new();
    for (hook, change) in changes {
        let path = shown(&dir.path.join(&hook), &repo.root);
        let line = match change {
            Change::Installed => format!("installed {hook} ({path})"),
            Change::InstalledKeepingPrevious => format!(
                "installed {hook} ({path}); the hook that was there is kept as {hook}{} and runs first",
                hooks::PREVIOUS_SUFFIX
            ),
            Change::Updated => format!("updated {hook} ({path})"),
            Change::Unchanged => format!("{hook} already installed ({path})"),
            Change::Removed => format!("removed {hook}, which is no longer in [hooks]"),
            Change::Restored => format!(
                "removed {hook}, which is no longer in [hooks], and put back the previous one"
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    report::print(&out);
    Ok(exit::SUCCESS)
}

/// Removes every preflight shim, putting back the hooks they had replaced.
pub fn uninstall(repo: &git::Repo) -> Result<i32> {
    let dir = repo.hooks_dir();
    let mut changes = hooks::uninstall(&dir.path)?;
    // Shims left in the default folder after core.hooksPath was set go too.
    let default_dir = repo.common_dir().join("hooks");
    if default_dir != dir.path {
        changes.extend(hooks::uninstall(&default_dir)?);
    }
    let mut out = String::new();
    if changes.is_empty() {
        out.push_str("no preflight hooks installed\n");
    }
    for (hook, change) in changes {
        let line = match change {
            Change::Restored => format!("removed {hook} and put back the hook it had replaced"),
            _ => format!("removed {hook}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    report::print(&out);
    Ok(exit::SUCCESS)
}

/// Says, hook by hook, whether git will really run preflight.
fn check(
    repo: &git::Repo,
    dir: &git::HooksDir,
    wanted: &[String],
    bin: &std::path::Path,
) -> Result<i32> {
    let mut out = String::new();
    let mut healthy = true;
    out.push_str(&format!(
        "preflight {}\nbinary: {}\ninstalled by: {}\n",
        crate::origin::VERSION_LINE,
        bin.display(),
        crate::origin::Origin::of(bin).describe()
    ));
    out.push_str(&format!("hooks folder: {}", dir.path.display()));
    match &dir.hooks_path {
        Some((value, git::ConfigScope::Global)) => {
            out.push_str(&format!(
                " (core.hooksPath = {value}, set outside this repository)\n"
            ));
        }
        Some((value, git::ConfigScope::Repository)) => {
            out.push_str(&format!(" (core.hooksPath = {value})\n"));
        }
        None => out.push('\n'),
    }
    for hook in wanted {
        let line = match hooks::health(&dir.path, hook, bin) {
            Health::Ok => format!("ok       {hook}"),
            Health::Missing => format!("missing  {hook}: run `preflight install`"),
            Health::Stale(why) => format!("stale    {hook}: {why}; run `preflight install`"),
            Health::Foreign => format!(
                "foreign  {hook}: another program's hook is there; `preflight install` keeps it and runs it first"
            ),
        };
        healthy &= line.starts_with("ok");
        out.push_str(&line);
        out.push('\n');
    }
    for hook in hooks::installed(&dir.path) {
        if !wanted.contains(&hook) {
            out.push_str(&format!("unused   {hook}: not in [hooks], so it does nothing (`preflight uninstall` removes all shims)\n"));
        }
    }
    let default_dir = repo.common_dir().join("hooks");
    for hook in hooks::shadowed(&default_dir, &dir.path) {
        healthy = false;
        out.push_str(&format!(
            "shadowed {hook}: installed in {} but core.hooksPath makes git look in {} (`preflight uninstall` removes it)\n",
            default_dir.display(),
            dir.path.display()
        ));
    }
    report::print(&out);
    Ok(if healthy {
        exit::SUCCESS
    } else {
        exit::STEPS_FAILED
    })
}
