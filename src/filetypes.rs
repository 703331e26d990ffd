//! File types, for a step's `types`: what a file is, told by its extension, by a well-known
//! name (`.bashrc`, `Dockerfile`), or else by its first bytes (a `#!` line names the
//! interpreter; a NUL byte means binary). Only files whose name does not decide are read,
//! and then only their head.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The types a step may ask for, by name. Shell dialects also count as `shell`, and every
/// type but `binary` and `executable` also counts as `text`.
pub const TYPE_NAMES: &[&str] = &[
    "text",
    "binary",
    "executable",
    "shell",
    "sh",
    "bash",
    "zsh",
    "ksh",
    "fish",
    "python",
    "perl",
    "ruby",
    "lua",
    "javascript",
    "typescript",
    "json",
    "yaml",
    "toml",
    "markdown",
    "rust",
    "go",
    "c",
    "dockerfile",
    "makefile",
];

/// How many bytes of a file are read to tell its type.
pub const HEAD_BYTES: usize = 1024;

/// A set of types, one bit per entry of `TYPE_NAMES`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Types(u32);

impl Types {
    /// The set named by `names`; the first unknown name is the error.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Types, (usize, String)> {
        let mut set = Types::default();
        for (i, name) in names.iter().enumerate() {
            let name = name.as_ref();
            match TYPE_NAMES.iter().position(|t| *t == name) {
                Some(bit) => set.0 |= 1 << bit,
                None => return Err((i, name.to_string())),
            }
        }
        Ok(set)
    }

    fn of(names: &[&str]) -> Types {
        // Only called with names from the tables below, which a unit test checks.
        Types::parse(names).unwrap_or_default()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the two sets share a type.
    pub fn intersects(self, other: Types) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: Types) -> Types {
        Types(self.0 | other.0)
    }

    fn contains(self, name: &str) -> bool {
        self.intersects(Types::of(&[name]))
    }

    /// The names in the set, in `TYPE_NAMES` order.
    pub fn names(self) -> Vec<&'static str> {
        TYPE_NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Extensions that decide a file's type without reading it.
const BY_EXTENSION: &[(&[&str], &[&str])] = &[
    (&["sh"], &["text", "shell", "sh"]),
    (&["bash", "bats"], &["text", "shell", "bash"]),
    (&["zsh"], &["text", "shell", "zsh"]),
    (&["ksh"], &["text", "shell", "ksh"]),
    (&["fish"], &["text", "fish"]),
    (&["py", "pyi", "pyw"], &["text", "python"]),
    (&["pl", "pm"], &["text", "perl"]),
    (&["rb"], &["text", "ruby"]),
    (&["lua"], &["text", "lua"]),
    (&["js", "mjs", "cjs", "jsx"], &["text", "javascript"]),
    (&["ts", "mts", "cts", "tsx"], &["text", "typescript"]),
    (&["json"], &["text", "json"]),
    (&["yaml", "yml"], &["text", "yaml"]),
    (&["toml"], &["text", "toml"]),
    (&["md", "markdown"], &["text", "markdown"]),
    (&["rs"], &["text", "rust"]),
    (&["go"], &["text", "go"]),
    (&["c", "h"], &["text", "c"]),
    (&["dockerfile"], &["text", "dockerfile"]),
    (&["mk"], &["text", "makefile"]),
    (
        &["txt", "cfg", "ini", "conf", "csv", "html", "css", "xml"],
        &["text"],
    ),
    (
        &[
            "png", "jpg", "jpeg", "gif", "ico", "webp", "pdf", "zip", "gz", "tgz", "xz", "bz2",
            "zst", "tar", "jar", "class", "so", "dylib", "dll", "exe", "o", "a", "wasm", "woff",
            "woff2", "ttf", "otf", "mp3", "mp4", "sqlite",
        ],
        &["binary"],
    ),
];

/// File names that decide a file's type: shells' startup files and build files.
const BY_NAME: &[(&[&str], &[&str])] = &[
    (
        &[
            ".bashrc",
            ".bash_profile",
            ".bash_login",
            ".bash_logout",
            ".bash_aliases",
            "bashrc",
            "bash_profile",
        ],
        &["text", "shell", "bash"],
    ),
    (&[".profile"], &["text", "shell", "sh"]),
    (
        &[
            ".zshrc",
            ".zshenv",
            ".zprofile",
            ".zlogin",
            ".zlogout",
            "zshrc",
        ],
        &["text", "shell", "zsh"],
    ),
    (&[".kshrc"], &["text", "shell", "ksh"]),
    (&["Dockerfile", "Containerfile"], &["text", "dockerfile"]),
    (
        &["Makefile", "makefile", "GNUmakefile"],
        &["text", "makefile"],
    ),
    (&["Cargo.lock", "Pipfile.lock"], &["text", "toml"]),
];

/// Interpreters named by a `#!` line (after `env`, without a version suffix).
const BY_INTERPRETER: &[(&[&str], &[&str])] = &[
    (&["sh", "dash", "ash", "posh"], &["shell", "sh"]),
    (&["bash"], &["shell", "bash"]),
    (&["zsh"], &["shell", "zsh"]),
    (&["ksh", "mksh", "pdksh"], &["shell", "ksh"]),
    (&["fish"], &["fish"]),
    (&["python", "pypy"], &["python"]),
    (&["perl"], &["perl"]),
    (&["ruby"], &["ruby"]),
    (&["lua", "luajit"], &["lua"]),
    (&["node", "nodejs", "deno", "bun"], &["javascript"]),
    (&["ts-node", "tsx"], &["typescript"]),
];

fn lookup(table: &[(&[&str], &[&str])], key: &str) -> Types {
    table
        .iter()
        .find(|(keys, _)| keys.contains(&key))
        .map_or_else(Types::default, |(_, types)| Types::of(types))
}

/// The types a path's name decides, or an empty set when its contents must be read.
pub fn by_name(path: &Path) -> Types {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Types::default();
    };
    let named = lookup(BY_NAME, name);
    if !named.is_empty() {
        return named;
    }
    if name.starts_with("Dockerfile.") {
        return Types::of(&["text", "dockerfile"]);
    }
    // `.bashrc` is a name, not an extension; `a.tar.gz` ends in `gz`.
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => lookup(BY_EXTENSION, &ext.to_ascii_lowercase()),
        _ => Types::default(),
    }
}

/// The types told by a file's first bytes: the interpreter of a `#!` line, text or binary.
pub fn by_head(head: &[u8]) -> Types {
    if head.contains(&0) {
        return Types::of(&["binary"]);
    }
    let text = Types::of(&["text"]);
    match interpreter(head) {
        Some(program) => text.union(lookup(BY_INTERPRETER, &program)),
        None => text,
    }
}

/// The program a `#!` line runs, as its base name without a version (`python3.12` →
/// `python`), looking through `/usr/bin/env` and its options.
fn interpreter(head: &[u8]) -> Option<String> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let mut program = base_name(words.next()?);
    if program == "env" {
        program = words
            .find(|w| !w.starts_with('-') && !w.contains('='))
            .map(base_name)?;
    }
    let bare = program.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    Some(if bare.is_empty() { program } else { bare }.to_string())
}

fn base_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Where file contents and modes come from: the work tree, or what git holds.
pub trait Contents {
    /// Up to `HEAD_BYTES` of the file's start; `None` when it cannot be read (gone, a folder).
    fn head(&self, path: &Path) -> Option<Vec<u8>>;
    /// Whether the file has its executable bit set.
    fn is_executable(&self, path: &Path) -> bool;
    /// Whether the path is a symbolic link.
    fn is_symlink(&self, path: &Path) -> bool;
}

/// Files as they are in a work tree, by repository-relative path.
pub struct WorkTree<'a> {
    pub root: &'a Path,
}

impl Contents for WorkTree<'_> {
    fn head(&self, path: &Path) -> Option<Vec<u8>> {
        use std::io::Read;
        let full = self.root.join(path);
        // A symlink is not a script of its own; following it could leave the repository.
        if std::fs::symlink_metadata(&full)
            .ok()?
            .file_type()
            .is_symlink()
        {
            return None;
        }
        let file = std::fs::File::open(full).ok()?;
        let mut head = Vec::with_capacity(HEAD_BYTES);
        file.take(HEAD_BYTES as u64).read_to_end(&mut head).ok()?;
        Some(head)
    }

    fn is_executable(&self, path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(self.root.join(path))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    fn is_symlink(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(self.root.join(path)).is_ok_and(|m| m.file_type().is_symlink())
    }
}

/// Tells the types of files, remembering each answer for the rest of a run.
pub struct Identifier<'a> {
    contents: &'a dyn Contents,
    known: RefCell<HashMap<PathBuf, Types>>,
}

impl<'a> Identifier<'a> {
    pub fn new(contents: &'a dyn Contents) -> Self {
        Identifier {
            contents,
            known: RefCell::new(HashMap::new()),
        }
    }

    /// Whether `path` is of any of the `wanted` types.
    pub fn is_any_of(&self, path: &Path, wanted: Types) -> bool {
        if wanted.contains("executable") && self.contents.is_executable(path) {
            return true;
        }
        self.types_of(path).intersects(wanted)
    }

    /// Whether the file starts with a `#!` line.
    pub fn has_shebang(&self, path: &Path) -> bool {
        self.contents
            .head(path)
            .is_some_and(|h| h.starts_with(b"#!"))
    }

    /// The types of `path` from its name or, when the name does not say, its head.
    pub fn types_of(&self, path: &Path) -> Types {
        if let Some(types) = self.known.borrow().get(path) {
            return *types;
        }
        let mut types = by_name(path);
        if types.is_empty() {
            types = self
                .contents
                .head(path)
                .map_or_else(Types::default, |h| by_head(&h));
        }
        self.known.borrow_mut().insert(path.to_path_buf(), types);
        types
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(types: Types) -> Vec<&'static str> {
        types.names()
    }

    #[test]
    fn every_table_names_known_types() {
        for table in [BY_EXTENSION, BY_NAME, BY_INTERPRETER] {
            for (_, types) in table {
                assert!(Types::parse(types).is_ok(), "{types:?}");
            }
        }
    }

    #[test]
    fn unknown_names_are_reported_with_their_position() {
        assert_eq!(
            Types::parse(&["shell", "shel"]),
            Err((1, "shel".to_string()))
        );
    }

    #[test]
    fn extensions_and_well_known_names_decide_without_reading() {
        assert_eq!(names(by_name(Path::new("a/b.sh"))), ["text", "shell", "sh"]);
        assert_eq!(
            names(by_name(Path::new(".bashrc"))),
            ["text", "shell", "bash"]
        );
        assert_eq!(
            names(by_name(Path::new("x/.zshrc"))),
            ["text", "shell", "zsh"]
        );
        assert_eq!(
            names(by_name(Path::new("Dockerfile.dev"))),
            ["text", "dockerfile"]
        );
        assert_eq!(names(by_name(Path::new("logo.PNG"))), ["binary"]);
        assert!(by_name(Path::new(".aliases")).is_empty());
        assert!(by_name(Path::new("bin/backup")).is_empty());
    }

    #[test]
    fn shebangs_name_the_interpreter() {
        let of = |head: &str| names(by_head(head.as_bytes()));
        assert_eq!(of("#!/bin/sh\necho"), ["text", "shell", "sh"]);
        assert_eq!(of("#!/usr/bin/env bash\n"), ["text", "shell", "bash"]);
        assert_eq!(of("#! /bin/bash -eu\n"), ["text", "shell", "bash"]);
        assert_eq!(of("#!/usr/bin/env -S zsh -f\n"), ["text", "shell", "zsh"]);
        assert_eq!(of("#!/usr/bin/python3.12\n"), ["text", "python"]);
        assert_eq!(of("#!/usr/bin/env python3\n"), ["text", "python"]);
        assert_eq!(of("#!/bin/ksh93\n"), ["text", "shell", "ksh"]);
        assert_eq!(of("#!/usr/bin/env LC_ALL=C perl -w\n"), ["text", "perl"]);
        assert_eq!(of("alias ll='ls -l'\n"), ["text"]);
        assert_eq!(of("#!\n"), ["text"]);
        assert_eq!(names(by_head(b"\x7fELF\x02\x01\x00\x00")), ["binary"]);
        assert_eq!(names(by_head(&[0xff, 0xfe, b'#'])), ["text"]);
    }
}
