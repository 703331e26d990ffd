//! Integration tests: the real `preflight` binary in throwaway git repositories.

mod common;

mod book;
mod cache;
mod config_errors;
mod examples;
mod files;
mod inspect;
mod processes;
mod run;
