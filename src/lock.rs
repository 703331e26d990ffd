//! Advisory whole-file locks (flock(2)): the one place that calls it, for the hook's
//! `unstaged.lock` and the cache store's `lock`.
//!
//! A leaf module: it imports nothing from the crate.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Whether other holders may share the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Any number of shared holders at once (readers).
    Shared,
    /// One holder and no shared ones (a writer).
    Exclusive,
}

/// Locks `file` in `mode`. With `wait` it blocks until the lock is granted; without, it
/// returns `Ok(false)` at once when another holder has a lock that conflicts. A signal that
/// interrupts the wait does not end it. The lock lasts until every descriptor of the open
/// file is closed (dropping the `File` is enough).
pub fn flock(file: &File, mode: Mode, wait: bool) -> io::Result<bool> {
    let mut op = match mode {
        Mode::Shared => libc::LOCK_SH,
        Mode::Exclusive => libc::LOCK_EX,
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on a descriptor `file` owns for the whole call; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> File {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .expect("open the lock file")
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lock");
        let (a, b) = (open(&path), open(&path));
        assert!(flock(&a, Mode::Shared, false).expect("first shared"));
        assert!(flock(&b, Mode::Shared, false).expect("second shared"));
        drop(b);
        let c = open(&path);
        assert!(!flock(&c, Mode::Exclusive, false).expect("exclusive while shared"));
        drop(a);
        assert!(flock(&c, Mode::Exclusive, false).expect("exclusive once free"));
        let d = open(&path);
        assert!(!flock(&d, Mode::Shared, false).expect("shared while exclusive"));
        drop(c);
        assert!(flock(&d, Mode::Shared, true).expect("shared, waiting"));
    }
}
