//! Writing a file so that a reader (git running a hook, a crash, another preflight) sees the
//! old content or the new one, never a part: a temp file beside it, then a rename.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How the file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Permission bits to give the file (for example 0o755 for a hook).
    pub mode: Option<u32>,
    /// Sync the file and its folder before returning: it survives a power cut or `kill -9`.
    pub durable: bool,
}

/// Replaces `path` with `bytes` in one step, creating its folder when needed.
pub fn write(path: &Path, bytes: &[u8], options: Options) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    if let Some(mode) = options.mode {
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    if options.durable {
        file.as_file().sync_all()?;
    }
    file.persist(path).map_err(|e| e.error)?;
    if options.durable
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/hook");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "old").unwrap();
        write(
            &path,
            b"new",
            Options {
                mode: Some(0o755),
                durable: true,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
