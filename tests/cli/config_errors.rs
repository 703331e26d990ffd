//! Every kind of config error: each case in tests/cases/invalid must fail with exit code 2 and
//! the diagnostic snapshotted beside it, and nothing may run.

use crate::common::Repo;
use std::path::Path;

#[test]
fn each_invalid_config_fails_with_its_diagnostic() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/invalid");
    let mut names: Vec<_> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "the invalid cases are missing");
    for case in names {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let repo = Repo::new();
        std::fs::copy(&case, repo.path().join("preflight.toml")).unwrap();
        let validate = repo.run(&["validate"]);
        let run = repo.run(&["run"]);
        assert_eq!(
            validate.code, 2,
            "{name}: validate should fail:\n{}",
            validate.stdout
        );
        assert_eq!(run.code, 2, "{name}: run should fail:\n{}", run.stdout);
        assert_eq!(
            run.stdout, "",
            "{name}: nothing may run on an invalid config"
        );
        assert_eq!(
            run.stderr, validate.stderr,
            "{name}: run and validate report alike"
        );
        insta::with_settings!({
            snapshot_path => cases.join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("preflight validate on tests/cases/invalid/{name}.toml"),
        }, {
            insta::assert_snapshot!(name, validate.stderr);
        });
    }
}

#[test]
fn a_valid_config_says_so() {
    let repo = Repo::with_config(
        "[steps.a]\nrun = \"true\"\n[steps.b]\nrun = \"true\"\n[hooks]\npre-commit = [\"a\"]\n",
    );
    let run = repo.run(&["validate"]);
    run.code(0);
    assert_eq!(run.stdout, "preflight.toml is valid: 2 steps, 1 hook\n");
}
