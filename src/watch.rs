//! Watching the work tree: one watch per folder git does not ignore, events filtered (`.git`,
//! ignored paths, the steps' own outputs) and gathered over a short debounce into batches of
//! repository-relative paths.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::Matcher;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// What arrives on a watch's channel: a debounced batch of changed paths, an error the
/// watcher met, or the request to stop (sent on Ctrl-C).
pub enum Batch {
    Changed(Vec<PathBuf>),
    Failed(String),
    Stop,
}

/// Which changed paths concern which of the watched steps.
pub struct Interests {
    steps: Vec<Interest>,
}

/// Which changed paths concern a step: its `files` and `inputs` globs (`None`: any change).
struct Interest {
    name: String,
    matcher: Option<Matcher>,
    needs: Vec<String>,
}

impl Interests {
    /// The interests of the `selected` steps of `config`.
    pub fn new(config: &Config, selected: &[String]) -> Interests {
        let steps = selected
            .iter()
            .filter_map(|name| Some((name, config.steps.get(name)?)))
            .map(|(name, step)| {
                // A step with only `types` is about files anywhere.
                let any_file = (step.files.is_empty() && !step.types.is_empty()).then_some("*");
                let globs: Vec<&str> = step
                    .files
                    .iter()
                    .chain(&step.inputs)
                    .map(String::as_str)
                    .chain(any_file)
                    .collect();
                let matcher = if globs.is_empty() {
                    None
                } else {
                    Matcher::new(
                        &globs,
                        &step.exclude.iter().map(String::as_str).collect::<Vec<_>>(),
                    )
                    .ok()
                };
                Interest {
                    name: name.clone(),
                    matcher,
                    needs: step.needs.clone(),
                }
            })
            .collect();
        Interests { steps }
    }

    /// Whether a change to `path` concerns any watched step.
    pub fn concern(&self, path: &Path) -> bool {
        self.steps
            .iter()
            .any(|i| i.matcher.as_ref().is_none_or(|m| m.is_match(path)))
    }

    /// The steps a change to any of `paths` concerns, and the steps that need them.
    pub fn affected(&self, paths: &[PathBuf]) -> BTreeSet<String> {
        let mut hit: BTreeSet<String> = self
            .steps
            .iter()
            .filter(|i| match &i.matcher {
                None => true,
                Some(m) => paths.iter().any(|p| m.is_match(p)),
            })
            .map(|i| i.name.clone())
            .collect();
        loop {
            let more: Vec<String> = self
                .steps
                .iter()
                .filter(|i| !hit.contains(&i.name) && i.needs.iter().any(|n| hit.contains(n)))
                .map(|i| i.name.clone())
                .collect();
            if more.is_empty() {
                return hit;
            }
            hit.extend(more);
        }
    }
}

/// The `selected` steps' declared outputs (files or folders): writing them must not start
/// another run.
pub fn outputs_matcher(config: &Config, selected: &[String]) -> Option<Matcher> {
    let globs: Vec<String> = selected
        .iter()
        .filter_map(|n| config.steps.get(n))
        .flat_map(|step| step.outputs.iter())
        .flat_map(|o| {
            let o = o.trim_end_matches('/');
            [format!("/{o}"), format!("/{o}/**")]
        })
        .collect();
    if globs.is_empty() {
        return None;
    }
    Matcher::new(&globs, &[]).ok()
}

/// Watches `root` and sends batches of changed paths (repository-relative) on the returned
/// channel. The watcher lives as long as the returned handle.
pub fn start(
    root: &Path,
    ignore_outputs: Option<Matcher>,
    debounce: Duration,
    poll: bool,
    batches: Sender<Batch>,
) -> Result<Box<dyn std::any::Any + Send>> {
    let (raw_tx, raw_rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let rescan_tx = raw_tx.clone();
    let mut watcher: Box<dyn Watcher + Send> = if poll {
        // Modification times are compared to the second, so contents are compared too.
        let config = notify::Config::default()
            .with_poll_interval(Duration::from_millis(500))
            .with_compare_contents(true);
        Box::new(notify::PollWatcher::new(raw_tx, config).map_err(watch_error)?)
    } else {
        Box::new(notify::recommended_watcher(raw_tx).map_err(watch_error)?)
    };
    let ignored = Ignored::load(root);
    for dir in folders(root, &ignored) {
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
    }
    let root = root.to_path_buf();
    let (dir_tx, dir_rx) = mpsc::channel::<PathBuf>();
    std::thread::spawn(move || {
        debounce_loop(
            &root,
            raw_rx,
            &dir_tx,
            &ignored,
            ignore_outputs.as_ref(),
            debounce,
            &batches,
        )
    });
    // New folders must be watched too; the watcher is moved into a thread that adds them. Files
    // made between the folder's creation and its watch are found by a look after the watch.
    let holder = std::thread::spawn(move || {
        for dir in dir_rx {
            if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                // Said once per failure (the OS limit, say); the folder is then not watched.
                if dir.exists() {
                    let _ = rescan_tx.send(Err(e));
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let files: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .collect();
            if !files.is_empty() {
                let event = notify::Event::new(EventKind::Create(notify::event::CreateKind::File));
                let _ = rescan_tx.send(Ok(files.into_iter().fold(event, notify::Event::add_path)));
            }
        }
    });
    Ok(Box::new(holder))
}

/// The error a user can act on when the OS refuses more watches.
fn watch_error(e: notify::Error) -> Error {
    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC));
    if limit {
        Error::Setup(
            "the system limit on watched folders is reached (inotify max_user_watches)".into(),
        )
        .hint(
            "raise it: sudo sysctl fs.inotify.max_user_watches=524288 \
             (add it to /etc/sysctl.d/ to keep it), or use `preflight watch --poll`",
        )
    } else {
        Error::Setup(format!("cannot watch the work tree: {e}"))
            .hint("`preflight watch --poll` polls instead")
    }
}

/// Every folder of the work tree that git does not ignore (and not `.git`).
fn folders(root: &Path, ignored: &Ignored) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        out.push(dir);
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && entry.file_name() != ".git"
                && !ignored.is_ignored(root, &path, true)
            {
                stack.push(path);
            }
        }
    }
    out
}

/// The .gitignore files of the work tree and `.git/info/exclude`, each applied from its folder.
struct Ignored {
    by_dir: HashMap<PathBuf, Gitignore>,
}

impl Ignored {
    fn load(root: &Path) -> Self {
        let mut by_dir = HashMap::new();
        let mut top = GitignoreBuilder::new(root);
        top.add(root.join(".git/info/exclude"));
        top.add(root.join(".gitignore"));
        if let Ok(g) = top.build() {
            by_dir.insert(root.to_path_buf(), g);
        }
        let mut this = Ignored { by_dir };
        this.load_below(root, root);
        this
    }

    fn load_below(&mut self, root: &Path, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir())
                || entry.file_name() == ".git"
                || self.is_ignored(root, &path, true)
            {
                continue;
            }
            let file = path.join(".gitignore");
            if file.is_file() {
                let mut b = GitignoreBuilder::new(&path);
                b.add(&file);
                if let Ok(g) = b.build() {
                    self.by_dir.insert(path.clone(), g);
                }
            }
            self.load_below(root, &path);
        }
    }

    /// Whether git ignores `path`: the deepest .gitignore with an opinion wins, and anything
    /// inside an ignored folder is ignored.
    fn is_ignored(&self, root: &Path, path: &Path, is_dir: bool) -> bool {
        let Ok(rel) = path.strip_prefix(root) else {
            return true;
        };
        let components: Vec<_> = rel.components().collect();
        let mut current = root.to_path_buf();
        for (i, c) in components.iter().enumerate() {
            current.push(c);
            let last = i + 1 == components.len();
            if self.decide(&current, !last || is_dir) {
                return true;
            }
        }
        false
    }

    /// The verdict of the .gitignore files above `path`, the deepest with an opinion winning.
    fn decide(&self, path: &Path, is_dir: bool) -> bool {
        let mut verdict = false;
        for ancestor in path
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if let Some(g) = self.by_dir.get(ancestor) {
                let m = g.matched(path, is_dir);
                if m.is_ignore() {
                    verdict = true;
                } else if m.is_whitelist() {
                    verdict = false;
                }
            }
        }
        verdict
    }
}

fn debounce_loop(
    root: &Path,
    raw: Receiver<notify::Result<notify::Event>>,
    new_dirs: &Sender<PathBuf>,
    ignored: &Ignored,
    outputs: Option<&Matcher>,
    debounce: Duration,
    batches: &Sender<Batch>,
) {
    let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let event = if pending.is_empty() {
            match raw.recv() {
                Ok(e) => e,
                Err(_) => return,
            }
        } else {
            match raw.recv_timeout(debounce) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    let paths = std::mem::take(&mut pending).into_iter().collect();
                    if batches.send(Batch::Changed(paths)).is_err() {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                let message = watch_error(e).with_help_lines();
                let _ = batches.send(Batch::Failed(message));
                continue;
            }
        };
        if matches!(event.kind, EventKind::Access(_)) {
            continue;
        }
        for path in event.paths {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            if rel
                .components()
                .next()
                .is_some_and(|c| c.as_os_str() == ".git")
                || rel.as_os_str().is_empty()
            {
                continue;
            }
            let is_dir = path.is_dir();
            if ignored.is_ignored(root, &path, is_dir) || outputs.is_some_and(|m| m.is_match(rel)) {
                continue;
            }
            if is_dir && !matches!(event.kind, EventKind::Create(_)) {
                // A folder's own metadata changed (an entry added, a chmod): its files report
                // for themselves.
                continue;
            }
            if is_dir {
                // A new folder: watch it and everything already in it.
                for dir in folders(&path, ignored) {
                    let _ = new_dirs.send(dir.clone());
                    if let Ok(entries) = std::fs::read_dir(&dir) {
                        for f in entries
                            .flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        {
                            let file = f.path();
                            if let Ok(r) = file.strip_prefix(root)
                                && !ignored.is_ignored(root, &file, false)
                                && !outputs.is_some_and(|m| m.is_match(r))
                            {
                                pending.insert(r.to_path_buf());
                            }
                        }
                    }
                }
                continue;
            }
            pending.insert(rel.to_path_buf());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(Path::new("preflight.toml"), text).expect("valid")
    }

    #[test]
    fn a_change_concerns_the_steps_whose_globs_match_and_those_that_need_them() {
        let config = config(
            "[steps.lint]\nrun = \"true\"\nfiles = [\"*.py\"]\n\
             [steps.build]\nrun = \"true\"\ninputs = [\"src/**\"]\noutputs = [\"out/\"]\n\
             [steps.test]\nrun = \"true\"\nneeds = [\"build\"]\ninputs = [\"tests/**\"]\n",
        );
        let selected: Vec<String> = ["lint", "build", "test"].map(String::from).to_vec();
        let interests = Interests::new(&config, &selected);
        let affected = |paths: &[&str]| -> Vec<String> {
            let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            interests.affected(&paths).into_iter().collect()
        };
        assert_eq!(affected(&["src/main.rs"]), ["build", "test"]);
        assert_eq!(affected(&["a.py"]), ["lint"]);
        assert_eq!(affected(&["tests/t.rs"]), ["test"]);
        assert!(affected(&["README.md"]).is_empty());
        assert!(interests.concern(Path::new("src/x")));
        assert!(!interests.concern(Path::new("docs/x")));
        let outputs = outputs_matcher(&config, &selected).unwrap();
        assert!(outputs.is_match(Path::new("out/bin")));
        assert!(!outputs.is_match(Path::new("src/out")));
    }
}
