//! Setting a repository up, below the commands that ask for it: the generated CI files
//! (`ci generate`, `init --ci`, the drift check of `run --ci`) and the hook shims
//! (`install`, `uninstall`, `doctor`, `init --install`). Imports the layers below (ci, hooks,
//! git, config, report), never `commands`, `cli` or `pipeline`.

pub mod ci;
pub mod install;
