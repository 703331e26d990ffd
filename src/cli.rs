//! The command line, as clap definitions only. Nothing below `commands` sees clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "preflight",
    version,
    about = "Local-first CI as code: one preflight.toml runs your checks in parallel, \
             in git hooks and in hosted CI",
    after_help = "Examples:\n  preflight run                 run every step\n  \
                  preflight run test            run `test` and the steps it needs\n  \
                  preflight run -j 4 --fail-fast\n  preflight validate            check preflight.toml"
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
    /// Print the step graph (Graphviz DOT or Mermaid)
    #[command(
        after_help = "Examples:\n  preflight graph | dot -Tsvg > steps.svg\n  \
                            preflight graph --format mermaid"
    )]
    Graph(GraphArgs),
    /// Say why steps would run: what changed since the cache entry each last used
    #[command(after_help = "Examples:\n  preflight explain build\n  preflight explain build test")]
    Explain(ExplainArgs),
    /// Inspect or trim the cache
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The steps to explain (the steps they need are keyed too)
    #[arg(required = true, value_name = "STEP")]
    pub steps: Vec<String>,
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

    /// How many steps run at once (default: settings.jobs, else one per core)
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,

    /// At the first failure, start nothing new and stop the running steps
    #[arg(long)]
    pub fail_fast: bool,

    /// Run on these files instead of every tracked file (paths relative to this folder)
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub files: Vec<PathBuf>,

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
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// Graph syntax
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
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
