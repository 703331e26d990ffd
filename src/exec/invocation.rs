//! Turning a step's command and files into processes to spawn: `{files}` expanded, each path
//! quoted or passed as its own argument, and split into batches under the OS argument limit.

use crate::config::{Command, FILES_PLACEHOLDER};
use crate::process::Invocation;
use crate::shell;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// Budget for a `sh -c` script: Linux caps one argument at 128 KiB (MAX_ARG_STRLEN).
const SHELL_SCRIPT_BUDGET: usize = 100 * 1024;
/// Budget for all arguments of a direct command: well under ARG_MAX on Linux and macOS, with
/// room for the environment.
const ARGV_BUDGET: usize = 256 * 1024;

/// The processes that run `command` over `files` (`None`: the step takes no files).
pub fn invocations(command: &Command, files: Option<&[&Path]>) -> Vec<Invocation> {
    let files = files.filter(|_| command.uses_files());
    match (command, files) {
        (Command::Shell(script), None) => vec![shell(script.as_bytes().to_vec())],
        (Command::Argv(args), None) => vec![argv(args.iter().map(OsString::from).collect())],
        (Command::Shell(script), Some(files)) => {
            let parts: Vec<&str> = script.split(FILES_PLACEHOLDER).collect();
            let fixed: usize = parts.iter().map(|p| p.len()).sum();
            let per_use = parts.len() - 1;
            let quoted: Vec<Vec<u8>> = files.iter().map(|f| shell::quote(&safe_path(f))).collect();
            batches(
                &quoted,
                |q| (q.len() + 1) * per_use,
                SHELL_SCRIPT_BUDGET.saturating_sub(fixed),
            )
            .into_iter()
            .map(|batch| {
                let joined = batch.join(&b' ');
                let mut out = Vec::with_capacity(fixed + joined.len() * per_use);
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(&joined);
                    }
                    out.extend_from_slice(part.as_bytes());
                }
                shell(out)
            })
            .collect()
        }
        (Command::Argv(args), Some(files)) => {
            let fixed: usize = args.iter().map(|a| a.len() + 1).sum();
            let paths: Vec<Vec<u8>> = files.iter().map(|f| safe_path(f)).collect();
            batches(&paths, |p| p.len() + 1, ARGV_BUDGET.saturating_sub(fixed))
                .into_iter()
                .map(|batch| {
                    let mut out = Vec::new();
                    for a in args {
                        if a == FILES_PLACEHOLDER {
                            out.extend(batch.iter().map(|p| OsString::from_vec(p.to_vec())));
                        } else {
                            out.push(OsString::from(a));
                        }
                    }
                    argv(out)
                })
                .collect()
        }
    }
}

fn shell(script: Vec<u8>) -> Invocation {
    Invocation {
        program: "sh".into(),
        args: vec!["-c".into(), OsString::from_vec(script)],
    }
}

fn argv(mut args: Vec<OsString>) -> Invocation {
    let program = args.remove(0);
    Invocation { program, args }
}

/// A path that no program can take for an option: `-x` becomes `./-x`.
fn safe_path(path: &Path) -> Vec<u8> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.starts_with(b"-") {
        [b"./", bytes].concat()
    } else {
        bytes.to_vec()
    }
}

/// Splits `items` into consecutive groups whose summed `cost` stays within `budget`
/// (a single item over budget still gets a group of its own).
fn batches(items: &[Vec<u8>], cost: impl Fn(&[u8]) -> usize, budget: usize) -> Vec<Vec<&[u8]>> {
    let mut out: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut used = 0;
    for item in items {
        let c = cost(item);
        if !current.is_empty() && used + c > budget {
            out.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(item);
        used += c;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(inv: &Invocation) -> Vec<u8> {
        inv.args[1].as_bytes().to_vec()
    }

    #[test]
    fn shell_files_are_quoted_and_dashes_defused() {
        let files = [
            Path::new("a b"),
            Path::new("-x"),
            Path::new("it's"),
            Path::new("$(x)"),
        ];
        let inv = invocations(&Command::Shell("lint {files}".into()), Some(&files));
        assert_eq!(inv.len(), 1);
        assert_eq!(
            String::from_utf8(script(&inv[0])).unwrap(),
            r#"lint 'a b' './-x' 'it'\''s' '$(x)'"#
        );
    }

    #[test]
    fn argv_files_are_separate_arguments() {
        let files = [Path::new("a b"), Path::new("-x")];
        let cmd = Command::Argv(vec![
            "lint".into(),
            "--".into(),
            "{files}".into(),
            "end".into(),
        ]);
        let inv = invocations(&cmd, Some(&files));
        assert_eq!(inv[0].program, "lint");
        assert_eq!(inv[0].args, ["--", "a b", "./-x", "end"]);
    }

    #[test]
    fn long_lists_are_split_and_nothing_is_lost() {
        let names: Vec<String> = (0..5000)
            .map(|i| format!("dir/some-long-file-name-{i:05}.txt"))
            .collect();
        let paths: Vec<&Path> = names.iter().map(Path::new).collect();
        let inv = invocations(&Command::Shell("wc -l {files}".into()), Some(&paths));
        assert!(inv.len() > 1);
        let mut seen = 0;
        for i in &inv {
            assert!(i.args[1].len() <= SHELL_SCRIPT_BUDGET + 16);
            seen += script(i).windows(4).filter(|w| w == b".txt").count();
        }
        assert_eq!(seen, 5000);
    }

    #[test]
    fn a_command_without_the_placeholder_runs_once() {
        let files = [Path::new("a")];
        let inv = invocations(&Command::Shell("make".into()), Some(&files));
        assert_eq!(inv, vec![shell(b"make".to_vec())]);
    }
}
