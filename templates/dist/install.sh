#!/bin/sh
# Installs preflight from a release archive into ~/.local/bin, after checking the archive
# against the checksum file released beside it (ARCHIVE.sha256). It refuses to install when the checksum does not match,
# is missing, or cannot be computed.
#
#   curl -fsSL https://github.com/preflight-ci/preflight/releases/latest/download/install.sh | sh
#   sh install.sh --version 0.1.0 --to /usr/local/bin
#
# Settings (flags win over the environment):
#   --version V   PREFLIGHT_VERSION        the release to install (default: the latest)
#   --to DIR      PREFLIGHT_INSTALL_DIR    where `preflight` goes (default: ~/.local/bin)
#   PREFLIGHT_DOWNLOAD_URL                 the folder holding the release files (a mirror)
set -eu

repository="https://github.com/preflight-ci/preflight"
version="${PREFLIGHT_VERSION:-}"
to="${PREFLIGHT_INSTALL_DIR:-}"

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --version) [ $# -ge 2 ] || die "--version needs a value"; version="$2"; shift 2 ;;
        --to) [ $# -ge 2 ] || die "--to needs a folder"; to="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0" 2>/dev/null || true; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
version="${version#v}"
if [ -z "$to" ]; then
    [ -n "${HOME:-}" ] || die "HOME is not set: say where to install with --to DIR"
    to="$HOME/.local/bin"
fi

case "$(uname -s)" in
    Linux) os="unknown-linux-gnu" ;;
    Darwin) os="apple-darwin" ;;
    *) die "no release archive for $(uname -s); install with pip (pip install preflight-ci) or cargo" ;;
esac
case "$(uname -m)" in
    x86_64|amd64) arch="x86_64" ;;
    aarch64|arm64) arch="aarch64" ;;
    *) die "no release archive for $(uname -m); install with cargo install --locked preflight" ;;
esac
if [ "$os" = "unknown-linux-gnu" ] && [ -e /etc/alpine-release ]; then
    die "the Linux archives need glibc; on Alpine (musl) use cargo install --locked preflight"
fi
target="$arch-$os"
archive="preflight-$target.tar.gz"

if [ -n "${PREFLIGHT_DOWNLOAD_URL:-}" ]; then
    base="${PREFLIGHT_DOWNLOAD_URL%/}"
elif [ -n "$version" ]; then
    base="$repository/releases/download/v$version"
else
    base="$repository/releases/latest/download"
fi

# Plain http only for a mirror given as http:// (a local one); never by a redirect.
case "$base" in
    http://*) protocols='=https,http' ;;
    *) protocols='=https' ;;
esac
fetch() { # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl --proto "$protocols" --proto-redir '=https' -fsSL "$1" -o "$2"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "neither curl nor wget is installed"
    fi
}

sha256() { # FILE -> hex digest
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    else
        die "neither sha256sum nor shasum is installed: cannot check the download"
    fi
}

tmp="$(mktemp -d)"
staged=""
# A signal ends the script (a trap alone would let it go on to the install).
trap 'rm -rf "$tmp"; [ -z "$staged" ] || rm -f "$staged"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "downloading $base/$archive"
fetch "$base/$archive" "$tmp/$archive" || die "cannot download $base/$archive"
fetch "$base/$archive.sha256" "$tmp/$archive.sha256" || die "cannot download $base/$archive.sha256"

expected="$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/$archive.sha256")"
[ -n "$expected" ] || die "$archive.sha256 lists no $archive"
actual="$(sha256 "$tmp/$archive")"
if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $archive: expected $expected, got $actual; nothing was installed"
fi

tar -xzf "$tmp/$archive" -C "$tmp" || die "cannot unpack $archive"
[ -f "$tmp/preflight-$target/preflight" ] || die "$archive holds no preflight-$target/preflight"
chmod 755 "$tmp/preflight-$target/preflight"
# A binary that cannot run here (musl, a glibc older than 2.17) never replaces a working one.
installed="$("$tmp/preflight-$target/preflight" --version 2>/dev/null)" ||
    die "the preflight of $archive cannot run on this system (musl, or glibc older than 2.17?); nothing was installed; use cargo install --locked preflight"
mkdir -p "$to" || die "cannot create $to"
# Copy beside the old binary, then rename over it: a running preflight is never truncated.
staged="$to/.preflight.tmp.$$"
cp "$tmp/preflight-$target/preflight" "$staged" || die "cannot write to $to"
chmod 755 "$staged" || die "cannot make $staged executable"
mv -f "$staged" "$to/preflight" || die "cannot install into $to"
staged=""

say "installed $installed to $to/preflight"
case ":${PATH:-}:" in
    *":$to:"*) ;;
    *) say "note: $to is not on your PATH; add it, e.g. export PATH=\"$to:\$PATH\"" ;;
esac
