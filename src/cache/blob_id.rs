//! Git blob ids: the SHA-1 of `blob <len>\0<content>`, computed as git does, so that a file's
//! digest can come from git's index without reading the file. Also the hexadecimal form
//! every digest is written in.

use sha1::{Digest, Sha1};
use std::cell::RefCell;
use std::io::Read;

/// The git blob id of some bytes.
pub fn git_blob_id(content: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    h.finalize().into()
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 256 * 1024]);
}

/// The git blob id of an open file, read once in large blocks. The header needs the length
/// first: if the file grows or shrinks while it is read, it is read again.
pub(super) fn hash_file(
    mut file: std::fs::File,
    len_hint: u64,
) -> std::io::Result<([u8; 20], u64)> {
    use std::io::Seek;
    BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut expected = len_hint;
        for attempt in 0..3 {
            if attempt > 0 {
                file.seek(std::io::SeekFrom::Start(0))?;
            }
            let mut h = Sha1::new();
            h.update(format!("blob {expected}\0").as_bytes());
            let mut total = 0u64;
            loop {
                let n = match file.read(&mut buf[..]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                h.update(&buf[..n]);
                total += n as u64;
                // A short read that reaches the size fstat gave is the end of a regular file:
                // no need for one more read to see it.
                if total == expected && n < buf.len() {
                    break;
                }
            }
            if total == expected {
                return Ok((h.finalize().into(), total));
            }
            expected = total;
        }
        Err(std::io::Error::other(
            "the file kept changing while it was read",
        ))
    })
}

/// Lower-case hexadecimal, as git and REAPI write digests.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            hex(&git_blob_id(b"hello\n")),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            hex(&git_blob_id(b"")),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }
}
