//! `preflight init`: a starter configuration from what the repository holds and which tools
//! are installed. Pure: the caller lists the files and says which programs exist.

use std::path::{Path, PathBuf};

/// One kind of check a repository may want, with the evidence for it.
struct Kind {
    /// The program the steps need; when it is missing the steps are written commented out.
    program: &'static str,
    snippet: String,
    pre_commit: &'static [&'static str],
    pre_push: &'static [&'static str],
}

/// What `init` found and wrote.
pub struct Starter {
    pub text: String,
    /// Programs that were not found, so their steps are commented out.
    pub missing: Vec<&'static str>,
    /// How many kinds of checks were recognised.
    pub kinds: usize,
}

/// Builds the starter `preflight.toml` for a repository holding `files` (paths relative to
/// the root), where `has_program` says whether a program is on PATH and `read` gives a
/// file's text.
pub fn starter(
    files: &[PathBuf],
    has_program: impl Fn(&str) -> bool,
    read: impl Fn(&Path) -> Option<String>,
) -> Starter {
    let has = |name: &str| files.iter().any(|f| f == Path::new(name));
    let any_ext = |ext: &str| {
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == ext))
    };
    let mut kinds = Vec::new();

    if has("Cargo.toml") {
        kinds.push(kind(
            "cargo",
            include_str!("../templates/init/rust.toml"),
            &["fmt"],
            &["clippy", "test"],
        ));
    }
    if has("package.json") {
        let scripts = read(Path::new("package.json"))
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("scripts").cloned())
            .unwrap_or_default();
        if scripts.get("lint").is_some() {
            kinds.push(kind(
                "npm",
                include_str!("../templates/init/node-lint.toml"),
                &["npm-lint"],
                &[],
            ));
        }
        if scripts.get("test").is_some() {
            kinds.push(kind(
                "npm",
                include_str!("../templates/init/node-test.toml"),
                &[],
                &["npm-test"],
            ));
        }
    }
    if has("pyproject.toml") || has("setup.cfg") || has("setup.py") || any_ext("py") {
        kinds.push(kind(
            "ruff",
            include_str!("../templates/init/python.toml"),
            &["ruff", "ruff-format"],
            &[],
        ));
        let tests = files.iter().any(|f| {
            f.starts_with("tests")
                || f.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_"))
        });
        if tests {
            kinds.push(kind(
                "pytest",
                include_str!("../templates/init/pytest.toml"),
                &[],
                &["pytest"],
            ));
        }
    }
    if has("go.mod") {
        kinds.push(kind(
            "go",
            include_str!("../templates/init/go.toml"),
            &["gofmt", "vet"],
            &["go-test"],
        ));
    }
    let shell_globs = shell_globs(files);
    if !shell_globs.is_empty() {
        let list = shell_globs
            .iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let snippet =
            include_str!("../templates/init/shell.toml").replace("@FILES@", &format!("[{list}]"));
        kinds.push(Kind {
            program: "shellcheck",
            snippet,
            pre_commit: &["shellcheck"],
            pre_push: &[],
        });
    }
    let tests_chosen = kinds.iter().any(|k| !k.pre_push.is_empty());
    if !tests_chosen
        && has("Makefile")
        && read(Path::new("Makefile")).is_some_and(|t| t.lines().any(|l| l.starts_with("test:")))
    {
        kinds.push(kind(
            "make",
            include_str!("../templates/init/make.toml"),
            &[],
            &["make-test"],
        ));
    }
    let dockerfile = |f: &PathBuf| {
        f.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("Dockerfile") || n.ends_with(".Dockerfile")
        })
    };
    if files.iter().any(dockerfile) {
        kinds.push(kind(
            "hadolint",
            include_str!("../templates/init/docker.toml"),
            &["hadolint"],
            &[],
        ));
    }
    if any_ext("md") {
        kinds.push(kind(
            "markdownlint",
            include_str!("../templates/init/markdown.toml"),
            &["markdownlint"],
            &[],
        ));
    }

    render(&kinds, has_program)
}

fn kind(
    program: &'static str,
    snippet: &str,
    pre_commit: &'static [&'static str],
    pre_push: &'static [&'static str],
) -> Kind {
    Kind {
        program,
        snippet: snippet.to_string(),
        pre_commit,
        pre_push,
    }
}

/// Globs for the shell scripts present: `*.sh`, scripts in `bin/`, and shell dotfiles.
fn shell_globs(files: &[PathBuf]) -> Vec<String> {
    let mut globs = Vec::new();
    if files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "sh" || e == "bash"))
    {
        globs.push("*.sh".to_string());
        globs.push("*.bash".to_string());
    }
    if files.iter().any(|f| f.parent() == Some(Path::new("bin"))) {
        globs.push("bin/*".to_string());
    }
    for dotfile in [".bashrc", ".bash_profile", ".profile"] {
        if files.iter().any(|f| f == Path::new(dotfile)) {
            globs.push(format!("/{dotfile}"));
        }
    }
    globs
}

fn render(kinds: &[Kind], has_program: impl Fn(&str) -> bool) -> Starter {
    let mut text = String::from(
        "# preflight.toml, started by `preflight init` from what this repository holds.\n\
         # Change it freely: `preflight validate` checks it, `preflight run` runs it, and\n\
         # `preflight install` puts the [hooks] below into git.\n",
    );
    let mut missing: Vec<&'static str> = Vec::new();
    let mut pre_commit = Vec::new();
    let mut pre_push = Vec::new();
    for k in kinds {
        text.push('\n');
        if has_program(k.program) {
            text.push_str(k.snippet.trim_end());
            text.push('\n');
            pre_commit.extend(k.pre_commit.iter().copied());
            pre_push.extend(k.pre_push.iter().copied());
        } else {
            if !missing.contains(&k.program) {
                missing.push(k.program);
            }
            text.push_str(&format!(
                "# `{}` is not on PATH: install it, then uncomment these lines.\n",
                k.program
            ));
            for line in k.snippet.trim_end().lines() {
                text.push_str(if line.is_empty() { "#" } else { "# " });
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    if kinds.is_empty() {
        text.push_str(
            "\n# No known kind of project was found. A step looks like this:\n\
             # [steps.check]\n# run = \"make check\"\n# files = [\"*.c\", \"*.h\"]\n",
        );
    }
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !pre_commit.is_empty() || !pre_push.is_empty() {
        text.push_str(
            "\n# Quick checks before each commit, the slower ones before each push.\n[hooks]\n",
        );
        if !pre_commit.is_empty() {
            text.push_str(&format!("pre-commit = [{}]\n", list(&pre_commit)));
        }
        if !pre_push.is_empty() {
            text.push_str(&format!("pre-push = [{}]\n", list(&pre_push)));
        }
    }
    Starter {
        text,
        missing,
        kinds: kinds.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    fn valid(text: &str) {
        crate::config::parse(Path::new("preflight.toml"), text)
            .unwrap_or_else(|d| panic!("invalid starter:\n{text}\n{d:?}"));
    }

    #[test]
    fn every_kind_renders_a_valid_config_with_or_without_its_tools() {
        let all = files(&[
            "Cargo.toml",
            "package.json",
            "pyproject.toml",
            "tests/test_a.py",
            "go.mod",
            "install.sh",
            "bin/tool",
            ".bashrc",
            "Makefile",
            "Dockerfile",
            "README.md",
        ]);
        let read = |p: &Path| match p.to_str() {
            Some("package.json") => Some(r#"{"scripts":{"lint":"eslint .","test":"jest"}}"#.into()),
            Some("Makefile") => Some("test:\n\tmake check\n".into()),
            _ => None,
        };
        let everything = starter(&all, |_| true, read);
        valid(&everything.text);
        assert!(everything.missing.is_empty());
        for step in [
            "fmt",
            "clippy",
            "npm-lint",
            "npm-test",
            "ruff",
            "pytest",
            "gofmt",
            "go-test",
            "shellcheck",
            "hadolint",
        ] {
            assert!(
                everything.text.contains(&format!("[steps.{step}]")),
                "{step}"
            );
        }
        assert!(
            everything.text.contains(
                "pre-push = [\"clippy\", \"test\", \"npm-test\", \"pytest\", \"go-test\"]"
            )
        );
        assert!(
            !everything.text.contains("make-test"),
            "a test step was already chosen"
        );

        let nothing = starter(&all, |_| false, read);
        valid(&nothing.text);
        assert!(
            !nothing.text.contains("\n[steps."),
            "every step is commented out"
        );
        assert!(nothing.text.contains("# `cargo` is not on PATH"));
        assert!(!nothing.text.contains("\n[hooks]"));
    }

    #[test]
    fn a_dotfiles_repo_gets_shellcheck_on_its_scripts() {
        let s = starter(
            &files(&[".bashrc", ".profile", "bin/backup", "README.md"]),
            |p| p != "markdownlint",
            |_| None,
        );
        valid(&s.text);
        assert!(
            s.text
                .contains(r#"files = ["bin/*", "/.bashrc", "/.profile"]"#),
            "{}",
            s.text
        );
        assert_eq!(s.missing, ["markdownlint"]);
    }

    #[test]
    fn an_unknown_repo_gets_an_example() {
        let s = starter(&files(&["main.c"]), |_| true, |_| None);
        valid(&s.text);
        assert_eq!(s.kinds, 0);
        assert!(s.text.contains("# [steps.check]"));
    }
}
