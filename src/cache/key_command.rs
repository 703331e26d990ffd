//! `key_commands`: what a command such as `rustc -V` prints, as a digest for the key.
//!
//! Running a tool's version probe can cost more than the whole cache hit (`mypy --version`
//! takes half a second), so the digest is remembered in the store per command, working
//! folder, step environment and the program's file (its path, size, times and inode): the
//! same program file prints the same version. Only version probes are remembered (one
//! program and one version flag: `rustc -V`, `mypy --version`, `go version`): any other
//! command may print what changes without its program changing (`git describe`, `uname -r`,
//! `cat .env.local`). A version manager's stand-in (rustup's proxies, `shims` folders),
//! which picks the real tool from settings elsewhere, is never remembered either.

use super::key::{KeyCommand, sha256_hex};
use indexmap::IndexMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Runs the command with `sh -c` in `cwd` and digests what it printed and how it exited.
pub fn run(cwd: &Path, command: &str, env: &IndexMap<String, String>) -> KeyCommand {
    let out = std::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(cwd)
        .envs(env.iter())
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(out) => {
            let mut all = out.stdout;
            all.push(0);
            all.extend_from_slice(&out.stderr);
            KeyCommand {
                command: command.to_string(),
                digest: sha256_hex(&all),
                exit_code: out.status.code(),
            }
        }
        Err(e) => KeyCommand {
            command: command.to_string(),
            digest: sha256_hex(e.to_string().as_bytes()),
            exit_code: None,
        },
    }
}

/// The arguments that ask a program for its version and nothing else.
const VERSION_FLAGS: &[&str] = &[
    "--version",
    "-V",
    "-v",
    "-vV",
    "-version",
    "version",
    "--print-version",
];

/// The name under which the command's output may be remembered, or `None` when it must run
/// every time.
pub fn memo_id(cwd: &Path, command: &str, env: &IndexMap<String, String>) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let [program, flag] = words[..] else {
        return None;
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/');
    if !VERSION_FLAGS.contains(&flag) || !program.chars().all(plain) {
        return None;
    }
    let search = env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let found = which::which_in(program, Some(&search), cwd).ok()?;
    let real = std::fs::canonicalize(&found).ok()?;
    if is_version_manager_stand_in(&real) {
        return None;
    }
    let meta = std::fs::metadata(&real).ok()?;
    let id = serde_json::json!({
        "command": command,
        "cwd": cwd,
        "program": found,
        "real": real,
        "size": meta.size(),
        "mtime": [meta.mtime(), meta.mtime_nsec()],
        "ctime": [meta.ctime(), meta.ctime_nsec()],
        "ino": meta.ino(),
        "dev": meta.dev(),
        "env": env,
        "path": search,
    });
    Some(sha256_hex(id.to_string().as_bytes()))
}

/// rustup's proxies (`rustc`, `cargo`: hard links to `rustup` itself) and the `shims` of
/// pyenv, rbenv, asdf or mise pick the real tool at each call from settings elsewhere.
fn is_version_manager_stand_in(program: &Path) -> bool {
    let in_shims = program
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "shims");
    let rustup_proxy = program.parent().is_some_and(|dir| {
        let (Ok(a), Ok(b)) = (
            std::fs::metadata(program),
            std::fs::metadata(dir.join("rustup")),
        ) else {
            return false;
        };
        a.ino() == b.ino() && a.dev() == b.dev()
    });
    in_shims || rustup_proxy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_program_calls_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env.local"), "API_KEY=x\n").unwrap();
        let env = IndexMap::new();
        assert!(memo_id(dir.path(), "sh --version", &env).is_some());
        assert!(memo_id(dir.path(), "git   version", &env).is_some());
        assert!(memo_id(dir.path(), "cat .env.local", &env).is_none());
        assert!(memo_id(dir.path(), "cat /etc/hostname", &env).is_none());
        assert!(memo_id(dir.path(), "sh -c 'cat x'", &env).is_none());
        assert!(memo_id(dir.path(), "echo $HOME", &env).is_none());
        assert!(memo_id(dir.path(), "git describe", &env).is_none());
        assert!(memo_id(dir.path(), "uname -r", &env).is_none());
        assert!(memo_id(dir.path(), "sh --version; cat x", &env).is_none());
        assert!(memo_id(dir.path(), "no-such-program-here --version", &env).is_none());
        assert_eq!(
            memo_id(dir.path(), "sh --version", &env),
            memo_id(dir.path(), "sh --version", &env)
        );
        assert_ne!(
            memo_id(dir.path(), "sh --version", &env),
            memo_id(dir.path(), "sh -V", &env)
        );
    }
}
