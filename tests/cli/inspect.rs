//! `preflight list` and `preflight graph`.

use crate::common::Repo;

const CONFIG: &str = r#"
[steps.fmt]
run = "cargo fmt --check"
files = ["*.rs"]
[steps.build]
run = "cargo build"
needs = ["fmt"]
[steps.test]
run = "cargo test"
needs = ["build", "fmt"]
files = ["*.rs"]
exclude = ["vendor/"]
[hooks]
pre-commit = ["fmt"]
pre-push = ["fmt", "test"]
"#;

#[test]
fn list_shows_needs_globs_and_hooks() {
    let run = Repo::with_config(CONFIG).run(&["list"]);
    run.code(0);
    insta::assert_snapshot!(run.stdout, @r"
    STEP   NEEDS      FILES               HOOKS
    fmt    -          *.rs                pre-commit pre-push
    build  fmt        -                   -
    test   build fmt  *.rs (not vendor/)  pre-push
    ");
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let repo = Repo::with_config(CONFIG);
    let dot = repo.run(&["graph"]);
    dot.code(0);
    insta::assert_snapshot!(dot.stdout, @r#"
    digraph preflight {
      rankdir=LR;
      node [shape=box];
      "fmt";
      "build";
      "test";
      "fmt" -> "build";
      "build" -> "test";
      "fmt" -> "test";
    }
    "#);
    let mermaid = repo.run(&["graph", "--format", "mermaid"]);
    mermaid.code(0);
    insta::assert_snapshot!(mermaid.stdout, @r#"
    graph LR
      s0["fmt"]
      s1["build"]
      s2["test"]
      s0 --> s1
      s1 --> s2
      s0 --> s2
    "#);
}

#[test]
fn list_shows_types() {
    let run = Repo::with_config(
        "[steps.shellcheck]\nrun = \"shellcheck {files}\"\ntypes = [\"sh\", \"bash\"]\n\
         exclude = [\"/.bashrc\"]\n[steps.py]\nrun = \"true\"\nfiles = [\"bin/*\"]\ntypes = [\"python\"]\n",
    )
    .run(&["list"]);
    run.code(0);
    assert!(
        run.stdout
            .contains("shellcheck  -      types:sh,bash (not /.bashrc)  -"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("py          -      bin/* types:python"),
        "{}",
        run.stdout
    );
}
