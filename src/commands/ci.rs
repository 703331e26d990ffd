//! `preflight ci generate` (write, `--check`, `--stdout`).

use super::{current_dir, load_config};
use crate::cli::{CiGenerateArgs, Cli};
use crate::error::Result;
use crate::git;
use crate::setup::ci::{self, Generate};

pub fn generate(cli: &Cli, args: &CiGenerateArgs, color: bool) -> Result<i32> {
    let config = load_config(cli)?;
    let repo = git::discover(&current_dir()?)?;
    let asked = Generate {
        targets: args.targets.clone(),
        check: args.check,
        stdout: args.stdout.clone(),
    };
    ci::generate(&repo, &config, &asked, color)
}
