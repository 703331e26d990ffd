//! Never commit what no check passed: a check that writes fails, a commit the fixers emptied
//! stops, and the hook judges a commit by the configuration staged with it.

use crate::common::Repo;

/// A repository with `config`, hooks installed, and a first commit of `files`.
fn hooked(config: &str, files: &[(&str, &str)]) -> Repo {
    let repo = Repo::with_config(config);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.run(&["install"]).code(0);
    repo.add_all();
    repo.commit("initial").code(0);
    repo
}

fn commit_count(repo: &Repo) -> usize {
    String::from_utf8(repo.git(&["rev-list", "--count", "HEAD"]).stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A fixer that strips trailing blanks, bound to pre-commit in fix mode.
const TRIM: &str = r#"
[steps.trim]
run = "! grep -q ' $' {files}"
fix = "sed -i 's/ *$//' {files}"
files = ["*.txt"]
[hooks]
pre-commit = { steps = ["trim"], fix = true }
"#;

#[test]
fn a_commit_that_the_fixers_emptied_is_stopped() {
    let repo = hooked(TRIM, &[("a.txt", "hello\n")]);
    // The only staged change is one the fixer undoes.
    repo.write("a.txt", "hello   \n");
    repo.git(&["add", "a.txt"]);
    let commit = repo.commit("only blanks");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert!(
        commit.stderr.contains("would be empty") && commit.stderr.contains("a.txt"),
        "{}",
        commit.stderr
    );
    assert_eq!(commit_count(&repo), 1, "no empty commit was recorded");
    assert_eq!(repo.read_string("a.txt"), "hello\n");

    // A fix that leaves a real change is committed as before.
    repo.write("a.txt", "hello  \nworld\n");
    repo.git(&["add", "a.txt"]);
    repo.commit("real change").code(0);
    assert_eq!(repo.show("HEAD:a.txt"), "hello\nworld\n");

    // An empty commit the user asks for (nothing staged) is not the hook's business.
    repo.git_run(&["commit", "-q", "--allow-empty", "-m", "marker"])
        .code(0);
    assert_eq!(commit_count(&repo), 3);
}

#[test]
fn a_merge_that_keeps_heads_tree_is_not_refused() {
    let repo = hooked(TRIM, &[("a.txt", "hello\n")]);
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("b.txt", "side\n");
    repo.add_all();
    repo.commit("side").code(0);
    repo.git(&["checkout", "-q", "main"]);
    // Merge keeping main's tree, with a staged change the fixer reverts.
    repo.git(&["merge", "-q", "--no-commit", "-s", "ours", "side"]);
    repo.write("a.txt", "hello \n");
    repo.git(&["add", "a.txt"]);
    repo.commit("merge").code(0);
    assert_eq!(commit_count(&repo), 3, "initial, side, and the merge");
}
