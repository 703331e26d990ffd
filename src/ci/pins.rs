//! Action pins that an update bot (Dependabot, Renovate) raised in a generated workflow.
//!
//! Those bots edit `uses: owner/repo@<sha> # vX.Y.Z` lines in `.github/workflows/`, not
//! `preflight.toml`. A pin in the file on disk that names a newer release than the one
//! preflight would write is kept: `ci generate` carries it over, and the drift checks see
//! no difference. An older or unversioned one is replaced as usual.

use crate::config::{ActionsSettings, Pin};

/// A pin found in the file on disk that is newer than the configured one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub action: String,
    pub found: Pin,
    pub configured: Pin,
}

/// The versioned pins in a workflow: `owner/repo@<40 hex> # vX.Y.Z` after `uses:`.
pub fn pins_in(yaml: &str) -> Vec<(String, Pin)> {
    yaml.lines()
        .filter_map(|line| {
            let rest = line
                .trim_start()
                .strip_prefix("- ")
                .unwrap_or(line.trim_start());
            let rest = rest.strip_prefix("uses:")?.trim();
            let (reference, comment) = rest.split_once('#')?;
            let (action, sha) = reference.trim().trim_matches('"').split_once('@')?;
            let version = comment.split_whitespace().next()?;
            let is_sha = sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            (is_sha && release(version).is_some()).then(|| {
                (
                    action.to_string(),
                    Pin {
                        sha: sha.to_ascii_lowercase(),
                        version: Some(version.to_string()),
                    },
                )
            })
        })
        .collect()
}

/// A release name as numbers: `v4.2.2` → [4, 2, 2]; `None` for anything else (`main`,
/// `v5-beta`).
fn release(version: &str) -> Option<Vec<u64>> {
    let digits = version.strip_prefix('v').unwrap_or(version);
    digits.split('.').map(|p| p.parse().ok()).collect()
}

/// Whether release `a` comes after release `b`; `false` when either is not a release name.
pub fn is_newer(a: &str, b: &str) -> bool {
    match (release(a), release(b)) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

/// For each of `actions` (with the pin preflight would write), the newest pin in `existing`
/// when it names a newer release.
pub fn raised(existing: &str, actions: &[&str], configured: impl Fn(&str) -> Pin) -> Vec<Raised> {
    let found = pins_in(existing);
    actions
        .iter()
        .filter_map(|&action| {
            let configured = configured(action);
            let newest = found
                .iter()
                .filter(|(a, _)| a == action)
                .map(|(_, p)| p)
                .max_by(|x, y| {
                    let (x, y) = (x.version.as_deref(), y.version.as_deref());
                    release(x.unwrap_or_default()).cmp(&release(y.unwrap_or_default()))
                })?;
            let newer = match (&newest.version, &configured.version) {
                (Some(n), Some(c)) => is_newer(n, c),
                _ => false,
            };
            newer.then(|| Raised {
                action: action.to_string(),
                found: newest.clone(),
                configured,
            })
        })
        .collect()
}

/// `settings` with the raised pins put in.
pub fn apply(settings: &mut ActionsSettings, raised: &[Raised]) {
    for r in raised {
        settings.pins.insert(r.action.clone(), r.found.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "11bd71901bbe5b1630ceea73d27597364c9af683";
    const NEW: &str = "8e8c483db84b4bee98b60c0593521ed34d9990e8";

    fn pin(sha: &str, version: &str) -> Pin {
        Pin {
            sha: sha.into(),
            version: Some(version.into()),
        }
    }

    #[test]
    fn releases_compare_by_number() {
        assert!(is_newer("v4.10.0", "v4.9.9"));
        assert!(is_newer("v6", "v5.0.1"));
        assert!(!is_newer("v4.2.2", "v4.2.2"));
        assert!(!is_newer("v4.2.1", "v4.2.2"));
        assert!(!is_newer("main", "v1"));
        assert!(!is_newer("v5-beta", "v4"));
    }

    #[test]
    fn a_newer_pin_in_the_file_is_raised_and_an_older_one_is_not() {
        let yaml = format!(
            "    steps:\n      - name: Check out\n        uses: actions/checkout@{NEW} # v6.0.1\n\
             \x20     - uses: actions/cache@{OLD} # v4.0.0\n      - uses: other/thing@{NEW} # v9\n"
        );
        let configured = |action: &str| match action {
            "actions/checkout" => pin(OLD, "v4.2.2"),
            _ => pin(OLD, "v4.2.3"),
        };
        let raised = raised(&yaml, &["actions/checkout", "actions/cache"], configured);
        assert_eq!(
            raised,
            [Raised {
                action: "actions/checkout".into(),
                found: pin(NEW, "v6.0.1"),
                configured: pin(OLD, "v4.2.2"),
            }]
        );
    }

    #[test]
    fn tags_and_unversioned_pins_are_not_read() {
        let yaml = format!(
            "- uses: actions/checkout@v4 # v9.9.9\n- uses: actions/checkout@{NEW}\n\
             - uses: actions/checkout@{NEW} # renovate: tag=v9\n"
        );
        assert!(pins_in(&yaml).is_empty());
    }
}
