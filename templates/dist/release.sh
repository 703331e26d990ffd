#!/bin/sh
# The `release` step of preflight's own CI (.github/workflows/preflight.yml, job `release`):
# builds this runner's targets with maturin, assembles the archives, checksums and npm
# packages (assemble.py), and smoke-tests the wheel. On a version tag it then publishes:
# the wheels to PyPI (trusted publishing), the npm packages (platform packages first, with
# provenance), and the archives to the GitHub release.
#
# It runs in CI only: outside it (no PREFLIGHT_MATRIX_OS) it says so and does nothing, so
# that a local `preflight run` does not build four release targets.
set -eu

if [ -z "${PREFLIGHT_MATRIX_OS:-}" ]; then
    echo "release: runs in the CI job \`release\` only; nothing to do here"
    exit 0
fi

maturin_version="1.16.0"
ziglang_version="0.17.1"
uv_version="0.13.9"
out="target/dist"
rm -rf "$out"
mkdir -p "$out/wheels" "$out/release"

python3 -m venv target/release-tools
target/release-tools/bin/pip install --quiet --disable-pip-version-check \
    "maturin==$maturin_version" "ziglang==$ziglang_version" "uv==$uv_version"
PATH="$PWD/target/release-tools/bin:$PATH"
export PATH

case "$(uname -s)" in
    Linux)
        targets="x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu"
        # Zig links against glibc 2.17: one binary for every glibc Linux since 2014.
        zig="--zig --compatibility manylinux2014"
        ;;
    Darwin)
        targets="aarch64-apple-darwin x86_64-apple-darwin"
        zig=""
        ;;
    *)
        echo "release: no targets for $(uname -s)" >&2
        exit 1
        ;;
esac

for target in $targets; do
    rustup target add "$target"
    # shellcheck disable=SC2086 # $zig is a list of flags
    maturin build --release --locked --target "$target" $zig --out "$out/wheels"
    python3 templates/dist/assemble.py --binary "target/$target/release/preflight" \
        --target "$target" --out "$out/release"
done

# The wheel of this machine, installed as a user would, must run.
python3 -m venv "$out/smoke"
"$out/smoke/bin/pip" install --quiet --no-index --find-links "$out/wheels" preflight-ci
"$out/smoke/bin/preflight" --version

case "${GITHUB_REF:-}" in
    refs/tags/v*) ;;
    *)
        echo "release: built; publishing happens on version tags only"
        exit 0
        ;;
esac
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
if [ "${GITHUB_REF#refs/tags/v}" != "$version" ]; then
    echo "release: the tag ${GITHUB_REF#refs/tags/} does not match Cargo.toml's version $version" >&2
    exit 1
fi

uv publish --trusted-publishing always "$out"/wheels/*.whl

npm config set "//registry.npmjs.org/:_authToken" "${NPM_TOKEN:?the NPM_TOKEN secret is not set}"
for package in "$out"/npm/preflight-ci-*; do
    (cd "$package" && npm publish --provenance --access public)
done
if [ "$(uname -s)" = Linux ]; then
    (cd "$out/npm/preflight-ci" && npm publish --provenance --access public)
fi

tag="${GITHUB_REF#refs/tags/}"
gh release view "$tag" >/dev/null 2>&1 || gh release create "$tag" --verify-tag --title "$tag" \
    --notes "preflight $version" || gh release view "$tag" >/dev/null
gh release upload "$tag" --clobber "$out"/release/preflight-*.tar.gz \
    "$out"/release/preflight-*.tar.gz.sha256 "$out/release/install.sh"
