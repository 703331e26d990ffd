//! Values the program must be able to hold and the system must accept: how many steps run at
//! once, environment variable names and values, and command text.

use super::Diagnostic;
use super::checker::Checker;
use toml::Spanned;

/// The most steps (and batches) that may run at once, and the most actions a worker takes:
/// more threads than this only cost memory and start-up time on any machine preflight serves.
pub const MAX_JOBS: usize = 256;

/// The longest duration any setting takes (a step's timeout, the remote's timeouts): a year.
/// Anything longer is a typo, and a deadline so far off cannot be kept by every clock.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The most times a failed remote call is tried again.
pub const MAX_RETRIES: u32 = 100;

/// Checks `[settings] jobs`; returns it when valid (0 when absent: one per core).
pub(super) fn check_jobs(check: &mut Checker, jobs: Option<&Spanned<u64>>) -> usize {
    let Some(jobs) = jobs else {
        return 0;
    };
    match usize::try_from(*jobs.get_ref()) {
        Ok(n) if n <= MAX_JOBS => n,
        _ => {
            let d = check.error(
                jobs.span(),
                format!("`jobs` is {}, more than {MAX_JOBS}", jobs.get_ref()),
            );
            d.label = format!("at most {MAX_JOBS} steps can run at once");
            d.help = Some("write 0 for one per core, or a smaller number".into());
            0
        }
    }
}

/// Checks `retries` of `[remote]`.
pub(super) fn check_retries(check: &mut Checker, retries: Option<&Spanned<u32>>) -> Option<u32> {
    let retries = retries?;
    let n = *retries.get_ref();
    if n > MAX_RETRIES {
        let d = check.error(
            retries.span(),
            format!("`retries` is {n}, more than {MAX_RETRIES}"),
        );
        d.label = "a call is tried again at most this often".into();
        d.help = Some("a few retries (the default is 3) ride out a restarting server".into());
        return None;
    }
    Some(n)
}

/// What is wrong with an environment variable name, if anything: the system cannot hold an
/// empty name, `=` (it ends the name) or a NUL byte (it ends the entry).
fn bad_env_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("an environment variable needs a name")
    } else if name.contains('=') {
        Some("`=` cannot be part of an environment variable's name")
    } else if name.contains('\0') {
        Some("a NUL byte cannot be part of an environment variable's name")
    } else {
        None
    }
}

/// Checks the names and values of an `env` table (`where_` says which: "[env]",
/// "step `x`").
pub(super) fn check_env<V>(
    check: &mut Checker,
    where_: &str,
    env: &indexmap::IndexMap<Spanned<String>, Spanned<V>>,
    value_text: impl Fn(&V) -> &str,
) {
    for (name, value) in env {
        if let Some(d) = check_env_name(check, name, where_) {
            d.help = Some("use letters, digits and `_`, like `RUST_LOG`".into());
        }
        if value_text(value.get_ref()).contains('\0') {
            check
                .error(
                    value.span(),
                    format!(
                        "the value of `{}` in {where_} holds a NUL byte",
                        name.get_ref().escape_debug()
                    ),
                )
                .label = "the system cannot pass a NUL byte in an environment value".into();
        }
    }
}

/// Checks the names of `key_env`.
pub(super) fn check_key_env(check: &mut Checker, step: &str, names: &[Spanned<String>]) {
    let where_ = format!("`key_env` of step `{step}`");
    for name in names {
        check_env_name(check, name, &where_);
    }
}

/// Reports `name` when it cannot name an environment variable; the diagnostic, to add to.
fn check_env_name<'c>(
    check: &'c mut Checker,
    name: &Spanned<String>,
    where_: &str,
) -> Option<&'c mut Diagnostic> {
    let why = bad_env_name(name.get_ref())?;
    let d = check.error(
        name.span(),
        format!(
            "invalid environment variable name {:?} in {where_}",
            name.get_ref()
        ),
    );
    d.label = why.into();
    Some(d)
}

/// A command (string or array) with a NUL byte: no program can receive it.
pub(super) fn check_command_bytes(
    check: &mut Checker,
    step: &str,
    key: &str,
    cmd: &Spanned<super::Command>,
) {
    let has_nul = match cmd.get_ref() {
        super::Command::Shell(s) => s.contains('\0'),
        super::Command::Argv(args) => args.iter().any(|a| a.contains('\0')),
    };
    if has_nul {
        check
            .error(
                cmd.span(),
                format!("`{key}` of step `{step}` holds a NUL byte"),
            )
            .label = "a program cannot receive a NUL byte in its arguments".into();
    }
}
