//! preflight: local-first CI as code.
//!
//! Dependencies flow one way: `cli → commands → {plan, exec} → {process, git, config, report}`.
//! Only `report` writes to the terminal; the engine sends it `report::Event` values.

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
pub mod origin;
pub mod plan;
pub mod process;
pub mod remote;
pub mod report;
pub mod watch;
