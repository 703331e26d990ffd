//! The REAPI messages preflight uses, and digests of them.

pub use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
pub use bazel_remote_apis::google::bytestream;
pub use bazel_remote_apis::google::longrunning;
pub use bazel_remote_apis::google::protobuf as pb;
pub use bazel_remote_apis::google::rpc;

use crate::cache::inputs::hex;
use crate::cache::store;
use prost::Message;
use sha2::{Digest as _, Sha256};

/// The REAPI digest (SHA-256 and size) of some bytes.
pub fn digest_of(bytes: &[u8]) -> re::Digest {
    re::Digest {
        hash: hex(&Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

/// A message's wire bytes and their digest: how a message is stored in a CAS.
pub fn encode<M: Message>(message: &M) -> (re::Digest, Vec<u8>) {
    let bytes = message.encode_to_vec();
    (digest_of(&bytes), bytes)
}

/// Packs a message into an `Any` under its REAPI type name.
pub fn pack<M: Message>(type_name: &str, message: &M) -> pb::Any {
    pb::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

/// Whether an `Any` holds the named type.
pub fn holds(any: &pb::Any, type_name: &str) -> bool {
    any.type_url.rsplit('/').next() == Some(type_name)
}

pub fn to_store(d: &re::Digest) -> store::Digest {
    store::Digest {
        hash: d.hash.clone(),
        size_bytes: d.size_bytes.max(0) as u64,
    }
}

pub fn from_store(d: &store::Digest) -> re::Digest {
    re::Digest {
        hash: d.hash.clone(),
        size_bytes: d.size_bytes as i64,
    }
}

/// A digest as the server gave it: a 64-digit lowercase hex hash and a size that is not
/// negative. Anything else would be a path outside the store.
pub fn well_formed(d: &re::Digest) -> bool {
    d.size_bytes >= 0
        && d.hash.len() == 64
        && d.hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A `google.protobuf.Timestamp` for a time.
pub fn timestamp(t: std::time::SystemTime) -> pb::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    pb::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_blob_has_the_well_known_digest() {
        let d = digest_of(b"");
        assert_eq!(
            d.hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(well_formed(&d));
        assert!(!well_formed(&re::Digest {
            hash: "../x".into(),
            size_bytes: 1
        }));
    }
}
