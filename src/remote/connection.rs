//! One gRPC channel to a REAPI server: TLS, the configured headers, per-call deadlines and
//! retries of the failures that are worth retrying.

use super::proto::re;
use crate::config::Remote;
use std::future::Future;
use std::time::Duration;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// Messages up to this size are accepted from the server (a batch read may be several MiB).
const MAX_MESSAGE: usize = 64 << 20;
/// Batches are kept under this many bytes even when the server allows more.
const MAX_BATCH: usize = 4 << 20;

/// A failed remote call, with what preflight was doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct RemoteError {
    pub what: String,
    pub detail: String,
    /// The gRPC code, when the server (or the channel) answered with one.
    pub code: Option<Code>,
    /// The local failure behind it (a file that cannot be read, a task that panicked).
    #[source]
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RemoteError {
    pub fn new(what: impl Into<String>, detail: impl Into<String>) -> Self {
        RemoteError {
            what: what.into(),
            detail: detail.into(),
            code: None,
            cause: None,
        }
    }

    /// A failure caused by a local error, which is kept as the source.
    pub fn caused(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        RemoteError {
            what: what.into(),
            detail: cause.to_string(),
            code: None,
            cause: Some(Box::new(cause)),
        }
    }

    pub fn status(what: impl Into<String>, status: &Status) -> Self {
        let message = status.message().trim();
        RemoteError {
            what: what.into(),
            detail: if message.is_empty() {
                format!("{:?}", status.code())
            } else {
                format!("{:?}: {message}", status.code())
            },
            code: Some(status.code()),
            cause: None,
        }
    }
}

pub type RemoteResult<T> = std::result::Result<T, RemoteError>;

/// What a server said it can do.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// The largest batch request, in bytes.
    pub max_batch: usize,
    pub execution: bool,
}

#[derive(Clone)]
pub struct Connection {
    channel: Channel,
    pub instance: String,
    headers: MetadataMap,
    timeout: Duration,
    retries: u32,
    pub capabilities: Capabilities,
    pub endpoint: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Whether a failure may go away when the call is made again.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted | Code::Unknown
    )
}

impl Capabilities {
    /// The bytes of blobs one batch may carry, leaving room for the request's own framing.
    pub fn batch_budget(&self) -> usize {
        self.max_batch.saturating_sub(64 << 10).max(1 << 16)
    }
}

impl Connection {
    /// Connects and asks the server what it supports: a server that is down or is no REAPI
    /// server fails here, once, rather than at every step.
    pub async fn open(remote: &Remote) -> RemoteResult<Connection> {
        let what = format!("cannot reach the remote at {}", remote.endpoint);
        let (scheme, rest) = remote
            .endpoint
            .split_once("://")
            .ok_or_else(|| RemoteError::new(&what, "the endpoint has no grpc:// or grpcs://"))?;
        let uri = match scheme {
            "grpc" | "http" => format!("http://{rest}"),
            "grpcs" | "https" => format!("https://{rest}"),
            other => {
                return Err(RemoteError::new(
                    &what,
                    format!("unknown scheme `{other}`: use grpc:// or grpcs://"),
                ));
            }
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| RemoteError::caused(&what, e))?
            .connect_timeout(remote.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if scheme.ends_with('s') {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &remote.ca_cert {
                let pem = std::fs::read(ca).map_err(|e| {
                    RemoteError::new(&what, format!("cannot read ca_cert {}: {e}", ca.display()))
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| RemoteError::caused(&what, e))?;
        }
        let mut headers = MetadataMap::new();
        for (name, variable) in &remote.headers {
            let value = std::env::var(variable).map_err(|_| {
                RemoteError::new(
                    &what,
                    format!("header `{name}` takes its value from ${variable}, which is not set"),
                )
            })?;
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| RemoteError::new(&what, format!("`{name}` is no header name")))?;
            let value = MetadataValue::try_from(value.as_str()).map_err(|_| {
                RemoteError::new(&what, format!("${variable} is no valid header value"))
            })?;
            headers.insert(key, value);
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| RemoteError::new(&what, error_chain(&e)))?;
        let mut connection = Connection {
            channel,
            instance: remote.instance_name.clone(),
            headers,
            timeout: remote.timeout,
            retries: remote.retries,
            capabilities: Capabilities {
                max_batch: MAX_BATCH,
                execution: false,
            },
            endpoint: remote.endpoint.clone(),
        };
        let instance = connection.instance.clone();
        // The first call proves the server is alive: it gets the connect deadline, so that
        // a server that accepts connections but never answers costs seconds, not minutes.
        let caps = connection
            .call("cannot ask the remote what it supports", || {
                let mut client = connection.capabilities_client();
                let request = connection.request_with_timeout(
                    re::GetCapabilitiesRequest {
                        instance_name: instance.clone(),
                    },
                    remote.connect_timeout,
                );
                async move { client.get_capabilities(request).await }
            })
            .await?;
        let sha256 = re::digest_function::Value::Sha256 as i32;
        if let Some(cache) = &caps.cache_capabilities {
            if !cache.digest_functions.is_empty() && !cache.digest_functions.contains(&sha256) {
                return Err(RemoteError::new(
                    &what,
                    "the server does not accept SHA-256 digests",
                ));
            }
            if cache.max_batch_total_size_bytes > 0 {
                connection.capabilities.max_batch =
                    (cache.max_batch_total_size_bytes as usize).min(MAX_BATCH);
            }
        }
        connection.capabilities.execution = caps
            .execution_capabilities
            .as_ref()
            .is_some_and(|e| e.exec_enabled);
        Ok(connection)
    }

    /// A request carrying the configured headers and deadline.
    pub fn request<T>(&self, message: T) -> Request<T> {
        self.request_with_timeout(message, self.timeout)
    }

    pub fn request_with_timeout<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.headers.clone();
        request.set_timeout(timeout);
        request
    }

    /// A deadline for a ByteStream transfer of `size` bytes: the call's own, plus a second
    /// per MiB (a transfer slower than 1 MiB/s is taken for a stalled one).
    pub fn stream_timeout(&self, size: i64) -> Duration {
        self.timeout + Duration::from_secs(size.max(0) as u64 >> 20)
    }

    /// Makes a call, again after a short pause when it failed in a way that may pass.
    pub async fn call<T, F, Fut>(&self, what: &str, mut make: F) -> RemoteResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let mut attempt = 0;
        loop {
            match make().await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if transient(status.code()) && attempt < self.retries => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                }
                Err(status) => return Err(RemoteError::status(what, &status)),
            }
        }
    }

    pub fn cas_client(
        &self,
    ) -> re::content_addressable_storage_client::ContentAddressableStorageClient<Channel> {
        re::content_addressable_storage_client::ContentAddressableStorageClient::new(
            self.channel.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn action_cache_client(&self) -> re::action_cache_client::ActionCacheClient<Channel> {
        re::action_cache_client::ActionCacheClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn execution_client(&self) -> re::execution_client::ExecutionClient<Channel> {
        re::execution_client::ExecutionClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn capabilities_client(&self) -> re::capabilities_client::CapabilitiesClient<Channel> {
        re::capabilities_client::CapabilitiesClient::new(self.channel.clone())
    }

    pub fn bytestream_client(
        &self,
    ) -> super::proto::bytestream::byte_stream_client::ByteStreamClient<Channel> {
        super::proto::bytestream::byte_stream_client::ByteStreamClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// The raw channel, for services the REAPI crate does not cover (the Bots API).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A resource name under the instance: `[instance/]rest`.
    pub fn resource(&self, rest: &str) -> String {
        if self.instance.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.instance)
        }
    }
}

/// An error and its causes on one line (tonic's transport errors hide the useful part).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_cause_is_kept_as_the_source() {
        let e = RemoteError::caused(
            "cannot read x",
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(
            e.to_string()
                .starts_with("cannot read x: Permission denied"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()));
        assert!(
            e.code.is_none(),
            "a local failure says nothing about the server"
        );
    }
}
