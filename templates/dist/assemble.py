#!/usr/bin/env python3
"""Assembles preflight's release files from a built binary. Used by the release workflow
and by the test suite, so that what the tests install is what a release ships.

    python3 templates/dist/assemble.py --binary PATH --target TRIPLE --out DIR

writes into DIR:
  preflight-TRIPLE.tar.gz          the binary in a folder of the same name
  preflight-TRIPLE.tar.gz.sha256   its SHA-256, in `sha256sum` format
  SHA256SUMS                       every archive in DIR, rewritten each time
  install.sh                       the install script (it reads ARCHIVE.sha256)
  npm/preflight-ci-OS-ARCH/        the platform package, ready for `npm pack`
  npm/preflight-ci/                the main package, with every platform as an optional dependency

The version is Cargo.toml's. Only the standard library is used: any Python >= 3.8 runs it.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# Rust target -> (npm os, npm cpu, libc). The launcher (npm/preflight-ci/bin/preflight.js)
# lists the same platforms.
TARGETS = {
    "x86_64-unknown-linux-gnu": ("linux", "x64", "glibc"),
    "aarch64-unknown-linux-gnu": ("linux", "arm64", "glibc"),
    "x86_64-apple-darwin": ("darwin", "x64", None),
    "aarch64-apple-darwin": ("darwin", "arm64", None),
}


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    if not match:
        sys.exit("assemble.py: no version in Cargo.toml's [package]")
    return match.group(1)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_archive(binary: Path, target: str, out: Path) -> Path:
    """A reproducible .tar.gz: fixed owner, mode and time, whatever the build machine."""
    folder = f"preflight-{target}"
    archive = out / f"{folder}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source, mode in [
            (f"{folder}/preflight", binary, 0o755),
            (f"{folder}/README.md", ROOT / "README.md", 0o644),
        ]:
            info = tarfile.TarInfo(name)
            info.size = source.stat().st_size
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with source.open("rb") as f:
                tar.addfile(info, f)
    with archive.open("wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw.getvalue())
    (out / f"{archive.name}.sha256").write_text(f"{sha256(archive)}  {archive.name}\n")
    return archive


def write_sums(out: Path) -> None:
    lines = [f"{sha256(a)}  {a.name}\n" for a in sorted(out.glob("preflight-*.tar.gz"))]
    (out / "SHA256SUMS").write_text("".join(lines))


def npm_name(target: str) -> str:
    os_name, cpu, _ = TARGETS[target]
    return f"preflight-ci-{os_name}-{cpu}"


def write_npm(binary: Path, target: str, version: str, out: Path) -> None:
    templates = HERE / "npm"
    os_name, cpu, libc = TARGETS[target]

    platform = out / "npm" / npm_name(target)
    shutil.rmtree(platform, ignore_errors=True)
    (platform / "bin").mkdir(parents=True)
    manifest = json.loads((templates / "platform" / "package.json").read_text())
    manifest.update(name=npm_name(target), version=version, os=[os_name], cpu=[cpu])
    if libc:
        manifest["libc"] = [libc]
    (platform / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.copyfile(binary, platform / "bin" / "preflight")
    os.chmod(platform / "bin" / "preflight", 0o755)

    main = out / "npm" / "preflight-ci"
    shutil.rmtree(main, ignore_errors=True)
    shutil.copytree(templates / "preflight-ci", main)
    manifest = json.loads((main / "package.json").read_text())
    manifest["version"] = version
    manifest["optionalDependencies"] = {npm_name(t): version for t in TARGETS}
    (main / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(main / "bin" / "preflight.js", 0o755)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True, type=Path, help="the built preflight")
    parser.add_argument("--target", required=True, choices=sorted(TARGETS))
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if not args.binary.is_file():
        sys.exit(f"assemble.py: {args.binary} is not a file")
    version = cargo_version()
    args.out.mkdir(parents=True, exist_ok=True)
    archive = write_archive(args.binary, args.target, args.out)
    write_sums(args.out)
    shutil.copyfile(HERE / "install.sh", args.out / "install.sh")
    write_npm(args.binary, args.target, version, args.out)
    print(f"assembled {archive.name}, SHA256SUMS, install.sh and the npm packages of {version}")


if __name__ == "__main__":
    main()
