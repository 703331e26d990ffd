//! Turning a step's command and files into processes to spawn: `{files}` expanded, each path
//! quoted or passed as its own argument, and split into batches under the OS argument limit.

use crate::config::{Command, FILES_PLACEHOLDER};
use crate::process::Invocation;
use crate::shell;
use std::ffi::{OsStr, OsString};
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
            let per_use = args.iter().filter(|a| *a == FILES_PLACEHOLDER).count();
            let paths: Vec<Vec<u8>> = files.iter().map(|f| safe_path(f)).collect();
            batches(
                &paths,
                |p| (p.len() + 1) * per_use,
                ARGV_BUDGET.saturating_sub(fixed),
            )
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

/// The PATH a step's programs are looked up on: its own (`env`, managed tools first) or
/// preflight's.
pub fn search_path(env: &[(String, String)]) -> Option<OsString> {
    env.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| OsString::from(v))
        .or_else(|| std::env::var_os("PATH"))
}

/// `command` without the shell, when a shell would add nothing but its own start-up and the
/// parsing of every quoted file name: a shell string that is one command of plain words
/// (`wc -l {files}`), whose program is found on `path` (from `cwd`) and is a binary or a `#!`
/// script, and is not a word the shell runs itself. `None`: it runs under `sh -c`.
pub fn without_shell(command: &Command, path: Option<&OsStr>, cwd: &Path) -> Option<Command> {
    let Command::Shell(script) = command else {
        return None;
    };
    let words: Vec<&str> = script
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let program = *words.first()?;
    let plain = words
        .iter()
        .all(|w| *w == FILES_PLACEHOLDER || shell::is_plain_word(w));
    if !plain
        || program == FILES_PLACEHOLDER
        || program.contains('=')
        || shell::SHELL_WORDS.contains(&program)
    {
        return None;
    }
    let found = which::which_in(program, path, cwd).ok()?;
    let mut head = [0u8; 256];
    let read = std::fs::File::open(found)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .ok()?;
    let head = &head[..read];
    (head.starts_with(b"\x7fELF") || runnable_script(head))
        .then(|| Command::Argv(words.iter().map(|w| w.to_string()).collect()))
}

/// Whether a file starting with `head` is a `#!` script whose interpreter is there: one
/// that is not is left to the shell, which says so as it always has (exit code 127).
fn runnable_script(head: &[u8]) -> bool {
    let Some(line) = head.strip_prefix(b"#!") else {
        return false;
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let interpreter = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|w| !w.is_empty())
        .unwrap_or_default();
    interpreter.starts_with(b"/") && Path::new(OsStr::from_bytes(interpreter)).is_file()
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
    fn only_plain_commands_of_runnable_programs_skip_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write("lint", "#!/bin/sh\nexit 0\n");
        write("bare", "exit 0\n");
        write("orphan", "#!/no/such/interpreter\nexit 0\n");
        let path =
            std::env::join_paths([dir.path(), Path::new("/usr/bin"), Path::new("/bin")]).unwrap();
        let direct =
            |script: &str| without_shell(&Command::Shell(script.into()), Some(&path), dir.path());
        assert_eq!(
            direct("lint --fix=no -x {files}"),
            Some(Command::Argv(vec![
                "lint".into(),
                "--fix=no".into(),
                "-x".into(),
                "{files}".into()
            ]))
        );
        assert!(direct("wc -l {files}").is_some(), "a binary on the PATH");
        assert!(direct("./lint {files}").is_some(), "a path from the folder");
        for script in [
            "bare {files}",           // no #!: the shell runs it as a script
            "orphan {files}",         // its interpreter is missing: the shell says so
            "missing-tool {files}",   // not found: the shell says so, exit 127
            "echo {files}",           // a builtin
            "cd sub && lint {files}", // an operator
            "lint '{files}'",         // quoting
            "lint $HOME {files}",     // expansion
            "lint *.py",              // a glob
            "lint {files} > out",     // a redirection
            "X=1 lint {files}",       // an assignment
            "lint {files} # note",    // a comment
            "lint\n{files}",          // two lines
            "{files}",                // no program
            "lint x{files}",          // the placeholder inside a word
        ] {
            assert_eq!(direct(script), None, "{script}");
        }
        assert_eq!(
            without_shell(&Command::Argv(vec!["lint".into()]), Some(&path), dir.path()),
            None
        );
    }

    #[test]
    fn a_command_without_the_placeholder_runs_once() {
        let files = [Path::new("a")];
        let inv = invocations(&Command::Shell("make".into()), Some(&files));
        assert_eq!(inv, vec![shell(b"make".to_vec())]);
    }
}
