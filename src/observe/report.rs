//! The file `preflight __observe` leaves for the run that wrapped the step: a header line,
//! then one record per path (a tag byte, the path's bytes, a NUL: paths can hold any byte
//! but NUL), then an end record, so that a cut-off file is told from a short one.

use super::{Observation, ObserveError};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const HEADER: &[u8] = b"preflight-observe 1\n";
const READ: u8 = b'R';
const ABSENT: u8 = b'A';
const WRITTEN: u8 = b'W';
const EXECUTED: u8 = b'X';
const LISTED: u8 = b'L';
const INCOMPLETE: u8 = b'I';
const END: u8 = b'E';

/// Encodes an observation (and why it is incomplete, if it is).
pub fn encode(observation: &Observation, incomplete: Option<&str>) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    let mut record = |tag: u8, bytes: &[u8]| {
        out.push(tag);
        out.extend(bytes.iter().filter(|&&b| b != 0));
        out.push(0);
    };
    if let Some(why) = incomplete {
        record(INCOMPLETE, why.as_bytes());
    }
    for (tag, set) in [
        (READ, &observation.read),
        (ABSENT, &observation.absent),
        (WRITTEN, &observation.written),
        (EXECUTED, &observation.executed),
        (LISTED, &observation.listed),
    ] {
        for path in set {
            record(tag, path.as_os_str().as_bytes());
        }
    }
    record(END, b"");
    out
}

/// Writes an encoded report so that a reader sees all of it or none (a temp file, then a
/// rename).
pub fn write_encoded(path: &Path, encoded: &[u8]) -> std::io::Result<()> {
    crate::atomic::write(path, encoded, crate::atomic::Options::default())
}

/// Reads what a wrapped invocation observed. A missing, cut-off or damaged report is an
/// error, and so is a run the tracer could not fully follow: nothing may be cached then.
pub fn read_report(path: &Path) -> Result<Observation, ObserveError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ObserveError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(ObserveError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    decode(&bytes).map_err(|what| match what {
        Decoded::Incomplete(why) => ObserveError::Incomplete(why),
        Decoded::Corrupt(what) => ObserveError::Corrupt {
            path: path.to_path_buf(),
            what,
        },
    })
}

enum Decoded {
    Corrupt(String),
    Incomplete(String),
}

fn decode(bytes: &[u8]) -> Result<Observation, Decoded> {
    let body = bytes
        .strip_prefix(HEADER)
        .ok_or_else(|| Decoded::Corrupt("it does not start with the expected header".into()))?;
    if !body.ends_with(&[END, 0]) {
        return Err(Decoded::Corrupt("it ends before its end record".into()));
    }
    let mut observation = Observation::default();
    let mut incomplete = None;
    let mut records = body.split(|&b| b == 0);
    loop {
        let Some(record) = records.next() else {
            return Err(Decoded::Corrupt("it ends before its end record".into()));
        };
        let Some((&tag, rest)) = record.split_first() else {
            return Err(Decoded::Corrupt("it holds an empty record".into()));
        };
        let path = || PathBuf::from(std::ffi::OsString::from_vec(rest.to_vec()));
        let set = match tag {
            READ => &mut observation.read,
            ABSENT => &mut observation.absent,
            WRITTEN => &mut observation.written,
            EXECUTED => &mut observation.executed,
            LISTED => &mut observation.listed,
            INCOMPLETE => {
                incomplete = Some(String::from_utf8_lossy(rest).into_owned());
                continue;
            }
            END => break,
            other => {
                return Err(Decoded::Corrupt(format!(
                    "it holds an unknown record {:?}",
                    other as char
                )));
            }
        };
        if !rest.starts_with(b"/") {
            return Err(Decoded::Corrupt(
                "it holds a path that is not absolute".into(),
            ));
        }
        set.insert(path());
    }
    if records.next().is_some_and(|rest| !rest.is_empty()) || records.next().is_some() {
        return Err(Decoded::Corrupt("it goes on after its end record".into()));
    }
    match incomplete {
        Some(why) => Err(Decoded::Incomplete(why)),
        None => Ok(observation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Observation {
        let mut o = Observation::default();
        o.read.insert(PathBuf::from("/repo/.shellcheckrc"));
        o.read.insert(PathBuf::from(std::ffi::OsString::from_vec(
            b"/repo/\xff odd\nname".to_vec(),
        )));
        o.absent.insert(PathBuf::from("/repo/.cfg"));
        o.written.insert(PathBuf::from("/repo/out"));
        o.executed.insert(PathBuf::from("/bin/sh"));
        o.listed.insert(PathBuf::from("/repo/tests"));
        o
    }

    #[test]
    fn a_report_reads_back_as_written() {
        let o = sample();
        assert_eq!(decode(&encode(&o, None)).ok(), Some(o));
        assert_eq!(
            decode(&encode(&Observation::default(), None)).ok(),
            Some(Observation::default())
        );
    }

    #[test]
    fn a_cut_off_or_damaged_report_is_an_error() {
        let bytes = encode(&sample(), None);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"R/x\0");
        assert!(decode(&extra).is_err());
        let relative = [HEADER, b"Rrel\0E\0"].concat();
        assert!(decode(&relative).is_err());
        let relative_listed = [HEADER, b"Lrel\0E\0"].concat();
        assert!(decode(&relative_listed).is_err());
    }

    #[test]
    fn a_report_without_listed_folders_still_reads() {
        let bytes = [HEADER, b"R/repo/a\0E\0"].concat();
        let o = decode(&bytes).ok().expect("a report without L records");
        assert!(o.listed.is_empty());
        assert!(o.read.contains(Path::new("/repo/a")));
    }

    #[test]
    fn an_incomplete_run_is_an_error_that_says_why() {
        let bytes = encode(&sample(), Some("a 32-bit program ran"));
        assert!(
            matches!(decode(&bytes), Err(Decoded::Incomplete(why)) if why == "a 32-bit program ran")
        );
    }

    #[test]
    fn a_missing_report_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_report(&dir.path().join("none")).unwrap_err();
        assert!(matches!(err, ObserveError::Missing { .. }));
    }
}
