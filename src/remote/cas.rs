//! The content-addressable storage: which blobs the server lacks, batched and streamed
//! uploads, and downloads whose every byte is checked against its digest.

use super::connection::{Connection, RemoteError, RemoteResult};
use super::proto::{bytestream, digest_of, re};
use prost::Message;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The size of each message of a ByteStream transfer. (Blobs of half a batch or more go
/// through ByteStream rather than in a batch.)
const STREAM_CHUNK: usize = 1 << 20;
/// What each entry of a batch adds to its blob's bytes: its digest and framing.
const ENTRY_OVERHEAD: usize = 128;
/// Digests per FindMissingBlobs call.
const FIND_CHUNK: usize = 5_000;
/// Batches or streams in flight at once.
const PARALLEL: usize = 8;

/// Where the bytes of a blob to upload come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Arc<Vec<u8>>),
    /// A file, read when it is uploaded (and checked against its digest then).
    File(PathBuf),
}

/// Blobs to upload, each once.
#[derive(Debug, Default, Clone)]
pub struct Blobs {
    by_hash: HashMap<String, (re::Digest, Source)>,
}

impl Blobs {
    pub fn add_bytes(&mut self, bytes: Vec<u8>) -> re::Digest {
        let digest = digest_of(&bytes);
        self.by_hash
            .entry(digest.hash.clone())
            .or_insert_with(|| (digest.clone(), Source::Bytes(Arc::new(bytes))));
        digest
    }

    pub fn add_message<M: Message>(&mut self, message: &M) -> re::Digest {
        self.add_bytes(message.encode_to_vec())
    }

    pub fn add_file(&mut self, digest: re::Digest, path: PathBuf) {
        self.by_hash
            .entry(digest.hash.clone())
            .or_insert((digest, Source::File(path)));
    }

    pub fn extend(&mut self, other: Blobs) {
        for (hash, blob) in other.by_hash {
            self.by_hash.entry(hash).or_insert(blob);
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn digests(&self) -> Vec<re::Digest> {
        self.by_hash.values().map(|(d, _)| d.clone()).collect()
    }
}

/// A downloaded blob: its hash and bytes.
type Downloaded = (String, Vec<u8>);

/// What an upload did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Uploaded {
    pub blobs: usize,
    pub missing: usize,
    pub bytes_sent: u64,
}

/// Reads a source whole and checks it still has its digest (a file may have changed since
/// it was hashed: sending it would store wrong bytes under that digest).
fn read_source(digest: &re::Digest, source: &Source) -> RemoteResult<Arc<Vec<u8>>> {
    match source {
        Source::Bytes(b) => Ok(Arc::clone(b)),
        Source::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| RemoteError::caused(format!("cannot read {}", path.display()), e))?;
            if digest_of(&bytes) != *digest {
                return Err(RemoteError::new(
                    format!("cannot upload {}", path.display()),
                    "the file changed while the step was being prepared",
                ));
            }
            Ok(Arc::new(bytes))
        }
    }
}

impl Connection {
    /// The digests the server does not have.
    pub async fn find_missing(&self, digests: Vec<re::Digest>) -> RemoteResult<Vec<re::Digest>> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(FIND_CHUNK) {
            let found = self
                .call("cannot ask the remote cache which blobs it lacks", || {
                    let mut client = self.cas_client();
                    let request = self.request(re::FindMissingBlobsRequest {
                        instance_name: self.instance.clone(),
                        blob_digests: chunk.to_vec(),
                        ..Default::default()
                    });
                    async move { client.find_missing_blobs(request).await }
                })
                .await?;
            missing.extend(found.missing_blob_digests);
        }
        Ok(missing)
    }

    /// Uploads the blobs the server lacks: small ones in batches, big ones streamed.
    pub async fn upload(&self, blobs: &Blobs) -> RemoteResult<Uploaded> {
        let missing = self.find_missing(blobs.digests()).await?;
        let mut report = Uploaded {
            blobs: blobs.len(),
            missing: missing.len(),
            bytes_sent: 0,
        };
        let limit = Arc::new(Semaphore::new(PARALLEL));
        let mut tasks = JoinSet::new();
        let mut batch: Vec<(re::Digest, Source)> = Vec::new();
        let mut batch_bytes = 0usize;
        // Room for the digests and framing of each request inside the batch.
        let budget = self.capabilities.batch_budget();
        let flush = |batch: &mut Vec<(re::Digest, Source)>, tasks: &mut JoinSet<_>| {
            if batch.is_empty() {
                return;
            }
            let blobs = std::mem::take(batch);
            let connection = self.clone();
            let limit = Arc::clone(&limit);
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                connection.batch_update(blobs).await
            });
        };
        for digest in missing {
            let Some((_, source)) = blobs.by_hash.get(&digest.hash) else {
                continue;
            };
            let size = digest.size_bytes as usize;
            report.bytes_sent += size as u64;
            if size >= budget / 2 {
                let connection = self.clone();
                let limit = Arc::clone(&limit);
                let source = source.clone();
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    connection.write_stream(digest, source).await
                });
                continue;
            }
            if batch_bytes + size + ENTRY_OVERHEAD > budget {
                flush(&mut batch, &mut tasks);
                batch_bytes = 0;
            }
            batch_bytes += size + ENTRY_OVERHEAD;
            batch.push((digest, source.clone()));
        }
        flush(&mut batch, &mut tasks);
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| RemoteError::caused("an upload task failed", e))??;
        }
        Ok(report)
    }

    async fn batch_update(&self, blobs: Vec<(re::Digest, Source)>) -> RemoteResult<()> {
        let requests = tokio::task::spawn_blocking(move || {
            blobs
                .iter()
                .map(|(digest, source)| {
                    read_source(digest, source).map(|data| {
                        re::batch_update_blobs_request::Request {
                            digest: Some(digest.clone()),
                            data: data.to_vec(),
                            ..Default::default()
                        }
                    })
                })
                .collect::<RemoteResult<Vec<_>>>()
        })
        .await
        .map_err(|e| RemoteError::caused("cannot read the blobs to upload", e))??;
        let response = self
            .call("cannot upload to the remote cache", || {
                let mut client = self.cas_client();
                let request = self.request(re::BatchUpdateBlobsRequest {
                    instance_name: self.instance.clone(),
                    requests: requests.clone(),
                    ..Default::default()
                });
                async move { client.batch_update_blobs(request).await }
            })
            .await?;
        for answer in response.responses {
            if let Some(status) = answer.status.filter(|s| s.code != 0) {
                return Err(RemoteError::new(
                    "the remote cache refused a blob",
                    format!(
                        "{}: {}",
                        answer.digest.map(|d| d.hash).unwrap_or_default(),
                        status.message
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Streams one blob with ByteStream.Write, reading a file chunk by chunk.
    async fn write_stream(&self, digest: re::Digest, source: Source) -> RemoteResult<()> {
        let what = format!("cannot upload a {} byte blob", digest.size_bytes);
        let resource = self.resource(&format!(
            "uploads/{}/blobs/{}/{}",
            uuid::Uuid::new_v4(),
            digest.hash,
            digest.size_bytes
        ));
        let (tx, rx) = tokio::sync::mpsc::channel::<bytestream::WriteRequest>(4);
        let expected = digest.clone();
        let reader = tokio::task::spawn_blocking(move || -> RemoteResult<()> {
            let mut stream: Box<dyn Read> = match &source {
                Source::Bytes(b) => Box::new(std::io::Cursor::new(b.to_vec())),
                Source::File(path) => Box::new(std::fs::File::open(path).map_err(|e| {
                    RemoteError::caused(format!("cannot read {}", path.display()), e)
                })?),
            };
            let mut hasher = Sha256::new();
            let mut offset = 0i64;
            let mut first = true;
            loop {
                let mut chunk = vec![0u8; STREAM_CHUNK];
                let n = read_full(&mut stream, &mut chunk)
                    .map_err(|e| RemoteError::caused("cannot read a blob to upload", e))?;
                chunk.truncate(n);
                hasher.update(&chunk);
                let last = offset + n as i64 >= expected.size_bytes || n == 0;
                if last && crate::cache::inputs::hex(&hasher.clone().finalize()) != expected.hash {
                    return Err(RemoteError::new(
                        "cannot upload a blob",
                        "its file changed while the step was being prepared",
                    ));
                }
                let request = bytestream::WriteRequest {
                    resource_name: if first {
                        resource.clone()
                    } else {
                        String::new()
                    },
                    write_offset: offset,
                    finish_write: last,
                    data: chunk,
                };
                first = false;
                offset += n as i64;
                if tx.blocking_send(request).is_err() || last {
                    return Ok(());
                }
            }
        });
        let mut client = self.bytestream_client();
        let request = self.request_with_timeout(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            self.stream_timeout(digest.size_bytes),
        );
        let sent = client.write(request).await;
        reader.await.map_err(|e| RemoteError::caused(&what, e))??;
        let response = sent
            .map_err(|s| RemoteError::status(&what, &s))?
            .into_inner();
        if response.committed_size != digest.size_bytes && response.committed_size != -1 {
            return Err(RemoteError::new(
                &what,
                format!("the server kept {} bytes", response.committed_size),
            ));
        }
        Ok(())
    }

    /// Downloads blobs into memory, each checked against its digest.
    pub async fn read_blobs(
        &self,
        digests: Vec<re::Digest>,
    ) -> RemoteResult<HashMap<String, Arc<Vec<u8>>>> {
        let mut unique: HashMap<String, re::Digest> = HashMap::new();
        for d in digests {
            unique.entry(d.hash.clone()).or_insert(d);
        }
        let budget = self.capabilities.batch_budget();
        let limit = Arc::new(Semaphore::new(PARALLEL));
        let mut tasks: JoinSet<RemoteResult<Vec<Downloaded>>> = JoinSet::new();
        let mut batch: Vec<re::Digest> = Vec::new();
        let mut batch_bytes = 0usize;
        let spawn_batch = |batch: Vec<re::Digest>, tasks: &mut JoinSet<_>| {
            let connection = self.clone();
            let limit = Arc::clone(&limit);
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                connection.batch_read(batch).await
            });
        };
        for digest in unique.into_values() {
            let size = digest.size_bytes as usize;
            if size == 0 {
                verify(&digest, &[])?;
                tasks.spawn(async move { Ok(vec![(digest.hash, Vec::new())]) });
                continue;
            }
            if size >= budget / 2 {
                let connection = self.clone();
                let limit = Arc::clone(&limit);
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    // The size is the server's word: grow as bytes arrive, not before.
                    let mut bytes = Vec::with_capacity(size.min(STREAM_CHUNK));
                    connection.read_stream(&digest, &mut bytes).await?;
                    Ok(vec![(digest.hash, bytes)])
                });
                continue;
            }
            if batch_bytes + size + ENTRY_OVERHEAD > budget {
                spawn_batch(std::mem::take(&mut batch), &mut tasks);
                batch_bytes = 0;
            }
            batch_bytes += size + ENTRY_OVERHEAD;
            batch.push(digest);
        }
        if !batch.is_empty() {
            spawn_batch(batch, &mut tasks);
        }
        let mut found = HashMap::new();
        while let Some(done) = tasks.join_next().await {
            let blobs = done.map_err(|e| RemoteError::caused("a download task failed", e))??;
            for (hash, bytes) in blobs {
                found.insert(hash, Arc::new(bytes));
            }
        }
        Ok(found)
    }

    async fn batch_read(&self, digests: Vec<re::Digest>) -> RemoteResult<Vec<Downloaded>> {
        let response = self
            .call("cannot download from the remote cache", || {
                let mut client = self.cas_client();
                let request = self.request(re::BatchReadBlobsRequest {
                    instance_name: self.instance.clone(),
                    digests: digests.clone(),
                    ..Default::default()
                });
                async move { client.batch_read_blobs(request).await }
            })
            .await?;
        // Every blob asked for comes back once, and nothing else.
        let mut asked: HashMap<&str, &re::Digest> =
            digests.iter().map(|d| (d.hash.as_str(), d)).collect();
        let mut blobs = Vec::with_capacity(digests.len());
        for answer in response.responses {
            let digest = answer.digest.unwrap_or_default();
            let Some(wanted) = asked.remove(digest.hash.as_str()) else {
                return Err(RemoteError::new(
                    "cannot download from the remote cache",
                    format!(
                        "the server sent blob {}, which was not asked for",
                        digest.hash
                    ),
                ));
            };
            let digest = wanted.clone();
            if let Some(status) = answer.status.filter(|s| s.code != 0) {
                return Err(RemoteError::new(
                    format!("the remote cache has no blob {}", digest.hash),
                    status.message,
                ));
            }
            verify(&digest, &answer.data)?;
            blobs.push((digest.hash, answer.data));
        }
        if !asked.is_empty() {
            return Err(RemoteError::new(
                "cannot download from the remote cache",
                "the server left some blobs out of its answer",
            ));
        }
        Ok(blobs)
    }

    /// Streams one blob with ByteStream.Read into `out`, checking its digest at the end.
    pub async fn read_stream(
        &self,
        digest: &re::Digest,
        out: &mut (dyn Write + Send),
    ) -> RemoteResult<()> {
        let what = format!("cannot download blob {}", digest.hash);
        let resource = self.resource(&format!("blobs/{}/{}", digest.hash, digest.size_bytes));
        let mut client = self.bytestream_client();
        let mut stream = client
            .read(self.request_with_timeout(
                bytestream::ReadRequest {
                    resource_name: resource,
                    read_offset: 0,
                    read_limit: 0,
                },
                self.stream_timeout(digest.size_bytes),
            ))
            .await
            .map_err(|s| RemoteError::status(&what, &s))?
            .into_inner();
        let mut hasher = Sha256::new();
        let mut size = 0i64;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| RemoteError::status(&what, &s))?
        {
            hasher.update(&chunk.data);
            size += chunk.data.len() as i64;
            if size > digest.size_bytes {
                break;
            }
            out.write_all(&chunk.data)
                .map_err(|e| RemoteError::caused(&what, e))?;
        }
        if size != digest.size_bytes || crate::cache::inputs::hex(&hasher.finalize()) != digest.hash
        {
            return Err(RemoteError::new(
                &what,
                "its content does not match its digest: the remote cache is damaged",
            ));
        }
        Ok(())
    }

    /// Downloads one blob into a file (created), checked against its digest.
    pub async fn download_file(&self, digest: &re::Digest, path: &Path) -> RemoteResult<()> {
        let what = format!("cannot write {}", path.display());
        let mut file = std::fs::File::create(path).map_err(|e| RemoteError::caused(&what, e))?;
        let budget = self.capabilities.batch_budget();
        if (digest.size_bytes as usize) < budget / 2 {
            let blobs = self.read_blobs(vec![digest.clone()]).await?;
            let bytes = blobs
                .get(&digest.hash)
                .cloned()
                .ok_or_else(|| RemoteError::new(&what, "the server did not send the blob"))?;
            file.write_all(&bytes)
                .map_err(|e| RemoteError::caused(&what, e))?;
            return Ok(());
        }
        let mut out = std::io::BufWriter::new(file);
        self.read_stream(digest, &mut out).await?;
        out.flush().map_err(|e| RemoteError::caused(&what, e))
    }
}

/// Checks downloaded bytes against the digest they were asked for.
pub fn verify(digest: &re::Digest, bytes: &[u8]) -> RemoteResult<()> {
    if digest_of(bytes) == *digest {
        Ok(())
    } else {
        Err(RemoteError::new(
            format!("blob {} from the remote cache", digest.hash),
            "its content does not match its digest: the remote cache is damaged",
        ))
    }
}

/// Reads until the buffer is full or the stream ends.
fn read_full(stream: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
