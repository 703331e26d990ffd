//! What an action made, as REAPI outputs: files, folders as `Tree` messages and symlinks,
//! with the blobs to upload. Paths are relative to the working directory, as asked.

use super::failure::Failure;
use super::sandbox::relative;
use crate::remote::cas::Blobs;
use crate::remote::proto::re;
use crate::remote::tree;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the Command said an output path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `output_paths` (REAPI 2.1): whatever is there.
    Any,
    /// The older `output_files`.
    File,
    /// The older `output_directories`.
    Folder,
}

/// The Command's outputs, checked to be plain relative paths. `output_paths` wins when it
/// is set: the older lists are then ignored, as REAPI says.
pub fn wanted(command: &re::Command) -> Result<Vec<(PathBuf, Kind)>, Failure> {
    #[allow(deprecated)]
    let listed: Vec<(&String, Kind)> = if command.output_paths.is_empty() {
        let files = command.output_files.iter().map(|p| (p, Kind::File));
        let folders = command.output_directories.iter().map(|p| (p, Kind::Folder));
        files.chain(folders).collect()
    } else {
        command
            .output_paths
            .iter()
            .map(|p| (p, Kind::Any))
            .collect()
    };
    listed
        .into_iter()
        .map(|(path, kind)| {
            let rel = relative(path, "output")?;
            if rel.as_os_str().is_empty() {
                return Err(Failure::invalid(format!("output `{path}` names no file")));
            }
            Ok((rel, kind))
        })
        .collect()
}

/// Adds each output that exists under `base` (the working directory) to `result`, and the
/// blobs it needs to `blobs`. A missing output is no error: the client decides.
pub fn collect(
    base: &Path,
    wanted: &[(PathBuf, Kind)],
    result: &mut re::ActionResult,
    blobs: &mut Blobs,
) -> Result<(), Failure> {
    for (rel, kind) in wanted {
        let full = base.join(rel);
        let name = rel.to_string_lossy().into_owned();
        let meta = match full.symlink_metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Failure::output(&name, e.to_string())),
        };
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&full).map_err(|e| Failure::output(&name, e.to_string()))?;
            let link = re::OutputSymlink {
                path: name.clone(),
                target: target
                    .to_str()
                    .ok_or_else(|| Failure::output(&name, "its target is not UTF-8".into()))?
                    .to_string(),
                node_properties: None,
            };
            #[allow(deprecated)]
            match kind {
                Kind::Any => result.output_symlinks.push(link),
                Kind::File => result.output_file_symlinks.push(link),
                Kind::Folder => result.output_directory_symlinks.push(link),
            }
        } else if meta.is_dir() {
            if *kind == Kind::File {
                return Err(Failure::output(&name, "it is a folder, not a file".into()));
            }
            result.output_directories.push(folder(&full, &name, blobs)?);
        } else {
            if *kind == Kind::Folder {
                return Err(Failure::output(&name, "it is a file, not a folder".into()));
            }
            let digest =
                tree::hash_file(&full).map_err(|e| Failure::output(&name, e.to_string()))?;
            blobs.add_file(digest.clone(), full);
            result.output_files.push(re::OutputFile {
                path: name,
                digest: Some(digest),
                is_executable: meta.permissions().mode() & 0o111 != 0,
                ..Default::default()
            });
        }
    }
    Ok(())
}

/// A folder as a `Tree`; its `Directory` messages are uploaded too, so that clients that
/// want the root directory digest (REAPI 2.3) find it.
fn folder(full: &Path, name: &str, blobs: &mut Blobs) -> Result<re::OutputDirectory, Failure> {
    let entries = tree::scan(full).map_err(|e| Failure::output(name, e.to_string()))?;
    let merkle = tree::build(entries).map_err(|e| Failure::output(name, e.to_string()))?;
    let tree_digest = blobs.add_message(&merkle.to_tree());
    let root_digest = merkle.root_digest.clone();
    blobs.extend(merkle.blobs);
    Ok(re::OutputDirectory {
        path: name.to_string(),
        tree_digest: Some(tree_digest),
        is_topologically_sorted: false,
        root_directory_digest: Some(root_digest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn output_paths_win_over_the_older_lists() {
        let command = re::Command {
            output_paths: vec!["out/a.txt".into()],
            output_files: vec!["ignored".into()],
            ..Default::default()
        };
        assert_eq!(
            wanted(&command).unwrap(),
            [(PathBuf::from("out/a.txt"), Kind::Any)]
        );
        let older = re::Command {
            output_files: vec!["f".into()],
            output_directories: vec!["d".into()],
            ..Default::default()
        };
        assert_eq!(
            wanted(&older).unwrap(),
            [
                (PathBuf::from("f"), Kind::File),
                (PathBuf::from("d"), Kind::Folder)
            ]
        );
    }

    #[test]
    fn unsafe_outputs_are_refused() {
        for bad in ["../x", "/tmp/x", "", "."] {
            let command = re::Command {
                output_paths: vec![bad.into()],
                ..Default::default()
            };
            assert!(wanted(&command).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_folders_and_links_are_collected() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("d/e")).unwrap();
        std::fs::write(base.join("d/x.txt"), b"x").unwrap();
        std::fs::write(base.join("f.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(base.join("f.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("f.sh", base.join("l")).unwrap();
        let wanted = [
            (PathBuf::from("d"), Kind::Any),
            (PathBuf::from("f.sh"), Kind::Any),
            (PathBuf::from("l"), Kind::Any),
            (PathBuf::from("missing"), Kind::Any),
        ];
        let mut result = re::ActionResult::default();
        let mut blobs = Blobs::default();
        collect(base, &wanted, &mut result, &mut blobs).unwrap();
        assert_eq!(result.output_files.len(), 1);
        assert!(result.output_files[0].is_executable);
        assert_eq!(result.output_symlinks[0].target, "f.sh");
        let d = &result.output_directories[0];
        assert_eq!(d.path, "d");
        // The tree, its two folders and the file inside, plus f.sh.
        assert_eq!(blobs.len(), 5);
        let err = collect(
            base,
            &[(PathBuf::from("d"), Kind::File)],
            &mut result,
            &mut blobs,
        )
        .unwrap_err();
        assert!(err.message.contains("folder"), "{}", err.message);
    }
}
