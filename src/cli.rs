//! The command line, as clap definitions only. Nothing below `commands` sees clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "preflight",
    version = env!("PREFLIGHT_VERSION_LINE"),
    about = "Local-first CI as code: one preflight.toml runs your checks in parallel, \
             by hand and from git hooks",
    after_help = "Examples:\n  preflight run                 run every step\n  \
                  preflight run test            run `test` and the steps it needs\n  \
                  preflight run -j 4 --fail-fast\n  preflight validate            check preflight.toml\n\n\
                  Exit codes: 0 passed, 1 a step failed, 2 usage or configuration error,\n\
                  3 environment error (no git repository, no preflight.toml, a program missing),\n\
                  4 I/O error, 130 interrupted"
)]
pub struct Cli {
    /// Use this configuration file instead of preflight.toml at the repository root
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// When to use colours
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run steps (all by default) and the steps they need, in parallel
    #[command(
        after_help = "Examples:\n  preflight run\n  preflight run lint test -j 2\n  \
                            preflight run --files src/main.rs src/lib.rs\n  \
                            preflight run --format json\n  \
                            preflight run --explain\n  \
                            preflight run --dry-run --format json\n  \
                            preflight run --force build"
    )]
    Run(RunArgs),
    /// Check the configuration without running anything
    #[command(after_help = "Example:\n  preflight validate --config ci/preflight.toml")]
    Validate,
    /// List the steps with what they need, their file globs and the hooks that use them
    #[command(after_help = "Example:\n  preflight list")]
    List,
    /// Write a starter preflight.toml for this repository
    #[command(
        after_help = "Examples:\n  preflight init\n  preflight init --install\n  \
                            preflight init --force   (shows the difference, then replaces)"
    )]
    Init(InitArgs),
    /// Print a JSON Schema of preflight.toml, for editor completion
    #[command(after_help = "Example:\n  preflight schema > .preflight.schema.json")]
    Schema,
    /// Print shell completions
    #[command(
        after_help = "Examples:\n  preflight completions bash > ~/.local/share/bash-completion/completions/preflight\n  \
                            preflight completions zsh > ~/.zfunc/_preflight\n  \
                            preflight completions fish > ~/.config/fish/completions/preflight.fish"
    )]
    Completions(CompletionsArgs),
    /// Run steps, then again whenever files they care about change
    #[command(
        after_help = "Examples:\n  preflight watch\n  preflight watch lint test --clear\n  \
                            preflight watch --poll   (network drives, containers)"
    )]
    Watch(WatchArgs),
    /// Install git hook shims for the hooks in [hooks] (and --hook NAME)
    #[command(
        after_help = "Examples:\n  preflight install\n  preflight install --hook commit-msg\n  \
                            preflight install --check"
    )]
    Install(InstallArgs),
    /// Remove preflight's hook shims and put back the hooks they replaced
    #[command(after_help = "Example:\n  preflight uninstall")]
    Uninstall,
    /// Say which hooks are installed, stale or shadowed (same as `install --check`)
    #[command(after_help = "Example:\n  preflight doctor")]
    Doctor,
    /// Put back unstaged work that an interrupted pre-commit hook set aside
    #[command(after_help = "Example:\n  preflight recover")]
    Recover,
    /// Run the steps bound to a git hook (what the installed shims call)
    #[command(
        after_help = "Example (what .git/hooks/pre-commit runs):\n  preflight hook pre-commit"
    )]
    Hook(HookArgs),
    /// Print the step graph (Graphviz DOT or Mermaid)
    #[command(
        after_help = "Examples:\n  preflight graph | dot -Tsvg > steps.svg\n  \
                            preflight graph --format mermaid"
    )]
    Graph(GraphArgs),
    /// Say why steps would run: what changed since the cache entry each last used
    #[command(
        after_help = "Examples:\n  preflight explain            every step\n  \
                            preflight explain build\n  preflight explain build test"
    )]
    Explain(ExplainArgs),
    /// Say what steps really read and wrote: undeclared reads (with the `inputs` line to add),
    /// declared inputs never read, undeclared writes, and what outside the repository matters
    #[command(
        after_help = "Examples:\n  preflight audit              every cached step\n  \
                            preflight audit lint\n  preflight audit --run lint --format json"
    )]
    Audit(AuditArgs),
    /// Inspect or trim the cache
    #[command(
        subcommand,
        after_help = "Examples:\n  preflight cache stats\n  preflight cache gc\n  preflight cache clear"
    )]
    Cache(CacheCommand),
    /// Managed tools: install, list, lock, update, prune, and where a command is
    #[command(
        subcommand,
        after_help = "Examples:\n  preflight tools install\n  preflight tools install --locked\n  \
                            preflight tools list\n  preflight tools lock\n  \
                            preflight tools update ruff\n  preflight tools which ruff\n  \
                            preflight tools prune --days 30"
    )]
    Tools(ToolsCommand),
    /// Hosted CI: write the CI files that run these steps, or check they are current
    #[command(
        subcommand,
        after_help = "Examples:\n  preflight ci generate\n  preflight ci generate --check"
    )]
    Ci(CiCommand),
    /// Serve a REAPI build farm (BuildGrid, ...) as a worker: take actions, run them, send results
    #[command(
        after_help = "Examples:\n  preflight worker --endpoint grpc://127.0.0.1:50051\n  \
                            preflight worker --endpoint grpc://farm:8980 --jobs 4 --property pool=large"
    )]
    Worker(WorkerArgs),
}

#[derive(Subcommand, Debug)]
pub enum CiCommand {
    /// Write the hosted-CI files of `[ci] targets` (or of the TARGETs named)
    #[command(
        after_help = "Examples:\n  preflight ci generate\n  preflight ci generate github\n  \
                            preflight ci generate --check\n  \
                            preflight ci generate --stdout buildkite | buildkite-agent pipeline upload"
    )]
    Generate(CiGenerateArgs),
}

#[derive(Args, Debug)]
pub struct CiGenerateArgs {
    /// Targets to write (default: all of `[ci] targets`)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Write nothing: print a diff of what would change, and exit 1 if anything would
    #[arg(long)]
    pub check: bool,

    /// Print one target's file on stdout instead of writing it
    #[arg(long, value_name = "TARGET", conflicts_with_all = ["check", "targets"])]
    pub stdout: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The steps to explain (default: all; the steps they need are keyed too)
    #[arg(value_name = "STEP")]
    pub steps: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The steps to audit (default: every cached step)
    #[arg(value_name = "STEP")]
    pub steps: Vec<String>,

    /// Run the steps observed now, even when an observation of their last run is stored
    #[arg(long)]
    pub run: bool,

    /// Output format
    #[arg(long, value_enum, default_value = "human")]
    pub format: OutputFormat,
}

#[derive(Subcommand, Debug)]
pub enum ToolsCommand {
    /// Install the tools of [tools] (or those named) into the shared store, locking any
    /// that preflight.lock lacks
    Install {
        /// Tools to install (default: all)
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Fail when preflight.lock is missing or stale instead of resolving (CI)
        #[arg(long)]
        locked: bool,
    },
    /// List the tools: spec, locked version, whether installed, where
    List,
    /// Resolve every tool of [tools] against its registry and write preflight.lock
    /// (entries that still match [tools] are kept)
    Lock,
    /// Resolve the named tools (default: all) again and rewrite their lock entries
    Update {
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Remove installed tools from the store: those unused for --days, then the least
    /// recently used beyond --keep
    Prune {
        /// Remove tools no run has used for this many days
        #[arg(long, value_name = "N", default_value_t = 30)]
        days: u64,
        /// Keep at most this many installed tools (least recently used go first)
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },
    /// Print the path of a tool's command (installing it when missing)
    Which {
        /// A tool of [tools], or a command one of them provides
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Where the cache is, how many entries and bytes it holds, and its bound
    Stats,
    /// Evict least-recently-used entries until the cache is within `cache_max`
    Gc,
    /// Remove every entry and blob
    Clear,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Steps to run (default: all); the steps they need run too
    pub steps: Vec<String>,

    /// How many steps run at once, up to 256 (default: settings.jobs, else one per core)
    #[arg(short, long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,

    /// At the first failure, start nothing new and stop the running steps
    #[arg(long)]
    pub fail_fast: bool,

    /// Run on these files instead of every tracked file (paths relative to this folder)
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Run on the staged files (what a pre-commit hook sees)
    #[arg(long, conflicts_with_all = ["files", "from", "all_files"])]
    pub staged: bool,

    /// Check the commit --to names (default HEAD), not the work tree, on the files it
    /// changed since the fork point with REV
    #[arg(long, value_name = "REV", conflicts_with_all = ["files", "all_files"])]
    pub from: Option<String>,

    /// The end of the --from range: the commit that is checked
    #[arg(long, value_name = "REV", requires = "from")]
    pub to: Option<String>,

    /// Run on every tracked file (the default; useful with --hook)
    #[arg(long, conflicts_with = "files")]
    pub all_files: bool,

    /// Run the steps of this hook in [hooks] (with its `fix` setting)
    #[arg(long, value_name = "NAME")]
    pub hook: Option<String>,

    /// Run each step's `fix` command instead of its check, where it has one
    #[arg(long)]
    pub fix: bool,

    /// Stream every step's output live, each line prefixed with the step name
    #[arg(short, long)]
    pub verbose: bool,

    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,

    /// Say why each step ran or came from the cache
    #[arg(long)]
    pub explain: bool,

    /// Print each step's cache key, hit or miss, and inputs; run nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Run every step and store nothing in the cache
    #[arg(long)]
    pub no_cache: bool,

    /// Run STEP even when the cache has its result (repeatable)
    #[arg(long, value_name = "STEP")]
    pub force: Vec<String>,
    /// Run as hosted CI does: check the generated CI files first, plain output
    #[arg(long)]
    pub ci: bool,
    /// Take managed tools exactly as preflight.lock has them: fail when it is missing or
    /// stale, never resolve (the default with --ci)
    #[arg(long)]
    pub locked: bool,

    /// With --ci: run the steps of this CI job of `[ci.jobs]`
    #[arg(long, value_name = "NAME", requires = "ci", conflicts_with_all = ["steps", "hook"])]
    pub job: Option<String>,

    /// With --job: the value of a matrix axis, given to the steps as PREFLIGHT_MATRIX_<AXIS>
    #[arg(long, value_name = "AXIS=VALUE", requires = "job")]
    pub matrix: Vec<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Overrides of `[remote]` for one run.
#[derive(Args, Debug, Default)]
pub struct RemoteArgs {
    /// Use the remote cache of [remote] this way (CI: read-write; laptops: read); also
    /// PREFLIGHT_REMOTE_CACHE
    #[arg(
        long,
        value_name = "MODE",
        value_parser = ["off", "read", "read-write"]
    )]
    pub remote_cache: Option<String>,

    /// Run the steps that declare `inputs` on the build farm of [remote]
    #[arg(long, conflicts_with = "no_remote")]
    pub remote_execute: bool,

    /// Run everything here and leave [remote] alone
    #[arg(long)]
    pub no_remote: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The REAPI server to take work from (grpc://host:port or grpcs://host:port)
    #[arg(long, value_name = "URL")]
    pub endpoint: String,

    /// The server's instance name
    #[arg(long, value_name = "NAME", default_value = "")]
    pub instance: String,

    /// How many actions run at once, 1 to 256
    #[arg(short, long, value_name = "N", default_value_t = 1, value_parser = parse_jobs)]
    pub jobs: usize,

    /// A platform property this worker offers (repeatable); OSFamily and ISA are set
    /// from this machine unless given
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,

    /// The worker's name as the server shows it (default: host name and process id)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Where actions are materialised (default: the system temp folder)
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Where blobs fetched from the server are kept for later actions; workers may share it
    /// (default: preflight-worker-cache in the work dir)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// The blob cache's bound: past it, the least recently used blobs are removed
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "5GB",
        value_parser = crate::config::parse_size
    )]
    pub cache_max: u64,

    /// A PEM file of CA certificates to trust (grpcs endpoints)
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// A header sent with every call, its value read from an environment variable
    #[arg(long = "header", value_name = "NAME=VARIABLE")]
    pub headers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Replace an existing preflight.toml (the difference is shown first)
    #[arg(long)]
    pub force: bool,

    /// Also install the git hooks of the new config
    #[arg(long)]
    pub install: bool,

    /// Also write the hosted-CI file for this service (repeatable: github, gitlab, forgejo,
    /// woodpecker, buildkite)
    #[arg(long, value_name = "TARGET")]
    pub ci: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Steps to watch (default: all); the steps they need run too
    pub steps: Vec<String>,

    /// Milliseconds to wait for more changes before starting a run
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub debounce: u64,

    /// When files change during a run, let it finish and run again after (default: restart it)
    #[arg(long)]
    pub no_restart: bool,

    /// Clear the screen before each run (on a terminal)
    #[arg(long)]
    pub clear: bool,

    /// Poll the file system instead of using OS events
    #[arg(long)]
    pub poll: bool,

    /// How many steps run at once, up to 256 (default: settings.jobs, else one per core)
    #[arg(short, long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,

    /// Stream every step's output live, each line prefixed with the step name
    #[arg(short, long)]
    pub verbose: bool,

    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Also install this hook (repeatable), besides those in [hooks]
    #[arg(long, value_name = "NAME")]
    pub hook: Vec<String>,

    /// Install even though core.hooksPath in your global git config points elsewhere
    #[arg(long)]
    pub use_global_hooks_path: bool,

    /// Only report what is installed, stale or shadowed; exit 1 if anything is off
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct HookArgs {
    /// The git hook (pre-commit, pre-push, commit-msg, ...)
    pub name: String,

    /// The arguments git gave the hook
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// Graph syntax
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// `-j N`: a whole number up to `MAX_JOBS` (0: one per core).
fn parse_jobs(text: &str) -> Result<usize, String> {
    let max = crate::config::MAX_JOBS;
    match text.trim().parse::<u64>() {
        Ok(n) if n <= max as u64 => Ok(n as usize),
        Ok(_) => Err(format!("at most {max} can run at once")),
        Err(_) => Err(format!("expected a whole number from 1 to {max}")),
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}
