//! preflight: local-first CI as code.
//!
//! Dependencies flow one way: `cli → commands → {pipeline, setup} → {plan, exec, cache,
//! remote, hooks, ci, watch} → {process, git, config, report}`. `commands` turn arguments
//! into requests and never import one another; `pipeline` is the one run pipeline that
//! `run`, every hook and `watch` share (the only reader of the settings the environment
//! gives a run); `setup` writes the generated CI files and the hook shims. Only `report`
//! writes to the terminal; the engine sends it `report::Event` values. Signals are
//! installed in one place, `signals`.

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
pub mod pipeline;
pub mod plan;
pub mod process;
pub mod remote;
pub mod report;
pub mod setup;
pub mod signals;
pub mod watch;
