//! `preflight install`, `uninstall` and `install --check`: the shims in git's hooks folder.

use super::current_dir;
use crate::cli::{Cli, InstallArgs};
use crate::error::Result;
use crate::git;
use crate::pipeline;
use crate::setup::install::{self, Install};

pub fn install(cli: &Cli, args: &InstallArgs, color: bool) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    pipeline::recover_unstaged(&repo, color);
    let config = super::config_for(cli, &repo)?;
    let asked = Install {
        hooks: args.hook.clone(),
        use_global_hooks_path: args.use_global_hooks_path,
        check: args.check,
    };
    install::install(&repo, &config, &asked)
}

pub fn uninstall(_cli: &Cli, color: bool) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    pipeline::recover_unstaged(&repo, color);
    install::uninstall(&repo)
}
