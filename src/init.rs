//! `preflight init`: a starter configuration from what the repository holds and which tools
//! are installed. Pure: the caller lists the files and says which programs exist.

use crate::filetypes::{Contents, Identifier, Types};
use std::path::{Path, PathBuf};

/// One kind of check a repository may want, with the evidence for it.
struct Kind {
    /// The program the steps need; when it is missing the steps are written commented out.
    program: &'static str,
    snippet: String,
    pre_commit: Vec<&'static str>,
    pre_push: Vec<&'static str>,
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
/// the root), where `has_program` says whether a program is on PATH, `read` gives a file's
/// text and `contents` the heads of files whose type their name does not tell.
pub fn starter(
    files: &[PathBuf],
    has_program: impl Fn(&str) -> bool,
    read: impl Fn(&Path) -> Option<String>,
    contents: &dyn Contents,
) -> Starter {
    let identifier = Identifier::new(contents);
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
    let python = Types::parse(&["python"]).unwrap_or_default();
    let python_scripts = files.iter().any(|f| identifier.is_any_of(f, python));
    if has("pyproject.toml") || has("setup.cfg") || has("setup.py") || python_scripts {
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
    if let Some(shell) = shellcheck(files, &identifier) {
        kinds.push(shell);
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
    pre_commit: &[&'static str],
    pre_push: &[&'static str],
) -> Kind {
    Kind {
        program,
        snippet: snippet.to_string(),
        pre_commit: pre_commit.to_vec(),
        pre_push: pre_push.to_vec(),
    }
}

/// The dialects shellcheck knows; zsh is not one of them.
const SHELLCHECK_DIALECTS: [&str; 3] = ["sh", "bash", "ksh"];

/// shellcheck on the shell scripts, found by extension, well-known name or `#!` line. A
/// script without a `#!` line whose extension shellcheck does not read (`.bashrc`, a sourced
/// `lib.sh`) would fail with SC2148, so those are checked by their own step, which names
/// the dialect with `--shell`.
fn shellcheck(files: &[PathBuf], identifier: &Identifier) -> Option<Kind> {
    let dialects = Types::parse(&SHELLCHECK_DIALECTS).unwrap_or_default();
    let scripts: Vec<&PathBuf> = files
        .iter()
        .filter(|f| identifier.is_any_of(f, dialects))
        .collect();
    if scripts.is_empty() {
        return None;
    }
    // Without a `#!` line shellcheck reads the dialect from these extensions only.
    let knows_dialect = |f: &Path| {
        f.extension()
            .is_some_and(|e| ["bash", "bats", "dash", "ksh"].iter().any(|k| e == *k))
            || identifier.has_shebang(f)
    };
    let mut unnamed: Vec<(&'static str, Vec<&PathBuf>)> = Vec::new();
    for dialect in SHELLCHECK_DIALECTS {
        let of_dialect = Types::parse(&[dialect]).unwrap_or_default();
        let paths: Vec<&PathBuf> = scripts
            .iter()
            .copied()
            .filter(|f| !knows_dialect(f) && identifier.types_of(f).intersects(of_dialect))
            .collect();
        if !paths.is_empty() {
            unnamed.push((dialect, paths));
        }
    }
    let anchored = |paths: &[&PathBuf]| {
        paths
            .iter()
            .map(|p| format!("{:?}", format!("/{}", p.display())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let types = SHELLCHECK_DIALECTS
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut snippet = include_str!("../templates/init/shell.toml").replace("@TYPES@", &types);
    let all_unnamed: Vec<&PathBuf> = unnamed
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    if !all_unnamed.is_empty() {
        snippet.push_str(&format!(
            "# These have no #! line, so shellcheck is told their dialect below.\nexclude = [{}]\n",
            anchored(&all_unnamed)
        ));
    }
    let mut pre_commit = vec!["shellcheck"];
    for (dialect, paths) in &unnamed {
        let name = match *dialect {
            "sh" => "shellcheck-sh",
            "ksh" => "shellcheck-ksh",
            _ => "shellcheck-bash",
        };
        snippet.push_str(&format!(
            "\n[steps.{name}]\nrun = \"shellcheck --shell={dialect} {{files}}\"\nfiles = [{}]\n",
            anchored(paths)
        ));
        pre_commit.push(name);
    }
    Some(Kind {
        program: "shellcheck",
        snippet,
        pre_commit,
        pre_push: Vec::new(),
    })
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

    /// File heads held in memory, for the types that names do not tell.
    struct Heads(&'static [(&'static str, &'static str)]);

    impl Contents for Heads {
        fn head(&self, path: &Path) -> Option<Vec<u8>> {
            self.0
                .iter()
                .find(|(p, _)| Path::new(p) == path)
                .map(|(_, h)| h.as_bytes().to_vec())
        }
        fn is_executable(&self, _: &Path) -> bool {
            false
        }
        fn is_symlink(&self, _: &Path) -> bool {
            false
        }
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
        let heads = Heads(&[("install.sh", "#!/bin/sh\n"), ("bin/tool", "#!/bin/bash\n")]);
        let everything = starter(&all, |_| true, read, &heads);
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

        let nothing = starter(&all, |_| false, read, &heads);
        valid(&nothing.text);
        assert!(
            !nothing.text.contains("\n[steps."),
            "every step is commented out"
        );
        assert!(nothing.text.contains("# `cargo` is not on PATH"));
        assert!(!nothing.text.contains("\n[hooks]"));
    }

    #[test]
    fn a_dotfiles_repo_gets_shellcheck_on_its_scripts_found_by_name_and_first_line() {
        let heads = Heads(&[
            (".bashrc", "alias ll='ls -l'\n"),
            (".aliases", "#!/usr/bin/env bash\nalias g=git\n"),
            (".exports", "export EDITOR=vim\n"),
            ("bin/backup", "#!/bin/sh\n"),
            ("bin/notes", "plain text\n"),
            ("lib/util.sh", "say() { echo \"$1\"; }\n"),
        ]);
        let s = starter(
            &files(&[
                ".bashrc",
                ".profile",
                ".aliases",
                ".exports",
                ".zshrc",
                "bin/backup",
                "bin/notes",
                "lib/util.sh",
                "README.md",
            ]),
            |p| p != "markdownlint",
            |_| None,
            &heads,
        );
        valid(&s.text);
        assert!(
            s.text.contains(
                "types = [\"sh\", \"bash\", \"ksh\"]\n\
                 # These have no #! line, so shellcheck is told their dialect below.\n\
                 exclude = [\"/.profile\", \"/lib/util.sh\", \"/.bashrc\"]\n"
            ),
            "{}",
            s.text
        );
        assert!(
            s.text.contains(
                "[steps.shellcheck-sh]\nrun = \"shellcheck --shell=sh {files}\"\n\
                 files = [\"/.profile\", \"/lib/util.sh\"]\n"
            ),
            "{}",
            s.text
        );
        assert!(
            s.text.contains(
                "[steps.shellcheck-bash]\nrun = \"shellcheck --shell=bash {files}\"\n\
                 files = [\"/.bashrc\"]\n"
            ),
            "{}",
            s.text
        );
        assert!(
            s.text
                .contains("pre-commit = [\"shellcheck\", \"shellcheck-sh\", \"shellcheck-bash\"]"),
            "{}",
            s.text
        );
        assert!(!s.text.contains("ruff"), "no Python here: {}", s.text);
        assert_eq!(s.missing, ["markdownlint"]);
    }

    #[test]
    fn a_python_script_without_an_extension_brings_ruff() {
        let heads = Heads(&[("manage", "#!/usr/bin/env python3\n")]);
        let s = starter(&files(&["manage"]), |_| true, |_| None, &heads);
        valid(&s.text);
        assert!(
            s.text
                .contains("run = \"ruff check --no-fix --force-exclude {files}\""),
            "{}",
            s.text
        );
    }

    #[test]
    fn an_unknown_repo_gets_an_example() {
        let s = starter(&files(&["main.c"]), |_| true, |_| None, &Heads(&[]));
        valid(&s.text);
        assert_eq!(s.kinds, 0);
        assert!(s.text.contains("# [steps.check]"));
    }
}
