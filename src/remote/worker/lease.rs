//! What the server is told of a lease that ended: COMPLETED, with a status and, when the
//! action ran, its ActionResult.

use super::job::Finished;
use crate::remote::bots::{Lease, LeaseState};
use crate::remote::proto::{self, rpc};
use tonic::Code;

pub(super) fn status(code: Code, message: &str) -> rpc::Status {
    rpc::Status {
        code: code as i32,
        message: message.to_string(),
        details: Vec::new(),
    }
}

/// The status and result a finished job reports. A timeout is DEADLINE_EXCEEDED with the
/// partial result, as REAPI asks.
pub(super) fn report(finished: &Finished) -> (rpc::Status, Option<proto::pb::Any>) {
    const RESULT: &str = "build.bazel.remote.execution.v2.ActionResult";
    match &finished.outcome {
        Ok(ran) => {
            let result = Some(proto::pack(RESULT, &ran.result));
            match ran.timed_out {
                None => (status(Code::Ok, ""), result),
                Some(limit) => {
                    let message = format!("the action ran past its timeout of {limit:?}");
                    (status(Code::DeadlineExceeded, &message), result)
                }
            }
        }
        Err(failure) => (status(failure.code, &failure.message), None),
    }
}

pub(super) fn completed(id: &str, status: rpc::Status, result: Option<proto::pb::Any>) -> Lease {
    Lease {
        id: id.to_string(),
        state: LeaseState::Completed as i32,
        status: Some(status),
        result,
        ..Default::default()
    }
}
