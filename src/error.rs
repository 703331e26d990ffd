//! Error kinds and the exit codes they map to. Exit codes are decided here and nowhere else.

/// Every way a preflight command can fail before or around running steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid: the diagnostics, rendered with their file snippets.
    #[error("{rendered}")]
    Config { rendered: String, count: usize },
    /// The command line asks for something that cannot be done (unknown step, bad flag value).
    #[error("{0}")]
    Usage(String),
    /// The repository or the environment is not usable (not a git repo, no config file).
    #[error("{0}")]
    Setup(String),
    /// An I/O error, with what preflight was doing at the time.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Exit codes: what a script or a git hook sees.
pub mod exit {
    /// Every selected step passed (or was skipped for having no files).
    pub const SUCCESS: i32 = 0;
    /// A step failed, timed out or could not run because a step it needs failed.
    pub const STEPS_FAILED: i32 = 1;
    /// The command line or the configuration is wrong; nothing ran.
    pub const USAGE: i32 = 2;
    /// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        exit::USAGE
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
