//! Unstaged work an interrupted pre-commit run set aside: put back, or said how to.

use crate::git::Repo;
use crate::hooks::stash;
use crate::report;

/// Puts back unstaged work that a killed pre-commit run left saved, or says how. Returns
/// whether everything that was set aside is back.
pub fn recover_unstaged(repo: &Repo, color: bool) -> bool {
    let outcomes = match stash::recover(repo) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            report::warn(
                &format!("cannot check for saved unstaged changes: {e}"),
                color,
            );
            return false;
        }
    };
    let mut all_back = true;
    for outcome in outcomes {
        let message = match outcome {
            stash::Recovery::Restored(backup) => format!(
                "an interrupted pre-commit run had set your unstaged changes aside; \
                 they are back in the work tree (from {})",
                backup.display()
            ),
            stash::Recovery::NeedsHelp { backup, paths } => {
                all_back = false;
                let changed = if paths.is_empty() {
                    "it could not be read back".to_string()
                } else {
                    let names: Vec<String> =
                        paths.iter().map(|p| p.display().to_string()).collect();
                    format!(
                        "{} changed since, so preflight left {} alone",
                        names.join(", "),
                        if paths.len() == 1 { "it" } else { "them" }
                    )
                };
                format!(
                    "an interrupted pre-commit run set your unstaged changes aside in {0}, and \
                     {changed}.\nhelp: your own versions of the files are in {0}/work/, by path; \
                     copy back what you want to keep (e.g. `cp -a {0}/work/FILE FILE`), then \
                     delete {0}",
                    backup.display()
                )
            }
            stash::Recovery::OldPatch(patch) => {
                all_back = false;
                format!(
                    "an older preflight left your unstaged changes in {0}.\nhelp: look at it, \
                     then `git apply --3way {0}` to get them back, and delete the file when done",
                    patch.display()
                )
            }
        };
        report::warn(&message, color);
    }
    all_back
}
