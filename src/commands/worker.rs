//! `preflight worker`: serves a REAPI build farm through the Remote Workers API.

use crate::cli::WorkerArgs;
use crate::error::{Error, Result};

pub fn worker(_args: &WorkerArgs, _color: bool) -> Result<i32> {
    Err(Error::Setup("preflight worker is being written".into()))
}
