//! The Remote Workers API (`google.devtools.remoteworkers.v1test2.Bots`), which a build farm
//! such as BuildGrid uses to hand actions to workers. `bazel-remote-apis` does not cover it,
//! so its few messages are written here by hand; field numbers are those of the upstream
//! `bots.proto` and `worker.proto` (checked against the descriptors BuildGrid 0.4.4 ships).

use super::proto::{pb, rpc};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// A worker's link with the server: its identity, health, what it offers, its leases.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BotSession {
    /// Chosen by the server at creation; every update names it.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Chosen by the worker; unique per worker (a new session with the same id replaces the
    /// old one, and the server requeues the old one's work).
    #[prost(string, tag = "2")]
    pub bot_id: String,
    #[prost(enumeration = "BotStatus", tag = "3")]
    pub status: i32,
    #[prost(message, optional, tag = "4")]
    pub worker: Option<Worker>,
    #[prost(message, repeated, tag = "5")]
    pub leases: Vec<Lease>,
    #[prost(message, optional, tag = "6")]
    pub expire_time: Option<pb::Timestamp>,
    /// The server's version of the lease set, echoed back so that it can tell an unchanged
    /// session from one that missed an answer.
    #[prost(string, tag = "7")]
    pub version: String,
}

/// One piece of work: the server assigns it, the worker reports it done.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    #[prost(string, tag = "7")]
    pub id: String,
    /// What to do: for REAPI an `Action` or the `Digest` of one.
    #[prost(message, optional, tag = "8")]
    pub payload: Option<pb::Any>,
    /// The outcome: for REAPI an `ActionResult`.
    #[prost(message, optional, tag = "9")]
    pub result: Option<pb::Any>,
    #[prost(enumeration = "LeaseState", tag = "2")]
    pub state: i32,
    #[prost(message, optional, tag = "3")]
    pub status: Option<rpc::Status>,
    #[prost(message, optional, tag = "4")]
    pub requirements: Option<Worker>,
    #[prost(message, optional, tag = "5")]
    pub expire_time: Option<pb::Timestamp>,
}

/// What a worker offers. BuildGrid matches platform properties against the properties of
/// the first device only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Worker {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<Device>,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
    #[prost(message, repeated, tag = "3")]
    pub configs: Vec<Property>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    #[prost(string, tag = "1")]
    pub handle: String,
    #[prost(message, repeated, tag = "2")]
    pub properties: Vec<Property>,
}

/// `Worker.Property`, `Worker.Config` and `Device.Property`: the same key/value wire shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Property {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BotStatus {
    Unspecified = 0,
    Ok = 1,
    Unhealthy = 2,
    HostRebooting = 3,
    /// The worker is going away: the server hands it no more work.
    BotTerminating = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LeaseState {
    Unspecified = 0,
    Pending = 1,
    Active = 2,
    Completed = 4,
    /// Set by the server only; a worker reporting it is an error.
    Cancelled = 5,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateBotSessionRequest {
    /// The instance name.
    #[prost(string, tag = "1")]
    pub parent: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
}

/// Field 3 (`update_mask`) is left out: BuildGrid ignores it and an absent field means
/// "the whole session".
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateBotSessionRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub bot_session: Option<BotSession>,
}

/// The two calls a worker makes, over the connection's channel.
#[derive(Clone)]
pub struct BotsClient {
    inner: Grpc<Channel>,
}

const SERVICE: &str = "google.devtools.remoteworkers.v1test2.Bots";

impl BotsClient {
    pub fn new(channel: Channel) -> Self {
        BotsClient {
            inner: Grpc::new(channel).max_decoding_message_size(64 << 20),
        }
    }

    /// Registers the worker. The server may hold the call until it has work (a long poll
    /// bounded by the deadline), so `timeout` is also how long it may wait.
    pub async fn create(
        &mut self,
        request: tonic::Request<CreateBotSessionRequest>,
    ) -> Result<BotSession, tonic::Status> {
        self.unary("CreateBotSession", request).await
    }

    /// Reports the leases' states and gets new ones; a long poll like `create`.
    pub async fn update(
        &mut self,
        request: tonic::Request<UpdateBotSessionRequest>,
    ) -> Result<BotSession, tonic::Status> {
        self.unary("UpdateBotSession", request).await
    }

    async fn unary<M: prost::Message + Send + Sync + 'static>(
        &mut self,
        method: &'static str,
        mut request: tonic::Request<M>,
    ) -> Result<BotSession, tonic::Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("the channel is not ready: {e}")))?;
        let path = PathAndQuery::try_from(format!("/{SERVICE}/{method}"))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new(SERVICE, method));
        let codec = tonic_prost::ProstCodec::<M, BotSession>::default();
        Ok(self.inner.unary(request, path, codec).await?.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes written by BuildGrid 0.4.4's own `bots_pb2` (Python): a session with a lease, a
    /// device property, a capacity config and a version.
    #[test]
    fn a_session_from_buildgrid_decodes() {
        let session = BotSession {
            name: "/abc".into(),
            bot_id: "w1".into(),
            status: BotStatus::Ok as i32,
            worker: Some(Worker {
                devices: vec![Device {
                    handle: "w1".into(),
                    properties: vec![Property {
                        key: "pool".into(),
                        value: "a".into(),
                    }],
                }],
                properties: Vec::new(),
                configs: vec![Property {
                    key: "capacity".into(),
                    value: "2".into(),
                }],
            }),
            leases: vec![Lease {
                id: "job".into(),
                state: LeaseState::Active as i32,
                ..Default::default()
            }],
            version: "3".into(),
            ..Default::default()
        };
        // The same session as BuildGrid's Python encodes it.
        let python: &[u8] = b"\n\x04/abc\x12\x02w1\x18\x01\" \n\x0f\n\x02w1\x12\t\n\x04pool\x12\x01a\x1a\r\n\x08capacity\x12\x012*\x07\x10\x02:\x03job:\x013";
        assert_eq!(BotSession::decode(python).unwrap(), session);
        assert_eq!(session.encode_to_vec(), python);
    }
}
