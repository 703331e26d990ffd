//! The commands: each turns parsed arguments into a request for the layer below (a
//! `pipeline::RunRequest` for `run`, `hook` and `watch`; `setup` for `ci generate`,
//! `install`, `init`), and the outcome into an exit code. A command imports no other
//! command and reads no environment variable; what they share (loading the configuration,
//! the current folder, the report format) lives in this file.

mod audit;
mod cache;
mod ci;
mod hook;
mod init;
mod inspect;
mod install;
mod observe;
mod run;
mod tools;
mod watch;
mod worker;

use crate::cli::{Cli, ColorChoice, Command};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::git;
use crate::report;
use clap::Parser;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Runs preflight with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    if let Some(code) = observe::intercept(&args) {
        return code;
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
        }
    };
    let color = use_color(cli.color);
    match dispatch(&cli, color) {
        Ok(code) => code,
        Err(e) => {
            report::error_with_hints(&e.to_string(), e.hints(), color);
            e.exit_code()
        }
    }
}

fn dispatch(cli: &Cli, color: bool) -> Result<i32> {
    match &cli.command {
        Command::Run(args) => run::run(cli, args, color),
        Command::Validate => inspect::validate(cli),
        Command::List => inspect::list(cli),
        Command::Graph(args) => inspect::graph(cli, args.format),
        Command::Install(args) => install::install(cli, args, color),
        Command::Doctor => install::install(
            cli,
            &crate::cli::InstallArgs {
                hook: Vec::new(),
                use_global_hooks_path: false,
                check: true,
            },
            color,
        ),
        Command::Uninstall => install::uninstall(cli, color),
        Command::Recover => run::recover(color),
        Command::Hook(args) => hook::hook(cli, args, color),
        Command::Watch(args) => watch::watch(cli, args, color),
        Command::Init(args) => init::init(cli, args, color),
        Command::Schema => {
            report::print(&crate::config::schema());
            Ok(exit::SUCCESS)
        }
        Command::Completions(args) => {
            let mut out = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "preflight", &mut out);
            report::print(&String::from_utf8_lossy(&out));
            Ok(exit::SUCCESS)
        }
        Command::Ci(crate::cli::CiCommand::Generate(args)) => ci::generate(cli, args, color),
        Command::Worker(args) => worker::worker(args, color),
        Command::Explain(args) => cache::explain(cli, args),
        Command::Audit(args) => audit::audit(cli, args, color),
        Command::Cache(command) => cache::cache(cli, command),
        Command::Tools(command) => tools::tools(cli, command, color),
    }
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stdout().is_terminal() && console::colors_enabled(),
    }
}

/// The report format a `--format` flag names.
fn report_format(format: crate::cli::OutputFormat) -> report::Format {
    match format {
        crate::cli::OutputFormat::Human => report::Format::Human,
        crate::cli::OutputFormat::Json => report::Format::Json,
    }
}

fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| Error::io("cannot read the current folder", e))
}

/// The configuration named by --config, or found at the root of the current repository.
fn load_config(cli: &Cli) -> Result<Config> {
    match &cli.config {
        Some(path) => config::load(path),
        None => config_for(cli, &git::discover(&current_dir()?)?),
    }
}

/// The configuration named by --config, or found at the root of `repo`.
fn config_for(cli: &Cli, repo: &git::Repo) -> Result<Config> {
    let path = match &cli.config {
        Some(path) => path.clone(),
        None => config::locate(&repo.root)?,
    };
    config::load(&path)
}
