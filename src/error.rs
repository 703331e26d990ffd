//! Error kinds and the exit codes they map to. Exit codes are decided here and nowhere else.
//!
//! An error's message says what went wrong; advice on what to do about it is kept apart, as
//! hints (`Error::hint`), which the reporter prints below the message as `help:` lines.

/// Every way a preflight command can fail before or around running steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid: the diagnostics, rendered with their file snippets.
    #[error("{rendered}")]
    Config { rendered: String, count: usize },
    /// The command line asks for something that cannot be done (unknown step, bad flag value).
    #[error("{0}")]
    Usage(String),
    /// The repository or the environment is not usable (not a git repo, no config file, a
    /// program preflight needs is missing, a server does not answer).
    #[error("{0}")]
    Setup(String),
    /// An I/O error: what preflight was doing at the time, and the OS's reason, in words.
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// One of the errors above, with advice for the user: what to do about it.
    #[error("{error}")]
    Hinted {
        #[source]
        error: Box<Error>,
        /// One line each, printed after the message as `help: ...`.
        hints: Vec<String>,
    },
}

/// What kind of failure an error is: decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The command line or the configuration is wrong.
    Usage,
    /// The repository or the environment is not usable.
    Setup,
    /// Reading or writing a file failed.
    Io,
}

impl Error {
    /// An I/O error while doing `context`: reads "{context}: {source}".
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            message: format!("{}: {source}", context.into()),
            source,
        }
    }

    /// The same error (kind, source, hints) with its message rewritten by `f`, for a caller
    /// that adds what the failure means at its level.
    pub fn reworded(self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            Error::Config { rendered, count } => Error::Config {
                rendered: f(&rendered),
                count,
            },
            Error::Usage(message) => Error::Usage(f(&message)),
            Error::Setup(message) => Error::Setup(f(&message)),
            Error::Io { message, source } => Error::Io {
                message: f(&message),
                source,
            },
            Error::Hinted { error, hints } => Error::Hinted {
                error: Box::new(error.reworded(f)),
                hints,
            },
        }
    }

    /// This error with one more line of advice, printed after its message as `help: ...`.
    pub fn hint(self, hint: impl Into<String>) -> Self {
        match self {
            Error::Hinted { error, mut hints } => {
                hints.push(hint.into());
                Error::Hinted { error, hints }
            }
            error => Error::Hinted {
                error: Box::new(error),
                hints: vec![hint.into()],
            },
        }
    }

    /// The advice for the user, in the order it is printed.
    pub fn hints(&self) -> &[String] {
        match self {
            Error::Hinted { hints, .. } => hints,
            _ => &[],
        }
    }

    /// The message followed by its `help:` lines, for a caller that passes the error on as
    /// text (watch mode reports a watcher's error between runs).
    pub fn with_help_lines(&self) -> String {
        let mut text = self.to_string();
        for hint in self.hints() {
            text.push_str("\nhelp: ");
            text.push_str(hint);
        }
        text
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::Config { .. } | Error::Usage(_) => Kind::Usage,
            Error::Setup(_) => Kind::Setup,
            Error::Io { .. } => Kind::Io,
            Error::Hinted { error, .. } => error.kind(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind() {
            Kind::Usage => exit::USAGE,
            Kind::Setup => exit::SETUP,
            Kind::Io => exit::IO,
        }
    }
}

/// Exit codes: what a script or a git hook sees. Documented in book/src/errors.md.
pub mod exit {
    /// Every selected step passed (or was skipped for having no files).
    pub const SUCCESS: i32 = 0;
    /// A step failed, timed out or could not run because a step it needs failed.
    pub const STEPS_FAILED: i32 = 1;
    /// The command line or the configuration is wrong; nothing ran.
    pub const USAGE: i32 = 2;
    /// The repository or the environment is not usable (not a git repository, no
    /// preflight.toml, a program preflight needs is missing); nothing ran.
    pub const SETUP: i32 = 3;
    /// Reading or writing a file failed (the cache folder, the git folder, a work-tree file).
    pub const IO: i32 = 4;
    /// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_exit_code() {
        let io = Error::io("cannot write x", std::io::Error::other("disk full"));
        assert_eq!(Error::Usage("u".into()).exit_code(), exit::USAGE);
        assert_eq!(
            Error::Config {
                rendered: "c".into(),
                count: 1
            }
            .exit_code(),
            exit::USAGE
        );
        assert_eq!(Error::Setup("s".into()).exit_code(), exit::SETUP);
        assert_eq!(io.exit_code(), exit::IO);
        let codes = [
            exit::SUCCESS,
            exit::STEPS_FAILED,
            exit::USAGE,
            exit::SETUP,
            exit::IO,
            exit::INTERRUPTED,
        ];
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), codes.len());
    }

    #[test]
    fn rewording_keeps_the_kind_the_source_and_the_hints() {
        let e = Error::io(
            "cannot save x",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        )
        .hint("free some space")
        .reworded(|m| format!("cannot set aside ({m})"));
        assert_eq!(e.kind(), Kind::Io);
        assert!(
            e.to_string()
                .starts_with("cannot set aside (cannot save x: "),
            "{e}"
        );
        assert_eq!(e.hints(), ["free some space"]);
        let mut chain = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source());
        assert!(
            chain.any(|e| e.is::<std::io::Error>()),
            "the I/O error is kept"
        );
    }

    #[test]
    fn hints_keep_the_kind_and_stay_out_of_the_message() {
        let e = Error::Setup("no repo".into())
            .hint("run git init")
            .hint("or cd into one");
        assert_eq!(e.to_string(), "no repo");
        assert_eq!(e.hints(), ["run git init", "or cd into one"]);
        assert_eq!(e.kind(), Kind::Setup);
        assert_eq!(Error::Usage("x".into()).hints(), [] as [String; 0]);
        assert_eq!(
            e.with_help_lines(),
            "no repo\nhelp: run git init\nhelp: or cd into one"
        );
    }
}
