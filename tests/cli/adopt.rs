//! Getting started: `init`, the JSON Schema, shell completions and `--help`.

use crate::common::{Repo, Run, accepted_keys, schema_keys};

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
