//! Integration tests: the real `preflight` binary in throwaway git repositories.

mod common;

mod adopt;
mod book;
mod buildgrid;
mod cache;
mod ci;
mod commitsafety;
mod config_errors;
mod dist;
mod examples;
mod exit_codes;
mod files;
mod fuzz;
mod hooks;
mod inspect;
mod observe;
mod observe_trace;
mod output;
mod processes;
mod push;
mod remote;
mod review;
mod run;
mod tools;
mod tools_ci;
mod tools_init;
mod tools_remote;
mod watch;
mod worker;
mod worksafety;
