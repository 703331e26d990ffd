//! The `url` backend: a download checked against the SHA-256 written in `[tools]`, either
//! the program itself or a tar.gz, tar.xz or zip archive holding it at `path`. Only that
//! one file is taken out of an archive.

use super::fetch;
use super::lockfile::{Artifact, LockedTool};
use crate::config::{ArchiveFormat, ToolSource, ToolSpec};
use crate::error::{Error, Result};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The lock entry of a url tool: nothing to ask a registry, the configuration holds the hash.
pub fn resolve(spec: &ToolSpec) -> Result<LockedTool> {
    let ToolSource::Url {
        url, sha256, bin, ..
    } = &spec.source
    else {
        return Err(Error::Usage(format!(
            "tool `{}` is not a url tool",
            spec.name
        )));
    };
    Ok(LockedTool {
        name: spec.name.clone(),
        spec: spec.canonical(),
        backend: "url".into(),
        package: bin.clone(),
        version: sha256[..12.min(sha256.len())].to_string(),
        artifacts: vec![Artifact {
            package: bin.clone(),
            version: sha256[..12.min(sha256.len())].to_string(),
            path: None,
            file: Some(url.clone()),
            hash: format!("sha256:{sha256}"),
            meta: None,
        }],
        unpack: Some(unpack_of(spec)),
    })
}

/// What a url tool takes out of its download, as the lock and the tool's identity hold it.
pub fn unpack_of(spec: &ToolSpec) -> String {
    match &spec.source {
        ToolSource::Url { path, format, .. } => format!(
            "path={} format={}",
            path.as_deref().unwrap_or(""),
            format.name()
        ),
        _ => String::new(),
    }
}

/// Downloads, checks and unpacks the program into `temp/files`.
pub fn install(
    spec: &ToolSpec,
    locked: &LockedTool,
    temp: &Path,
) -> Result<Vec<(String, PathBuf)>> {
    let name = &spec.name;
    let ToolSource::Url {
        url,
        bin,
        path,
        format,
        ..
    } = &spec.source
    else {
        return Err(Error::Usage(format!("tool `{name}` is not a url tool")));
    };
    let want = locked
        .artifacts
        .first()
        .and_then(|a| a.hash.strip_prefix("sha256:"))
        .ok_or_else(|| {
            Error::Usage(format!("tool `{name}`: the lock has no sha256 for it"))
                .hint("run `preflight tools lock`")
        })?;
    let download = temp.join("download");
    let got = fetch::download(name, url, &download)?.ok_or_else(|| {
        Error::Usage(format!("tool `{name}`: {url} does not exist (HTTP 404)"))
            .hint("check the address in [tools]")
    })?;
    if !got.eq_ignore_ascii_case(want) {
        return Err(Error::Setup(format!(
            "tool `{name}`: the download does not match its sha256; refused\n  \
             expected {want}\n  got      {got}\n  from     {url}"
        ))
        .hint("if the file changed on purpose, put its new sha256 in [tools] (`sha256sum FILE`)"));
    }
    let files = temp.join("files");
    std::fs::create_dir_all(&files)
        .map_err(|e| Error::io(format!("tool `{name}`: cannot unpack it"), e))?;
    let program = files.join(bin);
    let wrote = match (format, path) {
        (ArchiveFormat::Binary, _) | (_, None) => {
            std::fs::rename(&download, &program).map(|_| true)
        }
        (ArchiveFormat::TarGz, Some(inner)) => std::fs::File::open(&download).and_then(|f| {
            extract_tar(
                flate2::read::GzDecoder::new(std::io::BufReader::new(f)),
                inner,
                &program,
            )
        }),
        (ArchiveFormat::TarXz, Some(inner)) => std::fs::File::open(&download).and_then(|f| {
            let mut decompressed = Vec::new();
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(f), &mut decompressed)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            extract_tar(std::io::Cursor::new(decompressed), inner, &program)
        }),
        (ArchiveFormat::Zip, Some(inner)) => extract_zip(&download, inner, &program),
    }
    .map_err(|e| {
        let kind = e.kind();
        let error = Error::io(format!("tool `{name}`: cannot unpack {url}"), e);
        if kind == std::io::ErrorKind::InvalidData {
            error.hint(format!(
                "is it really a {} archive? set `format` in [tools]",
                format.name()
            ))
        } else {
            error
        }
    })?;
    if !wrote {
        return Err(Error::Usage(format!(
            "tool `{name}`: the archive has no file `{}`",
            path.as_deref().unwrap_or("")
        ))
        .hint(
            "set `path` to the program's path inside the archive (`tar tf`, `unzip -l` list them)",
        ));
    }
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("tool `{name}`: cannot make it executable"), e))?;
    Ok(vec![(bin.clone(), PathBuf::from("files").join(bin))])
}

/// `a/./b` and `./a/b` are `a/b`.
fn normal(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Copies the regular file at `inner` of a tar stream to `dest`; `false` when it is not there.
fn extract_tar(reader: impl Read, inner: &str, dest: &Path) -> std::io::Result<bool> {
    let wanted = normal(inner);
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if normal(&path) != wanted || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut out = std::fs::File::create(dest)?;
        std::io::copy(&mut entry, &mut out)?;
        out.sync_all()?;
        return Ok(true);
    }
    Ok(false)
}

fn extract_zip(archive: &Path, inner: &str, dest: &Path) -> std::io::Result<bool> {
    let wanted = normal(inner);
    let file = std::fs::File::open(archive)?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let matches = entry.name().is_ok_and(|n| normal(&n) == wanted);
        if !entry.is_file() || !matches {
            continue;
        }
        let mut out = std::fs::File::create(dest)?;
        std::io::copy(&mut entry, &mut out)?;
        out.sync_all()?;
        return Ok(true);
    }
    Ok(false)
}
