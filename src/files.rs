//! File selection: which of the run's files a step is about, by its `files` and `exclude` globs.
//!
//! Paths are repository-relative, `/`-separated, and kept as raw bytes (through `Path`) so that
//! names which are not UTF-8 survive unchanged.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::path::{Path, PathBuf};

/// A step's compiled `files` and `exclude` globs.
#[derive(Debug, Clone)]
pub struct Matcher {
    include: GlobSet,
    exclude: GlobSet,
}

/// A glob that failed to compile: which list and position it came from, and why.
#[derive(Debug)]
pub struct BadGlob {
    pub index: usize,
    pub in_exclude: bool,
    pub reason: String,
}

impl Matcher {
    pub fn new<S: AsRef<str>>(include: &[S], exclude: &[S]) -> Result<Self, BadGlob> {
        Ok(Matcher {
            include: build_set(include, false)?,
            exclude: build_set(exclude, true)?,
        })
    }

    pub fn is_match(&self, path: &Path) -> bool {
        self.include.is_match(path) && !self.exclude.is_match(path)
    }

    /// The paths of `all` that this matcher selects, in their original order.
    pub fn select<'a>(&self, all: &'a [PathBuf]) -> Vec<&'a Path> {
        all.iter()
            .map(PathBuf::as_path)
            .filter(|p| self.is_match(p))
            .collect()
    }
}

/// Globs follow .gitignore habits: a glob without `/` matches a file name at any depth,
/// one with `/` matches from the repository root, and a trailing `/` means everything below.
pub fn normalize_glob(glob: &str) -> String {
    let glob = glob.strip_prefix("./").unwrap_or(glob);
    let mut glob = if let Some(anchored) = glob.strip_prefix('/') {
        anchored.to_string()
    } else if glob.trim_end_matches('/').contains('/') {
        glob.to_string()
    } else {
        format!("**/{glob}")
    };
    if glob.ends_with('/') {
        glob.push_str("**");
    }
    glob
}

fn build_set<S: AsRef<str>>(globs: &[S], in_exclude: bool) -> Result<GlobSet, BadGlob> {
    let mut set = GlobSetBuilder::new();
    for (index, glob) in globs.iter().enumerate() {
        let glob = glob.as_ref();
        if glob.trim().is_empty() {
            return Err(BadGlob {
                index,
                in_exclude,
                reason: "a glob cannot be empty".into(),
            });
        }
        let compiled = GlobBuilder::new(&normalize_glob(glob))
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| BadGlob {
                index,
                in_exclude,
                reason: e.kind().to_string(),
            })?;
        set.add(compiled);
    }
    set.build().map_err(|e| BadGlob {
        index: 0,
        in_exclude,
        reason: e.to_string(),
    })
}

/// Keeps the paths under `dir` (repository-relative) and makes them relative to it.
pub fn relative_to_dir<'a>(paths: &[&'a Path], dir: Option<&Path>) -> Vec<&'a Path> {
    match dir {
        None => paths.to_vec(),
        Some(dir) => paths
            .iter()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(inc: &[&str], exc: &[&str]) -> Matcher {
        Matcher::new(inc, exc).unwrap()
    }

    #[test]
    fn a_name_glob_matches_at_any_depth() {
        let sh = m(&["*.sh"], &[]);
        assert!(sh.is_match(Path::new("a.sh")));
        assert!(sh.is_match(Path::new("x/y/a.sh")));
        assert!(!sh.is_match(Path::new("a.shx")));
    }

    #[test]
    fn a_path_glob_is_anchored_and_star_stays_in_its_folder() {
        let bin = m(&["bin/*"], &[]);
        assert!(bin.is_match(Path::new("bin/tool")));
        assert!(!bin.is_match(Path::new("bin/sub/tool")));
        assert!(!bin.is_match(Path::new("x/bin/tool")));
        let deep = m(&["src/**/*.rs"], &[]);
        assert!(deep.is_match(Path::new("src/main.rs")));
        assert!(deep.is_match(Path::new("src/a/b/c.rs")));
        assert!(m(&["/top.txt"], &[]).is_match(Path::new("top.txt")));
        assert!(!m(&["/top.txt"], &[]).is_match(Path::new("a/top.txt")));
    }

    #[test]
    fn exclude_removes_and_trailing_slash_means_below() {
        let rs = m(&["*.rs"], &["vendor/"]);
        assert!(rs.is_match(Path::new("src/a.rs")));
        assert!(!rs.is_match(Path::new("vendor/x/a.rs")));
    }

    #[test]
    fn bad_globs_say_where() {
        let err = Matcher::new(&["*.rs"], &["a[b"]).unwrap_err();
        assert_eq!(err.index, 0);
        assert!(err.in_exclude);
    }

    #[test]
    fn non_utf8_names_match() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"d/\xff\xfe.txt"));
        assert!(m(&["*.txt"], &[]).is_match(p));
    }

    #[test]
    fn dir_keeps_only_files_below_it() {
        let paths = [Path::new("web/a.ts"), Path::new("api/b.ts")];
        let rel = relative_to_dir(&paths, Some(Path::new("web")));
        assert_eq!(rel, vec![Path::new("a.ts")]);
    }
}
