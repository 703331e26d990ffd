//! Exit codes 127 and 126 of a shell string: which command the shell could not find, or
//! found but could not run, so that the result line says so (as the array form does).

use super::Reason;
use crate::config::Command;
use std::path::Path;

/// Why a `sh -c` step exited with `code`, when the shell says it could not find or run a
/// command (`shfmt` not found).
pub fn explain(
    command: &Command,
    code: i32,
    output: &[u8],
    env: &[(String, String)],
    cwd: &Path,
) -> Option<Reason> {
    let Command::Shell(script) = command else {
        return None;
    };
    let text = String::from_utf8_lossy(output);
    match code {
        127 => shell_message(&text, &NOT_FOUND)
            .or_else(|| first_word_missing(script, env, cwd))
            .map(|program| Reason::CommandNotFound { code, program }),
        126 => shell_message(&text, &NOT_RUNNABLE)
            .map(|program| Reason::CommandNotRunnable { code, program }),
        _ => None,
    }
}

/// How shells end the line for a command they cannot find (dash, bash, busybox).
const NOT_FOUND: [&str; 3] = [
    "not found",
    "command not found",
    "No such file or directory",
];
/// How shells end the line for a command they found but cannot run.
const NOT_RUNNABLE: [&str; 4] = [
    "Permission denied",
    "Is a directory",
    "cannot execute binary file",
    "cannot execute binary file: Exec format error",
];

/// The command named by the last line of the form `sh: [line] 1: NAME: MESSAGE` with one of
/// `messages`, when a shell wrote it.
fn shell_message(output: &str, messages: &[&str]) -> Option<String> {
    output.lines().rev().find_map(|line| {
        let parts: Vec<&str> = line.trim_end().split(": ").collect();
        let [shell, .., name, message] = parts.as_slice() else {
            return None;
        };
        let shell_name = shell.rsplit('/').next().unwrap_or(shell);
        let from_a_shell = shell_name.ends_with("sh") && !shell_name.contains(' ');
        (from_a_shell && messages.contains(message) && !name.is_empty()).then(|| name.to_string())
    })
}

/// The script's first command word, when it is a plain name that is not on the step's PATH.
fn first_word_missing(script: &str, env: &[(String, String)], cwd: &Path) -> Option<String> {
    let word = script
        .split_whitespace()
        .find(|w| !w.contains('='))?
        .to_string();
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    if !plain || crate::shell::SHELL_WORDS.contains(&word.as_str()) {
        return None;
    }
    let path = super::invocation::search_path(env);
    which::which_in(&word, path, cwd).is_err().then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain_shell(code: i32, output: &str) -> Option<Reason> {
        explain(
            &Command::Shell("true".into()),
            code,
            output.as_bytes(),
            &[],
            Path::new("/"),
        )
    }

    #[test]
    fn the_messages_of_dash_bash_and_busybox_name_the_command() {
        for line in [
            "sh: 1: shfmt: not found",
            "sh: line 1: shfmt: command not found",
            "bash: shfmt: command not found",
            "/bin/sh: shfmt: not found",
        ] {
            assert_eq!(
                explain_shell(127, &format!("some output\n{line}\n")),
                Some(Reason::CommandNotFound {
                    code: 127,
                    program: "shfmt".into()
                }),
                "{line}"
            );
        }
        assert_eq!(
            explain_shell(126, "sh: 1: ./run.sh: Permission denied\n"),
            Some(Reason::CommandNotRunnable {
                code: 126,
                program: "./run.sh".into()
            })
        );
    }

    #[test]
    fn other_output_and_other_codes_say_nothing_more() {
        assert_eq!(explain_shell(127, "error: config.yml: not found\n"), None);
        assert_eq!(explain_shell(1, "sh: 1: shfmt: not found\n"), None);
        assert_eq!(
            explain(
                &Command::Argv(vec!["x".into()]),
                127,
                b"sh: 1: x: not found",
                &[],
                Path::new("/")
            ),
            None
        );
    }

    #[test]
    fn without_a_message_the_first_word_is_looked_up() {
        let env = [("PATH".to_string(), "/nonexistent-dir".to_string())];
        let cmd = Command::Shell("FOO=1 no-such-tool-x --check".into());
        assert_eq!(
            explain(&cmd, 127, b"", &env, Path::new("/")),
            Some(Reason::CommandNotFound {
                code: 127,
                program: "no-such-tool-x".into()
            })
        );
        let cmd = Command::Shell("exit 127".into());
        let env = [("PATH".to_string(), "/bin:/usr/bin".to_string())];
        assert_eq!(explain(&cmd, 127, b"", &env, Path::new("/")), None);
    }
}
