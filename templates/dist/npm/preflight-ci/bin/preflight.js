#!/usr/bin/env node
// Starts the preflight binary of this platform's package (an optional dependency that npm
// installs only on the platform it fits). PREFLIGHT_BINARY names another binary to start.
"use strict";
const { spawnSync } = require("child_process");

const PACKAGES = {
  "linux x64": "preflight-ci-linux-x64",
  "linux arm64": "preflight-ci-linux-arm64",
  "darwin x64": "preflight-ci-darwin-x64",
  "darwin arm64": "preflight-ci-darwin-arm64",
};

function fail(message) {
  process.stderr.write(`preflight (npm launcher): ${message}\n`);
  process.exit(1);
}

function binary() {
  if (process.env.PREFLIGHT_BINARY) {
    return process.env.PREFLIGHT_BINARY;
  }
  const platform = `${process.platform} ${process.arch}`;
  const pkg = PACKAGES[platform];
  if (!pkg) {
    fail(
      `no prebuilt binary for ${platform}; install with pip (pip install preflight-ci) ` +
        "or cargo (cargo install --locked preflight), or set PREFLIGHT_BINARY",
    );
  }
  try {
    return require.resolve(`${pkg}/bin/preflight`);
  } catch {
    fail(
      `the package ${pkg} is not installed. npm skips it when optional dependencies are ` +
        "omitted (--omit=optional, --no-optional), when node_modules was copied from " +
        "another platform, or on musl-based Linux (Alpine), which the binary does not support; " +
        "reinstall preflight-ci without those, or set PREFLIGHT_BINARY",
    );
  }
}

const result = spawnSync(binary(), process.argv.slice(2), { stdio: "inherit" });
if (result.error) {
  fail(`cannot start ${binary()}: ${result.error.message}`);
}
if (result.signal) {
  process.kill(process.pid, result.signal);
}
process.exit(result.status === null ? 1 : result.status);
