//! preflight: local-first CI as code.
//!
//! Dependencies flow one way: `cli → commands → {pipeline, setup} → {plan, exec, cache,
//! remote, hooks, ci, watch, tools} → {observe, process, git, config}`, with small leaves
//! anyone may use (`error`, `shell`, `lock`, `lstat`, `atomic`, `signals`). `tools` is the
//! store of managed tools and `preflight.lock`; `observe` runs a step under the tracer that
//! records what it read (the executor and the remote worker use it, the cache checks it). `commands` turn arguments into requests
//! and never import one another; `pipeline` is the one run pipeline that `run`, every hook
//! and `watch` share (the only reader of the settings the environment gives a run); `setup`
//! writes the generated CI files and the hook shims. The engine (`exec`) owns its
//! vocabulary: `exec::Event`, `StepResult` and `Summary` carry data (durations, reasons,
//! stages), never sentences. Only `report` words them and writes to the terminal; nothing
//! below `pipeline` imports `report`.

pub mod atomic;
pub mod cache;
pub mod ci;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exec;
pub mod files;
pub mod filetypes;
pub mod git;
pub mod hooks;
pub mod init;
pub mod lock;
pub mod lstat;
pub mod observe;
pub mod origin;
pub mod pipeline;
pub mod plan;
pub mod process;
pub mod remote;
pub mod report;
pub mod setup;
pub mod shell;
pub mod signals;
pub mod tools;
pub mod watch;
