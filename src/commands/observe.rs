//! `preflight __observe --report FILE -- PROGRAM ARGS...`: runs a step's command under the
//! tracer, writes what it read to FILE, and ends as the command ended. Only
//! `observe::wrap` writes this command line, so it is read here, before clap: it stays out
//! of the help and of shell completions, and starts the step without parsing anything else.

use crate::error::{Error, exit};
use crate::observe::{self, Run};
use crate::report;
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Runs the hidden subcommand when `args` call it; `None` for every other command line.
pub fn intercept(args: &[OsString]) -> Option<i32> {
    if args.get(1).map(OsString::as_os_str) != Some(OsStr::new(observe::SUBCOMMAND)) {
        return None;
    }
    let code = match args.get(2..) {
        Some([flag, report, dashes, program, rest @ ..])
            if flag == "--report" && dashes == "--" =>
        {
            observe(Path::new(report), program, rest)
        }
        _ => {
            report::error(
                &format!(
                    "usage: preflight {} --report FILE -- PROGRAM [ARGS...]",
                    observe::SUBCOMMAND
                ),
                false,
            );
            exit::USAGE
        }
    };
    Some(code)
}

fn observe(report_path: &Path, program: &OsStr, args: &[OsString]) -> i32 {
    match observe::run(report_path, program, args) {
        Run::Traced {
            ended,
            report_error,
        } => {
            if let Some(e) = report_error {
                report::warn(
                    &format!(
                        "cannot write what the step read to {}: {e}; its result is not cached",
                        report_path.display()
                    ),
                    false,
                );
            }
            observe::end_like(ended)
        }
        Run::NotStarted(e) => {
            report::warn(
                &format!(
                    "cannot observe the step ({e}); it runs unobserved and its result is not cached"
                ),
                false,
            );
            let e = observe::exec_untraced(program, args);
            let e = Error::io(format!("cannot run `{}`", program.to_string_lossy()), e);
            report::error(&e.to_string(), false);
            e.exit_code()
        }
        Run::Lost(e) => {
            let e = Error::io("lost track of the observed step", e);
            report::error(&e.to_string(), false);
            e.exit_code()
        }
    }
}
