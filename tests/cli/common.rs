//! The test harness: a git repository in a temp dir, and the real binary run inside it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

pub const BIN: &str = env!("CARGO_BIN_EXE_preflight");

/// A git repository in a temporary folder, with a fixed identity and no user config.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("preflight-test")
            .tempdir()
            .expect("temp dir");
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A fresh clone of another test repository: another machine with the same commits
    /// and an empty cache of its own.
    pub fn clone_of(other: &Repo) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("preflight-clone")
            .tempdir()
            .expect("temp dir");
        let out = git_command(dir.path())
            .args(["clone", "-q"])
            .arg(other.path())
            .arg(".")
            .output()
            .expect("git clone runs");
        assert!(
            out.status.success(),
            "git clone failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Repo { dir }
    }

    /// A repository holding `config` as preflight.toml.
    pub fn with_config(config: &str) -> Self {
        let repo = Repo::new();
        repo.write("preflight.toml", config);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
    }

    pub fn read(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        std::fs::read(self.path().join(rel)).expect("read")
    }

    pub fn git(&self, args: &[&str]) -> Output {
        let out = git_command(self.path())
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs git and returns what happened, failure included (a hook may refuse).
    pub fn git_run(&self, args: &[&str]) -> Run {
        Run::from(
            git_command(self.path())
                .args(args)
                .output()
                .expect("git runs"),
        )
    }

    /// Commits through the installed hooks.
    pub fn commit(&self, message: &str) -> Run {
        self.git_run(&["commit", "-q", "-m", message])
    }

    /// A file's content at a revision (`:path` is the staged version).
    pub fn show(&self, spec: &str) -> String {
        String::from_utf8(self.git(&["show", spec]).stdout).expect("utf-8")
    }

    pub fn read_string(&self, rel: impl AsRef<Path>) -> String {
        String::from_utf8(self.read(rel)).expect("utf-8")
    }

    /// Stages everything, so it becomes part of the run's file set.
    pub fn add_all(&self) {
        self.git(&["add", "-A"]);
    }

    /// The binary, with a clean environment: not in CI, no colours, run from the repo root.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.path())
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("PREFLIGHT")
            .env_remove("PREFLIGHT_SKIP")
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("PREFLIGHT_CACHE_DIR", cache_dir_for(self.path()))
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("preflight runs"))
    }
}

/// A cache of its own for each test repository, inside its git folder (beside a linked
/// worktree), so that tests with the same steps and files never see each other's results.
pub fn cache_dir_for(dir: &Path) -> PathBuf {
    if dir.join(".git").is_dir() {
        return dir.join(".git/preflight-cache");
    }
    let mut name = dir.as_os_str().to_os_string();
    name.push(".preflight-cache");
    PathBuf::from(name)
}

pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("PREFLIGHT_CACHE_DIR", cache_dir_for(dir))
        .env_remove("PREFLIGHT")
        .env_remove("PREFLIGHT_SKIP")
        .env_remove("CI")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid");
    cmd
}

/// What a run of the binary left: exit code, stdout, stderr.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing everything the run printed when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The report line of a step, e.g. `   passed fmt (12ms)`.
    #[track_caller]
    pub fn line_of(&self, step: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                let l = l.trim_end();
                !l.contains('│')
                    && (l.ends_with(&format!(" {step}"))
                        || l.contains(&format!(" {step} ("))
                        || l.contains(&format!(" {step}: ")))
            })
            .unwrap_or_else(|| panic!("no report line for `{step}` in:\n{}", self.stdout))
    }

    /// The status word of a step's report line.
    #[track_caller]
    pub fn status_of(&self, step: &str) -> String {
        let line = self.line_of(step).trim_start();
        let end = line.find(&format!(" {step}")).expect("status before name");
        line[..end].to_string()
    }
}

/// Stops a preflight process the way a user would (SIGTERM, so it can stop its steps), and
/// kills it if it does not end in time. Used when a test fails with preflight still running.
/// Waits until `check` holds, or panics after `limit`: tests meet a running step through
/// files it makes, not through sleeps a loaded machine may not honour.
pub fn wait_for(limit: std::time::Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits until `path` exists (a marker a step or a helper process makes), at most 20 s.
pub fn wait_for_file(path: &Path, what: &str) {
    wait_for(std::time::Duration::from_secs(20), what, || path.exists());
}

/// A shell loop that waits until `path` exists, at most 20 s: how a step waits for the test
/// (or another step) beside it. It goes on after 20 s, so that a broken test fails rather
/// than hangs.
pub fn sh_wait_for_file(path: &str) -> String {
    format!("i=0; while [ ! -e {path} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done")
}

pub fn stop_child(child: &mut std::process::Child) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Makes a relative path from raw bytes (for names that are not UTF-8).
pub fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// The processes now alive whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        panic!("/proc is needed to look for leftover processes");
    };
    for entry in entries.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(marker) {
            // A zombie has an empty cmdline; a live match is a leftover.
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// External tools the tests need, installed once into target/tools from the registries.
pub mod tools {
    use super::*;

    // One lock per installer, so that a slow `cargo install` does not hold up pip.
    static PIP: Mutex<()> = Mutex::new(());
    static CARGO: Mutex<()> = Mutex::new(());
    static NPM: Mutex<()> = Mutex::new(());
    static APT: Mutex<()> = Mutex::new(());

    pub fn dir() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let target = if target.is_absolute() {
            target
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(target)
        };
        target.join("tools")
    }

    fn run_install(cmd: &mut Command, what: &str) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start the install of {what}: {e}"));
        assert!(
            out.status.success(),
            "installing {what} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A Python virtualenv under target/tools with `package` installed; returns its bin folder.
    pub fn pip(package: &str, program: &str) -> PathBuf {
        let _guard = PIP.lock().unwrap_or_else(|e| e.into_inner());
        let venv = dir().join("venv");
        let bin = venv.join("bin");
        if bin.join(program).is_file() {
            return bin;
        }
        if !bin.join("pip").is_file() {
            run_install(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "a Python venv",
            );
        }
        run_install(
            Command::new(bin.join("pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                package,
            ]),
            package,
        );
        assert!(
            bin.join(program).is_file(),
            "{package} did not install {program}"
        );
        bin
    }

    /// A crate's binary installed with `cargo install` into target/tools.
    pub fn cargo(krate: &str, version: &str, program: &str) -> PathBuf {
        let _guard = CARGO.lock().unwrap_or_else(|e| e.into_inner());
        let bin = dir().join("bin").join(program);
        if bin.is_file() {
            return bin;
        }
        run_install(
            Command::new(env!("CARGO"))
                .args([
                    "install",
                    "--locked",
                    "--quiet",
                    "--version",
                    version,
                    "--root",
                ])
                .arg(dir())
                .arg(krate),
            krate,
        );
        bin
    }

    /// An npm package installed under target/tools/npm. Returns its `program` from
    /// node_modules/.bin, or, for a library without one, the package folder itself.
    pub fn npm(package: &str, program: &str) -> PathBuf {
        let _guard = NPM.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = dir().join("npm");
        let modules = prefix.join("node_modules");
        let found = || {
            [modules.join(".bin").join(program), modules.join(program)]
                .into_iter()
                .find(|p| p.exists())
        };
        let name = package.rsplit_once('@').map_or(package, |(n, _)| n);
        let wanted = package.rsplit_once('@').map(|(_, v)| v);
        let installed = std::fs::read_to_string(modules.join(name).join("package.json"))
            .ok()
            .is_some_and(|json| {
                wanted.is_none_or(|v| json.contains(&format!("\"version\": \"{v}\"")))
            });
        if installed && let Some(path) = found() {
            return path;
        }
        std::fs::create_dir_all(&prefix).expect("mkdir target/tools/npm");
        run_install(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(package),
            package,
        );
        found().unwrap_or_else(|| panic!("{package} did not install {program}"))
    }

    /// A program from Debian's packages, installed with apt-get when it is missing.
    pub fn apt(package: &str, program: &str) -> PathBuf {
        let _guard = APT.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(path) = which_program(program) {
            return path;
        }
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !install() {
            run_install(
                Command::new("apt-get").args(["update", "-q"]),
                "the apt index",
            );
            run_install(
                Command::new("apt-get")
                    .args(["install", "-y", "-q", package])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                package,
            );
        }
        which_program(program)
            .unwrap_or_else(|_| panic!("apt-get installed {package}, yet {program} is not on PATH"))
    }

    fn which_program(program: &str) -> Result<PathBuf, ()> {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(program))
            .find(|p| p.is_file())
            .ok_or(())
    }
}

/// The keys a table accepts, as preflight itself reports them for an unknown key.
pub fn accepted_keys(config: &str) -> std::collections::BTreeSet<String> {
    let repo = Repo::with_config(config);
    let run = repo.run(&["validate"]);
    run.code(2);
    let line = run
        .stderr
        .lines()
        .find_map(|l| {
            l.split_once("valid keys here: ")
                .map(|(_, keys)| keys.to_string())
        })
        .unwrap_or_else(|| panic!("no key list in:\n{}", run.stderr));
    line.split(", ").map(String::from).collect()
}

pub fn schema_keys(
    schema: &serde_json::Value,
    pointer: &str,
) -> std::collections::BTreeSet<String> {
    schema
        .pointer(pointer)
        .and_then(|v| v.as_object())
        .unwrap_or_else(|| panic!("no {pointer} in the schema"))
        .keys()
        .cloned()
        .collect()
}

/// SHA-256 of some bytes, in hex (how REAPI servers name blobs).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
