//! Why a step ran: the difference between its key record now and the one of the entry it
//! last used. Environment values and what key commands print are never shown, only which
//! ones changed.

use super::key::KeyRecord;
use std::collections::{BTreeMap, BTreeSet};

/// How many paths a list shows before "and N more".
const SHOWN: usize = 20;

/// Lines that say what changed from `old` to `new`; empty when nothing did.
pub fn diff(old: &KeyRecord, new: &KeyRecord) -> Vec<String> {
    let mut lines = Vec::new();
    if old.version != new.version {
        lines.push("preflight's cache format changed".to_string());
        return lines;
    }
    if old.salt != new.salt {
        lines.push("the cache salt (`[settings] salt`) changed".into());
    }
    if (&old.os, &old.arch) != (&new.os, &new.arch) {
        lines.push(format!(
            "the platform changed: {}/{} → {}/{}",
            old.os, old.arch, new.os, new.arch
        ));
    }
    if old.run != new.run {
        lines.push("the command (`run`) was edited".into());
    }
    if old.dir != new.dir {
        lines.push("the step's `dir` changed".into());
    }
    if old.outputs != new.outputs {
        lines.push("the declared `outputs` changed".into());
    }
    let env = changed_names(&old.env, &new.env);
    if !env.is_empty() {
        lines.push(format!("env changed: {}", env.join(", ")));
    }
    let key_env = changed_names(&old.key_env, &new.key_env);
    if !key_env.is_empty() {
        lines.push(format!("key_env values changed: {}", key_env.join(", ")));
    }
    let old_cmds: BTreeMap<&str, &super::key::KeyCommand> = old
        .key_commands
        .iter()
        .map(|k| (k.command.as_str(), k))
        .collect();
    for k in &new.key_commands {
        match old_cmds.get(k.command.as_str()) {
            None => lines.push(format!("key command `{}` was added", k.command)),
            Some(o) if o.digest != k.digest => {
                lines.push(format!("the output of `{}` changed", k.command));
            }
            Some(_) => {}
        }
    }
    for k in &old.key_commands {
        if !new.key_commands.iter().any(|n| n.command == k.command) {
            lines.push(format!("key command `{}` was removed", k.command));
        }
    }
    for (name, identity) in &new.tools {
        match old.tools.get(name) {
            None => lines.push(format!("it now uses tool `{name}`")),
            Some(o) if o != identity => {
                lines.push(format!("tool `{name}` changed: {o} → {identity}"));
            }
            Some(_) => {}
        }
    }
    for name in old.tools.keys() {
        if !new.tools.contains_key(name) {
            lines.push(format!("it no longer uses tool `{name}`"));
        }
    }
    for (name, key) in &new.needs {
        match old.needs.get(name) {
            None => lines.push(format!("it now needs `{name}`")),
            Some(o) if o != key => lines.push(format!("needed step `{name}` has a new key")),
            Some(_) => {}
        }
    }
    for name in old.needs.keys() {
        if !new.needs.contains_key(name) {
            lines.push(format!("it no longer needs `{name}`"));
        }
    }
    for (name, digest) in &new.needs_outputs {
        if old.needs.contains_key(name) && old.needs_outputs.get(name) != Some(digest) {
            lines.push(format!("the outputs of needed step `{name}` changed"));
        }
    }
    if old.inputs_from != new.inputs_from {
        lines.push("its inputs are now chosen differently (`inputs` or `files`)".into());
    }
    let old_in: BTreeMap<_, _> = old.inputs.iter().map(|i| (&i.path, i)).collect();
    let new_in: BTreeMap<_, _> = new.inputs.iter().map(|i| (&i.path, i)).collect();
    let added: Vec<String> = new_in
        .keys()
        .filter(|p| !old_in.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    let removed: Vec<String> = old_in
        .keys()
        .filter(|p| !new_in.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    let mut changed = Vec::new();
    let mut mode = Vec::new();
    for (p, n) in &new_in {
        if let Some(o) = old_in.get(p) {
            if o.digest != n.digest {
                changed.push(p.to_string());
            } else if o.mode != n.mode {
                mode.push(format!("{p} ({} → {})", o.mode, n.mode));
            }
        }
    }
    list(&mut lines, "files changed", &changed);
    list(&mut lines, "files added", &added);
    list(&mut lines, "files removed", &removed);
    list(&mut lines, "file modes changed", &mode);
    lines
}

fn list(lines: &mut Vec<String>, what: &str, paths: &[String]) {
    if paths.is_empty() {
        return;
    }
    let mut text = format!("{what}: {}", paths[..paths.len().min(SHOWN)].join(", "));
    if paths.len() > SHOWN {
        text.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    lines.push(text);
}

fn changed_names<V: PartialEq>(
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
) -> Vec<String> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .cloned()
        .collect()
}
