//! Why a lease gave no ActionResult, as the gRPC status the server is told.
//!
//! A leaf of `remote/worker/`: every other part of the worker returns it, and it imports
//! none of them.

use crate::remote::connection::RemoteError;
use std::path::Path;
use tonic::Code;

/// Why a lease gave no ActionResult: the status the server is told.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// The server sent something unusable (a bad path, a payload of the wrong type).
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(Code::InvalidArgument, message)
    }

    /// A blob the action needs is not in the CAS: REAPI's answer is FAILED_PRECONDITION.
    pub fn missing(what: String) -> Self {
        Failure::new(Code::FailedPrecondition, format!("the CAS has no {what}"))
    }

    /// A CAS call failed: unreachable servers are worth a retry elsewhere (BuildGrid retries
    /// UNAVAILABLE), a missing or damaged blob is not.
    pub fn cas(e: RemoteError) -> Self {
        let code = match e.code {
            Some(Code::NotFound) | None => Code::FailedPrecondition,
            Some(
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Cancelled,
            ) => Code::Unavailable,
            Some(code) => code,
        };
        Failure::new(code, e.to_string())
    }

    /// This machine failed (disk full, permissions): another worker may do better, and
    /// BuildGrid retries INTERNAL.
    pub fn local(path: &Path, e: std::io::Error) -> Self {
        Failure::new(Code::Internal, format!("{}: {e}", path.display()))
    }

    pub fn internal(message: String) -> Self {
        Failure::new(Code::Internal, message)
    }

    pub fn output(name: &str, why: String) -> Self {
        Failure::new(
            Code::FailedPrecondition,
            format!("output `{name}` cannot be uploaded: {why}"),
        )
    }

    /// The worker was stopped or the server took the lease back: UNAVAILABLE, so that the
    /// action is run again elsewhere.
    pub fn stopped() -> Self {
        Failure::new(
            Code::Unavailable,
            "stopped: the worker is stopping, or the server gave the action to another worker",
        )
    }
}
